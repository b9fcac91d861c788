"""The ``bayesphys calibrate`` suite: hooks, merging, outputs."""

from __future__ import annotations

import json
import types

import pytest

from bayesphys._bench import repo_root
from bayesphys.diagnostics import calibration_rows, suite
from bayesphys.inference_data import group_dataset, load_netcdf


def _fake_hook(model, fail=False):
    def calibrate_rows(quick: bool, seed: int) -> list[dict]:
        if fail:
            raise RuntimeError("boom")
        return calibration_rows(
            model.simulate,
            model.infer,
            n_sims=40 if quick else 80,
            n_draws=19,
            seed=seed,
            problem="normal-normal",
            method="exact",
        )

    return types.SimpleNamespace(calibrate_rows=calibrate_rows)


def test_hook_rows_are_written_and_merged(tmp_path, monkeypatch, exact_model):
    monkeypatch.setattr(suite, "load_hook", lambda comp: _fake_hook(exact_model))
    path = suite.run_calibration("odil", quick=True, out=tmp_path, seed=0)
    data = json.loads(path.read_text())
    (row,) = data["rows"]
    assert row["setting"]["component"] == "odil" and row["setting"]["quick"] is True
    for key in suite.REQUIRED_METRICS + ("seconds",):
        assert isinstance(row["metrics"][key], float)
    assert (tmp_path / "calibration_odil.png").stat().st_size > 1000
    idata = load_netcdf(tmp_path / "calibration_odil.nc")
    assert group_dataset(idata, "prior_sbc")["theta_0"].dims == ("sbc_simulation",)
    # a second component is merged, not overwritten; re-running replaces its own rows
    monkeypatch.setattr(suite, "load_hook", lambda comp: None)
    suite.run_calibration("meta_fm", quick=True, out=tmp_path, seed=0)
    assert set(json.loads(path.read_text())["figures"]) == {"odil"}  # none for missing hooks
    assert not (tmp_path / "calibration_meta_fm.png").exists()
    # a failing rerun raises and keeps the component's good rows and figure (it wiped them)
    before = json.loads(path.read_text())
    monkeypatch.setattr(suite, "load_hook", lambda comp: _fake_hook(exact_model, fail=True))
    with pytest.raises(suite.CalibrationFailed, match="odil: calibrate_rows failed.*kept"):
        suite.run_calibration("odil", quick=True, out=tmp_path, seed=0)
    after = json.loads(path.read_text())
    assert after["rows"] == before["rows"] and after["figures"] == before["figures"]
    # a failing first run is recorded as a row (and raises)
    fresh = tmp_path / "fresh"
    with pytest.raises(suite.CalibrationFailed, match="failure is recorded"):
        suite.run_calibration("odil", quick=True, out=fresh, seed=0)
    (row,) = json.loads((fresh / "calibration.json").read_text())["rows"]
    assert "calibrate_rows failed" in row["note"] and row["metrics"] == {}


def test_the_recorded_command_names_the_seed(tmp_path, monkeypatch, exact_model):
    """calibration.json recorded 'bayesphys calibrate X --quick' for a run with --seed 7."""
    monkeypatch.setattr(suite, "load_hook", lambda comp: _fake_hook(exact_model))
    path = suite.run_calibration("odil", quick=True, out=tmp_path, seed=7)
    data = json.loads(path.read_text())
    assert data["command"] == "bayesphys calibrate odil --quick --seed 7"
    assert data["rows"][0]["setting"]["seed"] == 7
    assert load_netcdf(tmp_path / "calibration_odil.nc").attrs["seed"] == 7  # the ranks' too
    suite.run_calibration("gp_pde", quick=True, out=tmp_path, seed=0)
    assert load_netcdf(tmp_path / "calibration_gp_pde.nc").attrs["seed"] == 0
    data = json.loads(path.read_text())
    assert data["command"] == (
        "bayesphys calibrate gp_pde --quick; bayesphys calibrate odil --quick --seed 7"
    )


def test_unknown_component(tmp_path):
    with pytest.raises(ValueError, match="component"):
        suite.run_calibration("nope", quick=True, out=tmp_path)


def test_absent_hook_is_recorded(monkeypatch):
    # pretend the component ships no _calibration module: a row says so, nothing is run
    monkeypatch.setattr(suite, "load_hook", lambda component: None)
    rows = suite._component_rows("neural_process", quick=True, seed=0)
    assert len(rows) == 1 and rows[0]["method"] == "-" and "not calibrated" in rows[0]["note"]


@pytest.mark.slow
def test_core_quick_end_to_end(tmp_path):
    path = suite.run_calibration("core", quick=True, out=tmp_path, seed=0)
    rows = {r["method"]: r["metrics"] for r in json.loads(path.read_text())["rows"]}
    exact = rows["exact"]
    over = rows["overconfident sd x0.5"]
    fixed = rows["overconfident + recalibration"]
    assert exact["sbc_pvalue"] > 0.01 and 0.85 <= exact["coverage90"] <= 0.95
    assert over["sbc_pvalue"] < 0.01 and over["coverage90"] < 0.75
    assert fixed["sbc_pvalue"] > 0.01 and 0.85 <= fixed["coverage90"] <= 0.95
    assert (tmp_path / "calibration_core.png").exists()


def test_quick_run_without_out_writes_to_a_temporary_folder(monkeypatch, exact_model, tmp_path):
    """A quick run with out=None must not touch the committed results (it used to hand
    out=None to write_results, which wrote benchmarks/results/calibration.json)."""
    import tempfile

    monkeypatch.setattr(suite, "load_hook", lambda comp: _fake_hook(exact_model))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the temporary folder: here
    root = repo_root()
    committed = [
        root / "benchmarks" / "results" / "calibration.json",
        root / "docs" / "benchmarks.md",
    ]
    before = [p.read_bytes() if p.exists() else None for p in committed]
    path = suite.run_calibration("odil", quick=True, out=None, seed=0)
    assert path.is_relative_to(tmp_path) and path.name == "calibration.json"
    assert json.loads(path.read_text())["rows"][0]["setting"]["quick"] is True
    # the committed results (and the docs table they feed) are byte for byte as before
    assert [p.read_bytes() if p.exists() else None for p in committed] == before


def test_full_run_writes_the_figure_the_docs_show(monkeypatch, exact_model, tmp_path):
    """A full run without out refreshes docs/img/calibration_<component>.png (the figure
    docs/calibration.md shows; it went to ./bayesphys-out/calibration and the docs' copy went
    stale) and records it relative to the checkout."""
    import bayesphys._bench as bench

    root = tmp_path / "checkout"
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "docs" / "benchmarks.md").write_text("# Benchmarks\n")
    monkeypatch.setattr(bench.results, "repo_root", lambda: root)  # write_results' default
    monkeypatch.setattr(suite, "repo_root", lambda: root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(suite, "load_hook", lambda comp: _fake_hook(exact_model))
    path = suite.run_calibration("odil", quick=False, out=None, seed=0)
    assert path == root / "benchmarks" / "results" / "calibration.json"
    assert (root / "docs" / "img" / "calibration_odil.png").stat().st_size > 1000
    assert json.loads(path.read_text())["figures"] == {"odil": "docs/img/calibration_odil.png"}
    assert (tmp_path / "bayesphys-out" / "calibration" / "calibration_odil.nc").exists()


def test_library_call_prints_nothing_unless_verbose(tmp_path, monkeypatch, capsys, exact_model):
    # a library function writes its rows to the file; the table is the command's (verbose)
    monkeypatch.setattr(suite, "load_hook", lambda comp: _fake_hook(exact_model))
    suite.run_calibration("odil", quick=True, out=tmp_path, seed=0)
    assert capsys.readouterr().out == ""
    suite.run_calibration("odil", quick=True, out=tmp_path, seed=0, verbose=True)
    out = capsys.readouterr().out
    assert "bayesphys calibrate odil" in out and "normal-normal" in out
    with pytest.raises(TypeError, match="verbose"):
        suite.run_calibration("odil", quick=True, out=tmp_path, verbose="yes")


def _hook_with_extra_rows(model, *extra):
    """A hook whose good rows are followed by ``extra`` rows (a late step gone wrong)."""
    good = _fake_hook(model)

    def calibrate_rows(quick: bool, seed: int) -> list[dict]:
        return good.calibrate_rows(quick, seed) + list(extra)

    return types.SimpleNamespace(calibrate_rows=calibrate_rows)


@pytest.mark.parametrize(
    "bad, said",
    [
        ({"method": "m", "metrics": {}}, "row 1: calibrate_rows: row missing 'problem'"),
        ({"problem": "p", "method": "m", "metrics": {"crps": "n/a"}}, "row 1: could not convert"),
        ({"problem": "p", "method": "m", "metrics": {"CRPS": 1.0}}, "row 1: metrics: keys"),
    ],
)
def test_an_invalid_hook_row_keeps_the_valid_ones(tmp_path, monkeypatch, exact_model, bad, said):
    """A hook row missing a key (or with a metric that is not a number) raised a plain error
    after the hook's work, and nothing was written: the valid rows, their figure and ranks are
    now written, the bad row is recorded as failed, and CalibrationFailed names it and the
    file."""
    monkeypatch.setattr(suite, "load_hook", lambda comp: _hook_with_extra_rows(exact_model, bad))
    with pytest.raises(suite.CalibrationFailed, match="1 row\\(s\\) of odil written") as info:
        suite.run_calibration("odil", quick=True, out=tmp_path, seed=0)
    assert said in str(info.value) and str(tmp_path / "calibration.json") in str(info.value)
    rows = json.loads((tmp_path / "calibration.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["exact", "-"]
    assert isinstance(rows[0]["metrics"]["coverage90"], float)
    assert rows[1]["note"].startswith("failed: calibrate_rows row 1")
    assert (tmp_path / "calibration_odil.png").exists()
    assert (tmp_path / "calibration_odil.nc").exists()


def test_a_partly_failed_rerun_replaces_the_old_rows(tmp_path, monkeypatch, exact_model):
    """With previous rows on file, a rerun whose hook returns good rows and one bad row writes
    the new good rows (its figure, drawn from them, replaced the old one; the old rows were
    kept beside it)."""
    monkeypatch.setattr(suite, "load_hook", lambda comp: _fake_hook(exact_model))
    path = suite.run_calibration("odil", quick=True, out=tmp_path, seed=0)
    monkeypatch.setattr(
        suite, "load_hook", lambda comp: _hook_with_extra_rows(exact_model, {"problem": "p"})
    )
    with pytest.raises(suite.CalibrationFailed, match="row missing 'method'"):
        suite.run_calibration("odil", quick=True, out=tmp_path, seed=3)
    rows = json.loads(path.read_text())["rows"]
    assert [r["setting"].get("seed") for r in rows] == [3, None]
    assert rows[1]["method"] == "-" and "row 1" in rows[1]["note"]


@pytest.mark.parametrize("step", ["figure", "ranks"])
def test_a_failing_figure_or_netcdf_keeps_the_rows(tmp_path, monkeypatch, exact_model, step):
    """The figure or the netCDF ranks failing after the hook's work (a plotting error, a full
    disk) lost every row; they are now written and CalibrationFailed names what failed."""
    import bayesphys.diagnostics.plots as plots
    import bayesphys.inference_data as inference_data

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if step == "figure":
        monkeypatch.setattr(plots, "plot_component", boom)
    else:
        monkeypatch.setattr(inference_data, "save_netcdf", boom)
    monkeypatch.setattr(suite, "load_hook", lambda comp: _fake_hook(exact_model))
    what = "figure .*calibration_odil.png" if step == "figure" else "SBC ranks .*calibration_odil"
    with pytest.raises(suite.CalibrationFailed, match=f"odil: {what}.* not .*No space left"):
        suite.run_calibration("odil", quick=True, out=tmp_path, seed=0)
    data = json.loads((tmp_path / "calibration.json").read_text())
    (row,) = data["rows"]
    assert row["method"] == "exact" and isinstance(row["metrics"]["crps"], float)
    # no figure is recorded for rows it was not drawn from
    assert ("odil" in data["figures"]) == (step == "ranks")


def test_load_hook_finds_each_components_hook_and_none_where_absent(monkeypatch):
    import importlib.util

    for comp in suite.COMPONENTS:
        assert callable(suite.load_hook(comp).calibrate_rows)
    real = importlib.util.find_spec

    def no_odil_hook(name, *a):
        return None if name == "bayesphys.odil._calibration" else real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", no_odil_hook)
    assert suite.load_hook("odil") is None  # the component without its hook
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bayesphys.odil" else real(name, *a),
    )
    assert suite.load_hook("odil") is None  # a component not installed
    assert suite.load_hook("gp_pde") is not None

    def broken_parent(name, *a):  # finding a submodule imports its package, which may fail
        if name.startswith("bayesphys.odil"):
            raise ModuleNotFoundError("No module named 'a_missing_dependency'")
        return real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", broken_parent)
    assert suite.load_hook("odil") is None


def test_a_hook_that_fails_to_import_or_returns_no_rows_is_recorded(monkeypatch, capsys):
    def cannot_import(component):
        raise ImportError("no module named scipy")

    monkeypatch.setattr(suite, "load_hook", cannot_import)
    (row,) = suite._component_rows("odil", quick=True, seed=0)
    assert row["method"] == "-" and row["metrics"] == {}
    assert row["note"] == (
        "failed: importing bayesphys.odil._calibration failed: ImportError('no module named scipy')"
    )
    assert "Traceback" in capsys.readouterr().err  # the whole error, on stderr
    assert suite._is_failed(row)
    monkeypatch.setattr(
        suite, "load_hook", lambda comp: types.SimpleNamespace(calibrate_rows=lambda **kw: [])
    )
    (row,) = suite._component_rows("odil", quick=True, seed=0)
    assert row["note"] == "calibrate_rows returned no rows" and not suite._is_failed(row)


def test_a_row_without_every_required_metric_says_which_are_absent():
    metrics = {"coverage90": 0.9, "sbc_pvalue": 0.5}
    absent = [k for k in suite.REQUIRED_METRICS if k not in metrics]
    row = {"problem": "p", "method": "m", "metrics": metrics}
    out, _ = suite._clean(row, "odil", quick=True)
    assert out["note"] == f"metrics absent: {absent}"
    out, _ = suite._clean(dict(row, note="few draws"), "odil", quick=True)
    assert out["note"] == f"few draws; metrics absent: {absent}"
    out, _ = suite._clean(dict(row, metrics={}), "odil", quick=True)  # a status row: no note
    assert "note" not in out
