"""fit_many keeps each problem's warnings in its record (table column, <id>.json) and says in
the caller how many problems warned."""

from __future__ import annotations

import importlib
import io
import json
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from bayesphys.distributed import fit_many

from . import _toy

KW = dict(seed=7, num_samples=4, progress=False, fit_kwargs={"steps": 2})


def build_warning(problem: dict, seed: int | None = None):
    """Problems marked ``fail`` warn (twice, identically) in their build instead of failing."""
    if problem.get("fail"):
        for _ in range(2):
            warnings.warn("toy: this problem is ill-posed", RuntimeWarning, stacklevel=2)
    return _toy.LinearGaussianModel(problem, seed=seed)


def _fit(executor, probs, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = fit_many(probs, build_warning, executor=executor, **KW, **kw)
    return res, rec


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_warnings_recorded_per_problem_and_summarised(executor, tmp_path):
    probs = _toy.problems(4, fail=(1, 3))
    pool = ThreadPoolExecutor(2) if executor == "threads" else None
    try:
        res, rec = _fit(pool or executor, probs, out=tmp_path)
    finally:
        if pool is not None:
            pool.shutdown()
    keys = sorted(probs)
    col = res.table["warnings"]
    want = ["RuntimeWarning: toy: this problem is ill-posed"]
    assert col[keys[1]] == want and col[keys[3]] == want  # deduplicated
    assert col[keys[0]] == [] and col[keys[2]] == []
    assert all(res.table["status"] == "ok")
    # the problems' own warnings are not shown one by one; one summary at the caller's line
    assert not [
        w for w in rec if "ill-posed" in str(w.message) and "fit_many" not in str(w.message)
    ]
    summary = [w for w in rec if str(w.message).startswith("fit_many: ")]
    assert len(summary) == 1 and summary[0].filename == __file__
    assert "2 of 4 problems warned" in str(summary[0].message)
    assert "table['warnings']" in str(summary[0].message)
    # stored in the record, and read back when resumed
    stems = {p.stem: p for p in tmp_path.glob("*.json")}
    meta = json.loads(stems[str(keys[1])].read_text())
    assert meta["warnings"] == want
    again, _ = _fit(executor if executor == "sequential" else "sequential", probs, out=tmp_path)
    assert all(again.table["resumed"]) and again.table["warnings"][keys[1]] == want


def test_old_records_without_warnings_read_as_empty(tmp_path):
    probs = _toy.problems(2)
    _fit("sequential", probs, out=tmp_path)
    for path in tmp_path.glob("*.json"):
        meta = json.loads(path.read_text())
        meta.pop("warnings", None)
        path.write_text(json.dumps(meta))
    res, rec = _fit("sequential", probs, out=tmp_path)
    assert all(res.table["resumed"])
    assert list(res.table["warnings"]) == [[], []]
    assert not [w for w in rec if str(w.message).startswith("fit_many: ")]


def test_capture_leaves_other_threads_and_the_hook_alone():
    from bayesphys.distributed._warning_capture import _captured_warnings

    before = warnings.showwarning
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with _captured_warnings() as mine:
            t = threading.Thread(
                target=lambda: warnings.warn("other thread", UserWarning, stacklevel=1)
            )
            t.start()
            t.join()
            warnings.warn("task", UserWarning, stacklevel=1)
        seen = [str(w.message) for w in rec]
    assert mine == ["UserWarning: task"]
    assert seen == ["other thread"]
    assert warnings.showwarning is before


def test_overlapping_tasks_each_record_a_warning_from_the_same_line():
    """Under the default filters (no "always"), two tasks that overlap in a thread pool both
    record a warning raised at the same line (the second was suppressed by the once-per-location
    memory the first left)."""
    barrier = threading.Barrier(2)

    def build(problem, seed=None):
        barrier.wait(timeout=30)  # both tasks are capturing before either warns
        warnings.warn("toy: this problem is ill-posed", RuntimeWarning, stacklevel=2)
        return _toy.LinearGaussianModel(problem, seed=seed)

    pool = ThreadPoolExecutor(2)
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("default")
            res = fit_many(_toy.problems(2), build, executor=pool, **KW)
    finally:
        pool.shutdown()
    assert [len(w) for w in res.table["warnings"]] == [1, 1]


def _fit_many_module():
    return importlib.import_module("bayesphys.distributed._warning_capture")


def _span_the_end_of_a_capture(fm) -> None:
    """A task's capture ends while another thread's catch_warnings block, entered after the
    capture installed its hook, is still open; that block then exits."""
    started, inside, leave = threading.Event(), threading.Event(), threading.Event()

    def task():
        with fm._captured_warnings():
            started.set()
            inside.wait(5)  # the other thread's block saved the capture hook

    def other():
        started.wait(5)
        with warnings.catch_warnings():
            inside.set()
            leave.wait(5)

    t1, t2 = threading.Thread(target=task), threading.Thread(target=other)
    t2.start()
    t1.start()
    t1.join()
    leave.set()
    t2.join()


def test_a_catch_warnings_of_another_thread_leaves_no_stale_hook():
    """A thread whose catch_warnings block spans the end of the tasks' capture puts the capture
    hook back when it exits; a later warning must still show (it raised TypeError: the saved
    hook was None), and the next capture must not fall back on the hook itself."""
    fm = _fit_many_module()
    original = warnings.showwarning
    _span_the_end_of_a_capture(fm)
    try:
        # the hook in place now passes a warning on (it called the saved hook, None: TypeError;
        # where it goes is pytest's capture here)
        warnings.showwarning(
            UserWarning("after the tasks"), UserWarning, __file__, 1, io.StringIO()
        )
        errors = []
        with fm._captured_warnings():
            t = threading.Thread(
                target=lambda: warnings.warn("elsewhere", UserWarning, stacklevel=1)
            )
            hook, threading.excepthook = threading.excepthook, lambda a: errors.append(a)
            try:
                t.start()
                t.join()
            finally:
                threading.excepthook = hook
        assert errors == []
    finally:
        warnings.showwarning = original


def test_the_callers_hook_survives_a_catch_warnings_spanning_the_capture(monkeypatch):
    """A caller's own showwarning hook still receives warnings after another thread's
    catch_warnings block spanned the end of a capture (it fell back on the original hook)."""
    got = []
    monkeypatch.setattr(warnings, "showwarning", lambda msg, *a, **k: got.append(str(msg)))
    _span_the_end_of_a_capture(_fit_many_module())
    warnings.showwarning(UserWarning("to the caller"), UserWarning, __file__, 1)
    assert got == ["to the caller"]


def test_summary_at_user_line_through_the_cohort_example(tmp_path, monkeypatch):
    """The example calls fit_many for the user: the summary named cohort.py."""
    import dataclasses

    from bayesphys.examples import cohort

    spec = cohort.MODELS["linear-gaussian"]

    def build(problem, seed=None):
        warnings.warn("toy: this problem is ill-posed", RuntimeWarning, stacklevel=2)
        return spec.build(problem, seed=seed)

    monkeypatch.setitem(cohort.MODELS, "linear-gaussian", dataclasses.replace(spec, build=build))
    argv = ["--smoke", "--patients", "1", "--executor", "sequential", "--out", str(tmp_path)]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        cohort.main(argv)
    summary = [w for w in rec if str(w.message).startswith("fit_many: ")]
    assert len(summary) == 1 and summary[0].filename == __file__


def build_wordy_warning(problem: dict, seed: int | None = None):
    warnings.warn("toy: " + "a very long explanation " * 20, RuntimeWarning, stacklevel=2)
    return _toy.LinearGaussianModel(problem, seed=seed)


def test_a_long_first_warning_is_cut_short_in_the_summary():
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = fit_many(_toy.problems(1), build_wordy_warning, executor="sequential", **KW)
    (summary,) = [str(w.message) for w in rec if str(w.message).startswith("fit_many: ")]
    first = summary.split("(first: ", 1)[1].split("); see", 1)[0]
    assert len(first) == 160 and first.endswith("...")
    assert first[:-3] == res.table["warnings"].iloc[0][0][:157]  # the table keeps it whole
    assert len(res.table["warnings"].iloc[0][0]) > 160
