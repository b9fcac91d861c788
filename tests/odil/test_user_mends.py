"""Mends from using odil as a user would: seeds, save/load, NaN inputs."""

from __future__ import annotations

import pytest
import torch

from bayesphys.odil import nuts_reference

NUTS_KW = dict(num_samples=2, warmup_steps=2, max_tree_depth=2)


def test_nuts_reference_seed_none_draws_from_the_global_stream(tiny_pet_model):
    """seed=None was refused (``seed: expected an int``), while every other seed=None of the
    package draws its seed from torch's global stream."""
    torch.manual_seed(0)
    a, _ = nuts_reference(tiny_pet_model, seed=None, **NUTS_KW)
    after = torch.rand(3)
    torch.manual_seed(0)
    b, _ = nuts_reference(tiny_pet_model, seed=None, **NUTS_KW)
    assert torch.equal(a, b)
    torch.manual_seed(0)
    assert not torch.equal(torch.rand(3), after)  # the draw advanced the global stream
    torch.manual_seed(1)
    c, _ = nuts_reference(tiny_pet_model, seed=None, **NUTS_KW)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_nuts_reference_still_refuses_a_bad_seed(tiny_pet_model, seed):
    with pytest.raises((TypeError, ValueError), match=r"^seed: expected an int"):
        nuts_reference(tiny_pet_model, seed=seed, **NUTS_KW)
