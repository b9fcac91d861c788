r"""Scores on a time slice and the downstream shock-position posterior.

Per function (paper definitions, Hansen et al. 2023 §4): on the grid ``x [nx]`` at one time,

* ``mse`` :math:`= \frac1{n_x}\sum_i(\tilde\mu_i - u_i)^2`,
* ``ll`` :math:`= \frac1{n_x}\sum_i \log\mathcal N(u_i \mid \tilde\mu_i, \tilde\sigma_i^2)`
  (:math:`\tilde\sigma_i^2 = \tilde\Sigma_{ii}`, floored at ``var_floor``),
* ``ce`` :math:`= g^\top\tilde\mu - b(t)` (signed, trapezoid :math:`g`),
* ``coverage90``: fraction of :math:`u_i` inside the central 90 % marginal interval,
* ``crps``: closed-form Gaussian CRPS averaged over the grid.

Shock position: for a draw :math:`u^{(s)}` the first grid point with :math:`u^{(s)}_i \le`
``threshold`` (reference: ``0``); the draws of the position form its posterior.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from .. import metrics
from .._checks import check_increasing, check_int, check_real, check_seed, did_you_mean
from .._device import ArrayLike, as_tensor
from .._posterior_base import is_posterior
from .._renamed import renamed_kwargs
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..posterior import GaussianPosterior, Posterior
from ._update_checks import check_slice_mass
from .update import trapezoid_weights

__all__ = ["slice_scores", "shock_position", "shock_posterior"]


def slice_scores(
    post: GaussianPosterior,
    truth: ArrayLike,
    x: ArrayLike,
    mass: ArrayLike,
    var_floor: float = 1e-12,
) -> dict[str, Tensor]:
    """Per-function scores ``{name: [*batch]}`` of ``post`` (event ``(nx,)``) against ``truth``
    ``[*batch, nx]`` on the grid ``x [nx]``, with masses ``mass [*batch]`` (or broadcastable to
    it); ``truth``, ``x`` and ``mass`` may be arrays or lists (converted to the posterior's dtype
    and device). Variances are floored at ``var_floor > 0`` (a point of zero variance, e.g. a pinned
    boundary value, has no finite LL or CRPS). The floor is absolute, in the field's units
    squared: the default ``1e-12`` suits fields of order 1; a floor above ``1e-3`` of the
    posterior's largest variance (a field stated in small units) is warned about, as the
    scores then read the floor."""
    if not isinstance(post, GaussianPosterior):
        raise TypeError(f"post: expected a GaussianPosterior, received {type(post).__name__}")
    if len(post.event_shape) != 1:
        raise ValueError(f"post: expected event shape (nx,), received {tuple(post.event_shape)}")
    # 0 let a zero-variance point through: LL -inf / NaN and a CRPS error naming std
    var_floor = check_real("var_floor", var_floor, minimum=0.0, strict=True)
    mu = post.mean
    truth = as_tensor("truth", truth, real=True).to(mu)
    if truth.shape != mu.shape:
        raise ValueError(f"truth: expected shape {tuple(mu.shape)}, received {tuple(truth.shape)}")
    x = as_tensor("x", x, real=True)
    if x.ndim != 1 or x.numel() != mu.shape[-1]:
        raise ValueError(
            f"x: expected shape ({mu.shape[-1]},) (one point per field value), received "
            f"{tuple(x.shape)}"
        )
    mass = check_slice_mass(mass, mu.shape[:-1], mu.dtype, mu.device)
    raw = post.variance
    _warn_floor(var_floor, raw)
    var = raw.clamp_min(var_floor)
    sd = var.sqrt()
    ll = -0.5 * (torch.log(2 * math.pi * var) + (truth - mu) ** 2 / var)
    z90 = 1.6448536269514722
    inside = ((truth >= mu - z90 * sd) & (truth <= mu + z90 * sd)).to(mu.dtype)
    g = trapezoid_weights(x).to(mu)
    return {
        "mse": (mu - truth).pow(2).mean(-1),
        "ll": ll.mean(-1),
        "ce": mu @ g - mass,
        "coverage90": inside.mean(-1),
        "crps": metrics.crps_gaussian(mu, sd, truth, dim=-1),
    }


#: a floor above this fraction of the posterior's largest variance is warned about
FLOOR_RATIO = 1e-3


def _warn_floor(var_floor: float, var: Tensor) -> None:
    """Warn when ``var_floor`` is not small against the variances ``var [*batch, nx]``: an
    absolute floor meant for zero-variance points (the default 1e-12 suits fields of order 1)
    raised every variance of a field stated in small units (values ~1e-6, sds ~1e-8), and
    the scores read the floor instead of the posterior without a word."""
    finite = var[torch.isfinite(var)]
    vmax = float(finite.max()) if finite.numel() else 0.0
    if vmax > 0 and var_floor > FLOOR_RATIO * vmax:
        raised = int((var < var_floor).sum())
        warnings.warn(
            f"slice_scores: var_floor={var_floor:.3g} is not small against the posterior's "
            f"variances (largest {vmax:.3g}); it raised {raised} of {var.numel()} of them, so "
            "ll, coverage90 and crps score the floor rather than the posterior. Give var_floor "
            "in the field's units squared (e.g. 1e-12 times its largest variance)",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


_MISSING = ("last", "first", "nan")


def _check_missing(missing) -> str:
    if missing not in _MISSING:
        raise ValueError(
            f"missing: expected one of {_MISSING}, received "
            f"{missing!r}{did_you_mean(missing, _MISSING)}"
        )
    return missing


def _check_positions(x, nx: int) -> Tensor:
    """The positions ``x [nx]`` of :func:`shock_position` as a tensor: one per field value,
    never decreasing (``ValueError`` naming the first decrease)."""
    x = as_tensor("x", x, real=True)
    if x.ndim != 1 or x.numel() != nx:
        raise ValueError(
            f"x: expected shape ({nx},) (one point per field value), received {tuple(x.shape)}"
        )
    check_increasing(
        "x",
        x,
        strict=False,
        what="positions (the front is the first crossing along x)",
        hint="; sort x and the field values together",
    )
    return x


def shock_position(
    draws: ArrayLike, x: ArrayLike, threshold: float = 0.0, *, missing: str = "last"
) -> Tensor:
    """First ``x`` where a draw ``[*, nx]`` is ``<= threshold`` -> ``[*]``.

    ``x [nx]`` is the position read for each field value (the grid, or e.g. the reference
    code's ``idx / nx * x_max``). A draw that never reaches ``threshold`` has no front on the
    grid: ``missing="last"`` reads ``x[-1]`` (censored at the domain's end), ``"first"``
    ``x[0]`` (what the reference's ``argmin`` returns), ``"nan"`` NaN (count them with
    ``isnan``). ``x`` must not decrease (repeated values are fine): the first crossing in
    array order is the front only along increasing ``x`` (on a reversed grid it read the far
    end of the domain); a decreasing ``x`` is a ``ValueError``.

    The positions come back in the draws' floating dtype (for integer draws: in ``x``'s, or
    the default floating dtype for an integer ``x``). ``draws`` and ``x`` may be arrays or lists
    (converted; the positions come back on the draws' device)."""
    # complex draws failed inside torch ("le_cpu" not implemented), an empty grid in argmax
    draws = as_tensor("draws", draws, real=True)
    if draws.ndim < 1 or draws.shape[-1] == 0:
        raise ValueError(
            f"draws: expected shape [*, nx] with nx >= 1, received {tuple(draws.shape)}"
        )
    threshold = check_real("threshold", threshold)
    missing = _check_missing(missing)
    x = _check_positions(x, draws.shape[-1])
    # positions in the draws' floating dtype; integer draws (an indicator field) keep the
    # positions' own floating dtype: cast to the draws' integer dtype, x = 0.3 was read as 0
    dtype = draws.dtype if draws.is_floating_point() else x.dtype
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    x = x.to(device=draws.device, dtype=dtype)
    below = draws <= threshold
    crossed = below.any(-1)
    idx = below.to(torch.int8).argmax(-1)  # 0 where no value is below
    out = x[idx]
    if missing == "last":
        out = torch.where(crossed, out, x[-1])
    elif missing == "nan":
        out = torch.where(crossed, out, torch.full_like(out, math.nan))
    return out


@renamed_kwargs(n_samples="num_samples")
def shock_posterior(
    post: Posterior,
    x: Tensor,
    num_samples: int = 500,
    *,
    threshold: float = 0.0,
    seed: int | None = 0,
    missing: str = "last",
) -> Tensor:
    """Draws ``[num_samples, *batch]`` of the shock position from ``post`` (event ``(nx,)``);
    ``x``, ``threshold`` and ``missing`` as in :func:`shock_position`."""
    if not is_posterior(post):  # only its draws are used: any posterior (recalibrated, ...)
        raise TypeError(f"post: expected a Posterior, received {type(post).__name__}")
    if len(post.event_shape) != 1:
        raise ValueError(f"post: expected event shape (nx,), received {tuple(post.event_shape)}")
    num_samples = check_int("num_samples", num_samples, minimum=1)
    threshold = check_real("threshold", threshold)
    missing = _check_missing(missing)
    x = _check_positions(x, post.event_shape[0])  # before the draws
    gen = None
    if seed is not None:
        seed = check_seed("seed", seed)
        gen = torch.Generator(device=post.device).manual_seed(seed)
    draws = post.sample((num_samples,), generator=gen)
    return shock_position(draws, x, threshold, missing=missing)
