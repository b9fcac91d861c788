"""Defects a user review of meta_fm found (each test fails on the code before).

- ``fit(steps=0)`` reported ``extra["seconds_per_1k_steps"]`` as its set-up time over one
  step, a rate of no step; the ensemble's did too;
- an ensemble whose members caught up on steps reported the members' summed seconds over the
  fewest steps of a member, several times a member's real rate, and averaged the members'
  loss histories entry by entry, so a caught-up member's first steps were averaged with the
  others' later ones;
- ``correlation_of_correlations`` promised NaN when one population's correlations are all
  equal, but equal correlations that ``corrcoef`` rounded apart (affine copies of a feature,
  two points) gave the Pearson correlation of the round-off, any value in [-1, 1].
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM


@pytest.fixture(scope="module")
def data():
    return linear_map(n_train=4, n_cal=0, n_test=1, n_points=32, seed=0)


def test_a_fit_of_no_step_reports_no_rate(data):
    m = MetaFlowMatching(data, **TINY_MFM, seed=0)
    r = m.fit(steps=0, progress=False)
    assert r.steps == 0
    assert math.isnan(r.extra["seconds_per_1k_steps"])
    r = m.fit(steps=2, progress=False)  # a call with steps keeps its rate
    assert r.extra["seconds_per_1k_steps"] == pytest.approx(1000 * r.seconds / 2)


def test_an_ensemble_fit_of_no_step_reports_no_rate(data):
    ens = MFMEnsemble(data, members=2, **TINY_MFM, seed=0)
    r = ens.fit(steps=0, progress=False)
    assert math.isnan(r.extra["seconds_per_1k_steps"])


def _fit_after_catch_up(data, behind: int, steps: int):
    """An ensemble of two whose first member trained ``behind`` steps alone, then fitted
    ``steps`` steps (the second member catches up first)."""
    ens = MFMEnsemble(data, members=2, **TINY_MFM, seed=0)
    ens.models[0].fit(steps=behind, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the catch-up's warning
        return ens.fit(steps=steps, progress=False)


def test_the_ensemble_rate_is_the_members_mean_after_a_catch_up(data):
    r = _fit_after_catch_up(data, behind=40, steps=2)  # member 1 is 40 steps behind
    members = r.extra["members"]
    assert [m.steps for m in members] == [2, 42]
    rates = [1000 * m.seconds / m.steps for m in members]
    # the summed seconds of 44 steps over 2 steps and 2 members read 11 steps' time as one
    assert r.extra["seconds_per_1k_steps"] == pytest.approx(np.mean(rates))


def test_r_is_nan_for_correlations_equal_up_to_round_off():
    from bayesphys.meta_fm import correlation_of_correlations

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=gen, dtype=torch.float64)
    z = x[:, :1]
    # affine copies of one feature: every correlation is 1, but corrcoef rounds some of them
    # to 1 - 2e-16, and r was the Pearson correlation of that round-off
    copies = torch.cat([z, 2 * z + 1, 3 * z - 2, 0.5 * z], 1)
    off = torch.corrcoef(copies.mT)[torch.triu_indices(4, 4, 1).unbind()]
    assert off.max() != off.min()  # the round-off the check must see through
    assert math.isnan(correlation_of_correlations(copies, x))
    assert math.isnan(correlation_of_correlations(x, copies))
    # the documented invariance: an affine copy of a NaN case is NaN too
    exact = x[:, [0, 0, 0, 0]]
    assert math.isnan(correlation_of_correlations(exact, x))
    # two points: all correlations +-1; rising together, all +1
    two = torch.stack([torch.zeros(4, dtype=torch.float64), torch.rand(4, generator=gen) + 0.1])
    two = two + torch.rand(4, generator=gen, dtype=torch.float64)
    assert math.isnan(correlation_of_correlations(two, x))
    # distinct correlations stay defined
    assert not math.isnan(correlation_of_correlations(x, torch.cat([z, z, x[:, 1:3]], 1)))


def test_the_ensemble_loss_history_averages_the_members_at_the_same_step(data):
    r = _fit_after_catch_up(data, behind=6, steps=3)  # member 1 is 6 steps behind
    h0, h1 = (m.loss_history for m in r.extra["members"])
    assert (len(h0), len(h1)) == (3, 9)
    # steps 7..9 of both members: member 1's last three entries, not its first three
    want = [float(np.mean([a, b])) for a, b in zip(h0, h1[6:])]
    assert r.loss_history == pytest.approx(want, rel=1e-12)
    assert r.steps == 3
