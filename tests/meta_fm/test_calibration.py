"""The meta_fm calibration hook: simulator shapes and well-formed rows on a tiny setting."""

from __future__ import annotations

import math

import torch

from bayesphys.meta_fm._calibration import calibrate_rows, population_summaries, simulate


def test_simulate_exact_summaries_match_population():
    theta, data = simulate(4, seed=0)
    assert theta.shape == (4, 3) and len(data) == 4
    assert data[0].shape == (256, 2)
    assert torch.all(theta[:, 2] > 0)
    assert population_summaries(data[0]).shape == (3,)


def test_calibrate_rows_tiny_is_well_formed():
    torch.manual_seed(0)
    rows = calibrate_rows(True, 0, steps=5, n_sims=6, n_draws=5, members=2)
    assert len(rows) >= 1
    metrics = {r["metric"]: r["value"] for r in rows} if "metric" in rows[0] else rows[0]["metrics"]
    for key in ("coverage50", "coverage90", "coverage95", "sbc_pvalue"):
        assert key in metrics
        assert math.isfinite(float(metrics[key]))
        assert 0.0 <= float(metrics[key]) <= 1.0
