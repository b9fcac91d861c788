"""Light module-level tasks for the runner tests (spawned workers import only this)."""

from __future__ import annotations

import threading
import time


class Unpicklable(Exception):
    """An exception that holds a lock, so it cannot be pickled back from a worker."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.lock = threading.Lock()


def task(x: int) -> int:
    """Tasks 1 and 3 fail, 1 after the others (so the failures finish out of order)."""
    if x == 1:
        time.sleep(0.5)
        raise ValueError("task one broke")
    if x == 3:
        raise KeyError("task three broke")
    if x == 5:
        raise Unpicklable("task five broke")
    return 10 * x


class ResumingIterator:
    """Like ``multiprocessing.Pool.imap_unordered``'s iterator: ``fn`` of each item in turn,
    and an exception ``fn`` raises comes in place of that result while iteration goes on."""

    def __init__(self, fn, items) -> None:
        self.fn, self.pending = fn, list(items)

    def __iter__(self):
        return self

    def __next__(self):
        if not self.pending:
            raise StopIteration
        return self.fn(self.pending.pop(0))


def dies_on_three(x: int) -> int:
    """Value 3 kills its worker process (as a crash in native code would); 2 raises."""
    import os

    if x == 2:
        raise ValueError("boom on 2")
    if x == 3:
        os._exit(7)
    time.sleep(0.05 * x)
    return x * x


def _refuse_to_load():
    raise AttributeError("Can't get attribute 'Problem' on <module '__mp_main__'>")


class LoadsNowhere:
    """Pickles here and fails to unpickle in a worker, as a class defined under
    ``if __name__ == "__main__":`` does in a spawned worker."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def double(x: int) -> int:
    return 2 * x


def sleepy(seconds: float) -> float:
    """Sleep ``seconds``, then return them (a task still running when its caller leaves)."""
    time.sleep(seconds)
    return seconds
