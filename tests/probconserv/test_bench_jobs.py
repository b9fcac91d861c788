"""benchmarks/probconserv.py's problem-level worker processes (--jobs)."""

from __future__ import annotations

import pytest

from bayesphys._bench import repo_root, script_module

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")


@pytest.fixture
def bench():
    return script_module(str(repo_root() / "benchmarks" / "probconserv.py"))


def _failing_run(failing: set[str]):
    """A stand-in for the benchmark's ``run``: one row per problem, raising for the problems
    in ``failing`` (a set the test may empty later)."""

    def fake_run(quick, problems, **kw):
        (p,) = problems
        if p in failing:
            raise ValueError("late failure")
        row = {"problem": p, "setting": {}, "method": "ANP", "metrics": {"mse": 1.0}}
        return [row], {f"{p}/ANP": {"seconds": 1.0}}

    return fake_run


def test_problems_run_longest_first_and_come_back_in_order(bench, monkeypatch):
    calls = []

    def fake_run(quick, problems, **kw):
        (p,) = problems
        calls.append(p)
        return [{"problem": p}], {f"{p}/ANP": {"seconds": 1.0}}

    monkeypatch.setattr(bench, "run", fake_run)
    rows, info, secs = bench.run_problems(("diffusion", "pme", "stefan"), 1, quick=True)
    assert calls == ["stefan", "diffusion", "pme"]  # Stefan (twice the quick steps) first
    assert [r["problem"] for r in rows] == ["diffusion", "pme", "stefan"]
    assert list(info) == ["diffusion/ANP", "pme/ANP", "stefan/ANP"]
    assert set(secs) == {"diffusion", "pme", "stefan"}
    assert all(set(s) == {"seconds", "cpu_seconds"} for s in secs.values())


def test_a_failed_problem_names_itself(bench, monkeypatch):
    def fake_run(quick, problems, **kw):
        raise ValueError("boom")

    monkeypatch.setattr(bench, "run", fake_run)
    with pytest.raises(RuntimeError, match="problem 'pme' failed"):
        bench.run_problems(("pme",), 1, quick=True)


def test_threads_above_one_need_jobs_1(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--jobs", "2", "--threads", "2"])
    assert "--jobs 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, jobs, threads",
    [
        ([], 2, 1),
        (["--problems", "stefan"], 1, 1),  # one thread too: the full run's worker's rows
        (["--jobs", "1"], 1, 1),
        (["--threads", "2"], 1, 2),
        (["--jobs", "2", "--problems", "stefan"], 1, 1),
    ],
)
def test_default_thread_count_does_not_depend_on_the_problems(
    bench, monkeypatch, argv, jobs, threads
):
    seen = {}

    def fake(problems, n_jobs, **kw):
        seen.update(jobs=n_jobs, threads=bench.torch.get_num_threads())
        return [], {}, {p: {"seconds": 0.0, "cpu_seconds": 0.0} for p in problems}

    monkeypatch.setattr(bench, "run_problems", fake)
    monkeypatch.setattr(bench, "write_results", lambda *a, **k: "x")
    n = bench.torch.get_num_threads()
    try:
        bench.main(["--quick", "--out", "unused", *argv])
    finally:
        bench.torch.set_num_threads(n)
    assert seen == {"jobs": jobs, "threads": threads}


def test_a_failed_problem_keeps_the_finished_ones(bench, monkeypatch, tmp_path, capsys):
    """One problem failing raised at once and the problems that had finished (hours of
    training in a full run) were lost, the others never run; the others now run, and their
    rows go to probconserv.partial.json (marked partial) while the results file stays as it
    was and the error names the failed problem."""
    import json

    def fake_run(quick, problems, **kw):
        (p,) = problems
        if p == "pme":
            raise ValueError("late failure")
        return [{"problem": p, "metrics": {"mse": 1.0}}], {f"{p}/ANP": {"seconds": 1.0}}

    monkeypatch.setattr(bench, "run", fake_run)
    (tmp_path / "probconserv.json").write_text('{"rows": []}')
    argv = ["--quick", "--jobs", "1", "--problems", "stefan,pme,diffusion", "--out", str(tmp_path)]
    with pytest.raises(RuntimeError, match="problem 'pme' failed") as info:
        bench.main(argv)
    assert "ValueError: late failure" in str(info.value.__cause__)
    assert (tmp_path / "probconserv.json").read_text() == '{"rows": []}'
    partial = json.loads((tmp_path / "probconserv.partial.json").read_text())
    assert partial["partial"] is True
    assert sorted(r["problem"] for r in partial["rows"]) == ["diffusion", "stefan"]
    err = capsys.readouterr().err
    assert "[pme] FAILED: " in err and "late failure" in err
    assert f"are in {tmp_path / 'probconserv.partial.json'}" in err


def test_ctrl_c_keeps_the_finished_problems(bench, monkeypatch, tmp_path):
    import json

    def fake_run(quick, problems, **kw):
        (p,) = problems
        if p == "pme":
            raise KeyboardInterrupt
        return [{"problem": p, "metrics": {}}], {}

    monkeypatch.setattr(bench, "run", fake_run)
    argv = ["--quick", "--jobs", "1", "--problems", "stefan,pme", "--out", str(tmp_path)]
    with pytest.raises(KeyboardInterrupt):
        bench.main(argv)
    rows = json.loads((tmp_path / "probconserv.partial.json").read_text())["rows"]
    assert [r["problem"] for r in rows] == ["stefan"]


def test_partial_rows_finish_with_problems_and_merge(bench, monkeypatch, tmp_path):
    """The docstring's recipe: the partial file copied as probconserv.json into a folder, and
    the problems not finished rerun there with --problems --merge, give the whole table."""
    import json
    import shutil

    failing = {"pme"}

    monkeypatch.setattr(bench, "run", _failing_run(failing))
    argv = ["--quick", "--jobs", "1", "--problems", "stefan,pme,diffusion", "--out", str(tmp_path)]
    with pytest.raises(RuntimeError, match="problem 'pme' failed"):
        bench.main(argv)
    rest = tmp_path / "rest"
    rest.mkdir()
    shutil.copy(tmp_path / "probconserv.partial.json", rest / "probconserv.json")
    failing.clear()
    argv = ["--quick", "--jobs", "1", "--problems", "pme", "--merge", "--out", str(rest)]
    payload = json.loads(bench.main(argv).read_text())
    assert sorted(r["problem"] for r in payload["rows"]) == ["diffusion", "pme", "stefan"]
    assert sorted(payload["training"]) == ["diffusion/ANP", "pme/ANP", "stefan/ANP"]
    assert "partial" not in payload


def test_a_completed_run_removes_a_stale_partial_file(bench, monkeypatch, tmp_path):
    """A stopped run's probconserv.partial.json stayed beside a later completed run as if it
    were that run's (gp_pde's and neural_process's completed runs remove theirs); a completed
    run now removes it."""
    failing = {"pme"}

    monkeypatch.setattr(bench, "run", _failing_run(failing))
    argv = ["--quick", "--jobs", "1", "--problems", "stefan,pme", "--out", str(tmp_path)]
    with pytest.raises(RuntimeError, match="problem 'pme' failed"):
        bench.main(argv)
    partial = tmp_path / "probconserv.partial.json"
    assert partial.exists()
    failing.clear()
    bench.main(argv)
    assert not partial.exists()
