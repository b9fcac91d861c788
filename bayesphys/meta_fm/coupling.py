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

import torch
from torch import Tensor

__all__ = [
    "ot_pairing",
    "couple",
    "interpolate",
    "cfm_loss",
    "FullPlan",
    "full_ot_plans",
    "sample_plan_partners",
]


def ot_pairing(
    x0: Tensor, x1: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Exact-OT re-pairing of ``x0 [n, d]`` and ``x1 [m, d]`` -> two ``[n, d]`` tensors."""
    import ot

    a = x0.detach().to("cpu", torch.float64).numpy()
    b = x1.detach().to("cpu", torch.float64).numpy()
    cost = ot.dist(a, b)  # squared Euclidean
    cost = cost / max(cost.max(), 1e-12)
    plan = ot.emd(ot.unif(len(a)), ot.unif(len(b)), cost, numItermax=1_000_000)
    p = torch.from_numpy(plan.reshape(-1)).clamp_min(0)
    idx = torch.multinomial(p / p.sum(), len(a), replacement=True, generator=generator)
    i, j = idx // len(b), idx % len(b)
    return x0[i.to(x0.device)], x1[j.to(x1.device)]


class FullPlan(NamedTuple):
    """Sparse rows of an exact OT plan: row ``i``'s partners are ``cols[ptr[i]:ptr[i+1]]``,
    with masses the increments of ``cum`` there."""

    ptr: Tensor  #: ``[n + 1]`` row starts
    cols: Tensor  #: ``[nnz]`` target indices
    cum: Tensor  #: ``[nnz + 1]`` cumulative plan mass, from 0


def full_ot_plans(sources: Sequence[Tensor], targets: Sequence[Tensor]) -> list[FullPlan]:
    """Exact OT plan (POT ``emd``, squared Euclidean cost, uniform masses) between each whole
    ``sources[i] [n_i, d]`` and ``targets[i] [m_i, d]``, as :class:`FullPlan` rows."""
    import ot

    if len(sources) != len(targets):
        raise ValueError(
            f"sources/targets: expected equal numbers of populations, received "
            f"{len(sources)} and {len(targets)}"
        )
    plans = []
    for a, b in zip(sources, targets):
        a64 = a.detach().to("cpu", torch.float64).numpy()
        b64 = b.detach().to("cpu", torch.float64).numpy()
        cost = ot.dist(a64, b64)
        cost = cost / max(cost.max(), 1e-12)
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
    ``plan`` in proportion to the plan's mass -> ``[k]`` (long)."""
    ptr, cols, cum = plan
    n = ptr.numel() - 1
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
    """Pair batched populations ``x0 [P, n, d]``, ``x1 [P, n, d]`` by ``"index"`` or ``"ot"``."""
    if coupling == "index":
        return x0, x1
    if coupling == "ot":
        pairs = [ot_pairing(a, b, generator) for a, b in zip(x0, x1)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    raise ValueError(f"coupling: expected 'index' or 'ot', received {coupling!r}")


def interpolate(x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``x_t = (1-t) x0 + t x1`` and ``u = x1 - x0``; ``t`` broadcasts against ``x0 [..., d]``."""
    tt = t[..., None]
    return (1 - tt) * x0 + tt * x1, x1 - x0


def cfm_loss(v: Tensor, u: Tensor) -> Tensor:
    """Mean over points of ``||v - u||^2`` (summed over the last dim)."""
    return (v - u).pow(2).sum(-1).mean()
