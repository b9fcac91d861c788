"""Shared by the tests that run package calls in several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def in_threads(fn: Callable[[Any], Any], args: list) -> list:
    """``fn(a)`` for every ``a`` in its own thread, all released together by a barrier; the
    results in order, an error as the string ``"Type: message"``."""
    out: list = [None] * len(args)
    gate = threading.Barrier(len(args))

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = fn(args[i])
        except Exception as err:  # noqa: BLE001 - compared by the caller
            out[i] = f"{type(err).__name__}: {err}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return out
