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
import functools
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .._checks import check_int
from ._plain_pickle import LoadFailure, PlainPickled, apply
from ._task_errors import TaskError, _call_indexed, _Failure, _task_error, _task_label
from ._worker_threads import (
    _init_pool_worker,
    _init_worker,
    limit_threads,
    task_state,
)

__all__ = ["limit_threads", "resolve_runner", "Runner", "TaskError", "EXECUTOR_NAMES"]

# documented and pickled under this public module (defined in a private one)
TaskError.__module__ = __name__

EXECUTOR_NAMES = ("sequential", "local", "processes", "ray", "dask")
Event = tuple[int, bool, Any]
"""``(task index, ok, result or TaskError)``."""


class Runner:
    """Base runner: ``run(fn, tasks)`` yields :data:`Event` in completion order."""

    name = "runner"
    workers: int | None = None

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Event]:
        """Run ``fn`` on every task; yield ``(index, ok, value)`` as tasks finish (completion
        order): ``ok`` True with ``fn``'s result, or False with a :class:`TaskError` naming the
        task. The abstract method a custom runner implements."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what this runner started (never a user-supplied executor)."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SequentialRunner(Runner):
    """In-process, in order; threads limited per task and the caller's threads and random
    streams restored afterwards (:func:`~._worker_threads.task_state`, shared by tasks that
    overlap in other threads of this process)."""

    name = "sequential"
    workers = 1

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Event]:
        for i, task in enumerate(tasks):
            # reference-counted with every other task in this process: two sequential runs in
            # two threads, each restoring what it found, left the caller at one's limit
            try:
                with task_state(self.threads):
                    value = fn(task)
            except Exception as err:  # noqa: BLE001 - reported per task
                yield i, False, _task_error(i, task, err)
            else:
                yield i, True, value


def _poll(
    futures: dict[Any, int], wait_any: Callable | None, tasks: Sequence[Any]
) -> Iterator[Event]:
    pending = dict(futures)
    while pending:
        if wait_any is not None:
            done = wait_any(list(pending))
        else:
            done = [f for f in pending if f.done()]
            if not done:
                time.sleep(0.02)
        for f in done:
            i = pending.pop(f)
            try:
                value = f.result()
            except Exception as err:  # noqa: BLE001 - worker crash, pickling error, ...
                yield i, False, _task_error(i, tasks[i], err)
            else:
                yield i, True, value


def _shares_tensors(executor: Any) -> bool:
    """Whether ``executor`` is a standard-library process pool, whose pickler
    (multiprocessing's, where torch registers its reductions) moves every tensor it sends
    into shared memory: the caller's own problem tensors, each then holding a file descriptor
    for as long as the caller keeps it (a cohort of a few hundred problems ran out of
    descriptors; large data filled a container's small ``/dev/shm``)."""
    import multiprocessing.pool as mpp

    if isinstance(executor, cf.ProcessPoolExecutor):
        return True
    return isinstance(executor, mpp.Pool) and not isinstance(executor, mpp.ThreadPool)


def _call_indexed_plain(fn: Any, item: tuple[int, Any]) -> tuple[int, bool, Any]:
    """Pool-side :func:`_call_indexed` of :class:`PlainPickled` values: one that could not be
    sent or loaded fails its own task, with its index."""
    i, task = item
    for value in (fn, task):
        if isinstance(value, LoadFailure):
            return i, False, _Failure(value.error)
    return _call_indexed(fn, (i, task))


def _submit_to(executor: Any, fn: Callable[[Any], Any], task: Any) -> Any:
    """``executor.submit(fn, task)``; a standard process pool gets ``fn`` and ``task`` through
    the standard pickler (:class:`~._plain_pickle.PlainPickled`)."""
    if _shares_tensors(executor):
        return executor.submit(apply, PlainPickled(fn), PlainPickled(task))
    return executor.submit(fn, task)


def _wait_any(fs):
    done, _ = cf.wait(fs, return_when=cf.FIRST_COMPLETED)
    return list(done)


def _close_pool(pool: Any, *, wait: bool) -> None:
    """Shut an owned process pool down; without ``wait`` (a run left early, e.g. Ctrl-C) its
    workers are terminated instead of finishing fits that may take hours."""
    if wait:
        pool.shutdown(wait=True, cancel_futures=True)
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()  # an owned pool: its workers run only our tasks


def _broke_pool(err: BaseException) -> bool:
    """Whether a task's error is its process pool breaking (a worker died)."""
    return isinstance(getattr(err, "__cause__", None), BrokenProcessPool)


class FuturesRunner(Runner):
    """Anything with ``submit(fn, arg) -> future`` (``done()``/``result()``).

    ``factory(workers)``: for a pool started here, builds a fresh one. A worker that dies
    (a crash in native code, an out-of-memory kill) breaks a process pool, and every task
    pending in it fails with the same ``BrokenProcessPool``; with a factory those tasks are
    run again in a fresh pool (same seeds, same results), and tasks that break that one too
    are run alone, one pool each, so the error lands on the task that crashed and the
    others keep their results."""

    def __init__(
        self,
        executor: Any,
        *,
        owned: bool,
        name: str,
        workers: int | None = None,
        factory: Callable[[int], Any] | None = None,
    ):
        self.executor = executor
        self.owned = owned
        self.name = name
        self.workers = workers
        self.factory = factory

    def _submit(self, fn, task):
        return _submit_to(self.executor, fn, task)

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Event]:
        tasks = list(tasks)
        futures = {}
        finished = False
        try:
            for i, task in enumerate(tasks):
                try:
                    futures[self._submit(fn, task)] = i
                except Exception as err:  # noqa: BLE001 - e.g. unpicklable task
                    yield i, False, _task_error(i, task, err, "could not be submitted: ")
            if futures and all(isinstance(f, cf.Future) for f in futures):
                broken: list[int] = []
                for i, ok, value in _poll(futures, _wait_any, tasks):
                    if not ok and self.factory is not None and _broke_pool(value):
                        broken.append(i)  # maybe not this task's doing: run again below
                    else:
                        yield i, ok, value
                if broken:
                    yield from self._rerun(fn, tasks, sorted(broken), self.workers or 1)
            else:
                yield from _poll(futures, None, tasks)
            finished = True
        finally:
            # left early (Ctrl-C in the caller, an error): close() must not wait for fits
            # still running in an owned pool, possibly for hours
            self._aborted = not finished

    def _rerun(self, fn, tasks, idx: list[int], workers: int):
        """Run tasks ``idx`` again in a fresh pool of ``workers``. Tasks left pending when
        that pool breaks too are run again the same way: all of them if some tasks finished
        meanwhile, else each half in turn, down to a task alone in its pool, where a broken
        pool is that task's own crash (a crashing task among ``n`` costs about ``log2 n``
        extra pools, and the others keep running in parallel)."""
        alone = len(idx) == 1
        pool = self.factory(1 if alone else min(workers, len(idx)))
        still: list[int] = []
        finished = False
        try:
            futures = {_submit_to(pool, fn, tasks[i]): i for i in idx}
            for i, ok, value in _poll(futures, _wait_any, tasks):
                if not ok and _broke_pool(value):
                    if alone:
                        yield (
                            i,
                            False,
                            _task_error(
                                i, tasks[i], value.__cause__, "its worker died running it alone: "
                            ),
                        )
                    else:
                        still.append(i)
                else:
                    yield i, ok, value
            finished = True
        finally:
            _close_pool(pool, wait=finished)
        if not still:
            return
        still.sort()
        if len(still) < len(idx):  # progress: the pending ones again
            yield from self._rerun(fn, tasks, still, workers)
        else:  # nothing finished before the crash: halve
            half = len(still) // 2
            yield from self._rerun(fn, tasks, still[:half], workers)
            yield from self._rerun(fn, tasks, still[half:], workers)

    def close(self) -> None:
        if not self.owned:
            return
        _close_pool(self.executor, wait=not getattr(self, "_aborted", False))


class DaskRunner(FuturesRunner):
    """A :class:`dask.distributed.Client` (tasks submitted with ``pure=False``)."""

    def __init__(self, client: Any, cluster: Any | None, workers: int | None):
        super().__init__(client, owned=cluster is not None, name="dask", workers=workers)
        self.cluster = cluster

    def _submit(self, fn, task):
        return self.executor.submit(fn, task, pure=False)

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Event]:
        tasks = list(tasks)
        from dask.distributed import as_completed

        futures = {}
        for i, task in enumerate(tasks):
            try:
                futures[self._submit(fn, task)] = i
            except Exception as err:  # noqa: BLE001
                yield i, False, _task_error(i, task, err, "could not be submitted: ")
        if not futures:
            return
        # the client's own loop: as_completed looks up the default client otherwise, and the
        # client of a cluster started here is not the default
        for f in as_completed(list(futures), loop=self.executor.loop):
            i = futures[f]
            try:
                value = f.result()
            except Exception as err:  # noqa: BLE001
                yield i, False, _task_error(i, tasks[i], err)
            else:
                yield i, True, value

    def close(self) -> None:
        if self.cluster is not None:
            self.executor.close()
            self.cluster.close()


class MapRunner(Runner):
    """Anything with ``imap_unordered`` (preferred) or ``map`` (pools).

    A task's exception is caught where the task runs and comes back with its index. Errors of
    the pool itself carry no index (``multiprocessing.Pool`` raises a task it could not send in
    place of some result and goes on); they go to the tasks left without a result, and the
    message says so where several tasks could own them. ``map`` returns nothing until every task
    is done, and nothing at all if the pool fails: prefer a pool with ``imap_unordered``.
    """

    def __init__(self, pool: Any, name: str) -> None:
        self.pool = pool
        self.name = name

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Event]:
        tasks = list(tasks)
        items: list[tuple[int, Any]] = list(enumerate(tasks))
        call: Callable[[Any], Any] = functools.partial(_call_indexed, fn)
        if _shares_tensors(self.pool):
            items = [(i, PlainPickled(task)) for i, task in enumerate(tasks)]
            call = functools.partial(_call_indexed_plain, PlainPickled(fn))
        seen: set[int] = set()
        errors: list[BaseException] = []
        try:
            it = iter(
                self.pool.imap_unordered(call, items)
                if hasattr(self.pool, "imap_unordered")
                else self.pool.map(call, items)
            )
        except Exception as err:  # noqa: BLE001 - the pool itself failed
            it, errors = iter(()), [err]
        while len(seen) + len(errors) < len(items):
            try:
                i, ok, value = next(it)
            except StopIteration:
                break
            except Exception as err:  # noqa: BLE001 - one task could not be sent or returned
                # (multiprocessing.Pool raises it in place of that task's result and goes on
                # with the others); keep collecting the results of the other tasks
                errors.append(err)
                continue
            seen.add(i)
            if ok:
                yield i, True, value
            else:
                yield i, False, _task_error(i, tasks[i], value.exception())
        missing = [i for i, _ in items if i not in seen]
        for k, i in enumerate(missing):
            if not errors:
                err = TaskError(
                    f"{_task_label(i, tasks[i])} failed: the pool returned no result for it",
                    i,
                    getattr(tasks[i], "problem_id", None),
                )
            elif len(missing) == 1:
                err = _task_error(i, tasks[i], errors[0], "the pool reported ")
            else:  # the pool's errors carry no index: name every task they may belong to
                owners = ", ".join(_task_label(j, tasks[j]) for j in missing)
                msgs = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
                err = TaskError(
                    f"{_task_label(i, tasks[i])} failed: the pool returned no result for it and "
                    f"reported {len(errors)} error(s) without saying which of the tasks left "
                    f"without a result ({owners}) each belongs to: {msgs}",
                    i,
                    getattr(tasks[i], "problem_id", None),
                )
                err.__cause__ = errors[min(k, len(errors) - 1)]
            yield i, False, err


class RayRunner(Runner):
    """Ray tasks reserving ``threads_per_worker`` CPUs (and ``num_gpus`` GPUs) each."""

    name = "ray"

    def __init__(self, threads: int | None, workers: int | None, num_gpus: float = 0.0):
        global _ray_users
        ray = _import("ray", "ray[default]")
        self.ray = ray
        self.started = False
        with _RAY_LOCK:
            # one local instance for the fit_many calls running at once in this process: the
            # first starts it and the last to close shuts it down (each call shutting down
            # what it started stopped the other calls' tasks; two calls both starting failed)
            if not ray.is_initialized():
                ray.init(
                    num_cpus=workers or os.cpu_count(),
                    include_dashboard=False,
                    # the workers' output stays on the workers: fit_many keeps each problem's
                    # warnings in its record (table["warnings"]) instead
                    log_to_driver=False,
                    configure_logging=False,
                )
                _ray_users = 0
                self.started = True
            elif _ray_users > 0:  # started by another fit_many still running: shared
                self.started = True
            if self.started:
                _ray_users += 1
        try:
            cpus = ray.cluster_resources().get("CPU", 1)
        except BaseException:
            self.close()  # counted above: a failure here kept the instance up for good
            raise
        if (threads or 1) > cpus:
            # every task would wait forever for CPUs the cluster does not have
            self.close()
            raise ValueError(
                f"threads_per_worker: each Ray task reserves {threads} CPUs but the cluster has "
                f"{cpus:g}: no task could ever be scheduled; lower threads_per_worker (or give "
                "Ray more CPUs: max_workers, or ray.init(num_cpus=...))"
            )
        self.workers = int(cpus) // max(1, threads or 1)
        self.threads = threads
        self.num_gpus = num_gpus

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Event]:
        tasks = list(tasks)
        ray = self.ray
        remote = ray.remote(num_cpus=self.threads or 1, num_gpus=self.num_gpus)(_ray_call)
        refs = {}
        for i, task in enumerate(tasks):
            try:
                refs[remote.remote(fn, task, self.threads)] = i
            except Exception as err:  # noqa: BLE001
                yield i, False, _task_error(i, task, err, "could not be submitted: ")
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = refs[ref]
                try:
                    value = ray.get(ref)
                except Exception as err:  # noqa: BLE001
                    yield i, False, _task_error(i, tasks[i], err)
                else:
                    yield i, True, value

    def close(self) -> None:
        global _ray_users
        if not self.started:
            return  # an instance the caller started: left running
        with _RAY_LOCK:
            self.started = False
            _ray_users -= 1
            if _ray_users == 0:
                self.ray.shutdown()


# fit_many calls in this process using the local Ray instance one of them started
_RAY_LOCK = threading.Lock()
_ray_users = 0


def _ray_call(fn, task, threads):
    limit_threads(threads)
    return fn(task)


def _import(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"executor: {module!r} requires the optional dependency {extra!r}; install it with "
            f'`pip install "bayesphys[distributed]"` (or `pip install "{extra}"`)'
        ) from err


_DASK_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def _dask_runner(client: Any, workers: int | None, threads: int | None) -> DaskRunner:
    _import("dask.distributed", "dask[distributed]")
    from dask.distributed import Client, LocalCluster

    cluster = None
    if client is None:
        try:
            from dask.distributed import default_client

            client = default_client()
        except ValueError:
            import dask

            # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which pins glibc's
            # mmap threshold: every torch tensor above 128 KiB is then mmap'd and unmapped, and
            # the fits ran ~3x slower here. Unset it for the clusters we start.
            with dask.config.set({_DASK_TRIM_KEY: None}):
                cluster = LocalCluster(
                    n_workers=workers or os.cpu_count(),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
            # not the process's default client: a second fit_many running at the same time
            # found it through default_client() and lost its tasks when this call closed it
            client = Client(cluster, set_as_default=False)
    nworkers = len(client.scheduler_info().get("workers", {})) or workers
    if threads is not None:
        # workers in other processes get the limit once; a worker in this process (an
        # in-process cluster) is the caller's own process, whose settings each task's
        # task_state sets and gives back (a process-wide limit here stayed after the call)
        here = _process_identity()
        remote = [addr for addr, who in client.run(_process_identity).items() if who != here]
        if remote:
            client.run(_init_worker, threads, workers=remote)
    return DaskRunner(client, cluster, nworkers)


def _process_identity() -> tuple[str, int]:
    """This process among all machines: the host token (name and pid namespace) and the pid
    (a pid alone matched a remote worker's in another container)."""
    from .._files import host_token

    return host_token(), os.getpid()


def _is_dask_client(executor: Any) -> bool:
    mod = type(executor).__module__ or ""
    return mod.startswith("distributed") and hasattr(executor, "scheduler_info")


def _check_executor(executor: Any) -> None:
    """Refuse what :func:`resolve_runner` would refuse, without starting anything."""
    if executor is None or isinstance(executor, Runner):
        return
    if isinstance(executor, str):
        if executor not in (*EXECUTOR_NAMES, "serial"):
            raise ValueError(
                f"executor: expected one of {EXECUTOR_NAMES}, an executor object or None, "
                f"received {executor!r}"
            )
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
