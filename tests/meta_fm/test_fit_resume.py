"""MetaFlowMatching: subsample seeds per population, fits that continue, checkpointed streams,
dtypes and seeds at the top of the range, and the posterior's batch / event split."""

from __future__ import annotations

import copy

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM

TOP = 2**64 - 1


@pytest.fixture(scope="module")
def data():
    return linear_map(n_train=4, n_cal=0, n_test=2, n_points=20, seed=0)


def _fitted(data, **kw):
    m = MetaFlowMatching(data, **TINY_MFM, seed=0, **kw)
    m.fit(steps=3, progress=False)
    return m


def test_a_loaded_model_asks_for_its_training_data(data, tmp_path):
    """A checkpoint keeps no training data: the refusal named only "here or at construction",
    which a loaded model's user never did; it now says what to pass."""
    m = MetaFlowMatching.load(_fitted(data).save(tmp_path / "m.pt"))
    with pytest.raises(ValueError, match=r"a loaded model keeps none: pass them, fit\(data"):
        m.fit(steps=1, progress=False)
    ens = MFMEnsemble(data, members=2, **TINY_MFM, seed=0)
    ens = MFMEnsemble.load(ens.save(tmp_path / "e.pt"))
    with pytest.raises(ValueError, match="a loaded model keeps none"):
        ens.fit(steps=1, progress=False)
    assert m.steps_done == 3 and all(x.steps_done == 0 for x in ens.models)


def test_a_populations_prediction_does_not_depend_on_the_others_in_the_call(data):
    """One subsample stream ran through the call's populations: B's embedding changed when A
    came first (the populations have 20 points, the embedding subsamples 16). Each
    population is embedded and integrated on its own, so its embedding and its prediction
    are the lone ones bit for bit."""
    m = _fitted(data)
    a, b = data.subset("test").source
    assert torch.equal(m.embed([a, b], seed=0)[1], m.embed([b], seed=0)[0])
    assert torch.equal(m.embed([b, a], seed=0)[1], m.embed([a], seed=0)[0])
    both = m.predict([a, b], seed=0)
    assert torch.equal(both[1], m.predict([b], seed=0)[0])
    assert torch.equal(both[0], m.predict([b, a], seed=0)[1])
    assert not torch.equal(m.embed([b], seed=0), m.embed([b], seed=1))


def test_a_second_fit_keeps_the_normalisation_and_continues_the_batches(data, tmp_path):
    m = _fitted(data)
    test = data.subset("test").source
    before = m.predict(test)
    shift, scale = m.net.shift.clone(), m.net.scale.clone()
    moved = copy.copy(data)
    moved.source = [s * 3 + 10 for s in data.source]
    moved.target = [t * 3 + 10 for t in data.target]
    m.fit(moved, steps=0, progress=False)  # re-estimated the frame: predictions moved by 0.4
    assert torch.equal(m.net.shift, shift) and torch.equal(m.net.scale, scale)
    assert all(torch.equal(p, q) for p, q in zip(m.predict(test), before))

    # the batches go on where the last call stopped (they were replayed from seed + 1)
    seen = []
    fresh = MetaFlowMatching(data, **TINY_MFM, seed=0)
    orig = fresh._batch

    def record(d, g, plans=None):
        out = orig(d, g, plans)
        seen.append(out[0].sum().item())
        return out

    fresh._batch = record
    fresh.fit(steps=3, progress=False)
    first = list(seen)
    fresh.fit(steps=3, progress=False)
    assert seen[3:] != first
    # a checkpoint keeps the stream: loaded and continued = continued in memory
    m1 = _fitted(data)
    m2 = MetaFlowMatching.load(m1.save(tmp_path / "m.pt"))
    assert m2.steps_done == m1.steps_done == 3
    m1.fit(data, steps=2, progress=False)
    m2.fit(data, steps=2, progress=False)  # a loaded model keeps no data
    for p, q in zip(m1.net.parameters(), m2.net.parameters()):
        assert torch.equal(p, q)
    # an explicit seed restarts the stream
    m3, m4 = _fitted(data), _fitted(data)
    m3.fit(steps=2, progress=False, seed=5)
    m4.fit(steps=2, progress=False, seed=5)
    for p, q in zip(m3.net.parameters(), m4.net.parameters()):
        assert torch.equal(p, q)


def test_half_precision_is_refused_up_front(data):
    for dt in (torch.float16, torch.bfloat16):
        with pytest.raises(ValueError, match="dtype: expected torch.float32 or torch.float64"):
            MetaFlowMatching(data, **TINY_MFM, dtype=dt)


def test_seeds_at_the_top_of_the_range(data):
    """Derived seeds (seed + 1, seed + k, seed + m) overflowed or were refused."""
    m = MetaFlowMatching(data, **TINY_MFM, seed=TOP)
    m.fit(steps=2, progress=False)
    m.fit(steps=1, progress=False, seed=TOP)
    test = data.subset("test").source
    post = m.posterior(test, num_samples=2, seed=TOP)
    assert torch.equal(post.draws[0, 1], torch.stack(m.predict(test, seed=0)))  # TOP + 1 wraps
    ens = MFMEnsemble(data, members=2, seed=TOP, **TINY_MFM)
    assert ens.models[1].seed == 0


def test_posterior_batch_is_the_populations_and_event_one_population(data):
    m = _fitted(data)
    test = data.subset("test").source
    post = m.posterior(test, num_samples=2)
    assert post.batch_shape == (2,) and post.event_shape == (20, 2)
    ens = MFMEnsemble(data, members=2, seed=0, **TINY_MFM)
    ens.fit(steps=2, progress=False)
    epost = ens.posterior(test, num_samples=2)
    assert epost.batch_shape == (2,) and epost.event_shape == (20, 2)
    assert epost.mean.shape == (2, 20, 2)


def test_a_checkpoint_without_a_step_count_loads_as_a_trained_model(data, tmp_path):
    # files written before the step count was saved hold trained weights (and their
    # normalisation): they load as trained, not as a model that never took a step
    path = _fitted(data).save(tmp_path / "m.pt")
    ck = torch.load(path, weights_only=False)
    del ck["config"]["steps_done"], ck["config"]["train_rng"]
    torch.save(ck, path)
    old = MetaFlowMatching.load(path)
    assert old.steps_done == 1
