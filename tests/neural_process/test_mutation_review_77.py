"""Review 77 (mutation testing): tests that fail on a subtly wrong formula in the random-grid
neural process and its problems which the rest of the suite let through. Each test names the
mutant it kills and checks the numbers against an independent oracle (a closed form, dense
matrices, a naive loop, scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from bayesphys.neural_process import data_log_likelihood, field_marginal, physics_elbo
from bayesphys.neural_process.forward import ForwardNet
from bayesphys.neural_process.gicnet import GICNet
from bayesphys.problems.rgnp import BurgersProblem, PoissonProblem

F64 = torch.float64


def test_burgers_field_marginal_and_data_likelihood_carry_the_lift_b():
    """Burgers ``u = B + D u~`` with ``B = sin(2 w pi x) sin(pi x)``, ``D = t sin(pi x)``:
    ``field_marginal``'s mean is ``B + D mu`` and ``data_log_likelihood`` is the dense Gaussian
    log density (scipy) of ``N(B + D mu, (DC)(DC)^T + diag(D^2 sd^2) + sigma_y^2 I)``. Kills
    the mutant ``loc = d * mu`` (lift ``B`` dropped, objective.py ``field_marginal``): the
    other checks are on Poisson, where ``B = 0``."""
    torch.manual_seed(0)
    p = BurgersProblem()
    fwd = ForwardNet(2, 2, 1, hidden=8, depth=2, n_freq=3, rank=2).double()
    x_obs = torch.rand(7, 2, dtype=F64) * 0.8 + 0.1
    z = torch.tensor([[0.05, 0.7], [0.02, 0.9]], dtype=F64)
    w = torch.tensor([[0.8], [1.6]], dtype=F64)
    sigma_y = 0.05
    xb = x_obs.expand(2, -1, -1)
    with torch.no_grad():
        h = fwd.heads(xb, z, w)
        q = field_marginal(p, fwd, xb, z, w)
        y = torch.randn(2, 7, dtype=F64, generator=torch.Generator().manual_seed(1))
        ll = data_log_likelihood(p, fwd, x_obs, y, z, w, sigma_y)
    xs, ts = x_obs[:, 0].numpy(), x_obs[:, 1].numpy()
    for i in range(2):
        b = np.sin(2 * float(w[i, 0]) * np.pi * xs) * np.sin(np.pi * xs)
        d = ts * np.sin(np.pi * xs)
        mu, sd, c = h["mu"]["v"][i].numpy(), h["sd"]["v"][i].numpy(), h["C"]["v"][i].numpy()
        dc = d[:, None] * c
        cov = dc @ dc.T + np.diag((d * sd) ** 2)
        np.testing.assert_allclose(q.loc[i].numpy(), b + d * mu, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(q.covariance_matrix[i].numpy(), cov, rtol=1e-10, atol=1e-14)
        ref = multivariate_normal(b + d * mu, cov + sigma_y**2 * np.eye(7)).logpdf(y[i].numpy())
        assert float(ll[i]) == pytest.approx(ref, rel=1e-10)
    assert float((q.loc - h["mu"]["v"] * x_obs[:, 1]).abs().max()) > 0.1  # B is not negligible here


def test_entropy_term_is_pathwise_so_a_shift_of_the_mean_leaves_log_q_unchanged():
    """``log q(u~(theta); theta)`` at the reparameterised draw ``u~ = mu + sd eps + C eta``
    depends on ``mu`` only through ``u~ - mu``: its gradient in the forward network's mean-head
    bias (a constant shift of ``mu``) is exactly 0, while the score term alone,
    ``sum Sigma^{-1}(u~ - mu)``, is not. Kills the mutant ``q.log_prob(derivs["v"].detach())``
    (objective.py ``physics_elbo``: the draw detached, the entropy's pathwise gradient lost)."""
    p = PoissonProblem()
    torch.manual_seed(0)
    fwd = ForwardNet(1, 5, 1, hidden=8, depth=2, n_freq=3).double()
    inv = GICNet(1, 5, 1, p.lower, p.upper, latent=10, conv_layers=2).double()
    x = torch.rand(2, 6, 1, dtype=F64) * 1.8 - 0.9
    z, w = torch.rand(2, 5, dtype=F64), torch.rand(2, 1, dtype=F64) + 1
    wts = torch.ones(2, 6, dtype=F64)
    _, parts = physics_elbo(p, fwd, inv, x, wts, z, w, 0.3, torch.Generator().manual_seed(1))
    bias = fwd.mlp.out.bias
    (g,) = torch.autograd.grad(parts["log_q"].sum(), bias)
    assert abs(float(g[0])) < 1e-10  # the mean channel: shift invariance
    # the score alone (what a detached draw gives) is far from 0 on this draw
    with torch.no_grad():
        h = fwd.heads(x, z, w)
        gen = torch.Generator().manual_seed(1)
        eps = torch.randn(2, 6, generator=gen, dtype=F64)
        eta = torch.randn(2, fwd.rank, 1, generator=gen, dtype=F64)
        u = h["mu"]["v"] + h["sd"]["v"] * eps + (h["C"]["v"] @ eta)[..., 0]
        cov = torch.diag_embed(h["sd"]["v"] ** 2) + h["C"]["v"] @ h["C"]["v"].mT
        score = torch.linalg.solve(cov, (u - h["mu"]["v"]).unsqueeze(-1)).sum()
    assert abs(float(score)) > 1e-2


def test_fourier_features_are_sines_and_cosines_of_two_pi_f_x_per_dimension():
    """``FourierFeatures``: per input dimension ``d``, ``[sin(2 pi f_j x_d)]_j`` then
    ``[cos(2 pi f_j x_d)]_j`` with ``f_j`` log-spaced over ``[f_min, f_max]`` (a naive loop,
    numpy). Kills the mutant ``om = pi * freq`` (taylor.py ``FourierFeatures.forward``: every
    frequency halved), which only a divergence test's trajectory noticed by chance. The
    frequencies themselves are float32 values (``torch.logspace``): ``rtol = 1e-6`` there."""
    from bayesphys.neural_process.taylor import FourierFeatures

    ff = FourierFeatures(2, 3, 0.5, 4.0, False).double()
    x = torch.tensor([[[0.1, -0.3], [0.7, 0.25]]], dtype=F64)  # [1, 2, 2]
    got = ff(x)["v"][0].numpy()
    # the frequencies are built in float32 (torch.logspace), then cast with the module
    f = ff.freq.numpy()  # [dim, F]
    np.testing.assert_allclose(f, np.tile(np.geomspace(0.5, 4.0, 3), (2, 1)), rtol=1e-6)
    for n in range(2):
        want = []
        for d in range(2):
            ph = 2 * np.pi * f[d] * float(x[0, n, d])
            want += [*np.sin(ph), *np.cos(ph)]
        np.testing.assert_allclose(got[n], want, rtol=1e-12, atol=1e-14)


def test_two_sd_coverage_includes_the_band_edges_and_nothing_beyond_two_sd():
    """``coverage2sd_u`` / ``coverage2sd_z``: the fraction of entries with ``|y - mean| <= 2 sd``
    (bounds included, module docstring). ``sd = 0.5`` exactly, errors ``1.0`` (on the edge,
    exactly ``2 sd`` in floating point), ``0.99`` (1.98 sd: inside 2 sd but outside 1.96 sd),
    ``1.01`` (outside) and ``0`` -> ``3/4``. Kills the mutants ``<= 2 * sd`` -> ``< 2 * sd``
    (field coverage) and ``2 * sd`` -> ``1.96 * sd`` (parameter coverage), evaluate.py."""
    from bayesphys.neural_process.evaluate import field_metrics, parameter_metrics

    err = torch.tensor([[1.0, 0.99, -1.01, 0.0]], dtype=F64)
    truth = torch.zeros(1, 4, dtype=F64)
    var = torch.full((1, 4), 0.25, dtype=F64)
    assert bool((err[0, 0].abs() == 2 * var[0, 0].sqrt()).item())  # the edge is exact
    fm = field_metrics(truth + err, var, truth, torch.ones(4, dtype=torch.bool))
    pm = parameter_metrics(truth + err, var, truth)
    assert fm["coverage2sd_u"] == 0.75
    assert pm["coverage2sd_z"] == 0.75
    # and both ends of the same rule, mirrored: errors of the opposite sign
    fm = field_metrics(truth - err, var, truth, torch.ones(4, dtype=torch.bool))
    pm = parameter_metrics(truth - err, var, truth)
    assert fm["coverage2sd_u"] == pm["coverage2sd_z"] == 0.75


def test_poisson_sensitivities_match_a_one_sided_difference_of_the_solver():
    """``sensitivities``: ``dU/dz`` of ``solve_poisson`` by central differences; checked against
    an independent one-sided difference ``(U(z + h e_k) - U(z)) / h`` with ``h = 1e-6``
    (truncation ``O(h)`` and solver round-off ``O(1e-12 / h)``, both ~1e-6 of the scale, so a
    ``1e-4`` relative tolerance). Kills the mutant ``(up - down) / fd_step`` (the central
    difference not halved: every sensitivity doubled, evaluate.py ``sensitivities``)."""
    from bayesphys.neural_process.evaluate import sensitivities
    from bayesphys.problems.rgnp import poisson_test_set, solve_poisson

    test = poisson_test_set(2, seed=3, n_nodes=41)
    jac = sensitivities(test, n_cases=2)
    z, w = test["z"], test["w"][:, 0]
    h = 1e-6
    base = solve_poisson(z, w, n_nodes=41)[1]
    ref = np.stack(
        [(solve_poisson(z + h * np.eye(5)[k], w, n_nodes=41)[1] - base) / h for k in range(5)],
        -1,
    )
    assert jac.shape == ref.shape == (2, 41, 5)
    np.testing.assert_allclose(jac, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    assert np.abs(ref).max() > 1e-2  # the sensitivities are not negligible


def test_training_loss_is_minus_elbo_minus_weighted_layout_term_minus_rescaled_data_ll():
    """``RandomGridNP.loss``: ``-(mean ELBO) - aug_weight * mean(layout term) - (N_data / b)
    sum_j log p(y_j | z_j, w_j)`` over a data batch of ``b < N_data`` sets, the ELBO's
    likelihood at the configured ``sigma_r`` (uniform grid: weights 1). Each part recomputed
    from the returned per-instance terms and the written-out Gaussian density. Kills the
    mutants ``loss - ll.sum()`` (data term not rescaled to ``N_data``), ``loss + aug_weight *
    aug.mean()`` (layout term's sign, model.py ``loss``) and ``log_sigma_r = sigma_r`` (the
    residual scale initialised to ``exp(sigma_r)``, _net.py ``build_networks``)."""
    from bayesphys.problems.rgnp import poisson_sensor_data
    from tests.tiny_models import tiny_rgnp

    m = tiny_rgnp(dtype=F64, sigma_r=0.3, aug_weight=0.7, aug_points=(6,), data_batch=3)
    data = m._check_data(poisson_sensor_data(8, seed=1))
    with torch.no_grad():
        loss, parts = m.loss(data)
    elbo = parts["loglik"] + parts["log_p_beta"] - parts["log_q"]
    want = -elbo.mean() - 0.7 * parts["aug_log_p_beta"].mean()
    want = want - 8 / 3 * parts["data_ll"].sum()
    assert parts["data_ll"].shape == (3,)
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-10)
    s = 0.3  # the configured residual scale
    per_point = -0.5 * parts["res_sq"] / s**2 - math.log(s) - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(parts["loglik"], per_point.sum(-1), rtol=1e-12, atol=1e-10)


def test_layout_term_draws_field_values_from_the_forward_law():
    """``layout_term``: ``u' ~ q(. | z, w, X') = N(mu, diag sd^2 + C C^T)``; the draws handed to
    the inverse network, whitened by the Cholesky factor of that covariance (dense), are
    standard normal: their mean square is 1 within ``5 sqrt(2 / n)`` (chi-square) over
    ``n = 2400`` values. Kills the mutant ``q.loc + q.cov_diag * eps`` (the variance in place
    of the standard deviation, _train.py ``layout_term``)."""
    from bayesphys.neural_process._train import layout_term
    from bayesphys.neural_process.grids import make_grid

    p = PoissonProblem()
    torch.manual_seed(0)
    fwd = ForwardNet(1, 5, 1, hidden=8, depth=2, n_freq=3, var_lo=0.05).double()
    seen = {}

    def inverse(xa, ua, w):  # records what the inverse network is given
        seen["x"], seen["u"] = xa, ua
        return torch.distributions.Normal(torch.zeros(ua.shape[0], 5, dtype=F64), 1.0)

    b = 400
    z = torch.rand(b, 5, dtype=F64) * 2 - 1
    w = torch.rand(b, 1, dtype=F64) + 1
    layouts = make_grid("layouts", p.lower, p.upper)
    gen = torch.Generator().manual_seed(2)
    layout_term(layouts, fwd, inverse, (6,), gen, z, w, F64, "cpu")
    with torch.no_grad():
        h = fwd.heads(seen["x"], z, w)
    cov = torch.diag_embed(h["sd"]["v"] ** 2) + h["C"]["v"] @ h["C"]["v"].mT
    white = torch.linalg.solve_triangular(
        torch.linalg.cholesky(cov), (seen["u"] - h["mu"]["v"]).unsqueeze(-1), upper=False
    )
    n = white.numel()
    assert n == b * 6
    assert abs(float((white**2).mean()) - 1.0) < 5 * math.sqrt(2 / n)
