"""Scalar argument checks with clear errors (hyperparameters, step counts, tolerances).

Every component validates its integer and real-valued settings with these two functions, so a
bad value fails at construction with a message that names the argument, instead of later
inside torch (``Trying to create tensor with negative dimension``) or silently (a negative
learning rate, a NaN tolerance).

Examples
--------
>>> from bayesphys import check_int, check_real
>>> check_int("width", 64, minimum=1)
64
>>> check_real("lr", 1e-3, minimum=0.0, strict=True)
0.001
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import math
import numbers
import os
import warnings
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ._context_flag import ContextFlag
from ._stack import user_stacklevel
from ._warning_types import BayesphysUserWarning

__all__ = [
    "as_real_array",
    "as_scalar",
    "check_bool",
    "check_broadcasts",
    "check_callback",
    "check_int",
    "check_keys",
    "check_optional_seed",
    "check_real",
    "check_scalar",
    "check_seed",
    "offset_seed",
    "stream_seed",
]


def _one_value_hint(value: Any, convert: str) -> str:
    """The conversion to name when a number is expected and ``value`` is a 0-d tensor or
    array (a loss, a ``np.load`` scalar, ``x.sum()``): these are refused, as every tensor is,
    and the bare "received Tensor" did not say what to pass instead."""
    if getattr(value, "shape", None) == () and hasattr(value, "dtype"):
        return f" (a 0-d {type(value).__name__}: pass {convert}(x))"
    return ""


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as an ``int`` ``>= minimum``; a ``bool``, a non-integral float or anything
    that is not a number is refused (``TypeError``), an out-of-range value too
    (``ValueError``). Integral floats such as ``3.0`` are accepted and converted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name}: expected an int, received {type(value).__name__} {value!r}"
            + _one_value_hint(value, "int")
        )
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise TypeError(f"{name}: expected an int, received {value!r}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, received {out}")
    return out


#: torch's seed range (``torch.Generator.manual_seed`` takes ``[-2**63, 2**64 - 1]``)
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


# the command line's bound on --seed: every component and example takes such a seed (the
# cohort example derives one seed per patient from it)
SEED_BOUND = 2**43


def check_seed(name: str, value: Any, *, minimum: int = SEED_MIN) -> int:
    """``value`` as an ``int`` seed in ``[minimum, 2**64 - 1]`` (default minimum ``-2**63``:
    torch's seed range; ``0`` where numpy takes the seed). As :func:`check_int` otherwise:
    a ``bool`` or non-integral value is a ``TypeError``, one out of range a ``ValueError``."""
    out = check_int(name, value)
    if not minimum <= out <= SEED_MAX:
        lo = "-2**63" if minimum == SEED_MIN else str(minimum)
        raise ValueError(f"{name}: expected an int in [{lo}, 2**64 - 1], received {out}")
    return out


def check_optional_seed(name: str, value: Any, *, minimum: int = SEED_MIN) -> int | None:
    """``None`` (fresh entropy, left to the caller) or ``value`` checked by :func:`check_seed`."""
    return None if value is None else check_seed(name, value, minimum=minimum)


def seed_or_draw(name: str, value: Any) -> int:
    """``value`` checked by :func:`check_seed`, or for ``None`` a seed drawn from (and
    advancing) torch's global CPU stream: the ``seed=None`` of the shared API, for code that
    needs an int to derive its per-item streams from."""
    if value is None:
        import torch

        return int(torch.randint(0, 2**62, ()))
    return check_seed(name, value)


def stream_seed(seed: int, tag: str, *keys: int) -> int:
    """A seed in ``[0, 2**64)`` for the stream named ``tag`` (and int ``keys`` in
    ``[0, 2**32)``, e.g. a step and a rank) under the user's ``seed`` (any seed torch
    takes): numpy's ``SeedSequence`` hashes ``seed mod 2**64`` with ``(crc32(tag), *keys)``
    as its spawn key, so streams with different tags or keys are independent, and none equals a
    plain small seed a user passes (unlike ``seed + offset`` designs, where a training batch's seed
    could be a validation set's).

    >>> stream_seed(0, "a") == stream_seed(0, "a") != stream_seed(0, "b")
    True
    """
    seed = check_seed("seed", seed)
    if not isinstance(tag, str):
        raise TypeError(f"tag: expected a str, received {type(tag).__name__}")
    # numpy splits a spawn-key entry >= 2**32 into 32-bit words, so (2**32,) would be (0, 1)
    key = [check_int("keys", k, minimum=0) for k in keys]
    if any(k >= 2**32 for k in key):
        raise ValueError(f"keys: expected ints in [0, 2**32), received {tuple(key)}")
    seq = np.random.SeedSequence(seed % 2**64, spawn_key=(zlib.crc32(tag.encode()), *key))
    return int(seq.generate_state(1, np.uint64)[0])


def offset_seed(seed: int, offset: int) -> int:
    """``seed + offset`` as a seed torch takes: wrapped modulo ``2**64``, which is how torch
    itself maps a negative seed, so the stream is that of ``seed + offset`` wherever that
    lies in range (a derived seed past ``2**64 - 1`` used to overflow inside torch)."""
    return (int(seed) + int(offset)) % 2**64


def check_real(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
) -> float:
    """``value`` as a finite ``float`` in ``[minimum, maximum]`` (open at ``minimum`` when
    ``strict``: e.g. a learning rate ``> 0``); NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name}: expected a real number, received {type(value).__name__}"
            + _one_value_hint(value, "float")
        )
    try:
        out = float(value)
    except OverflowError:  # an int (or Fraction) past float's range: torch's OverflowError
        raise ValueError(
            f"{name}: expected a finite number, received {type(value).__name__} beyond float's "
            f"range (magnitude > {np.finfo(np.float64).max:.3g})"
        ) from None
    if not math.isfinite(out):
        raise ValueError(f"{name}: expected a finite number, received {out}")
    for bound, b in (("minimum", minimum), ("maximum", maximum)):
        if b is not None and math.isnan(b):  # every comparison with NaN is False: no bound
            raise ValueError(f"check_real({name!r}): the {bound} is NaN, which bounds nothing")
    if minimum is not None and (out <= minimum if strict else out < minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name}: expected a number {op} {minimum}, received {out}")
    if maximum is not None and out > maximum:
        raise ValueError(f"{name}: expected a number <= {maximum}, received {out}")
    return out


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a ``bool``; anything else (``"no"``, ``1``, ``None``) is a ``TypeError``
    (a string such as ``"no"`` is truthy and would silently switch a setting on)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name}: expected True or False, received {type(value).__name__} {value!r}")


def check_int_sequence(
    name: str, value: Any, *, minimum: int | None = None, nonempty: bool = True
) -> tuple[int, ...]:
    """``value`` (a sequence of ints; a tensor's or array's entries count) as a tuple of ints
    ``>= minimum``, or an error naming ``name`` (a string is refused, not read as characters;
    an empty sequence is refused when ``nonempty``)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name}: expected a sequence of ints, received {type(value).__name__} {value!r}"
        )
    out = tuple(check_int(f"{name}[{k}]", v, minimum=minimum) for k, v in enumerate(value))
    if nonempty and not out:
        raise ValueError(f"{name}: expected at least one entry, received {value!r}")
    return out


def check_range(name: str, value: Any) -> tuple[float, float]:
    """``(lo, hi)`` as two finite floats with ``lo < hi``, or an error naming ``name``."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (lo, hi), received {value!r}") from None
    lo, hi = check_real(f"{name}[0]", lo), check_real(f"{name}[1]", hi)
    if not hi > lo:
        raise ValueError(f"{name}: expected lo < hi, received ({lo}, {hi})")
    return lo, hi


def did_you_mean(value: Any, options: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` naming the option of ``options`` closest to the string
    ``value`` (a case or ``-``/``_`` slip first, then a close spelling), or ``""``."""
    if not isinstance(value, str):
        return ""
    opts = [str(o) for o in options]

    def norm(text: str) -> str:
        return text.lower().replace("_", "-")

    same = [o for o in opts if norm(o) == norm(value)]
    close = same or difflib.get_close_matches(value, opts, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(
    name: str,
    value: Any,
    required: Iterable[str],
    optional: Iterable[str] | None = (),
    *,
    hint: str = "",
) -> Mapping[str, Any]:
    """``value`` as a ``Mapping`` holding every key of ``required``; any other key must be in
    ``optional`` (``optional=None``: any other keys are allowed). A non-``Mapping`` is a
    ``TypeError``; missing or unknown keys are a ``ValueError`` that names them, the keys
    expected and the keys received. ``hint`` (e.g. ``"from poisson_test_set"``) is added to
    the messages in parentheses."""
    req = list(required)
    opt = None if optional is None else list(optional)
    if opt is None:
        want = f"keys {req} (+ any others)"
    elif not req:
        want = f"keys among {opt}"
    else:
        want = f"keys {req}" + (f" (+ optional {opt})" if opt else "")
    if hint:
        want += f" ({hint})"
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a dict with {want}, received {type(value).__name__}")
    missing = [k for k in req if k not in value]
    allowed = set(req) | set(opt or ())
    unknown = [] if opt is None else sorted(str(k) for k in value if k not in allowed)
    if missing or unknown:
        bad = "; ".join(
            [f"missing {missing}"] * bool(missing) + [f"unknown key(s) {unknown}"] * bool(unknown)
        )
        raise ValueError(
            f"{name}: expected {want}, {bad} (received keys {sorted(map(str, value))})"
        )
    return value


def as_real_array(name: str, value: Any) -> np.ndarray:
    """``value`` (a tensor, array, nested list or number, any shape ``[*]``) as a float64
    numpy array of that shape; ``TypeError`` naming ``name`` for complex values and for what
    is no array of real numbers (a ragged list raised numpy's own unnamed "inhomogeneous
    shape" ``ValueError``, a string its conversion error). Finiteness is not checked."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        complex_values = np.iscomplexobj(value)  # converts: a ragged list fails here
        arr = None if complex_values else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: expected an array of real numbers, received {type(value).__name__}"
        ) from None
    if arr is None:
        raise TypeError(f"{name}: expected real values, received complex")
    return arr


def as_scalar(value: Any) -> Any:
    """A one-element tensor or array as its Python number (other values unchanged), so that
    :func:`check_real` / :func:`check_int` can check it."""
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    numel = getattr(value, "numel", None)  # a torch.Tensor (no torch import needed here)
    if callable(numel) and hasattr(value, "item") and numel() == 1:
        return value.item()
    return value


def check_callback(name: str, fn: Any, args: tuple[Any, ...], labels: tuple[str, ...]) -> None:
    """``fn`` must be callable as ``fn(*args)``, its positional arguments named ``labels`` in
    the message (``TypeError``). A callable without an introspectable signature passes."""
    if not callable(fn):
        raise TypeError(f"{name}: expected a callable or None, received {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # no introspectable signature (some builtins)
        return
    try:
        sig.bind(*args)
    except TypeError as err:
        raise TypeError(
            f"{name}: expected a callable {name}({', '.join(labels)}), received one with signature "
            f"{sig} ({err})"
        ) from None


def check_scalar(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
    one_element: bool = False,
) -> float:
    """:func:`check_real` that also takes a 0-d real tensor (a one-element tensor of any shape
    when ``one_element``, as ``float()`` does); other tensors are refused naming ``name``."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or (value.ndim != 0 and not one_element):
            raise ValueError(
                f"{name}: expected a scalar (a number or a 0-d tensor), received a tensor of "
                f"shape {tuple(value.shape)}"
            )
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name}: expected a real number, received a {value.dtype} tensor")
        value = value.item()
    return check_real(name, value, minimum=minimum, maximum=maximum, strict=strict)


def check_broadcasts(name: str, shape: Any, target: Any, what: str) -> None:
    """Refuse (``ValueError``: ``"{name}: expected {what}, received {shape}"``) a ``shape`` that
    does not broadcast to exactly ``target`` (e.g. per-batch values against a batch shape)."""
    target = tuple(target)
    try:
        ok = tuple(torch.broadcast_shapes(tuple(shape), target)) == target
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected {what}, received {tuple(shape)}")


class MissingPackage(ImportError):
    """An optional package that a call needs is not installed; the message names what to
    install (``pip install "bayesphys[atlas]"``). The ``bayesphys`` command prints it without a
    traceback and exits with status 1.

    Exported as ``bayesphys.MissingPackage``, so a caller can tell a missing optional package
    (``except bayesphys.MissingPackage``) from other errors; as an ``ImportError`` subclass it
    is caught by ``except ImportError`` too."""


def missing_module(*modules: str) -> str | None:
    """The first of ``modules`` (dotted names) that cannot be imported because it is not
    installed, found without importing it (its parent packages are imported); ``None`` when
    all are there. A module already imported counts as there."""
    import importlib.util

    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ModuleNotFoundError:  # a parent package is missing
            return module
        except ValueError:  # imported already, without a spec (e.g. by a test's stub)
            continue
    return None


def require(module: str, pip: str, what: str) -> Any:
    """Import ``module`` for ``what``, or raise ``ImportError`` naming the package to install
    (``pip``): the raw error named the import (``ot``, ``pyro``), not the package (``pot``,
    ``pyro-ppl``), so ``pip install ot`` did not help."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but something it imports is not: its own error
        raise MissingPackage(f"{what} needs the package {pip!r}: pip install {pip}") from err


def check_increasing(
    name: str,
    x: Any,
    *,
    strict: bool = True,
    what: str = "values",
    label: str | None = None,
    hint: str = "",
) -> None:
    """``ValueError`` unless ``x`` (a tensor or array ``[..., n]``) increases along its last
    axis (``strict``: strictly; else never decreases), naming ``name`` and the first pair out
    of order: ``"{name}: expected strictly increasing {what}, received {label}[i] = a then
    {label}[i + 1] = b{hint}"`` (``label`` default ``name``; leading indices of a batched
    ``x`` before ``i``). The one order check of grids, meshes and positions."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 0 or a.shape[-1] < 2:
        return
    d = np.diff(a, axis=-1)
    bad = (d <= 0) if strict else (d < 0)
    if not bad.any():
        return
    *row, i = (int(k) for k in np.argwhere(bad)[0])
    at = "".join(f"{k}, " for k in row)
    lab = name if label is None else label
    order = "strictly increasing" if strict else "non-decreasing"
    raise ValueError(
        f"{name}: expected {order} {what}, received {lab}[{at}{i}] = {float(a[(*row, i)]):.6g} "
        f"then {lab}[{at}{i + 1}] = {float(a[(*row, i + 1)]):.6g}{hint}"
    )


# ---------------------------------------------------------------- memory of dense allocations


#: where the cgroup memory limit is read, in order: cgroup v2, then v1
_CGROUP_MEMORY_FILES = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
)
#: a limit at or above this is "no limit": cgroup v1 writes it as the largest page count in
#: bytes, 2**63 less one page (9223372036854771712 with 4 KiB pages), v2 as "max"
_CGROUP_UNLIMITED = 2**62


def _cgroup_limit(files: tuple[str, ...] = _CGROUP_MEMORY_FILES) -> int | None:
    """This process's cgroup memory limit in bytes, or ``None`` (no limit, or not Linux).

    The first of ``files`` that can be read decides (cgroup v2's ``memory.max`` before v1's
    ``memory.limit_in_bytes``): a positive byte count is the limit, unless it is v1's "no
    limit" (at least :data:`_CGROUP_UNLIMITED`); anything else (v2's ``max``, an empty or
    garbled file) is no limit."""
    for path in files:
        try:
            with open(path, encoding="ascii") as fh:
                text = fh.read().strip()
        except (OSError, ValueError):  # absent, unreadable, or not ASCII
            continue
        if not (text.isascii() and text.isdigit()):
            return None
        value = int(text)
        return value if 0 < value < _CGROUP_UNLIMITED else None
    return None


def dense_memory_limit(device: Any = None) -> int | None:
    """Bytes of memory a computation on ``device`` can hold at most: the card's total memory
    for a CUDA device, the host's physical memory (or this process's cgroup limit, when lower)
    for the CPU and MPS; ``None`` where it cannot be told (then nothing is refused).

    ``device``: a ``torch.device``, a string such as ``"cuda:0"``, or ``None`` (the CPU)."""
    dev = torch.device("cpu" if device is None else device)
    try:
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                return None
            idx = torch.cuda.current_device() if dev.index is None else dev.index
            return int(torch.cuda.get_device_properties(idx).total_memory)
    except (AttributeError, ValueError, OSError, RuntimeError):
        return None
    return _host_memory() if dev.type in ("cpu", "mps") else None


@functools.cache
def _host_memory() -> int | None:
    """The host's physical memory in bytes, or this process's cgroup limit when lower (read
    once: the guards run on every step of some fits); ``None`` where it cannot be told."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    cg = _cgroup_limit()
    return int(total if cg is None else min(total, cg))


def format_bytes(n: float) -> str:
    """``n`` bytes as a short figure in binary units: ``"512 B"``, ``"3.2 MiB"``, ``"1.5 TiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


#: set within :func:`dense_memory_checked`: the caller has checked the sizes (and warned)
_DENSE_MEMORY_CHECKED = ContextFlag("bayesphys_dense_memory_checked")


def dense_memory_checked() -> contextlib.AbstractContextManager[None]:
    """Within this block :func:`check_dense_memory` refuses as always but does not warn:
    the caller has checked the sizes of the dense arrays the block computes beforehand (and
    warned, naming its user's argument), so the helpers it calls, which check them again
    under their own argument names, would only repeat that warning. Keep the block to that
    work (not a user's callback, whose sizes nobody checked)."""
    return _DENSE_MEMORY_CHECKED.raised()


def check_dense_memory(
    name: str, nbytes: float, *, what: str, alternative: str, device: Any = None
) -> None:
    """Refuse, before any work, a computation that would hold ``nbytes`` bytes of dense
    arrays on ``device`` when that is more than the device has (:func:`dense_memory_limit`):
    ``MemoryError`` naming ``name`` (the argument whose size it is), ``what`` (the arrays and
    their shapes), the bytes needed and the ``alternative`` (a structured covariance, a
    subsample, a matrix-free solver). Above half the memory a ``UserWarning`` says the same
    (it may still fit, beside nothing else), except within :func:`dense_memory_checked`.
    Sizes well below that pass silently, so a normal-sized run is untouched; an oversized one
    failed after minutes of swapping, or deep inside torch with "can't allocate memory", or
    the process was killed."""
    limit = dense_memory_limit(device)
    if limit is None or nbytes <= limit / 2:
        return
    dev = torch.device("cpu" if device is None else device)
    where = "the CPU" if dev.type == "cpu" else str(dev)
    text = (
        f"{name}: {what} would need about {format_bytes(nbytes)} of memory, "
        f"{'more than' if nbytes > limit else 'over half of'} the {format_bytes(limit)} "
        f"of {where}; {alternative}"
    )
    if nbytes > limit:
        raise MemoryError(text)
    if not _DENSE_MEMORY_CHECKED.is_raised():
        warnings.warn(text, BayesphysUserWarning, stacklevel=user_stacklevel())
