r"""Field summaries for the simulation loop: scalar functionals :math:`s_k` of a field.

A summary maps a batch of fields ``[*S, *event]`` to ``[*S]``; the simulation loop
(:func:`~bayesphys.diagnostics.simulate_and_infer`) applies it to the truth (``S = ()``) and to
the draws (``S = (L,)``). The summaries are small classes, not closures: a record's summaries go
with the work to other processes (a process pool, Ray, Dask), where a closure failed with
pickle's "Can't pickle local object".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_increasing, check_int, check_real
from .._device import AxisLike, check_finite

__all__ = ["Summary", "default_summaries", "probe", "total_mass", "front_position"]

Summary = Callable[[Tensor], Tensor]
"""A summary: a batch of fields ``[*S, *event]`` -> ``[*S]``."""


def _floating(u: Tensor) -> Tensor:
    """``u`` itself when floating point (or complex), else as float64."""
    return u if u.is_floating_point() or u.is_complex() else u.double()


def _identity(u: Tensor) -> Tensor:
    """The field itself (the summary of a 0-d event)."""
    return u


class _Probe:
    """The summary of :func:`probe`: ``u[..., *index]``."""

    def __init__(self, index: tuple[int, ...]) -> None:
        self.index = index

    def __call__(self, u: Tensor) -> Tensor:
        return u[(..., *self.index)]

    def __repr__(self) -> str:
        return f"probe({self.index!r})"


class _TotalMass:
    """The summary of :func:`total_mass`: the weighted sum over the last ``event_ndim`` dims."""

    def __init__(self, weights: Tensor | np.ndarray | float, event_ndim: int) -> None:
        self.weights, self.event_ndim = weights, event_ndim

    def __call__(self, u: Tensor) -> Tensor:
        # integer or bool fields (counts, occupancies) in float64: the weights cast to the
        # field's dtype were truncated (weights 0.5 read as 0, every mass 0)
        u = _floating(u)
        w = torch.as_tensor(self.weights, dtype=u.dtype, device=u.device)
        ev = tuple(u.shape[u.ndim - self.event_ndim :])
        try:
            fits = u.ndim >= self.event_ndim and torch.broadcast_shapes(w.shape, ev) == ev
        except RuntimeError:
            fits = False
        if not fits or w.ndim > self.event_ndim:
            raise ValueError(
                f"weights: expected a shape broadcasting to the event {ev} (the last "
                f"event_ndim={self.event_ndim} dims of the field {tuple(u.shape)}), received "
                f"{tuple(w.shape)}"
            )
        dims = tuple(range(-self.event_ndim, 0))
        return (u * w).sum(dim=dims)

    def __repr__(self) -> str:
        return f"total_mass(event_ndim={self.event_ndim})"


class _FrontPosition:
    """The summary of :func:`front_position`: the front of a 1-D field on the grid ``x``."""

    def __init__(self, x: Tensor, level: float) -> None:
        self.x, self.level = x, level

    def __call__(self, u: Tensor) -> Tensor:
        x, level = self.x, self.level
        if u.ndim == 0 or u.shape[-1] != x.shape[0]:
            raise ValueError(
                f"u: expected fields [*S, {x.shape[0]}] on the grid x, received {tuple(u.shape)}"
            )
        # integer or bool fields in float64: the grid cast to the field's dtype was truncated
        # (x = 0, 0.5, 1 read as 0, 0, 1), and bool fields failed in torch's subtraction
        u = _floating(u)
        xs = x.to(u)
        above = u >= level
        n = u.shape[-1]
        ar = torch.arange(n, device=u.device)
        last = torch.where(above, ar, torch.full_like(ar, -1)).amax(-1)
        j = last.clamp(0, n - 2)
        u0 = u.gather(-1, j[..., None])[..., 0]
        u1 = u.gather(-1, (j + 1)[..., None])[..., 0]
        t = ((u0 - level) / (u0 - u1).where((u0 - u1).abs() > 0, torch.ones_like(u0))).clamp(0, 1)
        pos = xs[j] + t * (xs[j + 1] - xs[j])
        pos = torch.where(last < 0, xs[0].expand_as(pos), pos)
        return torch.where(last >= n - 1, xs[-1].expand_as(pos), pos)

    def __repr__(self) -> str:
        return f"front_position(level={self.level}, {self.x.shape[0]} grid points)"


def probe(index: int | Sequence[int]) -> Summary:
    """Summary: the field value at a grid index (``int`` for 1-D, a tuple for n-D events).

    ``[*S, *event] -> [*S]``.
    """
    if isinstance(index, (str, bytes)) or not isinstance(index, (int, Sequence, Tensor)):
        raise TypeError(f"index: expected an int or a tuple of ints, received {index!r}")
    if isinstance(index, Tensor):  # an integer tensor of grid indices
        raw = tuple(index.reshape(-1).tolist()) if not index.is_floating_point() else (index,)
    else:
        raw = (index,) if isinstance(index, int) else tuple(index)
    idx = tuple(check_int(f"index[{k}]", i) for k, i in enumerate(raw))
    if not idx:
        raise ValueError("index: expected at least one grid index, received ()")
    return _Probe(idx)


def total_mass(weights: Tensor | float = 1.0, event_ndim: int = 1) -> Summary:
    r"""Summary: :math:`\sum_x w_x u(x)` over the last ``event_ndim`` dims (quadrature ``w``).

    ``[*S, *event] -> [*S]``, in the field's floating dtype (integer or bool fields in
    float64). ``weights`` (a number or an array broadcasting to the event)
    must be finite numbers: a NaN weight made every summary NaN, refused only by the
    calibration's check of the draws, a string failed at the first field, in torch. The
    summary keeps a copy of ``weights``: a later in-place edit of the caller's tensor or array
    does not change it.
    """

    event_ndim = check_int("event_ndim", event_ndim, minimum=1)
    check_finite("weights", weights)
    # a copy: the summary kept the caller's tensor / array, so an in-place edit of it after
    # the build (weights *= 2, a NaN written) changed every later summary, past the check above
    if isinstance(weights, Tensor):
        weights = weights.clone()
    elif not isinstance(weights, (int, float)):
        weights = np.array(weights)

    return _TotalMass(weights, event_ndim)


def front_position(x: AxisLike, level: float = 0.5) -> Summary:
    r"""Summary: the largest grid coordinate where a 1-D field still exceeds ``level``.

    :math:`x_f = \max\{x_j : u(x_j) \ge c\}` refined by linear interpolation to the next point
    (``x[0]`` when no point exceeds ``c``). ``u [*S, n] -> [*S]`` (integer or bool fields
    compared in float64); ``x [n]`` increasing (a
    tensor, or an array or list of numbers, taken as float64). The summary keeps a copy of
    ``x``: a later in-place edit of the caller's grid does not change it.
    """
    # a copy: the summary kept the caller's tensor (or shared a float64 array's memory), so an
    # in-place edit of the grid after the build moved every later front, past the checks below
    x = x.clone() if isinstance(x, Tensor) else torch.tensor(x, dtype=torch.float64)
    if x.ndim != 1 or x.shape[0] < 2:
        raise ValueError(
            f"x: expected a 1-D grid of n >= 2 points, received shape {tuple(x.shape)}"
        )
    check_finite("x", x)
    check_increasing("x", x, what="grid coordinates")
    level = check_real("level", level)

    return _FrontPosition(x, level)


def default_summaries(event_shape: torch.Size, max_elements: int = 16) -> dict[str, Summary]:
    """Every element of a small parameter vector as its own summary (``theta_0``, ...).

    Refuses events with no element (``ValueError``) or with more than ``max_elements``
    elements: pass field summaries instead.
    """
    n = math.prod(event_shape)
    if n == 0:  # no summary at all: the loop failed in torch.stack of an empty list
        raise ValueError(
            f"summaries: an event of shape {tuple(event_shape)} has no elements to summarise; "
            "check the theta that simulate returns ([n, *event])"
        )
    if n > max_elements:
        raise ValueError(
            f"summaries: an event of shape {tuple(event_shape)} ({n} elements) needs explicit "
            f"field summaries (probe, total_mass, front_position), received none"
        )
    if len(event_shape) == 0:
        return {"theta": _identity}
    out = {}
    for flat in range(n):
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), tuple(event_shape)))
        out["theta_" + "_".join(map(str, idx))] = probe(idx)
    return out
