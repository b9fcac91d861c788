"""ProbConserv's remaining input gaps: the GPME diffusivities' arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import Diffusion, PorousMedium, Stefan

F64, F32 = torch.float64, torch.float32

# each family with a parameter inside its domain and one outside it
_FAMILIES = [
    (Diffusion, "k", 1.5, -1.0),
    (PorousMedium, "m", 3.0, -1.0),
    (Stefan, "u_star", 0.6, 1.5),
]


def _want(family, u: torch.Tensor, p: float) -> torch.Tensor:
    if family is Diffusion:
        return torch.full_like(u, p)
    if family is PorousMedium:
        return u.clamp_min(0) ** p
    return torch.sigmoid((u - p) / Stefan().smooth)


# --- the diffusivities ---------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "name", "good", "bad"), _FAMILIES)
def test_diffusivity_takes_a_list_or_an_array_u(family, name, good, bad):
    # a list failed with "'list' object has no attribute 'clamp_min'" (or ones_like, or -)
    u = [0.1, 0.5, 0.9]
    want = _want(family, torch.tensor(u, dtype=F64), good)
    for value in (u, np.array(u)):
        got = family().diffusivity(value, good)
        assert got.dtype == F64 and torch.allclose(got, want, rtol=1e-15, atol=0)


@pytest.mark.parametrize(("family", "name", "good", "bad"), _FAMILIES)
@pytest.mark.parametrize("kind", ["number", "tensor", "list"])
def test_diffusivity_refuses_a_parameter_outside_the_family(family, name, good, bad, kind):
    # a NaN or out-of-domain parameter gave NaN or a wrong k silently (m = -1: 0.1^-1 = 10)
    u = torch.tensor([0.1, 0.5], dtype=F64)
    for p, got in ((bad, "values in"), (math.nan, "1 NaN value")):
        value = {"number": p, "tensor": torch.tensor(p, dtype=F64), "list": [p, good]}[kind]
        with pytest.raises(ValueError, match=rf"^{name}: expected values in .*received {got}"):
            family().diffusivity(u, value)


@pytest.mark.parametrize(("family", "name", "good", "bad"), _FAMILIES)
def test_diffusivity_refuses_a_parameter_of_the_wrong_type_or_shape(family, name, good, bad):
    u = torch.tensor([0.1, 0.5], dtype=F64)
    with pytest.raises(TypeError, match=rf"^{name}: expected a tensor or array, received str"):
        family().diffusivity(u, "a")
    with pytest.raises(TypeError, match=rf"^{name}: expected real values, received torch.bool"):
        family().diffusivity(u, torch.tensor(True))
    with pytest.raises(TypeError, match=rf"^{name}: expected real values"):
        family().diffusivity(u, torch.tensor(good + 0j))
    with pytest.raises(ValueError, match=rf"^{name}: expected a number or a tensor that broad"):
        family().diffusivity(u, torch.full((3,), good, dtype=F64))
    with pytest.raises(TypeError, match=r"^u: expected real values, received torch.bool"):
        family().diffusivity(torch.ones(2, dtype=torch.bool), good)


@pytest.mark.parametrize(("family", "name", "good", "bad"), _FAMILIES)
def test_diffusivity_keeps_float32_and_its_gradients(family, name, good, bad):
    # the SoftC penalty: u float32 [B, n] with a graph, param [B, 1] float32 or a number
    u = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.6, 0.7]], dtype=F32, requires_grad=True)
    p = torch.full((2, 1), good, dtype=F32, requires_grad=True)
    k = family().diffusivity(u, p)
    assert k.dtype == F32 and k.shape == (2, 3)
    assert torch.allclose(k, _want(family, u.detach().double(), good).float(), rtol=1e-5)
    (k * torch.arange(6.0).reshape(2, 3)).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    if family is not Diffusion:  # the constant k(u) = k has no graph in u
        assert u.grad is not None and torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0
    assert family().diffusivity(u, good).dtype == F32  # a number takes u's dtype


def test_softc_training_still_runs_in_float32():
    torch.manual_seed(0)
    m = ProbConserv("pme", step1="anp", hidden=8, n_samples=4, softc_weight=1.0, seed=0)
    assert m.dtype == F32
    before = [p.detach().clone() for p in m.net.parameters()]
    m.fit(steps=2, progress=False)
    after = list(m.net.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
