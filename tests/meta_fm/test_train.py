"""Training minibatches of MetaFlowMatching: what the population embedding reads."""

import dataclasses
import math
import warnings

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.problems.populations import linear_map, patient_screen
from tests.fit_callback_checks import callbacks_around_a_nan_gradient
from tests.tiny_models import SMALL_MFM, TINY_MFM


def _mixed_sizes(big: int = 40, small: int = 12):
    """linear_map pairs whose odd populations keep only their first ``small`` points."""
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=big, seed=0)
    cut = lambda pops: [p[:small] if i % 2 else p for i, p in enumerate(pops)]  # noqa: E731
    return dataclasses.replace(d, source=cut(d.source), target=cut(d.target))


def _embedded_inputs(model: MetaFlowMatching) -> list[torch.Tensor]:
    """Every points tensor the model's embedding reads from now on (a forward hook)."""
    seen: list[torch.Tensor] = []
    model.net["embed"].register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
    return seen


@pytest.mark.parametrize("schedule", ["joint", "alternating"])
def test_small_population_is_embedded_whole_in_training_as_in_prediction(schedule):
    # a population of fewer than `points` points was embedded through its resample with
    # replacement (repeated points at distance 0 in the kNN graph), while prediction embeds it
    # whole: the field was trained on embeddings it is never asked about
    data = _mixed_sizes()
    m = MetaFlowMatching(data, seed=0, schedule=schedule, **{**SMALL_MFM, "points": 32})
    seen = _embedded_inputs(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the points warning
        m.fit(steps=6, progress=False)
    train = data.subset("train")
    whole = [m._norm(s) for s in train.source if s.shape[0] < 32]
    subsampled = [x for x in seen if x.ndim == 3]
    read_whole = [x for x in seen if x.ndim == 2]
    assert read_whole, [tuple(x.shape) for x in seen]
    for x in read_whole:  # the normalised whole population, as predict's embed reads it
        assert any(torch.equal(x, w) for w in whole)
    for x in subsampled:  # the 40-point populations: their subsamples, no repeated point
        assert x.shape[1:] == (32, 2)
        for pop in x:
            assert torch.unique(pop, dim=0).shape[0] == 32
    # the embedding the field trains on for such a population is predict's
    small = next(s for s in train.source if s.shape[0] < 32)
    direct = m.net["embed"](m._norm(small))
    assert torch.equal(m.embed([small])[0], direct)


def test_small_population_features_are_read_whole():
    # the point features of a population embedded whole are its own, row for row
    d = patient_screen(n_cells=12, n_treatments=2, fold=0, seed=0)
    m = MetaFlowMatching(d, seed=0, **{**SMALL_MFM, "points": 16})
    feats: list[torch.Tensor | None] = []
    m.net["embed"].register_forward_hook(lambda mod, args, out: feats.append(args[1]))
    seen = _embedded_inputs(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m.fit(steps=2, progress=False)
    train = d.subset("train")
    assert seen and all(x.shape == (12, d.dim) for x in seen)
    for x, f in zip(seen, feats):
        i = next(k for k, s in enumerate(train.source) if torch.equal(m._norm(s), x))
        assert torch.equal(f, train.source_features[i].to(f))


def test_populations_of_at_least_points_embed_their_subsample_in_one_call():
    # no population smaller than `points` (one of exactly `points`): the embedding reads the
    # batch's subsamples [P, points, d] in one call, as before small populations were read whole
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=32, seed=0)
    m = MetaFlowMatching(d, seed=0, **{**SMALL_MFM, "points": 32})
    seen = _embedded_inputs(m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(steps=3, progress=False)
    assert len(seen) == 3 and all(x.shape == (2, 32, 2) for x in seen)
    batch = m._batch(d.subset("train"), torch.Generator().manual_seed(0))
    assert len(batch) == 7 and batch[-1] is None


def test_reading_small_populations_whole_leaves_the_batch_stream_alone():
    # the flow-matching points of a batch (and so every later draw) are those of the old
    # resampling: only what the embedding reads changed
    data = _mixed_sizes()
    kw = {**SMALL_MFM, "points": 32, "pops_per_step": 4}
    m = MetaFlowMatching(data, seed=0, **kw)
    fm = MetaFlowMatching(data, seed=0, method="FM", **kw)
    train = data.subset("train")
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(3):
        x0, x1, *_, whole = m._batch(train, g1)
        y0, y1, *_, none = fm._batch(train, g2)  # FM has no embedding: no whole entries
        assert none is None and torch.equal(x0, y0) and torch.equal(x1, y1)
        assert whole is not None and any(w is not None for w in whole)
    assert torch.equal(g1.get_state(), g2.get_state())


@pytest.mark.parametrize("kind", ["huge", "nan"])
def test_a_finite_loss_with_a_poisoned_update_is_a_divergence(kind):
    """A float64 gradient of 1e200 (at the fourth step) made Adam's second moment inf: the
    weights it reached were never updated again (m / inf = 0) while the fit ran on and
    reported "max steps", converged. Now the step is a divergence: the weights before it are
    restored and steps_done counts the steps whose update was kept."""
    data = linear_map(n_train=4, n_cal=0, n_test=2, n_points=20, seed=0)
    m = MetaFlowMatching(data, **TINY_MFM, seed=0, dtype=torch.float64)
    p = next(m.net.parameters())
    calls = []

    def hook(g):
        calls.append(1)
        if len(calls) != 4:
            return g
        return g * 1e200 if kind == "huge" else g * math.nan

    seen = []
    h = p.register_hook(hook)
    res = m.fit(
        steps=8,
        progress=False,
        callback=lambda model, step: seen.append(p.detach().clone()),
        callback_every=1,
    )
    h.remove()
    assert not res.converged and res.steps == 3, res.message
    assert res.message.startswith("diverged at step 3") and "optimizer state" in res.message
    # the weights after the second update (those the third step started from): the last
    # good state, as after a non-finite loss at the fourth step
    assert torch.equal(p.detach(), seen[1]) and m.steps_done == 2
    assert all(bool(torch.isfinite(q).all()) for q in m.net.parameters())
    assert m.fit(steps=3, progress=False).converged  # and it trains on


def test_no_callback_after_the_update_that_ends_the_fit():
    """The callback ran after the fourth step's update, whose NaN gradient (finite loss) had
    made the weights NaN: a callback that saves the model wrote NaN weights, at a step the
    fit then reported as its divergence. It runs after the kept steps only."""
    data = linear_map(n_train=4, n_cal=0, n_test=2, n_points=20, seed=0)
    m = MetaFlowMatching(data, **TINY_MFM, seed=0, dtype=torch.float64)
    p = next(m.net.parameters())
    res, seen = callbacks_around_a_nan_gradient(m.fit, p, 4, steps=8)
    assert res.message.startswith("diverged at step 3"), res.message
    assert seen == [(1, True), (2, True), (3, True)]


def _diverge_at(m: MetaFlowMatching, how: str, at: int):
    """Make step ``at`` (counted from 0) of ``m``'s next fit diverge: its loss NaN
    (``how="loss"``), or a finite loss whose NaN gradient poisons Adam (``"update"``), as
    tests/test_fit_api_consistency.py does; returns the undo."""
    calls = []
    if how == "loss":
        orig = m._loss

        def nan_loss(*a, **k):
            out = orig(*a, **k)
            calls.append(1)
            return out * math.nan if len(calls) == at + 1 else out

        m._loss = nan_loss
        return lambda: delattr(m, "_loss")

    def poison(g):
        calls.append(1)
        return g * math.nan if len(calls) == at + 1 else g

    return next(m.net.parameters()).register_hook(poison).remove


@pytest.mark.parametrize(
    "how, at, schedule",
    [
        ("loss", 3, "joint"),
        ("update", 3, "joint"),
        ("loss", 0, "joint"),
        ("loss", 3, "alternating"),
    ],
)
def test_a_divergence_rewinds_the_batch_stream_with_the_weights(how, at, schedule):
    """docs/concepts.md ("Models"): after a divergence at step k the model holds the weights
    step k - 1 started from. The batch stream was not rewound with them: the draws of the
    undone steps were spent, so fitting on drew other batches than after a fit that stopped
    cleanly at step k - 1. Now it is where step max(k - 1, 0) began."""
    data = linear_map(n_train=4, n_cal=0, n_test=0, n_points=40, seed=0)
    m = MetaFlowMatching(data, **TINY_MFM, seed=0, schedule=schedule)
    undo = _diverge_at(m, how, at)
    res = m.fit(steps=8, progress=False)
    undo()
    assert res.message.startswith(f"diverged at step {at} "), res.message
    kept = max(at - 1, 0)
    assert m.steps_done == kept
    clean = MetaFlowMatching(data, **TINY_MFM, seed=0, schedule=schedule)
    if kept:
        clean.fit(steps=kept, progress=False)
        assert torch.equal(m._train_gen.get_state(), clean._train_gen.get_state())
    a, b = m.fit(steps=3, progress=False), clean.fit(steps=3, progress=False)
    assert a.loss_history == b.loss_history
    assert torch.equal(m._train_gen.get_state(), clean._train_gen.get_state())
    assert all(torch.equal(x, y) for x, y in zip(m.state().values(), clean.state().values()))


def test_an_ensemble_member_that_diverged_catches_up_on_the_clean_stream():
    """A member that diverged at step 3 keeps 2 steps; the next ensemble fit brings it level
    (8 more steps) drawing the batches a lone model of its seed draws after 2 clean steps."""
    from bayesphys.meta_fm import MFMEnsemble

    data = linear_map(n_train=4, n_cal=0, n_test=0, n_points=40, seed=0)
    ens = MFMEnsemble(data, members=2, seed=0, **TINY_MFM)
    undo = _diverge_at(ens.models[1], "loss", 3)
    res = ens.fit(steps=8, progress=False)
    undo()
    assert "diverged at step 3" in res.message and ens.models[1].steps_done == 2
    ens.fit(steps=2, progress=False)
    lone = MetaFlowMatching(data, **TINY_MFM, seed=1)  # member 1's seed
    lone.fit(steps=2, progress=False)
    lone.fit(steps=8, progress=False)
    m = ens.models[1]
    assert m.steps_done == lone.steps_done == 10
    assert all(torch.equal(x, y) for x, y in zip(m.state().values(), lone.state().values()))


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_an_interrupt_before_the_update_rewinds_the_batch_stream(exc):
    """An interrupt (or an error) in step 3 before its update left the weights of 3 completed
    steps but the stream past step 3's draws, so fitting on drew other batches than after a
    fit of 3 clean steps. Now the stream is back where step 3 began."""
    data = linear_map(n_train=4, n_cal=0, n_test=0, n_points=40, seed=0)
    m = MetaFlowMatching(data, **TINY_MFM, seed=0)
    orig, calls = m._loss, []

    def interrupted(*a, **k):  # after step 3's batch was drawn, before its update
        calls.append(1)
        if len(calls) == 4:
            raise exc("stop")
        return orig(*a, **k)

    m._loss = interrupted
    with pytest.raises(exc, match="stop"):
        m.fit(steps=8, progress=False)
    del m._loss
    assert m.steps_done == 3
    clean = MetaFlowMatching(data, **TINY_MFM, seed=0)
    clean.fit(steps=3, progress=False)
    assert torch.equal(m._train_gen.get_state(), clean._train_gen.get_state())
    a, b = m.fit(steps=3, progress=False), clean.fit(steps=3, progress=False)
    assert a.loss_history == b.loss_history
    assert all(torch.equal(x, y) for x, y in zip(m.state().values(), clean.state().values()))
