"""Set semantics of a population in Meta Flow Matching: permuting a source population's rows
leaves its embedding unchanged and permutes its prediction's rows, also for populations larger
than the embedding's subsample (``points``), whose seeded subsample was drawn by row position
(a permutation gave another subsample: 6e-2 on the tiny model's predictions), and the
population scores of ``population_metrics`` and ``ensemble_spread`` with ``max_points`` are
those of the same points whatever the order of the rows, and the embedding of a population on a
lattice (distance ties in its kNN graph, broken by row position before: 3e-2) does not depend on
the order of its rows. Tolerances:
float32 round-off of the GCN's sums over points in another order (1e-5 relative)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.meta_fm import (
    MetaFlowMatching,
    PopulationEmbedding,
    ensemble_spread,
    population_metrics,
)
from bayesphys.meta_fm._canonical import canonical_order
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM


@pytest.fixture(scope="module")
def fitted():
    # populations of 23 points, above the embedding's subsample of TINY_MFM's 16 points
    d = linear_map(n_train=4, n_cal=0, n_test=2, n_points=23, seed=0)
    m = MetaFlowMatching(d, **TINY_MFM, seed=0)
    m.fit(steps=3, progress=False)
    return m, list(d.subset("test").source)


@pytest.mark.parametrize("n", [23, 12])  # subsampled, and embedded whole
def test_permuted_population_same_embedding_permuted_prediction(fitted, n):
    m, pops = fitted
    g = torch.Generator().manual_seed(1)
    q = pops[0][:n]
    perm = torch.randperm(n, generator=g)
    for seed in (0, 7):
        emb = m.embed([q, pops[1]], seed=seed)
        emb_p = m.embed([q[perm], pops[1]], seed=seed)
        torch.testing.assert_close(emb_p, emb, rtol=1e-5, atol=1e-6)
        pred = m.predict([q], solver="rk4", seed=seed)[0]
        pred_p = m.predict([q[perm]], solver="rk4", seed=seed)[0]
        torch.testing.assert_close(pred_p, pred[perm], rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 12),
    d=st.integers(1, 3),
    f=st.integers(0, 2),
    levels=st.integers(1, 4),  # few distinct values per column: ties in the leading keys
    seed=st.integers(0, 10_000),
)
def test_canonical_order_is_the_same_rows_for_any_permutation(n, d, f, levels, seed):
    g = torch.Generator().manual_seed(seed)
    pts = torch.randint(levels, (n, d), generator=g).double()
    feats = torch.randint(2, (n, f), generator=g).float() if f else None
    key = pts if feats is None else torch.cat([pts, feats.double()], -1)
    perm = torch.randperm(n, generator=g)
    sorted_rows = key[canonical_order(pts, feats)]
    pf = None if feats is None else feats[perm]
    assert torch.equal(key[perm][canonical_order(pts[perm], pf)], sorted_rows)
    # lexicographic: each row is <= the next in the first column where they differ
    for a, b in zip(sorted_rows[:-1], sorted_rows[1:]):
        diff = (a != b).nonzero()
        assert diff.numel() == 0 or a[diff[0, 0]] < b[diff[0, 0]]


@pytest.mark.parametrize("max_points", [None, 7, 40])
def test_population_metrics_do_not_depend_on_the_order_of_the_rows(max_points):
    """W1, W2 and MMD between two populations are functions of the two sets: permuting the
    rows of either leaves them unchanged, also when both are scored on a seeded subsample
    of ``max_points`` points (which was drawn by row position)."""
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(25, 2, generator=g, dtype=torch.float64)
    true = torch.randn(30, 2, generator=g, dtype=torch.float64) + 0.5
    want = population_metrics(pred, true, max_points=max_points, seed=3)
    for _ in range(3):
        pp, pt = torch.randperm(25, generator=g), torch.randperm(30, generator=g)
        got = population_metrics(pred[pp], true[pt], max_points=max_points, seed=3)
        for k in want:
            assert abs(got[k] - want[k]) <= 1e-12 * max(1.0, abs(want[k])), (k, got, want)


@pytest.mark.parametrize("max_points", [None, 6, 40])
def test_ensemble_spread_does_not_depend_on_the_order_of_the_source_rows(max_points):
    """The members' rows are images of the same source rows: permuting the source rows
    permutes every member's rows alike, and the spread (on a seeded subsample of
    ``max_points`` rows, drawn by position before) stays the same."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(20, 2, generator=g, dtype=torch.float64)
    members = [base + 0.3 * torch.randn(20, 2, generator=g, dtype=torch.float64) for _ in range(3)]
    want = ensemble_spread(members, max_points=max_points, seed=2)
    assert want > 0
    for _ in range(3):
        perm = torch.randperm(20, generator=g)
        got = ensemble_spread([m[perm] for m in members], max_points=max_points, seed=2)
        assert abs(got - want) <= 1e-12 * want, (got, want)


@settings(max_examples=12, deadline=None)
@given(
    side=st.integers(2, 5),
    k=st.integers(1, 6),
    features=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)
def test_embedding_of_a_lattice_population_does_not_depend_on_row_order(side, k, features, seed):
    """Points on a lattice have many equal distances: the kNN graph's ties, broken by row
    position, gave a permuted population another graph and another embedding."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    emb = PopulationEmbedding(2, hidden=8, layers=2, k=k, features=features).double()
    ax = torch.arange(side, dtype=torch.float64)
    x = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
    f = torch.randint(2, (x.shape[0], features), generator=g).double() if features else None
    want = emb(x, f)
    for _ in range(3):
        perm = torch.randperm(x.shape[0], generator=g)
        got = emb(x[perm], None if f is None else f[perm])
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    # a batch of populations [P, n, d]: each as alone, whatever the rows' order
    perm = torch.randperm(x.shape[0], generator=g)
    fb = None if f is None else torch.stack([f, f[perm]])
    batch = emb(torch.stack([x, x[perm]]), fb)
    torch.testing.assert_close(batch, torch.stack([want, want]), rtol=1e-12, atol=1e-13)
