"""ODIL: the glioma forward map and loss are differentiable in theta (float64 gradchecks on
the cheapest phantom); minimize returns a detached iterate and says so for an x0 that requires
grad (it was read detached without a word)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from bayesphys.odil import GliomaModel, minimize
from bayesphys.odil.problem import DiscreteProblem
from bayesphys.problems.glioma import brain_phantom, synthetic_patient

F64 = torch.float64


@pytest.fixture(scope="module")
def glioma():
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    return GliomaModel.from_patient(p, use_pet=True)


def test_forward_and_loss_gradcheck_in_theta(glioma):
    th = glioma._theta0().clone().requires_grad_()
    assert gradcheck(lambda t: glioma.forward(t).sum().reshape(1), (th,), atol=1e-5)
    assert gradcheck(lambda t: glioma.loss(t).reshape(1), (th,), atol=1e-5)


def test_minimize_warns_for_an_x0_that_requires_grad():
    prob = DiscreteProblem(
        {"u": (3,)}, {}, lambda f, p: {"r": f["u"] - torch.tensor([1.0, 2.0, 3.0], dtype=F64)}
    )
    x0 = torch.zeros(3, dtype=F64, requires_grad=True)
    with pytest.warns(UserWarning, match=r"^minimize: x0 requires grad, but"):
        x, res = minimize(prob, x0, method="gn", steps=3)
    assert res.converged and not x.requires_grad
    torch.testing.assert_close(x, torch.tensor([1.0, 2.0, 3.0], dtype=F64))
