"""Cohort of inverse problems with fit_many: ``python examples/cohort.py --smoke``.

Exits with status 1 when some problems failed (their errors are recorded in the output), as
``bayesphys run cohort`` does."""

from bayesphys.examples._args import run_script
from bayesphys.examples.cohort import main

if __name__ == "__main__":  # --executor ray / dask not installed: named, without a traceback
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        failed = run_script(main).get("failed")
    raise SystemExit(1 if failed else 0)
