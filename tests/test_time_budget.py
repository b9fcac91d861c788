"""Time budgets: one name (``max_seconds``) on every long fit, a stop that says so, and ranks
that stop after the same step (each reading its own clock, one rank stopped alone and left the
others waiting in their next collective)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from bayesphys._time_budget import TimeBudget
from bayesphys.gp_pde import GPPDESolver
from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.probconserv import ProbConserv
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM, tiny_rgnp


class _OtherRankIsLate:
    """An active sync whose other rank's clock is over budget from the start."""

    active, is_main, rank, world_size = True, True, 0, 2

    def __init__(self):
        self.votes = []

    def mean(self, value):
        if isinstance(value, float) and value in (0.0, 1.0):
            self.votes.append(value)
            return (value + 1.0) / 2  # the other rank votes "over"
        return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)

    def average_gradients(self):
        pass


def test_ranks_vote_every_few_steps_and_stop_together():
    sync = _OtherRankIsLate()
    budget = TimeBudget(1e9, sync, every=3)  # this rank has all the time in the world
    budget.start()
    asked = [budget.over() for _ in range(3)]
    assert asked == [False, False, True] and sync.votes == [0.0] and budget.reached
    alone = TimeBudget(1e9)
    assert not any(alone.over() for _ in range(10)) and not alone.reached
    assert TimeBudget(None, sync).over() is False and sync.votes == [0.0]  # no budget, no vote
    for bad in (0.0, -1.0, math.nan, "1"):
        with pytest.raises((TypeError, ValueError), match="max_seconds"):
            TimeBudget(bad)


def test_random_grid_np_stops_when_another_rank_is_over(monkeypatch):
    import bayesphys.neural_process.model as np_model

    sync = _OtherRankIsLate()
    monkeypatch.setattr(np_model, "GradientSync", lambda *a, **k: sync)
    res = tiny_rgnp().fit(steps=40, max_seconds=1e9, progress=False)
    assert res.steps < 40 and not res.converged and "time budget" in res.message
    assert sync.votes  # decided by the ranks together


def test_meta_flow_matching_and_probconserv_fits_take_a_time_budget():
    data = linear_map(n_train=4, n_cal=0, n_test=2, n_points=20, seed=0)
    for model in (
        MetaFlowMatching(data, **TINY_MFM, seed=0),
        ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0),
    ):
        res = model.fit(steps=100_000, max_seconds=0.3, progress=False)
        assert 0 < res.steps < 100_000 and res.converged is False
        assert res.message == f"time budget (0.3 s) reached after {res.steps} steps"
        full = model.fit(steps=2, max_seconds=1e9, progress=False)
        assert full.steps == 2 and full.message == "max steps (2)"
        with pytest.raises(ValueError, match="max_seconds"):
            model.fit(steps=1, max_seconds=0.0, progress=False)


def test_gp_pde_takes_max_seconds_and_warns_on_its_former_name():
    m = GPPDESolver("poisson1d-low", num_mixtures=2, n_col=12, seed=0)
    res = m.fit(steps=100_000, max_seconds=0.3, progress=False)
    assert res.steps < 100_000 and "time limit reached" in res.message
    with pytest.warns(DeprecationWarning, match="time_limit is renamed max_seconds"):
        m.fit(steps=1, time_limit=5.0, progress=False)
    with pytest.raises(ValueError, match="one budget"):
        m.fit(steps=1, time_limit=5.0, max_seconds=5.0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(steps=1, max_seconds=5.0, progress=False)
    assert torch.isfinite(torch.as_tensor(res.loss_history)).all()


def test_an_ensemble_shares_its_time_budget_among_its_members():
    data = linear_map(n_train=4, n_cal=0, n_test=2, n_points=20, seed=0)
    ens = MFMEnsemble(data, members=2, **TINY_MFM, seed=0)
    res = ens.fit(steps=100_000, max_seconds=0.6, progress=False)
    members = res.extra["members"]
    assert all(0 < r.steps < 100_000 and not r.converged for r in members)
    # one message per member, or one for both when they stopped after the same step count
    # (identical messages are collapsed: this depends on timing)
    msg = res.message
    assert res.converged is False
    assert msg.count("time budget") == 2 or (
        msg.count("time budget") == 1 and "all 2 members" in msg
    )


def test_the_budget_counts_from_start_is_spent_at_exactly_max_seconds_and_stays_reached(
    monkeypatch,
):
    import types

    import bayesphys._time_budget as tb

    clock = [100.0]
    monkeypatch.setattr(tb, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    budget = TimeBudget(5.0)
    clock[0] = 104.0
    budget.start()  # the clock restarts here: 104
    clock[0] = 108.5
    assert budget.over() is False and not budget.reached  # 4.5 s since start()
    clock[0] = 109.0
    assert budget.over() is True and budget.reached  # exactly 5 s: spent
    # an explicit elapsed time is read as it is; a later "not over" leaves reached as it was
    assert budget.over(elapsed=4.999) is False and budget.reached
    assert TimeBudget(2.0).over(elapsed=2.0) is True
    assert TimeBudget(2.0).message(7) == "time budget (2 s) reached after 7 steps"
