"""Runners: a failed task is reported for that task, named, with its exception chained, and
the results of the other tasks are kept."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import traceback

import pytest
import torch

from bayesphys.distributed.executors import MapRunner, TaskError, resolve_runner

from . import _tasks


class _ReversedPool:
    """Like ``multiprocessing.Pool.imap_unordered``: the tasks finish in reverse order, and an
    exception is raised in place of a result while the iterator goes on with the others."""

    def imap_unordered(self, fn, items):
        return _tasks.ResumingIterator(fn, list(items)[::-1])


class _MapOnly:
    """A pool with ``map`` only (as some MPI pools): the results come back all at once."""

    def map(self, fn, items):
        return [fn(x) for x in items]


def _events(runner, tasks):
    return {i: (ok, value) for i, ok, value in runner.run(_tasks.task, tasks)}


def _check(events, n):
    # the finished tasks keep their results
    assert {i: v for i, (ok, v) in events.items() if ok} == {i: 10 * i for i in (0, 2, 4)}
    # each failure is the one its own task raised
    assert "task one broke" in str(events[1][1]) and "task three broke" in str(events[3][1])
    for i in (1, 3, 5):
        ok, value = events[i]
        assert not ok and isinstance(value, TaskError) and value.index == i
        assert str(value).startswith(f"task {i} failed: ")
    assert isinstance(events[1][1].__cause__, ValueError)
    assert isinstance(events[3][1].__cause__, KeyError)
    assert len(events) == n


@pytest.mark.parametrize("pool", [_ReversedPool(), _MapOnly()], ids=["imap_unordered", "map"])
def test_map_runner_reports_each_failure_for_the_task_that_raised(pool):
    # task errors used to come back without an index and went to the tasks without a result in
    # arrival order (task 1 got task 3's error); with map, one failure lost every result
    events = _events(MapRunner(pool, "pool"), list(range(6)))
    _check(events, 6)


def test_map_runner_on_a_process_pool_names_the_task_and_keeps_the_worker_traceback():
    with mp.get_context("spawn").Pool(2) as pool:
        events = _events(MapRunner(pool, "Pool"), list(range(6)))
    _check(events, 6)
    text = "".join(traceback.format_exception(events[1][1]))
    assert "_tasks.py" in text and "raise ValueError" in text  # the worker's traceback
    # an exception that cannot be pickled back still reaches the caller, as text
    assert "Unpicklable: task five broke" in str(events[5][1])


def test_a_process_pool_leaves_the_callers_tensors_out_of_shared_memory():
    """multiprocessing's pickler moves every tensor it sends into shared memory, one file
    descriptor each for as long as the caller keeps it (review of 2026-12-03): the tasks go
    as bytes of the standard pickler."""
    import concurrent.futures as cf

    tasks = [torch.arange(3.0) + k for k in range(3)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        events = dict((i, v) for i, ok, v in MapRunner(pool, "Pool").run(torch.sum, tasks))
    with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        with resolve_runner(pool) as runner:
            events2 = dict((i, v) for i, ok, v in runner.run(torch.sum, tasks))
    for got in (events, events2):
        assert sorted(got) == [0, 1, 2]
        assert all(torch.equal(got[k], torch.tensor(3.0 + 3 * k)) for k in range(3))
    assert not any(t.is_shared() for t in tasks)
    # a row of a stacked cohort goes as its own bytes, not its storage's (the standard pickler
    # writes a view's whole storage: every task carried the whole cohort)
    from bayesphys.distributed._plain_pickle import plain_dumps

    cohort = torch.zeros(100, 1000, dtype=torch.float64)
    assert len(plain_dumps(cohort[3])) < 2 * 1000 * 8
    assert torch.equal(pickle.loads(plain_dumps(cohort[3])), cohort[3])


def _run_with_timeout(runner, fn, tasks, seconds: float = 120.0) -> dict:
    import threading

    out: dict = {}

    def run():
        out.update({i: (ok, v) for i, ok, v in runner.run(fn, tasks)})

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the pool never finished: {out}"
    return out


@pytest.mark.parametrize("kind", ["Pool", "ProcessPoolExecutor"])
def test_a_task_a_worker_cannot_load_or_the_caller_cannot_send_fails_alone(kind):
    """A task unpickled while the worker was still receiving it killed the worker: a
    ProcessPoolExecutor broke for every pending task and a multiprocessing.Pool waited forever
    (review of 2026-12-03); a task that cannot be pickled at all lost its index in a Pool."""
    import concurrent.futures as cf

    ctx = mp.get_context("spawn")
    tasks = [0, 1, _tasks.LoadsNowhere(), 3, lambda: None]
    if kind == "Pool":
        with ctx.Pool(2) as pool:
            out = _run_with_timeout(MapRunner(pool, "Pool"), _tasks.double, tasks)
    else:
        with cf.ProcessPoolExecutor(2, mp_context=ctx) as pool, resolve_runner(pool) as runner:
            out = _run_with_timeout(runner, _tasks.double, tasks)
    assert {i: v for i, (ok, v) in out.items() if ok} == {0: 0, 1: 2, 3: 6}
    assert "AttributeError" in str(out[2][1]) and "__mp_main__" in str(out[2][1])
    assert isinstance(out[4][1], TaskError) and out[4][1].index == 4
    assert "could not be sent" in str(out[4][1])


def test_a_process_pool_whose_workers_die_at_start_up_fails_every_task():
    """A multiprocessing.Pool whose initializer raises starts a new worker each time one dies,
    without end: the map over it waited forever. Here the initializer is os.chdir to a folder
    that does not exist (nothing to import in the workers)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(2, initializer=os.chdir, initargs=("/no/such/folder/bayesphys",)) as pool:
        out = _run_with_timeout(MapRunner(pool, "Pool"), abs, [-1, -2, -3], seconds=60)
    assert sorted(out) == [0, 1, 2] and not any(ok for ok, _ in out.values())
    for _, err in out.values():
        assert isinstance(err, TaskError)
        assert "died before the pool ran a first task" in str(err) and "exit code 1" in str(err)


def test_plain_pickling_keeps_parameters_sparse_and_tagged_tensors_as_they_are():
    """The compact pickler copied any view: a frozen nn.Parameter view arrived as a Tensor, a
    sparse tensor raised (no plain storage), a tensor's own attributes were dropped."""
    from bayesphys.distributed._plain_pickle import plain_dumps

    base = torch.nn.Parameter(torch.arange(12.0).reshape(3, 4), requires_grad=False)
    sparse = torch.eye(3).to_sparse()
    tagged = torch.arange(12.0)[2:5]
    tagged.tag = "mine"
    back = pickle.loads(plain_dumps([base, sparse, tagged]))
    assert type(back[0]) is torch.nn.Parameter
    assert torch.equal(back[1].to_dense(), torch.eye(3))
    assert back[2].tag == "mine"


@pytest.mark.parametrize("executor", ["sequential", "local"])
def test_other_runners_name_the_failed_task_too(executor):
    with resolve_runner(executor, max_workers=1) as runner:
        events = {i: (ok, v) for i, ok, v in runner.run(_tasks.task, [0, 3])}
    assert events[0] == (True, 0)
    ok, err = events[1]
    assert not ok and isinstance(err, TaskError) and err.index == 1
    assert str(err).startswith("task 1 failed: KeyError") and isinstance(err.__cause__, KeyError)
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.index, back.key) == (str(err), 1, None)


def test_an_unknown_executor_name_lists_the_serial_alias():
    """'serial' is accepted as 'sequential' but the error for an unknown name did not say so."""
    from bayesphys.distributed.executors import _check_executor

    with pytest.raises(ValueError, match=r"executor: expected one of .*'serial'"):
        _check_executor("serail")
    _check_executor("serial")
    with resolve_runner("serial") as runner:
        assert type(runner).__name__ == "SequentialRunner"
