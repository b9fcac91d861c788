"""Thread limits of :func:`~bayesphys.distributed.fit_many`'s workers (re-exported by
:mod:`~bayesphys.distributed.executors`): ``workers x threads`` must not oversubscribe the cores,
and a caller's own counts and random streams come back after its tasks (:func:`task_state`)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._checks import check_int
from .._process_state import _THREAD_COUNT, new_thread_count, set_thread_counts

_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class ThreadLimit:
    """The thread settings :func:`limit_threads` replaced, and the way back to them.

    :meth:`restore` puts back torch's intra-op thread count (of the OS thread that calls it:
    torch keeps one per thread, so restore in the thread that limited), the BLAS / OpenMP
    pools' limits and the thread environment variables as :func:`limit_threads` found them;
    a second call does nothing. As a context manager it restores on leaving the block.
    ``n`` is the limit set (``None``: nothing was changed, and :meth:`restore` does nothing).
    """

    def __init__(self, n: int | None, previous: dict[str, Any] | None) -> None:
        self.n = n
        self._previous = previous

    @property
    def active(self) -> bool:
        """Whether the limit is still in place (set, and not restored yet)."""
        return self._previous is not None

    def restore(self) -> None:
        """Put back the settings found (once; later calls do nothing)."""
        previous, self._previous = self._previous, None
        _restore_threads(previous)

    def __enter__(self) -> ThreadLimit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def __repr__(self) -> str:
        state = "active" if self.active else "restored" if self.n is not None else "no limit"
        return f"ThreadLimit(n={self.n}, {state})"


def limit_threads(n: int | None) -> ThreadLimit:
    """Limit torch intra-op threads, OpenMP/BLAS pools and the thread env vars to ``n``.

    The limit takes effect at once. The returned :class:`ThreadLimit` puts the previous
    settings back, by :meth:`ThreadLimit.restore` or on leaving a ``with`` block; ``n`` of
    ``None`` changes nothing (and restoring then does nothing).

    Example
    -------
    >>> import torch
    >>> from bayesphys.distributed import limit_threads
    >>> before = torch.get_num_threads()
    >>> with limit_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    >>> limit = limit_threads(1)  # or keep it, and restore when done
    >>> limit.restore()
    >>> torch.get_num_threads() == before
    True
    """
    if n is None:
        return ThreadLimit(None, None)
    n = check_int("n", n, minimum=1)  # the caller's argument (fit_many checks its own)
    import torch

    prev: dict[str, Any] = {"torch": torch.get_num_threads(), "env": {}}
    for var in _THREAD_ENV:
        prev["env"][var] = os.environ.get(var)
        os.environ[var] = str(n)
    # the pools first: torch's intra-op threads are OpenMP's, so limiting torch first made
    # threadpoolctl record the lowered value as the one to restore (a sequential fit_many left
    # the caller at one thread)
    try:
        from threadpoolctl import threadpool_limits

        prev["pools"] = threadpool_limits(limits=n)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scipy/sklearn stacks
        prev["pools"] = None
    torch.set_num_threads(n)
    return ThreadLimit(n, prev)


def _restore_threads(prev: ThreadLimit | dict[str, Any] | None) -> None:
    """Put back the settings ``prev`` (a :class:`ThreadLimit`, or the settings it holds)."""
    if isinstance(prev, ThreadLimit):
        prev.restore()
        return
    if prev is None:
        return
    import torch

    for var, val in prev["env"].items():
        if val is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = val
    if prev.get("pools") is not None:
        prev["pools"].restore_original_limits()
    torch.set_num_threads(prev["torch"])  # last: restoring the OpenMP pool also sets torch's


def _exit_with_parent(poll_seconds: float = 1.0) -> None:
    """End this worker process once its parent is gone.

    A pool's workers otherwise outlive a killed main process and keep computing until their
    current task ends. A daemon thread waits on the parent's sentinel (multiprocessing's
    ``parent_process()``, which a spawned worker has on every system and which fires when the
    parent is gone); without one it compares ``os.getppid()`` with the parent at start every
    ``poll_seconds`` (a re-parented process has a different parent id; on Windows the id stays,
    so the sentinel is the only way there).
    """
    import multiprocessing as mp

    handle = mp.parent_process()
    if handle is not None:

        def watch() -> None:
            handle.join()  # returns once the parent process has ended
            os._exit(1)

    else:
        parent = os.getppid()

        def watch() -> None:
            while True:
                time.sleep(poll_seconds)
                if os.getppid() != parent:
                    os._exit(1)

    threading.Thread(target=watch, name="bayesphys-parent-watch", daemon=True).start()


def _init_worker(threads: int | None) -> None:
    """Worker initializer (process pool, Dask): limit threads once per worker process."""
    limit_threads(threads)


def _init_pool_worker(threads: int | None) -> None:
    """Process-pool initializer: :func:`_init_worker`, and exit with the parent (a pool's
    workers belong to one main process; Dask workers may outlive the shell that started
    them, so they do not get this)."""
    _init_worker(threads)
    _exit_with_parent()


# tasks running at once in this process (a thread pool given to fit_many) and what the first
# of them found; the last to leave restores it (each restoring its own, an earlier task's
# exit put back a later one's seeded streams and one-thread limits: the caller kept them)
_TASKS = threading.Lock()
_running = 0
_found: Any = None


@contextmanager
def task_state(threads: int | None) -> Iterator[None]:
    """Run one fitting task with ``threads`` threads (:func:`limit_threads`), giving the caller
    its thread settings and python / numpy / torch random streams (CUDA's when initialised)
    back after it. Tasks overlapping in one process (threads) share one saved state of what is
    process-wide (the random streams, the thread environment variables, the BLAS pools): the
    first to enter saves it and the last to leave restores it. torch's intra-op thread count
    is the calling OS thread's own (OpenMP keeps one per thread), so every task sets it in its
    own thread and gives that thread its count back on leaving (a task joining on a reused
    thread pool kept the thread's former count before: ``workers x threads`` oversubscribed).
    The count that threads not yet using torch start with is process-wide: it comes back with
    the rest when the last task leaves."""
    global _running, _found
    import numpy as np
    import torch

    mine = torch.get_num_threads()  # this OS thread's own count
    # _THREAD_COUNT: no torch_threads block reads or restores the new-thread count meanwhile
    with _TASKS, _THREAD_COUNT:
        if _running == 0:
            cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
            rng = (random.getstate(), np.random.get_state(), torch.random.get_rng_state(), cuda)
            default = None if threads is None else new_thread_count()
            _found = (limit_threads(threads), rng, default)
        _running += 1
        if threads is not None:
            torch.set_num_threads(threads)
    try:
        yield
    finally:
        with _TASKS, _THREAD_COUNT:
            _running -= 1
            last = _running == 0
            if last:
                prev, (py, npy, cpu, cuda), default = _found
                _found = None
                random.setstate(py)
                np.random.set_state(npy)
                torch.random.set_rng_state(cpu)
                if cuda is not None:
                    torch.cuda.set_rng_state_all(cuda)
                _restore_threads(prev)
            if threads is not None:
                # after the pools' restore, which sets this thread's; set_num_threads also
                # sets the count threads not yet using torch start with: the last task puts
                # back the caller's there (its own count is 1 for a fresh pool thread)
                set_thread_counts(mine, default if last and default is not None else mine)
