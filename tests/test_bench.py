"""The benchmark results files and their docs tables (``bayesphys/_bench/``) against the
results format of the architecture notes: top-level keys, rows of ``problem``, ``setting``,
``method``, ``metrics`` (lower-case keys) and ``anchor`` (``None`` or ``{source, metrics}``)."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bayesphys._bench import ablation_parser, bench_row, render_table, write_results

TOP_LEVEL = {"component", "command", "quick", "date", "torch", "device", "threads", "rows"}
ROW_KEYS = {"problem", "setting", "method", "metrics", "anchor"}
#: how a results file writes a non-finite figure (strict JSON has no NaN / Infinity)
NONFINITE = ("nan", "inf", "-inf")


def format_problems(payload: dict[str, Any]) -> list[str]:
    """What in a results payload breaks the results format (empty: none)."""
    bad = [f"missing top-level key {k!r}" for k in sorted(TOP_LEVEL - set(payload))]
    if not isinstance(payload.get("quick"), bool):
        bad.append("quick: not a bool")
    for i, row in enumerate(payload.get("rows", [])):
        bad += [f"row {i}: missing {k!r}" for k in sorted(ROW_KEYS - set(row))]
        if not isinstance(row.get("setting"), dict):
            bad.append(f"row {i}: setting is not an object")
        for k, v in (row.get("metrics") or {}).items():
            if k != k.lower():
                bad.append(f"row {i}: metric key {k!r} is not lower-case")
            if v is not None and not isinstance(v, (int, float)) and v not in NONFINITE:
                bad.append(f"row {i}: metric {k!r} is not a number")
        anchor = row.get("anchor")
        if anchor is not None and not (
            isinstance(anchor, dict) and {"source", "metrics"} <= set(anchor)
        ):
            bad.append(f"row {i}: anchor is neither null nor {{source, metrics}}")
    return bad


def test_written_results_follow_the_format(tmp_path):
    rows = [
        bench_row("p", "ours", {"mse": 1e-4, "ll": None}, setting={"k": 5}),
        bench_row(
            "p",
            "theirs",
            {"mse": 2e-4},
            anchor={"source": "paper, Table 1", "metrics": {"mse": 1.5e-4}},
            note="target missed",
        ),
    ]
    path = write_results("toy", rows, quick=True, command="bayesphys bench toy", out=tmp_path)
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert format_problems(payload) == []
    assert payload["rows"][0]["anchor"] is None  # no anchor figure: null, not {} or absent
    assert [r["method"] for r in payload["rows"]] == ["ours", "theirs"]  # a miss is kept
    assert format_problems({**payload, "rows": [{"problem": "p", "metrics": {"MSE": 1}}]})


def test_numpy_and_torch_settings_are_written_as_numbers_and_rendered(tmp_path):
    # a setting holding np.int64(3) was written as 3.0 (json's default=float), and the docs
    # table (render_table) raised TypeError on it after the results file was written
    from fractions import Fraction

    setting = {"n": np.int64(3), "t": np.float32(0.5), "steps": torch.tensor(7), "on": np.bool_(1)}
    # arrays and tensors of numbers as lists, any other number (a Fraction) as a float
    setting |= {"grid": np.array([4, 8]), "ell": torch.tensor([0.5, 0.25]), "r": Fraction(1, 4)}
    row = bench_row("p", "m", {"mse": 1e-4}, setting=setting)
    path = write_results("toy", [row], quick=True, command="c", out=tmp_path)
    written = json.loads(path.read_text(encoding="utf-8"))["rows"][0]["setting"]
    assert written == {
        "n": 3,
        "t": 0.5,
        "steps": 7,
        "on": True,
        "grid": [4, 8],
        "ell": [0.5, 0.25],
        "r": 0.25,
    }
    assert isinstance(written["n"], int) and isinstance(written["steps"], int)
    payload = {
        "command": "c",
        "date": "d",
        "torch": "t",
        "device": "cpu",
        "threads": 1,
        "quick": True,
        "rows": [row],
    }
    want = '"n": 3, "t": 0.5, "steps": 7, "on": true, "grid": [4, 8], "ell": [0.5, 0.25], "r": 0.25'
    assert f"| p | {want} | m |" in render_table(payload)


def test_results_json_hands_json_only_its_own_types():
    """What reaches json.dumps is plain dict / list / str / int / float / bool / None (numpy
    and torch values, arrays, tuples and other numbers converted before), so the encoder needs
    no fallback for a value; anything else is refused naming where it was."""
    import enum
    from fractions import Fraction

    from bayesphys._bench.results import _strict

    class Level(enum.IntEnum):
        HIGH = 2

    payload = {
        "a": [np.int64(3), np.float32(0.5), np.bool_(1), np.str_("s"), (1, 2.5)],
        "t": {"0d": torch.tensor(7), "1d": torch.tensor([0.5, np.inf]), "arr": np.array([[1]])},
        "other": [Fraction(1, 4), Level.HIGH, None, "x"],
    }
    nonfinite: list[str] = []
    clean = _strict(payload, "", nonfinite)

    def plain(v: Any) -> bool:
        if type(v) is dict:
            return all(type(k) is str and plain(x) for k, x in v.items())
        if type(v) is list:
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (str, int, float))  # bool is an int

    assert plain(clean) and nonfinite == ["t.1d[1] = inf"]
    assert json.loads(json.dumps(clean, allow_nan=False)) == {
        "a": [3, 0.5, True, "s", [1, 2.5]],
        "t": {"0d": 7, "1d": [0.5, "inf"], "arr": [[1]]},
        "other": [0.25, 2, None, "x"],
    }
    with pytest.raises(TypeError, match=r"^rows\[0\]\.p: expected a number, .* received set"):
        _strict({"rows": [{"p": {1}}]}, "", [])


def test_table_cells_of_edge_values():
    anchor = {"source": "T1", "metrics": {"mse": np.float32(1.5e-6), "nll": 2, "ok": True}}
    rows = [
        bench_row("p", "m", {"mse": math.nan, "ll": math.inf, "ce": None, "seconds": 1e-12}),
        bench_row("q", "m", {"mse": -math.inf, "steps": 123456.0}, anchor=anchor),
        bench_row("r", "m", {"mse": 0.0}, setting={"grid": {"n": [2, 3]}, "s": "a|b"}),
    ]
    payload = {"command": "c", "date": "d", "torch": "t", "device": "cpu", "threads": 1}
    lines = render_table({**payload, "quick": True, "rows": rows}).splitlines()
    assert (
        lines[2]
        == "| problem | setting | method | mse | ll | ce | seconds | steps | nll | ok | anchor |"
    )
    assert lines[4] == "| p | – | m | nan | inf | – | 1.00e-12 | – | – | – | – |"
    # an anchor figure given as np.float32 is formatted as a number ("1.5e-06" before), a
    # bool as True (not 1)
    assert (
        lines[5] == "| q | – | m | -inf (1.50e-06) | – | – | – | 1.23e+05 | – (2) | – (True) | T1 |"
    )
    # nested settings stay one cell; a "|" in a setting cannot split the row
    assert (
        lines[6] == '| r | "grid": {"n": [2, 3]}, "s": "a/b" | m | 0 | – | – | – | – | – | – | – |'
    )


def test_ablation_table_option_refuses_a_missing_file(tmp_path, capsys):
    # `python benchmarks/<ablation>.py --table typo.json` ended in a FileNotFoundError traceback
    ap = ablation_parser("An ablation.")
    with pytest.raises(SystemExit) as err:
        ap.parse_args(["--table", str(tmp_path / "typo.json")])
    assert err.value.code == 2
    assert "argument --table: no results file" in capsys.readouterr().err
    (tmp_path / "r.json").write_text('{"rows": []}')
    assert ap.parse_args(["--table", str(tmp_path / "r.json")]).table == str(tmp_path / "r.json")


def _strict_loads(text: str) -> Any:
    """``json.loads`` as a strict JSON parser reads: ``NaN`` / ``Infinity`` are refused."""

    def refuse(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_figures_are_written_as_strict_json(tmp_path, monkeypatch):
    # a diverged NLL (inf) or a one-seed sd (nan) was written as bare Infinity / NaN, which
    # strict JSON parsers refuse (the whole results file became unreadable to them)
    import bayesphys._bench as bench

    rendered = []
    # write_results reads it from its own module
    monkeypatch.setattr(bench.results, "update_benchmarks_md", lambda c, p: rendered.append(p))
    rows = [
        bench_row("p", "m", {"nll": math.inf, "ll": -math.inf, "mse": math.nan, "ce": 0.5}),
        bench_row(
            "q",
            "m",
            {"mse": np.float32(np.nan)},
            setting={"tau": np.float32(np.inf), "grid": [1.0, math.nan], "t": torch.tensor(0.5)},
            anchor={"source": "T1", "metrics": {"mse": math.nan, "ll": 2.0}},
        ),
    ]
    with pytest.warns(RuntimeWarning, match=r"7 non-finite value\(s\) written as strings") as rec:
        path = write_results("toy", rows, quick=True, command="c", out=tmp_path, update_docs=True)
    assert "rows[0].metrics.nll = inf" in str(rec[0].message)
    assert rec[0].filename == __file__  # points at the caller, not the package
    payload = _strict_loads(path.read_text(encoding="utf-8"))
    assert format_problems(payload) == []
    assert payload["rows"][0]["metrics"] == {"nll": "inf", "ll": "-inf", "mse": "nan", "ce": 0.5}
    assert payload["rows"][1]["setting"] == {"tau": "inf", "grid": [1.0, "nan"], "t": 0.5}
    assert payload["rows"][1]["anchor"]["metrics"] == {"mse": "nan", "ll": 2.0}
    # the docs table is the file's: rendering the file again gives the same table
    assert len(rendered) == 1 and render_table(rendered[0]) == render_table(payload)
    # shown as the numbers were, not as "–" (a metric never measured)
    assert "| p | – | m | inf | -inf | nan | 0.5 | – |" in render_table(payload)


def test_ablation_rows_with_a_one_seed_sd_are_strict_json(tmp_path, capsys):
    import bayesphys._bench as bench

    rows = [{"split": "a", "seed": 0, "w2": 0.25}]
    rows += bench.seed_summary_rows(rows, ("split",), ("w2",))  # sd of one seed: nan
    with pytest.warns(RuntimeWarning, match=r"rows\[2\]\.w2 = nan"):
        path = bench.write_rows("abl", rows, script="demo.py", argv=[], out=tmp_path)
    written = _strict_loads(path.read_text(encoding="utf-8"))["rows"]
    assert written[2] == {"split": "a", "seed": "sd", "w2": "nan"}
    printed = capsys.readouterr().out
    assert bench.print_rows_table(path) == path
    assert capsys.readouterr().out.strip() in printed  # the table printed is the file's


def test_finite_payloads_are_written_unchanged():
    # strict writing changes nothing in a file without non-finite values: the committed
    # results files, read and written again, give the same objects
    import bayesphys._bench as bench

    results = bench.repo_root() / "benchmarks" / "results"
    for path in sorted(results.glob("*.json")):
        payload = _strict_loads(path.read_text(encoding="utf-8"))
        assert json.loads(bench.results_json(payload)) == payload, path.name


def test_committed_results_render_to_the_docs_tables():
    # every table between <!-- bench:X --> markers of docs/benchmarks.md is the rendering of
    # the committed benchmarks/results/X.json (a results file changed without its table, or
    # a table edited by hand, fails here; the gp_pde and odil pages' copies had fallen behind)
    import re

    from bayesphys._bench import repo_root

    root = repo_root()
    text = (root / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- bench:(\w+) -->\n(.*?)\n<!-- /bench:\1 -->", text, re.S)
    assert len(blocks) >= 7
    for component, table in blocks:
        path = root / "benchmarks" / "results" / f"{component}.json"
        payload = _strict_loads(path.read_text(encoding="utf-8"))
        assert render_table(payload) == table, component
    # the component pages that show the same table carry it verbatim
    for component in ("gp_pde", "neural_process", "odil", "probconserv"):
        path = root / "benchmarks" / "results" / f"{component}.json"
        page = (root / "docs" / f"{component}.md").read_text(encoding="utf-8")
        assert render_table(_strict_loads(path.read_text(encoding="utf-8"))) in page, component


@pytest.mark.parametrize("writer", ["write_results", "write_rows"])
def test_a_failed_write_keeps_the_rows_in_a_file_it_names(tmp_path, monkeypatch, writer):
    """A results folder that cannot be written at the end of a run (here a file in its place;
    a read-only folder, a full disk) raised a bare OSError and every row was lost; they are
    kept in a temporary file, named in the error (an OSError still)."""
    import tempfile

    from bayesphys._bench import write_rows

    aside = tmp_path / "aside"
    aside.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(aside))
    (tmp_path / "blocked").write_text("a file where the folder should be")
    out = tmp_path / "blocked" / "results"
    rows = [bench_row("p", "ours", {"mse": 1e-4})]
    with pytest.raises(OSError, match=r"could not be written .*kept in") as info:
        if writer == "write_results":
            write_results("toy", rows, quick=True, command="c", out=out)
        else:
            write_rows("toy", rows, script="benchmarks/toy.py", argv=[], out=out)
    (kept,) = aside.glob("toy-unsaved-*.json")
    assert str(kept) in str(info.value) and str(out / "toy.json") in str(info.value)
    assert json.loads(kept.read_text(encoding="utf-8"))["rows"][0]["metrics"] == {"mse": 1e-4}
    assert isinstance(info.value, NotADirectoryError | FileExistsError)  # as the cause raised


def test_a_failed_write_with_no_room_elsewhere_says_so(tmp_path, monkeypatch):
    import errno
    import tempfile

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    (tmp_path / "blocked").write_text("a file where the folder should be")
    out = tmp_path / "blocked" / "results"
    rows = [bench_row("p", "ours", {"mse": 1e-4})]
    with pytest.raises(
        OSError,
        match=r"toy\.json could not be written .*could not keep them elsewhere either "
        r"\(OSError: \[Errno 28\] No space left on device\)",
    ):
        write_results("toy", rows, quick=True, command="c", out=out)


def test_a_partial_write_that_fails_is_reported_not_raised(tmp_path, monkeypatch):
    """A stopped run's partial rows that cannot be written: the stop message says why (the
    run's own error is the one raised)."""
    import tempfile

    from bayesphys._bench import write_partial

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the rows are kept aside
    (tmp_path / "blocked").write_text("a file where the folder should be")
    rows = [bench_row("p", "m", {"mse": 0.5})]
    said = write_partial(
        "toy", rows, quick=True, command="c", out=tmp_path / "blocked", device="cpu"
    )
    assert said.startswith("could not be written (") and "toy.partial.json" in said


@pytest.mark.parametrize("where", ["out", None, ""])
def test_partial_path_is_where_write_partial_writes_and_remove_partial_removes_it(
    tmp_path, monkeypatch, where
):
    import tempfile

    from bayesphys._bench import partial_path, remove_partial, write_partial

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    (tmp_path / "temp").mkdir()
    out = str(tmp_path / "out") if where == "out" else where
    said = write_partial("toy", [], quick=True, command="c", out=out, device="cpu")
    path = partial_path("toy", out)
    assert said == f"are in {path} (marked partial)" and path.exists()
    assert path.parent == (tmp_path / "out" if where == "out" else tmp_path / "temp")
    remove_partial("toy", out)
    assert not path.exists()
    remove_partial("toy", out)  # no file: nothing to do


@pytest.mark.parametrize("writer", ["write_results", "write_rows", "write_results_json"])
def test_warnings_as_errors_still_leave_the_results_written(tmp_path, monkeypatch, writer):
    """Under ``python -W error`` the warning about non-finite figures was raised before the
    file was written, so the run's results were lost; it now comes once the file is on disk
    (and is still raised, as asked)."""
    import warnings

    import bayesphys._bench as bench

    rows = [bench_row("p", "m", {"nll": math.inf, "mse": 0.5})]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match=r"1 non-finite value\(s\)"):
            if writer == "write_results":
                write_results("toy", rows, quick=True, command="c", out=tmp_path)
            elif writer == "write_rows":
                bench.write_rows("toy", rows, script="demo.py", argv=[], out=tmp_path)
            else:
                bench.write_results_json(tmp_path / "toy.json", {"rows": rows})
    payload = _strict_loads((tmp_path / "toy.json").read_text(encoding="utf-8"))
    assert payload["rows"][0]["metrics"] == {"nll": "inf", "mse": 0.5}


def test_warnings_as_errors_in_a_partial_write_name_the_written_file(tmp_path):
    """A stopped run's rows with a non-finite figure, under warnings as errors: the partial
    file is written and named (the warning is the note, the run's own error the one raised)."""
    import warnings

    from bayesphys._bench import write_partial

    rows = [bench_row("p", "m", {"nll": math.nan})]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        said = write_partial("toy", rows, quick=True, command="c", out=tmp_path, device="cpu")
    path = tmp_path / "toy.partial.json"
    assert said.startswith(f"are in {path} (marked partial; results: 1 non-finite")
    assert _strict_loads(path.read_text(encoding="utf-8"))["rows"][0]["metrics"] == {"nll": "nan"}


@pytest.mark.parametrize(
    "script", ["odil_b6_offsets", "odil_resolution", "meta_fm_spread_ablation"]
)
@pytest.mark.parametrize("bad", ["a/b", "x.json", "", "a\\b"])
def test_ablation_scripts_refuse_a_results_name_with_a_folder_or_suffix(script, bad, capsys):
    """``--name`` is a file name (``<out>/<name>.json``): these scripts took ``a/b`` and wrote
    outside ``--out``, or ``x.json`` and wrote ``x.json.json``; now argparse refuses it before
    any work (the same check as the calibration and neural-process scripts)."""
    from bayesphys._bench import script_module

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    mod = script_module(str(root / f"{script}.py"))
    with pytest.raises(SystemExit) as err:
        mod.main(["--name", bad])
    assert err.value.code == 2
    assert "--name: expected a file name without folder or .json" in capsys.readouterr().err


@pytest.mark.parametrize("writer", ["write_results", "write_rows"])
@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_refused_not_taken_for_the_current_folder(
    tmp_path, monkeypatch, writer, out
):
    """``write_results(out="")`` wrote ``toy.json`` into the current folder (``Path("")``)
    and ``write_rows(out="")`` into the committed results folder beside the script, while the
    ``--out`` options refuse an empty folder; both now refuse it, writing nothing."""
    from bayesphys._bench import write_rows

    monkeypatch.chdir(tmp_path)
    rows = [bench_row("p", "m", {"mse": 1e-4})]
    with pytest.raises(ValueError, match=r"out: expected a folder path or None"):
        if writer == "write_results":
            write_results("toy", rows, quick=True, command="c", out=out)
        else:
            write_rows("toy", rows, script="demo.py", argv=[], out=out)
    assert list(tmp_path.rglob("*")) == []


def test_results_files_record_what_sets_the_thread_counts(tmp_path, monkeypatch, one_torch_thread):
    """Only OMP_NUM_THREADS was recorded (in the command): torch's own thread count and the
    BLAS variables MKL_NUM_THREADS / OPENBLAS_NUM_THREADS were not. The header now has
    ``"threading"`` (torch's count and each of the three set), the command names the ones the
    shell set, and ``"threads"`` keeps its meaning (the docs tables render as before)."""
    import bayesphys._bench as bench

    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    want = {"torch_num_threads": 1, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "3"}
    rows = [bench_row("p", "m", {"mse": 1e-4})]
    path = write_results("toy", rows, quick=True, command="c", out=tmp_path)
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["threading"] == want and payload["threads"] == 1
    assert format_problems(payload) == [] and "· 1 threads ·" in render_table(payload)
    path = bench.write_rows("abl", [{"a": 1}], script="demo.py", argv=["--x"], out=tmp_path)
    assert json.loads(path.read_text(encoding="utf-8"))["threading"] == want
    monkeypatch.setattr(bench.commands, "_USER_OMP_THREADS", "1")
    monkeypatch.setattr(bench.commands, "_USER_OTHER_THREADS", {"MKL_NUM_THREADS": "3"})
    assert bench.recorded_command("demo.py", ["--x"]) == (
        "OMP_NUM_THREADS=1 MKL_NUM_THREADS=3 python benchmarks/demo.py --x"
    )


def test_a_stopped_task_runs_partial_file_records_the_argv_the_script_parsed(tmp_path, monkeypatch):
    """The partial file of :func:`run_script_tasks` recorded this process's ``sys.argv`` (a
    test runner's, when a script's ``main(argv)`` was called from Python); it records the
    ``argv`` the script passes, which is not handed to the tasks."""
    import sys
    import tempfile

    from bayesphys._bench import run_script_tasks

    script = tmp_path / "toy_ablation.py"
    script.write_text(
        "def run_task(task):\n"
        "    if task == 2:\n"
        "        raise ValueError('task 2 fails')\n"
        "    return {'task': task}\n"
    )
    (tmp_path / "temp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    monkeypatch.setattr(sys, "argv", ["runner", "-q", "tests/x.py"])
    with pytest.raises(RuntimeError, match="task 2 failed") as info:
        run_script_tasks(str(script), "run_task", [1, 2], 1, argv=["--seeds", "2"])
    assert info.value.results == [{"task": 1}, None]
    partial = json.loads((tmp_path / "temp" / "toy_ablation.partial.json").read_text())
    assert partial["command"] == "python benchmarks/toy_ablation.py --seeds 2"
    assert partial["finished"] == ["1"] and partial["failed"] == ["2"]


def test_a_smoke_ablation_without_out_writes_to_a_temporary_folder_and_table_prints_it(
    tmp_path, monkeypatch, capsys
):
    """``--smoke`` without ``--out`` never writes the committed results (tiny sizes); its
    ``--table`` prints the file written, running nothing."""
    import tempfile

    from bayesphys._bench import smoke_ablation_main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    script = tmp_path / "toy_ablation.py"
    script.write_text(
        "import torch\n"
        "def run_task(x, smoke=False):\n"
        "    return [{'x': x, 'smoke': smoke, 'threads': torch.get_num_threads()}]\n"
    )
    kw = dict(
        script=str(script),
        name="toy",
        tasks=[1, 2],
        summarise=lambda rows: [{"x": "all", "n": len(rows)}],
        table=lambda rows: f"{len(rows)} rows",
        extra=lambda smoke: {"tasks": 2},
    )
    callers_threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the tasks run on one thread, and the caller gets its 2 back
    try:
        path = smoke_ablation_main("A toy ablation.", ["--smoke"], **kw)
        assert torch.get_num_threads() == 2  # it was left at one
    finally:
        torch.set_num_threads(callers_threads)
    assert path.parent.parent == tmp_path and path.parent.name.startswith("bench_smoke_")
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["rows"] == [
        {"x": 1, "smoke": True, "threads": 1},
        {"x": 2, "smoke": True, "threads": 1},
        {"x": "all", "n": 2},
    ]
    assert payload["smoke"] is True and payload["tasks"] == 2
    capsys.readouterr()

    def no_run(*a, **k):
        raise AssertionError("--table ran the tasks")

    monkeypatch.setattr("bayesphys._bench.ablation.run_script_tasks", no_run)
    assert smoke_ablation_main("A toy ablation.", ["--table", str(path)], **kw) == path
    out = capsys.readouterr().out
    assert "all" in out and "smoke" in out


def test_a_value_json_cannot_hold_is_refused_naming_where_it_is(tmp_path):
    """A set in a setting failed in json's encoder with "float() argument must be a string
    or a real number, not 'set'", naming neither the row nor the key."""
    rows = [bench_row("p", "m", {"mse": 0.5}), bench_row("q", "m", {"mse": 0.5})]
    rows[1]["setting"] = {"grid": {"n": {4, 8}}}
    with pytest.raises(
        TypeError,
        match=r"^rows\[1\]\.setting\.grid\.n: expected a number, string, bool, None, list or "
        r"dict, received set",
    ):
        write_results("toy", rows, quick=True, command="c", out=tmp_path)
    assert not (tmp_path / "toy.json").exists()


def test_a_dict_key_json_cannot_hold_is_refused_naming_where_it_is(tmp_path):
    """A numpy int or tuple key reached json.dumps, whose TypeError ("keys must be str, int,
    float, bool or None, not int64") named neither the row nor the key; a numpy int key is
    now written as its digits, as a Python int key always was, and a tuple key is refused
    naming its place."""
    from bayesphys._bench.results import _strict

    got = _strict({"s": {np.int64(3): 1, 2: 2, 0.5: 3, True: 4, None: 5, np.str_("k"): 6}}, "", [])
    assert got == {"s": {"3": 1, "2": 2, "0.5": 3, "true": 4, "null": 5, "k": 6}}
    # the keys json.dumps accepted are written as it wrote them
    native = {"s": {2: 2, 0.5: 3, True: 4, None: 5, 1e300: 6}}
    assert json.dumps(_strict(native, "", [])) == json.dumps(native)
    rows = [bench_row("p", "m", {"mse": 0.5}), bench_row("q", "m", {"mse": 0.5})]
    rows[1]["setting"] = {"grid": {(4, 8): 1}}
    with pytest.raises(
        TypeError,
        match=r"^rows\[1\]\.setting\.grid\[\(4, 8\)\]: expected a dict key that is a string "
        r"\(or an int, a finite float, a bool or None, written as a string\), received tuple",
    ):
        write_results("toy", rows, quick=True, command="c", out=tmp_path)
    assert not (tmp_path / "toy.json").exists()
    with pytest.raises(TypeError, match=r"^\[nan\]: expected a dict key .* received float"):
        _strict({math.nan: 1}, "", [])
    with pytest.raises(ValueError, match=r"^s\['1'\]: a dict key written as '1', as another"):
        _strict({"s": {1: "a", "1": "b"}}, "", [])
    rows[1]["setting"] = {"grid": {np.int64(4): 1}}
    path = write_results("toy", rows, quick=True, command="c", out=tmp_path)
    assert json.loads(path.read_text())["rows"][1]["setting"] == {"grid": {"4": 1}}


def test_the_code_path_variables_and_the_cpu_are_recorded(tmp_path, monkeypatch):
    """The same code rounds differently under MKL_CBWR / MKL_ENABLE_INSTRUCTIONS /
    ATEN_CPU_CAPABILITY or on another CPU (the Allen-Cahn 200 x 200 fit moved 5x under
    MKL_CBWR=COMPATIBLE, docs/gp_pde_notes.md); results files recorded neither: the command now
    reruns with the variables the shell set, and the header names the CPU model and torch's
    CPU capability."""
    import bayesphys._bench as bench

    monkeypatch.setattr(bench.commands, "_USER_NUMERICS", {"MKL_CBWR": "COMPATIBLE"})
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    assert bench.recorded_command("demo.py", ["--x"]) == (
        "MKL_CBWR=COMPATIBLE python benchmarks/demo.py --x"
    )
    rows = [bench_row("p", "m", {"mse": 1e-4})]
    path = write_results("toy", rows, quick=True, command="c", out=tmp_path)
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["threading"]["MKL_CBWR"] == "COMPATIBLE"
    capability = torch.backends.cpu.get_cpu_capability()
    assert payload["machine"].endswith(f", torch CPU capability {capability}")
    assert payload["machine"].startswith(f"{platform.machine()}, {os.cpu_count()} cores")
