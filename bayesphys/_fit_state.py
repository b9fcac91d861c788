"""Snapshots and finiteness checks of a fit's tensors and optimiser state, shared by
:func:`~bayesphys.optimize` and :class:`~bayesphys.DivergenceGuard` (:mod:`bayesphys._model`)
and by the fits that check their optimiser's state themselves.

A snapshot is ``(live, copy)``: the live tensors of the parameters (aliases that stay valid
while an optimiser updates them in place) and a copy of their values, refreshed in place
(one fused copy, no allocation per step). The finiteness checks read the loss and every
optimiser-state tensor back together, once per device (one host sync on an accelerator).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = [
    "as_optimizers",
    "as_params",
    "loss_and_state",
    "loss_value",
    "optimizer_state_finite",
    "optimizer_state_tensors",
    "refresh",
    "restore_snapshot",
    "snapshot",
    "state_tensors",
]


def loss_value(loss: Any, where: str) -> float:
    """The float value of a scalar loss (a number or a one-element tensor)."""
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"{where}: expected a scalar loss (a float or a one-element tensor), received a "
                f"tensor of shape {tuple(loss.shape)}"
            )
        if loss.is_complex():  # float() of it raised "cannot be converted to type double"
            raise TypeError(f"{where}: expected a real loss, received a {loss.dtype} tensor")
        if loss.device.type == "meta":  # "Tensor.item() cannot be called on meta tensors"
            raise ValueError(f"{where}: expected a loss value, received a tensor on 'meta'")
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


def as_params(params):
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


def snapshot(params: Iterable[torch.Tensor] | torch.nn.Module | None):
    """``(live, copy)``: the live tensors of ``params`` (a module's state-dict entries or the
    listed tensors, aliases that stay valid while they are updated in place, as optimisers do)
    and a copy of their values, refreshed in place by :func:`refresh` (no allocation per step)."""
    if params is None:
        return None
    live = params.state_dict() if isinstance(params, torch.nn.Module) else dict(enumerate(params))
    copied = {
        k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        for k, v in live.items()
    }
    return live, copied


def refresh(snap) -> None:
    """Copy the current values of the live tensors into the snapshot's buffers."""
    if snap is None:
        return
    live, buf = snap
    keys = [k for k, v in live.items() if isinstance(v, torch.Tensor)]
    with torch.no_grad():  # no graph recorded: the live tensors need no detached alias each
        torch._foreach_copy_([buf[k] for k in keys], [live[k] for k in keys])


def restore_snapshot(params, snap) -> None:
    if params is None or snap is None:
        return
    snap = snap[1]
    if isinstance(params, torch.nn.Module):
        params.load_state_dict(snap)
        return
    with torch.no_grad():
        for p, s in zip(params, snap.values()):
            p.copy_(s)


def as_optimizers(optimizer) -> list[torch.optim.Optimizer]:
    """``None``: none; an optimiser: one; an iterable: its optimisers (``TypeError`` else)."""
    if optimizer is None:
        return []
    opts = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else optimizer
    if isinstance(opts, (str, bytes)) or not isinstance(opts, Iterable):
        raise TypeError(
            f"optimizer: expected a torch.optim.Optimizer or an iterable of them, received "
            f"{type(optimizer).__name__}"
        )
    opts = list(opts)
    bad = [type(o).__name__ for o in opts if not isinstance(o, torch.optim.Optimizer)]
    if bad:
        raise TypeError(f"optimizer: expected torch.optim.Optimizer objects, received {bad}")
    return opts


def optimizer_state_tensors(opts: Iterable[torch.optim.Optimizer]) -> list[torch.Tensor]:
    """The floating-point and complex tensors of the optimisers' per-parameter state (Adam's
    moments; dicts, lists and tuples walked, e.g. L-BFGS's history), detached. One helper for
    every check of an optimiser's state (:func:`~bayesphys.optimize`'s ``optimizer=``,
    ``train_ddp``'s epoch check), so they test the same tensors."""
    out: list[torch.Tensor] = []

    def walk(values: Iterable[Any]) -> None:
        # the tensors of a container taken in its loop, a call only per nested container (a
        # call per value took 0.3 ms a step for the 210 Adam tensors of ProbConserv's ANP); a
        # tensor that needs no gradient (every optimiser's state) is its own detached self
        for v in values:
            if isinstance(v, torch.Tensor):
                if v.is_floating_point() or v.is_complex():
                    out.append(v.detach() if v.requires_grad else v)
            elif isinstance(v, Mapping):
                walk(v.values())
            elif isinstance(v, (list, tuple)):
                walk(v)

    for opt in opts:
        walk(list(opt.state.values()))
    return out


def state_tensors(opts: list[torch.optim.Optimizer]) -> list[torch.Tensor]:
    """:func:`optimizer_state_tensors` without empty tensors (an infinity norm has none)."""
    return [t for t in optimizer_state_tensors(opts) if t.numel()]


def optimizer_state_finite(
    optimizer: torch.optim.Optimizer | Iterable[torch.optim.Optimizer] | None,
) -> bool:
    """Whether every tensor of the optimiser(s)' state (:func:`optimizer_state_tensors`) is
    finite, read back once per device: the test :func:`~bayesphys.optimize`'s ``optimizer=``
    makes after each step, for a step that runs a user's callback after its update (a step
    that left the state non-finite ends the fit as a divergence, so no callback runs after
    it)."""
    return loss_and_state(0.0, state_tensors(as_optimizers(optimizer)), "loss")[1]


def loss_and_state(loss: Any, states: list[torch.Tensor], where: str) -> tuple[float, bool]:
    """The float value of the scalar ``loss`` and whether every tensor of ``states`` is finite,
    read back together: one read per device (a host sync on an accelerator), the loss's with
    the state on its device; the state on the CPU (Adam's step counters beside CUDA moments)
    is read apart, which waits for nothing."""
    if not states:
        return loss_value(loss, where), True
    fold = (
        isinstance(loss, torch.Tensor)
        and loss.numel() == 1
        and loss.is_floating_point()
        and loss.device.type != "meta"  # refused by name in loss_value
    )
    # a number (or a tensor of another dtype): read on its own (a wrong shape raises here)
    val = None if fold else loss_value(loss, where)
    groups: dict[torch.device, list[torch.Tensor]] = {}
    for t in states:
        groups.setdefault(t.device, []).append(t)
    if fold:
        groups.setdefault(loss.device, [])
    ok = True
    for dev, ts in groups.items():
        # float64 holds every float32/half value exactly (float(loss) unchanged); MPS has none
        wide = torch.float32 if dev.type == "mps" else torch.float64
        # sum |x| of each tensor in one fused call: inf and NaN propagate, and it costs a
        # third of max |x| (the infinity norm), which took 5 % of a Meta FM step on the CPU; a
        # tensor whose magnitudes sum past its dtype's range (elements within a factor of its
        # size of overflowing, e.g. Adam's second moment of gradients ~1e17 in float32) reads
        # as non-finite too, a state that overflows at the next such step anyway
        # the norms stacked by dtype and widened once per dtype, not each apart (a dispatch per
        # tensor, a kernel launch per tensor on an accelerator: 40 % of the check's time at
        # each step for the 210 Adam tensors of ProbConserv's ANP on the CPU); the same values
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for n in torch._foreach_norm(ts, 1) if ts else ():
            by_dtype.setdefault(n.dtype, []).append(n)
        parts = [torch.stack(ns).to(dtype=wide) for ns in by_dtype.values()]
        here = fold and dev == loss.device
        if here:
            parts.insert(0, loss.detach().reshape(1).to(dtype=wide))
        vals = torch.cat(parts).tolist()
        if here:
            val, vals = vals[0], vals[1:]
        ok = ok and all(math.isfinite(v) for v in vals)
    return val, ok
