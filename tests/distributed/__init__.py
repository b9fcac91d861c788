"""Tests of :mod:`bayesphys.distributed`.

Worker processes started with ``spawn`` (``torch.multiprocessing.spawn``, process pools)
import this package before the test module whose function they run, and pyproject's
``filterwarnings`` reaches only pytest's own process: under ``python -W error -m pytest``
linear_operator's import-time ``torch.jit.script`` DeprecationWarning (third-party, which
pyproject ignores too) failed every such worker. Exactly that warning is ignored here;
warnings of bayesphys stay errors."""

import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit\._script")
