r"""Step 2 on a latent mixture, as the reference code of ProbConserv applies it.

Hansen, Maddix, Alizadeh, Gupta, Mahoney, *Learning Physical Models that Can Respect
Conservation Laws*, ICML 2023: the reference implementation (``PhysNP.sample``) updates each
latent draw of its attentive neural process separately. A latent-variable Step-1 model gives,
for draws :math:`s = 1..S`, independent Gaussians :math:`u \mid z_s \sim
\mathcal N(\mu_s, \operatorname{diag} v_s)` on a time slice. With one constraint row
:math:`g` (trapezoid weights, :math:`g^\top u = b + \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, \sigma_G^2)`) each draw is conditioned on its own:

.. math::
    c_s = g^\top \operatorname{diag}(v_s)\, g + \sigma_G^2, \qquad w_s = v_s \odot g,\\
    \tilde\mu_s = \mu_s - w_s\,(g^\top\mu_s - b)/c_s, \qquad
    \tilde\Sigma_s = \operatorname{diag}(v_s) - w_s w_s^\top / c_s,

so each draw's mass defect is spread in proportion to **its own** decoder variance (the
moment-matched update of :func:`~bayesphys.probconserv.conserve_slices` weights it by
:math:`\bar v + \operatorname{Var}_s\mu_s`, which also counts the spread of the latent means).
The updated mixture is then moment-matched:

.. math::
    \tilde\mu = \tfrac1S\textstyle\sum_s \tilde\mu_s, \qquad
    \tilde\Sigma = \tfrac1S\sum_s \tilde\Sigma_s
    + \frac{a}{S}\sum_s (\tilde\mu_s - \tilde\mu)(\tilde\mu_s - \tilde\mu)^\top ,

with ``spread_scale`` :math:`a` (1: the mixture's own moments; a variance calibration that
scales the Step-1 covariance by :math:`c` passes :math:`v_s \to c\,v_s` and :math:`a = c`, so
that the Step-1 moment match :math:`c(\bar v + \operatorname{Var}_s\mu_s)` is the one the
moment-matched update starts from). In the limit :math:`\sigma_G = 0` every
:math:`\tilde\mu_s` meets :math:`g^\top\tilde\mu_s = b`, so :math:`g^\top\tilde\mu = b` and
:math:`\tilde\Sigma g = 0`: every draw of the returned posterior conserves mass (its sampling
root is projected onto :math:`g^\perp`, so to round-off).

Differences from the reference: it scales the latent spread with :math:`1/(S-1)` and samples
its shock positions from :math:`\mathcal N(\tilde\mu, \frac1S\sum_s\tilde\Sigma_s)`, without
the spread term; here the posterior is the full moment match (``1/S``), its marginals and its
draws alike.

Shapes: ``means, variances [S, *batch, nx]`` (``batch`` e.g. ``(B, nt)``), ``x [nx]``,
``mass [*batch]``. The covariance is dense per slice, ``[*batch, nx, nx]``; everything runs
in float64. Memory: the posterior holds two dense ``[*batch, nx, nx]`` tensors (the covariance
and its sampling root), 1.6 GB each for ``B = 50`` functions, ``nt = 100`` slices and
``nx = 201``; the update works on 64 MB of slices at a time, so its peak there is about 4 GB
(the whole batch at once would take about ten such tensors, 17 GB). Query fewer slices at a
time to go below that.
"""

from __future__ import annotations

import math
import numbers

import torch
from linear_operator import to_linear_operator
from linear_operator.operators import (
    DiagLinearOperator,
    MatmulLinearOperator,
    SumLinearOperator,
)
from torch import Tensor

from .._checks import check_dense_memory, check_real
from .._device import ArrayLike, as_tensor, check_finite
from .._linalg import psd_eigen_root
from ..posterior import GaussianPosterior
from ._update_checks import check_sigma_g, check_sigma_g_shape, check_slice_mass
from .update import conserve_slices, trapezoid_weights

__all__ = ["conserve_latent_mixture"]

_F64 = torch.float64

#: largest dense ``[chunk, nx, nx]`` block of slices (bytes) updated at once; the work space
#: is about ten such blocks, beside the two dense outputs
_CHUNK_BYTES = 2**26


def check_mixture_memory(name: str, n: int, nx: int, device: torch.device | str) -> None:
    """Refuse a moment-matched mixture of ``n`` slices of ``nx`` points whose dense outputs
    (covariance and root, ``[n, nx, nx]`` float64 each) and the work space of one chunk cannot
    fit on ``device`` (``name``: the argument that sets the size)."""
    chunk = max(1, _CHUNK_BYTES // (nx * nx * 8))
    check_dense_memory(
        name,
        8 * nx * nx * (2 * n + 10 * min(n, chunk)),
        what=f"the dense covariance and root of {n} slices of {nx} grid points "
        f"([{n}, {nx}, {nx}] float64 each)",
        alternative="use covariance='lowrank' or 'diag' (structured covariances), or fewer "
        "functions, times or grid points per call",
        device=device,
    )


class _DenseRoot:
    """``z [..., *batch, nx] -> L z`` for a dense root ``L [*batch, nx, nx]`` (a class, so that
    the posterior pickles and moves between devices)."""

    def __init__(self, root: Tensor) -> None:
        self.root = root

    def __call__(self, z: Tensor) -> Tensor:
        return (self.root @ z.unsqueeze(-1)).squeeze(-1)

    def to(self, device: torch.device) -> _DenseRoot:
        """A copy with the root on ``device`` (for :meth:`GaussianPosterior.to`)."""
        return _DenseRoot(self.root.to(device))


def conserve_latent_mixture(
    means: ArrayLike,
    variances: ArrayLike,
    x: ArrayLike,
    mass: ArrayLike,
    sigma_g: float | Tensor = 0.0,
    *,
    relative: bool = False,
    spread_scale: float = 1.0,
) -> GaussianPosterior:
    r"""Update every latent draw's diagonal Gaussian on :math:`\int u\,dx = b` and moment-match.

    Parameters
    ----------
    means, variances
        ``[S, *batch, nx]``, the draws' means :math:`\mu_s` and variances
        :math:`v_s > 0` (``S >= 1``; ``batch`` e.g. ``(B, nt)``). These, ``x`` and ``mass``
        may be tensors, arrays or lists (converted to float64 on ``means``' device).
    x
        ``[nx]`` the grid (possibly non-uniform; trapezoid weights :math:`g`).
    mass
        ``[*batch]`` the right-hand sides :math:`b` (one per slice).
    sigma_g
        constraint noise sd (``0``: the ProbConserv limit; ``inf``: no update), as for
        :func:`~bayesphys.probconserv.conservation_update`; with ``relative=True`` in units of
        each draw's own :math:`\sqrt{g^\top \operatorname{diag}(v_s) g}`.
    spread_scale
        :math:`a \ge 0`, the factor on the spread of the updated means.

    Returns
    -------
    GaussianPosterior
        float64: mean ``[*batch, nx]``, dense covariance ``[*batch, nx, nx]`` (module
        docstring), batch ``batch``, event ``(nx,)``; draws through an eigen-root that, on
        every slice in the limit (``sigma_g = 0`` there), is projected onto :math:`g^\perp`
        (draws conserve mass to round-off). Dense outputs that cannot fit on ``means``' device
        are refused with a ``MemoryError`` before any update.
    """
    means = as_tensor("means", means, dtype=_F64)
    variances = as_tensor("variances", variances, dtype=_F64).to(means.device)
    if means.ndim < 2 or means.shape[0] < 1:
        # S = 0 failed in the eigen-decomposition of a NaN covariance (the mean of no draws)
        raise ValueError(
            f"means: expected shape [S, *batch, nx] (S >= 1 latent draws), received "
            f"{tuple(means.shape)}"
        )
    if variances.shape != means.shape:
        raise ValueError(
            f"variances: expected the shape of means {tuple(means.shape)}, received "
            f"{tuple(variances.shape)}"
        )
    check_finite("means", means)
    check_finite("variances", variances)
    if bool((variances <= 0).any()):
        raise ValueError(
            f"variances: expected positive values, received a minimum of {float(variances.min())}"
        )
    spread_scale = check_real("spread_scale", spread_scale, minimum=0.0)
    batch, nx = means.shape[1:-1], means.shape[-1]
    g = trapezoid_weights(x).to(means.device)
    if g.ndim != 1 or g.numel() != nx:
        raise ValueError(
            f"x: expected {nx} grid points (the draws' last dimension), received shape "
            f"{tuple(torch.as_tensor(x).shape)}"
        )
    mass = check_slice_mass(mass, batch, _F64, means.device)
    n = math.prod(batch)
    check_mixture_memory("means", n, nx, means.device)
    chunk = max(1, _CHUNK_BYTES // (nx * nx * means.element_size()))
    if n <= chunk:
        mean, cov, root = _mixture_moments(
            means, variances, x, g, mass, sigma_g, relative, spread_scale
        )
    else:  # slices a chunk at a time into the two dense outputs (the work space of one chunk)
        check_sigma_g(sigma_g)
        sg = sigma_g
        # [*batch, 1] (or broadcastable): one per slice, as a tensor, array or list (an array
        # or list went whole to every chunk, refused as not matching the chunk's slices)
        if not isinstance(sigma_g, numbers.Real):
            sg = as_tensor("sigma_g", sigma_g, dtype=_F64, device=means.device, finite=False)
            check_sigma_g_shape(sg, (*batch, 1))
            sg = sg.broadcast_to(*batch, 1).reshape(n, 1)
            inf = torch.isinf(sg)
            if bool(inf.any()) and not bool(inf.all()):
                raise ValueError("sigma_g: mixing infinite and finite values is not supported")
        flat_means, flat_vars = means.reshape(-1, n, nx), variances.reshape(-1, n, nx)
        flat_mass = mass.broadcast_to(batch).reshape(n)
        mean = torch.empty(n, nx, dtype=_F64, device=means.device)
        cov = torch.empty(n, nx, nx, dtype=_F64, device=means.device)
        root = torch.empty_like(cov)
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            mean[sl], cov[sl], root[sl] = _mixture_moments(
                flat_means[:, sl],
                flat_vars[:, sl],
                x,
                g,
                flat_mass[sl],
                sg[sl] if isinstance(sg, Tensor) else sg,
                relative,
                spread_scale,
            )
        mean = mean.reshape(*batch, nx)
        cov, root = cov.reshape(*batch, nx, nx), root.reshape(*batch, nx, nx)
    return GaussianPosterior(
        mean,
        to_linear_operator(cov),
        event_shape=(nx,),
        validate=False,
        root=_DenseRoot(root),
        root_dim=nx,
    )


def _dense_update(cov) -> Tensor:
    r"""The dense ``[*batch, nx, nx]`` of an updated diagonal covariance
    :math:`\operatorname{diag}(v) + (-K)(G\Sigma)` (``conservation_update``'s
    ``SumLinearOperator``): the product with :math:`v` added to its diagonal in place, the
    same numbers as ``cov.to_dense()`` (:math:`0 + v_i + P_{ii}` on the diagonal, :math:`P_{ij}`
    off it) without its two other ``[*batch, nx, nx]`` arrays (the diagonal's and the sum's;
    the densification was 70 % of the update of 32 latent draws of 50 functions)."""
    ops = getattr(cov, "linear_ops", ())
    if (
        isinstance(cov, SumLinearOperator)
        and len(ops) == 2
        and isinstance(ops[0], DiagLinearOperator)
        and isinstance(ops[1], MatmulLinearOperator)
    ):
        out = ops[1].to_dense()
        if out.shape == cov.shape and not out.requires_grad:
            out.diagonal(dim1=-2, dim2=-1).add_(ops[0].diagonal())
            return out
    return cov.to_dense()


def _mixture_moments(
    means: Tensor,
    variances: Tensor,
    x: Tensor,
    g: Tensor,
    mass: Tensor,
    sigma_g: float | Tensor,
    relative: bool,
    spread_scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean ``[*batch, nx]``, covariance and sampling root ``[*batch, nx, nx]`` of the updated
    mixture of ``means, variances [S, *batch, nx]`` (checked; ``sigma_g`` a number or values
    broadcastable to ``[*batch, 1]``)."""
    s, batch, nx = means.shape[0], means.shape[1:-1], means.shape[-1]
    new_means = torch.empty_like(means)
    within = torch.zeros(*batch, nx, nx, dtype=_F64, device=means.device)
    for k in range(s):  # the reference's loop over latent draws: one diagonal update each
        prior = GaussianPosterior(
            means[k], DiagLinearOperator(variances[k]), event_shape=(nx,), validate=False
        )
        post = conserve_slices(prior, x, mass, sigma_g, relative=relative)
        new_means[k] = post.mean
        within += _dense_update(post.covariance)
    within /= s
    mean = new_means.mean(0)
    dev = new_means - mean  # [S, *batch, nx]
    spread = torch.einsum("s...i,s...j->...ij", dev, dev) / s
    cov = within + spread_scale * spread
    cov = 0.5 * (cov + cov.mT)
    root = psd_eigen_root(cov)  # [*batch, nx, nx]
    # the slices in the limit (sigma_g = 0, all of them or some of a per-slice sigma_g): there
    # g^T root is round-off (1e-8 of the root's scale); make it 0, so that every draw conserves
    exact = torch.as_tensor(sigma_g, device=means.device) == 0  # checked by conserve_slices
    if bool(exact.any()):
        proj = root - g[:, None] * (g @ root).unsqueeze(-2) / (g @ g)
        if bool(exact.all()):
            root = proj
        else:  # [*batch, 1, 1]: project only the slices in the limit
            root = torch.where(exact.broadcast_to(*batch, 1).unsqueeze(-1), proj, root)
    return mean, cov, root
