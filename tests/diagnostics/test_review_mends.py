"""Input checks the diagnostics review found missing.

- a diagonal Gaussian with a zero variance returned ``log_prob`` = NaN;
- ``fit_record_recalibration`` / ``RecordRecalibration.apply`` took NaN draws (dropped from
  the spread), an infinite truth (a NaN map) and a truth with fewer summaries than the draws
  (fitted on truth's K only);
- a probability inside (0, 1) that rounds to 1 in float32 was reported as outside (0, 1);
- ``gaussian_nll`` returned NaN for a NaN observation.
"""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior
from bayesphys.diagnostics.record_recal import fit_record_recalibration
from bayesphys.diagnostics.simulate import SimulationRecord
from bayesphys.metrics import gaussian_nll

F64 = torch.float64


def test_zero_variance_diagonal_log_prob_is_refused_and_sampling_still_works():
    v = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    p = GaussianPosterior(torch.zeros(3, dtype=F64), DiagLinearOperator(v))
    with pytest.raises(ValueError, match="1 diagonal variances are exactly 0"):
        p.log_prob(torch.zeros(3, dtype=F64))
    x = p.sample(torch.Size([4]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 1], torch.zeros(4, dtype=F64))
    # positive variances: the density of independent normals
    q = GaussianPosterior(torch.zeros(3, dtype=F64), DiagLinearOperator(v + 1))
    y = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    want = torch.distributions.Normal(0.0, (v + 1).sqrt()).log_prob(y).sum()
    torch.testing.assert_close(q.log_prob(y), want)


def _record(n: int = 50, k: int = 2, seed: int = 0) -> SimulationRecord:
    g = torch.Generator().manual_seed(seed)
    th = torch.randn(n, k, dtype=F64, generator=g)
    d = th[:, None, :] / 2 + torch.randn(n, 9, k, dtype=F64, generator=g)
    return SimulationRecord([f"s{i}" for i in range(k)], th, d)


def test_record_recalibration_checks_its_record():
    rec = _record()
    fit = fit_record_recalibration(rec, "affine")
    inf_truth = rec.truth.clone()
    inf_truth[0, 0] = float("inf")
    with pytest.raises(ValueError, match="truth: expected finite values"):
        fit_record_recalibration(SimulationRecord(rec.names, inf_truth, rec.draws), "affine")
    nan_draws = rec.draws.clone()
    nan_draws[3, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="draws: expected finite values"):
        fit_record_recalibration(SimulationRecord(rec.names, rec.truth, nan_draws), "affine")
    with pytest.raises(ValueError, match="draws: expected finite values"):
        fit.apply(SimulationRecord(rec.names, rec.truth, nan_draws))
    with pytest.raises(ValueError, match="draws: expected K = 1 summaries"):
        fit_record_recalibration(SimulationRecord(rec.names, rec.truth[:, :1], rec.draws))
    with pytest.raises(ValueError, match="draws: expected K = 2 summaries"):
        fit_record_recalibration(SimulationRecord(rec.names, rec.truth, rec.draws[:, :, :1]))
    # a clean record is mapped as before
    out = fit.apply(rec)
    assert out.draws.shape == rec.draws.shape and bool(torch.isfinite(out.draws).all())


def test_probability_rounding_to_one_in_float32_names_the_dtype():
    p = GaussianPosterior(torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="rounds to 0 or 1 in the posterior's dtype torch.float32"):
        p.quantile(1 - 1e-9)
    with pytest.raises(ValueError, match="strictly inside"):
        p.quantile(1.0)
    assert p.quantile(0.975).shape == (2,)


def test_gaussian_nll_refuses_non_finite_observations():
    mean = torch.zeros(2, dtype=F64)
    with pytest.raises(ValueError, match="y: expected finite values"):
        gaussian_nll(mean, torch.ones(2, dtype=F64), torch.tensor([float("nan"), 1.0], dtype=F64))
    with pytest.raises(ValueError, match="mean: expected finite values"):
        gaussian_nll(mean + float("inf"), torch.ones(2, dtype=F64), mean)
