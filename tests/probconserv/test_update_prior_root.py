"""The Step-2 update draws through the prior's own factor: no second factorisation of the prior
covariance (it was ~97 % of the update's time for a batch of dense slices), same draws."""

from __future__ import annotations

import pickle
from unittest import mock

import pytest
import torch
from linear_operator.operators import (
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

import bayesphys._structured_root as roots
from bayesphys import GaussianPosterior
from bayesphys.probconserv import conservation_update, conserve_slices, trapezoid_weights

F64 = torch.float64


def _dense_prior(batch: tuple[int, ...] = (), n: int = 40, validate: bool = True):
    x = torch.linspace(0.0, 1.0, n, dtype=F64)
    k = torch.exp(-((x[:, None] - x[None]) ** 2) / 0.02) + 1e-3 * torch.eye(n, dtype=F64)
    mu = torch.sin(3 * x).expand(*batch, n).clone()
    cov = k.expand(*batch, n, n).clone()
    return x, GaussianPosterior(mu, cov, event_shape=(n,), validate=validate)


class _Count:
    """Counts the dense Cholesky factorisations of ``_structured_root`` (every structured root of a
    dense covariance goes through it)."""

    def __init__(self) -> None:
        self.calls = 0
        self._orig = roots._psd_cholesky_jitter

    def __call__(self, a, *args, **kwargs):
        self.calls += 1
        return self._orig(a, *args, **kwargs)


@pytest.mark.parametrize("batch", [(), (5,)])
def test_update_and_draws_do_not_factorise_the_prior_again(batch):
    x, prior = _dense_prior(batch)  # validated: factorised once here
    count = _Count()
    with mock.patch.object(roots, "_psd_cholesky_jitter", count):
        post = conserve_slices(prior, x, torch.full(batch, 0.3, dtype=F64))
        draws = post.sample((50,), seed=0)
    assert count.calls == 0
    mass = draws @ trapezoid_weights(x)
    assert float((mass - 0.3).abs().max()) < 1e-10


def test_unfactorised_prior_is_factorised_once_and_keeps_it():
    x, prior = _dense_prior(validate=False)  # not factorised yet
    count = _Count()
    with mock.patch.object(roots, "_psd_cholesky_jitter", count):
        post = conserve_slices(prior, x, torch.tensor(0.3, dtype=F64))
        post.sample((10,), seed=0)
        prior.sample((10,), seed=0)  # the prior's own draws reuse the same factor
    assert count.calls == 1


@pytest.mark.parametrize("sigma_g", [0.0, 0.05])
def test_draws_are_matheron_of_the_prior_cholesky(sigma_g):
    # the draws, written out from an independent Cholesky factor of the prior covariance:
    # u = mu~ + f - K (G f + sigma_g xi), f = L z, K = Sigma G^T (G Sigma G^T + sigma_g^2)^-1
    x, prior = _dense_prior((3,))
    g = trapezoid_weights(x).unsqueeze(0)
    post = conservation_update(prior, g, torch.tensor([0.2, 0.3, 0.4], dtype=F64), sigma_g)
    n, extra = x.numel(), 0 if sigma_g == 0 else 1
    z = torch.randn(7, 3, n + extra, dtype=F64, generator=torch.Generator().manual_seed(1))
    got = post.rsample((7,), base_samples=z)
    cov = prior.covariance.to_dense()
    chol = torch.linalg.cholesky(cov)
    f = (chol @ z[..., :n].unsqueeze(-1)).squeeze(-1)
    sgt = cov @ g.mT  # [3, n, 1]
    s = g @ sgt + sigma_g**2
    gain = sgt / s
    gf = f @ g.mT
    if extra:
        gf = gf + sigma_g * z[..., n:]
    want = post.mean + f - (gain @ gf.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-11)


def test_structured_and_float32_priors_still_draw_conserving_fields():
    n = 30
    x = torch.linspace(0.0, 1.0, n, dtype=F64)
    r = torch.randn(n, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    d = torch.full((n,), 0.1, dtype=F64)
    priors = [
        GaussianPosterior(torch.zeros(n, dtype=F64), DiagLinearOperator(d)),
        GaussianPosterior(
            torch.zeros(n, dtype=F64),
            LowRankRootAddedDiagLinearOperator(LowRankRootLinearOperator(r), DiagLinearOperator(d)),
        ),
        _dense_prior(n=n)[1].to(None),  # a copy, not yet factorised
        GaussianPosterior(torch.zeros(n), torch.eye(n) * 0.5),  # float32: its own float64 root
    ]
    for prior in priors:
        post = conserve_slices(prior, x, torch.tensor(1.0, dtype=F64))
        draws = post.sample((20,), seed=0)
        assert draws.dtype == F64
        assert float((draws @ trapezoid_weights(x) - 1.0).abs().max()) < 1e-10


def test_updated_posterior_pickles_and_draws_the_same():
    x, prior = _dense_prior()
    post = conserve_slices(prior, x, torch.tensor(0.3, dtype=F64))
    back = pickle.loads(pickle.dumps(post))
    torch.testing.assert_close(back.sample((5,), seed=3), post.sample((5,), seed=3))
