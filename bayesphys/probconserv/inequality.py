r"""Optional inequality step: non-negative draws that keep the conservation constraint exactly.

Each draw :math:`v` of the updated posterior is mapped to the Euclidean projection onto
:math:`\{u \ge 0,\ g^\top u = b\}` (``g > 0`` trapezoid weights, ``b >= 0``):

.. math::  u(\lambda) = \max(v - \lambda g,\ 0), \qquad g^\top u(\lambda) = b,

with :math:`\lambda` found by bisection (:math:`g^\top u(\lambda)` is continuous and
non-increasing). Draws that are already non-negative are unchanged (:math:`\lambda = 0` since
they conserve mass). The result is a :class:`~bayesphys.SamplePosterior` whose draws all
satisfy both constraints; unlike the reference's NNLS MAP (anchor §1.5) the equality holds to
round-off and the whole distribution, not only a point estimate, is returned.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_int, check_seed
from .._device import ArrayLike, as_tensor
from .._posterior_base import is_posterior
from .._renamed import renamed_kwargs
from ..posterior import Posterior, SamplePosterior
from ._update_checks import check_slice_mass
from .update import trapezoid_weights

__all__ = ["project_nonnegative", "nonnegative_posterior"]


def _weights_and_masses(
    draws: Tensor,
    g: Tensor,
    b: Tensor,
    dtype: torch.dtype,
    device: torch.device,
    *,
    nonnegative: bool,
) -> tuple[Tensor, Tensor]:
    """Checked ``g [N] > 0`` and ``b`` expanded to ``draws.shape[:-1]`` (``>= 0`` when
    ``nonnegative``), both as ``dtype`` on ``device``: the inequality steps' common checks."""
    g = as_tensor("g", g, dtype=dtype, device=device)
    if g.shape != draws.shape[-1:]:
        raise ValueError(
            f"g: expected shape ({draws.shape[-1]},) (one weight per draw value), received "
            f"{tuple(g.shape)}"
        )
    b = as_tensor("b", b, dtype=dtype, device=device)
    try:
        b = b.expand(draws.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"b: expected shape {tuple(draws.shape[:-1])} (one mass per draw) or broadcastable "
            f"to it, received {tuple(b.shape)}"
        ) from err
    if bool((g <= 0).any()):
        raise ValueError("g: expected strictly positive weights")
    if nonnegative and bool((b < 0).any()):
        raise ValueError("b: expected a non-negative mass (no non-negative field has it otherwise)")
    return g, b


def _implicit_lambda(lam: Tensor, draws: Tensor, g: Tensor, b: Tensor) -> Tensor:
    r"""The bisection's multiplier ``lam [*]`` with the implicit-function gradient of
    :math:`f(\lambda) = g^\top \max(v - \lambda g, 0) - b = 0` attached,
    :math:`d\lambda = (\partial f / \partial(v, g, b)) / \lVert g_S\rVert^2` over the support
    :math:`S = \{i: v_i > \lambda g_i\}`: the same values bit for bit (``f - f.detach()`` is
    exactly 0), but the gradient of the projection in ``draws``, ``g`` and ``b`` (the
    bisection's brackets gave ``lam`` a wrong one, an affine mix of the brackets' ends, and the
    projection silently wrong gradients). No gradient where the support is empty."""
    lam = lam.detach()
    w = draws - lam.unsqueeze(-1) * g
    f = w.clamp_min(0) @ g - b
    slope = (w.detach() > 0).to(w.dtype) @ g.detach().square()  # -df/dlam = |g_S|^2
    ok = slope > 0
    step = (f - f.detach()) / torch.where(ok, slope, torch.ones_like(slope))
    return lam + torch.where(ok, step, torch.zeros_like(step))


def project_nonnegative(draws: ArrayLike, g: ArrayLike, b: ArrayLike, iters: int = 100) -> Tensor:
    """Project draws ``[*, N]`` (``N >= 1``, floating) onto ``{u >= 0, g.u = b}``; ``g [N] > 0``,
    ``b`` broadcast to ``[*]``. Each may be an array or list (converted; ``g`` and ``b`` to the
    draws' dtype and device). Differentiable in ``draws``, ``g`` and ``b`` (the projection's
    Jacobian on its support, by the implicit function theorem for the multiplier)."""
    draws = as_tensor("draws", draws)
    if not draws.is_floating_point() or draws.ndim < 1 or draws.shape[-1] < 1:
        raise ValueError(
            f"draws: expected a floating tensor [*, N] with N >= 1, received {draws.dtype} of "
            f"shape {tuple(draws.shape)}"
        )
    iters = check_int("iters", iters, minimum=1)
    g, b = _weights_and_masses(draws, g, b, draws.dtype, draws.device, nonnegative=True)

    def mass(lam: Tensor) -> Tensor:
        return (draws - lam.unsqueeze(-1) * g).clamp_min(0) @ g

    # bracket: mass(lo) >= b >= mass(hi). For lam <= min_i v_i / g_i every entry is positive,
    # so mass(lam) = g.v - lam |g|^2 there, which is >= b once lam <= (g.v - b) / |g|^2
    ratio = draws / g
    hi = ratio.amax(-1).clamp_min(0)  # u(hi) = 0
    linear = (draws @ g - b) / (g @ g)
    lo = torch.minimum(torch.minimum(ratio.amin(-1), linear), torch.zeros_like(hi)) - 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        too_much = mass(mid) > b
        lo = torch.where(too_much, mid, lo)
        hi = torch.where(too_much, hi, mid)
    lam = _implicit_lambda(0.5 * (lo + hi), draws, g, b)
    u = (draws - lam.unsqueeze(-1) * g).clamp_min(0)
    # exact equality: rescale the (positive) support to remove the bisection residual
    m = u @ g
    u = torch.where(m.unsqueeze(-1) > 0, u * (b / m.clamp_min(1e-300)).unsqueeze(-1), u)
    # a mass b > 0 below the resolution of lam (b ~ 1e-16 |v|) left u = 0: the projection's
    # limit for such b, t g_i on the largest v_i / g_i with t sum g_i^2 = b there
    lost = (m == 0) & (b > 0)
    if bool(lost.any()):
        top = torch.where(ratio == ratio.amax(-1, keepdim=True), g, 0)
        u = torch.where(lost.unsqueeze(-1), top * (b / (top @ g)).unsqueeze(-1), u)
    return u


@renamed_kwargs(n_samples="num_samples")
def nonnegative_posterior(
    post: Posterior,
    x: Tensor,
    mass: Tensor,
    num_samples: int = 500,
    *,
    seed: int | None = 0,
) -> SamplePosterior:
    """Draws of ``post`` (event ``(nx,)``) projected to non-negative, mass-``mass`` fields.

    Returns ``SamplePosterior`` with draws ``[1, num_samples, *batch, nx]`` (``num_samples >= 2``,
    for its empirical moments); ``mass [*batch]`` (or broadcastable to it).
    """
    draws, g, mass = _slice_draws(post, x, mass, num_samples, seed)
    u = project_nonnegative(draws, g, mass)
    return SamplePosterior(u.unsqueeze(0), event_ndim=1)


def _slice_draws(
    post: Posterior, x: Tensor, mass: Tensor, num_samples: int, seed: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Checked ``(draws [num_samples, *batch, nx], g [nx], mass [*batch])`` of a posterior with
    event ``(nx,)``: what the inequality steps project."""
    if not is_posterior(post):  # only its draws are used: any posterior (recalibrated, ...)
        raise TypeError(f"post: expected a Posterior, received {type(post).__name__}")
    if len(post.event_shape) != 1:
        raise ValueError(f"post: expected event shape (nx,), received {tuple(post.event_shape)}")
    num_samples = check_int("num_samples", num_samples, minimum=2)
    g = trapezoid_weights(x).to(post.device, post.dtype)
    if g.ndim != 1 or g.shape[0] != post.event_shape[0]:
        raise ValueError(
            f"x: expected shape ({post.event_shape[0]},) (the posterior's event), received "
            f"{tuple(g.shape)}"
        )
    mass = check_slice_mass(mass, post.batch_shape, post.dtype, post.device)
    gen = None
    if seed is not None:
        seed = check_seed("seed", seed)
        gen = torch.Generator(device=post.device).manual_seed(seed)
    draws = post.sample((num_samples,), generator=gen)
    return draws, g, mass
