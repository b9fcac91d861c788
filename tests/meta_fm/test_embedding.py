import pytest
import torch

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
