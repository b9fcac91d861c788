"""`benchmarks/meta_fm.py`'s ``run_seed``: which models get the per-problem options."""

from __future__ import annotations

import pytest
import torch

from bayesphys._bench import repo_root, script_module
from bayesphys.problems.populations import linear_map

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")

SCRIPT = str(repo_root() / "benchmarks" / "meta_fm.py")


# populations of 40 points (below the script's config.points) and 4 calibration populations
# keep the fits fast; the resampling warning and the vacuous conformal radius that gives are
# not what the test checks
@pytest.mark.filterwarnings("ignore:fit. a training (source|target) population has:UserWarning")
@pytest.mark.filterwarnings("ignore:conformal_coverage. .* scores are too few:UserWarning")
@pytest.mark.parametrize("centered", [True, False])
def test_run_seed_centres_mfm_and_its_ensemble_members_only(monkeypatch, centered):
    mod = script_module(SCRIPT)
    tiny = linear_map(n_train=6, n_cal=4, n_test=4, n_points=40, seed=0)
    monkeypatch.setattr(mod, "problem_data", lambda pid, quick, seed: (tiny, {"split": "t"}, 5))
    seen: list[tuple[str, bool]] = []

    class Recording(mod.MetaFlowMatching):
        def __init__(self, *args, **kw):
            seen.append((kw["method"], kw.get("centered", False)))
            super().__init__(*args, **kw)

    monkeypatch.setattr(mod, "MetaFlowMatching", Recording)
    res = mod.run_seed(
        "B2", 0, True, 2, torch.device("cpu"), 100, lambda msg: None, 0, "film", centered
    )
    members = [c for m, c in seen if m == "MFM"]
    assert len(members) == mod.MEMBERS["B2"]  # the MFM row's fit plus the extra members
    assert members == [centered] * len(members)
    assert [(m, c) for m, c in seen if m != "MFM"] == [("FM", False), ("CGFM", False)]
    assert res["_setting"]["mfm_centered"] is centered
    assert res["MFM-ensemble"]["steps"] == 2 * mod.MEMBERS["B2"]


def test_speed_script_times_cgfm_and_mfm(capsys):
    speed = str(repo_root() / "benchmarks" / "meta_fm_speed.py")
    out = script_module(speed).main(["--problem", "B2", "--steps", "2", "--pops", "2"])
    assert out["pops"] == 2 and out["steps"] == 2
    for key in ("CGFM_fit_s", "CGFM_predict_s", "MFM_fit_s", "MFM_predict_s"):
        assert out[key] > 0
    assert '"MFM_predict_s"' in capsys.readouterr().out


@pytest.mark.parametrize("script", ["meta_fm.py", "meta_fm_speed.py"])
def test_benchmark_scripts_refuse_non_positive_counts(script, capsys):
    mod = script_module(str(repo_root() / "benchmarks" / script))
    flag = "--jobs" if script == "meta_fm.py" else "--pops"
    with pytest.raises(SystemExit):
        mod.main([flag, "0"])
    assert f"{flag}: expected a positive int, received '0'" in capsys.readouterr().err


def test_b4_baselines_script_smoke_run(tmp_path, capsys):
    import json

    script = script_module(str(repo_root() / "benchmarks" / "meta_fm_b4_baselines.py"))
    path = script.main(["--smoke", "--out", str(tmp_path)])
    assert path == tmp_path / "meta_fm_b4_baselines.json"
    payload = json.loads(path.read_text())
    assert payload["smoke"] is True and payload["command"].endswith(
        "--smoke --out " + str(tmp_path)
    )
    rows = payload["rows"]
    per_seed = [r for r in rows if isinstance(r["seed"], int)]
    splits, methods = script.SPLITS, script.METHODS
    assert len(per_seed) == len(splits) * len(script.SEEDS) * len(methods)
    assert len(rows) == len(per_seed) + 2 * len(splits) * len(methods)  # mean and sd rows
    by = {(r["split"], r["seed"], r["method"]): r for r in rows}
    for split in splits:
        for seed in script.SEEDS:
            for m in methods:
                r = by[(split, seed, m)]
                assert all(r[k] >= 0 for k in ("w1", "w2", "mmd")) and -1 <= r["r"] <= 1
            # the oracle beats identity and the pooled shift in W2; translations keep r
            assert by[(split, seed, "ideal-shift")]["w2"] < by[(split, seed, "identity")]["w2"]
            assert by[(split, seed, "ideal-shift")]["w2"] < by[(split, seed, "shift")]["w2"]
            for m in ("shift", "shift-treatment", "ideal-shift"):
                assert by[(split, seed, m)]["r"] == pytest.approx(
                    by[(split, seed, "identity")]["r"], abs=1e-5
                )
        mean = by[(split, "mean", "shift")]["w2"]
        assert mean == pytest.approx(
            sum(by[(split, s, "shift")]["w2"] for s in script.SEEDS) / len(script.SEEDS)
        )
    # patient split: 2 held-out patients x 3 replicates x 2 treatments; replica: 8 x 2
    assert by[("patient", 0, "floor")]["test_pops"] == 12
    assert by[("replica", 0, "floor")]["test_pops"] == 16
    out = capsys.readouterr().out
    assert "| replica | ideal-shift |" in out and "wrote " + str(path) in out


def test_spread_perfect_script_smoke_run(tmp_path, capsys, monkeypatch):
    import json

    import numpy as np

    from bayesphys.meta_fm import floor_prediction

    script = script_module(str(repo_root() / "benchmarks" / "meta_fm_spread_perfect.py"))
    path = script.main(["--smoke", "--out", str(tmp_path)])
    assert path == tmp_path / "meta_fm_spread_perfect.json"
    payload = json.loads(path.read_text())
    assert payload["smoke"] is True and payload["pairs"] == script.PAIRS
    rows = payload["rows"]
    per_seed = [r for r in rows if isinstance(r["seed"], int)]
    n = len(script.PROBLEMS) * len(script.SPREADS)
    assert len(per_seed) == n * len(script.SEEDS) and len(rows) == len(per_seed) + 2 * n
    by = {(r["problem"], r["seed"], r["spread"]): r for r in rows}
    bench = script_module(SCRIPT)
    for pid in script.PROBLEMS:
        for seed in script.SEEDS:
            expected, one = by[(pid, seed, "expected-floor")], by[(pid, seed, "one-sample")]
            assert expected["test_pops"] == script.SMOKE["n_test"]
            # the perfect predictor is scored as the benchmark scores its floor row
            test = script.held_out(pid, seed, smoke=True)
            floor = bench.mean_metrics(
                floor_prediction(test, seed=1000 + seed), test.target, script.MAX_POINTS
            )
            assert one["err_mean"] == pytest.approx(floor["w2"], rel=1e-12)
            assert expected["err_mean"] == one["err_mean"]
            for r in (expected, one):
                assert -1 <= r["spearman"] <= 1 and r["spread_mean"] > 0
        for spread in script.SPREADS:
            vals = np.array([by[(pid, s, spread)]["spearman"] for s in script.SEEDS])
            assert by[(pid, "mean", spread)]["spearman"] == pytest.approx(vals.mean())
            assert by[(pid, "sd", spread)]["spearman"] == pytest.approx(vals.std(ddof=1))
    # seeded: a task's rows reproduce exactly (seconds aside)
    again = script.run_task(("B3", 1), smoke=True)
    for r in again:
        assert {k: v for k, v in r.items() if k != "seconds"} == {
            k: v for k, v in by[("B3", 1, r["spread"])].items() if k != "seconds"
        }
    assert "| B3 | one-sample |" in capsys.readouterr().out
    # the full-run path takes the benchmark's own test split
    tiny = linear_map(n_train=3, n_cal=2, n_test=4, n_points=12, seed=5)
    calls = []

    def fake_problem_data(pid, quick, seed):
        calls.append((pid, quick, seed))
        return tiny, {"split": "test"}, 5

    monkeypatch.setattr(script, "problem_data", fake_problem_data)
    held = script.held_out("B2", 2)
    assert calls == [("B2", False, 2)] and held.source_id.tolist() == tiny.splits["test"]


def test_predict_batch_script_times_both_ways(capsys):
    script = script_module(str(repo_root() / "benchmarks" / "meta_fm_predict_batch.py"))
    threads = torch.get_num_threads()
    out = script.main(["--problems", "B2", "--steps", "1", "--repeats", "1", "--pops", "3"])
    assert torch.get_num_threads() == threads
    for solver in ("rk4", "dopri5"):
        row = out["B2"][solver]
        assert row["populations"] == "3 x 512"
        assert row["own_s"] > 0 and row["batch_s"] > 0
        assert 0 <= row["max_diff"] < 1e-2  # the batch moves points by round-off or atol/rtol
    assert '"batch_s"' in capsys.readouterr().out
