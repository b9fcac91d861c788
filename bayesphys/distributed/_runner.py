"""The runner protocol of :func:`~bayesphys.distributed.fit_many` and the in-process runner.

A runner's ``run(fn, tasks)`` yields :data:`Event` ``(index, ok, value)`` in completion order;
:class:`SequentialRunner` runs the tasks here, one after the other (the reference for equality
tests). The engines' runners are in ``_pool_runners`` and ``_ray_runner``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._checks import MissingPackage, check_int, missing_module
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


#: the modules each named engine needs, and the pip requirement that installs them
_ENGINE_MODULES = {
    "ray": (("ray",), "ray[default]"),
    # dask.distributed is a shim of dask's over the separate ``distributed`` package
    "dask": (("dask", "distributed", "dask.distributed"), "dask[distributed]"),
}


def _missing_engine_message(executor: str, module: str, extra: str) -> str:
    return (
        f"executor={executor!r} needs {module!r}, which is not installed; install it with "
        f'`pip install "bayesphys[distributed]"` (or `pip install "{extra}"`), or pass '
        f"another executor ('local', 'sequential')"
    )


def check_engine_installed(executor: str) -> None:
    """Raise :class:`~bayesphys._checks.MissingPackage` naming ``executor`` (``"ray"`` or
    ``"dask"``) and the extra to install when its engine is not installed, without importing
    it (checked before anything is written or started); other names pass."""
    if executor not in _ENGINE_MODULES:
        return
    modules, extra = _ENGINE_MODULES[executor]
    module = missing_module(*modules)
    if module is not None:
        raise MissingPackage(_missing_engine_message(executor, module, extra))


def _import(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] not in (
            "ray",
            "dask",
            "distributed",
        ):
            raise  # the engine is there but something it imports is not: its own error
        executor = "ray" if module.startswith("ray") else "dask"
        raise MissingPackage(_missing_engine_message(executor, module, extra)) from err
