"""Review 76: the docstrings' equations and shapes of the random-grid neural process and its
problems, each checked against an independent reference written from the stated formula
(dense matrices, naive loops, numpy)."""

from __future__ import annotations

import math
import types
import warnings

import numpy as np
import pytest
import torch

from bayesphys.neural_process.evaluate import evaluate_burgers, information_oracle
from bayesphys.neural_process.forward import ForwardNet
from bayesphys.neural_process.grids import AdaptiveGrid
from bayesphys.problems.rgnp import (
    invariance_points,
    poisson_residual,
    solve_burgers,
    solve_poisson,
)
from tests.tiny_models import tiny_rgnp

F64 = torch.float64

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*has not been trained:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*outside the prior box:UserWarning"),
]


# ----------------------------------------------------------------- docstring fixes (oracles)
def test_posterior_covariance_is_the_scaled_marginal_plus_unscaled_noise():
    """``RandomGridNP.posterior``: covariance ``s [(DC)(DC)^T + diag(max(D^2 sigma^2, 1e-12))]
    + noise I`` with ``s = variance_scale["field"]``, written out densely from the forward
    network's heads. The old docstring gave ``(DC)(DC)^T + diag(D^2 sigma^2 + noise)``: no
    multiplier ``s`` (a calibrated model scales the variances) and nothing said the noise
    is left unscaled; ``parameter_posterior``'s covariance is GICNet's times
    ``variance_scale["parameters"]``."""
    m = tiny_rgnp(dtype=F64)
    s_u, s_z, noise = 2.5, 0.3, 0.01
    m.variance_scale = {"field": s_u, "parameters": s_z}
    x = torch.tensor([-1.0, -0.7, -0.1, 0.4, 0.95, 1.0], dtype=F64)
    z = torch.tensor([[0.3, -0.2, 0.1, 0.0, 0.5], [-0.4, 0.6, 0.2, -0.1, 0.0]], dtype=F64)
    w = torch.tensor([[1.2], [1.7]], dtype=F64)
    post = m.posterior(x, z=z, w=w, noise=noise)
    with torch.no_grad():
        h = m.forward_net.heads(x.reshape(1, -1, 1).expand(2, -1, -1), z, w)
    d = torch.cos(math.pi * x / 2)  # Poisson: B = 0, D = cos(pi x / 2)
    dc = d[:, None] * h["C"]["v"]  # [B, N, k]
    diag = ((d * h["sd"]["v"]) ** 2).clamp_min(1e-12)
    want = s_u * (dc @ dc.mT + torch.diag_embed(diag)) + noise * torch.eye(6, dtype=F64)
    assert tuple(post.mean.shape) == (2, 6)
    torch.testing.assert_close(post.mean, d * h["mu"]["v"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(post.covariance.to_dense(), want, rtol=1e-12, atol=1e-14)
    # the boundary nodes: variance s * 1e-12 + noise (the floor scaled, the noise not)
    torch.testing.assert_close(
        post.variance[:, [0, 5]], torch.full((2, 2), s_u * 1e-12 + noise, dtype=F64)
    )
    # the parameter posterior: GICNet's low-rank-plus-diagonal covariance times s_z
    xi = torch.linspace(-0.9, 0.9, 11, dtype=F64)
    u = 0.3 * torch.cos(math.pi * xi / 2).expand(2, -1)
    pz = m.parameter_posterior(xi, u, w)
    with torch.no_grad():
        q = m.inverse_net(
            xi.reshape(1, -1, 1).expand(2, -1, -1), u / torch.cos(math.pi * xi / 2), w
        )
    torch.testing.assert_close(pz.covariance.to_dense(), s_z * q.covariance_matrix)


def test_adaptive_grid_scores_are_an_ema_with_decay_weighting_the_old_score():
    """``AdaptiveGrid.update`` (convention now stated): the first update sets each visited
    bin's score to its mean squared residual and the unvisited ones to the batch's overall
    mean; later ones ``s_b <- decay s_b + (1 - decay) mean_b`` on visited bins only; bins
    row-major (dimension 0 slowest). The reverse reading (``decay`` as the new batch's weight)
    gives other scores here (decay = 0.8)."""
    g = AdaptiveGrid([0.0, -1.0], [1.0, 3.0], margin=0.0, bins=2, alpha=0.5, decay=0.8)
    # bins: (x0 < 0.5, x1 < 1) -> 0, (x0 < 0.5, x1 >= 1) -> 1, (x0 >= 0.5, x1 < 1) -> 2, ...
    pts1 = torch.tensor([[[0.1, -0.5], [0.2, 0.0], [0.9, 2.0]]], dtype=F64)
    r1 = torch.tensor([[1.0, 3.0, 8.0]], dtype=F64)
    g.update(pts1, r1)
    first = np.array([2.0, 4.0, 4.0, 8.0])  # bin means 2 (bin 0), 8 (bin 3); overall mean 4
    np.testing.assert_allclose(g.score.numpy(), first, rtol=1e-15)
    pts2 = torch.tensor([[[0.3, 2.5], [0.7, -0.9], [0.8, -0.2]]], dtype=F64)
    r2 = torch.tensor([[10.0, 1.0, 5.0]], dtype=F64)  # bin 1: 10, bin 2: mean 3
    g.update(pts2, r2)
    want = first.copy()
    want[1] = 0.8 * 4.0 + 0.2 * 10.0
    want[2] = 0.8 * 4.0 + 0.2 * 3.0
    np.testing.assert_allclose(g.score.numpy(), want, rtol=1e-15)


def test_solve_poisson_satisfies_its_conservative_scheme_with_face_averaged_u():
    """``solve_poisson``: ``-[k_{i+1/2}(u_{i+1} - u_i) - k_{i-1/2}(u_i - u_{i-1})]/h^2 = w`` with
    ``k_{i+1/2} = softplus(ubar c(x_{i+1/2})) + 0.1``, ``ubar = (u_i + u_{i+1})/2`` (now stated;
    ``kappa(ubar, .)`` was undefined), ``c = sum_k z_k T_k`` (numpy's Chebyshev basis), zero at
    both ends; the harmonic mean of nodal kappa, the other common face rule, does not satisfy
    it."""
    rng = np.random.default_rng(7)
    z, w = rng.uniform(-1, 1, (3, 5)), rng.uniform(1, 2, 3)
    x, u = solve_poisson(z, w, n_nodes=41)
    assert x.shape == (41,) and u.shape == (3, 41)
    h = x[1] - x[0]
    xf = 0.5 * (x[1:] + x[:-1])
    kap = lambda uu, xx, zz: np.logaddexp(0.0, uu * np.polynomial.chebyshev.chebval(xx, zz)) + 0.1  # noqa: E731
    for b in range(3):
        assert u[b, 0] == u[b, -1] == 0.0
        kf = kap(0.5 * (u[b, 1:] + u[b, :-1]), xf, z[b])
        flux = kf * np.diff(u[b])
        res = -(flux[1:] - flux[:-1]) / h**2 - w[b]
        assert np.abs(res).max() < 1e-9
        kn = kap(u[b], x, z[b])
        kh = 2 * kn[1:] * kn[:-1] / (kn[1:] + kn[:-1])
        flux_h = kh * np.diff(u[b])
        assert np.abs(-(flux_h[1:] - flux_h[:-1]) / h**2 - w[b]).max() > 1e-6


def test_calibration_raw_coverage_is_of_the_level_band():
    """``calibrate_variance``'s ``coverage_field_raw`` (convention now stated): the fraction of
    off-boundary validation entries with ``|u - mean| <= z_level sd`` before scaling, with
    ``z_level = Phi^{-1}((1 + level)/2)``; at ``level = 0.5`` that is not the 2-sigma band."""
    from scipy.stats import norm

    m = tiny_rgnp(dtype=F64)
    x = torch.linspace(-1, 1, 9, dtype=F64)
    g = torch.Generator().manual_seed(3)
    z = 2 * torch.rand(6, 5, generator=g, dtype=F64) - 1
    w = 1 + torch.rand(6, 1, generator=g, dtype=F64)
    post = m.posterior(x, z=z, w=w)
    sd = post.variance.sqrt()
    u = post.mean + sd * torch.randn(6, 9, generator=g, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = m.calibrate(x, u, z, w, level=0.5, parameters=False)
    zl = norm.ppf(0.75)
    inner = slice(1, -1)  # x = +-1 are the Dirichlet nodes
    hit = ((u - post.mean)[:, inner].abs() <= zl * sd[:, inner]).double().mean()
    assert out["coverage_field_raw"] == pytest.approx(float(hit), abs=1e-15)
    two_sd = ((u - post.mean)[:, inner].abs() <= 2 * sd[:, inner]).double().mean()
    assert float(two_sd) != pytest.approx(float(hit))


# ------------------------------------------------------------- formulas verified as correct
def test_poisson_residual_is_the_autograd_divergence_of_the_flux():
    """``poisson_residual = (kappa(u, x) u_x)_x + w`` with ``kappa = softplus(u sum z_i T_i(x))
    + 0.1``: against autograd's derivative of the flux, ``T_i = cos(i arccos x)``, for non-zero
    ``z`` (the existing exact-solution check has ``z = 0``, where the ``kappa_x`` term
    vanishes); shapes ``[B, N]``."""
    x = torch.linspace(-0.9, 0.85, 17, dtype=F64).repeat(2, 1).requires_grad_()
    g = torch.Generator().manual_seed(0)
    z, w = torch.randn(2, 5, generator=g, dtype=F64), 1 + torch.rand(2, 1, generator=g, dtype=F64)
    u = torch.sin(2 * x) + x**2
    ux = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    uxx = torch.autograd.grad(ux.sum(), x, create_graph=True)[0]
    cheb = torch.stack([torch.cos(k * torch.arccos(x)) for k in range(5)], -1)
    kappa = torch.nn.functional.softplus(u * (cheb * z[:, None]).sum(-1)) + 0.1
    want = torch.autograd.grad((kappa * ux).sum(), x, create_graph=True)[0] + w
    got = poisson_residual(x, u, ux, uxx, z, w)
    assert got.shape == (2, 17)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_solve_burgers_steps_satisfy_crank_nicolson_with_central_differences():
    """``solve_burgers``: each step solves ``u^{n+1} - u^n = dt/2 [f(u^{n+1}) + f(u^n)]`` with
    ``f(u) = -z_1 u D_1 u + z_0 D_2 u`` (central differences), ``u(x, 0) = sin(2 w pi x)
    sin(pi x)``, zero walls; shapes ``x [nx]``, ``t [n_steps + 1]``, ``u [B, nt, nx]``."""
    z, w = np.array([[0.05, 0.8], [0.02, 1.0]]), np.array([1.3, 0.7])
    x, t, u = solve_burgers(z, w, n_nodes=31, n_steps=8, t_end=0.4)
    assert x.shape == (31,) and t.shape == (9,) and u.shape == (2, 9, 31)
    h, dt = x[1] - x[0], t[1] - t[0]
    assert dt == pytest.approx(0.05)
    for b in range(2):
        np.testing.assert_allclose(
            u[b, 0], np.sin(2 * w[b] * np.pi * x) * np.sin(np.pi * x), atol=1e-15
        )
        assert np.all(u[b, :, 0] == 0) and np.all(u[b, :, -1] == 0)
        for n in range(8):
            f = []
            for v in (u[b, n], u[b, n + 1]):
                fi = np.zeros(29)
                for i in range(1, 30):  # naive loop over the interior nodes
                    vx = (v[i + 1] - v[i - 1]) / (2 * h)
                    vxx = (v[i + 1] - 2 * v[i] + v[i - 1]) / h**2
                    fi[i - 1] = -z[b, 1] * v[i] * vx + z[b, 0] * vxx
                f.append(fi)
            g = u[b, n + 1, 1:-1] - u[b, n, 1:-1] - 0.5 * dt * (f[0] + f[1])
            assert np.abs(g).max() < 1e-10


def test_information_oracle_is_the_trace_of_the_laplace_covariance():
    """``information_oracle``: ``NSE_z = mean_c tr[(J_X^T J_X / (N sigma^2) + 3 I)^{-1}] /
    |z_c|^2`` with ``J_X`` the given sensitivities linearly interpolated to the layout's ``N``
    points (a naive interpolation loop here, dense inverse)."""
    rng = np.random.default_rng(1)
    nodes, n = 21, 4
    x = np.linspace(-1, 1, nodes)
    test = {"x": x, "z": rng.uniform(-1, 1, (n, 5)), "w": rng.uniform(1, 2, (n, 1))}
    jac = rng.standard_normal((n, nodes, 5))
    sig = 0.3
    rows = information_oracle(
        test, sig, (3, 7), ("uniform", "clustered"), n_cases=n, jac=jac, seed=2
    )
    assert [(r["n_points"], r["layout"]) for r in rows] == [
        (3, "uniform"),
        (7, "uniform"),
        (3, "clustered"),
        (7, "clustered"),
    ]
    for r in rows:
        xp = invariance_points(r["n_points"], r["layout"], seed=2)
        vals = []
        for c in range(n):
            jx = np.zeros((len(xp), 5))
            for i, p in enumerate(xp):
                j = min(max(int(np.searchsorted(x, p)) - 1, 0), nodes - 2)
                a = (p - x[j]) / (x[j + 1] - x[j])
                jx[i] = (1 - a) * jac[c, j] + a * jac[c, j + 1]
            cov = np.linalg.inv(jx.T @ jx / (len(xp) * sig**2) + 3 * np.eye(5))
            vals.append(np.trace(cov) / np.sum(test["z"][c] ** 2))
        assert r["nse_z"] == pytest.approx(np.mean(vals), rel=1e-12)


def test_evaluate_burgers_pairs_each_subgrid_point_with_its_reference_value():
    """``evaluate_burgers``' ``nse_u``: per case ``sum (mean - u*)^2 / sum u*^2`` over the
    interior sub-grid (every ``x_every``-th x node off the walls, every ``t_every``-th time
    after 0), averaged over cases; a stand-in model whose mean is the reference plus an
    error asymmetric in (x, t), so a transposed pairing would score otherwise."""
    nx, nt, n = 21, 11, 3
    x, t = np.linspace(0, 1, nx), np.linspace(0, 1, nt)
    rng = np.random.default_rng(0)
    z = rng.uniform([0.01, 0.5], [0.1, 1.0], (n, 2))
    w = rng.uniform(0.5, 2.0, (n, 1))

    def ref(xx, tt, k):
        return np.sin(np.pi * xx) * (1 + tt) * (k + 1)

    def err(xx, tt):
        return 0.1 * xx * tt**2

    u = np.stack([ref(x[None, :], t[:, None], k) for k in range(n)])  # [n, nt, nx]
    test = {"x": x, "t": t, "z": z, "w": w, "u": u}

    class Stand:
        problem = types.SimpleNamespace(name="burgers")
        dtype, device = F64, torch.device("cpu")

        def posterior(self, pts, z, w):
            ks = [int(np.argmin(np.abs(test["z"][:, 0] - float(r[0])))) for r in z]
            xx, tt = pts[:, 0].numpy(), pts[:, 1].numpy()
            mean = torch.stack([torch.as_tensor(ref(xx, tt, k) + err(xx, tt)) for k in ks])
            return types.SimpleNamespace(mean=mean, variance=torch.full_like(mean, 0.01))

        def parameter_posterior(self, pts, vals, w):
            mean = torch.stack([vals.mean(-1), pts[..., 0].mean(-1)], -1)
            return types.SimpleNamespace(mean=mean, variance=torch.full_like(mean, 0.1))

    out = evaluate_burgers(Stand(), test, x_every=4, t_every=3, n_inverse=7, batch=2)
    nse = []
    for k in range(n):
        num = den = 0.0
        for i in range(4, nx - 1, 4):
            for j in range(3, nt, 3):
                num += err(x[i], t[j]) ** 2
                den += ref(x[i], t[j], k) ** 2
        nse.append(num / den)
    assert out["nse_u"] == pytest.approx(np.mean(nse), rel=1e-12)


def test_reparameterised_draw_and_its_derivative_streams():
    """``ForwardNet.sample_with_derivatives``: the draw is ``mu + sd * eps + C eta`` (``eps``
    ``[B, N]`` then ``eta`` ``[B, k, 1]`` from the generator), each stream the autograd
    derivative of that pointwise expression in ``x`` (``eps``, ``eta`` held fixed), and the
    returned law ``N(mu, diag sd^2 + C C^T)`` with batch ``[B]`` and event ``[N]``."""
    torch.manual_seed(0)
    net = ForwardNet(2, 2, 1, hidden=10, depth=3, n_freq=4, f_min=0.3, f_max=2.0, rank=3).double()
    x = torch.rand(2, 6, 2, dtype=F64, requires_grad=True)
    z, w = torch.randn(2, 2, dtype=F64), torch.randn(2, 1, dtype=F64)
    d, q = net.sample_with_derivatives(x, z, w, ("x", "xx", "t"), torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    eps = torch.randn(2, 6, generator=g, dtype=F64)
    eta = torch.randn(2, 3, 1, generator=g, dtype=F64)
    h = net.heads(x, z, w)
    u = h["mu"]["v"] + h["sd"]["v"] * eps + (h["C"]["v"] @ eta)[..., 0]
    grad = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    uxx = torch.autograd.grad(grad[..., 0].sum(), x)[0][..., 0]
    assert all(tuple(v.shape) == (2, 6) for v in d.values())
    torch.testing.assert_close(d["v"], u, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(d["x"], grad[..., 0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(d["t"], grad[..., 1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(d["xx"], uxx, rtol=1e-9, atol=1e-11)
    assert q.batch_shape == (2,) and q.event_shape == (6,)
    cov = torch.diag_embed(h["sd"]["v"] ** 2) + h["C"]["v"] @ h["C"]["v"].mT
    torch.testing.assert_close(q.covariance_matrix, cov, rtol=1e-12, atol=1e-14)


def test_adaptive_grid_weights_are_one_over_the_mixture_density_in_two_dimensions():
    """``AdaptiveGrid``: ``omega_i = p(x_i)/q(x_i)`` with ``q = (1 - alpha) + alpha * nb *
    pi_b`` on the unit cube, ``pi_b`` proportional to sqrt(score_b), bins row-major; checked
    in 2-D (the existing test is 1-D, blind to the bin ordering): the weights against an
    independent binning, and the empirical bin frequencies against ``q / nb``."""
    g = AdaptiveGrid([0.0, -1.0], [1.0, 3.0], margin=0.0, bins=3, alpha=0.6)
    g.load_state_dict({"score": torch.arange(1.0, 10.0, dtype=F64) ** 2, "initialised": True})
    x, wts = g.sample(100, 1000, generator=torch.Generator().manual_seed(0), dtype=F64)
    x, wts = x.reshape(-1, 2).numpy(), wts.reshape(-1).numpy()
    i0 = np.minimum((x[:, 0] * 3).astype(int), 2)
    i1 = np.minimum(((x[:, 1] + 1) / 4 * 3).astype(int), 2)
    cell = 3 * i0 + i1
    pi = np.arange(1.0, 10.0) / np.arange(1.0, 10.0).sum()
    q = 0.4 + 0.6 * 9 * pi
    np.testing.assert_allclose(wts, 1 / q[cell], rtol=1e-12)
    freq = np.bincount(cell, minlength=9) / cell.size
    se = np.sqrt(q / 9 * (1 - q / 9) / cell.size)
    assert np.all(np.abs(freq - q / 9) < 5 * se)


def test_invariance_points_random_layout_is_uniform_on_the_stated_interval():
    """``invariance_points`` (interval now stated): ``uniform`` is
    ``linspace(-1, 1, n + 2)[1:-1]``; ``random`` i.i.d. uniform on ``[-0.99, 0.99]`` (the old
    docstring said "i.i.d. uniform" among points of ``(-1, 1)``: a uniform law on ``(-1, 1)``
    puts 1 % of the points outside ``[-0.99, 0.99]``, i.e. ~20 of these 2000); sorted."""
    from scipy.stats import kstest

    np.testing.assert_array_equal(invariance_points(7, "uniform"), np.linspace(-1, 1, 9)[1:-1])
    p = invariance_points(2000, "random", seed=4)
    assert np.all(np.diff(p) >= 0) and np.abs(p).max() <= 0.99
    assert kstest(p, "uniform", args=(-0.99, 1.98)).pvalue > 1e-3
