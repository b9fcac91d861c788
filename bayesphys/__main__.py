"""``python -m bayesphys ...``: the ``bayesphys`` console command, for environments where the
installed script is not on ``PATH`` (a notebook's kernel, a venv that is not activated)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
