"""Diagnostics must read nominal on *exact* posteriors at small ``L`` and ``N``.

Truth and draws come straight from a conjugate normal model (prior N(0, 1), one observation
with unit noise: posterior N(y/2, 1/2)), so every rank/coverage statistic has a known null
distribution; the tolerances are several Monte Carlo standard errors.
"""

from __future__ import annotations

import pytest
import torch

from bayesphys.diagnostics import expected_coverage, hdi_coverage, hdi_pit, tarp


def _exact(n: int, n_draws: int, k: int, gen: torch.Generator):
    theta = torch.randn(n, k, generator=gen, dtype=torch.float64)
    y = theta + torch.randn(n, k, generator=gen, dtype=torch.float64)
    draws = y[:, None, :] / 2 + 0.5**0.5 * torch.randn(
        n, n_draws, k, generator=gen, dtype=torch.float64
    )
    return theta, draws


def test_hdi_coverage_of_an_exact_posterior_is_nominal():
    """The sample HDI of the ``L`` draws alone under-covers an exact posterior (0.40 for 0.5 at
    ``L = 9``, 0.43 at ``L = 49``; 0.8 for 0.9 at ``L = 9``): the shortest run sits where the
    draws are dense, not where the truth is. The pooled HDI rank is exact at every ``L``."""
    gen = torch.Generator().manual_seed(0)
    n = 3000
    for n_draws in (9, 49):
        theta, draws = _exact(n, n_draws, 1, gen)
        nominal, obs = expected_coverage(theta, draws, (0.5, 0.8, 0.9), "hdi", seed=1)
        for lv, o in zip(nominal.tolist(), obs[:, 0].tolist()):
            sd = (lv * (1 - lv) / n) ** 0.5
            assert abs(o - lv) < 4 * sd, (n_draws, lv, o)
        # hdi_coverage gives the same indicator as expected_coverage
        ind = hdi_coverage(theta, draws, 0.5, seed=1)
        assert abs(float(ind.double().mean()) - float(obs[0, 0])) < 1e-12


def test_hdi_coverage_of_a_skewed_and_a_discrete_exact_posterior_is_nominal():
    gen = torch.Generator().manual_seed(3)
    n, n_draws = 3000, 19
    # Gamma-Poisson: lambda ~ Gamma(0.5, 1), y ~ Poisson(lambda) -> Gamma(0.5 + y, 2)
    with torch.random.fork_rng():  # torch.distributions samples from the global generator
        torch.manual_seed(3)
        lam = torch.distributions.Gamma(0.5, 1.0).sample((n,))
        y = torch.poisson(lam)
        post = torch.distributions.Gamma(0.5 + y, torch.full_like(y, 2.0))
        draws = post.sample((n_draws,)).mT[:, :, None].double()
    _, obs = expected_coverage(lam[:, None].double(), draws, (0.5, 0.9), "hdi", seed=2)
    assert abs(float(obs[0, 0]) - 0.5) < 4 * (0.25 / n) ** 0.5
    assert abs(float(obs[1, 0]) - 0.9) < 4 * (0.09 / n) ** 0.5
    # a parameter on {0, 1, 2}: draws tie with the truth (old HDI: 0.58 for 0.5)
    vals = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    theta = vals[torch.randint(0, 3, (n,), generator=gen)]
    yy = theta + torch.randn(n, generator=gen, dtype=torch.float64)
    w = torch.softmax(-0.5 * (yy[:, None] - vals) ** 2, 1)
    d = vals[torch.multinomial(w, n_draws, replacement=True, generator=gen)]
    _, obs = expected_coverage(theta[:, None], d[:, :, None], (0.5, 0.9), "hdi", seed=4)
    assert abs(float(obs[0, 0]) - 0.5) < 4 * (0.25 / n) ** 0.5
    assert abs(float(obs[1, 0]) - 0.9) < 4 * (0.09 / n) ** 0.5


def test_hdi_coverage_detects_overconfidence():
    gen = torch.Generator().manual_seed(5)
    theta, draws = _exact(2000, 49, 1, gen)
    mean = draws.mean(1, keepdim=True)
    _, obs = expected_coverage(theta, mean + 0.5 * (draws - mean), (0.9,), "hdi")
    assert float(obs) < 0.7  # P(|Z| < 1.645 / 2) = 0.59


def test_tarp_exact_posterior_many_summaries_few_sims():
    """With ``K`` comparable to ``N`` many truths are the min or max of some coordinate; a box
    normalised by the truths alone puts them on its edge and an exact posterior was rejected
    at 5 % at the 1 % level (mean ATC +0.034). Normalising by truths and draws keeps the
    truth exchangeable with its draws."""
    gen = torch.Generator().manual_seed(0)
    reps, atc, rejected = 200, [], 0
    for r in range(reps):
        theta, draws = _exact(20, 19, 16, gen)
        t = tarp(theta, draws, seed=r)
        atc.append(t["atc"])
        rejected += t["pvalue"] < 0.01
    mean_atc = sum(atc) / reps
    assert abs(mean_atc) < 0.01, mean_atc
    assert rejected <= 6, rejected  # 1 % of 200 is 2; P(>= 7) < 0.005 under the null


def test_field_coverage_of_exact_draws_is_nominal_at_small_L():
    """``infer`` returning draws: order statistics ``k``, ``L + 1 - k`` with a rounded ``k``
    cover 0.6 for 0.5 and 0.8 for 0.9 at ``L = 9`` (0.467 and 0.867 at ``L = 29``); the
    randomised pointwise PIT is exact at any ``L``."""
    from bayesphys.diagnostics import simulate_and_infer

    from .conftest import NormalNormal

    model = NormalNormal()
    gen = torch.Generator().manual_seed(11)
    n = 1500
    from bayesphys import SamplePosterior

    for n_draws, wrap in ((9, False), (29, False), (19, True)):

        def infer(y, n_draws=n_draws, wrap=wrap):
            post = model.infer(y)
            d = post.mean + post.stddev * torch.randn(
                n_draws, 2, generator=gen, dtype=torch.float64
            )
            # the same draws as a SamplePosterior were scored by their interpolated empirical
            # quantiles (0.82 for 0.9 at L = 19), not the PIT
            return SamplePosterior(d[None]) if wrap else d

        rec = simulate_and_infer(
            model.simulate, infer, n_sims=n, n_draws=n_draws, field_levels=(0.5, 0.9), seed=2
        )
        obs = rec.field_coverage.mean(0)
        for lv, o in zip((0.5, 0.9), obs.tolist()):
            assert abs(o - lv) < 4 * (lv * (1 - lv) / (2 * n)) ** 0.5, (n_draws, lv, o)


def test_hdi_rank_settings_are_checked():
    # max_sizes = 0 left every depth equal, so u was the tie-break alone: "nominal" for any draws
    truth = torch.zeros(5, 1, dtype=torch.float64)
    draws = torch.randn(5, 9, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="max_sizes"):
        hdi_pit(truth, draws, max_sizes=0)
    with pytest.raises(TypeError, match="seed"):
        hdi_pit(truth, draws, seed=1.7)
