"""Argument checks of the ``benchmarks/*.py`` scripts: a bad option is refused before anything
runs or is written (a typo used to replace a committed results file with an empty table)."""

from __future__ import annotations

import json
import shutil

import pytest

import bayesphys._bench as bench
from bayesphys._bench import repo_root, script_module

BENCH = repo_root() / "benchmarks"


def _boom(*args, **kwargs):
    raise AssertionError("a benchmark would run")


def _refused(capsys, fn, argv, match):
    with pytest.raises(SystemExit) as err:
        fn(argv)
    assert err.value.code == 2 and match in capsys.readouterr().err


def test_gp_pde_refuses_unknown_problems_and_methods(tmp_path, capsys, monkeypatch):
    mod = script_module(str(BENCH / "gp_pde.py"))
    monkeypatch.setattr(mod, "run_one", _boom)
    _refused(capsys, mod.main, ["--only", "poisson-1d", "--out", str(tmp_path)], "--only")
    _refused(capsys, mod.main, ["--methods", "GP-hm", "--out", str(tmp_path)], "--methods")
    assert not list(tmp_path.iterdir())


def test_gp_pde_quick_scaling_rows_are_not_committed(tmp_path, monkeypatch):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(BENCH / "gp_pde.py", tmp_path / "benchmarks" / "gp_pde.py")
    committed = tmp_path / "benchmarks" / "results" / "gp_pde.json"
    committed.write_text(json.dumps({"command": "full", "quick": False, "rows": []}))
    monkeypatch.setattr(bench, "repo_root", lambda: tmp_path)
    mod = script_module(str(tmp_path / "benchmarks" / "gp_pde.py"))
    rows = [{"problem": "scaling-poisson2d", "method": "kron", "setting": {}, "metrics": {}}]
    monkeypatch.setattr(mod, "scaling_rows", lambda sizes, n, device: rows)
    monkeypatch.setattr(mod, "scaling_plot", lambda rows, path: path)
    path = mod.main(["--scaling-only", "--quick"])
    assert path != committed and json.loads(path.read_text())["quick"] is True
    assert json.loads(committed.read_text())["rows"] == []
    assert not (tmp_path / "docs").exists()


def test_neural_process_refuses_unknown_rows(tmp_path, capsys, monkeypatch):
    mod = script_module(str(BENCH / "neural_process.py"))
    monkeypatch.setattr(mod, "poisson_test_set", _boom)
    _refused(capsys, mod.main, ["--only", "p1", "--out", str(tmp_path)], "--only")
    _refused(capsys, mod.main, ["--skip", "B2", "--out", str(tmp_path)], "--skip")
    assert not list(tmp_path.iterdir())


def test_odil_refuses_unknown_only(tmp_path, capsys):
    mod = script_module(str(BENCH / "odil.py"))
    _refused(capsys, mod.main, ["--only", "B4", "--out", str(tmp_path)], "--only")
    assert not list(tmp_path.iterdir())


def test_meta_fm_refuses_a_problem_listed_twice(tmp_path, capsys, monkeypatch):
    mod = script_module(str(BENCH / "meta_fm.py"))
    monkeypatch.setattr(mod, "run_task", _boom)
    _refused(capsys, mod.main, ["--problems", "B2,B2", "--out", str(tmp_path)], "--problems")


@pytest.mark.parametrize(
    "script", ["meta_fm_conditioning_ablation.py", "meta_fm_features_ablation.py"]
)
@pytest.mark.parametrize("seeds", ["0", "-1"])
def test_ablations_refuse_no_seeds(tmp_path, capsys, script, seeds):
    mod = script_module(str(BENCH / script))
    _refused(capsys, mod.main, ["--seeds", seeds, "--out", str(tmp_path)], "--seeds")
    assert not list(tmp_path.iterdir())


def test_scale_out_records_the_options_that_change_its_rows(tmp_path, monkeypatch):
    mod = script_module(str(BENCH / "scale_out.py"))
    for fn in ("_probe_rows", "_cohort_rows", "_ddp_rows"):
        monkeypatch.setattr(mod, fn, lambda *a, **k: [])
    path = mod.main(["--quick", "--executors", "sequential", "--no-ddp", "--out", str(tmp_path)])
    cmd = json.loads(path.read_text())["command"]
    assert cmd == "bayesphys bench scale_out --quick --executors sequential --no-ddp"
