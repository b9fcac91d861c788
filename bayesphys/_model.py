"""Shared model plumbing: :class:`FitResult` and a guarded optimisation loop.

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

import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ._checks import check_bool, check_int, check_real
from ._context_flag import ContextFlag
from ._fit_state import (
    as_optimizers,
    as_params,
    loss_and_state,
    loss_value,
    refresh,
    restore_snapshot,
    snapshot,
    state_tensors,
)
from ._progress import progress_bar
from ._repr import fields_repr
from ._stack import user_stacklevel
from ._warning_types import BayesphysUserWarning

__all__ = [
    "FitResult",
    "optimize",
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


_UNTRAINED_WARNED = ContextFlag("bayesphys_untrained_warned")


def untrained_warned() -> AbstractContextManager[None]:
    """Within this block :func:`warn_untrained` is silent: the caller (a posterior drawing
    through ``predict`` once per draw, an ensemble through each member) has warned once."""
    return _UNTRAINED_WARNED.raised()


def in_untrained_warned() -> bool:
    """Whether the caller runs inside :func:`untrained_warned` (a call that warned once for
    the predictions it makes through a model's own methods)."""
    return _UNTRAINED_WARNED.is_raised()


def warn_untrained(where: str, steps_done: int) -> None:
    """A ``UserWarning`` at the user's line when ``where`` (a model's posterior or prediction)
    is asked of a model that has trained no step: its answer comes from the initial weights (a
    skipped or failed fit cell in a notebook gave confident-looking nonsense without a word).
    Silent within :func:`untrained_warned`."""
    if steps_done == 0 and not _UNTRAINED_WARNED.is_raised():
        warnings.warn(
            f"{where}: the model has not been trained (0 steps), so this comes from its "
            "initial weights; call fit() first",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


def release_grads(params: Iterable[torch.Tensor] | torch.nn.Module) -> None:
    """Drop the ``.grad`` of every tensor of ``params`` (tensors, or a module's parameters):
    ``p.grad = None``. Called by each component's ``fit`` once its last step is taken (also
    after an error or an interrupt), so a fitted model does not hold one gradient per weight
    that nothing reads: every fit step clears the gradients it uses (``zero_grad``, set to
    ``None``) before its ``backward()``, and the optimisers keep no reference to them, so no
    number of a later step, fit or posterior changes. A module: ``zero_grad(set_to_none=True)``
    (torch's own); loose tensors (the GP PDE solver's hyperparameters) one by one."""
    if isinstance(params, torch.nn.Module):
        params.zero_grad(set_to_none=True)
        return
    for t in params:
        t.grad = None


class DivergenceError(RuntimeError):
    """Raised (optionally) when a fit produces a non-finite loss."""


@dataclass
class FitResult:
    """Outcome of a fit.

    Attributes
    ----------
    loss_history
        the losses (floats) of the fit's iterates: in :func:`optimize`'s fits the
        loss each step returned (that of the values before its update), ``steps`` of them; the
        Levenberg-Marquardt / Gauss-Newton fits of :func:`bayesphys.odil.minimize` (and
        ``GliomaModel.fit`` / ``fit_odil``) record the start's loss and that of each accepted
        step, so there it has one entry more than the accepted steps. ``final_loss`` is the
        last entry (NaN when there is none).
    seconds
        wall time of the fit.
    converged
        whether the stopping criterion was met (``False`` after divergence). With a
        tolerance it is the tolerance's test, and a fit that ran out of steps has ``False``;
        a fixed-budget fit (``tol=None``) has no other criterion than its step budget, so one
        that ran all its steps without diverging has ``True`` (``message`` says "max steps").
        A solver may add stops of its own, named in ``message`` (e.g. a Levenberg-Marquardt
        damping stall, "stalled ...", with or without a tolerance; ``True`` only where the
        solver's own test says the iterate is a minimum).
    steps
        number of steps taken, ``len(loss_history)`` in :func:`optimize`'s fits. After a
        divergence at step ``k`` (counted from 0: its loss non-finite, or its update left the
        optimiser's state non-finite, and then its loss is not recorded) ``steps == k``, and
        the state kept is the one step ``k - 1`` started from (``loss_history[-1]`` is its
        loss; ``snapshot_every=1``, the default), that step's update undone. A model's
        ``steps_done`` counts the updates of the state it holds: a fit advances it by ``steps``,
        after a divergence by ``max(steps - 1, 0)`` (one rule for every training fit,
        docs/concepts.md "Models").
    message
        human-readable status ("converged", "max steps", "diverged at step k ...").
    extra
        component-specific figures (e.g. best checkpoint loss).
    """

    loss_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    converged: bool = False
    steps: int = 0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        """The last recorded loss, ``loss_history[-1]`` (NaN when no step was recorded)."""
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
    optimiser's state (e.g. Adam's moments) only ever sees finite losses and is not snapshotted.
    A finite loss can still have non-finite gradients (``sqrt`` at 0), or gradients whose
    squares overflow Adam's second moment: call :meth:`admit_gradients` after ``backward()``
    (and any clipping) to refuse those updates too. Then after a restore the optimiser holds
    the moments of the last finite update, finite, and training can go on from there (without
    it, :func:`optimize`'s ``optimizer=`` catches the damage after the update instead). And the
    snapshot lives in the guard, not in one :func:`optimize` call, so a fit run as several calls
    (chunks between callbacks) keeps one verified state throughout; the guard also counts the
    admitted steps (:attr:`steps`), which numbers the steps of :func:`optimize`'s messages across
    the calls.

    Parameters
    ----------
    params
        tensors (updated in place) or a module (its state dict: parameters and buffers)
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
        self._params = as_params(params)
        self._snap = snapshot(self._params)
        # the verified state before the last admitted one (admit_gradients can take that back)
        self._prev = snapshot(self._params)
        self._checks = 0  # calls of admit(), to check that a step consulted the guard
        #: number of finite losses admitted so far (steps taken under this guard)
        self.steps = 0
        #: why the last step was refused (None: not refused), for :func:`optimize`'s message
        self.reason: str | None = None
        self._admitted = False  # the last admit() verified the current values

    def admit(self, loss: torch.Tensor | float) -> bool:
        """``True`` if ``loss`` (a float or a one-element tensor, e.g. ``[]``) is finite: the
        current values, which it was computed
        from, become the verified state. ``False`` otherwise: the verified values are restored
        and the step must not update (no ``backward()``, no optimiser step)."""
        self._checks += 1
        self.reason = None
        self._admitted = False
        val = loss_value(loss, "loss")
        if not math.isfinite(val):
            self.reason = f"loss {val}"
            self.restore()
            return False
        self._snap, self._prev = self._prev, self._snap
        refresh(self._snap)
        self.steps += 1
        self._admitted = True  # admit_gradients may still take these values back, once
        return True

    def admit_gradients(self, tensors: Iterable[torch.Tensor] | torch.nn.Module) -> bool:
        r"""After ``backward()`` (and any clipping), before the optimiser step: ``True`` if every
        gradient :math:`g` of ``tensors`` (tensors of any shape ``[*]``, or a module's
        parameters; each ``.grad`` of its tensor's shape) has finite :math:`g^2` in its own
        dtype, :math:`\max|g|^2 \le` ``finfo(dtype).max`` -- what Adam's second moment accumulates.
        ``False`` otherwise (a finite but huge loss can have
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
        # float32/half value exactly (MPS has no float64, nor gradients wider than float32).
        # Stacked by device and dtype, each stack moved and widened once, not each norm apart
        # (a dispatch per tensor, and a kernel launch per tensor on an accelerator, at every
        # step of a fit); the values are the same
        dev = tops[0].device
        wide = torch.float32 if dev.type == "mps" else torch.float64
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for n, g in zip(tops, gs):
            groups.setdefault((n.device, g.dtype), []).append(n)
        vals = torch.cat(
            [torch.stack(ns).to(device=dev, dtype=wide) for ns in groups.values()]
        ).tolist()
        limits = [torch.finfo(dt).max for (_, dt), ns in groups.items() for _ in ns]
        if all(math.isfinite(t) and t * t <= top for t, top in zip(vals, limits)):
            return True
        self.reject("gradients overflow: their squares are not finite in the parameters' dtype")
        return False

    def reject(self, reason: str) -> None:
        """Take back the values the last :meth:`admit` verified (once; the step count with
        them) and restore the state verified before them; :attr:`reason` becomes ``reason``.
        For a step whose update turned out bad after its finite loss (:meth:`admit_gradients`,
        or :func:`optimize` finding its ``optimizer``'s state non-finite)."""
        self.reason = reason
        if self._admitted:  # the values admit() just verified are not verified after all
            self._snap, self._prev = self._prev, self._snap
            self.steps -= 1
            self._admitted = False
        self.restore()

    def restore(self) -> None:
        """Copy the last verified values back into the live tensors."""
        restore_snapshot(self._params, self._snap)


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
    optimizer: torch.optim.Optimizer | Iterable[torch.optim.Optimizer] | None = None,
) -> FitResult:
    """Run ``step()`` up to ``steps`` times with progress, divergence guard and early stop.

    Parameters
    ----------
    step
        performs one optimisation step and returns the loss (before the update), a float
        or a one-element tensor (``[]``); it may raise ``StopIteration`` to end the fit early
        (e.g. a time limit; nothing is restored).
    params
        tensors (any shapes ``[*]``) or a module whose values are snapshotted every
        ``snapshot_every`` steps and
        restored if a non-finite loss appears (``snapshot_every=0``: the starting values only).
        The state restored is the last one whose loss was finite: the loss returned by a step
        is that of the values *before* its update, so a snapshot only becomes the "good" state
        once the step taken from it has returned a finite loss.
    guard
        instead of ``params``: a :class:`DivergenceGuard` that ``step()`` consults before
        its update (each step must call ``guard.admit(loss)``, else ``ValueError``). It keeps
        the verified state across several ``optimize`` calls; the message of a divergence
        numbers the step from ``guard.steps`` (the steps admitted before this call).
        ``snapshot_every`` does not apply (the guard refreshes on every finite loss).
    optimizer
        the optimiser(s) that ``step()`` updates with (one, or an iterable of them):
        after each step their state is checked too, in the same read-back from the device as
        the loss. A step whose loss is finite but whose gradients were not, or squared past
        the dtype's range (a huge gradient, ~1e20 in float32 or ~1e155 in float64), leaves
        non-finite values in it (Adam's moments): NaN weights at the next step, or an infinite
        second moment that makes every later update of those weights zero, a fit "converged"
        with frozen weights. That step counts as a divergence: its loss is not recorded, the
        last good state before it is restored, the optimisers' state is cleared (they start
        afresh if stepped again) and the message says so. Nothing changes while it is finite.
    desc
        the progress bar's label (a ``str``).
    tol
        stop when the relative loss change stays below ``tol`` for ``patience`` steps
        (``patience`` other than 1 only with ``tol``).
    raise_on_divergence
        raise :class:`DivergenceError` (after the restore) instead of returning.
    """
    if not callable(step):
        raise TypeError(
            f"step: expected a callable returning the loss, received {type(step).__name__}"
        )
    steps = check_int("steps", steps, minimum=0)
    progress = check_bool("progress", progress)  # "no" showed the bar
    if not isinstance(desc, str):  # desc=1 was drawn as the bar's label "1"
        raise TypeError(f"desc: expected a str (the bar's label), received {type(desc).__name__}")
    # "no" is truthy: it raised DivergenceError where the caller asked for a returned result
    raise_on_divergence = check_bool("raise_on_divergence", raise_on_divergence)
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
    opts = as_optimizers(optimizer)
    offset = guard.steps if guard is not None else 0  # steps of the fit before this call
    params = as_params(params)
    hist: list[float] = []
    good = snapshot(params)  # last values whose loss was finite (at first: the start)
    pending = snapshot(params) if snapshot_every else None  # values before the current step
    t0 = time.perf_counter()
    bar = progress_bar(total=steps, desc=desc, progress=progress, leave=False)
    calm = 0
    res = FitResult()
    try:
        for k in range(steps):
            take = bool(snapshot_every) and k % snapshot_every == 0
            if take:
                refresh(pending)
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
            # the loss and the optimisers' state in one read-back
            val, state_ok = loss_and_state(loss, state_tensors(opts), "step")
            if not math.isfinite(val) or not state_ok:
                if math.isfinite(val):  # a finite loss, a poisoned update
                    why = (
                        f"loss {val:.6g}, but the optimizer state is not finite after its "
                        "update: non-finite gradients, or gradients whose squares overflow"
                    )
                    if guard is not None:  # these values are not kept (admit_gradients' rule)
                        guard.reject(why)
                elif guard is not None:
                    why = guard.reason or f"loss {val}"
                else:
                    why = f"loss {val}"
                if guard is not None:
                    guard.restore()  # admit() already did, unless step() returned another loss
                else:
                    restore_snapshot(params, good)
                if not state_ok:  # non-finite moments: every later update would use them
                    for opt in opts:
                        opt.state.clear()
                res.message = f"diverged at step {offset + k} ({why}); restored the last good state"
                if raise_on_divergence:
                    raise DivergenceError(res.message)
                break
            hist.append(val)
            if take:  # the values before this step gave a finite loss: they are the good state
                good, pending = pending, good
            bar.update(1)
            if progress:  # every step (a few microseconds): a slow fit showed a stale loss
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
