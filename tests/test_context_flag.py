"""The shared context flag behind the package's "the caller already warned / checked" blocks
(quiet_rebuild, untrained_warned, dense_memory_checked, params_checked)."""

from __future__ import annotations

import threading

import pytest

from bayesphys._checkpoint_rebuild import in_quiet_rebuild, quiet_rebuild
from bayesphys._context_flag import ContextFlag


def test_raised_within_the_block_only_and_restored_after_an_error() -> None:
    flag = ContextFlag("test_flag")
    assert not flag.is_raised()
    with flag.raised():
        assert flag.is_raised()
        with flag.raised():  # nested
            assert flag.is_raised()
        assert flag.is_raised()
    assert not flag.is_raised()
    with pytest.raises(KeyError), flag.raised():
        raise KeyError("x")
    assert not flag.is_raised()


def test_a_block_in_one_thread_is_not_seen_in_another() -> None:
    seen: list[bool] = []
    inside, done = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait()
        seen.append(in_quiet_rebuild())
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with quiet_rebuild():
        assert in_quiet_rebuild()
        inside.set()
        done.wait()
    t.join()
    assert seen == [False]
