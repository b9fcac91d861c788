"""A fit's user callback: ``callback(model, step)`` every ``callback_every`` steps of the fit.

The fits that run their steps in one :func:`~bayesphys._model.optimize` call (ProbConserv, Meta
Flow Matching, the GP PDE solver) call it from inside their step function, after the update of
each ``callback_every``-th step of the call, so the loop, its random streams and its learning-rate
schedule are those of a fit without a callback. :class:`FitCallback` times the calls (the fit
subtracts that time from its ``seconds`` and its time budget) and lets every exception the
callback raises propagate out of the fit, a ``StopIteration`` too (which :func:`optimize` would
otherwise read as the step function ending the fit).

Example
-------
>>> seen = []
>>> cb = FitCallback("model", lambda model, step: seen.append((model, step)), 2, lambda: 7)
>>> [cb.due(k) for k in (1, 2)]
[False, True]
>>> cb(); seen
[('model', 7)]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ._checks import check_callback, check_int

__all__ = ["FitCallback", "call_propagating", "check_fit_callback", "propagating"]


def check_fit_callback(model: Any, callback: Any, callback_every: Any) -> int:
    """``callback_every`` as an int ``>= 1`` and ``callback`` ``None`` or callable as
    ``callback(model, step)`` (``TypeError``/``ValueError`` naming the argument, the messages
    of :meth:`~bayesphys.neural_process.RandomGridNP.fit`); returns ``callback_every``."""
    every = check_int("callback_every", callback_every, minimum=1)
    if callback is not None:
        check_callback("callback", callback, (model, 0), ("model", "step"))
    return every


class _Escaped(Exception):
    """Carries a ``StopIteration`` raised by the callback past :func:`optimize`."""

    def __init__(self, error: StopIteration) -> None:
        super().__init__(repr(error))
        self.error = error


def call_propagating(callback: Callable[..., Any], *args: Any) -> Any:
    """``callback(*args)``, a ``StopIteration`` it raises carried past :func:`optimize` (which
    would read it as the step function ending the fit) to the enclosing :func:`propagating`."""
    try:
        return callback(*args)
    except StopIteration as err:
        raise _Escaped(err) from None


def propagating() -> _Propagating:
    """The context around a fit's :func:`optimize` call that re-raises a ``StopIteration``
    carried by :func:`call_propagating` as it was raised (a class, not a generator: one would
    turn it into a ``RuntimeError``)."""
    return _Propagating()


class FitCallback:
    """``callback(model, step())`` (``callback=None``: never due) with its time kept apart.

    :meth:`due` says whether a fit that has completed ``done`` steps calls it (``done`` a
    multiple of ``every``). Calling the object calls the callback with ``step()``, the
    model's total number of steps at that moment, and adds its wall time to :attr:`seconds`
    and its process CPU time to :attr:`cpu_seconds`, also when it raises (:attr:`raised`
    then is ``True``). Run the fit's :func:`optimize` call inside :meth:`propagating`, so that
    a ``StopIteration`` from the callback leaves the fit as it was raised.
    """

    def __init__(
        self,
        model: Any,
        callback: Callable[[Any, int], Any] | None,
        every: int,
        step: Callable[[], int],
    ) -> None:
        self.model, self.callback, self.every, self._step = model, callback, every, step
        #: wall time (s) and process CPU time (s) spent in the callback so far
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        #: whether the callback raised (the fit's own error handling reads it)
        self.raised = False

    def due(self, done: int) -> bool:
        """Whether the callback runs after this fit's ``done``-th completed step."""
        return self.callback is not None and done % self.every == 0

    def __call__(self) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            call_propagating(self.callback, self.model, self._step())  # type: ignore[arg-type]
        except BaseException:
            self.raised = True
            raise
        finally:
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0

    def propagating(self) -> _Propagating:
        """:func:`propagating`: run the fit's :func:`optimize` call inside it."""
        return propagating()


class _Propagating:
    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if isinstance(error, _Escaped):
            err = error.error
            raise err from err.__cause__
        return False
