"""The shared posteriors built from a user's own arrays.

What the "bring your own model" review found, each checked to fail before its mend:

- ``SamplePosterior(draws)`` of a numpy ``[draw, point]`` array (one chain) read the draws as
  chains and the points as draws of a scalar, without a word: a scalar mean, and an export
  whose chains were the draws. Default draws ``[C, S]`` with ``C > S`` now warn (the fix,
  ``chains=False``, and ``event_ndim=0`` to keep the reading, named);
- ``GaussianPosterior(mean [B, N], covariance [B, N, N])`` (or one shared ``[N, N]``) without
  ``event_shape`` was refused with the expected ``[B N, B N]`` shape only; the error now names
  ``event_shape`` (and ``expand`` for a shared covariance);
- a dense covariance of more than 4096 points was not checked at all by ``validate``: a NaN
  gave NaN variances and intervals, a negative variance intervals of width 0, an asymmetric
  matrix was taken. It is now checked for finite values, non-negative variances and symmetry
  (the Cholesky factor still waits for the first draw).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys import GaussianPosterior, SamplePosterior

F64 = torch.float64


def test_draws_of_one_chain_read_as_chains_warn_and_name_chains_false():
    draws = torch.from_numpy(np.random.default_rng(0).normal(size=(200, 5)))  # [draw, point]
    with pytest.warns(UserWarning, match=r"200 chains of 5 draws of a scalar.*chains=False"):
        wrong = SamplePosterior(draws)
    assert wrong.event_shape == () and wrong.num_chains == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        right = SamplePosterior(draws, chains=False)  # the fix the warning names
        kept = SamplePosterior(draws, event_ndim=0)  # this reading, said so
        SamplePosterior(torch.randn(4, 500, dtype=F64))  # 4 chains of a scalar parameter
        SamplePosterior(torch.randn(5, 1, 3, dtype=F64))  # an ensemble of 5 members
    assert right.event_shape == (5,) and right.num_draws == 200
    torch.testing.assert_close(right.mean, draws.mean(0))
    assert kept.event_shape == () and kept.num_chains == 200


@pytest.mark.parametrize(
    "cov, kw, match",
    [
        (torch.eye(12, dtype=F64).expand(4, 12, 12), {}, r"pass event_shape=\(12,\)\)$"),
        (torch.eye(12, dtype=F64), {}, r"pass event_shape=\(12,\) and expand it: "),
        (
            torch.eye(12, dtype=F64),
            {"event_shape": (12,)},
            r"sharing one covariance, expand it: covariance.expand\(4, 12, 12\)\)$",
        ),
    ],
)
def test_a_batch_of_posteriors_without_event_shape_names_event_shape(cov, kw, match):
    mean = torch.zeros(4, 12, dtype=F64)
    with pytest.raises(ValueError, match=r"^covariance: expected shape .*" + match):
        GaussianPosterior(mean, cov, **kw)
    fixed = GaussianPosterior(mean, torch.eye(12, dtype=F64).expand(4, 12, 12), event_shape=(12,))
    assert fixed.batch_shape == (4,) and fixed.sample((2,), seed=0).shape == (2, 4, 12)
    # a covariance of no such shape keeps the plain message
    with pytest.raises(ValueError, match=r"received \(13, 13\)$"):
        GaussianPosterior(mean, torch.eye(13, dtype=F64))


def test_a_gp_of_ones_own_matches_the_closed_forms():
    """A mean and dense covariance from a user's GP: log_prob, quantiles and seeded draws."""
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 1, 8, dtype=F64)
    cov = torch.exp(-((x[:, None] - x[None]) ** 2) / 0.1) + 1e-3 * torch.eye(8, dtype=F64)
    mean = torch.sin(3 * x)
    post = GaussianPosterior(mean, cov)
    v = torch.randn(3, 8, generator=g, dtype=F64)
    want = stats.multivariate_normal(mean.numpy(), cov.numpy()).logpdf(v.numpy())
    np.testing.assert_allclose(post.log_prob(v).numpy(), want, rtol=1e-10)
    q = stats.norm(mean.numpy(), cov.diagonal().sqrt().numpy()).ppf(0.95)
    np.testing.assert_allclose(post.quantile(0.95).numpy(), q, rtol=1e-12)
    assert torch.equal(post.sample((4,), seed=3), post.sample((4,), seed=3))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c.__setitem__((5, 5), float("nan")), r"expected finite values, received 1 "),
        (lambda c: c.__setitem__((5, 5), -1.0), r"1 negative variances on its diagonal"),
        (lambda c: c.__setitem__((5, 4000), 0.5), r"expected a symmetric matrix"),
    ],
)
def test_a_dense_covariance_past_the_cholesky_check_is_still_validated(edit, match):
    """Past 4096 points a dense covariance gets no Cholesky factor at construction; a NaN in
    it gave NaN variances and intervals, a negative variance intervals of width 0 (clamped),
    both without a word, though ``validate`` promised finite values."""
    n = 4097
    cov = torch.eye(n, dtype=F64)
    edit(cov)
    with pytest.raises(ValueError, match=r"^covariance: .*" + match):
        GaussianPosterior(torch.zeros(n, dtype=F64), cov)
    GaussianPosterior(torch.zeros(n, dtype=F64), cov, validate=False)  # unchecked, as asked
    ok = GaussianPosterior(torch.zeros(n, dtype=F64), torch.eye(n, dtype=F64))
    assert float(ok.variance.min()) == 1.0


@pytest.mark.parametrize("n", [200, 4097])
def test_an_exactly_conditioned_variance_rounded_below_zero_is_accepted_at_every_size(n):
    """A covariance conditioned on an exact observation of one point has a variance of 0 there,
    which rounding may leave at -1e-17: the Cholesky check of a covariance up to 4096 points
    accepts it, and the check of a larger one refused it as a negative variance."""
    x = torch.linspace(0, 1, n, dtype=F64)
    cov = torch.exp(-((x[:, None] - x[None]) ** 2) / 0.02) + 1e-6 * torch.eye(n, dtype=F64)
    g = torch.zeros(1, n, dtype=F64)
    g[0, 0] = 1.0
    cov = cov - cov @ g.T @ torch.linalg.solve(g @ cov @ g.T, g @ cov)
    cov[0, 0] = -1e-17
    post = GaussianPosterior(torch.zeros(n, dtype=F64), cov)
    assert float(post.variance[1:].min()) > 0
