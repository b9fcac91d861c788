"""Shared model plumbing: :class:`FitResult`, a guarded optimisation loop, checkpoints.

Every component's ``fit`` returns a :class:`FitResult`. :func:`optimize` runs a step function
with a tqdm progress bar, stops on a non-finite loss and restores the last good state, so a
diverging fit never leaves a model full of NaNs. A :class:`DivergenceGuard` does the same for
steps that must not update on a non-finite loss (stateful optimisers such as Adam) and for fits
run as several :func:`optimize` calls (chunks between callbacks).

Example
-------
>>> import torch
>>> from bayesphys import optimize
>>> x = torch.nn.Parameter(torch.tensor(3.0))
>>> opt = torch.optim.SGD([x], lr=0.1)
>>> def step():
...     opt.zero_grad(); loss = (x - 1) ** 2; loss.backward(); opt.step(); return loss
>>> res = optimize(step, steps=200, params=[x], progress=False)
>>> round(float(x.detach()), 3), res.converged
(1.0, True)
"""

from __future__ import annotations

import collections
import copy
import io
import math
import re
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._checks import check_bool, check_int, check_real
from ._progress import progress_bar
from ._repr import fields_repr
from ._stack import user_stacklevel
from ._version import __version__

__all__ = [
    "FitResult",
    "optimize",
    "save_checkpoint",
    "load_checkpoint",
    "DivergenceError",
    "DivergenceGuard",
]


@contextmanager
def autograd_on() -> Iterator[None]:
    """Autograd on in any caller's mode, the caller's mode back in force afterwards: a context
    manager, or a decorator (``@autograd_on()``) of a fit, which needs gradients and called
    inside ``torch.no_grad()`` or ``torch.inference_mode()`` (an evaluation block, a validation
    hook) failed at its first backward with torch's "element 0 of tensors does not require
    grad". Inside ``torch.inference_mode()``, ``enable_grad`` alone leaves autograd off."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def warn_untrained(where: str, steps_done: int) -> None:
    """A ``UserWarning`` at the user's line when ``where`` (a model's posterior) is asked of a
    model that has trained no step: its answer comes from the initial weights (a skipped or
    failed fit cell in a notebook gave confident-looking nonsense without a word)."""
    if steps_done == 0:
        warnings.warn(
            f"{where}: the model has not been trained (0 steps), so this comes from its "
            "initial weights; call fit() first",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


class DivergenceError(RuntimeError):
    """Raised (optionally) when a fit produces a non-finite loss."""


@dataclass
class FitResult:
    """Outcome of a fit.

    Attributes
    ----------
    loss_history: loss per step (floats).
    seconds: wall time of the fit.
    converged: whether the stopping criterion was met (``False`` after divergence). With a
        tolerance it is the tolerance's test, and a fit that ran out of steps has ``False``;
        a fixed-budget fit (``tol=None``) has no other criterion than its step budget, so one
        that ran all its steps without diverging has ``True`` (``message`` says "max steps").
        A solver may add stops of its own, named in ``message`` (e.g. a Levenberg-Marquardt
        damping stall, "stalled ...", with or without a tolerance; ``True`` only where the
        solver's own test says the iterate is a minimum).
    steps: number of steps taken.
    message: human-readable status ("converged", "max steps", "diverged at step k ...").
    extra: component-specific figures (e.g. best checkpoint loss).
    """

    loss_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    converged: bool = False
    steps: int = 0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        return self.loss_history[-1] if self.loss_history else math.nan

    def __repr__(self) -> str:
        # the history and extra by size (a 1200-step fit's repr was 24 000 characters)
        try:
            final = self.final_loss
        except Exception:  # a user's history of another type: shown by short() below
            final = None
        return fields_repr(
            self,
            ("steps", "converged", "message", "seconds"),
            final_loss=final,
            loss_history=self.loss_history,
            extra=self.extra,
        )


def _loss_value(loss: Any, where: str) -> float:
    """The float value of a scalar loss (a number or a one-element tensor)."""
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"{where}: expected a scalar loss (a float or a one-element tensor), received a "
                f"tensor of shape {tuple(loss.shape)}"
            )
        return float(loss.detach())
    if (
        isinstance(loss, bool)
        or not isinstance(loss, (int, float))
        and not hasattr(loss, "__float__")
    ):
        raise TypeError(
            f"{where}: expected a scalar loss (a float or a one-element tensor), received "
            f"{type(loss).__name__} {loss!r}"
        )
    return float(loss)


def _as_params(params):
    """A module as it is; a single tensor as a one-element list; an iterable as a list."""
    if params is None or isinstance(params, torch.nn.Module):
        return params
    if isinstance(params, torch.Tensor):
        return [params]
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(
            f"params: expected a tensor, an iterable of tensors or a torch.nn.Module, received "
            f"{type(params).__name__}"
        )
    out = list(params)
    bad = [type(p).__name__ for p in out if not isinstance(p, torch.Tensor)]
    if bad:
        raise TypeError(f"params: expected tensors or a torch.nn.Module, received {bad}")
    return out


def _snapshot(params: Iterable[torch.Tensor] | torch.nn.Module | None):
    """``(live, copy)``: the live tensors of ``params`` (a module's state-dict entries or the
    listed tensors, aliases that stay valid while they are updated in place, as optimisers do)
    and a copy of their values, refreshed in place by :func:`_refresh` (no allocation per step)."""
    if params is None:
        return None
    live = params.state_dict() if isinstance(params, torch.nn.Module) else dict(enumerate(params))
    copied = {
        k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        for k, v in live.items()
    }
    return live, copied


def _refresh(snap) -> None:
    """Copy the current values of the live tensors into the snapshot's buffers."""
    if snap is None:
        return
    live, buf = snap
    keys = [k for k, v in live.items() if isinstance(v, torch.Tensor)]
    with torch.no_grad():
        torch._foreach_copy_([buf[k] for k in keys], [live[k].detach() for k in keys])


def _restore(params, snap) -> None:
    if params is None or snap is None:
        return
    snap = snap[1]
    if isinstance(params, torch.nn.Module):
        params.load_state_dict(snap)
        return
    with torch.no_grad():
        for p, s in zip(params, snap.values()):
            p.copy_(s)


class DivergenceGuard:
    r"""The last verified values of a fit's tensors, checked by the step before each update.

    A loss evaluated at parameters :math:`\theta_k` verifies :math:`\theta_k` only once it is
    known, i.e. before the update that moves on to :math:`\theta_{k+1}`. So the step function
    computes its loss, calls :meth:`admit` and updates only if that returns ``True``::

        loss = compute_loss()
        if not guard.admit(loss):  # non-finite: the verified values are back, no update
            return loss
        loss.backward(); optimizer.step(); return loss

    ``optimize(step, ..., guard=guard)`` then stops on the non-finite loss and reports it. Two
    things follow. A non-finite loss never reaches ``backward()``/``optimizer.step()``, so the
    optimiser's state (e.g. Adam's moments) only ever sees finite losses and is not snapshotted:
    after a restore it holds the moments of the last finite update, finite, and training can go
    on from there. And the snapshot lives in the guard, not in one :func:`optimize` call, so a fit
    run as several calls (chunks between callbacks) keeps one verified state throughout; the
    guard also counts the admitted steps (:attr:`steps`), which numbers the steps of
    :func:`optimize`'s messages across the calls.

    Parameters
    ----------
    params: tensors (updated in place) or a module (its state dict: parameters and buffers)
        whose current values are the first verified state. Cost: two copies of them (the
        verified state and the one before it), one refreshed in place (one fused copy) on each
        finite loss.

    Example
    -------
    >>> import torch
    >>> x = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    >>> opt = torch.optim.Adam([x], lr=2.0)
    >>> guard = DivergenceGuard([x])
    >>> def step():
    ...     opt.zero_grad(); loss = torch.log(x)
    ...     if guard.admit(loss):
    ...         loss.backward(); opt.step()
    ...     return loss
    >>> res = optimize(step, steps=5, guard=guard, progress=False)
    >>> res.message, float(x.detach()), guard.steps
    ('diverged at step 1 (loss nan); restored the last good state', 1.0, 1)
    """

    def __init__(self, params: Iterable[torch.Tensor] | torch.nn.Module):
        if params is None:
            raise ValueError("params: expected tensors or a torch.nn.Module, received None")
        self._params = _as_params(params)
        self._snap = _snapshot(self._params)
        # the verified state before the last admitted one (admit_gradients can take that back)
        self._prev = _snapshot(self._params)
        self._checks = 0  # calls of admit(), to check that a step consulted the guard
        #: number of finite losses admitted so far (steps taken under this guard)
        self.steps = 0
        #: why the last step was refused (None: not refused), for :func:`optimize`'s message
        self.reason: str | None = None
        self._admitted = False  # the last admit() verified the current values

    def admit(self, loss: torch.Tensor | float) -> bool:
        """``True`` if ``loss`` (a scalar) is finite: the current values, which it was computed
        from, become the verified state. ``False`` otherwise: the verified values are restored
        and the step must not update (no ``backward()``, no optimiser step)."""
        self._checks += 1
        self.reason = None
        self._admitted = False
        val = _loss_value(loss, "loss")
        if not math.isfinite(val):
            self.reason = f"loss {val}"
            self.restore()
            return False
        self._snap, self._prev = self._prev, self._snap
        _refresh(self._snap)
        self.steps += 1
        self._admitted = True  # admit_gradients may still take these values back, once
        return True

    def admit_gradients(self, tensors: Iterable[torch.Tensor] | torch.nn.Module) -> bool:
        r"""After ``backward()`` (and any clipping), before the optimiser step: ``True`` if every
        gradient :math:`g` of ``tensors`` has finite :math:`g^2` in its own dtype -- what Adam's
        second moment accumulates. ``False`` otherwise (a finite but huge loss can have
        gradients whose squares overflow float32, which would leave Adam's moments infinite and
        every later update NaN or zero): the update is refused, the verified values stay, and
        the step must return a non-finite loss so that :func:`optimize` stops; :attr:`reason`
        says why. The values whose gradients overflowed are not kept: the state verified before
        them is restored (so the guard holds two copies of the tensors)."""
        ts = tensors.parameters() if isinstance(tensors, torch.nn.Module) else tensors
        gs = [g.detach() for t in ts if (g := t.grad) is not None]
        if not gs:
            return True
        # max |g| of each tensor in one fused call (inf and NaN propagate); no square overflows
        # iff max |g|^2 fits the tensor's dtype
        tops = torch._foreach_norm(gs, math.inf)
        # read back at once (one device sync, not one per tensor); float64 holds every
        # float32/half value exactly (MPS has no float64, nor gradients wider than float32)
        dev = tops[0].device
        wide = torch.float32 if dev.type == "mps" else torch.float64
        vals = torch.stack([n.to(device=dev, dtype=wide) for n in tops]).tolist()
        if all(math.isfinite(t) and t * t <= torch.finfo(g.dtype).max for t, g in zip(vals, gs)):
            return True
        self.reason = "gradients overflow: their squares are not finite in the parameters' dtype"
        if self._admitted:  # the values admit() just verified are not verified after all
            self._snap, self._prev = self._prev, self._snap
            self.steps -= 1
            self._admitted = False
        self.restore()
        return False

    def restore(self) -> None:
        """Copy the last verified values back into the live tensors."""
        _restore(self._params, self._snap)


def optimize(
    step: Callable[[], torch.Tensor | float],
    *,
    steps: int,
    params: Iterable[torch.Tensor] | torch.nn.Module | None = None,
    progress: bool = True,
    desc: str = "fit",
    tol: float | None = None,
    patience: int = 1,
    snapshot_every: int = 1,
    raise_on_divergence: bool = False,
    guard: DivergenceGuard | None = None,
) -> FitResult:
    """Run ``step()`` up to ``steps`` times with progress, divergence guard and early stop.

    Parameters
    ----------
    step: performs one optimisation step and returns the loss (before the update); it may
        raise ``StopIteration`` to end the fit early (e.g. a time limit; nothing is restored).
    params: tensors or a module whose values are snapshotted every ``snapshot_every`` steps and
        restored if a non-finite loss appears (``snapshot_every=0``: the starting values only).
        The state restored is the last one whose loss was finite: the loss returned by a step
        is that of the values *before* its update, so a snapshot only becomes the "good" state
        once the step taken from it has returned a finite loss.
    guard: instead of ``params``: a :class:`DivergenceGuard` that ``step()`` consults before
        its update (each step must call ``guard.admit(loss)``, else ``ValueError``). It keeps
        the verified state across several ``optimize`` calls; the message of a divergence
        numbers the step from ``guard.steps`` (the steps admitted before this call).
        ``snapshot_every`` does not apply (the guard refreshes on every finite loss).
    tol: stop when the relative loss change stays below ``tol`` for ``patience`` steps
        (``patience`` other than 1 only with ``tol``).
    raise_on_divergence: raise :class:`DivergenceError` (after the restore) instead of returning.
    """
    if not callable(step):
        raise TypeError(
            f"step: expected a callable returning the loss, received {type(step).__name__}"
        )
    steps = check_int("steps", steps, minimum=0)
    progress = check_bool("progress", progress)  # "no" showed the bar
    if tol is not None:
        tol = check_real("tol", tol, minimum=0.0)
    patience = check_int("patience", patience, minimum=1)
    if tol is None and patience != 1:  # it was accepted and had no effect
        raise ValueError(
            f"patience: only with tol (it counts the steps whose relative loss change is "
            f"below tol), received patience={patience} and tol=None"
        )
    snapshot_every = check_int("snapshot_every", snapshot_every, minimum=0)
    if guard is not None:
        if not isinstance(guard, DivergenceGuard):
            raise TypeError(f"guard: expected a DivergenceGuard, received {type(guard).__name__}")
        if params is not None:
            raise ValueError("params/guard: pass one of them (the guard holds its own tensors)")
        snapshot_every = 0
    offset = guard.steps if guard is not None else 0  # steps of the fit before this call
    params = _as_params(params)
    hist: list[float] = []
    good = _snapshot(params)  # last values whose loss was finite (at first: the start)
    pending = _snapshot(params) if snapshot_every else None  # values before the current step
    t0 = time.perf_counter()
    bar = progress_bar(total=steps, desc=desc, progress=progress, leave=False)
    calm = 0
    res = FitResult()
    try:
        for k in range(steps):
            take = bool(snapshot_every) and k % snapshot_every == 0
            if take:
                _refresh(pending)
            checks = guard._checks if guard is not None else 0
            try:
                loss = step()
            except StopIteration:
                res.message = f"stopped by step() after {k} steps"
                break
            if guard is not None and guard._checks == checks:
                raise ValueError(
                    "guard: step() must call guard.admit(loss) before its update; it did not"
                )
            val = _loss_value(loss, "step")
            if not math.isfinite(val):
                if guard is not None:
                    guard.restore()  # admit() already did, unless step() returned another loss
                else:
                    _restore(params, good)
                why = guard.reason if guard is not None and guard.reason else f"loss {val}"
                res.message = f"diverged at step {offset + k} ({why}); restored the last good state"
                if raise_on_divergence:
                    raise DivergenceError(res.message)
                break
            hist.append(val)
            if take:  # the values before this step gave a finite loss: they are the good state
                good, pending = pending, good
            bar.update(1)
            if progress and k % 10 == 0:
                bar.set_postfix(loss=f"{val:.4g}", refresh=False)
            if tol is not None and len(hist) > 1:
                rel = abs(hist[-2] - hist[-1]) / max(abs(hist[-2]), 1e-300)
                calm = calm + 1 if rel < tol else 0
                if calm >= patience:
                    res.converged = True
                    res.message = f"converged after {k + 1} steps"
                    break
        else:
            res.converged = tol is None
            res.message = res.message or f"max steps ({steps})"
    finally:
        bar.close()
    res.loss_history = hist
    res.steps = len(hist)
    res.seconds = time.perf_counter() - t0
    return res


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
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": kind,
        "config": config,
        "state": state,
        "version": __version__,
        "format": CHECKPOINT_FORMAT,
    }
    return atomic_write(path, lambda tmp: _write_checked(payload, tmp))


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
    checkpoint of another ``kind`` or when it
    lacks ``kind``/``config``/``state``. ``map_location`` given as a device string or
    :class:`torch.device` is checked first (an unknown device, or CUDA where none is
    available, is refused by name)."""
    import pickle

    from ._device import resolve_device

    path = _check_path(path)
    kind = _check_kind(kind)
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
    ) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = re.sub(r"\x1b\[[0-9;]*m", "", detail)  # torch's bold / colour codes
        if not isinstance(err, OSError) and not _torch_file(path):
            # not a torch file at all: torch's own text ends by suggesting weights_only=False,
            # unsafe advice for a file that is not even a checkpoint
            raise ValueError(
                f"path: {path} is not a bayesphys checkpoint (not a file torch.save wrote); expected "
                f"a {kind!r} checkpoint written by save()"
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
    if not isinstance(ckpt, dict) or ckpt.get("kind") != kind:
        got = ckpt.get("kind") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"path: expected a {kind!r} checkpoint, received {got!r} ({path})")
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ValueError(
            f"path: the {kind!r} checkpoint at {path} lacks {missing} (expected the keys "
            f"{list(_CHECKPOINT_KEYS)} written by save_checkpoint)"
        )
    fmt = ckpt.get("format", 1)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt > CHECKPOINT_FORMAT:
        raise ValueError(
            f"path: {path} was written by bayesphys {ckpt.get('version', '?')} in checkpoint "
            f"format {fmt!r}; this release ({__version__}) reads formats up to "
            f"{CHECKPOINT_FORMAT}: upgrade bayesphys to load it"
        )
    return ckpt


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
