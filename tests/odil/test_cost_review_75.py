"""Cost review (round 75) of the glioma paths: work repeated per time step or per fit, and
the peak memory of the ArviZ export. Each test pins one fix structurally (a call count, the
peak of a fresh process) and checks the values against the formula the code used before."""

from __future__ import annotations

import pytest
import torch

import bayesphys
from bayesphys.odil import _glioma_fit
from bayesphys.problems import _fk_solver
from bayesphys.problems.fisher_kolmogorov import fk_forward, fk_forward_tangent, tissue_faces
from bayesphys.problems.glioma import brain_phantom
from bayesphys.problems.stencil import _div_flux

from ..memory_checks import linux_only, peak_rise_after

STEPS = 12


@pytest.fixture(scope="module")
def grid():
    """Faces, brain mask and a focal initial state of a 32 x 32 phantom at 4 mm (float64)."""
    ph = brain_phantom(32, 4.0)
    wm, gm = ph["wm"].double(), ph["gm"].double()
    faces = tissue_faces(wm, gm, dg_ratio=10.0)
    x = (torch.arange(32, dtype=torch.float64) + 0.5) * 4.0
    r2 = (x[:, None] - 60.0) ** 2 + (x[None, :] - 64.0) ** 2
    c0 = 0.5 * torch.exp(-r2 / 18.0)
    return faces, (wm + gm > 0.1).double(), c0


def _count_factors(monkeypatch) -> list:
    calls = []
    real = _fk_solver._logistic_factors

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(_fk_solver, "_logistic_factors", counted)
    return calls


def _old_strang(c, faces, dw, rho, dt, h, steps):
    """The Strang loop as it was: the logistic factors recomputed at every half-step."""
    scaled = [f * dw for f in faces]
    hs = [h, h]
    for _ in range(steps):
        c = _fk_solver._logistic_flow(c, rho, 0.5 * dt)
        c = _fk_solver._logistic_flow(c + dt * _div_flux(c, scaled, hs), rho, 0.5 * dt)
    return c


@pytest.mark.parametrize("rho", ["number", "tensor", "field"])
def test_strang_forward_computes_the_logistic_factors_once(monkeypatch, grid, rho):
    """A Strang solve computed the factors of its logistic half-steps (a dozen small tensor
    operations that depend on rho and the step only) twice per step; now once per solve,
    with the same map bit for bit."""
    faces, tissue, c0 = grid
    rate = {
        "number": 0.05,
        "tensor": torch.tensor(0.05, dtype=torch.float64),
        "field": 0.04 + 0.02 * tissue,
    }[rho]
    calls = _count_factors(monkeypatch)
    with torch.no_grad():
        new = fk_forward(
            c0, faces, 0.2, rate, t_end=40.0, steps=STEPS, spacing=4.0, scheme="strang"
        )
    assert len(calls) == 1
    monkeypatch.undo()
    old = _old_strang(c0, faces, 0.2, rate, 40.0 / STEPS, 4.0, STEPS)
    assert torch.equal(new, old)


def test_strang_forward_with_a_graph_through_rho_is_unchanged(monkeypatch, grid):
    """Where autograd records through rho (the exact Hessian of a glioma fit) the factors are
    still taken per half-step, so the gradient sums its terms in the same order as before."""
    faces, tissue, c0 = grid
    rho = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    calls = _count_factors(monkeypatch)
    new = fk_forward(c0, faces, 0.2, rho, t_end=40.0, steps=STEPS, spacing=4.0, scheme="strang")
    (g_new,) = torch.autograd.grad(new.sum(), rho)
    assert len(calls) == 2 * STEPS
    monkeypatch.undo()
    old = _old_strang(c0, faces, 0.2, rho, 40.0 / STEPS, 4.0, STEPS)
    (g_old,) = torch.autograd.grad(old.sum(), rho)
    assert torch.equal(new, old) and torch.equal(g_new, g_old)


def _old_tangent(c, dc, faces, dw, rho, ddw, drho, dt, h, steps):
    """fk_forward_tangent's Strang loop as it was (factors per half-step)."""
    scaled = [f * dw for f in faces]
    hs = [h, h]
    ddw, drho = ddw.reshape(-1, 1, 1), drho.reshape(-1, 1, 1)
    rho_t = torch.as_tensor(rho, dtype=c.dtype)
    for _ in range(steps):
        c, dc = _fk_solver._logistic_tangent(c, dc, rho_t, drho, 0.5 * dt)
        lap = _div_flux(torch.cat([c[None], dc], 0), scaled, hs)
        dc = dc + dt * (lap[1:] + ddw * lap[0] / dw)
        c = c + dt * lap[0]
        c, dc = _fk_solver._logistic_tangent(c, dc, rho_t, drho, 0.5 * dt)
    return c, dc


def test_strang_tangent_computes_the_logistic_factors_once(monkeypatch, grid):
    """The tangent-linear solve (every Levenberg-Marquardt step of a glioma fit) likewise:
    once per solve instead of twice per step, the same Jacobian columns bit for bit."""
    faces, tissue, c0 = grid
    dc0 = torch.randn((3, 32, 32), generator=torch.Generator().manual_seed(0)).double()
    dw, rho = torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.05, dtype=torch.float64)
    ddw = torch.tensor([0.2, 0.0, 0.0], dtype=torch.float64)
    drho = torch.tensor([0.0, 0.05, 0.0], dtype=torch.float64)
    calls = _count_factors(monkeypatch)
    c, dc = fk_forward_tangent(
        c0, dc0, faces, dw, rho, ddw, drho, t_end=40.0, steps=STEPS, spacing=4.0, scheme="strang"
    )
    assert len(calls) == 1
    monkeypatch.undo()
    c_old, dc_old = _old_tangent(c0, dc0, faces, dw, rho, ddw, drho, 40.0 / STEPS, 4.0, STEPS)
    assert torch.equal(c, c_old) and torch.equal(dc, dc_old)


def _count_jacobians(monkeypatch, model) -> list:
    calls = []
    real = type(model).jacobian

    def counted(self, theta):
        calls.append(1)
        return real(self, theta)

    monkeypatch.setattr(type(model), "jacobian", counted)
    return calls


def test_exact_laplace_covariance_forms_no_jacobian(monkeypatch, tiny_pet_model):
    """The exact-Hessian covariance formed the tangent-linear Jacobian (p + 1 forward solves)
    at every fit and used it only where the Hessian is not positive definite; now only there
    or for ``hessian="gn"``. The covariance is the old formula's, bit for bit."""
    m = tiny_pet_model
    calls = _count_jacobians(monkeypatch, m)
    cov = m.laplace_covariance("exact")
    assert calls == []
    cov_gn = m.laplace_covariance("gn")
    assert len(calls) == 1
    monkeypatch.undo()
    theta = m.fitted_theta()[0]
    he = torch.autograd.functional.hessian(m.loss, theta, vectorize=True)
    he = 0.5 * (he + he.T)
    old = torch.linalg.inv(0.5 * (he + he.T))
    assert torch.equal(cov, 0.5 * (old + old.T))
    _, jac = m.jacobian(theta)
    h = jac.T @ jac
    old_gn = torch.linalg.inv(0.5 * (h + h.T))
    assert torch.equal(cov_gn, 0.5 * (old_gn + old_gn.T))


def test_exact_laplace_covariance_falls_back_with_the_jacobian(monkeypatch, tiny_pet_model):
    """An exact Hessian that is not positive definite still falls back to J^T J (formed
    then), with the warning."""
    m = tiny_pet_model
    p = m.theta.numel()
    monkeypatch.setattr(
        torch.autograd.functional,
        "hessian",
        lambda *a, **k: -torch.eye(p, dtype=m.dtype),
    )
    calls = _count_jacobians(monkeypatch, m)
    with pytest.warns(bayesphys.BayesphysRuntimeWarning, match="not positive definite"):
        cov = m.laplace_covariance("exact")
    assert len(calls) == 1
    monkeypatch.undo()
    assert torch.equal(cov, m.laplace_covariance("gn"))


def test_exact_laplace_covariance_refuses_a_nan_theta_before_the_hessian(
    monkeypatch, tiny_pet_model
):
    """A NaN theta is refused by name before any Hessian work, as when the Jacobian was
    formed first."""
    m = tiny_pet_model
    hessians = []
    monkeypatch.setattr(torch.autograd.functional, "hessian", lambda *a, **k: hessians.append(1))
    monkeypatch.setattr(m, "theta", torch.full_like(m.theta, float("nan")))
    monkeypatch.setattr(m, "recalibration", None)
    with pytest.raises(ValueError, match="theta"):
        _glioma_fit.hessian_covariance(m, "exact")
    assert hessians == []


_SETUP = """
import torch
from bayesphys.odil import GliomaModel
from bayesphys.problems.glioma import brain_phantom
ph = brain_phantom(192, 4.0)
i, j = torch.meshgrid(torch.arange(192), torch.arange(192), indexing="ij")
r2 = (i - 96) ** 2 + (j - 60) ** 2
labels = (r2 <= 25).long() + (r2 <= 9).long()
m = GliomaModel(ph["wm"], ph["gm"], labels, spacing=4.0, crop_margin_mm={margin})
m.theta = m._theta0()
m.theta_cov = 1e-4 * torch.eye(len(m.theta), dtype=m.dtype)
run = {call}
run(2)  # first-call allocations (ArviZ's import) out of the measurement
"""


def _peak_rise_mb(margin: str, call: str, n: int) -> float:
    """Rise (MB) of the peak resident memory of a fresh process over one call ``run(n)`` on a
    192 x 192 phantom model (:func:`~tests.memory_checks.peak_rise_after`)."""
    return peak_rise_after(_SETUP.format(margin=margin, call=call), f"out = run({n})")


def test_inference_data_export_hands_its_maps_over(monkeypatch, model):
    """The draw-sized arrays of the export (the maps, their log likelihood, the replicated
    labels, made for it alone) are handed to ``build_inference_data`` to be taken without a
    copy, and the replicated labels are int8 from the start; the exported values are those
    of the maps and of ``replicate_observations`` (long there)."""
    from bayesphys.inference_data import _Fresh
    from bayesphys.odil import glioma_posterior

    seen = {}
    real = glioma_posterior.build_inference_data

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(glioma_posterior, "build_inference_data", spy)
    idata = model.to_inference_data(num_samples=3)
    assert isinstance(seen["posterior"]["c"], _Fresh)
    assert all(isinstance(v, _Fresh) for v in seen["log_likelihood"].values())
    labels = seen["posterior_predictive"]["labels"]
    assert isinstance(labels, _Fresh) and labels.tensor.dtype == torch.int8
    c = torch.as_tensor(idata.posterior["c"].values)
    th = model.theta_draws(3, 2, 0)
    with torch.no_grad():
        old = model.full(torch.stack([torch.stack([model._forward(t) for t in ch]) for ch in th]))
    assert torch.equal(c, old)
    rep = model.replicate_observations(old, seed=0)["labels"]
    assert rep.dtype == torch.long
    exported = torch.as_tensor(idata.posterior_predictive["labels"].values)
    assert torch.equal(exported, rep.to(torch.int8))


@pytest.mark.slow  # two fresh processes, each importing bayesphys and ArviZ, 100 solves
@linux_only
def test_field_draws_peak_is_the_maps_themselves():
    """On a 192 x 192 grid at 4 mm, 100 draws are maps of 28 MB (float64). ``posterior`` of a
    model on the whole grid (``crop_margin_mm=None``) held the list of crop maps and then
    their stack beside the embedded maps: a rise of twice the maps (57 MB measured), now
    about the maps (31 MB). ``to_inference_data`` (2 x 50 draws) copied its maps and their
    log likelihood into the InferenceData and made the replicated labels int64 before int8:
    2.1 times the two maps (120 MB measured), now about the two maps (60 MB)."""
    maps = 100 * 192 * 192 * 8 / 2**20
    post = _peak_rise_mb(margin="None", call="lambda n: m.posterior(num_samples=n)", n=100)
    assert post < 1.4 * maps, (post, maps)
    export = _peak_rise_mb(margin="24.0", call="lambda n: m.to_inference_data(num_samples=n)", n=50)
    assert export < 1.4 * 2 * maps, (export, 2 * maps)
