"""Building a seeded neural process leaves the caller's global random streams alone."""

from __future__ import annotations

import torch

from tests.rng_checks import leaves_global_rng
from tests.tiny_models import tiny_rgnp


def test_seeded_build_leaves_the_global_streams_and_repeats_its_weights():
    a = leaves_global_rng(tiny_rgnp)
    b = tiny_rgnp()
    for p, q in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(p, q)
    c = tiny_rgnp(seed=1)
    assert any(not torch.equal(p, q) for p, q in zip(a.net.parameters(), c.net.parameters()))
