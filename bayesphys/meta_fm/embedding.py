r"""Population embedding :math:`\varphi(p_0)`: a GCN over a kNN graph, mean-pooled, normalised.

For a population :math:`X \in \mathbb R^{n\times d}` the graph has an edge :math:`j \to i`
for each of the :math:`k` nearest neighbours :math:`j \ne i` of :math:`i` (as
``torch_geometric``'s ``knn_graph`` with ``loop=False``, ``flow="source_to_target"``). A GCN
layer (Kipf & Welling, as ``GCNConv`` with self-loops and symmetric normalisation) is

.. math:: H' = \hat D^{-1/2}(A + I)\hat D^{-1/2} H W + b,\qquad
          \hat D_{ii} = 1 + \textstyle\sum_j A_{ij}

with ReLU between layers and none after the last. The embedding is the node mean, projected
onto the unit sphere: :math:`\varphi = \bar h / \lVert \bar h \rVert`. Mean aggregation and
mean pooling make :math:`\varphi` invariant to the order of the points, up to ties: when
several points lie exactly at a point's :math:`k`-th neighbour distance (e.g. points on a
grid), ``topk`` chooses among them by position, so a reordering can change the graph and
:math:`\varphi`.

The kNN graph is built in plain torch (``cdist`` + ``topk``) and the GCN runs on the dense
normalised adjacency ``[P, n, n]`` (batched over ``P`` equal-size populations), which is
faster than sparse message passing for ``n`` up to a few thousand and needs no
``torch_geometric``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_dense_memory, check_int
from .._device import check_finite, check_module_dtype
from ._canonical import canonical_order

__all__ = ["knn_adjacency", "normalized_adjacency", "DenseGCN", "PopulationEmbedding"]


#: what to do when a kNN graph cannot fit in memory
_KNN_ALTERNATIVE = (
    "embed a subsample of fewer points (the config's points, or MetaFlowMatching.embed(points=...))"
)


def check_knn_memory(
    name: str,
    batch: int,
    n: int,
    dtype: torch.dtype,
    device: torch.device | str | None,
    alternative: str = _KNN_ALTERNATIVE,
) -> None:
    """Refuse (``MemoryError`` naming ``name``, the argument that sets the size; a warning
    above half the memory) the kNN graphs of ``batch`` populations of ``n`` points in
    ``dtype`` on ``device`` (:func:`knn_adjacency`) when they cannot fit, counted as three
    ``[batch, n, n]`` arrays and an ``[n, n]`` mask: a bound kept from when the distances,
    their masked copy and the adjacency were three arrays; they now share one (the embedding
    normalises it in place too), so a graph refused here would need about a third of it."""
    size = torch.empty((), dtype=dtype).element_size()
    check_dense_memory(
        name,
        batch * n * n * 3 * size + n * n,
        what=f"the kNN graph of {batch} population(s) of {n} points (dense [{n}, {n}] "
        f"distances and adjacency, {dtype})",
        alternative=alternative,
        device=device,
    )


def knn_adjacency(x: Tensor, k: int) -> Tensor:
    r"""Dense kNN adjacency ``A [*, n, n]`` for points ``x [*, n, d]``.

    ``A[..., i, j] = 1`` when ``j`` is one of the ``min(k, n-1)`` nearest neighbours of ``i``
    (Euclidean, no self-loops); ties are broken by ``topk``. NaN/Inf points raise
    ``ValueError`` (their distances are NaN, and ``topk`` then marks a point its own
    neighbour). Distances come from ``torch.cdist``, which for more than 25 points expands
    :math:`\lVert a\rVert^2 + \lVert b\rVert^2 - 2a^\top b`: in float32, points far from the
    origin against their spread (offset 100x the spread: about 1 row in 20 had another
    neighbour set than in float64) lose their neighbours to cancellation; pass centred or
    float64 points (``MetaFlowMatching`` standardises them unless ``normalize=False``).
    Dense ``[*, n, n]`` distances and adjacency that cannot fit on ``x``'s device are refused
    with a ``MemoryError`` before the distances are computed. float16 / bfloat16 points are
    measured in float32 (``A`` keeps ``x``'s dtype).
    """
    k = check_int("k", k, minimum=1)
    if not isinstance(x, Tensor) or x.ndim < 2 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x: expected floating points [*, n, d], received {got}")
    check_finite("x", x)
    n = x.shape[-2]
    if n < 2:
        raise ValueError(
            f"x: expected a population of at least 2 points, received shape {tuple(x.shape)}"
        )
    check_knn_memory("x", math.prod(x.shape[:-2]), n, x.dtype, x.device)
    kk = min(k, n - 1)
    # torch has no half-precision cdist on the CPU: the distances of float16 / bfloat16
    # points are taken in float32 (the neighbour sets of float32 points of those values)
    narrow = x.dtype in (torch.float16, torch.bfloat16)
    x = x.detach()  # A is piecewise constant in x: no graph (its arrays are edited in place)
    d2 = torch.cdist(x.float(), x.float()) if narrow else torch.cdist(x, x)
    # no self-loops: the diagonal set in place (a masked copy was one more [*, n, n] array)
    d2.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    # the neighbour set, not its order, defines A: unsorted topk is ~25 % cheaper
    idx = d2.topk(kk, dim=-1, largest=False, sorted=False).indices  # [*, n, kk]
    # A in the distances' storage once they are read (x's dtype): one [*, n, n] array
    adj = torch.zeros(d2.shape, dtype=x.dtype, device=x.device) if narrow else d2.zero_()
    adj.scatter_(-1, idx, 1.0)
    return adj


def normalized_adjacency(adj: Tensor) -> Tensor:
    r""":math:`\hat D^{-1/2}(A+I)\hat D^{-1/2}` for ``adj [*, n, n]`` (in-degree + self-loop);
    ``adj`` finite, with non-negative edge weights (``ValueError`` otherwise)."""
    if not isinstance(adj, Tensor) or adj.ndim < 2 or adj.shape[-1] != adj.shape[-2]:
        got = tuple(adj.shape) if isinstance(adj, Tensor) else type(adj).__name__
        raise ValueError(f"adj: expected square adjacencies [*, n, n], received {got}")
    check_finite("adj", adj)
    if bool((adj < 0).any()):  # a negative degree's rsqrt: NaN everywhere, silently
        raise ValueError(
            f"adj: expected non-negative edge weights, received {int((adj < 0).sum())} "
            "negative entries"
        )
    return _normalized(adj)


def _normalized(adj: Tensor) -> Tensor:
    """:func:`normalized_adjacency` of a checked ``adj [*, n, n]`` (no check needed, nor the
    device syncs of one)."""
    n = adj.shape[-1]
    a = adj + torch.eye(n, dtype=adj.dtype, device=adj.device)
    deg = a.sum(-1)  # in-degree of node i (rows = targets)
    dinv = deg.rsqrt()
    return dinv[..., :, None] * a * dinv[..., None, :]


def _normalized_(adj: Tensor) -> Tensor:
    r""":func:`_normalized` of the embedding's own fresh kNN graph ``adj [*, n, n]`` (floating,
    contiguous), computed in its storage, which it overwrites and returns: out of place,
    ``A + I`` and the two scalings were three more ``[*, n, n]`` arrays. The same operations
    in the same order, so bit for bit :func:`_normalized`'s values. On such a graph every row
    holds ``min(k, n - 1)`` neighbours, so :math:`\hat D = (\min(k, n-1) + 1) I` and the
    symmetric normalisation is the neighbourhood mean :math:`(A + I)/(\min(k, n-1) + 1)`."""
    adj.diagonal(dim1=-2, dim2=-1).add_(1.0)  # A + I
    dinv = adj.sum(-1).rsqrt()  # in-degree of node i (rows = targets), plus its self-loop
    return adj.mul_(dinv[..., :, None]).mul_(dinv[..., None, :])


class DenseGCN(nn.Module):
    """Stack of dense GCN layers ``[*, n, in_dim] -> [*, n, hidden]`` (ReLU between layers)."""

    def __init__(self, in_dim: int, hidden: int = 64, layers: int = 3) -> None:
        super().__init__()
        in_dim = check_int("in_dim", in_dim, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        layers = check_int("layers", layers, minimum=1)
        dims = [in_dim] + [hidden] * layers
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, h: Tensor, a_hat: Tensor) -> Tensor:
        """``h [*, n, in_dim]`` node features, ``a_hat [*, n, n]`` normalised adjacency."""
        in_dim = self.lins[0].in_features
        if h.ndim < 2 or h.shape[-1] != in_dim:
            raise ValueError(
                f"h: expected node features [*, n, {in_dim}], received {tuple(h.shape)}"
            )
        n = h.shape[-2]
        if a_hat.ndim < 2 or a_hat.shape[-2:] != (n, n):
            raise ValueError(
                f"a_hat: expected an adjacency [*, {n}, {n}] (n from h), received "
                f"{tuple(a_hat.shape)}"
            )
        check_module_dtype("h", h, self.lins[0].weight.dtype, "GCN")
        check_module_dtype("a_hat", a_hat, self.lins[0].weight.dtype, "GCN")
        for i, lin in enumerate(self.lins):
            h = a_hat @ (h @ lin.weight.mT) + lin.bias
            if i < len(self.lins) - 1:
                h = torch.relu(h)
        return h


class PopulationEmbedding(nn.Module):
    r"""``phi(x)``: populations ``[P, n, d]`` -> unit vectors ``[P, hidden]``; one ``[n, d]`` ->
    ``[hidden]``.

    Parameters
    ----------
    dim
        point dimension ``d``.
    hidden
        GCN width (64 for letters in the reference, 128 for organoids).
    layers
        GCN depth (3 letters, 2 organoids).
    k
        neighbours in the kNN graph (50 letters, 100 organoids).
    features
        per-point features ``f`` (e.g. a cell-type one-hot) concatenated to the
        coordinates as node inputs ``[P, n, d + f]``; the kNN graph uses the coordinates only.
    """

    def __init__(
        self, dim: int, hidden: int = 64, layers: int = 3, k: int = 50, features: int = 0
    ) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.hidden = check_int("hidden", hidden, minimum=1)
        self.k = check_int("k", k, minimum=1)
        self.features = check_int("features", features, minimum=0)
        layers = check_int("layers", layers, minimum=1)
        self.gcn = DenseGCN(self.dim + self.features, self.hidden, layers)

    def forward(self, x: Tensor, f: Tensor | None = None) -> Tensor:
        """Unit-norm embeddings of populations.

        ``x [P, n, d]`` with ``f [P, n, features]`` -> ``[P, hidden]``; one population
        ``x [n, d]`` with ``f [n, features]`` -> ``[hidden]`` (no leading ``P``;
        ``MetaFlowMatching.embed`` stacks its populations and returns ``[1, hidden]`` for one).
        ``f`` is required when ``features > 0`` and refused when ``features == 0``.
        A population is a set: its embedding does not depend on the order of its rows (to
        round-off; the nodes are put in a canonical order first, so distance ties in the kNN
        graph are broken the same way for any order).
        """
        single = x.ndim == 2
        if single:
            x = x[None]
            f = None if f is None else f[None]
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x: expected populations [P, n, {self.dim}] or [n, {self.dim}], received "
                f"{tuple(x.shape)}"
            )
        if self.features and (f is None or f.shape != (*x.shape[:-1], self.features)):
            got = None if f is None else tuple(f.shape)
            raise ValueError(
                f"f: expected point features {(*x.shape[:-1], self.features)}, received {got}"
            )
        if not self.features and f is not None:
            raise ValueError("f: this embedding reads no point features (features=0)")
        check_module_dtype("x", x, self.gcn.lins[0].weight.dtype, "embedding")
        # the nodes in a canonical order of the points (and features): the kNN graph's
        # distance ties (points on a lattice) are then broken the same way for any order of a
        # population's rows, so the embedding of a set does not depend on that order (broken
        # by position, a permuted lattice population moved its embedding by 3e-2)
        order = canonical_order(x.detach(), None if f is None else f.detach())
        x = x.gather(-2, order[..., None].expand_as(x))
        if f is not None:
            f = f.gather(-2, order[..., None].expand(*order.shape, f.shape[-1]))
        with torch.no_grad():
            a_hat = _normalized_(knn_adjacency(x.detach(), self.k))
        h = x if f is None else torch.cat([x, f.to(x)], -1)
        z = self.gcn(h, a_hat).mean(-2)
        z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return z[0] if single else z
