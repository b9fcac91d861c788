"""How an owned process pool is closed after a run: a caller that stops asking once every
result is in has left nothing running, so the pool is shut down and its workers exit on their
own; a caller that leaves with a task still running gets its close() back without waiting for
that task. The first case terminated the idle workers as if the run had been interrupted, and
the terminated workers leaked their semaphores (multiprocessing's resource_tracker warned
"There appear to be 2 leaked semaphore objects" at the end of every benchmark run that stopped
reading after its last problem)."""

from __future__ import annotations

import time

from bayesphys.distributed.executors import resolve_runner

from . import _tasks


def test_a_caller_that_stops_after_the_last_result_lets_the_workers_exit():
    runner = resolve_runner("local", max_workers=2, threads_per_worker=1)
    with runner:
        events = runner.run(_tasks.task, [0, 2])
        got = sorted(next(events)[2] for _ in range(2))  # every result, no StopIteration asked
        procs = list(runner.executor._processes.values())
        events.close()  # the caller's loop ends: the generator is closed, not exhausted
    assert got == [0, 20]
    for proc in procs:
        proc.join(timeout=30)
    assert procs and [proc.exitcode for proc in procs] == [0] * len(procs)


def test_a_caller_that_leaves_with_a_task_running_does_not_wait_for_it():
    runner = resolve_runner("local", max_workers=2, threads_per_worker=1)
    start = time.perf_counter()
    with runner:
        events = runner.run(_tasks.sleepy, [0.0, 60.0])
        assert next(events)[2] == 0.0
        procs = list(runner.executor._processes.values())
        events.close()  # left early: the 60 s task is still running
    assert time.perf_counter() - start < 30
    for proc in procs:
        proc.join(timeout=30)
    assert any(proc.exitcode != 0 for proc in procs)  # the busy worker was terminated
