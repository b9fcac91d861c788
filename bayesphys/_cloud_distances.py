r"""Distances between point clouds: the exact optimal-transport :math:`W_p` (POT) and the
multi-bandwidth RBF MMD, with the input checks and the memory guard they share.

Public through :mod:`bayesphys.metrics` (:func:`~bayesphys.metrics.wasserstein`,
:func:`~bayesphys.metrics.mmd`); the private helpers are shared with
:mod:`bayesphys.meta_fm` (the memory guard of its exact couplings, the clouds' unit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import cdist
from torch import Tensor

from ._checks import check_dense_memory, check_real, require
from ._detached import warn_detached
from ._device import check_finite, values_as_tensor

__all__ = ["wasserstein", "mmd"]


def _as_cloud(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        # points as tensors: stacked in their dtype, without a graph; other sequences through
        # numpy (float64): torch.as_tensor made a list of Python floats float32, so clouds
        # 1e-3 across at 1e5 given as lists collapsed to one point (W and MMD read 0)
        try:
            x = values_as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"{name}: expected a point cloud [n, d] of real numbers, received "
                f"{type(x).__name__} {x!r:.60}"
            ) from err
    if x.is_complex():  # the float64 cast dropped the imaginary part
        raise TypeError(
            f"{name}: expected a real point cloud, received dtype {x.dtype} (pass "
            "torch.view_as_real(x).flatten(-2) for the real and imaginary parts as coordinates)"
        )
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(
            f"{name}: expected a point cloud [n, d] with n >= 1, received {tuple(x.shape)}"
        )
    check_finite(name, x)
    return x


def _ot_weights(w, n: int, name: str):
    """Uniform ``[n]`` for ``None``, else ``w`` checked and normalised to sum 1 (float64)."""
    if w is None:
        return np.full(n, 1 / n)
    try:
        # through numpy, not torch.as_tensor: that rounded a list of Python floats to float32
        # before the float64 cast below (W of float64 clouds off by 1e-10 relative)
        w = w if isinstance(w, Tensor) else values_as_tensor(w)
    except (TypeError, ValueError, RuntimeError) as err:  # torch's "new(): invalid data type"
        raise TypeError(
            f"{name}: expected {n} numbers (one weight per point), received "
            f"{type(w).__name__} {w!r:.60}"
        ) from err
    if w.is_complex():  # the float64 cast dropped the imaginary part, with only a warning
        raise TypeError(f"{name}: expected real values, received dtype {w.dtype}")
    w = w.detach().to("cpu", torch.float64).numpy()
    if w.shape != (n,):
        raise ValueError(
            f"{name}: expected shape ({n},) (one weight per point), received {w.shape}"
        )
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError(f"{name}: expected finite non-negative weights with a positive sum")
    return w / w.sum()


#: bytes per (source, target) pair of an exact OT solve on the CPU: the float64 cost matrix
#: (8) and POT's network simplex, its arc costs, flows and states and the returned plan (about
#: 25, measured on 3000 x 3000 points)
_EMD_BYTES_PER_PAIR = 33


def _check_ot_memory(
    name: str,
    n: int,
    m: int,
    alternative: str,
    *,
    bytes_per_pair: int = _EMD_BYTES_PER_PAIR,
    note: str = "",
) -> None:
    """Refuse (``MemoryError`` naming ``name``; a warning above half the memory) an exact
    optimal-transport solve between ``n`` and ``m`` points on the CPU whose dense ``[n, m]``
    float64 cost and the solver's arcs (``bytes_per_pair`` each pair) cannot fit; ``note``
    is added to the description (e.g. the argument that chose the sizes)."""
    check_dense_memory(
        name,
        bytes_per_pair * n * m,
        what=f"exact optimal transport between {n} and {m} points ({note}a dense [{n}, {m}] "
        "float64 cost matrix and the solver's arcs)",
        alternative=alternative,
    )


def wasserstein(
    x: Tensor | np.ndarray | Sequence[Any],
    y: Tensor | np.ndarray | Sequence[Any],
    p: int = 2,
    weights_x: Tensor | np.ndarray | Sequence[float] | None = None,
    weights_y: Tensor | np.ndarray | Sequence[float] | None = None,
) -> Tensor:
    r"""Exact :math:`W_p` between point clouds ``x [n, d]`` and ``y [m, d]`` (tensors, arrays or
    sequences of points).

    Solves the discrete optimal-transport linear programme with POT's ``ot.emd2`` on the
    ground cost :math:`\lVert x_i - y_j\rVert^p`, then returns the ``p``-th root. Weights are
    uniform unless ``weights_x [n]`` / ``weights_y [m]`` (non-negative, positive total) are
    given; they are normalised to probability vectors (unnormalised masses would scale
    :math:`W_p^p` by the total mass). The clouds are solved in units of a power of two near
    their extent (exact), so :math:`W_p(a x, a y) = a W_p(x, y)` for any scale :math:`a > 0`
    (POT's tolerances are absolute). The solve holds a dense ``[n, m]`` float64 cost matrix
    and the solver's arcs, about 33 bytes a pair: clouds whose pairs cannot fit in the host's
    memory are refused with a ``MemoryError`` before any work (a warning above half of it);
    subsample them or use :func:`mmd`.

    Differentiable in ``x`` and ``y`` (where autograd records and either requires grad): by
    the envelope theorem, :math:`\nabla W_p^p = \nabla \sum_{ij} P^\star_{ij}
    \lVert x_i - y_j\rVert^p` at the optimal plan :math:`P^\star` held fixed (exact
    wherever the plan is unique; the value is the solver's, unchanged). Not in the weights:
    weights that require grad are read detached (a ``UserWarning`` says so).
    """
    ot = require("ot", "pot", "wasserstein")

    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p: expected 1 or 2, received {p!r}")
    x, y = _as_cloud(x, "x"), _as_cloud(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x/y: expected equal dimensions, received {x.shape[1]} and {y.shape[1]}")
    _check_ot_memory(
        "x/y",
        x.shape[0],
        y.shape[0],
        "subsample the clouds (population_metrics' max_points) or compare them with mmd, "
        "which works in row blocks",
    )
    xd = x.detach().to("cpu", torch.float64).numpy()
    yd = y.detach().to("cpu", torch.float64).numpy()
    # the clouds in units of a power of two near their extent (an exact rescaling), so that
    # the costs POT sees are of order 1: its simplex's tolerances are absolute, and clouds
    # 1e-8 across read W2 53 % high (1e-7: 7 %), clouds 1e-150 across W1 42 % high
    unit = _extent_exponent(xd, yd)
    xd, yd = np.ldexp(xd, -unit), np.ldexp(yd, -unit)
    # ground costs from direct differences (scipy's cdist): POT's euclidean distances are
    # sqrt(|a|^2 + |b|^2 - 2 a.b), which cancels far from the origin (clouds 1e-3 apart at
    # 1e5 read W 72 % low, at 1e6 exactly 0) and gave sqrt(eps |a|^2) ~ 1e-8 for W(x, x)
    cost = cdist(xd, yd, metric="sqeuclidean" if p == 2 else "euclidean")
    warn_detached("wasserstein", weights_x=weights_x, weights_y=weights_y)
    a = _ot_weights(weights_x, len(xd), "weights_x")
    b = _ot_weights(weights_y, len(yd), "weights_y")
    # the clouds' graph (it was dropped: W came back detached, a loss on it gave no gradient)
    graph = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    if graph:  # the same solve, its plan kept
        val, log = ot.emd2(a, b, cost, numItermax=10_000_000, return_matrix=True)
        val = float(val)
    else:
        val = float(ot.emd2(a, b, cost, numItermax=10_000_000))
    # the wider floating dtype of the two, as mmd (x's alone made W(x, y) and W(y, x) differ
    # in dtype for a float32 and a float64 cloud)
    dtype = torch.promote_types(x.dtype, y.dtype)
    out = torch.tensor(
        math.ldexp(max(val, 0.0) ** (1 / p), unit),
        dtype=dtype if dtype.is_floating_point else torch.float64,
        device=x.device,
    )
    if graph:
        out = out + _envelope_gradient(x, y, log["G"], p).to(out.dtype)
    return out


def _envelope_gradient(x: Tensor, y: Tensor, plan: np.ndarray, p: int) -> Tensor:
    r"""A zero ``[]`` carrying the gradient of :math:`W_p` in the clouds ``x [n, d]`` and
    ``y [m, d]`` at the optimal ``plan [n, m]`` held fixed (the envelope theorem):
    :math:`W - W_{\text{detached}}` with :math:`W = (\sum_{ij} P_{ij} \lVert x_i -
    y_j\rVert^p)^{1/p}` over the plan's support (at most ``n + m - 1`` pairs), in float64;
    no NaN where a paired distance or the distance itself is 0 (gradient 0 there)."""
    i, j = np.nonzero(plan)
    dev = x.device
    w = torch.as_tensor(plan[i, j], dtype=torch.float64, device=dev)
    diff = (
        x.to(torch.float64)[torch.as_tensor(i, device=dev)]
        - y.to(dev, torch.float64)[torch.as_tensor(j, device=dev)]
    )
    cost = diff.square().sum(-1)
    if p == 1:
        cost = _safe_root(cost, 2)
    total = _safe_root((w * cost).sum(), p)
    return total - total.detach()


def _safe_root(v: Tensor, k: int) -> Tensor:
    """:math:`v^{1/k}` of ``v >= 0``, with gradient 0 (not NaN) where ``v`` is 0."""
    if k == 1:
        return v
    pos = v > 0
    return torch.where(pos, torch.where(pos, v, torch.ones_like(v)).pow(1 / k), torch.zeros_like(v))


def _extent_exponent(x: np.ndarray, y: np.ndarray) -> int:
    """The exponent ``k`` with ``2**(k-1) <= e < 2**k`` of the extent ``e`` of the clouds
    ``x [n, d]`` and ``y [m, d]`` together (their largest coordinate range), 0 when they are
    one point or the range is not finite."""
    both = np.concatenate([x, y])
    with np.errstate(over="ignore", invalid="ignore"):
        extent = float(np.max(both.max(0) - both.min(0))) if both.size else 0.0
    if extent == 0.0 or not math.isfinite(extent):
        return 0
    k = math.frexp(extent)[1]
    # a tiny extent far from the origin: scaled up, the coordinates would overflow
    with np.errstate(over="ignore"):
        top = np.ldexp(np.abs(both).max(), -k)
    return k if np.isfinite(top) else 0


def mmd(
    x: Tensor | np.ndarray | Sequence[Any],
    y: Tensor | np.ndarray | Sequence[Any],
    bandwidths: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0),
) -> Tensor:
    r"""Squared MMD with a sum of RBF kernels :math:`\sum_h \exp(-\lVert a-b\rVert^2 / h)`.

    Biased (V-statistic) estimate :math:`\overline{K_{xx}} + \overline{K_{yy}} - 2\overline{K_{xy}}`
    between ``x [n, d]`` and ``y [m, d]`` (tensors, arrays or sequences of points);
    ``bandwidths`` are the kernel scales :math:`h`, in squared units of the data (the defaults
    suit data of order 1: scale them with the data). Returns a 0-dim tensor ``[]``, ``>= 0``
    (a value that round-off makes negative is returned as 0).
    """
    if (
        isinstance(bandwidths, (str, bytes))
        or not isinstance(bandwidths, (Sequence, Tensor, np.ndarray))
        or (isinstance(bandwidths, (Tensor, np.ndarray)) and bandwidths.ndim == 0)
    ):  # a 0-d tensor failed in list() with "iteration over a 0-d tensor"
        raise TypeError(
            f"bandwidths: expected a sequence of positive kernel scales, received "
            f"{type(bandwidths).__name__} {bandwidths!r}"
        )
    bandwidths = list(bandwidths)
    if not bandwidths:
        raise ValueError("bandwidths: expected at least one kernel scale, received none")
    for i, h in enumerate(bandwidths):
        check_real(
            f"bandwidths[{i}]",
            h.item() if isinstance(h, Tensor) and h.ndim == 0 else h,  # a row: "received Tensor"
            minimum=0.0,
            strict=True,
        )
    x, y = _as_cloud(x, "x"), _as_cloud(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x/y: expected equal dimensions, received {x.shape[1]} and {y.shape[1]}")
    for name, t in (("x", x), ("y", y)):
        if not t.is_floating_point():
            raise TypeError(
                f"{name}: expected a floating-point point cloud, received dtype {t.dtype}"
            )
    # at least float32 (cdist has no half kernels), the wider of the two clouds' dtypes
    work = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    x, y = x.to(work), y.to(x.device, work)
    # MMD is translation invariant: centring both clouds on one point, and cdist's direct
    # differences (its default for > 25 rows is |a|^2 + |b|^2 - 2 a.b, which cancels
    # catastrophically far from the origin: float32 clouds at 1e4 gave 0.24 for 0.008)
    centre = torch.cat([x, y]).mean(0)
    x, y = x - centre, y - centre

    def kmean(a, b, block=1024):
        # the mean of the kernel matrix over row blocks: memory O(block * m), not several n x m
        # matrices at once (about 4 n x n: 0.5 GB at n = 4000)
        total = a.new_zeros(())
        for i in range(0, a.shape[0], block):
            d2 = torch.cdist(a[i : i + block], b, compute_mode="donot_use_mm_for_euclid_dist")
            d2 = d2.pow(2)
            total = total + sum(torch.exp(-d2 / h).sum() for h in bandwidths)
        return total / (a.shape[0] * b.shape[0])

    # >= 0 exactly (the squared distance of the two mean embeddings); the sum of three
    # rounded means is not (float32 gave -4.8e-7 for a cloud against a reordering of itself)
    return (kmean(x, x) + kmean(y, y) - 2 * kmean(x, y)).clamp_min(0)
