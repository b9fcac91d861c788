"""What a loader checks while it rebuilds a model from a checkpoint's entries
(:mod:`bayesphys._checkpoint`): names it does not know (:func:`refuse_unknown`), entries it
needs (:func:`require_entries`), errors of the rebuild raised again naming the file
(:func:`rebuilding`), and the constructor's advisory warnings kept quiet while it runs
(:func:`quiet_rebuild`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch

from ._context_flag import ContextFlag
from ._version import __version__

__all__ = ["in_quiet_rebuild", "quiet_rebuild", "rebuilding", "refuse_unknown", "require_entries"]


def refuse_unknown(ckpt: Mapping[str, Any], path: Any, what: str, given: Any, known: Any) -> None:
    """Refuse a checkpoint whose ``what`` (settings, state entries) has names outside ``known``:
    a newer release wrote it, and building without them would give another model silently
    (an unknown setting was ignored, e.g. a time scheme: posterior means off by 0.46)."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(
            f"path: {path} holds {what} {unknown} that this release ({__version__}) does not "
            f"know (written by bayesphys {ckpt.get('version', '?')}); loading it without them "
            "would give another model: upgrade bayesphys to load it"
        )


def require_entries(part: Any, path: Any, what: str, names: Iterable[str]) -> None:
    """Refuse a checkpoint whose ``what`` (settings, state entries: a dict) is not a dict or
    lacks any of ``names`` (those every save writes), by name: a damaged or hand-made file
    failed with a bare ``KeyError: 'u'`` that named neither the file nor what it lacked."""
    if not isinstance(part, Mapping):
        raise ValueError(
            f"path: {path} holds its {what} as a {type(part).__name__}, expected a dict (the "
            "file is damaged or was not written by save())"
        )
    missing = [n for n in names if n not in part]
    if missing:
        raise ValueError(
            f"path: {path} lacks the {what} {missing} that save() writes (the file is damaged "
            "or was not written by save())"
        )


def _out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is torch's report of an allocation that failed (CPU or CUDA)."""
    oom = getattr(torch, "OutOfMemoryError", ())
    text = str(err)
    return isinstance(err, oom) or (
        isinstance(err, RuntimeError)
        and ("can't allocate memory" in text or "out of memory" in text.lower())
    )


#: set while a model is rebuilt from data it was built (and warned about) from before
_QUIET_REBUILD = ContextFlag("bayesphys_quiet_rebuild")


def quiet_rebuild() -> AbstractContextManager[None]:
    """Within this block :func:`in_quiet_rebuild` is true: a loader (or a recrop) rebuilds a
    model through its constructor from settings and data that warned when the model was first
    built, so the constructor's advisory warnings stay silent. A context variable, not a
    warnings filter: :class:`warnings.catch_warnings` is process-wide and hid the same
    warnings of models built meanwhile in other threads."""
    return _QUIET_REBUILD.raised()


def in_quiet_rebuild() -> bool:
    """Whether the caller runs inside :func:`quiet_rebuild`."""
    return _QUIET_REBUILD.is_raised()


@contextmanager
def rebuilding(path: Any, kind: str, entry: str | None = None) -> Iterator[None]:
    """Around a loader's rebuild of a model from the entries of the checkpoint at ``path``: an
    entry of the wrong type, shape or value fails there with a ``TypeError``, ``KeyError``,
    ``IndexError``, ``RuntimeError`` or a check's ``ValueError`` naming at most the entry
    (``entry``, when given, is named before the check's own text); each is raised again as a
    ``ValueError`` naming the file, the original chained as its cause. An error that already
    names the file passes as it is; others (``AttributeError``, ``NameError``, ...) are not
    caught, so a programming error is not taken for a bad file."""
    try:
        yield
    except (TypeError, KeyError, IndexError, RuntimeError, ValueError) as err:
        text = str(err).strip()
        if f"path: {path}" in text or _out_of_memory(err):
            raise  # already names the file; or the machine, not the file, is short of memory
        where = f"{entry}: " if entry else ""
        if type(err) is ValueError:  # a check's own message, naming the value
            raise ValueError(f"path: {path}: {where}{text}") from err
        raise ValueError(
            f"path: {path}: {where}its entries do not rebuild a {kind!r} model "
            f"({type(err).__name__}: {text}); the file is damaged or was not written by save()"
        ) from err
