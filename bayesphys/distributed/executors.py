"""Executors for :func:`~bayesphys.distributed.fit_many`: run one function over many tasks.

bayesphys schedules nothing itself. A *runner* wraps an existing engine and yields
``(index, ok, value)`` as tasks finish, in completion order:

* ``"sequential"`` — in this process, one after the other (the reference for equality tests);
* ``None`` / ``"local"`` / ``"processes"`` — :class:`concurrent.futures.ProcessPoolExecutor`
  with the ``spawn`` start method (safe with torch and CUDA);
* ``"ray"`` — Ray tasks (``ray.remote(num_cpus=threads_per_worker)``); a local Ray instance is
  started when none is running and shut down afterwards;
* ``"dask"`` — a :class:`dask.distributed.Client`: the current default client, or a
  ``LocalCluster`` started (and closed) here;
* any object with ``submit(fn, *args)`` returning futures (``concurrent.futures`` executors,
  ``dask.distributed.Client``, ``mpi4py.futures.MPIPoolExecutor``) or with ``imap_unordered`` /
  ``map`` (``multiprocessing.Pool``, ``ray.util.multiprocessing.Pool``). Objects passed in are
  never shut down here.

Each worker limits torch, OpenMP and BLAS to ``threads_per_worker`` threads
(:func:`limit_threads`) so ``workers x threads`` does not oversubscribe the cores.

A task that fails is reported as ``(index, False, TaskError)``: the :class:`TaskError` names the
task (its index, and its ``problem_id`` where the task has one) and chains the exception the task
raised (or the executor's own, e.g. a task that could not be pickled) as ``__cause__``.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
from typing import Any

from .._checks import check_int, did_you_mean
from ._pool_runners import FuturesRunner, MapRunner, _dask_runner, _is_dask_client
from ._ray_runner import RayRunner
from ._runner import Runner, SequentialRunner, check_engine_installed
from ._task_errors import TaskError
from ._worker_threads import (
    ThreadLimit,
    _init_pool_worker,
    limit_threads,
)

__all__ = [
    "limit_threads",
    "ThreadLimit",
    "resolve_runner",
    "Runner",
    "TaskError",
    "EXECUTOR_NAMES",
]

# documented and pickled under this public module (defined in a private one)
TaskError.__module__ = __name__

EXECUTOR_NAMES = ("sequential", "local", "processes", "ray", "dask")


def _check_executor(executor: Any) -> None:
    """Refuse what :func:`resolve_runner` would refuse, without starting anything."""
    if executor is None or isinstance(executor, Runner):
        return
    if isinstance(executor, str):
        if executor not in (*EXECUTOR_NAMES, "serial"):
            raise ValueError(
                f"executor: expected one of {EXECUTOR_NAMES} ('serial' is an alias of "
                f"'sequential'), an executor object or None, received {executor!r}"
                f"{did_you_mean(executor, (*EXECUTOR_NAMES, 'serial'))}"
            )
        check_engine_installed(executor)  # "ray" / "dask" not installed: named before any work
        return
    if isinstance(executor, type):  # its submit / map are unbound functions
        raise TypeError(
            f"executor: expected an executor object, received the class {executor.__name__}; "
            f"pass an instance, e.g. {executor.__name__}(max_workers=2)"
        )
    if (
        _is_dask_client(executor)
        or hasattr(executor, "submit")
        or hasattr(executor, "imap_unordered")
        or hasattr(executor, "map")
    ):
        return
    raise TypeError(
        "executor: expected None, a name in "
        f"{EXECUTOR_NAMES}, or an object with submit() or map(), received "
        f"{type(executor).__name__}"
    )


def resolve_runner(
    executor: Any,
    *,
    max_workers: int | None = None,
    threads_per_worker: int | None = 1,
) -> Runner:
    """Turn ``executor`` (a name, an executor/client/pool object or ``None``) into a Runner.

    ``max_workers`` sizes the pools and clusters started here (default: ``os.cpu_count()``);
    it is ignored for objects passed in. A :class:`Runner` passed in is returned as it is.
    """
    if isinstance(executor, Runner):
        return executor
    _check_executor(executor)
    if max_workers is not None:
        max_workers = check_int("max_workers", max_workers, minimum=1)
    if threads_per_worker is not None:
        threads_per_worker = check_int("threads_per_worker", threads_per_worker, minimum=1)
    if executor is None or (isinstance(executor, str) and executor in ("local", "processes")):
        workers = max_workers or os.cpu_count() or 1
        if sys.platform == "win32":
            # Windows' process pools wait on at most 61 workers (an explicit larger count is
            # refused: the default pool could not start on a machine with more CPUs)
            workers = min(workers, 61)

        def factory(n: int) -> cf.ProcessPoolExecutor:
            return cf.ProcessPoolExecutor(
                max_workers=n,
                mp_context=mp.get_context("spawn"),
                initializer=_init_pool_worker,
                initargs=(threads_per_worker,),
            )

        return FuturesRunner(
            factory(workers), owned=True, name="local", workers=workers, factory=factory
        )
    if isinstance(executor, str):
        if executor in ("sequential", "serial"):
            return SequentialRunner(threads_per_worker)
        if executor == "ray":
            return RayRunner(threads_per_worker, max_workers)
        return _dask_runner(None, max_workers, threads_per_worker)  # "dask"
    if _is_dask_client(executor):
        return _dask_runner(executor, None, threads_per_worker)
    if hasattr(executor, "submit"):
        workers = getattr(executor, "_max_workers", None)
        return FuturesRunner(executor, owned=False, name=type(executor).__name__, workers=workers)
    return MapRunner(executor, name=type(executor).__name__)
