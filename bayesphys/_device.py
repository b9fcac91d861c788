"""Device and dtype resolution, tensor conversion and checks (seeding: :mod:`._process_state`).

Every stochastic entry point in bayesphys takes ``device=``, ``dtype=`` and ``seed=``;
this module turns those user-facing values into concrete torch objects with clear errors.

Examples
--------
>>> from bayesphys import resolve_device, resolve_dtype
>>> resolve_device("cpu")
device(type='cpu')
>>> resolve_dtype(None)
torch.float64
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from ._checks import check_bool, check_int

__all__ = [
    "resolve_device",
    "model_device",
    "resolve_dtype",
    "check_finite",
    "as_tensor",
]

#: a device, its name (``"cpu"``, ``"cuda:0"``, ``"auto"``) or ``None`` (real aliases, so that
#: ``typing.get_type_hints`` resolves annotations that use them)
DeviceLike = Union[str, torch.device, None]
#: a dtype or its name (``"float32"``), ``None`` for the default
DTypeLike = Union[torch.dtype, str, None]
#: values :func:`as_tensor` converts: a tensor, a numpy array, a (nested) sequence or a number
ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[Any], float]
#: one coordinate axis ``[n]``: a 1-D tensor, array or sequence of numbers
AxisLike = Union[torch.Tensor, np.ndarray, Sequence[float]]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``device`` into a :class:`torch.device`.

    ``None`` and ``"auto"`` pick ``cuda`` when a CUDA device is present, else ``cpu``.
    Asking for CUDA where none is available raises ``ValueError`` instead of silently
    falling back to the CPU.

    Raises
    ------
    ValueError
        unknown device string, a CUDA or MPS device that is not available, or ``"meta"``.
    TypeError
        ``device`` is neither ``str``, :class:`torch.device` nor ``None``.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ValueError(
                f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', received {device!r}"
            ) from err
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise TypeError(
            f"device: expected str, torch.device or None, received {type(device).__name__}"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {dev} was requested but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device: {dev} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) exist"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device: {dev} was requested but MPS is not available here")
    elif dev.type == "meta":
        raise ValueError(
            "device: 'meta' tensors hold no values (nothing can be fitted or sampled on them); "
            "use 'cpu' or 'cuda'"
        )
    elif dev.type != "cpu":
        raise ValueError(f"device: unsupported device type {dev.type!r} (use 'cpu' or 'cuda')")
    return dev


def model_device(device: str | torch.device | None) -> torch.device:
    """Where a model (or a loaded checkpoint) lives: ``None``, every model's default, is the
    CPU; ``"auto"`` opts in to CUDA when present; anything else as :func:`resolve_device`.

    One rule for every component, so that ``Component(...)`` with no ``device`` stays on the
    CPU on a machine with a GPU (as torch's own tensors and modules do) and
    ``Component.load(path)`` returns a model on the CPU whatever device it was saved from.
    """
    return resolve_device("cpu" if device is None else device)


def same_device(a: str | torch.device, b: str | torch.device) -> bool:
    """Whether ``a`` and ``b`` name one device: type and index (``cuda:0`` is not ``cuda:1``);
    ``cuda`` without an index is the current CUDA device, as torch places tensors there."""
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.index == b.index:
        return True
    if a.index is not None and b.index is not None:
        return False
    if a.type == "cuda":
        cur = torch.cuda.current_device()
        return (cur if a.index is None else a.index) == (cur if b.index is None else b.index)
    return True  # e.g. cpu and cpu:0


def check_on_device(
    name: str,
    value: Any,
    device: torch.device,
    whose: str,
    *,
    what: str = "a tensor",
    hint: str = "",
) -> None:
    """``ValueError`` naming ``name`` when ``value`` (a tensor; anything else passes) is not on
    ``device``: ``"{name}: expected {what} on {whose} device {device}, received one on
    {got}"``, followed by ``hint`` with its ``{device}`` and ``{got}`` filled in (e.g. how to
    move one or the other). The one check for an input a module computes with beside its own
    tensors (weights, factors, another argument): torch's own error came from inside a
    product, naming neither the argument nor the devices."""
    # same_device: a device named "cuda" (no index) is the current one, where tensors are
    if isinstance(value, torch.Tensor) and not same_device(value.device, device):
        got = value.device
        raise ValueError(
            f"{name}: expected {what} on {whose} device {device}, received one on {got}"
            + hint.format(device=device, got=got)
        )


def check_module_dtype(name: str, x: Tensor, dtype: torch.dtype, owner: str) -> None:
    """``TypeError`` naming ``name`` and both dtypes when the tensor ``x`` is not in ``dtype``,
    the dtype of the module ``owner`` (its weights), unless autocast is on for ``x``'s device
    (torch then casts inputs and weights itself): torch's own error came from deep inside a
    matrix product without naming the argument."""
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"{name}: expected the {owner}'s dtype {dtype}, received {x.dtype} (convert it "
            f"with {name}.to({dtype}), or the {owner} with .to({x.dtype}))"
        )


def check_module_inputs(owner: str, weight: Tensor, **tensors: Any) -> None:
    """The tensors a network ``owner`` is called with (``name=value``), against one of its
    weights: a ``TypeError`` naming the first that is not a tensor or not in the weight's
    dtype (:func:`check_module_dtype`), a ``ValueError`` naming the first on another device
    (:func:`check_on_device`)."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, received {type(t).__name__}")
        check_module_dtype(name, t, weight.dtype, owner)
        hint = f" (move it with {name}.to('{{device}}'), or the {owner} with .to('{{got}}'))"
        check_on_device(name, t, weight.device, f"the {owner}'s", hint=hint)


def check_float_beside(name: str, value: Any, ref: Tensor, ref_name: str) -> None:
    """The structural checks of a tensor ``value`` computed with the tensor ``ref`` (named
    ``ref_name``), none of which reads a value (no device synchronisation, so fit for a
    training step): ``TypeError`` naming ``name`` unless it is a floating tensor (an integer
    or boolean one was promoted without a word), ``ValueError`` unless it is on ``ref``'s
    device (torch's error named neither argument)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, received {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating tensor, received {value.dtype} (convert it with "
            f"{name}.to({ref.dtype}))"
        )
    hint = f" (move it with {name}.to('{{device}}'))"
    check_on_device(name, value, ref.device, f"{ref_name}'s", hint=hint)


def _checked_device(device: Any) -> torch.device | None:
    """``device`` as :func:`resolve_device` reads it (``None`` stays ``None``): a string, or a
    :class:`torch.device` of CUDA / MPS (an absent one is named, as for a string); other
    :class:`torch.device` objects pass as they are; anything else is a ``TypeError`` (an int
    was silently ignored)."""
    if device is None:
        return None
    if isinstance(device, str) or (
        isinstance(device, torch.device) and device.type in ("cuda", "mps")
    ):
        return resolve_device(device)
    if isinstance(device, torch.device):
        return device
    raise TypeError(f"device: expected str, torch.device or None, received {type(device).__name__}")


def _stream_device(device: Any) -> torch.device:
    """The device whose random stream :func:`seeded`, :func:`streams_kept` and
    :func:`make_generator` use: ``device`` as :func:`_checked_device` reads it, ``None`` the
    CPU (as for a model, :func:`model_device`; it failed with an ``AttributeError`` on
    ``None`` or torch's argument list). Not :func:`model_device`: a :class:`torch.device` of
    another type (``meta``, ``xpu``) passes unchecked, since only a CUDA device has a stream
    of its own here, whereas a model refuses to be placed there."""
    dev = _checked_device(device)
    return torch.device("cpu") if dev is None else dev


_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def resolve_dtype(
    dtype: torch.dtype | str | None = None, default: torch.dtype = torch.float64
) -> torch.dtype:
    """Return a floating torch dtype; ``None`` gives ``default`` (float64 for linear algebra),
    which is checked as ``dtype`` is (a name such as ``"float32"`` read as one; an integer
    dtype refused): ``default="float32"`` came back as the string, ``torch.int64`` as it was."""
    expected = "a floating dtype (float16, bfloat16, float32 or float64)"
    if dtype is None:
        try:
            return _resolve_dtype(default, torch.float64, expected)
        except (TypeError, ValueError) as err:
            raise type(err)(str(err).replace("dtype:", "default:", 1)) from None
    return _resolve_dtype(dtype, default, expected)


def _resolve_dtype(
    dtype: torch.dtype | str | None, default: torch.dtype, expected: str, reason: str = ""
) -> torch.dtype:
    if dtype is None:
        return default
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        dt = getattr(torch, name, None)
        if not isinstance(dt, torch.dtype):
            raise ValueError(f"dtype: unknown dtype {dtype!r} (expected {expected}){reason}")
        dtype = dt
    if not isinstance(dtype, torch.dtype):
        raise TypeError(
            f"dtype: expected torch.dtype, str or None, received {type(dtype).__name__}"
        )
    if dtype not in _FLOAT_DTYPES:
        # float8 types are "floating" too, but nothing (not even isfinite) runs on them
        raise ValueError(f"dtype: expected {expected}, received {dtype}{reason}")
    return dtype


def single_or_double(
    dtype: torch.dtype | str | None, why: str = "", default: torch.dtype = torch.float64
) -> torch.dtype:
    """``dtype`` if it is float32 or float64 (``None`` gives ``default``; a name such as
    ``"float32"`` is read as :func:`resolve_dtype` reads it); a ``ValueError`` naming ``dtype``
    otherwise (``why``: the reason, appended in parentheses). For models whose linear algebra
    or kernels have no half-precision path (Cholesky, lstsq, ``cdist``): an integer or half
    dtype gets one message listing the two accepted ones."""
    reason = f" ({why})" if why else ""
    resolved = _resolve_dtype(dtype, default, "torch.float32 or torch.float64", reason)
    if resolved not in (torch.float32, torch.float64):
        raise ValueError(
            f"dtype: expected torch.float32 or torch.float64, received {resolved}{reason}"
        )
    return resolved


def values_as_tensor(value: Any) -> torch.Tensor:
    """``value`` (not a tensor) as a tensor without losing digits: a non-empty list or tuple of
    tensors is stacked in their own dtype and device, without their graph (numpy cannot read
    one that requires grad or lives on a GPU); anything else goes through numpy, so Python
    floats stay float64 (``torch.as_tensor`` makes a list of them float32). Raises what
    ``torch.stack`` / numpy raise (``TypeError``, ``ValueError``, ``RuntimeError``): the
    caller names the argument."""
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, torch.Tensor) for v in value)
    ):
        return torch.stack([v.detach() for v in value])
    return torch.as_tensor(torch_readable(np.asarray(value)))


def torch_readable(arr: np.ndarray) -> np.ndarray:
    """``arr``, or a copy of it where torch cannot share its memory as it is: a read-only array
    (pandas values under copy-on-write, ``np.broadcast_to``, a read-only memmap: torch shared
    its memory and warned, at the user's data, that it "is not writable" and writing to the
    tensor "will result in undefined behavior") or one with a negative stride (``np.flip``,
    ``a[::-1]``: torch refuses those, "At least one stride in the given numpy array is
    negative", which surfaced as a dtype "torch has no dtype for")."""
    if not arr.flags.writeable or any(s < 0 for s in arr.strides):
        return arr.copy()
    return arr


def plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a plain ``torch.Tensor`` (the same memory and autograd history) when it is of a
    user's subclass (``class T(torch.Tensor)``); a plain tensor or an ``nn.Parameter`` as it
    is. A model's data kept the subclass, and so did everything computed from them (a GP
    kernel's frequencies from a grid axis): its ``save`` then refused the state ("is of type
    T, which a checkpoint cannot hold"), after the fit."""
    if type(t) is torch.Tensor or isinstance(t, torch.nn.Parameter):
        return t
    return t.as_subclass(torch.Tensor)


def array_as_tensor(value: Any, **kwargs: Any) -> torch.Tensor:
    """``torch.as_tensor(value, **kwargs)`` (same dtype rules: a list of Python floats is
    float32), with a numpy array that torch cannot take as it is (read-only, or with negative
    strides) copied first (:func:`torch_readable`)."""
    if isinstance(value, np.ndarray):
        value = torch_readable(value)
    return torch.as_tensor(value, **kwargs)


def _numbers_as_tensor(name: str, value: Any, expected: str) -> torch.Tensor:
    """``value`` (not a tensor) as a tensor via numpy, or a ``TypeError`` naming ``name`` that
    says why torch cannot hold it: integers past int64 (``[2**70]``, ``[2**63]``), numpy's
    extended precision (``np.longdouble``: no torch dtype), non-numbers or ragged lists."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name}: expected {expected}, received {type(value).__name__} ({err})"
        ) from err
    arr = torch_readable(arr)
    try:
        return torch.as_tensor(arr)
    except (TypeError, ValueError, RuntimeError) as err:
        kind = arr.dtype.kind
        if kind in "fc":
            why = (
                f"of dtype {arr.dtype}, which torch has no dtype for; convert it with "
                ".astype(np.float64) (or np.complex128)"
            )
        elif kind == "u" or (kind == "O" and any(type(v) is int for v in arr.reshape(-1).tolist())):
            why = "holding integers beyond int64's range; pass them as floats if that is meant"
        else:
            why = f"of dtype {arr.dtype} (not numbers)"
        raise TypeError(
            f"{name}: expected {expected}, received {type(value).__name__} {why}"
        ) from err


def check_finite(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` if ``value`` holds NaN or Inf."""
    if isinstance(value, torch.Tensor):
        t = value
    else:
        t = _numbers_as_tensor(name, value, "numbers (a tensor or array)")
    if t.device.type == "meta":  # shapes only: its values cannot be read (torch raised
        # NotImplementedError deep inside the caller)
        raise ValueError(f"{name}: expected values, received a tensor on the 'meta' device")
    if (t.is_floating_point() or t.is_complex()) and not _surely_finite(t):
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            n = int(bad.sum())
            raise ValueError(f"{name}: expected finite values, received {n} NaN/Inf entries")


def _surely_finite(t: torch.Tensor) -> bool:
    """Whether the floating or complex tensor ``t`` ``[*]`` surely holds no NaN or Inf, from
    reductions that allocate nothing of its size: its smallest and largest entries finite
    (both NaN when it holds one) and its sum not NaN. The ``isfinite`` mask and its
    temporaries held 1.7 times the tensor (670 MB for 1e8 float32 draws) and took ~10x as long;
    it is formed only when this answers ``False`` (a non-finite entry, an empty or a sparse
    tensor, a sum of huge values of both signs), to count the bad entries or clear them."""
    if t.numel() == 0 or t.layout != torch.strided:
        return False
    with torch.no_grad():
        try:
            r = torch.view_as_real(t) if t.is_complex() else t
            lo, hi = torch.aminmax(r)
            return bool(torch.isfinite(lo) & torch.isfinite(hi) & ~torch.isnan(r.sum()))
        except RuntimeError:  # a dtype or device without these reductions: the mask decides
            return False


# torch has no public test for a torch.func transform's wrapper tensor (vmap's BatchedTensor,
# grad's and jvp's GradTrackingTensor); its private one, where this torch has it
_IS_WRAPPED = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)


def values_readable(t: Tensor) -> bool:
    """Whether the values of the tensor ``t`` ``[*]`` can be read where it is: ``False`` for a
    :mod:`torch.func` transform's wrapper (under ``vmap``, ``jacfwd``, ``jacrev``, ``grad``,
    ``jvp``: reading one fails inside ``vmap`` and takes the value out of the transform
    elsewhere), for a tensor on the ``meta`` device (shapes only) and while
    :func:`torch.compile` traces; ``True`` for a plain tensor, one that requires grad or a
    ``torch.autograd.forward_ad`` dual included."""
    if torch.compiler.is_compiling() or t.device.type == "meta":
        return False
    return _IS_WRAPPED is None or not _IS_WRAPPED(t)


def check_finite_input(name: str, value: Any) -> None:
    """:func:`check_finite` where the values can be read (:func:`values_readable`): a user's
    concrete tensor ``[*]`` with a NaN or Inf is refused by name, while the same function run
    under a :mod:`torch.func` transform (whose wrapped values cannot be tested), or given a
    ``meta`` tensor (left to the caller's device checks), is left alone."""
    if isinstance(value, Tensor) and not values_readable(value):
        return
    check_finite(name, value)


def as_tensor(
    name: str,
    value: Any,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    ndim: int | None = None,
    finite: bool = True,
    real: bool = False,
) -> torch.Tensor:
    """Convert ``value`` to a tensor with checks that name the argument.

    Returns a tensor of ``value``'s own shape ``[*]`` (a number: ``[]``; nested lists or an
    array ``(n_1, ..., n_k)``: ``[n_1, ..., n_k]``), in ``dtype`` and on ``device`` when given.
    As with ``torch.as_tensor``, nothing is copied that need not be: a tensor already in
    ``dtype`` on ``device`` is returned itself (a tensor subclass as a plain tensor on the same
    memory), and a writable array's memory is shared (an in-place edit of the result changes
    ``value``; a read-only array is copied).

    A cast to an integer ``dtype`` that would change a value is refused (``ValueError``):
    fractional or non-finite floats, and numbers outside the dtype's range (which would wrap).

    Parameters
    ----------
    name
        argument name used in error messages.
    dtype
        a ``torch.dtype`` or its name (``"float64"``); ``None`` keeps the value's own.
    ndim
        required number of dimensions (``None``: any); ``ndim=1`` wants ``[n]``.
    finite
        refuse NaN/Inf.
    real
        refuse complex values (``TypeError``). Complex values are refused whatever ``real``
        says when ``dtype`` is a real type: the cast would drop the imaginary part with only
        a warning.
    """
    if isinstance(value, torch.Tensor):
        t = plain_tensor(value)
    else:
        t = _numbers_as_tensor(name, value, "a tensor or array")
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype)
    if dtype is not None and not isinstance(dtype, torch.dtype):
        # an int or a numpy dtype failed with an AttributeError further down
        raise TypeError(
            f"dtype: expected torch.dtype, str or None, received {type(dtype).__name__} {dtype!r}"
        )
    if ndim is not None:
        ndim = check_int("ndim", ndim, minimum=0)  # ndim="1" refused every tensor
    finite, real = check_bool("finite", finite), check_bool("real", real)
    if t.is_complex() and (real or (dtype is not None and not dtype.is_complex)):
        raise TypeError(f"{name}: expected real values, received complex ({t.dtype})")
    device = _checked_device(device)
    integral = dtype is not None and not (
        dtype.is_floating_point or dtype.is_complex or dtype == torch.bool
    )
    if integral and t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or not torch.equal(t, t.trunc()):
            raise ValueError(
                f"{name}: expected whole numbers for {dtype}, received fractional or non-finite "
                "values (the cast would truncate them)"
            )
    if integral and t.numel() and not (t.is_complex() or t.dtype == torch.bool):
        # integers too: int64 -1 cast to uint8 gave 255, [300] to int8 gave 44
        info = torch.iinfo(dtype)
        lo, hi = t.min().item(), t.max().item()
        if lo < info.min or hi > info.max:
            raise ValueError(
                f"{name}: expected values in [{info.min}, {info.max}] for {dtype}, received "
                f"[{lo:g}, {hi:g}] (the cast would wrap them)"
            )
    if finite:  # before the cast: finite values that overflow it get a message of their own
        check_finite(name, t)
    source = t
    if dtype is not None or device is not None:
        t = t.to(
            dtype=dtype if dtype is not None else t.dtype,
            device=device if device is not None else t.device,
        )
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, received shape {tuple(t.shape)}")
    if finite and t.dtype != source.dtype and (t.is_floating_point() or t.is_complex()):
        if not bool(torch.isfinite(t).all()):  # finite before the cast (checked above)
            check_fits_dtype(name, source, t.dtype)
    return t


def check_fits_dtype(name: str, t: torch.Tensor, dtype: torch.dtype) -> None:
    """Refuse (``ValueError`` naming ``name``) finite values of ``t`` ``[*]`` whose magnitude
    exceeds the largest finite value of the floating ``dtype`` they are to be cast to: the
    cast would make them Inf, and a later check would call them "NaN/Inf entries"."""
    if not (dtype.is_floating_point or dtype.is_complex) or not t.numel():
        return
    top = torch.finfo(dtype).max
    big = float(t.abs().max())
    if big > top:
        raise ValueError(
            f"{name}: values up to {big:.3g} in magnitude overflow {dtype} (largest "
            f"{top:.3g}); rescale them or use a wider dtype"
        )


def own_memory(t: torch.Tensor, value: Any) -> torch.Tensor:
    """``t`` (made from the caller's ``value``), or a copy of it where it shares memory with
    ``value``: a model that keeps a view of a caller's tensor or numpy array sees the caller's
    later in-place edits (``src.mul_(0)``, ``arr[...] = 0``). Shapes and dtype unchanged."""
    if isinstance(value, torch.Tensor):
        shared = t.untyped_storage().data_ptr() == value.untyped_storage().data_ptr()
    elif isinstance(value, np.ndarray) and t.device.type == "cpu":
        try:
            shared = np.may_share_memory(t.detach().numpy(), value)
        except TypeError:  # a dtype numpy lacks (bfloat16): converted, so not shared
            shared = False
    else:
        shared = False
    return t.clone() if shared and t.numel() else t
