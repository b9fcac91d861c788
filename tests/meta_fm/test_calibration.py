"""The meta_fm calibration hook: simulator shapes and well-formed rows on a tiny setting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import bayesphys.diagnostics.calibrate as calibrate_mod
from bayesphys.diagnostics.sbc import sbc_pit
from bayesphys.meta_fm._calibration import calibrate_rows, population_summaries, simulate
from bayesphys.problems.populations import linear_map


def test_simulate_exact_summaries_match_population():
    theta, data = simulate(4, seed=0)
    assert theta.shape == (4, 3) and len(data) == 4
    assert data[0].shape == (256, 2)
    assert torch.all(theta[:, 2] > 0)
    assert population_summaries(data[0]).shape == (3,)

    # rebuild the targets as the simulator does: the B2 draw with seed 70_000 + seed gives
    # the sources and their centres mu; x1 = A x0 + b with A = 0.5 R(|mu|) and
    # b = mu - A mu + 0.5 tanh(mu) (the documented map, built here independently)
    n, seed, points = 20, 3, 256
    theta, data = simulate(n, seed=seed)
    d = linear_map(n_train=n, n_cal=0, n_test=0, n_points=points, seed=70_000 + seed)
    src = torch.stack(data)
    assert torch.equal(src, torch.stack(d.source))
    src = src.double()
    mu, cov0 = d.extra["source_mean"], d.extra["source_cov"]
    ang = mu.norm(dim=-1)
    c, s = torch.cos(ang), torch.sin(ang)
    a = 0.5 * torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    b = mu - (a @ mu[..., None]).squeeze(-1) + 0.5 * torch.tanh(mu)
    target = src @ a.mT + b[:, None, :]
    got = population_summaries(target)
    # Monte Carlo standard errors of the 256-point summaries under the exact target law:
    # mean_j: sqrt(C_jj / n); spread sqrt(tr C^): delta method on Var(tr C^) ~ 2 tr(C^2) / n
    cov = a @ cov0 @ a.mT
    var = torch.diagonal(cov, dim1=-2, dim2=-1)
    tr = var.sum(-1)
    tr_c2 = torch.diagonal(cov @ cov, dim1=-2, dim2=-1).sum(-1)
    se = torch.cat(
        [(var / points).sqrt(), ((2 * tr_c2 / points).sqrt() / (2 * tr.sqrt()))[:, None]], -1
    )
    z = (got - theta) / se
    assert z.abs().max() < 4.0, z
    # the source populations' own summaries are far from theta (a simulate that returned
    # source summaries fails the check above)
    assert ((population_summaries(src) - theta) / se).abs().max() > 4.0


def test_calibrate_rows_tiny_is_well_formed():
    torch.manual_seed(0)
    rows = calibrate_rows(True, 0, steps=5, n_sims=6, n_draws=5, members=2)
    assert len(rows) >= 1
    metrics = {r["metric"]: r["value"] for r in rows} if "metric" in rows[0] else rows[0]["metrics"]
    for key in ("coverage50", "coverage90", "coverage95", "sbc_pvalue"):
        assert key in metrics
        assert math.isfinite(float(metrics[key]))
    # the reported numbers recomputed from the raw records (truth [6, 3], draws [6, 5, 3]) of
    # the row and of its recalibrated rows (when the posterior failed the check)
    for row in rows:
        _check_row_metrics_from_record(row)


def _check_row_metrics_from_record(row):
    res, metrics = row["result"], row["metrics"]
    truth, draws = res.record.truth.double().numpy(), res.record.draws.double().numpy()
    assert draws.shape == (6, 5, 3) and truth.shape == (6, 3)
    assert not (draws == truth[:, None, :]).any()  # continuous summaries: no ties
    ranks = (draws < truth[:, None, :]).sum(1)
    np.testing.assert_array_equal(res.ranks.numpy(), ranks)
    # central coverage: the randomised PIT u = (r + V) / (L + 1) within level / 2 of 1/2
    u = sbc_pit(torch.as_tensor(ranks), 5, seed=0).numpy()
    np.testing.assert_array_less(ranks / 6 - 1e-15, u)
    np.testing.assert_array_less(u, (ranks + 1) / 6 + 1e-15)
    for level in (0.5, 0.9, 0.95):
        want = (np.abs(u - 0.5) <= level / 2).mean()
        assert float(metrics[f"coverage{round(100 * level)}"]) == pytest.approx(want)
    # chi-square on B = max(2, min(20, N // 5)) = 2 bins of 3 rank values (expected 3 each),
    # Bonferroni-combined over the 3 summaries
    counts = np.stack([np.bincount(ranks[:, j] // 3, minlength=2) for j in range(3)])
    chi2 = ((counts - 3.0) ** 2 / 3.0).sum(1)
    want_p = min(1.0, 3 * scipy.stats.chi2.sf(chi2, df=1).min())
    assert float(metrics["sbc_pvalue"]) == pytest.approx(want_p, rel=1e-10)


def test_trained_ensemble_draws_differ_between_problems_with_the_same_data(monkeypatch):
    # the same ensemble as the tiny run above (cached); B2 sources have 256 points and the
    # embedding sees 128, so the subsample seeds change the draws
    seen = []
    monkeypatch.setattr(
        calibrate_mod, "calibration_rows", lambda s, infer, *a, **k: seen.append(infer)
    )
    calibrate_rows(True, 0, steps=5, n_draws=5, members=2)
    src = simulate(1, seed=0)[1][0]
    a, b = seen[0](src), seen[0](src)
    assert a.shape == b.shape == (5, 3) and not torch.equal(a, b)


def test_infer_keeps_a_random_n_draws_of_the_balanced_pool(monkeypatch):
    # 2 members x ceil(5 / 2) = 6 draws, 5 kept: the first five left member 1 one draw short
    # in every problem; now a random five, so each kept draw is from either member w.p. 1/2
    from bayesphys import SamplePosterior
    from bayesphys.meta_fm import MFMEnsemble

    seen = []
    monkeypatch.setattr(
        calibrate_mod, "calibration_rows", lambda s, infer, *a, **k: seen.append(infer)
    )

    def coded(self, x, treatment=None, *, num_samples=1, seed=0, features=None):
        # draw k of member m: a population at the constant 10 m + k
        codes = torch.tensor([[10.0 * m + k for k in range(num_samples)] for m in range(2)])
        n, d = x[0].shape
        return SamplePosterior(codes[:, :, None, None, None].expand(2, num_samples, 1, n, d))

    monkeypatch.setattr(MFMEnsemble, "posterior", coded)
    calibrate_rows(True, 0, steps=5, n_draws=5, members=2)
    src = simulate(1, seed=0)[1][0]
    kept = [sorted(seen[0](src)[:, 0].tolist()) for _ in range(30)]
    pool = {0.0, 1.0, 2.0, 10.0, 11.0, 12.0}
    assert all(len(k) == 5 == len(set(k)) and set(k) <= pool for k in kept)
    dropped = {float(next(iter(pool - set(k)))) for k in kept}
    assert len(dropped) > 1 and 12.0 in [x for k in kept for x in k]
