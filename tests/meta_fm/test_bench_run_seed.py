"""`benchmarks/meta_fm.py`'s ``run_seed``: which models get the per-problem options."""

from __future__ import annotations

import pytest
import torch

from bayesphys._bench import repo_root, script_module
from bayesphys.problems.populations import linear_map

SCRIPT = str(repo_root() / "benchmarks" / "meta_fm.py")


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
