import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.meta_fm import PopulationEmbedding, knn_adjacency, normalized_adjacency


def test_knn_adjacency_degree_and_no_self_loops():
    x = torch.randn(30, 3)
    a = knn_adjacency(x, 5)
    assert torch.equal(a.sum(-1), torch.full((30,), 5.0))
    assert float(a.diagonal().abs().sum()) == 0
    # neighbours really are the nearest
    d = torch.cdist(x, x) + torch.eye(30) * 1e9
    assert torch.equal(
        a[0].nonzero().flatten().sort().values, d[0].topk(5, largest=False).indices.sort().values
    )
    # k larger than n - 1 is clipped
    assert torch.equal(knn_adjacency(x[:4], 50).sum(-1), torch.full((4,), 3.0))


def test_normalized_adjacency_is_neighbourhood_mean():
    a = knn_adjacency(torch.randn(20, 2), 4)
    ah = normalized_adjacency(a)
    torch.testing.assert_close(ah.sum(-1), torch.ones(20))


def test_embedding_invariant_to_point_order():
    torch.manual_seed(0)
    emb = PopulationEmbedding(2, hidden=16, layers=3, k=7).double()
    x = torch.randn(100, 2, dtype=torch.float64)
    perm = torch.randperm(100)
    z1, z2 = emb(x), emb(x[perm])
    torch.testing.assert_close(z1, z2, atol=1e-12, rtol=1e-10)
    assert abs(float(z1.detach().norm()) - 1.0) < 1e-12
    # batched == one by one
    xb = torch.stack([x, x[perm] * 2])
    zb = emb(xb)
    torch.testing.assert_close(zb[0], z1)
    torch.testing.assert_close(zb[1], emb(x * 2))
    # different populations get different embeddings
    assert float((emb(x + 3) - z1).detach().abs().max()) > 1e-3


def test_embedding_bad_input():
    emb = PopulationEmbedding(2, hidden=8, layers=2, k=3)
    with pytest.raises(ValueError, match="x: expected"):
        emb(torch.randn(10, 3))
    with pytest.raises(ValueError, match="at least 2 points"):
        emb(torch.randn(1, 2))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
    n=st.integers(2, 9),
    d=st.integers(1, 3),
    k=st.integers(1, 10),
    seed=st.integers(0, 10_000),
)
def test_knn_adjacency_is_the_brute_force_neighbour_sets_and_permutes_with_the_points(
    batch, n, d, k, seed
):
    """Row i of A marks exactly the min(k, n-1) points nearest to i (found by sorting all
    distances, self excluded), in every batch entry; relabelling the points permutes A's rows
    and columns alike: A(x[p]) = A(x)[p][:, p]. (Random points: no tied distances.)"""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, n, d, generator=g, dtype=torch.float64)
    a = knn_adjacency(x, k)
    assert a.shape == (*batch, n, n)
    kk = min(k, n - 1)
    flat_x, flat_a = x.reshape(-1, n, d), a.reshape(-1, n, n)
    for xb, ab in zip(flat_x, flat_a):
        for i in range(n):
            dist = sorted((float((xb[i] - xb[j]).pow(2).sum()), j) for j in range(n) if j != i)
            want = torch.zeros(n, dtype=torch.float64)
            want[[j for _, j in dist[:kk]]] = 1.0
            assert torch.equal(ab[i], want)
    perm = torch.randperm(n, generator=g)
    assert torch.equal(knn_adjacency(x[..., perm, :], k), a[..., perm, :][..., :, perm])
    # the normalised adjacency of a kNN graph (every row k + 1 ones with the self-loop) is
    # the neighbourhood mean (A + I) / (k + 1)
    eye = torch.eye(n, dtype=torch.float64)
    torch.testing.assert_close(normalized_adjacency(a), (a + eye) / (kk + 1), rtol=1e-15, atol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_knn_adjacency_refuses_non_finite_points(bad):
    # a NaN point had NaN distances, and topk made it its own neighbour (A[1, 1] = 1)
    x = torch.tensor([[0.0, 0.0], [1.0, bad], [2.0, 2.0], [3.0, 3.0]])
    with pytest.raises(ValueError, match="x: expected finite values"):
        knn_adjacency(x, 2)
    with pytest.raises(ValueError, match="x: expected finite values"):
        PopulationEmbedding(2, hidden=4, layers=1, k=2)(x)


def test_knn_graph_beyond_memory_is_refused_before_the_distances(memory_limit, no_dense_allocation):
    """The kNN graph holds dense [P, n, n] distances and adjacency: a 50k-point population
    embedded whole needs ~30 GB in float32. Beyond the device's memory it is refused by name
    before the distances are computed."""
    x = torch.randn(3, 40, 2, generator=torch.Generator().manual_seed(0))
    memory_limit(40_000)  # [3, 40, 40] x 3 float32 + mask: about 59 kB
    no_dense_allocation("torch.cdist")
    with pytest.raises(
        MemoryError,
        match=r"^x: the kNN graph of 3 population\(s\) of 40 points .* more than the 39\.1 KiB "
        r"of the CPU; embed a subsample of fewer points",
    ):
        knn_adjacency(x, 4)


def test_normalized_adjacency_is_the_symmetric_normalisation_of_any_graph():
    """For a graph whose nodes have different degrees (not a kNN graph, where every row has k
    neighbours), the result is D^-1/2 (A + I) D^-1/2 with D the row sums of A + I, built
    densely in numpy: symmetric for a symmetric A, not the row-normalised D^-1 (A + I)."""
    rng = np.random.default_rng(4)
    a = np.triu((rng.random((7, 7)) < 0.4).astype(float), 1)
    a = a + a.T
    a[0, 1:] = a[1:, 0] = 1.0  # a hub: degrees from 1 to 7
    a_i = a + np.eye(7)
    d = np.diag(1 / np.sqrt(a_i.sum(1)))
    got = normalized_adjacency(torch.as_tensor(a)).numpy()
    np.testing.assert_allclose(got, d @ a_i @ d, rtol=1e-14, atol=0)
    np.testing.assert_allclose(got, got.T, rtol=1e-14, atol=0)
    batch = normalized_adjacency(torch.as_tensor(np.stack([a, np.zeros((7, 7))])))
    np.testing.assert_allclose(batch[0].numpy(), got, rtol=1e-14, atol=0)
    np.testing.assert_allclose(batch[1].numpy(), np.eye(7), rtol=0, atol=0)
