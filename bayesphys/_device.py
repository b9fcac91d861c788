"""Device and dtype resolution, seeding.

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

import random
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from ._checks import check_int, check_seed

__all__ = [
    "resolve_device",
    "model_device",
    "resolve_dtype",
    "seed_everything",
    "seeded",
    "torch_threads",
    "make_generator",
    "sobol_engine",
    "seeded_exclusive",
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
    """Return a floating torch dtype; ``None`` gives ``default`` (float64 for linear algebra)."""
    return _resolve_dtype(
        dtype, default, "a floating dtype (float16, bfloat16, float32 or float64)"
    )


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


# The process-wide state a model's construction changes for its length (python's, numpy's and
# torch's global random streams, torch's default dtype): a re-entrant lock held by
# :func:`seeded_build` (whose block only builds networks, never waits on another thread) and,
# briefly, by :func:`seed_everything`; so two threads building seeded models at once each get
# the weights of a build on its own and each build puts back what it found (interleaved, a
# thread restored the other's values: the caller was left at float32 and other weights came
# out). The public :func:`seeded` / :func:`default_dtype` do not take it: held across a user's
# block (which may wait on a thread pool whose tasks seed or build), it deadlocked
_GLOBAL_STATE = threading.RLock()


def seed_everything(seed: int | None) -> None:
    """Seed python, numpy and torch (all devices). ``None`` leaves the state untouched.

    These generators are process-wide: a thread seeding them while another thread builds a
    seeded bayesphys model waits for that build to end."""
    if seed is None:
        return
    seed = check_seed("seed", seed)
    with _GLOBAL_STATE:
        random.seed(int(seed))
        np.random.seed(int(seed) % 2**32)
        torch.manual_seed(int(seed))


def in_new_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a short-lived thread: torch's thread count there is the one new threads
    start with (reading or setting it leaves every running thread's own count alone)."""
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(fn(*args)), name="bayesphys-threads")
    worker.start()
    worker.join()
    return out[0]


# held while a thread's count changes and the count new threads start with is put back
# (set_num_threads sets both): no other block reads or sets that count in between
_THREAD_COUNT = threading.RLock()


def new_thread_count() -> int:
    """The torch intra-op count that threads not yet using torch start with (process-wide)."""
    with _THREAD_COUNT:
        return in_new_thread(torch.get_num_threads)


def set_thread_counts(own: int, new: int | None = None) -> None:
    """Set this OS thread's torch count to ``own`` and the count new threads start with to
    ``new`` (``None``: the one it was). ``torch.set_num_threads`` sets both; this sets this
    thread's count first, so it is right even when the short-lived thread that reads or
    restores the other cannot start."""
    with _THREAD_COUNT:
        fresh = new
        try:
            if fresh is None:
                fresh = in_new_thread(torch.get_num_threads)
        finally:
            torch.set_num_threads(own)
        in_new_thread(torch.set_num_threads, fresh)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads and give the caller's count back after
    (small networks run fastest on one thread; a library call must not keep the change).

    torch keeps one count per OS thread (OpenMP's), and ``torch.set_num_threads`` also sets
    the count threads not yet using torch start with, for the whole process: that one is put
    back at once, so threads started while the block runs (another fit's thread pool) keep
    their usual count (before, they started with ``n``).

    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    n = check_int("n", n, minimum=1)
    before = torch.get_num_threads()
    try:  # entering inside: a failed entry (a thread that cannot start) gives ``before`` back
        set_thread_counts(n)
        yield
    finally:
        set_thread_counts(before)


@contextmanager
def seeded(seed: int | None, device: torch.device | str | None = "cpu") -> Iterator[None]:
    """Run a block as if after :func:`seed_everything` (``seed``), leaving the caller's random
    states as they were.

    Inside the block python's, numpy's and torch's CPU generators (and the generator of
    ``device`` when it is a CUDA device; ``None`` is the CPU, a model's default) start from
    ``seed``, so a model built there gets the
    same initial weights as after ``seed_everything(seed)``; on exit every one of those states is
    restored, so constructing a seeded model does not reseed the user's global streams.
    ``seed=None`` runs the block on the global streams unchanged (and advances them), as an
    unseeded construction always did.

    The streams are process-wide, so this is not thread-safe: another thread drawing from (or
    seeding) them while the block runs sees (or changes) the seeded state, and two overlapping
    blocks restore each other's states. Draw from a generator of your own in threads; the
    package's models build their networks under a lock (:func:`seeded_build`).

    >>> import torch
    >>> from bayesphys import seeded
    >>> before = torch.get_rng_state()
    >>> with seeded(0):
    ...     a = torch.rand(2)
    >>> bool(torch.equal(before, torch.get_rng_state()))
    True
    >>> with seeded(0):
    ...     bool(torch.equal(a, torch.rand(2)))
    True
    """
    if seed is None:
        yield
        return
    seed = int(check_seed("seed", seed))
    dev = _stream_device(device)
    cuda: list[int] = []
    if dev.type == "cuda":
        cuda = [dev.index if dev.index is not None else torch.cuda.current_device()]
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=cuda):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.default_generator.manual_seed(seed)
            for idx in cuda:
                torch.cuda.default_generators[idx].manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@contextmanager
def streams_kept(device: torch.device | str | None = "cpu") -> Iterator[None]:
    """Run a block that may draw from the global random streams (python's, numpy's, torch's CPU
    generator and that of ``device`` when it is a CUDA device) and put them back as they were
    after it, under the lock of :func:`seeded_build`: loading a model built unseeded rebuilds it
    (drawing initial weights that the file's then replace) without advancing the caller's
    streams. Process-wide, like :func:`seeded`.

    >>> import torch
    >>> before = torch.get_rng_state()
    >>> with streams_kept():
    ...     _ = torch.rand(3)
    >>> bool(torch.equal(before, torch.get_rng_state()))
    True
    """
    dev = _stream_device(device)
    cuda: list[int] = []
    if dev.type == "cuda":
        cuda = [dev.index if dev.index is not None else torch.cuda.current_device()]
    with _GLOBAL_STATE:
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=cuda):
                yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Torch's default dtype set to ``dtype`` inside the block, the caller's back after (even
    on an error). Models build their networks under float32 and cast them after, so a seeded
    model's initial weights do not depend on the caller's default dtype (float64 draws other
    numbers: a spawned worker and the caller's process gave other models).

    The default dtype is process-wide, so this is not thread-safe: tensors other threads create
    without a ``dtype`` while the block runs get ``dtype``, and overlapping blocks restore each
    other's values (:func:`seeded_build` serialises the package's own builds)."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(prev)


@contextmanager
def seeded_exclusive(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """:func:`seeded` under the process-wide lock of :func:`seeded_build`, for a block that
    draws from the global streams throughout (pyro's NUTS, whose effect-handler stack is
    process-wide too: two NUTS runs in two threads failed with "cannot install a Messenger
    instance twice", and the other one drew the first one's numbers). Such blocks in several
    threads run one after the other; the block must not wait on another thread."""
    with _GLOBAL_STATE, seeded(seed, device):
        yield


@contextmanager
def seeded_build(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Build a model's networks: :func:`seeded` (``seed``, ``device``) and :func:`default_dtype`
    (float32) together, under a process-wide re-entrant lock, so that builds in several threads
    run one after the other, each with the weights it would get alone, and each restores what
    it found. The block must only build (never wait on another thread: one that needs the lock
    would wait for ever)."""
    with _GLOBAL_STATE, seeded(seed, device), default_dtype(torch.float32):
        yield


def sobol_engine(dim: int, seed: int) -> torch.quasirandom.SobolEngine:
    """A scrambled :class:`torch.quasirandom.SobolEngine` of dimension ``dim`` whose draws do
    not depend on torch's default dtype.

    The engine computes its first point when it is built, in the default dtype (``draw(n,
    dtype=torch.float64)`` casts that stored point): under a float64 default, or while another
    thread had set one, the first point of every net was rounded differently and a float64
    fit went elsewhere. Here that point is recomputed in float32 (torch's own default, under
    which every committed result was computed), without touching the process-wide default
    dtype or taking a lock (the scrambling uses the engine's own seeded generator)."""
    eng = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
    if not all(hasattr(eng, a) for a in ("_first_point", "quasi", "MAXBIT")):  # pragma: no cover
        raise RuntimeError(
            "sobol_engine: this torch's SobolEngine lacks _first_point / quasi / MAXBIT, "
            "which the float32 first point is recomputed from"
        )
    eng._first_point = (eng.quasi.to(torch.float32) / 2**eng.MAXBIT).reshape(1, -1)
    return eng


def make_generator(
    seed: int | None, device: torch.device | str | None = "cpu"
) -> torch.Generator | None:
    """A :class:`torch.Generator` on ``device`` (``None``: the CPU) seeded with ``seed``
    (``None`` -> ``None``)."""
    if seed is None:
        return None
    seed = check_seed("seed", seed)
    gen = torch.Generator(device=_stream_device(device))
    gen.manual_seed(int(seed))
    return gen


def check_finite(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` if ``value`` holds NaN or Inf."""
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"{name}: expected numbers (a tensor or array), received {type(value).__name__}"
            ) from err
    if t.device.type == "meta":  # shapes only: its values cannot be read (torch raised
        # NotImplementedError deep inside the caller)
        raise ValueError(f"{name}: expected values, received a tensor on the 'meta' device")
    if t.is_floating_point() or t.is_complex():
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            n = int(bad.sum())
            raise ValueError(f"{name}: expected finite values, received {n} NaN/Inf entries")


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
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    ndim: int | None = None,
    finite: bool = True,
    real: bool = False,
) -> torch.Tensor:
    """Convert ``value`` to a tensor with checks that name the argument.

    Returns a tensor of ``value``'s own shape ``[*]`` (a number: ``[]``; nested lists or an
    array ``(n_1, ..., n_k)``: ``[n_1, ..., n_k]``), in ``dtype`` and on ``device`` when given.

    Parameters
    ----------
    name: argument name used in error messages.
    ndim: required number of dimensions (``None``: any); ``ndim=1`` wants ``[n]``.
    finite: refuse NaN/Inf.
    real: refuse complex values (``TypeError``). Complex values are refused whatever ``real``
        says when ``dtype`` is a real type: the cast would drop the imaginary part with only
        a warning.
    """
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name}: expected a tensor or array, received {type(value).__name__}"
            ) from err
    if t.is_complex() and (real or (dtype is not None and not dtype.is_complex)):
        raise TypeError(f"{name}: expected real values, received complex ({t.dtype})")
    device = _checked_device(device)
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype)
    if (
        dtype is not None
        and t.is_floating_point()
        and not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)
    ):
        info = torch.iinfo(dtype)
        if not bool(torch.isfinite(t).all()) or not torch.equal(t, t.trunc()):
            raise ValueError(
                f"{name}: expected whole numbers for {dtype}, received fractional or non-finite "
                "values (the cast would truncate them)"
            )
        if t.numel() and (float(t.min()) < info.min or float(t.max()) > info.max):
            raise ValueError(
                f"{name}: expected values in [{info.min}, {info.max}] for {dtype}, received "
                f"[{float(t.min()):g}, {float(t.max()):g}] (the cast would wrap them)"
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
