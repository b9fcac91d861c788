"""Shared check of the warnings a call gives."""

from __future__ import annotations

import warnings
from collections.abc import Callable


def messages_containing(call: Callable[[], object], text: str) -> list[str]:
    """The messages of the warnings ``call()`` gives (each one, repeats included) that contain
    ``text``."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        call()
    return [str(r.message) for r in rec if text in str(r.message)]
