"""Property tests of the population embedding's symmetries for random populations (sizes
past the 25 points where ``torch.cdist`` switches to the expanded form, point features, every
k): node relabelling permutes the GCN's outputs, the pooled embedding is invariant to the
order of the points and of unit norm, and a batch of populations embeds as each alone. The
flow-matching path is exact at its ends."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.meta_fm import PopulationEmbedding, knn_adjacency, normalized_adjacency
from bayesphys.meta_fm.coupling import interpolate
from bayesphys.meta_fm.embedding import DenseGCN

F64 = torch.float64


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 3),
    k=st.integers(1, 45),
    features=st.integers(0, 2),
    layers=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_embedding_is_invariant_to_the_order_of_the_points(n, d, k, features, layers, seed):
    """phi(x[p], f[p]) = phi(x, f) for any relabelling p of generic points (no tied
    distances), |phi| = 1, and embedding two populations at once gives each one's own."""
    torch.manual_seed(seed)
    emb = PopulationEmbedding(d, hidden=8, layers=layers, k=k, features=features).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    f = torch.randn(n, features, generator=g, dtype=F64) if features else None
    perm = torch.randperm(n, generator=g)
    z = emb(x, f)
    zp = emb(x[perm], None if f is None else f[perm])
    with torch.no_grad():
        torch.testing.assert_close(zp, z, rtol=1e-10, atol=1e-12)
        assert abs(float(z.norm()) - 1.0) < 1e-12 or float(z.norm()) == 0.0
        other = torch.randn(n, d, generator=g, dtype=F64) * 2 + 1
        fo = torch.randn(n, features, generator=g, dtype=F64) if features else None
        both = emb(torch.stack([x, other]), None if f is None else torch.stack([f, fo]))
        torch.testing.assert_close(both[0], z, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(both[1], emb(other, fo), rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 30),
    k=st.integers(1, 8),
    layers=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_gcn_outputs_permute_with_the_nodes(n, k, layers, seed):
    """A dense GCN on (H, A_hat) is equivariant: relabelling the nodes of H and of the graph
    relabels the output rows, GCN(H[p], A_hat[p][:, p]) = GCN(H, A_hat)[p]; the normalised
    adjacency of any symmetric graph is symmetric."""
    torch.manual_seed(seed)
    gcn = DenseGCN(3, 5, layers).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=F64)
    h = torch.randn(n, 3, generator=g, dtype=F64)
    adj = knn_adjacency(x, k)
    a_hat = normalized_adjacency(adj)
    perm = torch.randperm(n, generator=g)
    with torch.no_grad():
        out = gcn(h, a_hat)
        torch.testing.assert_close(
            gcn(h[perm], a_hat[perm][:, perm]), out[perm], rtol=1e-12, atol=1e-12
        )
    sym = ((adj + adj.mT) > 0).to(F64)
    s_hat = normalized_adjacency(sym)
    torch.testing.assert_close(s_hat, s_hat.mT, rtol=0, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    d=st.integers(1, 3),
    scale=st.sampled_from([1e-3, 1.0, 1e4]),
    seed=st.integers(0, 10_000),
)
def test_the_interpolation_path_is_exact_at_its_ends(lead, d, scale, seed):
    """x_t = (1 - t) x0 + t x1 is x0 at t = 0 and x1 at t = 1 exactly, u = x1 - x0, and
    x_t - x0 = t u to round-off at every time."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(*lead, d, generator=g, dtype=F64) * scale
    x1 = torch.randn(*lead, d, generator=g, dtype=F64) * scale
    t = torch.rand(lead, generator=g, dtype=F64)
    xt, u = interpolate(x0, x1, t)
    assert torch.equal(u, x1 - x0)
    assert torch.equal(interpolate(x0, x1, torch.zeros(lead, dtype=F64))[0], x0)
    assert torch.equal(interpolate(x0, x1, torch.ones(lead, dtype=F64))[0], x1)
    tol = 4 * torch.finfo(F64).eps * float(torch.maximum(x0.abs(), x1.abs()).max())
    torch.testing.assert_close(xt - x0, t[..., None] * u, rtol=0, atol=tol)
