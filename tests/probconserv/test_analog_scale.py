"""HybridCalibration's analog variance scale (``neighbours = K > 0``): for each query the
out-of-fold z-scores of the K validation functions nearest in Step-1 mean set a per-slice
scale ``(q_0.9(|z|) / z_0.9)^2`` (the branch had no test)."""

from __future__ import annotations

import torch

from bayesphys.probconserv.calibration import Z90, HybridCalibration

F64 = torch.float64


def _calibration(v=7, nt=3, n=5, k=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    val_mean = torch.randn(v, nt, n, generator=gen, dtype=F64)
    # validation function i has z-scores of spread (i + 1): the scale tells them apart
    spread = torch.arange(1, v + 1, dtype=F64)[:, None, None]
    val_z = {
        "prior": spread * torch.randn(v, nt, n, generator=gen, dtype=F64),
        "post": 0.5 * spread * torch.randn(v, nt, n, generator=gen, dtype=F64),
    }
    return HybridCalibration(
        t=torch.linspace(0, 1, nt, dtype=F64),
        x=torch.linspace(0, 1, n, dtype=F64),
        err_root=torch.zeros(nt, n, v, dtype=F64),
        beta=0.0,
        trace_ratio=1.0,
        prior_scale=1.0,
        post_scale=1.0,
        cv_mse={},
        neighbours=k,
        val_mean=val_mean,
        val_z=val_z,
    )


def test_the_analog_scale_uses_the_k_nearest_validation_functions():
    cal = _calibration()
    gen = torch.Generator().manual_seed(1)
    query = cal.val_mean[[4, 0]] + 1e-3 * torch.randn(2, 3, 5, generator=gen, dtype=F64)
    for stage in ("prior", "post"):
        got = cal.scale_for(query, stage)
        assert got.shape == (2, 3)
        for b in range(2):
            d = (cal.val_mean - query[b]).flatten(1).norm(dim=1)
            near = d.argsort()[: cal.neighbours]
            assert int(near[0]) == (4, 0)[b]  # the function the query was drawn next to
            z = cal.val_z[stage][near]  # [K, nt, N]
            for s in range(3):
                q = torch.quantile(z[:, s].abs().flatten(), 0.9)
                torch.testing.assert_close(got[b, s], (q / Z90) ** 2)


def test_without_neighbours_the_scale_is_global():
    cal = _calibration(k=0)
    query = cal.val_mean[:2]
    assert cal.scale_for(query, "prior") == 1.0 and cal.scale_for(query, "post") == 1.0


def test_the_analog_scale_makes_the_neighbours_z_scores_cover_90_percent():
    """The meaning of the scale, not its formula: divided by sqrt(scale), the K neighbours'
    out-of-fold z-scores of each slice fall inside +-z_0.9 at the 90 % rate, and a function
    with twice the error spread gets about four times the scale."""
    cal = _calibration(v=6, nt=2, n=400, k=1)
    for i in range(6):
        scale = cal.scale_for(cal.val_mean[i : i + 1], "prior")[0]  # [nt]; K = 1: itself
        z = cal.val_z["prior"][i]  # [nt, n], spread i + 1
        inside = (z.abs() / scale.sqrt()[:, None] <= Z90 + 1e-12).to(F64).mean(dim=1)
        torch.testing.assert_close(inside, torch.full_like(inside, 0.9), rtol=0, atol=2 / 400)
        torch.testing.assert_close(scale.sqrt(), torch.full_like(scale, i + 1.0), rtol=0.15, atol=0)
