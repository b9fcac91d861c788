"""ODIL solver paths that failed off the CPU or in half precision.

The dense Gauss-Newton step falls back to a least-squares solve when the Cholesky factor of
:math:`J^\\top J + \\lambda I` fails (a singular system, e.g. an unknown no residual reads); that
used ``torch.linalg.lstsq``, whose only CUDA driver (``gels``) assumes full rank. A problem in
float16/bfloat16 was accepted and failed in the first Cholesky/lstsq; it is refused up front.
"""

from __future__ import annotations

import pytest
import torch

import bayesphys.odil._damped_step as damped_step
from bayesphys.odil import DiscreteProblem, minimize

F64 = torch.float64


def _free_unknown(device="cpu") -> DiscreteProblem:
    """Residuals read u[0] and u[1] only: u[2] is free, J has a zero column."""
    return DiscreteProblem(
        {"u": (3,)},
        {},
        lambda f, p: {"r": f["u"][:2] - torch.tensor([1.0, -2.0], dtype=F64, device=device)},
        device=device,
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, "float16", "bfloat16"])
def test_half_precision_is_refused(dtype):
    with pytest.raises(ValueError, match=r"dtype: expected torch.float32 or torch.float64"):
        DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"r": f["u"]}, dtype=dtype)


def test_float32_and_float64_are_accepted():
    for dt in (torch.float32, F64, None):
        p = DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"r": f["u"]}, dtype=dt)
        assert p.dtype == (dt or F64)


def test_singular_dense_step_takes_the_minimum_norm_solution(monkeypatch):
    calls = []
    real = damped_step.lstsq_any_rank
    monkeypatch.setattr(
        damped_step, "lstsq_any_rank", lambda a, b: calls.append(a.device) or real(a, b)
    )
    prob = _free_unknown()
    x, res = minimize(prob, method="gn", linear_solver="dense", steps=3)
    assert calls  # the Cholesky failed: the fallback ran
    torch.testing.assert_close(x, torch.tensor([1.0, -2.0, 0.0], dtype=F64))


@pytest.mark.gpu
def test_singular_dense_step_on_cuda(cuda_device):
    x, res = minimize(_free_unknown(cuda_device), method="gn", linear_solver="dense", steps=3)
    assert x.device.type == "cuda" and bool(torch.isfinite(x).all())
    torch.testing.assert_close(x.cpu(), torch.tensor([1.0, -2.0, 0.0], dtype=F64))


@pytest.mark.parametrize("shift", [True, False])
def test_recalibration_map_is_made_on_the_z_scores_device(shift):
    """Shift and scale are made on z's device (a CUDA z gave a CPU scale, and a CPU shift
    without ``shift``). Checked without a GPU: under a ``meta`` default device a tensor made
    without ``device=`` is a meta tensor."""
    from bayesphys.odil import fit_recalibration_map

    z = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    b0, s0 = fit_recalibration_map(z, shift=shift)
    with torch.device("meta"):
        b, s = fit_recalibration_map(z, shift=shift)
    assert b.device.type == s.device.type == "cpu"
    assert torch.equal(b, b0) and torch.equal(s, s0)
