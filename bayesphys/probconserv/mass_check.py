r"""Mass-residual discrepancy: the conservation law as a check on the Step-1 variance.

Why: the calibrated Step-1 covariance is fitted on the training distribution. For a function
unlike those (Stefan at ``u* = 0.5``, outside the training range ``[0.55, 0.7]``) the model
can be confidently wrong: its front lies behind the true one, with standard deviations of
``1e-3`` ahead of it where the truth is ``0.5``, and four grid points with :math:`|z|` of
``10^2``-``10^3`` set the mean log-likelihood (about ``-3000``). No rescaling of the model's
own covariance can fix this: it has no variance there to scale. The conservation law says
that it happens. With the calibrated covariance :math:`\Sigma` the mass residual of a slice,

.. math::
    r = g^\top \mu - b = g^\top(\mu - u), \qquad v = g^\top \Sigma g,

should have :math:`\mathbb E[r^2] = \kappa v`, where :math:`\kappa` (about one) is the mean of
:math:`r^2 / v` over ``M`` calibration functions of the training distribution. We add a
**model-discrepancy** term :math:`\delta \sim \mathcal N(0, \sigma_d^2 K)`, a smooth Gaussian
process (squared-exponential kernel :math:`K_{ij} = \exp(-(x_i - x_j)^2 / 2\ell^2)`, length
:math:`\ell` a fraction of the domain, default 5 %), and estimate its variance by maximum
likelihood from the one residual the law gives, :math:`r \sim \mathcal N(0,\ \kappa v +
\sigma_d^2\, g^\top K g)`:

.. math::
    \hat\sigma_d^2 = \max\Big(0,\ \frac{r^2 - \kappa v}{g^\top K g}\Big).

It is zero for a function whose residual the model explains (most of the training
distribution, and every function whose :math:`r^2 \le \kappa v`), and grows with the part of
the residual it cannot explain. Before the update the covariance is :math:`\Sigma +
\hat\sigma_d^2 K`. For the update we add the *mass-neutral* part
:math:`K_\perp = K - K g\,(g^\top K g)^{-1} g^\top K` (:math:`K_\perp g = 0`): the limit (or
finite-:math:`\sigma_G`) update of :math:`\Sigma + \hat\sigma_d^2 K_\perp` has the same mean as
that of :math:`\Sigma` (Hansen et al., ICML 2023, "Learning Physical Models that Can Respect
Conservation Laws"), and its covariance is the updated one plus :math:`\hat\sigma_d^2
K_\perp`, so every draw still conserves mass exactly. MSE and CE never change.

**Gate.** Inside the training range the calibrated covariance carries the split-conformal
coverage of :mod:`~bayesphys.probconserv.conditional`, and a short-range discrepancy fitted
to a merely large residual costs sharpness there (a mass residual is an integral of errors
correlated over the domain; a kernel of length :math:`\ell \ll` the domain must be given a
large pointwise variance to explain it). So by default the discrepancy is added only to a
function whose inferred parameter :math:`\hat\theta(\mu, b)` (the map of
:mod:`~bayesphys.probconserv.conditional`, not clipped) lies more than ``gate`` standard
deviations of its calibration error outside the training range: where no calibration holds.

**Floor.** One residual resolves :math:`\sigma_d^2` only down to about :math:`\kappa v /
g^\top K g`: below that, :math:`\kappa v + \sigma_d^2 g^\top K g` is within a factor of two
of the model's own :math:`\kappa v`, and with one :math:`\chi^2_1` draw the two cannot be told
apart (a residual falls below its own standard deviation in 68 % of draws), so the
maximum-likelihood estimate is zero for many functions that do have a discrepancy. For a
function the gate flags, the estimate is the upper end of that unresolved interval instead of its
lower end, :math:`\hat\sigma_d^2 = \max(r^2 - \kappa v,\ \kappa v) / g^\top K g`: a function the
model was not trained for gets at least the discrepancy one residual cannot rule out. (On Stefan at
``u* = 0.5`` seven of the fifty test functions of the meta-GP had :math:`r^2 < \kappa v` while
their fronts were wrong by several grid points; :func:`gated_discrepancy_variance`.)

Both kernels are used through a root :math:`K \approx L L^\top` (eigenvalues above ``1e-12``
of the largest), so low-rank-plus-diagonal covariances stay structured.

Shapes: means ``[B, nt, N]``, covariances ``[B, nt, N, N]`` (dense or structured), grid ``x
[N]``, quadrature weights ``g [N]``, masses ``[B, nt]``; residuals, variances and
:math:`\hat\sigma_d^2` ``[B, nt]``; roots ``[N, R]``.
"""

from __future__ import annotations

import torch
from linear_operator.operators import (
    DiagLinearOperator,
    LinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)
from torch import Tensor

from .._checks import check_broadcasts, check_real
from .._device import ArrayLike, as_tensor
from ._update_checks import check_covariance
from .update import cov_times_gt

__all__ = [
    "mass_residual",
    "fit_mass_kappa",
    "discrepancy_roots",
    "discrepancy_variance",
    "gated_discrepancy_variance",
    "add_discrepancy",
    "outside_training_range",
]

_F64 = torch.float64


def mass_residual(
    mean: Tensor, cov: LinearOperator | Tensor, g: ArrayLike, mass: ArrayLike
) -> tuple[Tensor, Tensor]:
    r"""Residual :math:`r = g^\top\mu - b` and its model variance :math:`v = g^\top\Sigma g`,
    each ``[B, nt]``.

    ``mean [B, nt, N]``, ``cov [B, nt, N, N]`` (its structure is used, never densified), ``g
    [N]``, ``mass [B, nt]``; ``g`` and ``mass`` may be arrays or lists (converted).
    """
    mean = as_tensor("mean", mean, dtype=_F64)
    check_covariance("cov", cov)
    if mean.ndim < 1 or tuple(cov.shape[-1:]) != tuple(mean.shape[-1:]):
        raise ValueError(
            f"cov: expected shape [B, nt, N, N] with N = {mean.shape[-1] if mean.ndim else '?'} "
            f"(mean's last dimension), received {tuple(cov.shape)}"
        )
    # another batch failed in torch's broadcast, naming no argument
    check_broadcasts(
        "cov",
        cov.shape[:-2],
        mean.shape[:-1],
        f"batch dims broadcasting to mean's {tuple(mean.shape[:-1])} (functions x slices)",
    )
    g = as_tensor("g", g, real=True)  # complex weights were cast to their real part
    if g.ndim != 1 or g.shape[0] != mean.shape[-1]:
        raise ValueError(
            f"g: expected shape ({mean.shape[-1]},) (one weight per grid point), "
            f"received {tuple(g.shape)}"
        )
    mass = as_tensor("mass", mass, dtype=_F64, device=mean.device)
    if mass.shape != mean.shape[:-1]:
        raise ValueError(
            f"mass: expected shape {tuple(mean.shape[:-1])} (functions x slices), "
            f"received {tuple(mass.shape)}"
        )
    g = g.to(mean)
    gt = g.expand(*mean.shape).unsqueeze(-1).contiguous()  # [B, nt, N, 1]
    var = (cov_times_gt(cov, gt).squeeze(-1) * g).sum(-1)  # [B, nt]
    if bool((var <= 0).any()):
        raise ValueError("cov: g^T Sigma g must be positive (a zero-variance mass direction)")
    return mean @ g - mass, var


def fit_mass_kappa(residual: ArrayLike, variance: ArrayLike) -> float:
    r""":math:`\kappa` = mean of :math:`r^2/v` over calibration functions and slices ``[M, nt]``
    (tensors, arrays or lists)."""
    residual = as_tensor("residual", residual, finite=False, real=True)
    variance = as_tensor("variance", variance, finite=False, real=True)
    if residual.numel() < 4:
        raise ValueError(
            f"residual: expected at least 4 calibration residuals, received {residual.numel()}"
        )
    if residual.shape != variance.shape:
        raise ValueError(
            f"variance: expected shape {tuple(residual.shape)}, received {tuple(variance.shape)}"
        )
    if bool((variance < 0).any()):  # its z^2 < 0 pulled kappa down without a word
        raise ValueError(
            f"variance: expected values > 0, received {int((variance < 0).sum())} negative value(s)"
        )
    z2 = residual.to(_F64).pow(2) / variance.to(_F64)
    if not bool(torch.isfinite(z2).all()):
        raise ValueError("residual: expected finite calibration residuals and variances")
    return float(z2.mean())


def discrepancy_roots(x: ArrayLike, g: ArrayLike, length: float) -> tuple[Tensor, Tensor, float]:
    r"""Roots of :math:`K` and :math:`K_\perp` ``[N, R]`` on the grid ``x [N]`` (``N >= 1``) and
    :math:`g^\top K g`; ``length`` :math:`\ell` in units of ``x``; ``g [N]`` quadrature
    weights ``>= 0``, not all zero (:math:`g^\top K g > 0`). ``x`` and ``g`` may be arrays or
    lists (converted to float64 on ``x``'s device)."""
    length = check_real("length", length, minimum=0.0, strict=True)
    x = as_tensor("x", x, dtype=_F64, ndim=1)
    if x.numel() == 0:  # failed in torch's max() of no eigenvalues
        raise ValueError("x: expected at least one grid point, received none")
    g = as_tensor("g", g, dtype=_F64, device=x.device)
    if g.shape != x.shape:
        raise ValueError(
            f"g: expected shape {tuple(x.shape)} (one weight per grid point), received "
            f"{tuple(g.shape)}"
        )
    # zero weights gave g^T K g = 0 and a root of K_perp of 0 / 0 = NaN without a word
    if bool((g < 0).any()) or not bool((g > 0).any()):
        raise ValueError(
            f"g: expected quadrature weights >= 0, not all zero, received values in "
            f"[{float(g.min()):g}, {float(g.max()):g}]"
        )
    k = torch.exp(-0.5 * (x[:, None] - x[None, :]).pow(2) / length**2)
    evals, evecs = torch.linalg.eigh(k)
    keep = evals > 1e-12 * evals.max()
    root = evecs[:, keep] * evals[keep].sqrt()  # [N, R]
    kg = root @ (root.T @ g)
    gkg = float(g @ kg)
    # K_perp = A K A^T with A = I - K g g^T / (g^T K g): root A L
    perp = root - kg[:, None] * (g @ root)[None, :] / gkg
    return root, perp, gkg


def discrepancy_variance(residual: Tensor, variance: Tensor, kappa: float, gkg: float) -> Tensor:
    r""":math:`\hat\sigma_d^2 = \max(0, (r^2 - \kappa v) / g^\top K g)` ``[B, nt]``."""
    kappa = check_real("kappa", kappa, minimum=0.0, strict=True)
    gkg = check_real("gkg", gkg, minimum=0.0, strict=True)
    residual, variance = _residual_and_variance(residual, variance)
    return (residual.pow(2) - kappa * variance).clamp_min(0.0) / gkg


def _residual_and_variance(residual, variance) -> tuple[Tensor, Tensor]:
    """``residual, variance [B, nt]`` as float64 tensors of one shape, the variances ``>= 0``,
    or an error naming the argument: complex values were cast to their real part, another
    shape failed in torch's broadcast (or broadcast silently) and a negative variance raised
    the discrepancy instead of lowering it."""
    residual = as_tensor("residual", residual, real=True).to(_F64)
    variance = as_tensor("variance", variance, real=True).to(_F64)
    if variance.shape != residual.shape:
        raise ValueError(
            f"variance: expected shape {tuple(residual.shape)} (as residual), received "
            f"{tuple(variance.shape)}"
        )
    if bool((variance < 0).any()):
        raise ValueError(
            f"variance: expected values >= 0, received {int((variance < 0).sum())} negative "
            "value(s)"
        )
    return residual, variance


def gated_discrepancy_variance(
    residual: ArrayLike,
    variance: ArrayLike,
    kappa: float,
    gkg: float,
    outside: ArrayLike,
    floor: float,
) -> Tensor:
    r""":math:`\hat\sigma_d^2` ``[B, nt]`` for functions flagged ``outside [B]`` by the gate
    (flags: bool, or 0/1), zero for the others:

    .. math::
        \hat\sigma_d^2 = \max\big(r^2 - \kappa v,\ \mathrm{floor}\cdot\kappa v\big)
        / g^\top K g .

    ``floor = 0`` is the maximum-likelihood estimate of :func:`discrepancy_variance`; ``floor =
    1`` (the default of ``calibrate``) never takes less than the resolution of one residual
    (module docstring, "Floor"). ``residual``, ``variance`` and ``outside`` may be arrays or
    lists (converted; float64 result).
    """
    floor = check_real("floor", floor, minimum=0.0)
    residual, variance = _residual_and_variance(residual, variance)
    outside = as_tensor("outside", outside, real=True)
    if outside.shape != residual.shape[:1]:
        raise ValueError(
            f"outside: expected shape {tuple(residual.shape[:1])} (one flag per function), "
            f"received {tuple(outside.shape)}"
        )
    if not bool(((outside == 0) | (outside == 1)).all()):
        # a weight (0.5, 2, -1) scaled the variance, negative ones made it negative
        bad = outside[(outside != 0) & (outside != 1)]
        raise ValueError(
            f"outside: expected flags (True/False or 0/1, one per function), received "
            f"{bad.numel()} other value(s), e.g. {float(bad[0]):g}"
        )
    ml = discrepancy_variance(residual, variance, kappa, gkg)
    least = floor * kappa * variance / gkg
    return torch.maximum(ml, least) * outside.to(ml.device)[:, None]


def outside_training_range(theta: Tensor, lo: float, hi: float, margin: float) -> Tensor:
    r"""``[B]`` bool: :math:`\hat\theta` ``[B]`` lies more than ``margin`` outside ``[lo, hi]``.

    A NaN :math:`\hat\theta` is refused (it compared as inside and was never flagged)."""
    margin = check_real("margin", margin, minimum=0.0)
    theta = as_tensor("theta", theta, dtype=_F64)
    return torch.maximum(lo - theta, theta - hi) > margin


def add_discrepancy(
    cov: LinearOperator | Tensor, sd2: ArrayLike, root: ArrayLike
) -> LinearOperator | Tensor:
    r""":math:`\Sigma + \hat\sigma_d^2 L L^\top` for ``cov [B, nt, N, N]``, ``sd2 [B, nt]``,
    ``root`` :math:`L` ``[N, R]`` (or any batch dims: ``cov [*batch, N, N]``, ``sd2 [*batch]``;
    the result has ``cov``'s shape). Diagonal and low-rank-plus-diagonal covariances become
    low-rank-plus-diagonal (the root gains ``R`` columns); anything else a dense tensor.
    ``cov`` is returned unchanged when every :math:`\hat\sigma_d^2` is zero. ``sd2`` and ``root``
    may be arrays or lists: they are converted to ``cov``'s dtype and device."""
    check_covariance("cov", cov)
    # arrays took their own dtype and the CPU: integer variances cast the root to integers
    # (0.5 -> 0) and float64 ones turned a float32 covariance into float64
    like = {"dtype": cov.dtype, "device": cov.device}
    sd2 = as_tensor("sd2", sd2, real=True, **({} if isinstance(sd2, Tensor) else like))
    if not sd2.is_floating_point():
        sd2 = sd2.to(cov.dtype)
    if bool((sd2 < 0).any()):
        raise ValueError(
            f"sd2: expected variances >= 0, received {int((sd2 < 0).sum())} negative value(s)"
        )
    n = cov.shape[-1]
    if sd2.shape != tuple(cov.shape[:-2]):
        raise ValueError(
            f"sd2: expected shape {tuple(cov.shape[:-2])} (one variance per function and "
            f"slice), received {tuple(sd2.shape)}"
        )
    root = as_tensor("root", root, real=True, **({} if isinstance(root, Tensor) else like))
    if root.ndim != 2 or root.shape[0] != n:
        raise ValueError(f"root: expected shape [{n}, R], received {tuple(root.shape)}")
    if not bool((sd2 > 0).any()):
        return cov
    # [*batch, N, R]: the root broadcast over cov's own batch dims (a fixed [None, None] gave
    # a covariance [nt, N, N] the result [1, nt, N, N], one [N, N] the result [1, 1, N, N])
    extra = root.to(sd2) * sd2.sqrt()[..., None, None]
    if isinstance(cov, DiagLinearOperator):
        return LowRankRootAddedDiagLinearOperator(LowRankRootLinearOperator(extra), cov)
    if isinstance(cov, LowRankRootAddedDiagLinearOperator):
        r = cov._linear_op.root.to_dense()
        r = torch.cat([r.expand(*extra.shape[:-1], r.shape[-1]), extra], -1)
        return LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(r), DiagLinearOperator(cov._diag_tensor.diagonal())
        )
    dense = cov.to_dense() if isinstance(cov, LinearOperator) else cov
    return dense + extra @ extra.mT
