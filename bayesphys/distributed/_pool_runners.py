"""Runners on executors that hand out futures or map over tasks: standard-library and other
``submit`` executors (:class:`FuturesRunner`, which restarts a broken process pool), Dask
clients (:class:`DaskRunner`, with a ``LocalCluster`` started here when none is given) and
``imap_unordered`` / ``map`` pools (:class:`MapRunner`).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .._checks import check_int
from ._plain_pickle import LoadFailure, PlainPickled, apply
from ._problem_task import join_shared, split_shared
from ._runner import Event, Runner, _import
from ._task_errors import TaskError, _call_indexed, _Failure, _task_error, _task_label
from ._worker_threads import _init_worker

__all__ = ["DaskRunner", "FuturesRunner", "MapRunner"]


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


def _running(futures: Any) -> bool:
    """Whether any of ``futures`` (anything with ``done()``) is not done yet."""
    return any(not f.done() for f in futures)


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
            # left early (Ctrl-C in the caller, an error) with fits still running in an owned
            # pool: close() must not wait for them, possibly for hours. A caller that stops
            # asking after the last result (the benchmarks' per-problem loops) leaves nothing
            # running: its pool is shut down, not its workers terminated (terminated workers
            # leaked their semaphores, a resource_tracker warning at exit)
            self._aborted = not finished and _running(futures)

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
        futures: dict[Any, int] = {}
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
            _close_pool(pool, wait=finished or not _running(futures))
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
    """A :class:`dask.distributed.Client` (tasks submitted with ``pure=False``); ``cluster``
    the cluster started for it here (closed with it), or None for a client of the caller's;
    ``workers`` its number of workers (None: unknown).

    ``cluster``, when given, must be a Dask cluster (a ``distributed.deploy.Cluster``, e.g.
    ``LocalCluster``) whose scheduler is the client's: :meth:`close` closes both, and another
    object failed only there (after the client was closed), another cluster was closed with
    a client that did not use it."""

    def __init__(self, client: Any, cluster: Any | None, workers: int | None):
        # checked as RayRunner and SequentialRunner check theirs: a None client failed only
        # at the first submission, as a task error of every problem; workers=0 was kept
        if not _is_dask_client(client):
            raise TypeError(
                f"client: expected a dask.distributed.Client, received {type(client).__name__}"
            )
        workers = None if workers is None else check_int("workers", workers, minimum=1)
        _check_cluster(cluster, client)
        super().__init__(client, owned=cluster is not None, name="dask", workers=workers)
        self.cluster = cluster

    def _submit(self, fn, task):
        return self.executor.submit(fn, task, pure=False)

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Event]:
        tasks = list(tasks)
        from dask.distributed import as_completed

        futures = {}
        blob = self._scatter_shared(tasks)
        for i, task in enumerate(tasks):
            try:
                if blob is None:
                    futures[self._submit(fn, task)] = i
                else:
                    own = blob[1][i]
                    fut = self.executor.submit(_dask_call_shared, fn, blob[0], own, pure=False)
                    futures[fut] = i
            except Exception as err:  # noqa: BLE001
                yield i, False, _task_error(i, task, err, "could not be submitted: ")
        del blob  # the tasks hold the scattered bytes now: released after the last
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

    def _scatter_shared(self, tasks: list[Any]) -> tuple[Any, list[dict[str, Any]]] | None:
        """fit_many's build, export and settings (:func:`~._problem_task.split_shared`)
        pickled once and scattered to the cluster: ``(future of the bytes, own parts)``, or
        ``None`` (not fit_many's tasks, or they cannot be pickled or scattered: each task then
        carries them, and reports what fails). Inside every task they were pickled once per
        problem and held by the scheduler until it ran (100 problems with a 10 MB input: 8 s
        to submit and 1.2 GB more in the driver). Bytes, not the objects: every task unpickles
        its own copy, as before (a task that changes its builder's data in place changes no
        other task's)."""
        split = split_shared(tasks)
        if split is None:
            return None
        from distributed.protocol.pickle import dumps

        try:
            blob = self.executor.scatter(dumps(split[0]), hash=False)
        except Exception:  # noqa: BLE001 - e.g. unpicklable: each task reports it
            return None
        return blob, split[1]

    def close(self) -> None:
        if self.cluster is not None:
            self.executor.close()
            self.cluster.close()


def _dask_call_shared(fn: Callable[[Any], Any], blob: bytes, own: dict[str, Any]) -> Any:
    """Worker side of :meth:`DaskRunner._scatter_shared`: ``fn`` of the task rebuilt from this
    task's own copy of the shared part and its ``own`` part."""
    from distributed.protocol.pickle import loads

    return fn(join_shared(loads(blob), own))


def _check_cluster(cluster: Any, client: Any) -> None:
    """``cluster`` of :class:`DaskRunner`: None, or a Dask cluster whose scheduler address is
    the client's (where the client tells it)."""
    if cluster is None:
        return
    from distributed.deploy import Cluster

    if not isinstance(cluster, Cluster):
        raise TypeError(
            f"cluster: expected None or the client's dask.distributed cluster (e.g. a "
            f"LocalCluster, closed with the client), received {type(cluster).__name__}"
        )
    ours = getattr(getattr(client, "scheduler", None), "address", None)
    theirs = getattr(cluster, "scheduler_address", None)
    if ours is not None and theirs != ours:
        raise ValueError(
            f"cluster: expected the client's own cluster (scheduler {ours}), received one "
            f"whose scheduler is {theirs}; closing it with the client would close a cluster "
            "the client does not use (pass cluster=None to close neither)"
        )


class MapRunner(Runner):
    """Anything with ``imap_unordered`` (preferred) or ``map`` (pools).

    A task's exception is caught where the task runs and comes back with its index. Errors of
    the pool itself carry no index (``multiprocessing.Pool`` raises a task it could not send in
    place of some result and goes on); they go to the tasks left without a result, and the
    message says so where several tasks could own them. ``map`` returns nothing until every task
    is done, and nothing at all if the pool fails: prefer a pool with ``imap_unordered``.

    A ``multiprocessing.Pool`` of processes first runs one trivial task (:func:`os.getpid`)
    while its workers are watched: a worker seen running that ends with a non-zero exit code
    before that task is done (its ``initializer`` raised, a spawned worker could not import
    the main module, it was killed) fails every task with a ``RuntimeError`` saying so.
    CPython's pool replaces such a worker with a new one, without end, and the map waited
    forever. A worker that hangs at start-up is not detected (nothing tells it from a slow
    one): the run waits as the pool does.
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
            if _shares_tensors(self.pool):  # a multiprocessing.Pool of processes
                _check_pool_starts(self.pool)
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


def _check_pool_starts(pool: Any, poll_seconds: float = 0.02) -> None:
    """Wait for ``pool`` (a ``multiprocessing.Pool`` of processes) to run :func:`os.getpid`;
    ``RuntimeError`` when a worker seen running meanwhile ends with a non-zero exit code (it
    died before the pool ran anything: CPython's pool starts another, without end). The
    workers are read from the pool's ``_pool`` list (a pool without one is only waited on)."""
    probe = pool.apply_async(os.getpid)
    running: dict[int, Any] = {}  # workers seen running, kept after the pool drops them
    while not probe.ready():
        for proc in list(getattr(pool, "_pool", ())):
            if proc.exitcode is None:
                running.setdefault(id(proc), proc)
        dead = [p for p in running.values() if p.exitcode not in (None, 0)]
        if dead:
            codes = ", ".join(f"pid {p.pid} exit code {p.exitcode}" for p in dead)
            raise RuntimeError(
                f"executor: a worker of the {type(pool).__name__} died before the pool ran a "
                f"first task ({codes}); the pool starts a new one each time, so its tasks would "
                "wait forever. Check the pool's initializer (its traceback is in the workers' "
                "stderr) and, for a 'spawn' or 'forkserver' pool, that the main module guards "
                "its code with `if __name__ == '__main__':`"
            )
        probe.wait(poll_seconds)


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
            # Dask's nannies also set their pre-spawn variables (OMP_NUM_THREADS=1 and the
            # other thread counts, PYTHONHASHSEED) in this process's own environment before
            # spawning, and leave them: every later subprocess of the caller inherited them
            environ = dict(os.environ)
            try:
                with dask.config.set({_DASK_TRIM_KEY: None}):
                    cluster = LocalCluster(
                        n_workers=workers or os.cpu_count(),
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                    )
            finally:
                _restore_environ(environ)
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


def _restore_environ(saved: dict[str, str]) -> None:
    """Put ``os.environ`` back to ``saved``: keys added since removed, changed ones reset."""
    for key in [k for k in os.environ if k not in saved]:
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _process_identity() -> tuple[str, int]:
    """This process among all machines: the host token (name and pid namespace) and the pid
    (a pid alone matched a remote worker's in another container)."""
    from .._files import host_token

    return host_token(), os.getpid()


def _is_dask_client(executor: Any) -> bool:
    mod = type(executor).__module__ or ""
    return mod.startswith("distributed") and hasattr(executor, "scheduler_info")
