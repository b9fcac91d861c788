"""Argument checks of the ``benchmarks/*.py`` scripts: a bad option is refused before anything
runs or is written (a typo used to replace a committed results file with an empty table)."""

from __future__ import annotations

import argparse
import json
import math
import shutil

import pytest

import bayesphys._bench as bench
from bayesphys._bench import repo_root, script_module
from bayesphys._device import resolve_device

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")

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
    # an id of the full table with --quick: the parse takes either table's, main refuses
    ("gp_pde.py", "run_one", ["--quick", "--only", "advection"], "--only"),
    ("gp_pde.py", "run_one", ["--budget-scale", "0"], "--budget-scale"),
    ("gp_pde.py", "run_one", ["--budget-scale", "nan"], "--budget-scale"),
    ("neural_process.py", "poisson_test_set", ["--only", "p1"], "--only"),
    ("neural_process.py", "poisson_test_set", ["--skip", "B2"], "--skip"),
    ("neural_process.py", "poisson_test_set", ["--only", "C1"], "--only"),
    ("neural_process.py", "poisson_test_set", ["--skip", "P1"], "--skip"),
    ("odil.py", None, ["--only", "B4"], "--only"),
    ("odil_joint.py", "run", ["--solvers", "lu"], "--solvers"),
    ("odil_joint.py", "run", ["--nt", "1"], "--nt"),
    ("meta_fm.py", "run_task", ["--problems", "B2,B2"], "--problems"),
    (
        "meta_fm_conditioning_ablation.py",
        "fit_type_frame",
        ["--type-frame", "--problems", "B1"],
        "--type-frame",
    ),
    (
        "meta_fm_conditioning_ablation.py",
        "fit_type_frame",
        ["--type-frame", "--centering"],
        "--type-frame",
    ),
    ("scale_out.py", "_probe_rows", ["--executors", "sequential,spark"], "--executors"),
    ("scale_out.py", "_probe_rows", ["--device", "cuda"], "--device"),
    ("gp_pde.py", "run_one", ["--device", "tpu"], "--device"),
    ("meta_fm.py", "run_task", ["--device", "tpu"], "--device"),
    ("odil.py", "bench_b0", ["--device", "tpu", "--only", "B0"], "--device"),
    ("odil_resolution.py", "fit_patient", ["--resolutions", "0,2"], "--resolutions"),
    ("odil_resolution.py", "fit_patient", ["--model-errors", "-1"], "--model-errors"),
    ("odil_resolution.py", "fit_patient", ["--sigma-pde", "0"], "--sigma-pde"),
    ("odil_resolution.py", "fit_patient", ["--model-errors", ""], "--sigma-pde"),
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
    # odil_joint.py's --out is the results file, the others' the results folder
    out = tmp_path / "rows.json" if script == "odil_joint.py" else tmp_path
    _refused(capsys, mod.main, [*argv, "--out", str(out)], option)
    assert not list(tmp_path.iterdir())


class _Parsed(BaseException):
    """Raised right after a successful parse: nothing past the parse runs."""


PARSE_REFUSALS = [  # (script, argv, option, what the error names)
    ("gp_pde.py", ["--only", "poisson1d-sin100,Bx"], "--only", "'Bx'"),
    ("gp_pde.py", ["--methods", "GP-HM,GP-hm"], "--methods", "'GP-hm'"),
    ("odil.py", ["--only", "B0,B4"], "--only", "'B4'"),
    ("meta_fm.py", ["--problems", "B1,B9"], "--problems", "'B9'"),
    ("meta_fm.py", ["--problems", "B2,B2"], "--problems", "'B2,B2'"),
    ("neural_process.py", ["--only", "P1,p1"], "--only", "'p1'"),
    ("neural_process.py", ["--skip", "B2"], "--skip", "'B2'"),
    ("neural_process.py", ["--seeds", "0,a"], "--seeds", "'a'"),
    ("neural_process.py", ["--seeds", ","], "--seeds", "','"),
    ("probconserv.py", ["--problems", "pme,heat"], "--problems", "'heat'"),
    ("odil_joint.py", ["--solvers", "cg,lu"], "--solvers", "'lu'"),
    ("scale_out.py", ["--executors", "sequential,spark"], "--executors", "'spark'"),
    ("scale_out.py", ["--executors", "local,local"], "--executors", "'local,local'"),
    ("meta_fm_conditioning_ablation.py", ["--problems", "B9"], "--problems", "'B9'"),
    ("meta_fm_b4_patients.py", ["--folds", "0,4"], "--folds", "[4]"),
    ("meta_fm_b4_patients.py", ["--seeds", "3,0"], "--seeds", "'0'"),
    ("probconserv_edge.py", ["--problems", "heat"], "--problems", "'heat'"),
    ("probconserv_margin.py", ["--methods", "ANP,NP"], "--methods", "'NP'"),
    ("meta_fm_coupling_ablation.py", ["--seeds", "3,x"], "--seeds", "'x'"),
    ("meta_fm_coupling_ablation.py", ["--seeds", "3,3"], "--seeds", "'3,3'"),
    ("meta_fm_spread_ablation.py", ["--members", "3,1"], "--members", "'1'"),
    ("meta_fm_spread_ablation.py", ["--splits", "0,-1"], "--splits", "'-1'"),
    ("meta_fm_fourier_ablation.py", ["--steps", "1000,0"], "--steps", "'0'"),
    ("odil_timestep.py", ["--configs", "4:1:strang:strang"], "--configs", "'4:1:strang:strang'"),
    ("odil_timestep.py", ["--configs", "4:1:rk4:strang:0.05"], "--configs", "rk4"),
    ("odil_timestep.py", ["--configs", "0:1:strang:strang:0.05"], "--configs", "0:1"),
    ("meta_fm_b4_patients.py", ["--steps", "0"], "--steps", "'0'"),
]


@pytest.mark.parametrize(
    "script, argv, option, names",
    PARSE_REFUSALS,
    ids=[f"{r[0]}{' '.join(r[1])}" for r in PARSE_REFUSALS],
)
def test_bad_comma_list_entries_are_refused_by_the_parse(
    capsys, monkeypatch, script, argv, option, names
):
    """The parse itself refuses the entry (a check after it is not reached by a command that
    is only parsed, as the docs' quoted commands are): a parse that succeeds stops here."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    mod = script_module(str(BENCH / script))
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    with pytest.raises(SystemExit) as err:
        mod.main(argv)
    msg = capsys.readouterr().err
    assert err.value.code == 2 and f"argument {option}: " in msg and names in msg


def test_comma_lists_keep_their_meaning(tmp_path, monkeypatch):
    """Valid lists mean what they did: neural_process's rows skipped and seeds, the --only
    that odil records (none when all ran)."""
    npr = script_module(str(BENCH / "neural_process.py"))
    seen = {}

    def parts(*args, **kwargs):
        seen.update(kwargs)
        raise _Parsed

    monkeypatch.setattr(npr, "poisson_test_set", lambda *a, **k: {"x": []})
    monkeypatch.setattr(npr, "_run_parts", parts)
    with pytest.raises(_Parsed):
        npr.main(["--only", "P1,C1", "--skip", "C1", "--seeds", "2, 0", "--out", str(tmp_path)])
    assert seen["seeds"] == [2, 0]
    assert seen["skip"] == {"P1-10", "C1", "P3", "P2", "B1", "SPEED"}
    odil = script_module(str(BENCH / "odil.py"))
    ns = argparse.Namespace(quick=False, only=["B0", "B1", "B2", "B3", "B5", "B6"])
    assert "--only" not in odil._command(ns, "cpu")
    ns.only = ["B3", "B0"]
    assert odil._command(ns, "cpu").endswith(" --only B3,B0")


def test_gp_pde_quick_scaling_rows_are_not_committed(tmp_path, monkeypatch):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(BENCH / "gp_pde.py", tmp_path / "benchmarks" / "gp_pde.py")
    for helper in BENCH.glob("_gp_pde_*.py"):  # the script's helper modules, beside it
        shutil.copy(helper, tmp_path / "benchmarks" / helper.name)
    committed = tmp_path / "benchmarks" / "results" / "gp_pde.json"
    committed.write_text(json.dumps({"command": "full", "quick": False, "rows": []}))
    monkeypatch.setattr(bench.results, "repo_root", lambda: tmp_path)  # write_results' default
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


def test_scale_out_records_the_options_that_change_its_rows(tmp_path, monkeypatch, capsys):
    mod = script_module(str(BENCH / "scale_out.py"))
    for fn in ("_probe_rows", "_cohort_rows", "_ddp_rows"):
        monkeypatch.setattr(mod, fn, lambda *a, **k: [])
    path = mod.main(["--quick", "--executors", "sequential", "--no-ddp", "--out", str(tmp_path)])
    payload = json.loads(path.read_text())
    assert payload["command"] == "bayesphys bench scale_out --quick --executors sequential --no-ddp"
    # sequential alone is only the baseline: no cohort rows, and the run says so
    printed = capsys.readouterr()
    assert "No cohort rows" in payload["note"] and "No cohort rows" in printed.err
    assert printed.out == ""  # stdout is kept for the "results: PATH" line


def test_scale_out_prints_its_progress_on_stderr(tmp_path, monkeypatch, capsys):
    """Progress lines (the CPU probe's, one per row) were on stdout beside the final
    "results: PATH" line, so ``bayesphys bench scale_out ... | tail -1`` was needed to read it."""
    mod = script_module(str(BENCH / "scale_out.py"))
    monkeypatch.setattr(mod, "_spin", lambda n, k: [0.5] * k)  # no timing loop
    monkeypatch.setattr(mod, "_load", lambda: 0.0)
    monkeypatch.setattr(mod, "_cohort_rows", _boom)
    path = mod.main(["--quick", "--executors", "sequential", "--no-ddp", "--out", str(tmp_path)])
    assert len(json.loads(path.read_text())["rows"]) == 2  # the probe, before and after
    printed = capsys.readouterr()
    assert printed.err.count("cpu probe: 1 proc 0.50 s, 2 at once 0.50 s each") == 2
    assert printed.out == ""


OUT_STARTS = [  # (script, the functions that would start its benchmark)
    ("gp_pde.py", ["run_one"]),
    ("meta_fm.py", ["run_task"]),
    ("neural_process.py", ["poisson_test_set"]),
    ("odil.py", ["bench_b0", "bench_b1_b4", "bench_b2_b4", "bench_b3", "bench_b5", "bench_b6"]),
    ("probconserv.py", ["run_problems"]),
    ("scale_out.py", ["_probe_rows"]),
]


@pytest.mark.parametrize("script, starts", OUT_STARTS, ids=[s for s, _ in OUT_STARTS])
@pytest.mark.parametrize("bad", ["file", ""])
def test_a_bad_out_is_refused_before_anything_runs(
    tmp_path, capsys, monkeypatch, script, starts, bad
):
    # run as scripts, the benchmarks took any --out: a file in the way failed after the whole
    # run (FileExistsError), and --out "" wrote the results into the working folder
    mod = script_module(str(BENCH / script))
    for name in starts:
        monkeypatch.setattr(mod, name, _boom)
    monkeypatch.chdir(tmp_path)
    out = ""
    if bad == "file":
        out = str(tmp_path / "results.json")
        (tmp_path / "results.json").write_text("{}")
    _refused(capsys, mod.main, ["--quick", "--out", out], "argument --out")
    assert sorted(p.name for p in tmp_path.iterdir()) == (["results.json"] if out else [])


def test_odil_takes_the_device_auto_that_bayesphys_bench_accepts(tmp_path, monkeypatch):
    # `bayesphys bench odil --device auto` passed the command's check and then failed in
    # torch.device("auto") with a RuntimeError
    mod = script_module(str(BENCH / "odil.py"))
    seen = []
    monkeypatch.setattr(mod, "bench_b0", lambda quick, dev: seen.append(dev) or [])
    path = mod.main(["--quick", "--only", "B0", "--device", "auto", "--out", str(tmp_path)])
    assert seen == [resolve_device("auto")]
    assert json.loads(path.read_text())["device"] == str(resolve_device("auto"))


def test_neural_process_and_probconserv_record_the_device_auto_resolves_to(tmp_path, monkeypatch):
    # --device auto was written into the results file (and the docs table) as "auto"
    seen = []
    np_mod = script_module(str(BENCH / "neural_process.py"))
    monkeypatch.setattr(np_mod, "poisson_test_set", lambda *a, **k: {})
    monkeypatch.setattr(np_mod, "speed_rows", lambda dev, **k: seen.append(dev) or [])
    path = np_mod.main(["--only", "SPEED", "--device", "auto", "--out", str(tmp_path / "np")])
    assert json.loads(path.read_text())["device"] == str(resolve_device("auto"))
    pc_mod = script_module(str(BENCH / "probconserv.py"))
    monkeypatch.setattr(
        pc_mod,
        "run_problems",
        lambda problems, jobs, **kw: seen.append(kw["device"]) or ([], {}, {}),
    )
    path = pc_mod.main(["--problems", "pme", "--device", "auto", "--out", str(tmp_path / "pc")])
    assert json.loads(path.read_text())["device"] == str(resolve_device("auto"))
    assert seen == [str(resolve_device("auto"))] * 2


@pytest.mark.parametrize("mode", [["--retarget"], ["--reference", "models", "data"]])
def test_probconserv_quick_rewrite_modes_never_touch_the_committed_results(
    capsys, monkeypatch, mode
):
    # --retarget / --reference with --quick and no --out rewrote benchmarks/results and the
    # docs table, while a --quick run's results go to a temporary folder unless --out is given
    mod = script_module(str(BENCH / "probconserv.py"))
    monkeypatch.setattr(mod, "_rewrite", _boom)
    monkeypatch.setattr(mod, "_add_reference", _boom)
    _refused(capsys, mod.main, [*mode, "--quick"], mode[0])


def test_meta_fm_merge_keeps_the_other_problems_of_the_results_file_in_out(tmp_path, monkeypatch):
    # with --out, --merge was ignored: the file in --out lost the rows of the problems not rerun
    mod = script_module(str(BENCH / "meta_fm.py"))
    per_seed = {"_seconds": 1.0, "_setting": {"n": 2}, **{m: {"w2": 0.5} for m in mod.METHODS}}
    monkeypatch.setattr(mod, "run_task", lambda task, **kw: per_seed)
    monkeypatch.setattr(mod, "summarise", lambda rows: {m: {"w2": 0.5} for m in mod.METHODS})
    monkeypatch.setattr(mod, "targets", lambda pid, summ: {})
    prev = bench.bench_row("B2", "MFM", {"w2": 0.1})
    (tmp_path / "meta_fm.json").write_text(json.dumps({"command": "earlier", "rows": [prev]}))
    argv = ["--problems", "B1", "--seeds", "1", "--merge", "--out", str(tmp_path)]
    payload = json.loads(mod.main(argv).read_text())
    assert prev in payload["rows"] and {r["problem"] for r in payload["rows"]} == {"B1", "B2"}
    assert payload["runs"][0] == "earlier"


def test_odil_partial_full_run_is_merged_into_the_results_file_in_out(tmp_path, monkeypatch):
    # with --out, a partial full run (--only B0) replaced the file in --out with its own rows
    mod = script_module(str(BENCH / "odil.py"))
    new = bench.bench_row("B0", "ODIL-GN", {"diff": 0.01})
    monkeypatch.setattr(mod, "bench_b0", lambda quick, dev: [new])
    prev = bench.bench_row("B3", "ODIL", {"rel_l2": 0.1})
    old_b0 = bench.bench_row("B0", "ODIL-GN", {"diff": 0.02})
    payload = {"command": "bayesphys bench odil", "rows": [old_b0, prev]}
    (tmp_path / "odil.json").write_text(json.dumps(payload))
    merged = json.loads(mod.main(["--only", "B0", "--out", str(tmp_path)]).read_text())
    assert merged["rows"] == [new, prev]
    assert merged["command"] == "runs: bayesphys bench odil; bayesphys bench odil --only B0"


def test_scale_out_names_the_problems_that_failed(monkeypatch):
    import bayesphys.examples.cohort as cohort

    mod = script_module(str(BENCH / "scale_out.py"))

    class Broken(cohort.LinearGaussianModel):
        def fit(self, *a, **k):
            raise FloatingPointError("diverged")

    monkeypatch.setattr(cohort, "LinearGaussianModel", Broken)
    with (
        pytest.raises(RuntimeError, match=r"2 of 2 problems failed on sequential: .*diverged"),
        pytest.warns(RuntimeWarning, match="fit_many: 2 of 2 problems failed"),
    ):
        mod._cohort_rows([2], ["sequential"], {"n": 20, "m": 8}, 2, warm=False)


def test_scale_out_skips_an_engine_that_is_not_installed_with_a_note(tmp_path, monkeypatch, capsys):
    import sys

    mod = script_module(str(BENCH / "scale_out.py"))
    measured = []
    monkeypatch.setattr(mod, "_probe_rows", lambda *a, **k: [])
    monkeypatch.setattr(mod, "_cohort_rows", lambda ns, ex, *a, **k: measured.extend(ex) or [])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    argv = ["--quick", "--executors", "sequential,local,ray", "--no-ddp", "--out", str(tmp_path)]
    path = mod.main(argv)
    assert measured == ["sequential", "local"]
    printed = capsys.readouterr()
    assert "skip ray: not installed" in printed.err and printed.out == ""
    note = json.loads(path.read_text())["note"]
    assert note.endswith("Skipped (not importable here): ray.")
    # ray alone, not installed: no cohort rows (nothing is run for them), and the run says so
    measured.clear()
    path = mod.main(["--quick", "--executors", "ray", "--no-ddp", "--out", str(tmp_path)])
    assert measured == [] and "No cohort rows" in capsys.readouterr().err
    note = json.loads(path.read_text())["note"]
    assert "Skipped (not importable here): ray." in note and "No cohort rows" in note


def test_gp_pde_peak_memory_is_each_rows_own():
    """peak_mem_mb was the running peak of the whole benchmark process (ru_maxrss): a small
    row after a large one reported the large one's peak."""
    import mmap

    import numpy as np

    mod = script_module(str(BENCH / "gp_pde.py"))
    if not mod._reset_peak():
        pytest.skip("no /proc/self/clear_refs here")
    # ~300 MB of fresh pages from an anonymous map, given back by close(): a numpy array of
    # that size came from free heap memory that earlier tests had left resident (the resident
    # size did not move, and the test failed after some orders of the suite)
    buf = mmap.mmap(-1, 300 * 2**20)
    pages = np.frombuffer(buf, dtype=np.uint8)
    pages[:] = 1
    high = mod._peak_mb()
    del pages
    buf.close()
    assert mod._reset_peak()
    assert mod._peak_mb() < high - 200


def test_odil_resolution_rows_coverage_and_drift(tmp_path, monkeypatch):
    import torch

    mod = script_module(str(BENCH / "odil_resolution.py"))
    monkeypatch.setattr(mod, "brain_phantom", lambda n, h: None)
    monkeypatch.setattr(mod, "synthetic_patient", lambda seed, phantom, refine: {"seed": seed})
    calls = []

    def fake_fit(p, resolutions, alpha, sigma_pde=None):
        calls.append((p["seed"], alpha, sigma_pde))
        k = 1 + p["seed"] - mod.SEED0  # patient 0: z as below, patient 1: doubled
        z = torch.tensor([0.0, 2.0, 0.5, -0.5], dtype=torch.float64) * k
        sd = torch.ones(4, dtype=torch.float64)
        return {f: (z, torch.tensor([0.0, 0.0, 0.1 * f, 0.0]).double(), sd) for f in resolutions}

    monkeypatch.setattr(mod, "fit_patient", fake_fit)
    argv = ["--patients", "2", "--model-errors", "0,0", "--sigma-pde", "1e-3"]
    path = mod.main([*argv, "--resolutions", "4,2", "--out", str(tmp_path)])
    d = json.loads(path.read_text())
    # duplicates dropped: one model-error setting and one joint setting, two patients each
    assert calls == [(101, 0.0, None), (102, 0.0, None), (101, 0.0, 1e-3), (102, 0.0, 1e-3)]
    assert [(r["mm"], r.get("sigma_pde")) for r in d["rows"]] == [
        (2, None),
        (4, None),
        (2, 1e-3),
        (4, 1e-3),
    ]
    r = d["rows"][0]
    # log rho's z (2, 4) lies outside the 90 % interval, the others' inside
    assert (r["coverage90_log_rho"], r["coverage90_x0"], r["coverage90"]) == (0.0, 1.0, 0.75)
    assert r["rms_z_log_rho"] == pytest.approx((0.5 * (4 + 16)) ** 0.5)
    # the modes differ by 0.2 sd in x0 between 2 and 4 mm, for both patients
    assert d["alpha=0"]["drift_below_1sd"] == 1.0
    assert d["alpha=0"]["median_drift_sd"] == pytest.approx(0.2)
    assert d["command"].endswith(" ".join([*argv, "--resolutions", "4,2", "--out", str(tmp_path)]))


def test_odil_b6_rows_name_each_variant(monkeypatch):
    import sys

    import torch

    mod = script_module(str(BENCH / "odil.py"))
    # bench_b6 looks these names up in its helper module (benchmarks/_odil_b6.py): patch them there
    b6 = sys.modules[mod.bench_b6.__module__]
    truth = {"dw": 0.2, "rho": 0.03, "x0": 50.0, "y0": 60.0}
    monkeypatch.setattr(b6, "brain_phantom", lambda n, h: None)
    monkeypatch.setattr(b6, "synthetic_patient", lambda seed, phantom, refine: {"truth": truth})
    fits = []

    class Fake:
        def __init__(self, f, alpha):
            self.f, self.alpha, self.sigma = f, alpha, None
            self.theta = torch.tensor([-1.6, -3.5, 50.0 + 0.1 * f, 60.0], dtype=torch.float64)
            self.theta_cov = torch.eye(4).double() * 0.25

        def fit(self, progress=False):
            return None

        def fit_odil(self, sigma_pde, **kw):
            self.sigma, self.joint = sigma_pde, kw

    def fake_model(p, f, device, model_error=0.0):
        fits.append(Fake(f, model_error))
        return fits[-1]

    monkeypatch.setattr(b6, "coarsened_model", fake_model)
    rows = mod.bench_b6(False, None)
    assert [r["setting"].get("model_error") for r in rows] == [None, b6.B6_MODEL_ERROR, None]
    assert [r["setting"].get("joint_odil_sigma_pde") for r in rows] == [
        None,
        None,
        b6.B6_SIGMA_PDE,
    ]
    assert [(m.f, m.alpha, m.sigma) for m in fits[6:]] == [
        (f, 0.0, b6.B6_SIGMA_PDE) for f in (1, 2, 4)
    ]
    assert all(m.sigma is None for m in fits[:6])
    # the joint fit runs with the settings its row records (they were fit_odil's defaults,
    # unrecorded, before 2026-12-01)
    assert all(m.joint == b6.B6_JOINT for m in fits[6:])
    assert b6.B6_JOINT["linear_solver"] == "sparse"
    assert {k: rows[2]["setting"][f"joint_odil_{k}"] for k in b6.B6_JOINT} == b6.B6_JOINT
    assert not any(k.startswith("joint_odil_") for r in rows[:2] for k in r["setting"])
    # x0 moves 0.3 mm between 1 and 4 mm against an sd of 0.5: 0.6 sd
    assert rows[0]["metrics"]["drift_sd"] == pytest.approx(0.6)


def test_recorded_command_quotes_empty_and_spaced_arguments(tmp_path, monkeypatch):
    monkeypatch.setattr(bench.commands, "_USER_OMP_THREADS", None)  # whatever the test shell set
    path = bench.write_rows(
        "x", [{"a": 1}], script="demo.py", argv=["--m", "", "--n", "a b"], out=tmp_path
    )
    assert json.loads(path.read_text())["command"] == "python benchmarks/demo.py --m '' --n 'a b'"


def test_gp_pde_rows_say_which_iterate_they_report():
    """GP-HM rows record the lowest-objective rule and, when it restored an earlier iterate,
    both objectives; paper-settings rows keep the reference's last iterate."""
    mod = script_module(str(BENCH / "gp_pde.py"))
    kw = dict(num_mixtures=4, n_col=40)
    row = mod.run_one("poisson1d-low", "GP-HM", kw, dict(steps=40, lr=2.0), 60.0, "cpu")
    assert row["setting"]["iterate"] == "lowest-objective"
    assert "kept the lowest-objective iterate (start of step" in row["note"]
    assert "kept, last iterate" in row["note"]
    row = mod.run_one("poisson1d-low", "GP-HM", kw, dict(steps=10), 60.0, "cpu")
    assert "last iterate kept (lowest objective" in row["note"]
    row = mod.run_one("poisson1d-low", "GP-HM-ref-settings", kw, dict(steps=10), 60.0, "cpu")
    assert row["setting"]["iterate"] == "last" and "objective" not in row["note"]


def test_gp_pde_budget_scale_multiplies_and_records_the_budget(tmp_path):
    import json

    mod = script_module(str(BENCH / "gp_pde.py"))
    argv = ["--quick", "--only", "poisson1d-sin100", "--methods", "GP-HM", "--out", str(tmp_path)]
    payload = json.loads(mod.main([*argv, "--budget-scale", "0.5"]).read_text())
    rows = payload["rows"]
    assert rows[0]["setting"]["budget_cpu_s"] == 30.0  # QUICK's 60 CPU-s budget x 0.5
    # the command reruns what ran (it was "bayesphys bench gp_pde --quick" whatever the flags)
    assert payload["command"] == "python benchmarks/gp_pde.py " + " ".join(
        [*argv, "--budget-scale", "0.5"]
    )
    rows = json.loads(mod.main(argv).read_text())["rows"]
    assert "budget_cpu_s" not in rows[0]["setting"]  # the committed budget: not recorded


def test_gp_pde_last_iterate_option_turns_the_rule_off(tmp_path, monkeypatch):
    import json

    from bayesphys.gp_pde import GPPDESolver

    kept = []
    fit = GPPDESolver.fit

    def spy(self, *args, **kwargs):
        kept.append(kwargs.get("keep_best"))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(GPPDESolver, "fit", spy)
    mod = script_module(str(BENCH / "gp_pde.py"))
    argv = ["--quick", "--only", "poisson1d-sin100", "--methods", "GP-HM", "--out", str(tmp_path)]
    row = json.loads(mod.main([*argv, "--last-iterate"]).read_text())["rows"][0]
    assert kept == [False] and row["setting"]["iterate"] == "last"
    assert "objective" not in row["note"]
    # the coarse stage too (Allen-Cahn's row fits a coarse model first)
    kept.clear()
    mkw = dict(n_col=10, num_mixtures=4)
    fkw = dict(steps=2, keep_best=False, coarse=dict(n_col=8, steps=2, model=dict(num_mixtures=4)))
    mod.run_one("allencahn2d-low", "GP-HM", mkw, fkw, 60.0, "cpu")
    assert kept == [False, False]


def test_seed_summary_rows_mean_sd_per_group_in_first_appearance_order():
    rows = [
        {"split": "b", "seed": 0, "method": "x", "n": 7, "w2": 1.0},
        {"split": "a", "seed": 0, "method": "x", "n": 5, "w2": 4.0},
        {"split": "b", "seed": 1, "method": "x", "n": 7, "w2": 3.0},
    ]
    out = bench.seed_summary_rows(rows, ("split", "method"), ("w2",), keep=("n",), fill={"f": None})
    assert [(r["split"], r["seed"]) for r in out] == [
        ("b", "mean"),
        ("b", "sd"),
        ("a", "mean"),
        ("a", "sd"),
    ]
    assert out[0] == {"split": "b", "method": "x", "seed": "mean", "f": None, "n": 7, "w2": 2.0}
    assert out[1]["w2"] == pytest.approx(2**0.5)  # sd with ddof 1 of (1, 3)
    assert out[2]["w2"] == 4.0 and math.isnan(out[3]["w2"])  # one seed: no sd


def test_recorded_command_names_the_shells_thread_count(monkeypatch):
    """The thread count the shell set is part of the command (float32 training depends on it;
    a B4 rerun as recorded ran two threads where the committed rows ran one)."""
    monkeypatch.setattr(bench.commands, "_USER_OMP_THREADS", "1")
    assert bench.recorded_command("demo.py", ["--jobs", "1"]) == (
        "OMP_NUM_THREADS=1 python benchmarks/demo.py --jobs 1"
    )
    monkeypatch.setattr(bench.commands, "_USER_OMP_THREADS", None)
    assert (
        bench.recorded_command("demo.py", ["--jobs", "1"]) == "python benchmarks/demo.py --jobs 1"
    )


def test_odil_records_the_shells_thread_count(tmp_path, monkeypatch):
    """The odil benchmark wrote its own command string without the shell's OMP_NUM_THREADS
    (a rerun as recorded could run another thread count); it now names it, as the other
    scripts' recorded_command does, in the results file and in a stopped run's partial file."""
    mod = _odil_with_failing_b3(monkeypatch)
    monkeypatch.setattr(bench.commands, "_USER_OMP_THREADS", "1")
    payload = json.loads(mod.main(["--only", "B0", "--out", str(tmp_path)]).read_text())
    assert payload["command"] == "OMP_NUM_THREADS=1 bayesphys bench odil --only B0"
    with pytest.raises(RuntimeError, match="late failure"):
        mod.main(["--only", "B0,B3", "--out", str(tmp_path)])
    partial = json.loads((tmp_path / "odil.partial.json").read_text())
    assert partial["command"].startswith("OMP_NUM_THREADS=1 bayesphys bench odil")


def test_only_a_bayesphys_checkout_is_taken_for_benchmarks(tmp_path, monkeypatch):
    """A folder with a benchmarks/ script (the current directory, or one installed into
    site-packages by another package) was run by `bayesphys bench`, even with --help."""
    import bayesphys._bench as bench

    planted = tmp_path / "elsewhere"
    (planted / "benchmarks").mkdir(parents=True)
    (planted / "benchmarks" / "gp_pde.py").write_text("raise SystemExit('planted')\n")
    assert not bench._is_checkout(planted)
    (planted / "pyproject.toml").write_text('[project]\nname = "not-bayesphys"\n')
    assert not bench._is_checkout(planted)
    # the name of the [project] table, however the line is written
    (planted / "pyproject.toml").write_text(
        '[tool.x]\nname = "bayesphys"\n[project]\nname = "other"\n'
    )
    assert not bench._is_checkout(planted)
    (planted / "pyproject.toml").write_text("[project]\n  name = 'bayesphys'  # ours\r\n")
    assert bench._is_checkout(planted)
    (planted / "pyproject.toml").write_text('[project]\nname = "bayesphys"\n')
    assert bench._is_checkout(planted)
    # a pyproject.toml that is not UTF-8 text or not TOML names no project: not a checkout
    (planted / "pyproject.toml").write_bytes(b'[project]\nname = "bayesphys\xff"\n')
    assert not bench._is_checkout(planted)
    (planted / "pyproject.toml").write_text('[project]\nname = "bayesphys\n')  # unclosed
    assert not bench._is_checkout(planted)
    (planted / "pyproject.toml").write_text('[project]\nname = "bayesphys"\n')
    assert bench._is_checkout(repo_root())  # this checkout
    # an installed package (no checkout beside it) in a folder that is not one: refused
    pkg = tmp_path / "site" / "bayesphys"
    pkg.mkdir(parents=True)
    monkeypatch.setattr(bench.paths, "__file__", str(pkg / "_bench" / "paths.py"))
    (tmp_path / "site" / "benchmarks").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no bayesphys source checkout"):
        bench.repo_root()
    monkeypatch.chdir(planted)
    assert bench.repo_root() == planted


def _fake_gp_pde_rows(monkeypatch, fail_at=None):
    """gp_pde.py with run_one replaced by an instant row (the ``fail_at``-th call raises)."""
    mod = script_module(str(BENCH / "gp_pde.py"))
    calls = []

    def run_one(problem, method, mkw, fkw, budget, device, label=None):
        calls.append(problem)
        if len(calls) == fail_at:
            raise RuntimeError("late failure")
        return bench.bench_row(problem, label or method, {"rel_l2": 0.1 * len(calls)})

    monkeypatch.setattr(mod, "run_one", run_one)
    return mod


def test_gp_pde_merge_into_out_keeps_the_rows_not_rerun(tmp_path, monkeypatch):
    """With --out, the rows written after each row replaced <out>/gp_pde.json before --merge
    read it: the rows not rerun were lost. They are kept now, and the partial file is gone
    once the run completes."""
    mod = _fake_gp_pde_rows(monkeypatch)
    base = ["--quick", "--methods", "GP-HM", "--out", str(tmp_path)]
    first = json.loads(mod.main(base).read_text())["rows"]
    assert len(first) == len(mod.QUICK) >= 2
    only = next(iter(mod.QUICK))
    rows = json.loads(mod.main([*base, "--only", only, "--merge"]).read_text())["rows"]
    assert sorted(r["problem"] for r in rows) == sorted(r["problem"] for r in first)
    assert not (tmp_path / "gp_pde.partial.json").exists()


def test_gp_pde_cut_short_keeps_the_results_and_names_the_partial_rows(
    tmp_path, monkeypatch, capsys
):
    """A run into --out that failed after some rows left them as <out>/gp_pde.json, over the
    results there and unmarked; they go to gp_pde.partial.json (marked partial), the results
    file stays as it was, and the error output names where the finished rows are."""
    mod = _fake_gp_pde_rows(monkeypatch)
    base = ["--quick", "--methods", "GP-HM", "--out", str(tmp_path)]
    before = mod.main(base).read_text()
    mod = _fake_gp_pde_rows(monkeypatch, fail_at=2)
    with pytest.raises(RuntimeError, match="late failure"):
        mod.main(base)
    assert (tmp_path / "gp_pde.json").read_text() == before
    partial = json.loads((tmp_path / "gp_pde.partial.json").read_text())
    assert partial["partial"] is True and len(partial["rows"]) == 1
    err = capsys.readouterr().err
    assert f"after 1 row(s); they are in {tmp_path / 'gp_pde.partial.json'}" in err


@pytest.mark.parametrize("stop", [RuntimeError("late failure"), KeyboardInterrupt()])
def test_odil_cut_short_keeps_the_finished_benchmarks(tmp_path, monkeypatch, capsys, stop):
    """B3 failing (or Ctrl-C) after B0 and B1 had run lost their rows (written only at the
    end); they go to odil.partial.json (marked partial), named on stderr, and the results file
    stays as it was."""
    mod = script_module(str(BENCH / "odil.py"))
    row = bench.bench_row
    monkeypatch.setattr(mod, "bench_b0", lambda quick, dev: [row("B0", "m", {"x": 1.0})])
    monkeypatch.setattr(mod, "bench_b1_b4", lambda quick, dev: [row("B1", "m", {"x": 2.0})])

    def b3(quick, dev):
        raise stop

    monkeypatch.setattr(mod, "bench_b3", b3)
    (tmp_path / "odil.json").write_text('{"rows": []}')
    with pytest.raises(type(stop)):
        mod.main(["--quick", "--only", "B0,B1,B3", "--out", str(tmp_path)])
    assert (tmp_path / "odil.json").read_text() == '{"rows": []}'
    partial = json.loads((tmp_path / "odil.partial.json").read_text())
    assert partial["partial"] is True and partial["finished"] == ["B0", "B1"]
    assert [r["problem"] for r in partial["rows"]] == ["B0", "B1"]
    assert f"of B0, B1 are in {tmp_path / 'odil.partial.json'}" in capsys.readouterr().err


def _odil_with_failing_b3(monkeypatch):
    """benchmarks/odil.py with B0 and B1 replaced by one-row stand-ins and B3 failing late."""
    mod = script_module(str(BENCH / "odil.py"))
    row = bench.bench_row
    monkeypatch.setattr(mod, "bench_b0", lambda quick, dev: [row("B0", "m", {"x": 1.0})])
    monkeypatch.setattr(mod, "bench_b1_b4", lambda quick, dev: [row("B1", "m", {"x": 2.0})])

    def b3(quick, dev):
        raise RuntimeError("late failure")

    monkeypatch.setattr(mod, "bench_b3", b3)
    return mod


@pytest.mark.parametrize("to_out", [True, False])
def test_odil_completed_run_removes_a_stale_partial_file(tmp_path, monkeypatch, to_out):
    """A stopped run's odil.partial.json (in --out, else the temporary folder) stayed beside
    a later completed run as if it were that run's, unlike gp_pde's and neural_process's; a
    completed run now removes it."""
    import tempfile

    mod = _odil_with_failing_b3(monkeypatch)
    out = tmp_path / "out"
    temp = tmp_path / "temp"
    out.mkdir()
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    where = ["--out", str(out)] if to_out else []
    written = []
    if not to_out:  # a full run without --out writes the committed file: kept aside here
        monkeypatch.setattr(mod, "write_results", lambda *a, **k: written.append(k) or out)
    with pytest.raises(RuntimeError, match="late failure"):
        mod.main(["--only", "B0,B1,B3", *where])
    partial = (out if to_out else temp) / "odil.partial.json"
    assert json.loads(partial.read_text())["finished"] == ["B0", "B1"]
    monkeypatch.setattr(
        mod, "bench_b3", lambda quick, dev: [bench.bench_row("B3", "m", {"x": 3.0})]
    )
    mod.main(["--only", "B3", *where])
    assert not partial.exists()
    assert to_out or [k["out"] for k in written] == [None]


def _fake_neural_process(monkeypatch, stop):
    """neural_process.py with training and scoring replaced by instant stand-ins; the SPEED
    part raises ``stop`` on its first call and gives one row after that."""
    import numpy as np

    mod = script_module(str(BENCH / "neural_process.py"))

    class Model:
        def calibrate(self, *args, **kwargs):
            return {"field": 1.0}

    class Fit:
        steps, seconds = 3, 0.5

    def data(n, seed=0):
        return {k: np.zeros((2, 2)) for k in ("x", "u", "z", "w")}

    calls = []

    def speed_rows(dev, **kwargs):
        calls.append(dev)
        if len(calls) == 1:
            raise stop
        return [bench.bench_row("C1", "RGNP", {"sec_per_step": 0.1}, setting={"threads": 1})]

    monkeypatch.setattr(mod, "poisson_test_set", data)
    monkeypatch.setattr(mod, "poisson_sensor_data", data)
    monkeypatch.setattr(mod, "_train", lambda *a, **k: (Model(), Fit()))
    monkeypatch.setattr(mod, "evaluate_poisson", lambda m, t: {"nse_u": 0.1, "nse_z": 0.2})
    monkeypatch.setattr(mod, "speed_rows", speed_rows)
    return mod


@pytest.mark.parametrize("stop", [RuntimeError("late failure"), KeyboardInterrupt()])
def test_neural_process_cut_short_keeps_the_finished_parts(tmp_path, monkeypatch, capsys, stop):
    """SPEED failing (or Ctrl-C) after P1-10 and P2 had run lost their rows (written only at
    the end, only snippets printed); they are in neural_process.partial.json (marked partial),
    named on stderr, the results file stays as it was, a rerun of the rest merged onto it
    (the docstring's recipe) gives the whole table, and a completed run removes it."""
    mod = _fake_neural_process(monkeypatch, stop)
    (tmp_path / "neural_process.json").write_text('{"rows": []}')
    with pytest.raises(type(stop)):
        mod.main(["--quick", "--out", str(tmp_path), "--only", "P1-10,P2,SPEED"])
    assert (tmp_path / "neural_process.json").read_text() == '{"rows": []}'
    partial = tmp_path / "neural_process.partial.json"
    payload = json.loads(partial.read_text())
    assert payload["partial"] is True and payload["finished"] == ["P1-10", "P2"]
    assert [r["problem"] for r in payload["rows"]] == ["P1", "P2", "P2"]
    assert payload["rows"][0]["setting"] == {"steps": 10}  # the matched 10-step row
    assert f"of P1-10, P2 are in {partial} (marked partial)" in capsys.readouterr().err
    rest = tmp_path / "rest"
    rest.mkdir()
    shutil.copy(partial, rest / "neural_process.json")
    path = mod.main(["--quick", "--out", str(rest), "--only", "SPEED", "--merge"])
    whole = json.loads(path.read_text())
    assert [r["problem"] for r in whole["rows"]] == ["P1", "P2", "P2", "C1"]
    assert "partial" not in whole and "re-run by" in whole["command"]
    mod.main(["--quick", "--out", str(tmp_path), "--only", "P2"])
    assert not partial.exists()


def test_gp_pde_partial_rows_finish_with_only_and_merge(tmp_path, monkeypatch):
    """The docstring's recipe: the partial file copied as gp_pde.json into a folder, and the
    problems not finished rerun there with --only --merge, give the whole table."""
    mod = _fake_gp_pde_rows(monkeypatch, fail_at=2)
    base = ["--quick", "--methods", "GP-HM"]
    with pytest.raises(RuntimeError, match="late failure"):
        mod.main([*base, "--out", str(tmp_path)])
    rest = tmp_path / "rest"
    rest.mkdir()
    shutil.copy(tmp_path / "gp_pde.partial.json", rest / "gp_pde.json")
    problems = list(mod.QUICK)
    mod = _fake_gp_pde_rows(monkeypatch)
    argv = [*base, "--out", str(rest), "--only", ",".join(problems[1:]), "--merge"]
    payload = json.loads(mod.main(argv).read_text())
    assert sorted(r["problem"] for r in payload["rows"]) == sorted(problems)
    assert "partial" not in payload


def test_odil_partial_rows_finish_with_only(tmp_path, monkeypatch):
    """The docstring's recipe: the partial file copied as odil.json into a folder, and the
    benchmarks not finished rerun there with --only (a full run), give the whole table."""
    mod = _odil_with_failing_b3(monkeypatch)
    with pytest.raises(RuntimeError, match="late failure"):
        mod.main(["--only", "B0,B1,B3", "--out", str(tmp_path)])
    rest = tmp_path / "rest"
    rest.mkdir()
    shutil.copy(tmp_path / "odil.partial.json", rest / "odil.json")
    monkeypatch.setattr(
        mod, "bench_b3", lambda quick, dev: [bench.bench_row("B3", "m", {"x": 3.0})]
    )
    payload = json.loads(mod.main(["--only", "B3", "--out", str(rest)]).read_text())
    assert [r["problem"] for r in payload["rows"]] == ["B0", "B1", "B3"]
    assert "partial" not in payload and payload["command"].startswith("runs: ")


def test_recorded_command_names_the_device_auto_resolved_to():
    """``--device auto`` reran on whatever the next machine had; the command records the
    device the run resolved it to (other device options and arguments as given)."""
    cmd = bench.recorded_command
    assert cmd("d.py", ["--device", "auto", "--x", "auto"], device="cuda") == (
        "python benchmarks/d.py --device cuda --x auto"
    )
    assert cmd("d.py", ["--device=auto"], device="cpu") == "python benchmarks/d.py --device=cpu"
    assert cmd("d.py", ["--device", "cpu"], device="cpu") == "python benchmarks/d.py --device cpu"
    assert cmd("d.py", ["--device", "auto"]) == "python benchmarks/d.py --device auto"


def _fake_cuda(mod, monkeypatch):
    """``mod`` (a benchmark script) resolving every --device to cuda (no GPU is used: the
    functions that would run on it are replaced by the test)."""
    import torch

    monkeypatch.setattr(mod, "resolve_device", lambda device: torch.device("cuda"))


def test_odil_records_the_device_it_ran_on(tmp_path, monkeypatch):
    """The odil benchmark's recorded command dropped --device (it was only in the "device"
    field): rerun as recorded on another machine, it ran on the CPU. The command now names
    the device when it is not the default cpu, in the results and in a partial file."""
    mod = _odil_with_failing_b3(monkeypatch)
    _fake_cuda(mod, monkeypatch)
    argv = ["--only", "B0", "--device", "auto", "--out", str(tmp_path)]
    payload = json.loads(mod.main(argv).read_text())
    assert payload["command"] == "bayesphys bench odil --device cuda --only B0"
    assert payload["device"] == "cuda"
    with pytest.raises(RuntimeError, match="late failure"):
        mod.main(["--quick", "--only", "B0,B3", "--device", "auto", "--out", str(tmp_path)])
    partial = json.loads((tmp_path / "odil.partial.json").read_text())
    assert partial["command"] == "bayesphys bench odil --quick --device cuda --only B0,B3"


def test_neural_process_and_probconserv_record_the_device_in_their_command(tmp_path, monkeypatch):
    """They recorded ``--device auto`` as given, which reruns elsewhere on another device;
    the command now names the device the run used (as the "device" field does)."""
    np_mod = script_module(str(BENCH / "neural_process.py"))
    _fake_cuda(np_mod, monkeypatch)
    monkeypatch.setattr(np_mod, "poisson_test_set", lambda *a, **k: {})
    monkeypatch.setattr(np_mod, "speed_rows", lambda dev, **k: [])
    path = np_mod.main(["--only", "SPEED", "--device", "auto", "--out", str(tmp_path / "np")])
    payload = json.loads(path.read_text())
    assert payload["device"] == "cuda" and "--device cuda" in payload["command"]
    pc_mod = script_module(str(BENCH / "probconserv.py"))
    _fake_cuda(pc_mod, monkeypatch)
    monkeypatch.setattr(pc_mod, "run_problems", lambda problems, jobs, **kw: ([], {}, {}))
    path = pc_mod.main(["--problems", "pme", "--device", "auto", "--out", str(tmp_path / "pc")])
    payload = json.loads(path.read_text())
    assert payload["device"] == "cuda" and "--device cuda" in payload["command"]
    assert "auto" not in payload["command"]


def test_ablation_scripts_record_the_argv_they_parsed(tmp_path, monkeypatch):
    """odil_b1_cases, odil_nuts_means and the ProbConserv rescoring scripts recorded this
    process's ``sys.argv`` (a test runner's, when ``main(argv)`` was called from Python)
    instead of the ``argv`` they parsed."""
    import sys

    monkeypatch.setattr(sys, "argv", ["runner", "-q", "tests/x.py"])
    b1 = script_module(str(BENCH / "odil_b1_cases.py"))
    monkeypatch.setattr(b1, "brain_phantom", lambda n, h: None)
    z = {"rel_err_l": 0.0, "rel_err_v": 0.0, "loss_fit": 0.0, "loss_truth": 0.0}
    monkeypatch.setattr(b1, "case_row", lambda seed, ph: {**z, "z_log_ell": 0, "z_log_v": 0})
    argv = ["--cases", "1", "--grid", "8", "--out", str(tmp_path)]
    payload = json.loads(b1.main(argv).read_text())
    assert payload["command"] == "python benchmarks/odil_b1_cases.py " + " ".join(argv)
    nuts = script_module(str(BENCH / "odil_nuts_means.py"))
    monkeypatch.setattr(nuts, "brain_phantom", lambda n, h: None)
    row = {"mean_diff_sd": 0.1, "sd_ratio": 1.0}
    monkeypatch.setattr(nuts, "case_rows", lambda s, ph, n, w: [row] * len(nuts.PARAMS))
    argv = ["--cases", "1", "--draws", "2", "--warmup", "1", "--out", str(tmp_path)]
    payload = json.loads(nuts.main(argv).read_text())
    assert payload["command"] == "python benchmarks/odil_nuts_means.py " + " ".join(argv)
    edge = script_module(str(BENCH / "probconserv_edge.py"))
    monkeypatch.setattr(edge, "rows_for", lambda args, cfg, prob: [{"a": 1}])
    monkeypatch.setattr(edge, "summary", lambda rows: "(summary)")
    argv = ["--models", str(tmp_path), "--problems", "pme", "--out", str(tmp_path)]
    payload = json.loads(edge.main(argv).read_text())
    assert payload["command"] == "python benchmarks/probconserv_edge.py " + " ".join(argv)


def test_odil_joint_and_timestep_files_record_what_sets_the_thread_counts(tmp_path, monkeypatch):
    """Their JSON files recorded at most --threads; they now carry "threading" (torch's
    thread count and the thread-count variables set), as the other results files do."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    joint = script_module(str(BENCH / "odil_joint.py"))
    monkeypatch.setattr(joint, "run", lambda solver, nt, seed: {"solver": solver})
    joint.main(["--solvers", "sparse", "--threads", "1", "--out", str(tmp_path / "j.json")])
    payload = json.loads((tmp_path / "j.json").read_text())
    assert payload["threads"] == 1
    assert payload["threading"]["torch_num_threads"] == torch.get_num_threads() == 1
    assert payload["threading"]["OMP_NUM_THREADS"] == "1"
    step = script_module(str(BENCH / "odil_timestep.py"))
    monkeypatch.setattr(step, "run_config", lambda *a: {"config": list(a)})
    step.main(
        [
            "--configs",
            "1:0.1:euler:strang-own:0.02",
            "--cases",
            "1",
            "--out",
            str(tmp_path / "t.json"),
        ]
    )
    payload = json.loads((tmp_path / "t.json").read_text())
    assert payload["threading"]["OMP_NUM_THREADS"] == "1"
    assert payload["rows"] == [{"config": [1, 0.1, 1, "euler", "strang-own", 0.02]}]


ABBREV_STARTS = [  # (script, the functions that would start its benchmark)
    *OUT_STARTS,
    ("odil_joint.py", ["run"]),
    ("odil_timestep.py", ["run_config"]),
    ("odil_b1_cases.py", ["case_row"]),
]


@pytest.mark.parametrize("script, starts", ABBREV_STARTS, ids=[s for s, _ in ABBREV_STARTS])
def test_an_abbreviated_option_is_refused_not_recorded_as_given(
    tmp_path, capsys, monkeypatch, script, starts
):
    """argparse took ``--ou`` for ``--out`` (``--dev auto`` for ``--device auto``) and the
    results file recorded the abbreviation as given: a ``--dev auto`` was not pinned to the
    device it resolved to, and an abbreviation stops rerunning once another option shares
    its prefix. The scripts whose command is recorded now refuse abbreviations."""
    mod = script_module(str(BENCH / script))
    for name in starts:
        monkeypatch.setattr(mod, name, _boom)
    out = tmp_path / ("rows.json" if script in ("odil_joint.py", "odil_timestep.py") else "out")
    _refused(capsys, mod.main, ["--ou", str(out)], "unrecognized arguments")
    assert not out.exists()


def test_odil_timestep_refuses_no_cases_and_both_odil_scripts_an_empty_out(
    tmp_path, capsys, monkeypatch
):
    """``odil_timestep.py --cases 0`` ran nothing and wrote NaN coverages; ``--out ""`` in
    odil_joint.py and odil_timestep.py wrote nothing, silently (an empty string read as no
    file). Both are refused before anything runs, as the other scripts refuse an empty
    ``--out``; so is a folder where the file would go."""
    step = script_module(str(BENCH / "odil_timestep.py"))
    joint = script_module(str(BENCH / "odil_joint.py"))
    monkeypatch.setattr(step, "run_config", _boom)
    monkeypatch.setattr(joint, "run", _boom)
    for cases in ("0", "-2"):
        _refused(capsys, step.main, ["--cases", cases], "argument --cases")
    for mod in (step, joint):
        for out in ("", " ", str(tmp_path)):
            _refused(capsys, mod.main, ["--out", out], "argument --out")
    assert not list(tmp_path.iterdir())


def test_scale_out_ddp_rows_bound_two_ranks_by_one_rank_at_half_the_batch(monkeypatch):
    """The half-batch row's speedup_bound is 2 x its samples/s over the full-batch row's; the
    two-process row runs half the batch per rank and its speed-up is against the full batch."""
    from bayesphys.examples import ddp_training

    mod = script_module(str(BENCH / "scale_out.py"))
    seen = []
    speeds = {(1, 64): 1000.0, (1, 32): 800.0, (2, 32): 1300.0}

    def fake_main(argv):
        nproc, batch = (
            int(argv[argv.index("--nproc") + 1]),
            int(argv[argv.index("--batch-size") + 1]),
        )
        seen.append((nproc, batch))
        return {"samples_per_second": speeds[nproc, batch], "train_seconds": 1.0, "test_value": 0.1}

    monkeypatch.setattr(ddp_training, "main", fake_main)
    rows = mod._ddp_rows("rgnp", quick=True)
    assert seen == [(1, 64), (1, 32), (2, 32)]
    full, half, two = (r["metrics"] for r in rows)
    assert full["speedup"] == 1.0 and "speedup_bound" not in full
    assert half["speedup_bound"] == pytest.approx(1.6) and "speedup" not in half
    assert two["speedup"] == pytest.approx(1.3)
    assert [r["setting"]["global_batch"] for r in rows] == [64, 32, 64]
    assert rows[1]["method"].endswith("x1, half batch") and rows[2]["anchor"] is not None
