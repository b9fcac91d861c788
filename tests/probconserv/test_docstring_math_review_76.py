"""Review 76: the docstrings' equations, conventions and shapes as oracles (ProbConserv and the
GPME problems).

Each test computes what a docstring states straight from its formula (loops, numpy, dense
matrices, autograd of the exact solution) and compares. The first group pins docstrings that
were corrected or completed in this review (each says what the old text left open or got
wrong); the second pins formulas found right that no earlier test compared with an
independent computation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys import GaussianPosterior
from bayesphys.probconserv import (
    conservation_update,
    conserve_latent_mixture,
    fit_parameter_map,
    local_coverage_scale,
    trapezoid_weights,
)
from bayesphys.probconserv.calibration import coverage_scale
from bayesphys.probconserv.candidate_selection import paired_se
from bayesphys.probconserv.conditional import binned_coverage_error
from bayesphys.problems.gpme import (
    Diffusion,
    PorousMedium,
    Stefan,
    make_dataset,
    stefan_front,
)

F64 = torch.float64
Z90 = 1.6448536269514722


# -- docstrings corrected or completed --------------------------------------------------------


def test_calibration_hook_front_summary_is_the_interpolated_crossing(monkeypatch):
    """``_calibration``'s module docstring said the front summary is "the last point with
    u >= 0.25"; the hook builds ``front_position(x, level=0.25)``, which reads the crossing of
    0.25 between that point and the next by linear interpolation. On a field whose last point
    >= 0.25 is x[2] the summary reads between x[2] and x[3], not x[2]."""
    import bayesphys.diagnostics.calibrate as diag_calibrate
    import bayesphys.probconserv.model as model_module
    from bayesphys.probconserv._calibration import calibrate_rows

    class _Model:  # the hook's use of the model, without training one
        def __init__(self, *args, **kwargs):
            self.problem, self.var_scale, self.device = Stefan(), 1.0, torch.device("cpu")

        def fit(self, **kwargs):
            return None

        def calibrate(self, **kwargs):
            return 1.0

    seen = {}

    def rows(simulate, infer, summaries, **kwargs):
        seen.update(summaries)
        return []

    monkeypatch.setattr(model_module, "ProbConserv", _Model)
    monkeypatch.setattr(diag_calibrate, "calibration_rows", rows)
    assert calibrate_rows(True, 0) == []
    x = Stefan().grid(201)
    u = torch.zeros(201, dtype=F64)
    u[:3] = torch.tensor([1.0, 0.6, 0.3], dtype=F64)
    u[3] = 0.1
    front = float(seen["front"](u[None])[0])
    want = float(x[2] + (0.3 - 0.25) / (0.3 - 0.1) * (x[3] - x[2]))
    assert front == pytest.approx(want, rel=1e-12)
    assert front > float(x[2]) + 1e-4  # not the last point with u >= 0.25
    # the probes are the grid points x = 0.1 and 0.2 of the 201-point grid
    probe = torch.arange(201, dtype=F64)[None]
    assert float(seen["u(x=0.1)"](probe)[0]) == 20.0 and float(x[20]) == pytest.approx(0.1)
    assert float(seen["u(x=0.2)"](probe)[0]) == 40.0 and float(x[40]) == pytest.approx(0.2)


def test_binned_coverage_error_bins_parameters_beyond_the_range_into_the_end_bins():
    """``binned_coverage_error`` said only "equal-width bins of theta"; ``fit_local_scale``
    calls it with the training range while its calibration functions come from the range
    widened by ``range_margin``. Now stated: theta is clipped to [lo, hi] (beyond the ends in
    the end bins) and one on an inner edge counts in the bin below. Oracle: the stated binning
    by hand (dropping the out-of-range functions instead gives another value)."""
    gen = torch.Generator().manual_seed(0)
    m, nt, n = 9, 2, 5
    absz = torch.randn(m, nt, n, generator=gen, dtype=F64).abs() * 1.4
    scale = 0.5 + torch.rand(m, nt, generator=gen, dtype=F64)
    # two below lo = 1, two above hi = 4, one on the inner edge 2 (of bins [1,2], (2,3], (3,4])
    theta = torch.tensor([0.8, 0.95, 1.5, 2.0, 2.4, 3.1, 3.9, 4.05, 4.3], dtype=F64)
    inside = (absz <= Z90 * scale.sqrt()[..., None]).double().mean((-1, -2)).numpy()
    bin_of = [0, 0, 0, 0, 1, 2, 2, 2, 2]  # clipped ends, the edge 2.0 in the bin below
    dev = [inside[[i for i in range(m) if bin_of[i] == b]].mean() - 0.9 for b in range(3)]
    want = math.sqrt(sum(d * d for d in dev) / 3)
    got = binned_coverage_error(absz, scale, theta, 1.0, 4.0, bins=3)
    assert got == pytest.approx(want, rel=1e-12)
    keep = [2, 3, 4, 5, 6]  # the reading that drops functions beyond the range differs
    dropped = [inside[[i for i in keep if bin_of[i] == b]].mean() - 0.9 for b in range(3)]
    assert abs(math.sqrt(sum(d * d for d in dropped) / 3) - got) > 1e-3


@pytest.mark.parametrize("level", [0.9, 0.68])
def test_pooled_local_scale_is_an_order_statistic_not_the_interpolated_quantile(level):
    """``bandwidth = inf`` was "the pooled scale (the previous method)"; the previous method
    (``coverage_scale``) interpolates between order statistics, while the local scale takes
    the ceil(level M N)-th smallest |z| of each slice. Both stated now; the oracle is the
    order statistic, and on this set the interpolated quantile differs from it."""
    gen = torch.Generator().manual_seed(1)
    m, nt, n = 7, 3, 5
    absz = torch.randn(m, nt, n, generator=gen, dtype=F64).abs()
    u = torch.rand(m, generator=gen, dtype=F64) * 2 - 1
    s = local_coverage_scale(absz, u, torch.tensor([-0.3, 0.8], dtype=F64), math.inf, level=level)
    assert s.shape == (2, nt) and s.dtype == F64
    k = math.ceil(level * m * n - 1e-9)
    zq = float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=F64)))
    for j in range(nt):
        q = np.sort(absz[:, j].numpy().ravel())[k - 1]
        np.testing.assert_allclose(s[:, j].numpy(), (q / zq) ** 2, rtol=1e-14)
    if level == 0.9:  # coverage_scale's interpolated quantile: another number here
        assert abs(coverage_scale(absz[:, 0]) - float(s[0, 0])) > 1e-6


def test_paired_se_uses_the_sample_sd():
    """``paired_se``'s ``sd_v`` did not say which sd: it is the sample sd (1 / (V - 1)),
    stated now; the population sd gives a different standard error."""
    gen = torch.Generator().manual_seed(2)
    v = 6
    per = {(0, 1.0): torch.rand(v, generator=gen, dtype=F64)}
    per[(20, 0.5)] = per[(0, 1.0)] + torch.randn(v, generator=gen, dtype=F64)
    se = paired_se(per, (0, 1.0))
    diff = (per[(20, 0.5)] - per[(0, 1.0)]).numpy()
    assert se[(20, 0.5)] == pytest.approx(np.std(diff, ddof=1) / math.sqrt(v), rel=1e-12)
    assert se[(20, 0.5)] != pytest.approx(np.std(diff, ddof=0) / math.sqrt(v), rel=1e-3)
    assert se[(0, 1.0)] == 0.0


@pytest.mark.parametrize("ridge", [0.05, 1.0])
def test_parameter_map_is_the_stated_ridge_on_sample_sd_features(ridge):
    """``fit_parameter_map``: min |Phi w - theta|^2 + ridge V |w_1:|^2 with an unpenalized
    intercept on features [psi, psi^2, b, b^2] (psi the scores on the top ``rank`` principal
    components of the validation means) standardised by their mean and sample sd (the sd's
    convention was not stated; with the population sd the penalty, and so the fit, differ).
    Oracle: numpy SVD and the penalised normal equations (predictions do not depend on the
    components' signs)."""
    gen = torch.Generator().manual_seed(3)
    v, nt, n, rank = 24, 2, 6, 2
    mean = torch.randn(v, nt, n, generator=gen, dtype=F64)
    mass = torch.randn(v, nt, generator=gen, dtype=F64)
    theta = 1 + 4 * torch.rand(v, generator=gen, dtype=F64)
    pm = fit_parameter_map(mean, mass, theta, (1.0, 5.0), rank=rank, ridge=ridge)
    x = mean.numpy().reshape(v, -1)
    center = x.mean(0)
    vh = np.linalg.svd(x - center, full_matrices=False)[2]

    def features(mu, b):
        psi = (mu.reshape(mu.shape[0], -1) - center) @ vh[:rank].T
        return np.concatenate([psi, psi**2, b, b**2], 1)

    f = features(x, mass.numpy())

    def fit(ddof):
        mu_f, sd_f = f.mean(0), f.std(0, ddof=ddof)
        design = np.concatenate([np.ones((v, 1)), (f - mu_f) / sd_f], 1)
        pen = ridge * v * np.eye(design.shape[1])
        pen[0, 0] = 0.0
        w = np.linalg.solve(design.T @ design + pen, design.T @ theta.numpy())
        return lambda mu, b: (
            np.concatenate([np.ones((mu.shape[0], 1)), (features(mu, b) - mu_f) / sd_f], 1) @ w
        )

    new_mean = torch.randn(5, nt, n, generator=gen, dtype=F64)
    new_mass = torch.randn(5, nt, generator=gen, dtype=F64)
    got = pm(new_mean, new_mass).numpy()
    np.testing.assert_allclose(got, fit(1)(new_mean.numpy(), new_mass.numpy()), atol=1e-10)
    assert np.abs(got - fit(0)(new_mean.numpy(), new_mass.numpy())).max() > 1e-4


def test_dataset_points_are_time_major():
    """``make_dataset`` did not say how the time x position design is flattened: point
    ``i * n_x + j`` is (time i, position j), stated now. Checked with unequal counts (so a
    reshape in the other order cannot pass) against the exact solution."""
    d = make_dataset("pme", 2, seed=3, n_t_context=3, n_x_context=4, n_t_target=2, n_x_target=5)
    for pts, vals, nt, nx in ((d.x_context, d.y_context, 3, 4), (d.x_target, d.y_target, 2, 5)):
        grid = pts.reshape(2, nt, nx, 2)
        t, x = grid[..., 0], grid[..., 1]
        assert bool((t == t[:, :, :1]).all()) and bool((x == x[:, :1, :]).all())
        assert bool((t[:, 1:, 0] > t[:, :-1, 0]).all()) and bool((x[:, 0, 1:] > x[:, 0, :-1]).all())
        for b in range(2):
            for i in range(nt):
                for j in range(nx):
                    u = float(PorousMedium().solution(t[b, i, 0], x[b, 0, j], d.params[b]))
                    assert float(vals.reshape(2, nt, nx)[b, i, j]) == u


# -- formulas found right, pinned against an independent computation ------------------------


def _flux_by_autograd(prob, name: str, t: float, x: float, param: float) -> float:
    """F = -k(u) u_x at (t, x) from autograd of the exact solution, with the exact k(u)
    (diffusion k, PME u^m, Stefan 1{u >= u*}: 1 behind the front, where u >= u*)."""
    xx = torch.tensor(x, dtype=F64, requires_grad=True)
    u = prob.solution(torch.tensor(t, dtype=F64), xx, param)
    (ux,) = torch.autograd.grad(u, xx)
    u = float(u.detach())
    k = {"diffusion": param, "pme": max(u, 0.0) ** param, "stefan": float(u >= param)}[name]
    return -k * float(ux)


@settings(deadline=None, max_examples=30)
@given(
    name=st.sampled_from(["diffusion", "pme", "stefan"]),
    x0=st.floats(0.0, 0.4),
    length=st.floats(0.3, 1.2),
    t=st.floats(0.02, 1.5),
    frac=st.floats(0.0, 1.0),
)
def test_boundary_flux_is_minus_k_u_x_at_the_ends(name, x0, length, t, frac):
    """The docstrings' ``F = -k(u) u_x`` and ``b'(t) = F|_{x0} - F|_{x1}`` (net inflow): the
    closed-form ``boundary_flux`` against -k(u) u_x of the exact solution at the two ends,
    by autograd (the existing tests compare it with db/dt only, which a sign error in both
    the mass and the flux would pass)."""
    cls, (lo, hi) = {
        "diffusion": (Diffusion, (0.2, 5.0)),
        "pme": (PorousMedium, (0.5, 6.0)),
        "stefan": (Stefan, (0.1, 0.9)),
    }[name]
    param = lo + frac * (hi - lo)
    prob = cls(x_range=(x0, x0 + length))
    front = {
        "diffusion": lambda: math.inf,
        "pme": lambda: t,
        "stefan": lambda: float(stefan_front(t, param)),
    }[name]()
    for end in (x0, x0 + length):  # an end on the front has no one-sided flux: skip it
        if abs(end - front) < 1e-6:
            return
    want = _flux_by_autograd(prob, name, t, x0, param) - _flux_by_autograd(
        prob, name, t, x0 + length, param
    )
    got = float(prob.boundary_flux(t, param))
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_relative_sigma_g_is_per_row_in_units_of_its_own_prior_mass_sd():
    """``relative=True``: each row j's sd is sigma_g sqrt((G Sigma G^T)_jj), per batch entry
    (a batch of G's, two rows, per-entry sigma_g): against the dense formulas
    S = G Sigma G^T + diag(sigma^2), K = Sigma G^T S^-1 (the existing relative test has one
    row)."""
    gen = np.random.default_rng(4)
    b, m, n = 3, 2, 7
    a = gen.standard_normal((b, n, n))
    cov = a @ a.transpose(0, 2, 1) / n + 0.1 * np.eye(n)
    mu, g = gen.standard_normal((b, n)), gen.random((b, m, n))
    rhs, rel = gen.standard_normal((b, m)), 0.2 + gen.random((b, 1))
    prior = GaussianPosterior(torch.tensor(mu), torch.tensor(cov), event_shape=(n,))
    post = conservation_update(
        prior, torch.tensor(g), torch.tensor(rhs), torch.tensor(rel), relative=True
    )
    assert post.mean.shape == (b, n) and post.covariance.shape == (b, n, n)
    for i in range(b):
        s0 = g[i] @ cov[i] @ g[i].T
        sig = rel[i] * np.sqrt(np.diag(s0))
        k = cov[i] @ g[i].T @ np.linalg.inv(s0 + np.diag(sig**2))
        np.testing.assert_allclose(
            post.mean[i].numpy(), mu[i] - k @ (g[i] @ mu[i] - rhs[i]), atol=1e-13
        )
        np.testing.assert_allclose(
            post.covariance.to_dense()[i].numpy(), cov[i] - k @ g[i] @ cov[i], atol=1e-13
        )


def test_mixture_relative_sigma_g_is_in_units_of_each_draws_own_mass_sd():
    """``conserve_latent_mixture(relative=True)``: draw s is conditioned with
    sigma_G^2 = r^2 g^T diag(v_s) g (its own variance), then the mixture is moment-matched
    with ``spread_scale`` a: mean of the updated means, mean updated covariance plus
    a/S sum of the updated means' outer deviations. Brute force in numpy on a batch of
    slices of a non-uniform grid (the existing brute force uses an absolute sigma_g)."""
    gen = np.random.default_rng(5)
    s, nt, nx, r, a = 4, 2, 6, 0.7, 1.3
    mus, vs = gen.standard_normal((s, nt, nx)), 0.1 + gen.random((s, nt, nx))
    x, mass = np.sort(gen.random(nx)), gen.standard_normal(nt)
    post = conserve_latent_mixture(
        torch.tensor(mus),
        torch.tensor(vs),
        torch.tensor(x),
        torch.tensor(mass),
        r,
        relative=True,
        spread_scale=a,
    )
    assert post.mean.shape == (nt, nx) and post.covariance.shape == (nt, nx, nx)
    g = trapezoid_weights(torch.tensor(x)).numpy()
    for j in range(nt):
        means, covs = [], []
        for k in range(s):
            c = np.diag(vs[k, j])
            var = g @ c @ g
            gain = c @ g / (var + r * r * var)
            means.append(mus[k, j] - gain * (g @ mus[k, j] - mass[j]))
            covs.append(c - np.outer(gain, g @ c))
        means = np.array(means)
        dev = means - means.mean(0)
        np.testing.assert_allclose(post.mean[j].numpy(), means.mean(0), atol=1e-13)
        np.testing.assert_allclose(
            post.covariance.to_dense()[j].numpy(),
            np.mean(covs, 0) + a * dev.T @ dev / s,
            atol=1e-13,
        )


@pytest.mark.parametrize("bandwidth", [0.15, 0.5])
def test_local_scale_is_the_weighted_quantile_of_the_formula(bandwidth):
    """Module docstring, step 2: q(u) = min{q : sum_m w_m(u) (1/N) sum_i 1{|z_mi| <= q}
    >= 0.9 sum_m w_m(u)}, w_m(u) = exp(-(u_m - u)^2 / 2h^2), s(u) = (q / z_0.95)^2, per time
    slice: by a loop over the candidate values (the existing tests check a finite bandwidth
    only through coverages, not against the formula)."""
    gen = np.random.default_rng(6)
    m, nt, n = 9, 2, 4
    absz = np.abs(gen.standard_normal((m, nt, n))) * (1 + gen.random((m, 1, 1)))
    u = gen.uniform(-1, 1, m)
    q = np.array([-0.9, 0.1, 0.7])
    got = local_coverage_scale(torch.tensor(absz), torch.tensor(u), torch.tensor(q), bandwidth)
    for b, qq in enumerate(q):
        w = np.exp(-0.5 * ((u - qq) / bandwidth) ** 2)
        for j in range(nt):
            for cand in np.sort(absz[:, j].ravel()):
                if (w * (absz[:, j] <= cand).mean(-1)).sum() >= 0.9 * w.sum() * (1 - 1e-12):
                    break
            assert float(got[b, j]) == pytest.approx((cand / Z90) ** 2, rel=1e-14)


def test_stefan_windows_reaching_below_zero_are_refused():
    """Code fix. The GPME docstrings state b(t) = b(t0) + int b'(s) ds
    (``mass_from_fluxes``). For a Stefan window reaching x < 0 the closed form (the solution
    continued to x < 0, which is 0 at t = 0 but tends to 1 + c1 as t -> 0+) broke it: on
    [-0.2, 1] at t = 0.05 the mass rebuilt from the fluxes was 0.075, the closed-form mass
    0.422. The Stefan problem is posed on x >= 0 (u(t, 0) = 1): such a window is now refused
    by name; windows from x0 >= 0 on keep b = b(0) + int b'."""
    from bayesphys.problems.gpme import mass_from_fluxes

    with pytest.raises(ValueError, match=r"x_range: expected x0 >= 0 for stefan"):
        Stefan(x_range=(-0.2, 1.0))
    for x0 in (0.0, 0.1):
        prob = Stefan(x_range=(x0, 1.0))
        for t in (0.01, 0.05):
            want = float(prob.mass(t, 0.6))
            assert mass_from_fluxes(prob, t, 0.6) == pytest.approx(want, abs=1e-7)
