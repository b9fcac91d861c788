"""Spawned test workers under ``python -W error``: only the one third-party warning is let
through (tests/distributed/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import bayesphys

# what a spawned DDP worker does first: import the test module whose function it runs (which
# imports bayesphys and linear_operator); then a DeprecationWarning of bayesphys's own
SCRIPT = textwrap.dedent(
    """
    import warnings
    import tests.distributed.test_ddp
    try:
        warnings.warn_explicit("ours", DeprecationWarning, "x.py", 1, module="bayesphys.x")
    except DeprecationWarning:
        print("bayesphys warning is an error")
    """
)


def test_a_worker_under_w_error_imports_the_ddp_tests_and_keeps_bayesphys_warnings_errors():
    """Under ``python -W error -m pytest tests/distributed/test_ddp.py`` every spawned worker
    failed on linear_operator's torch.jit.script DeprecationWarning at import (pyproject's
    filterwarnings applies only to pytest's own process)."""
    root = str(Path(bayesphys.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "bayesphys warning is an error"
