"""Forward-mode derivatives under ``python -W error`` and ``PYTHONWARNINGS=always``.

torch loads its forward-mode decompositions at the first forward-mode call and compiles them
with ``torch.jit.script``, which torch deprecates: under ``-W error`` every ODIL fit failed
with that DeprecationWarning (the Jacobian of a Gauss-Newton step, the glioma likelihood's),
and ``PYTHONWARNINGS=always`` printed it 18 times in ``bayesphys run glioma --smoke``."""

import os
import subprocess
import sys

CODE = """
import warnings
import torch
from bayesphys.odil.solvers import dense_jacobian

x = torch.tensor([2.0, 3.0], dtype=torch.float64)
for _ in range(2):  # the first call loads torch's decompositions, the second reuses them
    j = dense_jacobian(lambda x: x**2 - 1.0, x)
    assert torch.equal(j, torch.diag(2 * x)), j
left = [f for f in warnings.filters if f[1] is not None and "script" in f[1].pattern]
assert not left, f"the load left its filter behind: {left}"
try:  # other deprecations still raise under -W error
    warnings.warn("still an error", DeprecationWarning)
except DeprecationWarning:
    print("ok")
"""


def _run(*flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *flags, "-c", CODE],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_forward_mode_derivatives_run_under_w_error():
    out = _run("-W", "error")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_forward_mode_derivatives_print_no_torch_jit_deprecation():
    out = _run(env={"PYTHONWARNINGS": "always"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "torch.jit.script" not in out.stderr, out.stderr[-2000:]
