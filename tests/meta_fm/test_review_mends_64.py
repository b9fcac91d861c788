"""Defects a user review of meta_fm found (each test fails on the code before).

- ``fit(steps=0)`` reported ``extra["seconds_per_1k_steps"]`` as its set-up time over one
  step, a rate of no step; the ensemble's did too;
- an ensemble whose members caught up on steps reported the members' summed seconds over the
  fewest steps of a member, several times a member's real rate.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

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


def test_the_ensemble_rate_is_the_members_mean_after_a_catch_up(data):
    ens = MFMEnsemble(data, members=2, **TINY_MFM, seed=0)
    ens.models[0].fit(steps=40, progress=False)  # member 1 is 40 steps behind
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ens.fit(steps=2, progress=False)
    members = r.extra["members"]
    assert [m.steps for m in members] == [2, 42]
    rates = [1000 * m.seconds / m.steps for m in members]
    # the summed seconds of 44 steps over 2 steps and 2 members read 11 steps' time as one
    assert r.extra["seconds_per_1k_steps"] == pytest.approx(np.mean(rates))
