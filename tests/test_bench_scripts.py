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
    # "--only: unknown ..." is the script's own message; the usage line lists every option but
    # never with the colon, so a refusal for another reason does not pass
    assert err.value.code == 2 and f"{match}: " in capsys.readouterr().err


REFUSALS = [  # (script, function that would start a benchmark, argv, option named in the error)
    ("gp_pde.py", "run_one", ["--only", "poisson-1d"], "--only"),
    ("gp_pde.py", "run_one", ["--methods", "GP-hm"], "--methods"),
    ("neural_process.py", "poisson_test_set", ["--only", "p1"], "--only"),
    ("neural_process.py", "poisson_test_set", ["--skip", "B2"], "--skip"),
    ("odil.py", None, ["--only", "B4"], "--only"),
    ("odil_joint.py", "run", ["--solvers", "lu"], "--solvers"),
    ("odil_joint.py", "run", ["--nt", "1"], "--nt"),
    ("meta_fm.py", "run_task", ["--problems", "B2,B2"], "--problems"),
    ("scale_out.py", "_probe_rows", ["--executors", "sequential,spark"], "--executors"),
]


@pytest.mark.parametrize(
    "script, starts, argv, option", REFUSALS, ids=[f"{r[0]}{r[2][0]}" for r in REFUSALS]
)
def test_bad_options_are_refused_before_anything_runs(
    tmp_path, capsys, monkeypatch, script, starts, argv, option
):
    mod = script_module(str(BENCH / script))
    if starts is not None:
        monkeypatch.setattr(mod, starts, _boom)
    _refused(capsys, mod.main, [*argv, "--out", str(tmp_path)], option)
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


def test_scale_out_skips_an_engine_that_is_not_installed_with_a_note(tmp_path, monkeypatch, capsys):
    import sys

    mod = script_module(str(BENCH / "scale_out.py"))
    measured = []
    monkeypatch.setattr(mod, "_probe_rows", lambda *a, **k: [])
    monkeypatch.setattr(mod, "_cohort_rows", lambda ns, ex, *a, **k: measured.extend(ex) or [])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    argv = ["--quick", "--executors", "sequential,ray", "--no-ddp", "--out", str(tmp_path)]
    path = mod.main(argv)
    assert measured == ["sequential"]
    assert "skip ray: not installed" in capsys.readouterr().out
    assert json.loads(path.read_text())["note"].endswith("Skipped (not importable here): ray.")


def test_gp_pde_peak_memory_is_each_rows_own():
    """peak_mem_mb was the running peak of the whole benchmark process (ru_maxrss): a small
    row after a large one reported the large one's peak."""
    import numpy as np

    mod = script_module(str(BENCH / "gp_pde.py"))
    if not mod._reset_peak():
        pytest.skip("no /proc/self/clear_refs here")
    big = np.ones((6000, 6000))  # ~275 MB resident
    big += 1.0
    high = mod._peak_mb()
    del big
    assert mod._reset_peak()
    assert mod._peak_mb() < high - 200
