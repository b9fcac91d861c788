"""ProbConserv's remaining input gaps: the GPME diffusivities' arguments, HybridCalibration's
grid test and saved states, LocalScale's inputs, and MetaGP's dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.probconserv.calibration import HybridCalibration
from bayesphys.probconserv.conditional import LocalScale, fit_parameter_map
from bayesphys.probconserv.metagp import MetaGP
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


# --- HybridCalibration.matches and from_state, LocalScale ----------------------------------------


def _local() -> LocalScale:
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(12, 2, 5, generator=g, dtype=F64)
    mass, theta = torch.rand(12, 2, generator=g, dtype=F64), torch.rand(12, generator=g, dtype=F64)
    pmap = fit_parameter_map(mean, mass, theta, (0.0, 1.0), rank=2)
    absz = {"prior": torch.rand(8, 2, 5, generator=g, dtype=F64)}
    absz["post"] = absz["prior"] * 0.5
    u = torch.rand(8, generator=g, dtype=F64)
    return LocalScale(pmap, u, absz, {"prior": 0.3, "post": 0.3}, {"prior": {}, "post": {}})


def _calibration(local: LocalScale | None = None) -> HybridCalibration:
    return HybridCalibration(
        t=torch.tensor([0.25, 0.5], dtype=F64),
        x=torch.linspace(0.0, 1.0, 5, dtype=F64),
        err_root=torch.ones(2, 5, 3, dtype=F64),
        beta=0.5,
        trace_ratio=1.2,
        prior_scale=1.1,
        post_scale=0.9,
        cv_mse={(0, 0.5): 0.1},
        local=local,
    )


def test_matches_takes_lists_and_arrays_as_fit_hybrid_does():
    # lists failed with "'list' object has no attribute 'shape'"
    cal = _calibration()
    t, x = [0.25, 0.5], [0.0, 0.25, 0.5, 0.75, 1.0]
    assert cal.matches(t, x) and cal.matches(np.array(t), np.array(x))
    assert cal.matches(torch.tensor(t), torch.tensor(x))
    assert not cal.matches([0.25, 0.6], x) and not cal.matches(t, x[:4])
    with pytest.raises(TypeError, match=r"^x: expected a tensor or array, received str"):
        cal.matches(t, "grid")
    with pytest.raises(TypeError, match=r"^t: expected real values"):
        cal.matches(torch.tensor([0.25, 0.5]) + 0j, x)


def test_local_scale_refuses_lists_by_name():
    # a list failed with "'list' object has no attribute 'detach'"; ParameterMap refuses them
    local = _local()
    mean, mass = torch.rand(3, 2, 5, dtype=F64), torch.rand(3, 2, dtype=F64)
    assert local.scale(mean, mass, "prior").shape == (3, 2)
    with pytest.raises(TypeError, match=r"^mean: expected a Tensor, received list"):
        local.scale(mean.tolist(), mass, "prior")
    with pytest.raises(TypeError, match=r"^mass: expected a Tensor, received ndarray"):
        local.scale(mean, mass.numpy(), "prior")


def test_from_state_round_trips_with_and_without_a_local_scale():
    for cal in (_calibration(), _calibration(_local())):
        back = HybridCalibration.from_state(cal.state())
        assert torch.equal(back.x, cal.x) and back.beta == cal.beta
        assert (back.local is None) == (cal.local is None)
        if cal.local is not None:
            assert torch.equal(back.local.u, cal.local.u)
            assert torch.equal(back.local.pmap.coef, cal.local.pmap.coef)
    # an older state without the later fields still loads
    old = {k: v for k, v in _calibration().state().items() if k not in ("selection", "cv_se")}
    assert HybridCalibration.from_state(old).selection == "min"


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda d: d.pop("beta"), ValueError, r"^d: expected keys .*missing \['beta'\]"),
        (
            lambda d: d.update(betta=0.5),
            ValueError,
            r"^d: expected keys .*unknown key\(s\) \['betta'\]",
        ),
        (
            lambda d: d.update(t=[0.25, 0.5]),
            TypeError,
            r"^d\['t'\]: expected a tensor .*received list",
        ),
        (
            lambda d: d.update(beta="0.5"),
            TypeError,
            r"^d\['beta'\]: expected a real number .*received str",
        ),
        (lambda d: d.update(neighbours=-1), TypeError, r"^d\['neighbours'\]: expected an int >= 0"),
        (
            lambda d: d.update(mass_kappa="x"),
            TypeError,
            r"^d\['mass_kappa'\]: expected a real number or None",
        ),
        (lambda d: d.update(cv_mse=[0.1]), TypeError, r"^d\['cv_mse'\]: expected a dict"),
        (
            lambda d: d.update(selection="max"),
            ValueError,
            r"^d\['selection'\]: expected one of \('min', 'one_se'\)",
        ),
        (lambda d: d.update(local=3), TypeError, r"^d\['local'\]: expected a dict .*received int"),
    ],
)
def test_from_state_names_missing_unknown_and_mistyped_keys(change, error, match):
    # a missing key failed with "__init__() missing 1 required positional argument", an unknown
    # one with "unexpected keyword argument", a mistyped one at the first prediction
    d = _calibration().state()
    change(d)
    with pytest.raises(error, match=match):
        HybridCalibration.from_state(d)


def test_from_state_names_the_bad_keys_of_a_local_scale_state():
    # local: a bare KeyError 'pmap', and ParameterMap's constructor TypeError
    d = _calibration(_local()).state()
    del d["local"]["pmap"]["coef"]
    with pytest.raises(
        ValueError, match=r"^d\['local'\]\['pmap'\]: expected keys .*missing \['coef'\]"
    ):
        HybridCalibration.from_state(d)
    d = _calibration(_local()).state()
    del d["local"]["u"]
    with pytest.raises(ValueError, match=r"^d\['local'\]: expected keys .*missing \['u'\]"):
        HybridCalibration.from_state(d)
    with pytest.raises(TypeError, match=r"^d: expected a dict with keys"):
        LocalScale.from_state([1, 2])
    with pytest.raises(TypeError, match=r"^d: expected a dict with keys"):
        HybridCalibration.from_state(None)


# --- MetaGP's dtypes ------------------------------------------------------------------------------


def _sets(dtype):
    g = torch.Generator().manual_seed(0)
    xc = torch.rand(2, 5, 2, generator=g, dtype=F64).to(dtype)
    yc = torch.rand(2, 5, generator=g, dtype=F64).to(dtype)
    xt = torch.rand(2, 4, 2, generator=g, dtype=F64).to(dtype)
    return xc, yc, xt


def test_metagp_promotes_float32_inputs_to_its_float64():
    # the documented behaviour: the model computes in its own float64
    torch.manual_seed(0)
    gp = MetaGP((0.0, 0.0), (1.0, 1.0), width=4)
    xc, yc, xt = _sets(F64)
    mean, cov = gp.predict(xc, yc, xt)
    mean32, cov32 = gp.predict(xc.float(), yc.float(), xt.float())
    assert mean.dtype == cov.dtype == mean32.dtype == cov32.dtype == F64
    assert gp.loss(xc.float(), yc.float()).dtype == F64
    assert torch.allclose(
        mean32, gp.predict(xc.float().double(), yc.float().double(), xt.float().double())[0]
    )


def test_a_float32_metagp_refuses_float64_inputs_by_name():
    # "mat1 and mat2 must have the same dtype, but got Double and Float" named no argument
    torch.manual_seed(0)
    gp = MetaGP((0.0, 0.0), (1.0, 1.0), width=4).float()
    xc, yc, xt = _sets(F32)
    mean, cov = gp.predict(xc, yc, xt)
    assert mean.dtype == cov.dtype == F32
    with pytest.raises(
        TypeError, match=r"^xt: expected at most the MetaGP's precision torch.float32"
    ):
        gp.predict(xc, yc, xt.double())
    with pytest.raises(TypeError, match=r"^yc: expected at most the MetaGP's precision"):
        gp.loss(xc, yc.double())


@pytest.mark.parametrize("smooth", [0.0, -0.01, float("nan"), float("inf")])
def test_stefan_refuses_a_smooth_width_that_is_not_positive(smooth):
    # smooth = 0 divided by zero in diffusivity, a negative one flipped the surrogate step
    with pytest.raises(ValueError, match=r"^smooth: expected a"):
        Stefan(smooth=smooth)


def test_stefan_smooth_width_still_shapes_the_surrogate():
    u = torch.tensor([0.55, 0.6, 0.65], dtype=torch.float64)
    sharp, soft = Stefan(smooth=0.001), Stefan(smooth=0.1)
    assert float(sharp.diffusivity(u, 0.6)[0]) < float(soft.diffusivity(u, 0.6)[0])
    assert torch.allclose(sharp.diffusivity(u, 0.6)[1], torch.tensor(0.5, dtype=torch.float64))
