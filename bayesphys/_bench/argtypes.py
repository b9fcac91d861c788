"""Argparse ``type=`` checks of the comma lists the benchmark scripts take (``--only B0,B3``,
``--problems pme,stefan``, ``--seeds 0,1``).

An unknown, repeated or malformed entry is a usage error naming the option, the entries
refused and the ones accepted, raised by the parse itself: before any work is done, and
seen by anything that only parses a command (a check after the parse, ``ap.error``, was not
reached by the test that parses every command the docs quote)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection
from typing import Any


def comma_list(
    item: Callable[[str], Any] = str,
    *,
    allowed: Collection[Any] | None = None,
    unique: bool = False,
    nonempty: bool = True,
    what: str = "entries",
    hint: str = "",
) -> Callable[[str], list]:
    """An argparse ``type``: ``"a,b,c"`` as the list ``[item("a"), item("b"), item("c")]``.

    The text is split at commas; each entry is stripped of spaces and empty entries are
    dropped (``"B0, B1,"`` is ``["B0", "B1"]``). Refused, as an
    :class:`argparse.ArgumentTypeError` (argparse names the option): an entry ``item`` refuses
    (its ``ValueError`` or ``ArgumentTypeError``), entries not in ``allowed`` (when given;
    the error lists them and ``allowed``, then ``hint``), an entry given twice (with
    ``unique``) and, with ``nonempty``, a list with no entry at all.

    Args:
        item: converts one entry (``str``, ``int``, an argparse type such as a seed check).
        allowed: the accepted values (after ``item``); ``None``: any value ``item`` takes.
        unique: refuse an entry given twice.
        nonempty: refuse a list with no entry (``""``); else ``""`` is ``[]``.
        what: the entries' name in the errors (``"problem ids"``, ``"rows"``).
        hint: appended to the unknown-entry error (e.g. why an id is missing).

    Returns:
        The ``type`` function: ``str -> list`` of length ``n``, the number of non-empty
        entries (``n >= 1`` with ``nonempty``). Its attribute ``allowed`` is ``allowed`` as
        a tuple (``None`` when not given): what a command check may put for an ids
        placeholder.
    """

    def parse(text: str) -> list:
        words = [w.strip() for w in text.split(",")]
        values = []
        for word in filter(None, words):
            try:
                values.append(item(word))
            except argparse.ArgumentTypeError as err:
                raise argparse.ArgumentTypeError(f"{err} (in {text!r})") from None
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected a comma list of {what}, received {text!r}"
                ) from None
        if allowed is not None:
            bad = [v for v in values if v not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {bad}; expected some of {list(allowed)}{hint}"
                )
        if unique and len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"each of the {what} once, received {text!r}")
        if nonempty and not values:
            raise argparse.ArgumentTypeError(
                f"expected at least one of the {what}, received {text!r}"
            )
        return values

    parse.allowed = None if allowed is None else tuple(allowed)  # type: ignore[attr-defined]
    return parse


def comma_ids(
    allowed: Collection[str],
    *,
    unique: bool = False,
    nonempty: bool = True,
    what: str = "ids",
    hint: str = "",
) -> Callable[[str], list[str]]:
    """An argparse ``type``: a comma list of ids, each one of ``allowed``
    (:func:`comma_list` with ``item=str``; ``"B0,B3"`` is ``["B0", "B3"]``).

    Args:
        allowed: the accepted ids (the error lists them).
        unique: refuse an id given twice.
        nonempty: refuse ``""``; else ``""`` is ``[]``.
        what: the ids' name in the errors (``"problem ids"``).
        hint: appended to the unknown-id error.

    Returns:
        The ``type`` function: ``str -> list[str]`` of length ``n``, the number of ids given.
    """
    return comma_list(
        str, allowed=tuple(allowed), unique=unique, nonempty=nonempty, what=what, hint=hint
    )
