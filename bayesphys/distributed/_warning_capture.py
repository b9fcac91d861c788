"""Warnings of the tasks that ``fit_many`` runs in this process, collected per thread.

:func:`warnings.catch_warnings` swaps process-wide state, so tasks overlapping in a thread pool
would take each other's warnings and could leave the hook of a finished task installed; here
one hook (:func:`_dispatch`) is installed while any task runs and sends each thread's warnings
to that thread's list.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CAPTURE_LOCK = threading.Lock()
_CAPTURE: dict[str, Any] = {"depth": 0, "show": None}
_SINK = threading.local()


def _dispatch(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` while tasks run: a task thread's warning goes to its list,
    any other thread's to the hook that was installed before."""
    sink = getattr(_SINK, "caught", None)
    if sink is not None:
        sink.append(f"{category.__name__}: {message}")
        # forget the once-per-location memory, so that a task overlapping this one in another
        # thread still records a warning from the same line
        _reset_once_registry()
    else:
        # the hook found at install (never this one; the original if a swap left none)
        show = _CAPTURE["show"] or warnings._showwarning_orig
        show(message, category, filename, lineno, file, line)


def _reset_once_registry() -> None:
    """Invalidate the warnings' once-per-location registries (a private hook of Python <=
    3.13, what catch_warnings calls; without it, no reset)."""
    reset = getattr(warnings, "_filters_mutated", None)
    if reset is not None:
        reset()


@contextmanager
def _captured_warnings() -> Iterator[list[str]]:
    """Collect the warnings raised in this thread (``"Category: message"``, in order) instead
    of showing them; the filters in force apply, and every task sees a warning that an
    earlier task in this process already gave (the filters' once-per-location memory is
    reset, as :class:`warnings.catch_warnings` does)."""
    caught: list[str] = []
    with _CAPTURE_LOCK:
        if _CAPTURE["depth"] == 0:
            current = warnings.showwarning
            # a catch_warnings of another thread may have put this hook back after it was
            # removed: it is never the hook to fall back on (the one saved before stays)
            if current is not _dispatch:
                _CAPTURE["show"] = current
            warnings.showwarning = _dispatch
        _CAPTURE["depth"] += 1
        _reset_once_registry()
    outer = getattr(_SINK, "caught", None)
    _SINK.caught = caught
    try:
        yield caught
    finally:
        _SINK.caught = outer
        with _CAPTURE_LOCK:
            _CAPTURE["depth"] -= 1
            if _CAPTURE["depth"] == 0:
                # only this hook is taken out (another installed since stays); the saved hook
                # is kept: a catch_warnings block of another thread may still put this one
                # back, which then passes warnings on to the caller's hook
                if warnings.showwarning is _dispatch:
                    warnings.showwarning = _CAPTURE["show"] or warnings._showwarning_orig
