"""`benchmarks/meta_fm.py --merge`: what it keeps of the earlier results file."""

from __future__ import annotations

import pytest

from bayesphys._bench import call_script, repo_root, script_module

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


def test_merge_drops_the_commands_none_of_whose_rows_remain():
    """A command whose every problem is rerun leaves the header (runs, run_seconds,
    run_problems) with its rows; one with a problem not rerun, or whose problems an older
    file did not record, stays."""
    prev = _prev(
        runs=["a", "b", "c"],
        run_seconds=[1.0, 2.0, 3.0],
        run_problems=[["B1", "B2"], ["B3"], ["B2"]],
    )
    kept, extra = call_script(SCRIPT, "merged_state", prev, ["B2", "B3"], "d")
    assert [r["problem"] for r in kept] == ["B1"]
    assert extra["runs"] == ["a", "d"]  # b (B3) and c (B2) have no rows left
    assert extra["run_seconds"] == [1.0]
    assert extra["run_problems"] == [["B1", "B2"], ["B2", "B3"]]
    prev = _prev(runs=["a", "b"], run_seconds=[1.0, 2.0])  # older file: problems unknown
    _, extra = call_script(SCRIPT, "merged_state", prev, ["B1", "B2", "B3"], "c")
    assert extra["runs"] == ["a", "b", "c"]
    assert extra["run_problems"] == [None, None, ["B1", "B2", "B3"]]
    _, extra = call_script(SCRIPT, "merged_state", _prev(), ["B3"], "c")  # one command, unmerged
    assert extra["run_problems"] == [None, ["B3"]]


def test_merge_refuses_a_header_whose_lists_disagree():
    prev = _prev(runs=["a", "b"], run_seconds=[1.0], run_problems=[["B1"], ["B2"]])
    with pytest.raises(ValueError, match="one entry per command"):
        call_script(SCRIPT, "merged_state", prev, ["B3"], "c")


def test_merge_keeps_other_problems_task_seconds():
    prev = _prev(task_seconds={"B1": [1.0, 2.0], "B3": [3.0, 4.0]})
    _, extra = call_script(SCRIPT, "merged_state", prev, ["B3"], "c")
    assert extra["task_seconds"] == {"B1": [1.0, 2.0]}
    _, extra = call_script(SCRIPT, "merged_state", _prev(), ["B3"], "c")  # older file: none
    assert extra["task_seconds"] == {}


def test_merge_keeps_other_problems_per_seed_w2():
    """Each seed's W2 (quoted in the docs) survives a merge for the problems not rerun."""
    prev = _prev(seed_w2={"B1": {"MFM": [0.3, 0.31]}, "B3": {"MFM": [0.2, 0.21]}})
    _, extra = call_script(SCRIPT, "merged_state", prev, ["B3"], "c")
    assert extra["seed_w2"] == {"B1": {"MFM": [0.3, 0.31]}}
    _, extra = call_script(SCRIPT, "merged_state", _prev(), ["B3"], "c")  # older file: none
    assert extra["seed_w2"] == {}


def test_tasks_are_submitted_longest_first_keeping_seed_order(monkeypatch):
    mod = script_module(SCRIPT)
    monkeypatch.setattr(mod, "TASK_COST", {"B1": 3, "B2": 9, "B3": 5, "B4": 1})
    tasks = [(p, s, 10) for p in ("B1", "B2", "B3", "B4") for s in range(2)]
    order = mod.longest_first(tasks)
    assert sorted(order) == sorted(tasks)
    assert [t[0] for t in order] == ["B2", "B2", "B3", "B3", "B1", "B1", "B4", "B4"]
    assert [t[1] for t in order[:2]] == [0, 1]


def test_problems_are_yielded_as_their_seeds_complete_and_a_failure_raises():
    tasks = [("B1", 0, 1), ("B1", 1, 1), ("B2", 0, 1), ("B2", 1, 1)]
    # B2's seeds finish before B1's second seed: B2 is yielded first
    events = iter([(2, True, "b20"), (0, True, "b10"), (3, True, "b21"), (1, True, "b11")])
    got = list(call_script(SCRIPT, "_by_problem", events, tasks, ["B1", "B2"], 2))
    assert got == [("B2", ["b20", "b21"]), ("B1", ["b10", "b11"])]
    events = iter([(2, True, "b20"), (3, True, "b21"), (0, False, ValueError("x"))])
    gen = call_script(SCRIPT, "_by_problem", events, tasks, ["B1", "B2"], 2)
    assert next(gen) == ("B2", ["b20", "b21"])
    try:
        next(gen)
    except RuntimeError as err:
        assert "('B1', 0)" in str(err)
    else:
        raise AssertionError("a failed task must raise")


def test_a_failed_task_drops_its_problem_and_the_others_are_still_yielded():
    # the first failed task raised at once: B2's seeds, finishing after it, were lost
    tasks = [("B1", 0, 1), ("B1", 1, 1), ("B2", 0, 1), ("B2", 1, 1), ("B3", 0, 1), ("B3", 1, 1)]
    events = iter(
        [
            (0, False, ValueError("x")),
            (2, True, "b20"),
            (1, True, "b11"),
            (4, False, KeyError("y")),
            (3, True, "b21"),
        ]
    )
    gen = call_script(SCRIPT, "_by_problem", events, tasks, ["B1", "B2", "B3"], 2)
    assert next(gen) == ("B2", ["b20", "b21"])
    try:
        next(gen)
    except RuntimeError as err:
        assert "task ('B1', 0) failed; task ('B3', 0) failed" in str(err)
        assert isinstance(err.__cause__, ValueError)
    else:
        raise AssertionError("the failed tasks must raise once the others are yielded")


def test_b4_replica_is_b4s_populations_under_the_replica_split_with_b4s_settings():
    mod = script_module(SCRIPT)
    for name in (
        "FOURIER",
        "FULL_STEPS",
        "CONDITIONING",
        "CENTERED",
        "NOISE_SPLITS",
        "MEMBERS",
        "TASK_COST",
    ):
        table = getattr(mod, name)
        assert table["B4-replica"] == table["B4"], name  # nothing tuned on the replica split
    b4, setting_b4, k_b4 = mod.problem_data("B4", True, 0)
    for seed in range(4):
        data, setting, k = mod.problem_data("B4-replica", True, seed)
        assert setting == {"split": "replica"} and k == k_b4
        assert data.name == f"B4-screen-replica{seed % 3}"
        assert data.same_populations(b4)
        test_rep = data.extra["replicate"][data.splits["test"]]
        assert set(test_rep.tolist()) == {seed % 3}
    assert setting_b4 == {"split": "patient"}


# populations of 30 cells (below the script's config.points) and few calibration populations
# keep the fits fast; the resampling warning and the vacuous conformal radius that gives are
# not what the test checks
@pytest.mark.filterwarnings("ignore:fit. a training (source|target) population has:UserWarning")
@pytest.mark.filterwarnings("ignore:conformal_coverage. .* scores are too few:UserWarning")
def test_b4_rows_carry_cellots_r_of_every_method(monkeypatch):
    """B4's rows (identity, floor and the three trained flows) report r, the mean over test
    populations of ``correlation_of_correlations``; other problems do not (B1 and B2: d = 2)."""
    import math

    from bayesphys.meta_fm import correlation_of_correlations, identity_prediction
    from bayesphys.problems.populations import patient_screen

    mod = script_module(SCRIPT)
    small = patient_screen(n_patients=4, n_treatments=2, n_replicates=3, n_cells=30, dim=3)
    monkeypatch.setattr(mod, "problem_data", lambda pid, quick, seed: (small, {}, 5))
    res = mod.run_seed("B4", 0, True, 2, "cpu", 30, lambda msg: None, 0, "concat")
    test = small.subset("test")
    want = sum(
        correlation_of_correlations(p, t) for p, t in zip(identity_prediction(test), test.target)
    ) / len(test)
    assert math.isclose(res["identity"]["r"], want, rel_tol=1e-12)
    for meth in ("floor", "FM", "CGFM", "MFM"):
        assert -1.0 <= res[meth]["r"] <= 1.0, meth
    assert (
        "r" not in mod.run_seed("B3", 0, True, 2, "cpu", 30, lambda msg: None, 0, "concat")["MFM"]
    )
