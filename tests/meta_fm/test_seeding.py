"""Building a seeded Meta Flow Matching model leaves the caller's global random streams alone."""

from __future__ import annotations

import torch

from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.problems.populations import linear_map
from tests.rng_checks import leaves_global_rng
from tests.tiny_models import SMALL_MFM


def test_seeded_build_leaves_the_global_streams_and_repeats_its_weights():
    data = linear_map(n_train=4, n_cal=0, n_test=1, n_points=32, seed=0)
    a = leaves_global_rng(lambda: MetaFlowMatching(data, method="MFM", seed=0, **SMALL_MFM))
    b = MetaFlowMatching(data, method="MFM", seed=0, **SMALL_MFM)
    for p, q in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(p, q)
    c = MetaFlowMatching(data, method="MFM", seed=1, **SMALL_MFM)
    assert any(not torch.equal(p, q) for p, q in zip(a.net.parameters(), c.net.parameters()))
