"""ProbConserv.fit's ``callback(model, step)`` every ``callback_every`` steps: the steps it sees,
a fit bit-identical to one without it, a consistent model inside it (save/load round trip),
checks before the first step, errors that propagate and its time kept out of ``seconds``."""

from __future__ import annotations

import time

import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset
from tests.fit_callback_checks import check_bad_callbacks_refused, check_callback_time_excluded

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(step1: str = "anp") -> ProbConserv:
    if step1 == "gp":
        return ProbConserv("diffusion", step1="gp", gp_width=8, batch_size=4, seed=0)
    return ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=0)


def _weights(m: ProbConserv) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.net.state_dict().items()}


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_callback_sees_the_models_total_steps():
    m, seen = _tiny(), []

    def record(model, step):
        assert model is m and model.steps_done == step
        assert not model.net.training  # ready to predict, as after a fit
        seen.append(step)

    m.fit(steps=5, progress=False, callback=record, callback_every=2)
    assert seen == [2, 4] and m.steps_done == 5
    # a second call counts on from the first: its steps 2 and 4 are the model's 7 and 9
    m.fit(steps=5, progress=False, callback=record, callback_every=2)
    assert seen == [2, 4, 7, 9] and m.steps_done == 10
    m.fit(steps=3, progress=False, callback=record, callback_every=4)  # never due
    m.fit(steps=2, progress=False, callback=record, callback_every=1)
    assert seen == [2, 4, 7, 9, 14, 15] and m.steps_done == 15


@pytest.mark.parametrize("step1", ["anp", "gp"])
def test_a_callback_that_does_nothing_changes_nothing(step1):
    ref = _tiny(step1)
    r_ref = [ref.fit(steps=5, progress=False), ref.fit(steps=2, progress=False)]
    for every in (1, 3):
        m = _tiny(step1)
        r = [
            m.fit(steps=5, progress=False, callback=lambda model, step: None, callback_every=every),
            m.fit(steps=2, progress=False, callback=lambda model, step: None, callback_every=every),
        ]
        assert [x.loss_history for x in r] == [x.loss_history for x in r_ref]
        assert _same_weights(_weights(m), _weights(ref)) and m.steps_done == ref.steps_done == 7
        assert torch.equal(m._train_rng.get_state(), ref._train_rng.get_state())


def test_save_and_load_inside_the_callback_round_trip(tmp_path):
    m, test, checked = _tiny(), make_dataset("diffusion", params=[2.0], seed=1), []

    def check(model, step):
        back = ProbConserv.load(model.save(tmp_path / f"at{step}.pt"))
        assert back.steps_done == step
        a, b = model.posterior(test, seed=4), back.posterior(test, seed=4)
        assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
        checked.append(step)

    ref = _tiny()
    r_ref = ref.fit(steps=4, progress=False)
    r = m.fit(steps=4, progress=False, callback=check, callback_every=2)
    assert checked == [2, 4]
    # the predictions inside the callback drew nothing from the training's streams
    assert r.loss_history == r_ref.loss_history and _same_weights(_weights(m), _weights(ref))


def test_bad_callbacks_are_refused_before_the_first_step():
    m = _tiny()
    before = _weights(m)
    check_bad_callbacks_refused(m.fit)
    assert m.steps_done == 0 and _same_weights(_weights(m), before)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, StopIteration])
def test_an_error_of_the_callback_propagates_and_keeps_the_last_step(error):
    m, at = _tiny(), {}

    def stop(model, step):
        if step == 4:
            at["weights"] = _weights(model)
            raise error("stop")

    with pytest.raises(error, match="stop"):
        m.fit(steps=20, progress=False, callback=stop, callback_every=2)
    assert m.steps_done == 4 and not m.net.training
    assert _same_weights(_weights(m), at["weights"])
    # the next fit goes on from there, and counts on
    seen = []
    m.fit(steps=2, progress=False, callback=lambda model, step: seen.append(step), callback_every=1)
    assert seen == [5, 6]


def test_the_callbacks_time_is_not_the_fits():
    m = _tiny()
    check_callback_time_excluded(m.fit)


def test_max_seconds_counts_training_time_only():
    m, seen = _tiny(), []

    def slow_once(model, step):
        seen.append(step)
        if step == 1:
            time.sleep(0.5)  # past the budget: it does not count

    r = m.fit(steps=100_000, max_seconds=0.3, progress=False, callback=slow_once, callback_every=1)
    assert not r.converged and r.message.startswith("time budget (0.3 s) reached after")
    assert 2 <= r.steps < 100_000 and seen == list(range(1, r.steps + 1))
    assert 0.25 <= r.seconds < 0.8 and m.steps_done == r.steps
