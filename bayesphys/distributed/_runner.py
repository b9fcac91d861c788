"""The runner protocol of :func:`~bayesphys.distributed.fit_many` and the in-process runner.

A runner's ``run(fn, tasks)`` yields :data:`Event` ``(index, ok, value)`` in completion order;
:class:`SequentialRunner` runs the tasks here, one after the other (the reference for equality
tests). The engines' runners are in ``_pool_runners`` and ``_ray_runner``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._checks import check_int
from ._task_errors import _task_error
from ._worker_threads import task_state

__all__ = ["Event", "Runner", "SequentialRunner"]

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
        # threads=0 failed in every task, each row naming another function's argument
        self.threads = None if threads is None else check_int("threads", threads, minimum=1)

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


def _import(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"executor: {module!r} requires the optional dependency {extra!r}; install it with "
            f'`pip install "bayesphys[distributed]"` (or `pip install "{extra}"`)'
        ) from err
