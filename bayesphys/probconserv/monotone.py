r"""Optional inequality step: monotone draws that keep the conservation constraint exactly.

ProbConserv (Hansen, Maddix, Alizadeh, Gupta, Mahoney, *Learning Physical Models that Can
Respect Conservation Laws*, ICML 2023, arXiv:2302.11002) updates a field posterior with the
integral form :math:`g^\top u = b` of a conservation law (``g > 0`` trapezoid weights, one
constraint per time slice). The fronts of the GPME problems (Stefan, porous medium) are
non-increasing in ``x``; this step maps each updated draw :math:`v` to its Euclidean projection
onto

.. math::  C = \{u:\ u_1 \ge u_2 \ge \dots \ge u_N,\ g^\top u = b\}

(and :math:`u \ge 0` with ``nonnegative=True``; ``decreasing=False`` reverses the order).

Minimising :math:`\tfrac12\|u - v\|^2 + \lambda (g^\top u - b)` over the monotone cone gives
:math:`u(\lambda) = \operatorname{iso}(v - \lambda g)`, ``iso`` the isotonic regression (the
Euclidean projection onto the cone), and with the bound
:math:`u(\lambda) = \max(\operatorname{iso}(v - \lambda g), 0)`. :math:`g^\top u(\lambda)` is
continuous, non-increasing and piecewise linear in :math:`\lambda` (linear while the blocks of
``iso`` do not change, with slope :math:`-\sum_B G_B^2 / |B|` over its blocks :math:`B`
(the positive ones with the bound), :math:`G_B = \sum_{i \in B} g_i`), so :math:`\lambda` is
found by a bracketed Newton iteration, exact once it reaches the final linear piece; a last
constant shift (or, with the bound, positive rescaling) of :math:`u`, of the order of the
round-off, makes :math:`g^\top u = b` hold to round-off without breaking monotonicity.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_bool, check_int
from .._detached import warn_detached
from .._device import ArrayLike, as_tensor
from .._renamed import renamed_kwargs
from ..posterior import Posterior, SamplePosterior
from .inequality import _slice_draws, _weights_and_masses

__all__ = ["project_monotone", "monotone_posterior"]

_F64 = torch.float64
_EPS = torch.finfo(_F64).eps


def _isotonic_nonincreasing(w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Isotonic (non-increasing) regression of each row of ``w [M, N]``.

    Pool adjacent violators, every maximal run of violating neighbours pooled at once (a run
    has increasing means, so pooling it pair by pair stays a valid PAVA order): at most
    ``N - 1`` passes of ``O(N)`` work per row still pooling, usually a few. Returns the fit
    ``u [M, N]`` (exactly non-increasing: the loop stops when the values it returns have no
    violation), the block index of each entry ``[M, N]``, and per block slot ``[M, N]`` the
    block mean and size (zero size for unused slots).
    """
    start = torch.ones(w.shape, dtype=torch.bool, device=w.device)
    u, level, size = torch.empty_like(w), torch.empty_like(w), torch.empty_like(w)
    ids = torch.empty_like(w, dtype=torch.long)
    rows = torch.arange(w.shape[0], device=w.device)  # rows still pooling
    while rows.numel():
        wr, sr = w[rows], start[rows]
        ir = sr.cumsum(-1) - 1
        nr = torch.zeros_like(wr).scatter_add_(-1, ir, torch.ones_like(wr))
        lr = torch.zeros_like(wr).scatter_add_(-1, ir, wr) / nr.clamp_min(1)
        ur = lr.gather(-1, ir)
        violation = sr[:, 1:] & (ur[:, :-1] < ur[:, 1:])
        bad = violation.any(-1)
        fin = rows[~bad]  # their fit is the one just checked (not recomputed: same bits)
        u[fin], ids[fin], level[fin], size[fin] = ur[~bad], ir[~bad], lr[~bad], nr[~bad]
        sr[:, 1:] &= ~violation
        start[rows] = sr
        rows = rows[bad]
    return u, ids, level, size


def _solve(v: Tensor, g: Tensor, b: Tensor, nonnegative: bool, iters: int) -> Tensor:
    """Projection of the rows of ``v [M, N]`` (float64) onto ``{non-increasing, g.u = b}``."""
    total = g.sum()
    # bracket: iso(w) lies in [min w, max w], so g.u(lam) >= b once min(v - lam g) >= b / sum g
    # and <= b (also with the bound, as b >= 0 there) once max(v - lam g) <= b / sum g
    lo = ((v.amin(-1) - b / total) / g.min()).clamp_max(0)
    hi = ((v.amax(-1) - b / total) / g.min()).clamp_min(0)
    v_g, gg = v.abs() @ g, g @ g
    lam = torch.minimum(torch.maximum((v @ g - b) / gg, lo), hi)  # the affine projection's
    u = torch.empty_like(v)
    active = torch.arange(v.shape[0], device=v.device)
    for _ in range(iters):
        if active.numel() == 0:
            break
        la, ba = lam[active], b[active]
        fit, ids, level, size = _isotonic_nonincreasing(v[active] - la.unsqueeze(-1) * g)
        g_block = torch.zeros_like(fit).scatter_add_(-1, ids, g.expand_as(fit))
        if nonnegative:
            fit = fit.clamp_min(0)
            g_block = torch.where(level > 0, g_block, 0)
        slope = (g_block.square() / size.clamp_min(1)).sum(-1)  # -d(g.u)/d(lam)
        u[active] = fit
        resid = fit @ g - ba
        # round-off of g.iso(v - lam g): that of the terms before their cancellation
        done = resid.abs() <= 16 * _EPS * (ba.abs() + v_g[active] + la.abs() * gg)
        lo_a = torch.where(resid > 0, la, lo[active])
        hi_a = torch.where(resid < 0, la, hi[active])
        step = resid / slope.clamp_min(1e-300)
        newton = la + step
        # the root of this linear piece is lam itself to round-off: stop (a step outside the
        # bracket there would fall back to bisection for ~50 halvings)
        done |= (slope > 0) & (step.abs() <= 4 * _EPS * la.abs())
        inside = (slope > 0) & (newton > lo_a) & (newton < hi_a)
        new = torch.where(inside, newton, 0.5 * (lo_a + hi_a))
        done |= (hi_a - lo_a) <= 4 * _EPS * torch.maximum(lo_a.abs(), hi_a.abs())
        lo[active], hi[active], lam[active] = lo_a, hi_a, new
        active = active[~done]
    m = u @ g
    if nonnegative:  # a positive factor keeps both u >= 0 and the order
        u = torch.where(m.unsqueeze(-1) > 0, u * (b / m.clamp_min(1e-300)).unsqueeze(-1), u)
        lost = (m == 0) & (b > 0)
        if bool(lost.any()):  # a mass below the resolution of lam (b ~ 1e-16 |v|) left u = 0
            u[lost] = _tiny_mass_limit(v[lost], g, b[lost])
        return u
    return u + ((b - m) / total).unsqueeze(-1)  # a constant keeps the order


def _tiny_mass_limit(v: Tensor, g: Tensor, b: Tensor) -> Tensor:
    r"""The projection of the rows of ``v [M, N]`` onto ``{non-increasing, u >= 0, g.u = b}``
    for a small mass ``b [M] > 0``: :math:`u = b\,d`, :math:`g^\top d = 1`.

    As :math:`b \to 0` the projection is :math:`b\,d` with :math:`d` maximising
    :math:`d^\top v` over the cone's section :math:`g^\top d = 1`, whose extreme rays are the
    prefixes :math:`\mathbf 1_{1..k}/G_k` (:math:`G_k = \sum_{i\le k} g_i`,
    :math:`V_k = \sum_{i \le k} v_i`), and among those of least norm: the top block of
    :math:`\operatorname{iso}(v - \lambda g)` as :math:`\lambda` rises to
    :math:`\max_k V_k/G_k`. With one maximising prefix that is :math:`\mathbf 1_{1..k}/G_k`.
    With several tied, the longest one is the top block, and on it the fit is
    :math:`(\lambda^* - \lambda)` times the isotonic fit of :math:`g` averaged over the pieces
    between consecutive tied prefixes (one tied prefix picked by the largest :math:`G_k / k`,
    as before, was feasible but not this limit: ``[0.5, 0, 0, 0]`` for ``[0.4, 0.2, 0, 0]`` at
    ``v = [2, 1, -5, -5]``, ``g = [2, 1, 1, 1]``).
    """
    n = v.shape[-1]
    gk = g.cumsum(-1).expand_as(v)
    ratio = v.cumsum(-1) / gk
    tied = ratio == ratio.amax(-1, keepdim=True)  # [M, N]: the prefix 1..i+1 is tied
    idx = torch.arange(n, device=v.device)
    last = torch.where(tied, idx, -1).amax(-1, keepdim=True)  # the longest tied prefix
    inside = idx <= last
    # piece of entry i: the number of tied prefixes ending before it
    piece = torch.cat([torch.zeros_like(last), tied[:, :-1].long().cumsum(-1)], -1)
    ge = g.expand_as(v)
    sums = torch.zeros_like(v).scatter_add_(-1, piece, ge)
    counts = torch.zeros_like(v).scatter_add_(-1, piece, torch.ones_like(v))
    piece_g = (sums / counts.clamp_min(1)).gather(-1, piece)
    # g > 0: the fit on the top block is positive, the zeros after it keep the order
    d = _isotonic_nonincreasing(torch.where(inside, piece_g, 0.0))[0]
    d = torch.where(inside, d, 0.0)
    return (d * (b / (d @ g)).unsqueeze(-1)).to(v.dtype)


def project_monotone(
    draws: ArrayLike,
    g: ArrayLike,
    b: ArrayLike,
    *,
    decreasing: bool = True,
    nonnegative: bool = False,
    iters: int = 100,
) -> Tensor:
    r"""Project draws onto monotone fields of mass ``b``: ``{u monotone, g.u = b}``.

    Each draw :math:`v` (a row along the last axis) is mapped to
    :math:`\arg\min_u \|u - v\|^2` over :math:`u_1 \ge \dots \ge u_N` (``decreasing=True``;
    :math:`u_1 \le \dots \le u_N` otherwise) with :math:`g^\top u = b`, and :math:`u \ge 0`
    too when ``nonnegative``. The solution is
    :math:`u = \operatorname{iso}(v - \lambda g)` (clipped at 0 with the bound) for the one
    :math:`\lambda` that gives mass ``b``; ``iso`` (isotonic regression) is computed by a
    batched pool-adjacent-violators pass, and :math:`\lambda` by a bracketed Newton iteration
    on the piecewise-linear :math:`g^\top u(\lambda)` (exact on its last linear piece). A draw
    already in the set is returned unchanged (to round-off).

    With the bound, the projection onto ``{monotone, u >= 0}`` is ``max(iso(w), 0)``: the
    clipped blocks form the low end (a suffix when decreasing), each with mean ``<= 0``, so
    every partial sum of ``w`` from that end's first entry on is ``<= 0`` and the isotonic
    fit's KKT multipliers, extended there by those partial sums (negated), stay ``>= 0``.

    Computed in float64 (on the CPU for an MPS tensor), returned in ``draws``' dtype and
    device; the equality holds to float64 round-off (``~1e-15`` relative) before that cast,
    and the order and the bound hold exactly. Cost: ``O(N)`` per draw per PAVA pass (at most
    ``N - 1`` passes, a few on typical draws) per Newton step (2-8 on random grids), so
    ``O(N)`` to ``O(N^2)`` per draw: 1000 draws x 200 points take < 0.1 s on one CPU core,
    about 1 s in the worst case for pooling (one new violation per pass).

    Parameters
    ----------
    draws : Tensor or array-like
        ``[*, N]`` floating, finite (an array or list is converted; its result is a tensor on
        the CPU).
    g : Tensor or array-like
        ``[N]`` strictly positive weights (the trapezoid weights of the grid).
    b : Tensor, array-like or float
        Masses ``[*]`` (or broadcastable to it); ``>= 0`` when ``nonnegative``.
    decreasing : bool
        Non-increasing along the last axis (the GPME fronts) or, ``False``, non-decreasing.
    nonnegative : bool
        Also require ``u >= 0``.
    iters : int
        Cap on the Newton/bisection steps (a few are used).

    Returns
    -------
    Tensor
        ``[*, N]``, the projected draws, without gradient: inputs that require grad are read
        detached, with a ``UserWarning`` (the solve's in-place steps made a ``backward``
        through it fail with torch's "modified by an inplace operation");
        :func:`~bayesphys.probconserv.project_nonnegative` is differentiable.

    Examples
    --------
    Constant weights: the isotonic fit ``[2, 2, 0.25, 0.25]`` shifted to mass 1.

    >>> import torch
    >>> v = torch.tensor([1.0, 3.0, 0.0, 0.5], dtype=torch.float64)
    >>> project_monotone(v, torch.full((4,), 0.25, dtype=torch.float64), 1.0)
    tensor([1.8750, 1.8750, 0.1250, 0.1250], dtype=torch.float64)
    """
    warn_detached("project_monotone", draws=draws, g=g, b=b)
    if isinstance(g, Tensor):
        g = g.detach()
    if isinstance(b, Tensor):
        b = b.detach()
    draws = as_tensor("draws", draws).detach()
    if not draws.is_floating_point() or draws.ndim < 1 or draws.shape[-1] < 1:
        raise ValueError(
            f"draws: expected a floating tensor [*, N] with N >= 1, received {draws.dtype} of "
            f"shape {tuple(draws.shape)}"
        )
    decreasing = check_bool("decreasing", decreasing)
    nonnegative = check_bool("nonnegative", nonnegative)
    iters = check_int("iters", iters, minimum=1)
    work = torch.device("cpu") if draws.device.type == "mps" else draws.device  # no float64
    g, b = _weights_and_masses(draws, g, b, _F64, work, nonnegative=nonnegative)
    v = draws.to(device=work, dtype=_F64).reshape(-1, draws.shape[-1])
    if not decreasing:  # non-decreasing u is non-increasing read backwards
        v, g = v.flip(-1), g.flip(-1)
    u = _solve(v, g, b.reshape(-1), nonnegative, iters)
    if not decreasing:
        u = u.flip(-1)
    return u.reshape(draws.shape).to(device=draws.device, dtype=draws.dtype)


@renamed_kwargs(n_samples="num_samples")
def monotone_posterior(
    post: Posterior,
    x: Tensor,
    mass: Tensor,
    num_samples: int = 500,
    *,
    decreasing: bool = True,
    nonnegative: bool = False,
    seed: int | None = 0,
) -> SamplePosterior:
    """Draws of ``post`` (event ``(nx,)``) projected to monotone, mass-``mass`` fields.

    Each draw of each time slice goes through :func:`project_monotone` with the trapezoid
    weights of ``x``.

    Parameters
    ----------
    post : Posterior
        Any posterior with event shape ``(nx,)`` and batch ``[*batch]`` (e.g. ``[B, nt]``);
        only its draws are used.
    x : Tensor
        ``[nx]`` strictly increasing grid.
    mass : Tensor
        ``[*batch]`` (or broadcastable to it): the mass of each slice.
    num_samples : int
        Number of draws, ``>= 2`` (for the empirical moments).
    decreasing, nonnegative : bool
        As in :func:`project_monotone`.
    seed : int or None
        Seed of the draws (``None``: torch's global stream).

    Returns
    -------
    SamplePosterior
        Draws ``[1, num_samples, *batch, nx]``, all monotone with ``g.u = mass``.
    """
    decreasing = check_bool("decreasing", decreasing)
    nonnegative = check_bool("nonnegative", nonnegative)
    draws, g, mass = _slice_draws(post, x, mass, num_samples, seed)
    u = project_monotone(draws, g, mass, decreasing=decreasing, nonnegative=nonnegative)
    return SamplePosterior(u.unsqueeze(0), event_ndim=1)
