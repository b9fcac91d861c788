"""Order invariance of the ODIL pieces that read a set of points: the k-means starting foci
of a multifocal fit depend on the set of voxel centres, not on their order. Voxel centres on
a grid are symmetric about their centroid, and the farthest-point seeding's argmin / argmax
broke those ties by input position: a permutation of the same voxels gave other centres."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.odil import kmeans_foci

F64 = torch.float64


@settings(max_examples=40, deadline=None)
@given(
    side=st.integers(2, 6),
    gap=st.integers(0, 12),
    k=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_kmeans_foci_depend_on_the_set_of_points_not_their_order(side, gap, k, seed):
    g = torch.Generator().manual_seed(seed)
    ax = torch.arange(side, dtype=F64)
    blob = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
    pts = torch.cat([blob, blob + torch.tensor([side + gap, 0.0], dtype=F64)])  # two blobs
    pts = pts[torch.rand(len(pts), generator=g) > 0.2]
    if len(pts) < k:
        return
    centres = kmeans_foci(pts, k)
    perm = torch.randperm(len(pts), generator=g)
    permuted = kmeans_foci(pts[perm], k)
    # the same centres, in the same order (both start from the same seeds)
    torch.testing.assert_close(permuted, centres, rtol=0, atol=1e-12)
