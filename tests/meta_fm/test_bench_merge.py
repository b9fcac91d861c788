"""`benchmarks/meta_fm.py --merge`: what it keeps of the earlier results file."""

from __future__ import annotations

from bayesphys._bench import call_script, repo_root

SCRIPT = str(repo_root() / "benchmarks" / "meta_fm.py")


def _prev(**extra) -> dict:
    rows = [{"problem": p, "method": "MFM"} for p in ("B1", "B2", "B3")]
    return {
        "command": "python benchmarks/meta_fm.py",
        "rows": rows,
        "targets": {"B1": {"t": True}, "B2": {"t": False}, "B3": {"t": False}},
        "steps": {"B1": 5000, "B2": 5000, "B3": 1000},
        "total_seconds": 100.0,
        **extra,
    }


def test_merge_keeps_other_problems_steps_and_every_commands_seconds():
    kept, extra = call_script(SCRIPT, "merged_state", _prev(), ["B3"], "cmd2")
    assert [r["problem"] for r in kept] == ["B1", "B2"]
    assert extra["targets"] == {"B1": {"t": True}, "B2": {"t": False}}
    assert extra["steps"] == {"B1": 5000, "B2": 5000}  # B3's comes from the new command
    assert extra["runs"] == ["python benchmarks/meta_fm.py", "cmd2"]
    assert extra["run_seconds"] == [100.0]  # the caller appends this command's


def test_merge_of_a_merged_file_extends_runs_and_marks_unknown_seconds():
    prev = _prev(runs=["a", "b"], total_seconds=7.0)  # older file: no run_seconds
    _, extra = call_script(SCRIPT, "merged_state", prev, ["B1"], "c")
    assert extra["runs"] == ["a", "b", "c"]
    assert extra["run_seconds"] == [None, 7.0]
    prev = _prev(runs=["a", "b"], run_seconds=[5.0, 7.0])
    _, extra = call_script(SCRIPT, "merged_state", prev, ["B1"], "c")
    assert extra["run_seconds"] == [5.0, 7.0]
