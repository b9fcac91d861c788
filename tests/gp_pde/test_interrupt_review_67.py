"""An interrupt (Ctrl-C) that reaches a GPPDESolver fit between two steps, after one step's
update and before the next begins: ``steps_done`` (``history["fit_steps"]``) counts that
update, which the hyperparameters hold."""

from __future__ import annotations

import pytest

import bayesphys._model as model_mod
from bayesphys.gp_pde import GPPDESolver
from tests.gp_pde.solver_state import same_state, solver_state

SETTINGS = {
    "gp-hm": dict(num_mixtures=2),
    "ref": dict(method="ref", num_mixtures=4, n_col=40),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("kind", sorted(SETTINGS))
def test_an_interrupt_after_a_steps_update_counts_that_step(kind, monkeypatch):
    m, seen = GPPDESolver("poisson1d-low", seed=0, **SETTINGS[kind]), {}
    real, calls = model_mod.loss_and_state, {"n": 0}

    def interrupt_after_third(loss, states, where):
        # optimize reads each step's loss back once the step returned (its update taken)
        if where == "step":
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
        return real(loss, states, where)

    monkeypatch.setattr(model_mod, "loss_and_state", interrupt_after_third)
    with pytest.raises(KeyboardInterrupt):
        m.fit(
            steps=6,
            progress=False,
            callback=lambda model, step: seen.setdefault(step, solver_state(model)),
            callback_every=1,
        )
    monkeypatch.setattr(model_mod, "loss_and_state", real)
    # the 3rd step's update is held (its callback saw these values): it was counted as not done
    assert sorted(seen) == [1, 2, 3] and same_state(solver_state(m), seen[3])
    assert m.steps_done == 3 and m.history["fit_steps"] == [3]
    # the next fit numbers its steps after it
    later: list[int] = []
    m.fit(steps=2, progress=False, callback=lambda _, step: later.append(step), callback_every=1)
    assert later == [4, 5] and m.steps_done == 5
