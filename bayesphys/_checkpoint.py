"""Checkpoints: :func:`save_checkpoint` / :func:`load_checkpoint`, and the checks around them.

A checkpoint is one :func:`torch.save` file holding ``{"kind", "config", "state", "version",
"format"}``: the model's kind, its constructor settings, its tensors and plain values, the
release that wrote it and the layout (:data:`CHECKPOINT_FORMAT`). It is written atomically and
read back before it replaces an earlier file, and it loads with ``weights_only=True`` (no code
runs on load; numpy scalars and arrays are allowed by name). A value that would not load back
is refused at save time, naming where it sits (:func:`check_checkpointable`); a file that is
not a checkpoint, is damaged, of another kind or of a newer format is refused by name on load.
Loaders rebuild inside :func:`~bayesphys._checkpoint_rebuild.rebuilding`, which names the file in
any error of the rebuild.
"""

from __future__ import annotations

import collections
import copy
import io
import re
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ._version import __version__

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_checkpointable",
    "load_checkpoint",
    "save_checkpoint",
]


_CHECKPOINT_KEYS = ("kind", "config", "state")

#: Layout of the checkpoints this release writes (``"format"`` in every file). Files without it
#: (all written before it was recorded) are format 1. A release that stores something an older
#: one cannot read or default bumps it; :func:`load_checkpoint` refuses a newer format by name
#: (a newer file loaded by an older release gave another model, silently).
CHECKPOINT_FORMAT = 1


#: the first bytes of a file torch.save wrote in its legacy (pre-zip) format
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def _torch_file(path: Path) -> bool:
    """Whether ``path`` starts as a torch.save file: a zip's local header (also when the file
    was cut short: then "corrupt or truncated" is the right word) or the legacy format's magic
    number."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_LEGACY_TORCH_MAGIC))
        return head.startswith(b"PK\x03\x04") or head == _LEGACY_TORCH_MAGIC
    except OSError:
        return True  # unreadable: the caller's own message says so


def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind: expected a non-empty string, received {kind!r}")
    return kind


def _check_path(path: Any, *, write: bool = False) -> Path:
    """``path`` with ``~`` expanded; to ``write``, a folder name or a path under a file is
    refused by name (reading keeps FileNotFoundError / IsADirectoryError)."""
    from ._files import user_path

    return user_path(path, file=write)  # a non-path is refused there, by name


def save_checkpoint(path: str | Path, *, kind: str, config: dict[str, Any], state: Any) -> Path:
    """Save ``{"kind", "config", "state", "version", "format"}`` with :func:`torch.save`
    (``version`` the package's, ``format`` :data:`CHECKPOINT_FORMAT`).

    The file is written beside ``path`` first and renamed into place once complete, so a save
    that fails (an unpicklable ``state``, a full disk) leaves any previous checkpoint at
    ``path`` as it was and never a truncated file (a symlink is written through; an existing
    file keeps its permissions)."""
    from ._files import atomic_write

    path = _check_path(path, write=True)
    kind = _check_kind(kind)
    if not isinstance(config, Mapping):
        raise TypeError(f"config: expected a dict of settings, received {type(config).__name__}")
    if path.is_dir():
        raise IsADirectoryError(f"path: expected a file path, received the folder {path}")
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": kind,
        "config": config,
        "state": state,
        "version": __version__,
        "format": CHECKPOINT_FORMAT,
    }
    try:
        return atomic_write(path, lambda tmp: _write_checked(payload, tmp))
    except BaseException:
        for folder in made:  # a refused save left the folders it made for the file, empty
            try:
                folder.rmdir()  # deepest first; a folder something else wrote into stays
            except OSError:
                break
        raise


def _write_checked(payload: dict[str, Any], tmp: Path) -> None:
    """Write ``payload`` to ``tmp`` with :func:`torch.save`, then read it back with
    :func:`load_checkpoint`'s restricted unpickler (memory-mapped: no second copy in memory).

    A value that unpickler refuses (a ``Path``, ``datetime``, ``namedtuple``, ``range``) made a
    checkpoint that saved but never loaded (a training run's resume failed at its first try): it
    is refused here (``TypeError``, naming where it sits) and the temporary file removed by the
    caller, so the previous checkpoint stays. Saving through a file object names the archive's
    members ``archive/...`` (after the file name they carried this machine's name and process
    id into every shared checkpoint)."""
    import pickle

    with open(tmp, "wb") as fh:
        try:
            torch.save(payload, fh)
        except RuntimeError as err:
            # torch's writer reports a failed write of the file object (a full disk, a size
            # limit) as "unexpected pos": the OSError it hid is the one to report
            cause = err.__context__ or err.__cause__
            if isinstance(cause, OSError):
                raise cause from None
            raise
    refused = None
    try:
        with _numpy_allowed():
            torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        refused = str(err)  # raised below: the error's frames hold the file's memory map
    if refused is not None:
        parts = {"config": payload["config"], "state": payload["state"]}
        raise TypeError(_unloadable_report(parts, refused))


_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size)


def _suspects(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` of the values inside ``value`` that may be what the restricted
    unpickler refuses, in order: anything but plain values, tensors, plain numpy arrays and
    dtypes inside plain dicts, lists, tuples and sets (over-inclusive: each is checked; a
    tensor carrying Python attributes is no suspect, and is caught by the save's read-back)."""
    import numpy as np

    t = type(value)
    if t in _PLAIN or t in (torch.Tensor, torch.nn.Parameter) or isinstance(value, np.dtype):
        return
    if t is np.ndarray or (isinstance(value, np.generic) and t.__module__ == "numpy"):
        if value.dtype.kind not in "OVMmT" and value.dtype.fields is None:
            return
    elif t is dict or t is collections.OrderedDict:
        for k, v in value.items():
            yield from _suspects(k, f"{where}[key {k!r}]")
            yield from _suspects(v, f"{where}[{k!r}]")
        return
    elif t in (list, tuple, set):
        for i, v in enumerate(value):
            yield from _suspects(v, f"{where}[{i}]")
        return
    yield where, value


def _loads_back(value: Any) -> bool:
    """Whether ``value`` alone survives :func:`torch.save` and the restricted load (a value
    that does not even pickle, e.g. a lambda, does not)."""
    import pickle

    buf = io.BytesIO()
    try:
        torch.save(value, buf)
    except (pickle.PicklingError, TypeError, AttributeError, RuntimeError):
        return False
    buf.seek(0)
    try:
        with _numpy_allowed():
            torch.load(buf, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return False
    return True


def _refused(value: Any, where: str) -> tuple[str, Any] | None:
    """The first value inside ``value`` that does not load back, by where it sits: inside a
    refused container subclass (a ``Counter`` holding a ``Path``), the value inside it."""
    for w, v in _suspects(value, where):
        if _loads_back(v):
            continue
        if isinstance(v, (dict, list, tuple, set)) and type(v) not in (dict, list, tuple, set):
            plain = dict(v) if isinstance(v, dict) else list(v)
            inner = _refused(plain, w)
            if inner is not None and inner[0] != w:
                return inner
        return w, v
    return None


def _unloadable_report(parts: dict[str, Any], err: str | None = None) -> str:
    """The message for named values (``{"config": ..., "state": ...}``) that the restricted
    unpickler refuses: the first refused value by where it sits, each suspect checked alone."""
    for part, whole in parts.items():
        found = _refused(whole, part)
        if found is not None:
            return _refused_message(*found)
    m = re.search(r"GLOBAL (\S+)", err or "")
    names = " or ".join(parts)
    return (
        f"{names}: holds a value a checkpoint cannot hold"
        + (f" (an object of type {m.group(1)}, e.g. an attribute set on a tensor)" if m else "")
        + "; load_checkpoint unpickles only tensors, plain values and numpy arrays, so the "
        "file would never load"
    )


def check_checkpointable(value: Any, name: str) -> None:
    """Refuse (``TypeError``, naming where it sits in ``value``) a value that a checkpoint
    cannot hold: one :func:`load_checkpoint`'s restricted unpickler would refuse, so the file
    would save but never load (e.g. a ``Path`` in a training run's ``config``). Only the
    values that are not plainly loadable are serialised (one at a time), not the whole."""
    found = _refused(value, name)
    if found is not None:
        raise TypeError(_refused_message(*found))


def _refused_message(where: str, value: Any) -> str:
    t = type(value)
    what = f"{t.__module__}.{t.__qualname__}"
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        what += f" ({value.dtype})"
    return _unloadable_message(where, what)


def _unloadable_message(where: str, what: str) -> str:
    return (
        f"{where.split('[', 1)[0]}: {where} is of type {what}, which a checkpoint cannot hold "
        "(load_checkpoint unpickles only tensors, plain values (numbers, strings, bytes, "
        "lists, tuples, dicts, sets, dtypes, devices) and numpy arrays, so the file would "
        "never load); store it as a plain value (e.g. str(path))"
    )


def _check_zip_members(path: Path) -> None:
    """Compare every member of a zip checkpoint (torch's default format) with its CRC-32
    (``torch.load`` does not, so a flipped byte inside a tensor would load as other weights),
    and refuse compressed members (torch never writes them; they can expand without bound)."""

    if not zipfile.is_zipfile(path):
        return  # a legacy (non-zip) torch file; torch.load judges it
    with zipfile.ZipFile(path) as zf:
        packed = [i.filename for i in zf.infolist() if i.compress_type != zipfile.ZIP_STORED]
        if packed:
            # torch.save stores every member as it is; a deflated one can expand to a thousand
            # times its size (a 300 kB file took 1.5 GB to load)
            raise ValueError(
                f"member {packed[0]!r} is compressed, which torch.save never does (a compressed "
                "member can expand to far more memory than the file's size)"
            )
        bad = zf.testzip()
    if bad is not None:
        raise ValueError(f"member {bad!r} does not match its CRC-32 checksum")


def _numpy_globals() -> list[Any]:
    """The numpy classes and functions a pickled array, scalar or dtype names."""
    import numpy as np

    # numpy >= 2 keeps these in numpy._core; 1.26 has a numpy._core too, but only as an alias
    # package whose submodules are not loaded (its multiarray attribute is missing), and its
    # pickles name numpy.core
    if int(np.__version__.split(".")[0]) >= 2:
        from numpy._core import multiarray
    else:  # numpy 1.x
        from numpy.core import multiarray
    dtypes = {type(np.dtype(c)) for c in "?bhilqBHILQefdgFDGUS"}
    out: list[Any] = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes]
    if _named_globals_supported():
        # a checkpoint written under the other numpy major names the other module (torch
        # matches the text of the name): numpy 2 loads 1.x's numpy.core.*, and 1.26 loads 2's
        # numpy._core.*, as the same functions
        other = "numpy.core" if int(np.__version__.split(".")[0]) >= 2 else "numpy._core"
        out += [(f, f"{other}.multiarray.{f.__name__}") for f in out[:2]]
    return out


def _named_globals_supported() -> bool:
    """Whether this torch's allow-list takes ``(global, "full.name")`` pairs: torch >= 2.6
    (an older torch fails on a pair at every load)."""
    major, minor = (int(v) for v in re.findall(r"\d+", torch.__version__)[:2])
    return (major, minor) >= (2, 6)


# loads running at once in this process and the numpy globals they added to torch's allow-list
_ALLOWED = threading.Lock()
_loaders = 0
_added: list[Any] = []


@contextmanager
def _numpy_allowed() -> Iterator[None]:
    """Allow the numpy globals for ``torch.load(weights_only=True)`` while inside.

    torch's allow-list is process-wide and its ``safe_globals`` context removes its entries on
    leaving, also those the caller had added before (a user's ``add_safe_globals`` was undone by
    every load) and while another thread was still loading (its load failed). Here the first
    loader adds only what is missing and the last to leave removes only that."""
    global _loaders, _added
    with _ALLOWED:
        if _loaders == 0:
            present = set(torch.serialization.get_safe_globals())
            _added = [g for g in _numpy_globals() if g not in present]
            torch.serialization.add_safe_globals(_added)
        _loaders += 1
    try:
        yield
    finally:
        with _ALLOWED:
            _loaders -= 1
            if _loaders == 0 and _added:
                ours = set(_added)
                keep = [g for g in torch.serialization.get_safe_globals() if g not in ours]
                torch.serialization.clear_safe_globals()
                torch.serialization.add_safe_globals(keep)
                _added = []


def load_checkpoint(
    path: str | Path,
    *,
    kind: str,
    map_location: str | torch.device | dict[str, str] | Callable[[Any, str], Any] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, checking its ``kind``.

    Raises ``FileNotFoundError`` when ``path`` does not exist and ``ValueError`` naming the
    path when the file is not a readable checkpoint (corrupt, including a member of torch's
    zip format whose CRC-32 fails; truncated; another format; a class that no longer imports;
    a ``PermissionError`` is raised as it is; one holding objects other than tensors and
    plain values: only those are unpickled, as unpickling an object runs its code), when it is a
    checkpoint of another ``kind``, when it
    lacks ``kind``/``config``/``state``, or when its ``format`` is not an integer from 1 up
    to :data:`CHECKPOINT_FORMAT` (a newer one: upgrade; any other: a damaged file). ``map_location``
    given as a device string or :class:`torch.device` is checked first (an unknown device, or CUDA
    where none is available, is refused by name); one of another type (an int) is a
    ``TypeError``."""
    import pickle

    from ._device import resolve_device

    path = _check_path(path)
    kind = _check_kind(kind)
    if not (
        map_location is None
        or isinstance(map_location, (str, torch.device, Mapping))
        or callable(map_location)
    ):  # an int reached torch.load, whose "'int' object is not callable" blamed the file
        raise TypeError(
            "map_location: expected a device string, a torch.device, a dict of device names or "
            f"a callable, received {type(map_location).__name__} {map_location!r}"
        )
    if isinstance(map_location, (str, torch.device)):
        try:
            map_location = resolve_device(map_location)  # "auto" -> a device torch.load knows
        except (ValueError, TypeError) as err:
            raise ValueError(str(err).replace("device:", "map_location:", 1)) from None
    if not path.exists():
        raise FileNotFoundError(f"path: no checkpoint at {path}")
    if path.is_dir():
        raise IsADirectoryError(f"path: expected a checkpoint file, received the folder {path}")
    try:
        _check_zip_members(path)
        # tensors, plain values and numpy arrays / scalars only: unpickling arbitrary objects
        # runs their code, so a checkpoint from an untrusted source could run anything (torch's
        # own default since 2.6); numpy values stay loadable (a config of numpy numbers)
        with _numpy_allowed():
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except (
        OSError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        EOFError,
        RuntimeError,
        ValueError,
        ImportError,
        AttributeError,
        TypeError,
        IndexError,
        KeyError,
        struct.error,  # a legacy-format (non-zip) file cut short: 'unpack requires a buffer'
    ) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = re.sub(r"\x1b\[[0-9;]*m", "", detail)  # torch's bold / colour codes
        if not isinstance(err, OSError) and not _torch_file(path):
            # not a torch file at all: torch's own text ends by suggesting weights_only=False,
            # unsafe advice for a file that is not even a checkpoint
            raise ValueError(
                f"path: {path} is not a bayesphys checkpoint (not a file torch.save wrote); "
                f"expected a {kind!r} checkpoint written by save()"
            ) from err
        hint = (
            "; it holds objects other than tensors, plain values and numpy arrays, which are "
            "not unpickled (that could run code); if you trust the file, read it with "
            "torch.load(path, weights_only=False)"
            if isinstance(err, pickle.UnpicklingError) and "weights_only" in str(err)
            else ""
        )
        raise ValueError(
            f"path: cannot load {path} as a {kind!r} checkpoint ({type(err).__name__}: "
            f"{detail}); the file may be corrupt, truncated, of another format or saved with "
            f"classes that no longer import{hint}"
        ) from err
    if not isinstance(ckpt, dict) or "kind" not in ckpt:
        # a file torch.save wrote but no model's save did: a state dict, a bare tensor (the
        # message said "received None" or "received 'Tensor'")
        held = "a dict" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise ValueError(
            f"path: {path} is not a bayesphys checkpoint (torch.save wrote it, but it holds "
            f"{held} without the 'kind' entry save() writes, e.g. a state dict or a bare "
            f"tensor); expected a {kind!r} checkpoint written by save()"
        )
    if ckpt["kind"] != kind:
        raise ValueError(
            f"path: expected a {kind!r} checkpoint, received {ckpt['kind']!r} ({path})"
        )
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ValueError(
            f"path: the {kind!r} checkpoint at {path} lacks {missing} (expected the keys "
            f"{list(_CHECKPOINT_KEYS)} written by save_checkpoint)"
        )
    fmt = ckpt.get("format", 1)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        # no release writes such a format (formats count from 1): a damaged or hand-made
        # file, not a newer one (it was loaded as format 1, or refused with "upgrade")
        raise ValueError(
            f"path: {path} records the checkpoint format {fmt!r}, which no bayesphys release "
            "writes (formats are integers from 1); the file is damaged or was not written by "
            "save_checkpoint"
        )
    if fmt > CHECKPOINT_FORMAT:
        raise ValueError(
            f"path: {path} was written by bayesphys {ckpt.get('version', '?')} in checkpoint "
            f"format {fmt!r}; this release ({__version__}) reads formats up to "
            f"{CHECKPOINT_FORMAT}: upgrade bayesphys to load it"
        )
    return ckpt


def cpu_copy(value: Any) -> Any:
    """A snapshot of a (nested) state dict: every tensor detached and copied to the CPU, dicts
    keeping their type and a ``state_dict``'s ``_metadata``, lists and tuples their type, other
    values deep-copied (later training leaves the snapshot as it was)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        out = type(value)((k, cpu_copy(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):
            out._metadata = copy.deepcopy(value._metadata)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copy(v) for v in value)
    return copy.deepcopy(value)
