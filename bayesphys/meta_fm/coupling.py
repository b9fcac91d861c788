r"""Couplings, the straight interpolant and the conditional flow-matching loss.

With a coupling :math:`(x_0, x_1) \sim \pi` between a source population and its target,
:math:`t \sim U[0, 1]` per point and :math:`\sigma = 0`,

.. math:: x_t = (1-t)x_0 + t x_1,\qquad u_t = x_1 - x_0,\qquad
          \mathcal L(\theta) = \mathbb E\,\lVert v_\theta(t, x_t) - u_t\rVert^2 .

The reference code minimises :math:`\lVert v\rVert^2 - 2\langle v, u\rangle`, which differs
from :math:`\mathcal L` by :math:`\lVert u\rVert^2` (no dependence on :math:`\theta`); we use the
mean-squared form so that the exact field has loss 0. Couplings: ``"index"`` (the populations
are paired point by point) or ``"ot"`` (exact minibatch OT with POT's ``emd`` on the squared
Euclidean cost, then pairs drawn from the plan with replacement, as ``torchcfm``'s
``OTPlanSampler``) or ``"ot_full"``: the exact OT plan :math:`\pi^{(i)}` between the *whole*
source and target populations of each training pair, computed once per fit
(:func:`full_ot_plans`); each step subsamples source points and draws each one's partner from
its row of the plan (:func:`sample_plan_partners`). A minibatch plan between two ``n``-point
subsamples pairs points that are farther apart than the full plan does (between samples of
one law, the minibatch OT cost falls towards zero only as ``n`` grows), so its targets
:math:`u_t` carry more pairing noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial.distance import cdist
from torch import Tensor

from .._checks import check_broadcasts, did_you_mean, require
from .._cloud_distances import _check_ot_memory, _extent_exponent
from .._device import values_readable
from ._validate import check_cloud_pair

__all__ = [
    "ot_pairing",
    "couple",
    "interpolate",
    "cfm_loss",
    "ot_pairing_rows",
    "FullPlan",
    "full_ot_plans",
    "sample_plan_partners",
]


#: bytes per (source, target) pair of an exact plan on the CPU: ``ot.dist``'s float64 cost
#: (16 at its peak), the normalised cost (8) and POT's network simplex with the plan it
#: returns (about 25, measured on 3000 x 3000 points)
_PLAN_BYTES_PER_PAIR = 49


def _check_plan_memory(name: str, n: int, m: int, alternative: str) -> None:
    """Refuse an exact OT plan between ``n`` and ``m`` points that cannot fit in memory."""
    _check_ot_memory(
        name, n, m, alternative, bytes_per_pair=_PLAN_BYTES_PER_PAIR, note="the plan returned; "
    )


def check_pairing_memory(name: str, n: int, m: int) -> None:
    """Refuse (``MemoryError`` naming ``name``, the argument that sets the sizes) the exact
    minibatch plan of :func:`ot_pairing` between ``n`` and ``m`` points when it cannot fit."""
    alternative = "pair fewer points at a time (the config's points) or use coupling='index'"
    _check_plan_memory(name, n, m, alternative)


def check_full_plan_memory(name: str, n: int, m: int) -> None:
    """Refuse (``MemoryError`` naming ``name``) the exact plan of :func:`full_ot_plans`
    between whole populations of ``n`` and ``m`` points when it cannot fit."""
    alternative = (
        "use coupling='ot' (exact OT between minibatches of the config's points) or 'index', "
        "or subsample the populations"
    )
    _check_plan_memory(name, n, m, alternative)


def _check_cpu_generator(generator: torch.Generator | None) -> None:
    """The pairs are drawn on the CPU (POT's plans are CPU arrays), whatever the device of
    the points: ``generator`` must be ``None`` or a CPU generator."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator or None, received {type(generator).__name__}"
        )
    if generator.device.type != "cpu":
        raise ValueError(
            "generator: expected a CPU torch.Generator (the OT pairs are drawn on the CPU, "
            f"whatever the points' device), received one on {generator.device}"
        )


def ot_pairing(
    x0: Tensor, x1: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Exact-OT re-pairing of ``x0 [n, d]`` and ``x1 [m, d]`` -> two ``[n, d]`` tensors on
    their devices; ``generator``: ``None`` or a CPU generator (the pairs are drawn on the CPU).
    The dense ``[n, m]`` cost and plan (about 49 bytes a pair, on the CPU) are refused with a
    ``MemoryError`` before any work when they cannot fit in memory."""
    i, j = ot_pairing_rows(x0, x1, generator)
    return x0[i.to(x0.device)], x1[j.to(x1.device)]


def ot_pairing_rows(
    x0: Tensor, x1: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """The rows of :func:`ot_pairing`'s pairs: ``(i, j)``, two CPU ``[n]`` long tensors with
    ``ot_pairing(x0, x1) == (x0[i], x1[j])`` for ``x0 [n, d]``, ``x1 [m, d]`` (same checks and
    draws from ``generator``)."""
    ot = require("ot", "pot", "exact-OT pairing")

    check_cloud_pair("x0", x0, "x1", x1)
    _check_cpu_generator(generator)
    check_pairing_memory("x0/x1", x0.shape[0], x1.shape[0])
    a = x0.detach().to("cpu", torch.float64).numpy()
    b = x1.detach().to("cpu", torch.float64).numpy()
    cost = pairing_costs(a, b)
    plan = ot.emd(ot.unif(len(a)), ot.unif(len(b)), cost, numItermax=10_000_000)
    p = torch.from_numpy(plan.reshape(-1)).clamp_min(0)
    idx = torch.multinomial(p / p.sum(), len(a), replacement=True, generator=generator)
    return idx // len(b), idx % len(b)


def pairing_costs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean costs ``[n, m]`` of the clouds ``a [n, d]`` and ``b [m, d]`` for POT's
    ``emd``, scaled to a largest cost of 1. From direct differences (scipy's ``cdist``) of the
    clouds in units of a power of two near their extent, as :func:`~bayesphys.metrics.wasserstein`:
    ``ot.dist`` forms ``|a|^2 + |b|^2 - 2 a.b``, which cancels far from the origin (clouds
    1e-3 across at 1e5 were paired at random), and the old floor of 1e-12 on the largest cost
    left the costs of clouds under 1e-6 across below POT's absolute tolerances."""
    unit = _extent_exponent(a, b)
    cost = cdist(np.ldexp(a, -unit), np.ldexp(b, -unit), metric="sqeuclidean")
    top = cost.max() if cost.size else 0.0
    return cost / top if top > 0 else cost


_INDEX_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


class FullPlan(NamedTuple):
    """Sparse rows of an exact OT plan: row ``i``'s partners are ``cols[ptr[i]:ptr[i+1]]``,
    with masses the increments of ``cum`` there."""

    ptr: Tensor  #: ``[n + 1]`` row starts
    cols: Tensor  #: ``[nnz]`` target indices
    cum: Tensor  #: ``[nnz + 1]`` cumulative plan mass, from 0


def full_ot_plans(sources: Sequence[Tensor], targets: Sequence[Tensor]) -> list[FullPlan]:
    """Exact OT plan (POT ``emd``, squared Euclidean cost, uniform masses) between each whole
    ``sources[i] [n_i, d]`` and ``targets[i] [m_i, d]``, as :class:`FullPlan` rows. Every
    pair's dense ``[n_i, m_i]`` cost and plan is checked before the first solve: one that
    cannot fit in memory is a ``MemoryError`` naming it."""
    ot = require("ot", "pot", "exact-OT plans")

    if len(sources) != len(targets):
        raise ValueError(
            f"sources/targets: expected equal numbers of populations, received "
            f"{len(sources)} and {len(targets)}"
        )
    for i, (a, b) in enumerate(zip(sources, targets)):
        check_cloud_pair(f"sources[{i}]", a, f"targets[{i}]", b)
        # every pair before the first solve: a large population late in the list failed after
        # the plans of all those before it
        check_full_plan_memory(f"sources[{i}]/targets[{i}]", a.shape[0], b.shape[0])
    plans = []
    for a, b in zip(sources, targets):
        a64 = a.detach().to("cpu", torch.float64).numpy()
        b64 = b.detach().to("cpu", torch.float64).numpy()
        cost = pairing_costs(a64, b64)
        plan = torch.from_numpy(
            ot.emd(ot.unif(len(a64)), ot.unif(len(b64)), cost, numItermax=10_000_000)
        )
        rows, cols = (plan > 0).nonzero(as_tuple=True)  # row-major order
        w = plan[rows, cols]
        counts = torch.bincount(rows, minlength=plan.shape[0])
        ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        cum = torch.cat([w.new_zeros(1), torch.cumsum(w, 0)])
        plans.append(FullPlan(ptr, cols, cum))
    return plans


def sample_plan_partners(
    plan: FullPlan, rows: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """A partner (target index) for each source index in ``rows [k]``, drawn from its row of
    ``plan`` in proportion to the plan's mass -> ``[k]`` (long). ``generator``: ``None`` or a
    CPU generator (the plan is a CPU one, see :func:`full_ot_plans`)."""
    if not isinstance(plan, FullPlan):
        raise TypeError(f"plan: expected a FullPlan, received {type(plan).__name__}")
    _check_cpu_generator(generator)
    if not isinstance(rows, Tensor) or rows.dtype not in _INDEX_DTYPES:
        got = rows.dtype if isinstance(rows, Tensor) else type(rows).__name__
        raise TypeError(f"rows: expected an integer tensor of source indices, received {got}")
    ptr, cols, cum = plan
    n = ptr.numel() - 1
    rows = rows.long()  # int8/int16/uint8 cannot index (uint8 would read as a boolean mask)
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n):
        raise ValueError(
            f"rows: expected source indices in [0, {n}), received values from "
            f"{int(rows.min())} to {int(rows.max())}"
        )
    start, stop = ptr[rows], ptr[rows + 1]
    if bool((stop <= start).any()):
        raise ValueError("plan: a source point has no partner (not an OT plan of these points)")
    lo, hi = cum[start], cum[stop]
    u = lo + torch.rand(rows.shape, generator=generator, dtype=cum.dtype) * (hi - lo)
    k = torch.searchsorted(cum[1:], u, right=True)
    return cols[torch.minimum(torch.maximum(k, start), stop - 1)]


def couple(
    x0: Tensor, x1: Tensor, coupling: str, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Pair batched populations ``x0 [P, n, d]``, ``x1 [P, n, d]`` by ``"index"`` or ``"ot"``
    (``"ot"`` also takes ``x1 [P, m, d]``); ``generator``: ``None`` or a CPU generator (see
    :func:`ot_pairing`). ``"index"`` returns ``x0`` and ``x1`` themselves, not copies (an
    in-place edit of the pair changes the caller's tensors); ``"ot"`` returns new tensors."""
    _check_cpu_generator(generator)
    for name, x in (("x0", x0), ("x1", x1)):
        if not isinstance(x, Tensor) or x.ndim != 3:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected populations [P, n, d], received {got}")
    # "ot" re-pairs populations of different sizes n, m; "index" pairs rows one to one
    same = x0.shape == x1.shape if coupling == "index" else x0.shape[::2] == x1.shape[::2]
    if not same:
        raise ValueError(
            f"x0/x1: expected populations [P, n, d] of one P and d (and, for 'index', one n), "
            f"received {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    if coupling == "index":
        return x0, x1
    if coupling == "ot":
        pairs = [ot_pairing(a, b, generator) for a, b in zip(x0, x1)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    raise ValueError(
        f"coupling: expected 'index' or 'ot', received {coupling!r}"
        f"{did_you_mean(coupling, ('index', 'ot'))}"
    )


def interpolate(x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``x_t = (1-t) x0 + t x1`` and ``u = x1 - x0`` for ``x0``, ``x1`` of one shape
    ``[..., d]``; ``t`` (a tensor) broadcasts against their leading shape ``[...]`` and holds
    times in ``[0, 1]``: the path runs from ``x0`` at ``t = 0`` to ``x1`` at ``t = 1``, and a
    time outside it (or NaN) is a ``ValueError`` (its values are read, except under a
    :mod:`torch.func` transform or on the ``meta`` device; the training steps, whose times
    are drawn in ``[0, 1)``, skip that read and its device synchronisation)."""
    xt, u = _interpolate(x0, x1, t)  # the shapes first
    if t.device.type != "meta" and values_readable(t):
        out = ~((t >= 0) & (t <= 1))
        if bool(out.any()):
            first = t[out].reshape(-1)[0].item()
            raise ValueError(
                f"t: expected times in [0, 1] (x0 at t=0, x1 at t=1), received "
                f"{int(out.sum())} outside it, e.g. {first!r}"
            )
    return xt, u


def _interpolate(x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`interpolate` with the shape checks only (no value of ``t`` is read)."""
    if x0.shape != x1.shape:
        raise ValueError(
            f"x0/x1: expected points of one shape, received {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    if not isinstance(t, Tensor):
        raise TypeError(f"t: expected a torch.Tensor, received {type(t).__name__}")
    lead = x0.shape[:-1]
    check_broadcasts(
        "t", t.shape, lead, f"times broadcastable to the points' leading shape {tuple(lead)}"
    )
    tt = t[..., None]
    return (1 - tt) * x0 + tt * x1, x1 - x0


def cfm_loss(v: Tensor, u: Tensor) -> Tensor:
    r"""Mean over points of ``||v - u||^2`` (summed over the last dim),
    :math:`\frac1P\sum_p \lVert v_p - u_p\rVert^2`: ``v``, ``u`` ``[*, d]`` of one shape (a
    broadcast would average the wrong pairs; ``P`` = the product of the leading dims) -> ``[]``;
    floating, with at least one point (an empty mean is NaN)."""
    for name, x in (("v", v), ("u", u)):  # shapes and dtypes only: no device sync
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, received {type(x).__name__}")
        if not x.is_floating_point():  # torch's "mean(): could not infer output dtype"
            raise TypeError(f"{name}: expected floating velocities, received {x.dtype}")
    if v.shape != u.shape:
        raise ValueError(
            f"v/u: expected velocities of one shape, received {tuple(v.shape)} and {tuple(u.shape)}"
        )
    if v.ndim < 1 or v.numel() == 0:
        raise ValueError(
            f"v/u: expected velocities [*, d] of at least one point, received {tuple(v.shape)}"
        )
    return (v - u).pow(2).sum(-1).mean()
