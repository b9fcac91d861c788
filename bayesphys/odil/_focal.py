r"""The initial state of several tumour foci and a starting guess for them (Balcerak et al.,
GliODIL, arXiv 2312.05063: multi-focal synthetic patients).

The initial state is the pointwise maximum of the focal Gaussians (GliODIL's three-focal
synthetic generator adds its clipped focal Gaussians instead, so overlapping foci exceed each
one's peak there; the maximum keeps :math:`c_0 \le a` and one focus's shape),

.. math:: c_0(x) = \max_{k=1..K} a\,\exp\!\bigl(-|x - x_k|^2 / 2w^2\bigr),

with :math:`\partial c_0/\partial x_k = 1[k = \arg\max]\; g_k(x)\,(x - x_k)/w^2` (one-hot
subgradient of the maximum). Re-exported by :mod:`bayesphys.odil.foci`, which also chooses
:math:`K`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_real
from .._device import as_tensor, check_finite_input
from ..problems._fk_geometry import _initial_condition

__all__ = ["FOCAL_WIDTH_MM", "multifocal_initial_condition", "kmeans_foci"]

FOCAL_WIDTH_MM = 3.0


def multifocal_initial_condition(
    shape: Sequence[int],
    foci: Tensor,
    spacing: float,
    *,
    origin: Sequence[float] | None = None,
    width: float = FOCAL_WIDTH_MM,
) -> tuple[Tensor, Tensor]:
    r""":math:`c_0 = \max_k g_k` for foci ``[K, d]`` (mm) on the cell centres.

    Returns ``(c0 [*shape], g [K, *shape])``: the initial state and each focal Gaussian (for the
    one-hot derivative of the maximum, see the module docstring). ``foci`` real and finite (a
    NaN or infinite coordinate is a ``ValueError``, except under a :mod:`torch.func`
    transform, whose values cannot be read); ``spacing`` and ``width`` (mm) are positive;
    ``K >= 1``; ``origin`` (mm, default zeros) has one entry per axis.
    """
    return _multifocal(shape, foci, spacing, origin=origin, width=width, finite=True)


def _multifocal(
    shape: Sequence[int],
    foci: Tensor,
    spacing: float,
    *,
    origin: Sequence[float] | None,
    width: float,
    finite: bool,
) -> tuple[Tensor, Tensor]:
    """:func:`multifocal_initial_condition`; with ``finite=False`` non-finite tensor ``foci``
    pass (a NaN state: the glioma model's loss at a NaN trial point stays NaN by design)."""
    spacing = check_real("spacing", spacing, minimum=0.0, strict=True)
    width = check_real("width", width, minimum=0.0, strict=True)
    if not isinstance(foci, Tensor):  # tensors pass unchanged (differentiable in the foci)
        foci = as_tensor("foci", foci)  # finite: a NaN focus gave a NaN state silently
    if foci.is_complex() or foci.dtype == torch.bool:  # failed inside torch.arange
        raise TypeError(f"foci: expected real coordinates (mm), received {foci.dtype}")
    if foci.ndim != 2 or foci.shape[1] != len(shape) or foci.shape[0] == 0:
        raise ValueError(
            f"foci: expected shape [K >= 1, {len(shape)}], received {tuple(foci.shape)}"
        )
    if origin is not None and len(origin) != len(shape):
        raise ValueError(f"origin: expected {len(shape)} coordinates (mm), received {len(origin)}")
    if finite:  # a NaN focus gave a NaN state, an infinite one a zero Gaussian, silently
        check_finite_input("foci", foci)
    g = torch.stack(
        [
            _initial_condition(
                shape, f, spacing, width=width, amplitude=0.5, origin=origin, finite=False
            )
            for f in foci
        ]
    )
    return g.amax(0), g


def kmeans_foci(points: Tensor, k: int, *, iters: int = 25) -> Tensor:
    """``k`` cluster centres ``[k, d]`` of ``points [n, d]`` (Lloyd's algorithm,
    :func:`scipy.cluster.vq.kmeans2`), started deterministically by farthest-point seeding from
    the point nearest the centroid, ties broken in the points' lexicographic order, so the
    centres depend on the set of points, not on their order. Used as the starting foci of a
    ``k``-focal fit (points = tumour-core voxel centres, mm; finite and real). ``k`` is at most
    the number of distinct points (a ``ValueError`` otherwise)."""
    from scipy.cluster.vq import kmeans2

    # finite (arrays used to fail in torch.minimum) and real: a complex tensor lost its
    # imaginary part in the k-means with only numpy's ComplexWarning
    points = as_tensor("points", points, real=True)
    if not points.is_floating_point():
        points = points.double()
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(
            f"points: expected a non-empty [n, d] tensor, received {tuple(points.shape)}"
        )
    k = check_int("k", k, minimum=1)
    iters = check_int("iters", iters, minimum=1)
    # more centres than distinct points returned fewer than k rows (k > n) or coinciding
    # centres with empty clusters (repeated points)
    distinct = len(torch.unique(points.detach(), dim=0))
    if k > distinct:
        raise ValueError(
            f"k: expected at most {distinct} centres (the number of distinct points), received {k}"
        )
    # the points as a set: sorted lexicographically (first coordinate, then the next, ...),
    # so that ties in the seeding's argmin / argmax (voxel centres on a grid are symmetric
    # about their centroid) are broken by position in that order, not by the order the points
    # came in (a permutation of the same voxels gave other starting foci and other centres)
    order = np.lexsort(points.detach().cpu().double().numpy().T[::-1])
    points = points[torch.as_tensor(order, device=points.device)]
    first = int(((points - points.mean(0)) ** 2).sum(1).argmin())
    seeds = [first]
    dist = ((points - points[first]) ** 2).sum(1)
    while len(seeds) < k:
        seeds.append(int(dist.argmax()))
        dist = torch.minimum(dist, ((points - points[seeds[-1]]) ** 2).sum(1))
    pts = points.detach().cpu().double().numpy()
    centres, _ = kmeans2(pts, pts[seeds], iter=iters, minit="matrix", missing="warn")
    return torch.as_tensor(centres, dtype=points.dtype, device=points.device)
