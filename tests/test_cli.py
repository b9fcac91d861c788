"""The bayesphys command line."""

from __future__ import annotations

import json
from pathlib import Path

import arviz as az
import pytest

from bayesphys import cli
from bayesphys._bench import (
    ablation_parser,
    bench_row,
    call_script,
    print_rows_table,
    render_table,
    rows_table,
    run_script_tasks,
    update_benchmarks_md,
    write_results,
    write_rows,
)
from bayesphys.inference_data import group_dataset, load_netcdf


def test_demo_core_writes_netcdf_and_png(tmp_path, capsys):
    rc = cli.main(["demo", "--out", str(tmp_path), "--only"])
    assert rc == 0
    # --only with no names is the core demo alone (it used to run every component)
    assert sorted(p.name for p in tmp_path.glob("*.nc")) == ["core.nc"]
    out = capsys.readouterr().out
    assert "coverage95" in out and "rel_l2" in out
    assert "None" not in out  # rows without a target printed "None" in that column
    idata = load_netcdf(tmp_path / "core.nc")
    summ = az.summary(idata, var_names=["u"], kind="stats")
    assert summ.shape[0] == 101
    assert (tmp_path / "core.png").stat().st_size > 1000
    assert set(group_dataset(idata, "observed_data").data_vars) == {"y"}


def test_list_runs(capsys):
    assert cli.main(["list"]) == 0
    assert "components" in capsys.readouterr().out


def _list_lines(capsys) -> dict[str, str]:
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {
        c: " ".join(line.split()[1:])
        for line in lines
        for c in cli.COMPONENTS
        if line.split()[:1] == [c]
    }


def test_list_says_which_hooks_and_benchmark_scripts_each_component_has(
    tmp_path, monkeypatch, capsys
):
    import importlib.util

    every = "demo:yes calibration:yes bench:yes"
    assert _list_lines(capsys) == dict.fromkeys(cli.COMPONENTS, every)
    # a checkout without the odil benchmark script, odil without its calibration hook, and
    # meta_fm whose package cannot be imported (a dependency missing)
    root = tmp_path / "checkout"
    (root / "benchmarks").mkdir(parents=True)
    for comp in cli.COMPONENTS[:-2]:
        (root / "benchmarks" / f"{comp}.py").write_text("def main(argv):\n    return None\n")
    monkeypatch.setattr("bayesphys._bench.repo_root", lambda: root)
    real = importlib.util.find_spec

    def find_spec(name, *a):
        if name == "bayesphys.odil._calibration":
            return None
        if name.startswith("bayesphys.meta_fm."):
            raise ModuleNotFoundError("No module named 'a_missing_dependency'")
        if name == "bayesphys.probconserv":  # a component not installed
            return None
        return real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    lines = _list_lines(capsys)
    assert lines["gp_pde"] == every
    assert lines["odil"] == "demo:yes calibration:no bench:no"
    assert lines["meta_fm"] == "demo:no calibration:no bench:no"
    assert lines["probconserv"] == "demo:no calibration:no bench:yes"
    # `bench` of a component without a script is a usage error naming where it looked
    for argv in (["bench", "odil"], ["bench", "odil", "--help"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"COMPONENT: no benchmark script at {root / 'benchmarks' / 'odil.py'}" in err


def test_list_outside_a_checkout_shows_no_benchmark_scripts(monkeypatch, capsys):
    def no_checkout():
        raise FileNotFoundError("benchmarks/: not found next to the package")

    monkeypatch.setattr("bayesphys._bench.repo_root", no_checkout)
    lines = _list_lines(capsys)
    assert lines == dict.fromkeys(cli.COMPONENTS, "demo:yes calibration:yes bench:no")


def test_unknown_example_and_args(capsys):
    # argparse errors (exit 2, usage and message on stderr), not tracebacks
    for argv, msg in (
        (["run", "no-such-example"], "unknown example 'no-such-example'; available: cohort"),
        (["demo", "--device", "tpu"], "argument --device: device: expected 'auto', 'cpu'"),
        (["run", "glioma", "--device", "gpu0"], "argument --device"),
        (["bench", "odil", "--device", "tpu"], "argument --device"),
        (["demo", "--threads", "0"], "argument --threads: expected a positive int"),
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        assert msg in capsys.readouterr().err
    assert cli.build_parser().parse_args(["run", "stefan_front"]).example == "stefan_front"
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--bogus"])
    assert info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "nope"])
    assert info.value.code == 2
    assert "argument component: invalid choice: 'nope'" in capsys.readouterr().err


def test_bench_results_and_markdown(tmp_path):
    rows = [
        bench_row(
            "p",
            "ours",
            {"rel_l2": 1e-6, "seconds": 2.0},
            anchor={"source": "paper T1", "metrics": {"rel_l2": 1e-5}},
        )
    ]
    path = write_results(
        "toy", rows, quick=True, command="bayesphys bench toy --quick", out=tmp_path
    )
    payload = json.loads(path.read_text())
    assert payload["rows"][0]["metrics"]["rel_l2"] == 1e-6 and payload["quick"] is True
    table = render_table(payload)
    assert "1.00e-06 (1.00e-05)" in table and "paper T1" in table
    # an anchor figure for a metric none of our rows has still shows; anchor metrics None is fine
    extra = dict(
        payload, rows=[dict(payload["rows"][0], anchor={"source": "s", "metrics": {"ll": 2.7}})]
    )
    assert "| – (2.7) |" in render_table(extra)
    none = dict(payload, rows=[dict(payload["rows"][0], anchor={"source": "s", "metrics": None})])
    assert "| s |" in render_table(none)
    md = tmp_path / "b.md"
    update_benchmarks_md("toy", payload, docs=md)
    update_benchmarks_md("toy", payload, docs=md)  # idempotent: one block
    assert md.read_text().count("<!-- bench:toy -->") == 1
    with pytest.raises(ValueError, match="lower-case"):
        bench_row("p", "m", {"RelL2": 1.0})


def test_call_script_reaches_a_script_function_in_worker_processes(tmp_path):
    import functools

    from bayesphys.distributed import resolve_runner

    script = tmp_path / "toy_bench.py"
    script.write_text("import os\n\ndef task(x, scale=1):\n    return x * scale, os.getpid()\n")
    assert call_script(str(script), "task", 3, scale=2)[0] == 6
    fn = functools.partial(call_script, str(script), "task", scale=10)
    with resolve_runner("local", max_workers=2, threads_per_worker=1) as runner:
        out = {i: v for i, ok, v in runner.run(fn, [1, 2, 3]) if ok}
    assert [out[i][0] for i in range(3)] == [10, 20, 30]
    assert all(pid != __import__("os").getpid() for _, pid in out.values())
    with pytest.raises(AttributeError, match="no function"):
        call_script(str(script), "missing")
    with pytest.raises(FileNotFoundError):
        call_script(str(tmp_path / "absent.txt"), "task")


def _task_script(
    tmp_path: Path, monkeypatch, name: str, source: str, tempdir: Path | None = None
) -> Path:
    """``<tmp_path>/<name>.py`` holding ``source`` (a script of tasks for run_script_tasks),
    with the temporary folder, where the finished tasks' partial file goes, set to
    ``tempdir`` (default ``tmp_path``)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path if tempdir is None else tempdir))
    script = tmp_path / f"{name}.py"
    script.write_text(source)
    return script


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_script_tasks_keeps_task_order_and_names_a_failed_task(tmp_path, monkeypatch, jobs):
    script = _task_script(
        tmp_path,
        monkeypatch,
        "toy_tasks",
        "def task(x, scale=1):\n"
        "    if x < 0:\n"
        "        raise ValueError('negative')\n"
        "    return x * scale\n",
    )
    assert run_script_tasks(str(script), "task", [3, 1, 2], jobs, scale=10) == [30, 10, 20]
    with pytest.raises(RuntimeError, match=r"task -1 failed"):
        run_script_tasks(str(script), "task", [1, -1], jobs)


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_script_tasks_runs_the_other_tasks_and_keeps_their_results(
    tmp_path, monkeypatch, capsys, jobs
):
    """The first failed task raised at once: the tasks after it never ran and the results of
    those that had finished (hours of fits in an ablation) were lost with the exception. The
    other tasks now run, and their results are on the error (``results``) and in a partial
    file that the error names."""
    script = _task_script(
        tmp_path,
        monkeypatch,
        "toy_rows",
        "def task(x):\n"
        "    if x < 0:\n"
        "        raise ValueError('negative')\n"
        "    return {'x': x} if x % 2 else [{'x': x}, {'x': x + 100}]\n",
    )
    partial = tmp_path / "toy_rows.partial.json"
    with pytest.raises(RuntimeError, match=r"tasks -1, -3 failed; the results of the 2 ") as info:
        run_script_tasks(str(script), "task", [-1, 3, -3, 4], jobs)
    assert f"are in {partial} (marked partial)" in str(info.value)
    assert "ValueError: negative" in str(info.value.__cause__)
    assert info.value.results == [None, {"x": 3}, None, [{"x": 4}, {"x": 104}]]
    payload = json.loads(partial.read_text())
    assert payload["partial"] is True
    assert payload["failed"] == ["-1", "-3"] and payload["finished"] == ["3", "4"]
    assert payload["rows"] == [{"x": 3}, {"x": 4}, {"x": 104}]
    captured = capsys.readouterr()
    assert captured.err.count("FAILED: ValueError: negative") == 2
    assert '{"x": 3}' in captured.out  # each result printed when it arrived


def test_run_script_tasks_under_warnings_as_errors_keeps_a_non_finite_result(tmp_path, monkeypatch):
    """A finished task's NaN, under warnings as errors: the partial file was not written (the
    warning came first) and the error said it could not be; it is written and named, and the
    run's own error is the one raised."""
    import warnings

    script = _task_script(
        tmp_path,
        monkeypatch,
        "toy_nan",
        "def task(x):\n"
        "    if x < 0:\n"
        "        raise ValueError('negative')\n"
        "    return {'x': float('nan')}\n",
    )
    partial = tmp_path / "toy_nan.partial.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match=r"task -1 failed") as info:
            run_script_tasks(str(script), "task", [1, -1], 1)
    assert f"are in {partial} (marked partial" in str(info.value)
    assert json.loads(partial.read_text())["rows"] == [{"x": "nan"}]


def test_run_script_tasks_keeps_the_finished_results_on_ctrl_c(tmp_path, monkeypatch, capsys):
    script = _task_script(
        tmp_path,
        monkeypatch,
        "toy_stop",
        "def task(x):\n    if x == 0:\n        raise KeyboardInterrupt\n    return {'x': x}\n",
    )
    with pytest.raises(KeyboardInterrupt) as info:
        run_script_tasks(str(script), "task", [1, 0, 2], 1)
    assert info.value.results == [{"x": 1}, None, None]
    partial = tmp_path / "toy_stop.partial.json"
    assert json.loads(partial.read_text())["rows"] == [{"x": 1}]
    assert (
        f"stopped by KeyboardInterrupt; the results of the 1 finished task(s) are in {partial}"
        in (capsys.readouterr().err)
    )


def test_run_script_tasks_with_nothing_finished_writes_and_names_no_partial_file(
    tmp_path, monkeypatch, capsys
):
    script = _task_script(
        tmp_path,
        monkeypatch,
        "toy_none",
        "def task(x):\n"
        "    if x == 0:\n"
        "        raise KeyboardInterrupt\n"
        "    raise ValueError('negative')\n",
    )
    with pytest.raises(RuntimeError, match=r"^task -1 failed$"):  # no "; the results of ..."
        run_script_tasks(str(script), "task", [-1], 1)
    with pytest.raises(KeyboardInterrupt) as info:
        run_script_tasks(str(script), "task", [0, 1], 1)
    assert info.value.results == [None, None]
    assert "stopped by" not in capsys.readouterr().err
    assert not list(tmp_path.glob("*.partial.json"))


def test_run_script_tasks_says_when_the_finished_results_cannot_be_kept(tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the temporary folder should be")
    script = _task_script(
        tmp_path,
        monkeypatch,
        "toy_kept",
        "def task(x):\n    if x < 0:\n        raise ValueError('no')\n    return x\n",
        tempdir=blocked,
    )
    with pytest.raises(
        RuntimeError,
        match=r"^task -1 failed; the results of the 1 finished task\(s\) could not be written \(",
    ) as info:
        run_script_tasks(str(script), "task", [1, -1], 1)
    assert info.value.results == [1, None]  # still on the error


def test_run_script_tasks_refuses_bad_jobs(tmp_path):
    with pytest.raises(ValueError, match="jobs: expected an int >= 1"):
        run_script_tasks(str(tmp_path / "x.py"), "task", [1], 0)
    with pytest.raises(TypeError, match="jobs: expected an int"):
        run_script_tasks(str(tmp_path / "x.py"), "task", [1], 2.5)


def test_write_rows_records_command_extra_and_rows(tmp_path, capsys):
    rows = [{"a": 1, "b": 0.5}, {"a": 2, "b": None}]
    path = write_rows(
        "toy_ablation",
        rows,
        script="benchmarks/toy.py",
        argv=["--x", "1"],
        out=tmp_path,
        extra={"seconds": 3.0},
    )
    payload = json.loads(path.read_text())
    assert path == tmp_path / "toy_ablation.json"
    assert payload.pop("threading")["torch_num_threads"] >= 1  # what set the thread counts
    assert payload == {"command": "python benchmarks/toy.py --x 1", "seconds": 3.0, "rows": rows}
    printed = capsys.readouterr().out
    assert "| 2 | – |" in printed and f"wrote {path}" in printed
    assert print_rows_table(path) == path
    assert capsys.readouterr().out.strip() == rows_table(rows)


def test_write_rows_defaults_to_this_command_and_times_from_started(tmp_path, monkeypatch):
    import sys
    import time

    monkeypatch.setattr(sys, "argv", ["toy.py", "--seed", "3"])
    started = time.perf_counter() - 5.0  # five seconds ago
    path = write_rows("toy", [{"a": 1}], script="benchmarks/toy.py", out=tmp_path, started=started)
    payload = json.loads(path.read_text())
    assert payload["command"] == "python benchmarks/toy.py --seed 3"
    assert 5.0 <= payload["seconds"] < 60.0


def test_rows_table_unions_keys_and_marks_missing_cells():
    t = rows_table([{"a": 1, "b": 0.12345}, {"a": 2, "c": "x"}]).splitlines()
    assert t[0] == "| a | b | c |" and t[1] == "|---|---|---|"
    assert t[2] == "| 1 | 0.123 | – |" and t[3] == "| 2 | – | x |"
    # small values keep their digits instead of printing as 0.000; no rows says so
    assert rows_table([{"mse": 1.234e-5, "z": 0.0}]).splitlines()[2] == "| 1.23e-05 | 0.000 |"
    assert rows_table([]) == "(no rows)"


def test_ablation_parser_gives_the_shared_options_and_refuses_bad_jobs(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.json").write_text('{"rows": []}')  # --table takes an existing file
    ap = ablation_parser("Ablation: a toy.\n\nMore text.")
    assert ap.description == "Ablation: a toy."
    args = ap.parse_args(["--jobs", "2", "--out", "d", "--table", "r.json"])
    assert (args.jobs, args.out, args.table) == (2, "d", "r.json")
    assert ap.parse_args([]).jobs == 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit):
            ap.parse_args(["--jobs", bad])
        assert "--jobs: expected a positive int" in capsys.readouterr().err
    no_jobs = ablation_parser(None, jobs=False)
    with pytest.raises(SystemExit):
        no_jobs.parse_args(["--jobs", "2"])


def _failing_build(problem, *, seed=None):
    raise RuntimeError("this fit fails")


def test_run_exits_non_zero_when_the_example_reports_failures(tmp_path, monkeypatch, capsys):
    import dataclasses

    from bayesphys.examples import cohort

    spec = dataclasses.replace(cohort.MODELS["linear-gaussian"], build=_failing_build)
    monkeypatch.setitem(cohort.MODELS, "linear-gaussian", spec)
    argv = ["run", "cohort", "--smoke", "--executor", "sequential", "--out", str(tmp_path)]
    with pytest.warns(RuntimeWarning, match="fit_many: 4 of 4 problems failed"):
        assert cli.main(argv) == 1
    assert "failed: ['p000', 'p001', 'p002', 'p003']" in capsys.readouterr().out


def test_run_example_help_shows_the_examples_own_options(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "cohort", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--executor" in out and "--patients" in out
    with pytest.raises(SystemExit):  # an unknown example is still refused by name
        cli.main(["run", "no-such-example", "--help"])
    assert "unknown example" in capsys.readouterr().err


def _toy_payload():
    return {
        "command": "c",
        "date": "d",
        "torch": "t",
        "device": "cpu",
        "threads": 1,
        "quick": False,
        "rows": [bench_row("p", "m", {"rel_l2": 0.1})],
    }


def test_markdown_refresh_never_deletes_neighbouring_sections(tmp_path):
    md = tmp_path / "b.md"
    # the end marker of "a" is missing: the old code appended a second "a" block, and the next
    # refresh replaced everything from the first start marker on, section "b" included
    text = "# B\n\n<!-- bench:a -->\nold\n\n## b\n\n<!-- bench:b -->\nB\n<!-- /bench:b -->\n"
    md.write_text(text)
    with pytest.raises(ValueError, match="bench:a"):
        update_benchmarks_md("a", _toy_payload(), docs=md)
    assert md.read_text() == text
    md.write_text("<!-- /bench:a -->\n<!-- bench:a -->\nold\n")  # end before start
    with pytest.raises(ValueError, match="bench:a"):
        update_benchmarks_md("a", _toy_payload(), docs=md)
    # a component whose name extends another's leaves that block alone
    md.write_text(
        "<!-- bench:a -->\nA\n<!-- /bench:a -->\n<!-- bench:a_x -->\nX\n<!-- /bench:a_x -->\n"
    )
    update_benchmarks_md("a", _toy_payload(), docs=md)
    out = md.read_text()
    assert "<!-- bench:a_x -->\nX\n<!-- /bench:a_x -->" in out and "\nA\n" not in out


def test_quick_results_are_never_written_to_the_committed_folder(tmp_path, monkeypatch):
    import bayesphys._bench as bench

    monkeypatch.setattr(bench.results, "repo_root", lambda: tmp_path)  # write_results' default
    with pytest.raises(ValueError, match="quick"):
        write_results("toy", [], quick=True, command="c")
    assert not (tmp_path / "benchmarks").exists() and not (tmp_path / "docs").exists()


def test_demo_runs_the_named_components(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--only", "gp_pde"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.nc")) == ["core.nc", "gp_pde.nc"]
    assert "gp_pde" in capsys.readouterr().out


def test_rows_table_refuses_zero_digits():
    # digits=0 built the format "{v:.-1e}" for small values and crashed
    with pytest.raises(ValueError, match="digits"):
        rows_table([{"a": 0.5}], digits=0)


def test_bad_out_seed_and_missing_bench_script_are_usage_errors(tmp_path, monkeypatch, capsys):
    # each used to run (part of) the command and end in a traceback with exit status 1
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for argv, msg in (
        (["demo", "--out", str(a_file)], "argument --out: expected a folder, received the file"),
        (["demo", "--out", str(a_file / "sub")], "argument --out: cannot create folder"),
        (["demo", "--out", ""], "argument --out: expected a folder path, received an empty"),
        (["calibrate", "core", "--out", str(a_file)], "argument --out: expected a folder"),
        (["run", "cohort", "--out", str(a_file)], "argument --out: expected a folder"),
        (["bench", "odil", "--out", str(a_file)], "argument --out: expected a folder"),
        (
            ["demo", "--seed", str(2**70)],
            "argument --seed: expected an integer with |seed| < 2**43",
        ),
        (["run", "cohort", "--seed", str(2**43)], "argument --seed: expected an integer with"),
        (["calibrate", "core", "--seed", str(-(2**43))], "argument --seed: expected an integer"),
        (["calibrate", "core", "--seed", "1.5"], "argument --seed: expected an integer, received"),
        (["run", "cohort", "--seed", "x"], "argument --seed: expected an integer, received 'x'"),
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2, argv
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (argv, err)

    def no_checkout():
        raise FileNotFoundError("benchmarks/: not found next to the package")

    # the CLI imports repo_root from the package when it runs: the package attribute is read
    monkeypatch.setattr("bayesphys._bench.repo_root", no_checkout)
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "odil"])
    assert info.value.code == 2
    assert "benchmarks/: not found" in capsys.readouterr().err
    # a negative seed stays valid (it always worked)
    assert cli.build_parser().parse_args(["demo", "--seed", "-1"]).seed == -1
    assert cli.build_parser().parse_args(["demo", "--seed", str(2**43 - 1)]).seed == 2**43 - 1


def test_calibrate_exits_nonzero_when_the_hook_fails(tmp_path, monkeypatch, capsys):
    """It printed a traceback, then 'results: ...' and exited 0."""
    import types

    from bayesphys.diagnostics import suite

    def boom(quick, seed):
        raise RuntimeError("boom")

    monkeypatch.setattr(suite, "load_hook", lambda comp: types.SimpleNamespace(calibrate_rows=boom))
    assert cli.main(["calibrate", "odil", "--quick", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "calibrate: odil: calibrate_rows failed: RuntimeError('boom')" in err


def test_calibrate_command_prints_the_table(tmp_path, monkeypatch, capsys):
    """The command shows the rows (the library call is quiet by default)."""
    import types

    from bayesphys.diagnostics import calibration_rows, suite
    from tests.diagnostics.conftest import NormalNormal

    model = NormalNormal()

    def rows(quick, seed):
        return calibration_rows(
            model.simulate,
            model.infer,
            n_sims=20,
            n_draws=9,
            seed=seed,
            problem="toy",
            method="exact",
        )

    monkeypatch.setattr(suite, "load_hook", lambda comp: types.SimpleNamespace(calibrate_rows=rows))
    assert cli.main(["calibrate", "odil", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bayesphys calibrate odil" in out and "toy" in out and "results:" in out


def test_full_calibrate_outside_a_checkout_writes_under_bayesphys_out(
    tmp_path, monkeypatch, capsys
):
    """An installed package has no benchmarks/ folder: a full run failed with a traceback."""
    import types

    from bayesphys.diagnostics import calibration_rows, suite
    from tests.diagnostics.conftest import NormalNormal

    model = NormalNormal()

    def rows(quick, seed):
        return calibration_rows(
            model.simulate, model.infer, n_sims=20, n_draws=9, seed=seed, problem="toy", method="m"
        )

    def no_checkout():
        raise FileNotFoundError("benchmarks/: not found")

    monkeypatch.setattr(suite, "load_hook", lambda comp: types.SimpleNamespace(calibrate_rows=rows))
    monkeypatch.setattr(suite, "repo_root", no_checkout)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["calibrate", "odil"]) == 0
    folder = tmp_path / "bayesphys-out" / "calibration"
    names = {p.name for p in folder.iterdir()}
    assert {"calibration.json", "calibration_odil.png", "calibration_odil.nc"} <= names
    assert json.loads((folder / "calibration.json").read_text())["rows"]
    assert f"results: {Path('bayesphys-out') / 'calibration' / 'calibration.json'}" in (
        capsys.readouterr().out
    )


def test_run_prints_the_result_once(tmp_path, capsys):
    """gp-pde-inverse printed its summary, then `bayesphys run` printed it again."""
    rc = cli.main(["run", "gp-pde-inverse", "--smoke", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("D_covered") == 1


def test_bench_help_shows_the_scripts_own_options(capsys):
    """`bayesphys bench gp_pde --help` listed only --quick/--out/--device."""
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "gp_pde", "--help"])
    assert info.value.code == 0
    assert "--only" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["bench", "calibrate"])
def test_the_component_argument_is_described_in_the_help(command, capsys):
    """`bayesphys bench --help` / `calibrate --help` listed the component's choices with no
    word on what the argument is (or what scale_out / core mean)."""
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    section = capsys.readouterr().out.split("positional arguments:")[1].split("options:")[0]
    assert "the component whose" in section
    assert ("scale_out:" if command == "bench" else "core:") in section


def test_main_called_from_python_keeps_the_matplotlib_backend():
    import matplotlib

    from bayesphys.cli import main

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        main(["list"])
        assert matplotlib.get_backend() == "svg"  # main switched every caller to Agg
    finally:
        matplotlib.use(before)


def test_python_dash_m_runs_the_console_command():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "bayesphys", "list"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "examples (bayesphys run NAME" in out.stdout and "glioma" in out.stdout


def test_full_calibrate_outside_a_checkout_in_an_unwritable_folder_is_a_usage_error(
    tmp_path, monkeypatch, capsys
):
    from bayesphys.diagnostics import suite

    def no_checkout():
        raise FileNotFoundError("benchmarks/: not found")

    monkeypatch.setattr(suite, "repo_root", no_checkout)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bayesphys-out").write_text("a file where the folder would go")
    with pytest.raises(SystemExit) as exc:
        cli.main(["calibrate", "odil"])
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot be written" in err and "pass --out DIR" in err


def test_a_full_calibrate_checks_its_ranks_folder_before_the_work(tmp_path, monkeypatch, capsys):
    """In a checkout too: the ranks go to ./bayesphys-out/calibration, and a failed write there
    came after the work (the committed figure refreshed, the table not)."""
    import os

    from bayesphys.diagnostics import suite

    calls = []
    monkeypatch.setattr(suite, "_component_rows", lambda *a: calls.append(a) or [])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bayesphys-out").write_text("a file where the folder would go")
    with pytest.raises(SystemExit):
        cli.main(["calibrate", "odil"])  # parse time
    with pytest.raises(ValueError, match=r"^out: the default folder .* cannot be written"):
        suite.run_calibration("odil")  # the library call
    assert calls == []
    (tmp_path / "bayesphys-out").unlink()
    folder = tmp_path / "bayesphys-out" / "calibration"
    folder.mkdir(parents=True)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only folder
    assert "cannot be written" in suite.default_out_problem()


def test_bench_prints_no_results_line_for_a_mode_that_writes_no_file(tmp_path, capsys, monkeypatch):
    # `bayesphys bench odil --b4-ties N` only prints; the command added "results: /dev/null"
    # (and "results: None" for a script returning None)
    import argparse

    script = tmp_path / "toy.py"
    script.write_text("def main(argv):\n    print('tie fraction 0.5')\n")
    args = argparse.Namespace(
        component="toy", bench_path=script, quick=False, out=None, device=None
    )
    assert cli.cmd_bench(args, []) == 0
    assert capsys.readouterr().out == "tie fraction 0.5\n"
    from bayesphys._bench import repo_root, script_module

    odil = script_module(str(repo_root() / "benchmarks" / "odil.py"))
    monkeypatch.setattr(odil, "b4_tie_fraction", lambda n: {"cases": n})
    assert odil.main(["--b4-ties", "2"]) is None
    assert capsys.readouterr().out == '{"cases": 2}\n'


def test_run_formats_numbers_inside_tuples_as_the_other_values(monkeypatch, capsys):
    """D_ci95 printed as (0.9731234567890123, 1.0342109876543211) beside D_mean: 1.0012."""
    import numpy as np

    from bayesphys.examples import gp_pde_inverse

    result = {
        "D_mean": 1.00123456789,
        "D_ci95": (0.9731234567890123, 1.0342109876543211),
        "tiny": [1.23456789e-7, np.float32(0.5)],
        "one": (2.0,),
        "D_covered": True,
        "steps": 40,
        "failed": [],
        "png": "a.png",
    }
    monkeypatch.setattr(gp_pde_inverse, "main", lambda argv: result)
    assert cli.main(["run", "gp-pde-inverse"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "D_mean: 1.0012",
        "D_ci95: (0.9731, 1.0342)",
        "tiny: [1.235e-07, 0.5000]",
        "one: (2.0000,)",
        "D_covered: True",
        "steps: 40",
        "failed: []",
        "png: a.png",
    ]


def test_run_and_bench_pass_their_options_on_to_the_example_and_the_script(
    tmp_path, monkeypatch, capsys
):
    from bayesphys.examples import gp_pde_inverse

    seen = []
    result = {"D_mean": 1.0, "summary": {"table": 1}}  # a table: printed by the example itself
    monkeypatch.setattr(gp_pde_inverse, "main", lambda argv: seen.append(argv) or result)
    out = str(tmp_path / "o")
    argv = ["run", "gp-pde-inverse", "--steps", "5", "--smoke", "--device", "cpu", "--out", out]
    assert cli.main([*argv, "--seed", "3"]) == 0
    assert seen[-1] == ["--steps", "5", "--smoke", "--device", "cpu", "--out", out, "--seed", "3"]
    assert capsys.readouterr().out == "D_mean: 1.0000\n"
    monkeypatch.setattr(gp_pde_inverse, "main", lambda argv: None)  # nothing to print
    assert cli.main(["run", "gp-pde-inverse"]) == 0
    assert capsys.readouterr().out == ""

    script = tmp_path / "toy.py"
    script.write_text(
        "from pathlib import Path\ndef main(argv):\n    print(argv)\n    return Path('toy.json')\n"
    )
    monkeypatch.setattr(cli, "_bench_script", lambda component, must_exist=True: script)
    assert (
        cli.main(["bench", "odil", "--only", "B0", "--quick", "--out", out, "--device", "cpu"]) == 0
    )
    assert capsys.readouterr().out.splitlines() == [
        str(["--only", "B0", "--quick", "--out", out, "--device", "cpu"]),
        "results: toy.json",  # once: the scripts print it only when run as scripts
    ]


def test_every_option_of_every_subcommand_says_what_it_does():
    # `bayesphys demo --help` listed --out, --seed and --threads, and `bayesphys run --help`
    # --smoke, --device, --out and --seed, with no word on what they do or their default
    parser = cli.build_parser()
    for name, sub in parser.subcommand_parsers.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"bayesphys {name} {action.option_strings[0]}: no help text"
    text = parser.subcommand_parsers["run"].format_help()
    assert "bayesphys-out/EXAMPLE" in text
