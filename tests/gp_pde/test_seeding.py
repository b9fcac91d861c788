"""The GP-HM solver draws no random numbers: a seed is recorded, never used on the global
streams."""

from __future__ import annotations

import pytest

from bayesphys.gp_pde import GPPDESolver
from tests.rng_checks import leaves_global_rng


def test_seeded_build_leaves_the_global_streams():
    m = leaves_global_rng(lambda: GPPDESolver("poisson1d-low", num_mixtures=2, n_col=12, seed=5))
    assert m.config["seed"] == 5


def test_bad_seed_is_refused_by_name():
    with pytest.raises(ValueError, match="seed"):
        GPPDESolver("poisson1d-low", num_mixtures=2, n_col=12, seed=2**64)
    with pytest.raises(TypeError, match="seed"):
        GPPDESolver("poisson1d-low", num_mixtures=2, n_col=12, seed="1")
