"""Calibration hook of the GP PDE solver (issue 9)."""

import math

import torch

from bayesphys.gp_pde import _calibration as cal


def test_simulate_shapes_and_boundary_consistency():
    theta, data = cal.simulate(4, seed=1)
    fam = cal.PoissonFamily()
    assert theta.shape == (4, fam.xp.numel())
    assert len(data) == 4 and data[0]["f"].shape == (fam.xc.numel(),)
    # probes include x = 0 and 1: the truth there equals the observed boundary data
    torch.testing.assert_close(theta[:, 0], torch.stack([d["g"][0] for d in data]))
    torch.testing.assert_close(theta[:, -1], torch.stack([d["g"][1] for d in data]))


def test_infer_matches_boundary_and_nugget_widens():
    fam, tight = cal.PoissonFamily(), cal.PoissonFamily(infer_tau_rel=1e-6)
    _, data = fam.simulate(1, seed=2)
    p, q = fam.infer(data[0]), tight.infer(data[0])
    assert p.mean.shape == (fam.xp.numel(),)
    assert abs(float(p.mean[0] - data[0]["g"][0])) < 1e-3
    mid = fam.xp.numel() // 2
    assert float(p.stddev[mid]) > float(q.stddev[mid]) > 0


def test_calibration_rows_tiny():
    rows = cal.calibration_rows(
        cal.simulate,
        cal.PoissonFamily().infer,
        cal.PoissonFamily().summaries(),
        n_sims=20,
        n_draws=19,
        seed=0,
        problem="poisson1d-gp-prior",
        method="gp-pde exact (nugget=tau)",
    )
    assert len(rows) == 1
    m = rows[0]["metrics"]
    for key in ("coverage90", "sbc_pvalue", "crps"):
        assert math.isfinite(float(m[key]))
    assert 0.0 <= float(m["coverage90"]) <= 1.0 and 0.0 <= float(m["sbc_pvalue"]) <= 1.0


def test_calibrate_rows_quick_well_formed():
    rows = cal.calibrate_rows(True, 0)
    names = [r["method"] for r in rows]
    assert names[:2] == ["gp-pde exact (nugget=tau)", "gp-pde jitter-only"]
    # a rejected jitter-only posterior gets its recalibrated rows beside it
    assert names[2:] in (
        [],
        ["gp-pde jitter-only + affine recal", "gp-pde jitter-only + shape recal"],
    )
    for r in rows:
        assert r["problem"] == "poisson1d-gp-prior" and "result" in r
    # the well-specified posterior covers near nominal; the jitter-only one under-covers
    good, bad = (float(r["metrics"]["coverage90"]) for r in rows[:2])
    assert 0.8 <= good <= 0.97 and bad < good
