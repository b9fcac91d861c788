"""MetaFlowMatching.fit's (and MFMEnsemble.fit's) ``callback(model, step)`` every
``callback_every`` steps: the steps it sees, a fit bit-identical to one without it, a
consistent model inside it (save/load round trip), checks before the first step, errors that
propagate and its time kept out of ``seconds``."""

from __future__ import annotations

import time

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.problems.populations import linear_map
from tests.fit_callback_checks import check_bad_callbacks_refused, check_callback_time_excluded
from tests.tiny_models import TINY_MFM


@pytest.fixture(scope="module")
def data():
    return linear_map(n_train=4, n_cal=0, n_test=2, n_points=20, seed=0)


def _weights(m: MetaFlowMatching) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.net.state_dict().items()}


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_callback_sees_the_models_total_steps(data):
    m, seen = MetaFlowMatching(data, **TINY_MFM, seed=0), []

    def record(model, step):
        assert model is m and model.steps_done == step
        assert not model.net.training  # ready to predict, as after a fit
        seen.append(step)

    m.fit(steps=5, progress=False, callback=record, callback_every=2)
    assert seen == [2, 4] and m.steps_done == 5
    assert not m.net.training
    # a second call counts on from the first: its steps 2 and 4 are the model's 7 and 9
    m.fit(steps=5, progress=False, callback=record, callback_every=2)
    assert seen == [2, 4, 7, 9] and m.steps_done == 10
    m.fit(steps=3, progress=False, callback=record, callback_every=4)  # never due
    assert seen == [2, 4, 7, 9] and m.steps_done == 13


@pytest.mark.parametrize(
    "settings",
    [{}, {"schedule": "alternating", "lr_schedule": "cosine"}, {"method": "CGFM"}],
    ids=["joint", "alternating", "cgfm"],
)
def test_a_callback_that_does_nothing_changes_nothing(data, settings):
    ref = MetaFlowMatching(data, **TINY_MFM, seed=0, **settings)
    r_ref = [ref.fit(steps=5, progress=False), ref.fit(steps=2, progress=False)]
    test = data.subset("test").source
    for every in (1, 3):
        m = MetaFlowMatching(data, **TINY_MFM, seed=0, **settings)
        kw = dict(progress=False, callback=lambda model, step: None, callback_every=every)
        r = [m.fit(steps=5, **kw), m.fit(steps=2, **kw)]
        assert [x.loss_history for x in r] == [x.loss_history for x in r_ref]
        assert _same_weights(_weights(m), _weights(ref)) and m.steps_done == ref.steps_done == 7
        assert torch.equal(m._train_gen.get_state(), ref._train_gen.get_state())
        assert all(torch.equal(a, b) for a, b in zip(m.predict(test), ref.predict(test)))


def test_save_and_load_inside_the_callback_round_trip(data, tmp_path):
    m, test, checked = MetaFlowMatching(data, **TINY_MFM, seed=0), data.subset("test").source, []

    def check(model, step):
        back = MetaFlowMatching.load(model.save(tmp_path / f"at{step}.pt"))
        assert back.steps_done == step
        assert all(torch.equal(a, b) for a, b in zip(model.predict(test), back.predict(test)))
        checked.append(step)

    ref = MetaFlowMatching(data, **TINY_MFM, seed=0)
    r_ref = ref.fit(steps=4, progress=False)
    r = m.fit(steps=4, progress=False, callback=check, callback_every=2)
    assert checked == [2, 4]
    # the predictions inside the callback drew nothing from the training's streams
    assert r.loss_history == r_ref.loss_history and _same_weights(_weights(m), _weights(ref))


def test_bad_callbacks_are_refused_before_the_first_step(data):
    m = MetaFlowMatching(data, **TINY_MFM, seed=0)
    before = _weights(m)
    check_bad_callbacks_refused(m.fit)
    # before anything else: the normalisation and the batch stream are not set yet either
    assert m.steps_done == 0 and m._train_gen is None and _same_weights(_weights(m), before)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, StopIteration])
def test_an_error_of_the_callback_propagates_and_keeps_the_last_step(data, error):
    m, at = MetaFlowMatching(data, **TINY_MFM, seed=0), {}

    def stop(model, step):
        if step == 4:
            at["weights"] = _weights(model)
            raise error("stop")

    with pytest.raises(error, match="stop"):
        m.fit(steps=20, progress=False, callback=stop, callback_every=2)
    assert m.steps_done == 4 and not m.net.training
    assert _same_weights(_weights(m), at["weights"])


def test_the_callbacks_time_is_not_the_fits(data):
    m = MetaFlowMatching(data, **TINY_MFM, seed=0)
    r = check_callback_time_excluded(m.fit)
    assert r.extra["seconds_per_1k_steps"] == pytest.approx(1000 * r.seconds / 3)


def test_max_seconds_counts_training_time_only(data):
    m, seen = MetaFlowMatching(data, **TINY_MFM, seed=0), []

    def slow_once(model, step):
        seen.append(step)
        if step == 1:
            time.sleep(0.5)  # past the budget: it does not count

    r = m.fit(steps=10**6, max_seconds=0.2, progress=False, callback=slow_once, callback_every=1)
    assert not r.converged and r.message.startswith("time budget (0.2 s) reached after")
    assert 2 <= r.steps < 10**6 and seen == list(range(1, r.steps + 1))
    assert 0.15 <= r.seconds < 0.5 + 0.2 and m.steps_done == r.steps


def test_an_ensemble_passes_the_callback_to_each_member(data):
    ens, seen = MFMEnsemble(data, members=2, seed=0, **TINY_MFM), []

    def record(member, step):
        assert isinstance(member, MetaFlowMatching) and member.steps_done == step
        seen.append((ens.models.index(member), step))

    with pytest.raises(TypeError, match=r"callback: expected a callable callback\(model, step\)"):
        ens.fit(steps=3, progress=False, callback=lambda m: None)
    with pytest.raises(ValueError, match="callback_every: expected an int >= 1"):
        ens.fit(steps=3, progress=False, callback_every=0)
    assert [m.steps_done for m in ens.models] == [0, 0]
    r = ens.fit(steps=4, progress=False, callback=record, callback_every=2)
    assert seen == [(0, 2), (0, 4), (1, 2), (1, 4)] and r.steps == 4

    def stop(member, step):
        if ens.models.index(member) == 1:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop") as err:
        ens.fit(steps=2, progress=False, callback=stop, callback_every=1)
    assert "member 1 of 2 failed" in " ".join(getattr(err.value, "__notes__", []))
    assert [m.steps_done for m in ens.models] == [6, 5]
