"""Failures of :func:`~bayesphys.distributed.fit_many` tasks (re-exported by
:mod:`~bayesphys.distributed.executors`): a :class:`TaskError` names the task and chains what it
raised; a worker's exception crosses the process boundary with its traceback as text."""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable
from typing import Any


class TaskError(RuntimeError):
    """A task failed. The message names the task (``index`` and, where the task has a
    ``problem_id``, that ``key``); the exception it raised is chained as ``__cause__``."""

    def __init__(self, message: str, index: int | None = None, key: Any = None) -> None:
        super().__init__(message)
        self.index = index
        self.key = key

    def __reduce__(self):
        return (type(self), (self.args[0], self.index, self.key))


def _task_label(i: int, task: Any) -> str:
    key = getattr(task, "problem_id", None)
    return f"task {i}" + (f" (problem {key!r})" if key is not None else "")


def _task_error(i: int, task: Any, err: BaseException, context: str = "") -> TaskError:
    """``err`` of task ``i`` as a :class:`TaskError` that names the task and chains ``err``."""
    what = f"{type(err).__name__}: {err}"
    out = TaskError(
        f"{_task_label(i, task)} failed: {context}{what}", i, getattr(task, "problem_id", None)
    )
    out.__cause__ = err
    return out


class _RemoteTraceback(Exception):
    """The traceback text of an exception raised in a worker process (lost when pickled)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class _Failure:
    """A task's exception as returned from a pool worker, with its traceback text. Pickled (sent
    back from another process), an exception that does not survive pickling is replaced by a
    ``RuntimeError`` with its type and message."""

    def __init__(self, err: Exception) -> None:
        self.err = err
        self.tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))

    def __getstate__(self) -> dict[str, Any]:
        err = self.err
        try:
            pickle.loads(pickle.dumps(err))
        except Exception:  # noqa: BLE001 - any exception that cannot make the trip
            err = RuntimeError(f"{type(err).__name__}: {err}")
        return {"err": err, "tb": self.tb}

    def exception(self) -> Exception:
        err = self.err
        if err.__traceback__ is None and err.__cause__ is None:  # it came from another process
            err.__cause__ = _RemoteTraceback(f'\n"""\n{self.tb}"""')
        return err


def _call_indexed(fn: Callable[[Any], Any], item: tuple[int, Any]) -> tuple[int, bool, Any]:
    """Pool-side call: ``(index, True, result)`` or ``(index, False, _Failure)``, so that a
    task's exception comes back with the index of the task that raised it."""
    i, task = item
    try:
        return i, True, fn(task)
    except Exception as err:  # noqa: BLE001 - reported per task
        return i, False, _Failure(err)
