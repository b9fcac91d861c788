"""A fit stopped by its time budget says so and is not reported as converged."""

from __future__ import annotations

from tests.tiny_models import tiny_rgnp


def test_a_time_budget_stop_is_not_converged_and_prints_its_budget():
    m = tiny_rgnp()
    res = m.fit(steps=100_000, max_seconds=0.5, progress=False)
    assert res.steps < 100_000
    assert res.converged is False  # True before: a fixed-budget fit that ran all its steps
    assert "time budget (0.5 s)" in res.message  # was "(0 s)"
    assert not m._modules().training


def test_a_fit_that_ran_all_its_steps_is_not_a_time_budget_stop():
    m = tiny_rgnp()
    res = m.fit(steps=1, max_seconds=1e-9, progress=False)  # the budget trips on the last chunk
    assert res.steps == 1 and res.converged and res.message == "max steps (1)"
