"""A user's ``simulate`` that takes no ``seed`` keyword is named, with its signature, before
anything runs (it failed with Python's own "got an unexpected keyword argument 'seed'")."""

from __future__ import annotations

import pytest
import torch

from bayesphys.diagnostics import fit_recalibration, run_sbc


def _infer(y):
    return y + torch.randn(50, 1)


def _simulate_no_seed(n):
    theta = torch.randn(n, 1)
    return theta, theta + 0.1 * torch.randn(n, 1)


def _simulate(n, *, seed):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, 1, generator=g)
    return theta, theta + 0.1 * torch.randn(n, 1, generator=g)


@pytest.mark.parametrize(
    "call",
    [
        lambda sim: run_sbc(sim, _infer, n_sims=5, n_draws=9, seed=0, progress=False),
        lambda sim: fit_recalibration(sim, _infer, n_fit=5, n_eval=5, seed=0, progress=False),
    ],
)
def test_a_simulate_without_seed_is_named_with_its_signature(call):
    with pytest.raises(TypeError, match=r"^simulate: expected a callable simulate\(n, \*, seed\)"):
        call(_simulate_no_seed)


def test_a_simulate_with_seed_still_runs():
    res = run_sbc(_simulate, _infer, n_sims=5, n_draws=9, seed=0, progress=False)
    assert res.ranks.shape[0] == 5
