"""Review 76: the docstrings' equations and shapes of the ODIL / glioma part as oracles.

Each test computes what a docstring states from its formula, independently of the code
(naive loops, numpy / scipy), and compares. Docstring fixes of this round are pinned by an
oracle of the corrected statement (each test says what the old text claimed instead).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bayesphys.odil import (
    ColouredJacobian,
    DiscreteProblem,
    GliomaModel,
    fit_recalibration_map,
    minimize,
    model_plan,
)
from bayesphys.odil.solvers import jvp_vjp
from bayesphys.problems.glioma import (
    GLIOMA_PRIOR,
    brain_phantom,
    segment,
    synthetic_patient,
)

F64 = torch.float64


def _stencil_problem(n: int = 13) -> DiscreteProblem:
    """A nonlinear 1-d two-point stencil with a scalar parameter (radius 1)."""

    def res(f, p):
        u = f["u"]
        return {
            "pde": u[1:] - 2 * u[:-1] + p["a"] * u[1:] ** 2,
            "data": u - 1.0,
            "prior": p["a"].reshape(1),
        }

    return DiscreteProblem({"u": (n,)}, {"a": 0.3}, res, dtype=F64)


def test_a_coloured_jacobian_costs_three_products_per_colour_and_one_check():
    """``minimize``'s docstring said the sparse Jacobian takes ``2C`` products and
    ``ColouredJacobian.num_colours`` that it is "the number of Jacobian-vector products one
    Jacobian costs" (``C``); the assembly takes three per colour (indicator, index, squared
    index) and one random-tangent check, ``3C + 1``, as the sparse module and docs/odil.md say.
    The Jacobian itself is the dense forward-mode one."""
    prob = _stencil_problem()
    x = prob.initial() + 0.1
    r, jv, _ = jvp_vjp(prob.residual, x)
    tangents = []

    def counting_jv(v):
        tangents.append(1 if v.ndim == 1 else v.shape[0])
        return jv(v)

    cj = ColouredJacobian(prob, 1)
    jac = cj(counting_jv, r.numel())
    assert sum(tangents) == 3 * cj.num_colours + 1
    dense = torch.func.jacfwd(prob.residual)(x)
    torch.testing.assert_close(torch.as_tensor(jac.toarray()), dense, rtol=0, atol=1e-14)


def test_the_cg_path_takes_no_forward_mode_products(monkeypatch):
    """The solvers' module docstring said :math:`Jv` is a forward-mode product
    (``torch.func.jvp``) and :math:`J^\\top w` a ``torch.func.vjp``; both are reverse-mode
    products on one recorded graph (``torch.autograd.grad``, the double-vjp of
    ``_jacobian.jvp_vjp``). With every forward-mode entry point disabled the matrix-free GN step
    is still the dense least-squares step (a linear problem: one exact step)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(9, 5, generator=g, dtype=F64)
    b = torch.randn(9, generator=g, dtype=F64)

    def res(f, p):
        return {"r": a @ torch.cat([f["u"], p["t"].reshape(1)]) - b}

    prob = DiscreteProblem({"u": (4,)}, {"t": 0.0}, res, dtype=F64)

    def forbidden(*args, **kwargs):
        raise AssertionError("a forward-mode or torch.func product was called")

    monkeypatch.setattr(torch.func, "jvp", forbidden)
    monkeypatch.setattr(torch.func, "vjp", forbidden)
    monkeypatch.setattr(torch.autograd.forward_ad, "make_dual", forbidden)
    x, _ = minimize(prob, method="gn", steps=1, linear_solver="cg", cg_tol=1e-14, tol=None)
    want = torch.linalg.lstsq(a, b[:, None]).solution[:, 0]
    torch.testing.assert_close(x, want, rtol=1e-10, atol=1e-12)


def test_odils_mean_loss_is_reached_with_weights_sqrt_2_over_n():
    """``problem.py`` said weights :math:`1/\\sqrt{N_k}` turn the loss into ODIL's
    :math:`\\sum_k \\mathrm{mean}(r_k^2)`; the loss is :math:`\\tfrac12\\sum_k\\lVert r_k
    \\rVert^2`, so those weights give half of it and :math:`\\sqrt{2/N_k}` give it exactly."""
    g = torch.Generator().manual_seed(1)
    raw = {"pde": torch.randn(7, 5, generator=g, dtype=F64), "data": torch.randn(3, generator=g)}
    raw["data"] = raw["data"].to(F64)
    odil = sum(float(np.mean(v.numpy() ** 2)) for v in raw.values())

    def make(weight):
        def res(f, p):
            return {k: (v + 0 * p["c"]) * weight(v.numel()) for k, v in raw.items()}

        return DiscreteProblem({}, {"c": 0.0}, res, dtype=F64)

    x = torch.zeros(1, dtype=F64)
    exact = float(make(lambda n: math.sqrt(2 / n)).loss(x))
    half = float(make(lambda n: 1 / math.sqrt(n)).loss(x))
    assert exact == pytest.approx(odil, rel=1e-14)
    assert half == pytest.approx(0.5 * odil, rel=1e-14)


def _index_distance_oracle(pos: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Euclidean distance in voxel index units from every voxel to the nearest positive
    voxel, by brute force over the positive voxels."""
    pts = np.argwhere(pos)
    grid = np.indices(pos.shape).reshape(pos.ndim, -1).T
    d = np.sqrt(((grid[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).min(1)
    return d.reshape(pos.shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_model_plan_fallback_ranks_by_distance_in_voxel_index_units(seed):
    """``model_plan``'s fallback beyond a positive support smaller than the plan takes the
    brain voxels nearest to the support, at the Euclidean distance in voxel index units
    (the convention was not stated; ``standard_margin_plan`` measures mm). Oracle: brute-force
    index distances, a volume that ends between two distinct distances (no ties), and the
    support's own ranking kept."""
    rng = np.random.default_rng(seed)
    shape = (9, 13)
    brain = rng.random(shape) < 0.8
    pos = np.zeros(shape, dtype=bool)
    for i, j in rng.integers(0, shape, size=(3, 2)):
        pos[i, j] = brain[i, j] = True
    score = np.where(pos, rng.uniform(0.1, 1.0, shape), 0.0)
    d = _index_distance_oracle(pos, brain)
    outside = np.sort(np.unique(d[brain & ~pos]))
    cut = outside[len(outside) // 3]  # every voxel at distance <= cut, none beyond it
    want = brain & (pos | (d <= cut))
    plan = model_plan(torch.as_tensor(score), torch.as_tensor(brain), int(want.sum()))
    assert np.array_equal(plan.numpy(), want)
    # one voxel at distance 1 along axis 1 vs one at 2 along axis 0: index units pick the
    # first, mm with spacing (1, 3) would pick the second
    line = np.zeros((5, 5), dtype=bool)
    line[2, 2] = True
    sc = torch.as_tensor(np.where(line, 1.0, 0.0))
    plan = model_plan(sc, torch.ones(5, 5, dtype=torch.bool), 5)
    assert bool(plan[2, 1] and plan[2, 3] and plan[1, 2] and plan[3, 2]) and not bool(plan[0, 2])


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_synthetic_patients_draw_dw_and_rho_log_uniform_in_the_prior_boxes(seed):
    """``GLIOMA_PRIOR`` was called "Uniform prior boxes"; the patients' :math:`D_w` and
    :math:`\\rho` are log-uniform in them (module docstring): the first two float32 uniforms of
    the seed's stream mapped by :math:`\\exp(\\log lo + u\\log(hi/lo))` (a uniform draw,
    :math:`lo + u(hi - lo)`, gives other values)."""
    gen = torch.Generator().manual_seed(seed)
    u = [float(torch.rand((), generator=gen, dtype=torch.float32)) for _ in range(2)]
    p = synthetic_patient(seed, phantom=brain_phantom(16, 8.0), refine=1, future_days=0.0)
    for k, (key, ui) in enumerate(zip(("dw", "rho"), u)):
        lo, hi = GLIOMA_PRIOR[key]
        want = math.exp(math.log(lo) + ui * math.log(hi / lo))
        assert p["truth"][key] == pytest.approx(want, rel=1e-12), k
        assert lo <= p["truth"][key] <= hi


def test_segment_labels_the_thresholds_inside_the_brain_and_zero_outside():
    """``segment``: 2 where ``c >= th_up``, 1 where ``th_down <= c < th_up``, else 0 --
    inside the brain; outside it 0 whatever ``c`` (the mask was not in the docstring's rule)."""
    c = torch.tensor([[0.0, 0.25, 0.3, 0.6, 0.9], [0.0, 0.25, 0.3, 0.6, 0.9]], dtype=F64)
    brain = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    want = [
        [0 if b == 0 else (2 if v >= 0.6 else 1 if v >= 0.25 else 0) for v, b in zip(cr, br)]
        for cr, br in zip(c.tolist(), brain.tolist())
    ]
    lab = segment(c, 0.6, 0.25, brain)
    assert lab.dtype == torch.int64 and lab.shape == c.shape
    assert lab.tolist() == want == [[0, 1, 1, 2, 2], [0, 0, 0, 0, 0]]


def test_probit_and_pet_residuals_are_the_stated_likelihood_terms():
    """The glioma data residuals against scipy: for each threshold and brain voxel,
    :math:`r^2\\kappa = -2\\log\\Phi(s(c_i-\\theta_k)/\\sigma)` with :math:`s = \\pm1` by the
    label, :math:`\\sigma = \\sqrt{\\sigma_s^2 + (\\alpha h)^2}`, :math:`\\kappa =
    (\\lambda/h)^d`, to within the stated root offset :math:`2\\cdot10^{-6}\\sqrt f` (not
    stated before: the docstrings gave the bare root); PET :math:`(s_{pet}c_i -
    \\mathrm{pet}_i)/\\sqrt{\\sigma_{pet}^2 + s_{pet}^2(\\alpha h)^2}/\\sqrt\\kappa` on lesion
    voxels; shapes ``[n_brain]`` and ``[n_lesion]`` of the crop."""
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0), refine=1)
    h, alpha, lam, sig_s = 8.0, 0.01, 12.0, 0.07
    m = GliomaModel.from_patient(
        p, use_pet=True, noise_corr_mm=lam, seg_sigma=sig_s, model_error=alpha
    )
    th = m._theta0()
    res = {k: v.detach().numpy() for k, v in m.residuals(th).items()}
    c = m.forward(th).detach().numpy()
    brain, lab = m._brain.numpy() > 0, m._labels.numpy()
    kappa = (lam / h) ** 2
    sig = math.hypot(sig_s, alpha * h)
    for k, thr in ((1, p["th_down"]), (2, p["th_up"])):
        s = np.where(lab[brain] >= k, 1.0, -1.0)
        f = -2 * stats.norm.logcdf(s * (c[brain] - thr) / sig)
        got = res[f"seg{k}"]
        assert got.shape == (int(brain.sum()),) and f.max() > 1.0  # some voxels misfit
        assert np.all(np.abs(got**2 * kappa - f) <= 2e-6 * np.sqrt(f) + 1e-12 * (1 + f))
    lesion = lab > 0
    assert lesion.any()
    pet_sd = math.hypot(0.05, 0.75 * alpha * h)
    want = (0.75 * c[lesion] - m._pet.numpy()[lesion]) / pet_sd / math.sqrt(kappa)
    assert res["pet"].shape == want.shape
    np.testing.assert_allclose(res["pet"], want, rtol=1e-12, atol=1e-14)


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(10, 40),
    p=st.integers(1, 3),
    level=st.sampled_from([0.5, 0.8, 0.9]),
    shift=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_recalibration_map_is_the_stated_mean_and_conformal_order_statistic(
    n, p, level, shift, seed
):
    """``fit_recalibration_map``: :math:`b_j = \\bar z_j` (0 without the shift) and
    :math:`s_j = |z_{\\cdot j} - b_j|_{(\\lceil (n+1)\\alpha\\rceil)} /
    \\Phi^{-1}((1+\\alpha)/2)`, the :math:`\\lceil (n+1)\\alpha\\rceil`-th smallest absolute
    residual, from numpy sorting and scipy's normal quantile."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, p)) * rng.uniform(0.3, 3.0, p) + rng.normal(size=p)
    b, s = fit_recalibration_map(z, level, shift=shift)
    assert b.shape == s.shape == (p,) and b.dtype == s.dtype == F64
    want_b = z.mean(0) if shift else np.zeros(p)
    k = math.ceil((n + 1) * level)
    want_s = np.sort(np.abs(z - want_b), axis=0)[k - 1] / stats.norm.ppf((1 + level) / 2)
    np.testing.assert_allclose(b.numpy(), want_b, rtol=0, atol=1e-14)
    np.testing.assert_allclose(s.numpy(), want_s, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_linear_gaussian_posterior_and_evidence_are_the_stated_formulas(dtype):
    """``posterior_for``: :math:`\\mu = K H^\\top (HKH^\\top + \\sigma^2 I)^{-1} y`,
    :math:`\\Sigma = K - KH^\\top(\\dots)^{-1}HK` plus the stated nugget ``1e-9 * outputscale``
    on the diagonal, :math:`K_{ij} = s^2\\exp(-(x_i-x_j)^2/2\\ell^2)` (``outputscale`` the
    variance :math:`s^2`), computed in float64 and returned in ``x``'s dtype;
    ``log_marginal_likelihood`` is :math:`\\log\\mathcal N(y\\mid 0, HKH^\\top+\\sigma^2 I)`.
    Oracle: dense numpy on a non-uniform grid with unsorted sensors, and scipy's
    multivariate normal."""
    from bayesphys.problems.linear_gaussian import log_marginal_likelihood, posterior_for

    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 1, 11))
    idx = np.array([7, 2, 9, 4])
    y = rng.normal(size=4)
    noise, ell, s2 = 0.2, 0.15, 1.7
    h = np.eye(11)[idx]  # the observation operator H [m, n]
    xt = torch.as_tensor(x, dtype=dtype)
    yt = torch.as_tensor(y, dtype=dtype)
    post = posterior_for(xt, torch.as_tensor(idx), yt, noise, ell, s2)
    assert post.mean.dtype == dtype and post.mean.shape == (11,)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 0, "atol": 1e-6}
    # the data in dtype (float32 rounds y and x first), the algebra in float64
    xd, yd = xt.double().numpy(), yt.double().numpy()
    kd = s2 * np.exp(-0.5 * (xd[:, None] - xd[None, :]) ** 2 / ell**2)
    ad = h @ kd @ h.T + noise**2 * np.eye(4)
    mu = kd @ h.T @ np.linalg.solve(ad, yd)
    cov = kd - kd @ h.T @ np.linalg.solve(ad, h @ kd) + 1e-9 * s2 * np.eye(11)
    np.testing.assert_allclose(post.mean.double().numpy(), mu, **tol)
    np.testing.assert_allclose(post.covariance.to_dense().double().numpy(), cov, **tol)
    lml = log_marginal_likelihood(xt, torch.as_tensor(idx), yt, noise, ell, s2)
    assert lml.dtype == dtype and lml.shape == ()
    want = stats.multivariate_normal(np.zeros(4), ad).logpdf(yd)
    assert float(lml) == pytest.approx(want, rel=1e-12 if dtype == torch.float64 else 1e-6)


@pytest.mark.parametrize(("steps", "every"), [(12, 3), (10, 4)])
def test_fk_forward_trajectory_starts_at_the_masked_initial_state(steps, every):
    """``fk_forward(..., save_every=k)`` returns ``traj [n_saved, *grid]`` whose layout was
    not stated (``fit_odil`` relies on it): ``traj[0]`` the initial state masked by
    ``tissue``, ``traj[j]`` the state after ``j k`` steps, ``1 + steps // k`` levels. Oracle:
    separate solves of ``j k`` steps of the same ``dt``."""
    from bayesphys.problems.fisher_kolmogorov import fk_forward, initial_condition, tissue_faces

    ph = brain_phantom(16, 8.0)
    faces = tissue_faces(ph["wm"], ph["gm"])
    c0 = initial_condition((16, 16), torch.tensor([60.0, 64.0], dtype=F64), 8.0, width=12.0)
    dt = 2.0
    kw = {"spacing": 8.0, "tissue": ph["brain"], "scheme": "strang"}
    c, traj = fk_forward(
        c0, faces, 0.3, 0.05, t_end=dt * steps, steps=steps, save_every=every, **kw
    )
    assert traj.shape == (1 + steps // every, 16, 16)
    assert torch.equal(traj[0], c0 * ph["brain"])
    assert not torch.equal(traj[0], c0)  # the mask matters here
    for j in range(1, len(traj)):
        n = j * every
        want = fk_forward(c0, faces, 0.3, 0.05, t_end=dt * n, steps=n, **kw)
        torch.testing.assert_close(traj[j], want, rtol=1e-13, atol=1e-15)
    assert torch.equal(traj[-1], c) == (steps % every == 0)
