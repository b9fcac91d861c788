"""Structured covariances are validated piece by piece, repeated work is done once (found by
a review of performance traps; results bit for bit as before)."""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import (
    DenseLinearOperator,
    DiagLinearOperator,
    KroneckerProductLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

import bayesphys._gaussian_posterior as gp_mod
from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys.diagnostics import central_coverage, expected_coverage

F64 = torch.float64


def _no_dense(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the N x N covariance was formed")

    monkeypatch.setattr(gp_mod, "to_dense", refuse)


def test_a_kronecker_covariance_is_validated_by_its_factors(monkeypatch):
    a = torch.eye(64, dtype=F64) * 2
    kron = KroneckerProductLinearOperator(DenseLinearOperator(a), DenseLinearOperator(a))
    _no_dense(monkeypatch)
    post = GaussianPosterior(torch.zeros(64 * 64, dtype=F64), kron)
    assert post.sample((2,), generator=torch.Generator().manual_seed(0)).shape == (2, 4096)
    bad = a.clone()
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match=r"covariance \(Kronecker factor 1\)"):
        GaussianPosterior(
            torch.zeros(64 * 64, dtype=F64),
            KroneckerProductLinearOperator(DenseLinearOperator(a), DenseLinearOperator(bad)),
        )
    skew = a.clone()
    skew[0, 1] = 1.0
    with pytest.raises(ValueError, match="symmetric"):
        GaussianPosterior(
            torch.zeros(64 * 64, dtype=F64),
            KroneckerProductLinearOperator(DenseLinearOperator(a), DenseLinearOperator(skew)),
        )


def test_a_batch_of_low_rank_covariances_is_validated_without_forming_them(monkeypatch):
    root = torch.randn(4, 50, 201, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    cov = LowRankRootAddedDiagLinearOperator(
        LowRankRootLinearOperator(root),
        DiagLinearOperator(torch.full((4, 50, 201), 0.1, dtype=F64)),
    )
    _no_dense(monkeypatch)
    post = GaussianPosterior(torch.zeros(4, 50, 201, dtype=F64), cov, event_shape=(201,))
    assert post.variance.shape == (4, 50, 201)
    root[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"covariance \(low-rank root\)"):
        GaussianPosterior(torch.zeros(4, 50, 201, dtype=F64), cov, event_shape=(201,))


def test_expected_coverage_is_the_per_level_coverage():
    g = torch.Generator().manual_seed(2)
    truth, draws = torch.randn(30, 3, generator=g), torch.randn(30, 40, 3, generator=g)
    nominal, obs = expected_coverage(truth, draws, levels=(0.5, 0.9), seed=4)
    for lv, row in zip((0.5, 0.9), obs):
        ref = central_coverage(truth, draws, lv, seed=4).double().mean(0)
        assert torch.equal(row, ref)


def test_a_recalibrated_posterior_sorts_its_base_once(monkeypatch):
    from bayesphys.diagnostics import Recalibrator

    g = torch.Generator().manual_seed(3)
    rec = Recalibrator("quantile", pits=torch.linspace(0.02, 0.98, 49, dtype=F64))
    rp = rec.wrap(SamplePosterior(torch.randn(1, 400, 2, generator=g, dtype=F64)))
    calls = []
    real = Recalibrator._base_quantiles
    monkeypatch.setattr(
        Recalibrator, "_base_quantiles", lambda self, p: calls.append(1) or real(self, p)
    )
    first = rp.quantile([0.1, 0.9])
    rp.mean, rp.variance, rp.sample((3,), generator=torch.Generator().manual_seed(0))
    assert len(calls) == 1
    assert torch.equal(rp.quantile([0.1, 0.9]), first)


def test_fm_posterior_integrates_once_and_repeats_the_prediction(monkeypatch):
    from bayesphys.meta_fm import MetaFlowMatching
    from bayesphys.problems.populations import linear_map
    from tests.tiny_models import TINY_MFM

    data = linear_map(n_train=6, n_cal=4, n_test=4, n_points=24)
    m = MetaFlowMatching(data, method="FM", seed=0, **TINY_MFM)
    m.fit(steps=2, progress=False)
    pops = data.source[:2]
    ref = torch.stack(m.predict(pops, seed=0))
    calls = []
    real = MetaFlowMatching.predict
    monkeypatch.setattr(
        MetaFlowMatching, "predict", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    post = m.posterior(pops, num_samples=4)
    assert len(calls) == 1
    for k in range(4):
        assert torch.equal(post.draws[0, k], ref)
