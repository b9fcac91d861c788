"""GPPDESolver.fit's ``callback(model, step)`` every ``callback_every`` steps: the steps it sees
(``steps_done``), a fit bit-identical to one without it, a consistent model inside it
(save/load round trip), checks before the first step, errors that propagate and its time kept
out of ``seconds``; ``eval_every`` works beside it."""

from __future__ import annotations

import time

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver
from tests.fit_callback_checks import check_bad_callbacks_refused, check_callback_time_excluded
from tests.gp_pde.solver_state import same_state, solver_state

SETTINGS = {
    "gp-hm": ("poisson1d-low", dict(num_mixtures=2)),
    "ref": ("poisson1d-low", dict(method="ref", num_mixtures=4, n_col=40)),
    "allencahn": ("allencahn2d-low", dict(n_col=8, num_mixtures=2)),
}


def _tiny(kind: str = "gp-hm") -> GPPDESolver:
    problem, kw = SETTINGS[kind]
    return GPPDESolver(problem, seed=0, **kw)


def test_the_callback_sees_the_models_total_steps():
    m, seen = _tiny(), []

    def record(model, step):
        assert model is m and model.steps_done == step
        seen.append(step)

    assert m.steps_done == 0
    m.fit(steps=5, progress=False, callback=record, callback_every=2)
    assert seen == [2, 4] and m.steps_done == 5 and m.history["fit_steps"] == [5]
    # a second call counts on from the first: its steps 2 and 4 are the model's 7 and 9
    m.fit(steps=5, progress=False, callback=record, callback_every=2)
    assert seen == [2, 4, 7, 9] and m.steps_done == 10 and m.history["fit_steps"] == [5, 5]
    m.fit(steps=3, progress=False, callback=record, callback_every=4)  # never due
    assert seen == [2, 4, 7, 9] and m.steps_done == 13


@pytest.mark.parametrize("kind", ["gp-hm", "ref", "allencahn"])
def test_a_callback_that_does_nothing_changes_nothing(kind):
    ref = _tiny(kind)
    kw = dict(steps=5, lr=0.2, eval_every=2, progress=False)
    r_ref = [ref.fit(**kw), ref.fit(**kw)]
    for every in (1, 3):
        m = _tiny(kind)
        r = [
            m.fit(**kw, callback=lambda model, step: None, callback_every=every),
            m.fit(**kw, callback=lambda model, step: None, callback_every=every),
        ]
        for a, b in zip(r, r_ref):
            assert a.loss_history == b.loss_history and a.message == b.message
            assert a.extra.get("best_step") == b.extra.get("best_step")
        assert same_state(solver_state(m), solver_state(ref)) and torch.equal(m.u, ref.u)
        assert m.history == ref.history and m._fresh() == ref._fresh()


@pytest.mark.parametrize("kind", ["gp-hm", "ref", "allencahn"])
def test_save_and_load_inside_the_callback_round_trip(kind, tmp_path):
    m, checked = _tiny(kind), []
    post = (lambda s: s.posterior()) if kind != "allencahn" else (lambda s: s.predict())

    def check(model, step):
        back = GPPDESolver.load(model.save(tmp_path / f"at{step}.pt"))
        assert back.steps_done == step
        assert same_state(solver_state(back), solver_state(model))
        a, b = post(model), post(back)
        for x, y in (
            ((a, b),) if kind == "allencahn" else ((a.mean, b.mean), (a.variance, b.variance))
        ):
            assert torch.equal(x, y)
        checked.append(step)

    ref = _tiny(kind)
    r_ref = ref.fit(steps=4, lr=0.2, progress=False)
    r = m.fit(steps=4, lr=0.2, progress=False, callback=check, callback_every=2)
    assert checked == [2, 4]
    # the fields solved inside the callback are not the next step's start: the same fit
    assert r.loss_history == r_ref.loss_history
    assert same_state(solver_state(m), solver_state(ref)) and torch.equal(m.u, ref.u)


def test_bad_callbacks_are_refused_before_the_first_step():
    m = _tiny()
    before = solver_state(m)
    check_bad_callbacks_refused(m.fit)
    assert m.steps_done == 0 and m.history == {"step": [], "rel_l2": []}
    assert same_state(solver_state(m), before)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, StopIteration])
def test_an_error_of_the_callback_propagates_and_keeps_the_last_step(error):
    m, at = _tiny(), {}

    def stop(model, step):
        if step == 4:
            at["state"] = solver_state(model)
            raise error("stop")

    with pytest.raises(error, match="stop"):
        m.fit(steps=20, eval_every=3, progress=False, callback=stop, callback_every=2)
    assert same_state(solver_state(m), at["state"])
    # the step whose callback raised is done: the next fit numbers its steps after it
    assert m.history["fit_steps"] == [4] and m.steps_done == 4 and m.history["step"] == [0, 3]
    m.fit(steps=3, eval_every=3, progress=False)
    assert m.history["step"] == [0, 3, 4] and m.steps_done == 7


def test_the_callbacks_time_is_not_the_fits():
    m = _tiny()
    check_callback_time_excluded(m.fit)


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_max_seconds_counts_training_time_only(clock, one_torch_thread):
    # sized by a step's time here, on its own clock (a loaded machine took a whole 0.2 s
    # budget in one step, so the fit ended before the callback could show that its time does
    # not count); one thread: OpenMP threads spinning on a loaded machine inflated the CPU
    # time of a step several times over (one_torch_thread)
    clock_fn = time.process_time if clock == "cpu" else time.perf_counter
    probe = _tiny()
    t0 = clock_fn()
    probe.fit(steps=2, keep_best=False, progress=False)
    budget = max(0.2, 4 * (clock_fn() - t0) / 2)
    pause, spin = 2.5 * budget, 1.5 * budget
    m, seen = _tiny(), []

    def slow_once(model, step):
        seen.append(step)
        if step == 1:
            time.sleep(pause)  # past the budget: it does not count
            if clock == "cpu":  # nor does CPU time spent in it
                t = time.process_time()
                while time.process_time() - t < spin:
                    pass

    r = m.fit(
        steps=10**6,
        max_seconds=budget,
        clock=clock,
        keep_best=False,
        progress=False,
        callback=slow_once,
        callback_every=1,
    )
    assert r.message.startswith("time limit reached after")
    assert 2 <= r.steps < 10**6 and seen == list(range(1, r.steps + 1))
    assert m.steps_done == r.steps
    if clock == "wall":
        assert r.seconds < pause + budget
    else:  # a CPU budget: the wall time grows with the machine's load, the CPU time does not
        assert 0.75 * budget <= r.extra["cpu_seconds"] < spin + budget
