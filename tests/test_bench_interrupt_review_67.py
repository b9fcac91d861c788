"""A benchmark run that merges its rows into an existing results file reads that file before
its work: one that cannot be read (cut short, a merge conflict left in it) is refused before
any benchmark runs. ``benchmarks/odil.py`` read it after the work, outside the block that keeps
a stopped run's rows, so its error lost every row computed; ``gp_pde.py`` and
``neural_process.py --merge`` failed after the work too (their rows left in a partial file)."""

from __future__ import annotations

import json

import pytest

from bayesphys._bench import read_previous_results, repo_root, script_module

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")

BENCH = repo_root() / "benchmarks"
CONFLICTED = '{\n<<<<<<< HEAD\n "command": "a",\n=======\n "command": "b",\n>>>>>>> other\n'


def _boom(*args, **kwargs):
    raise AssertionError("a benchmark ran before the results file was read")


@pytest.mark.parametrize(
    ("script", "work", "argv"),
    [
        ("odil.py", "bench_b0", ["--only", "B0"]),
        ("gp_pde.py", "run_one", ["--only", "poisson1d-sin100", "--merge"]),
        ("neural_process.py", "poisson_test_set", ["--only", "SPEED", "--merge"]),
    ],
)
def test_an_unreadable_results_file_is_refused_before_the_work(
    script, work, argv, tmp_path, monkeypatch, capsys
):
    mod = script_module(str(BENCH / script))
    monkeypatch.setattr(mod, work, _boom)
    results = tmp_path / f"{script[:-3]}.json"
    results.write_text(CONFLICTED, encoding="utf-8")
    with pytest.raises(SystemExit) as err:
        mod.main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2
    assert f"{results}: the results file this run merges into cannot be read" in (
        capsys.readouterr().err
    )
    assert results.read_text(encoding="utf-8") == CONFLICTED  # left as it was


def test_read_previous_results_reads_a_results_file_and_refuses_others(tmp_path):
    path = tmp_path / "x.json"
    assert read_previous_results(path) is None  # no file: nothing to merge into
    payload = {"command": "bayesphys bench x", "rows": [{"problem": "P1"}]}
    path.write_text(json.dumps(payload), encoding="utf-8")
    assert read_previous_results(path) == payload
    for bad in ([], {"rows": [1], "command": "c"}, {"rows": []}):
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(ValueError, match=rf"{path}: the results file this run merges into"):
            read_previous_results(path)
