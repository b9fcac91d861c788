"""bayesphys.odil input gaps: non-finite foci given as tensors (each test failed before its
fix, except the guards of behaviour kept by design)."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.odil import multifocal_initial_condition

F64 = torch.float64


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_multifocal_initial_condition_refuses_a_non_finite_tensor_focus(bad):
    # a NaN focus gave a NaN state and an infinite one a zero Gaussian, silently (only foci
    # given as numbers were checked)
    foci = torch.tensor([[4.0, 4.0], [bad, 2.0]], dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match=r"^foci: expected finite values, received 1 NaN/Inf"):
        multifocal_initial_condition((8, 8), foci, 1.0)


def test_multifocal_initial_condition_still_runs_under_torch_func():
    foci = torch.tensor([[4.0, 4.0], [2.0, 6.0]], dtype=F64)
    c0, _ = multifocal_initial_condition((8, 8), foci, 1.0)
    jac = torch.func.jacfwd(lambda f: multifocal_initial_condition((8, 8), f, 1.0)[0])(foci)
    assert jac.shape == (*c0.shape, *foci.shape) and bool(torch.isfinite(jac).all())


def test_glioma_loss_at_a_non_finite_focus_stays_non_finite(model):
    # by design (a trial point of NUTS or LM): the loss is NaN there, not an error
    th = model._theta0().clone()
    th[2] = math.nan
    assert math.isnan(float(model.loss(th)))
    assert bool(torch.isnan(model.initial_state(th)).all())
