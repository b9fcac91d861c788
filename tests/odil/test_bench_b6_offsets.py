"""Smoke test of benchmarks/odil_b6_offsets.py (B6's drift over the coarse grid's offsets)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from bayesphys._bench import repo_root, script_module

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")

PARAMS = ("log_Dw", "log_rho", "x0", "y0")


def _script():
    return script_module(str(repo_root() / "benchmarks" / "odil_b6_offsets.py"))


def test_smoke_rows_per_offset_and_drift_from_the_recorded_fits(tmp_path):
    path = _script().main(["--smoke", "--out", str(tmp_path)])
    payload = json.loads(path.read_text())
    assert payload["smoke"] is True and payload["offsets"] == ["0,0", "1,2"]
    rows = [r for r in payload["rows"] if r["offset"] != "mean"]
    means = [r for r in payload["rows"] if r["offset"] == "mean"]
    assert [(r["offset"], r["mm"]) for r in rows] == [
        ("0,0", 2),
        ("0,0", 4),
        ("1,2", 2),
        ("1,2", 4),
    ]
    for off in ("0,0", "1,2"):
        a, b = (r for r in rows if r["offset"] == off)
        for n in PARAMS:
            # B6's drift, recomputed from the means and sds the rows record
            want = abs(a[f"mode_{n}"] - b[f"mode_{n}"]) / max(a[f"sd_{n}"], b[f"sd_{n}"])
            assert a[f"drift_{n}"] == b[f"drift_{n}"] == pytest.approx(want, rel=1e-12)
            assert a[f"sd_{n}"] > 0
        assert a["drift_max"] == max(a[f"drift_{n}"] for n in PARAMS)
    # the true focus moves with the patient: (1, 2) mm towards the origin
    truth = {r["offset"]: [r[f"mode_{n}"] - r[f"err_{n}"] for n in PARAMS] for r in rows}
    shift = [u - v for u, v in zip(truth["0,0"], truth["1,2"])]
    assert shift == pytest.approx([0.0, 0.0, 1.0, 2.0], abs=1e-9)
    # the summary rows average the two offsets
    assert [(r["mm"], r["offsets"]) for r in means] == [(2, 2), (4, 2)]
    for r in means:
        sel = [q for q in rows if q["mm"] == r["mm"]]
        for n in PARAMS:
            assert r[f"err_{n}"] == pytest.approx(sum(q[f"err_{n}"] for q in sel) / 2)
        below = sum(q["drift_max"] < 1 for q in sel) / 2
        assert r["drift_below_1sd"] == below
    assert all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))


def test_shift_moves_every_map_and_refuses_to_wrap_tissue():
    mod = _script()
    wm = torch.zeros(8, 8, dtype=torch.float64)
    wm[3, 5] = 1.0
    p = {"wm": wm, "gm": wm.clone(), "truth": {"x0": 3.5, "y0": 5.5}, "foci": [[3.5, 5.5]]}
    q = mod.shifted_patient(p, 1, 2)
    assert q["wm"][2, 3] == 1.0 and q["gm"][2, 3] == 1.0 and q["wm"].sum() == 1.0
    assert (q["truth"]["x0"], q["truth"]["y0"], q["foci"]) == (2.5, 3.5, [[2.5, 3.5]])
    assert p["truth"]["x0"] == 3.5  # the patient itself is left alone
    with pytest.raises(ValueError, match="'wm' map is not empty"):
        mod.shifted_patient(p, 0, 6)


def test_coarse_observation_is_the_block_mean_scored_by_the_coarse_model():
    mod = _script()
    from bayesphys.problems.glioma import brain_phantom, synthetic_patient

    p = synthetic_patient(3, phantom=brain_phantom(64, 1.0), refine=1)
    coarse = mod.ODIL.coarsened_model(p, 4, None)
    fine = mod.CoarselyObservedModel(
        p["wm"], p["gm"], p["labels"], spacing=1.0, th_up=p["th_up"], th_down=p["th_down"]
    ).observe_with(coarse, 4)
    assert torch.equal(fine.centroid, coarse.centroid)
    c = torch.rand(fine.shape, dtype=fine.dtype, generator=torch.Generator().manual_seed(0))
    cc = F.avg_pool2d(fine.full(c)[None, None], 4)[0, 0][coarse.crop]
    got, want = fine._data_residuals(c), coarse._data_residuals(cc)
    assert got.keys() == want.keys()
    for k in got:
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--offsets", "4,0"], "--offsets"),
        (["--offsets", "1"], "--offsets"),
        (["--resolutions", "3,4"], "--resolutions"),
        (["--seeds", "-1"], "--seeds"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch, argv, option):
    mod = _script()

    def boom(*a, **k):
        raise AssertionError("a fit would run")

    monkeypatch.setattr(mod, "fit_offset", boom)
    monkeypatch.setattr(mod, "synthetic_patient", boom)
    with pytest.raises(SystemExit) as err:
        mod.main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2 and f"{option}: " in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
