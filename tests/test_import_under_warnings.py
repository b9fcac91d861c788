"""``import bayesphys`` under ``python -W error``.

linear_operator (gpytorch's) calls ``torch.jit.script`` as it is imported, and torch deprecates
it: under ``-W error`` that third-party warning failed ``import bayesphys``, and every spawned
worker of a process pool that imports it died at start-up (a ``multiprocessing.Pool`` then
respawned them without end: ``python -W error -m pytest tests/distributed/test_executors.py``
hung). bayesphys now ignores exactly that message while it imports linear_operator."""

import subprocess
import sys

CODE = """
import warnings
import bayesphys, bayesphys.distributed, gpytorch
left = [f for f in warnings.filters if f[1] is not None and "jit" in f[1].pattern]
assert not left, f"the import left its filter behind: {left}"
try:  # bayesphys's own deprecations, and any other, still raise under -W error
    warnings.warn("still an error", DeprecationWarning)
except DeprecationWarning:
    print("ok")
"""


def test_the_package_imports_under_w_error_and_leaves_the_filters_as_they_were():
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", CODE], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
