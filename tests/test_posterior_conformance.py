"""The posterior conformance suite (tests/posterior_conformance.py) on the package's own
posterior classes: GaussianPosterior with each covariance structure it keeps, with a batch,
in float32, and SamplePosterior."""

from __future__ import annotations

import linear_operator.operators as lo
import torch

from bayesphys import GaussianPosterior, SamplePosterior
from tests.posterior_conformance import PosteriorConformance

F64 = torch.float64


def _spd(n: int, seed: int, dtype=F64) -> torch.Tensor:
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return a @ a.mT / n + 0.1 * torch.eye(n, dtype=dtype)


def _mean(*shape: int, seed: int = 0, dtype=F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


class TestGaussianDense(PosteriorConformance):
    def make_posterior(self):
        return GaussianPosterior(_mean(2, 3), _spd(6, 1), event_shape=(2, 3))


class TestGaussianDenseFloat32(PosteriorConformance):
    def make_posterior(self):
        f = torch.float32
        return GaussianPosterior(_mean(5, dtype=f), _spd(5, 2, dtype=f))


class TestGaussianDiagonal(PosteriorConformance):
    def make_posterior(self):
        var = torch.tensor([0.5, 1.0, 2.0, 0.01], dtype=F64)
        return GaussianPosterior(_mean(4), lo.DiagLinearOperator(var))


class TestGaussianLowRankPlusDiagonal(PosteriorConformance):
    def make_posterior(self):
        root = _mean(6, 2, seed=3)
        cov = lo.LowRankRootAddedDiagLinearOperator(
            lo.LowRankRootLinearOperator(root),
            lo.DiagLinearOperator(torch.full((6,), 0.2, dtype=F64)),
        )
        return GaussianPosterior(_mean(6), cov)


class TestGaussianKronecker(PosteriorConformance):
    def make_posterior(self):
        cov = lo.KroneckerProductLinearOperator(
            lo.DenseLinearOperator(_spd(2, 4)), lo.DenseLinearOperator(_spd(3, 5))
        )
        return GaussianPosterior(_mean(2, 3), cov, event_shape=(2, 3))


class TestGaussianKroneckerPlusDiagonal(PosteriorConformance):
    def make_posterior(self):
        kron = lo.KroneckerProductLinearOperator(
            lo.DenseLinearOperator(_spd(2, 6)), lo.DenseLinearOperator(_spd(3, 7))
        )
        cov = lo.KroneckerProductAddedDiagLinearOperator(
            kron, lo.ConstantDiagLinearOperator(torch.tensor([0.3], dtype=F64), diag_shape=6)
        )
        return GaussianPosterior(_mean(6), cov)


class TestGaussianBatched(PosteriorConformance):
    def make_posterior(self):
        cov = torch.stack([_spd(3, 8), _spd(3, 9)])
        return GaussianPosterior(_mean(2, 3), cov, event_shape=(3,))


class TestSamplePosterior(PosteriorConformance):
    has_log_prob = False
    has_rsample = False
    resamples_stored_draws = True

    def make_posterior(self):
        draws = _mean(2, 150, 2, 3, seed=10)  # 2 chains x 150 draws, batch (2,), event (3,)
        return SamplePosterior(draws, event_ndim=1)
