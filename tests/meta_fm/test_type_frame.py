"""Per-cell-type frame of the field (``MFMConfig.type_frame``)."""

import dataclasses
import warnings

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMConfig
from bayesphys.meta_fm._train import batch_loss
from bayesphys.meta_fm._type_frame import type_centres
from bayesphys.meta_fm.coupling import cfm_loss, couple
from bayesphys.problems.populations import PopulationPairs, patient_screen
from tests.tiny_models import SMALL_MFM

SMALL = dict(SMALL_MFM, points=16, knn_k=5)


def _screen() -> PopulationPairs:
    return patient_screen(
        n_patients=4, n_treatments=2, n_replicates=3, n_cells=30, dim=3, dtype=torch.float64
    )


def _fit(d: PopulationPairs, method: str, steps: int = 4, **kw) -> MetaFlowMatching:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # populations smaller than points
        m = MetaFlowMatching(
            d, method=method, type_frame=True, seed=0, dtype=torch.float64, **(SMALL | kw)
        )
        m.fit(steps=steps, progress=False)
    return m


def test_type_centres_are_the_means_of_each_points_type():
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0], [10.0, 10.0], [1.0, 2.0]])
    types = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    want = torch.tensor([[1.0, 2.0], [1.0, 2.0], [10.0, 10.0], [1.0, 2.0]])
    torch.testing.assert_close(type_centres(x, types), want, rtol=0, atol=0)


def test_fm_is_equivariant_to_a_translation_of_one_type():
    d = _screen()
    m = _fit(d, "FM")
    test = d.subset("test")
    src, feats, tr = test.source[:2], test.source_features[:2], test.treatment[:2]
    a = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    a_type = [f[:, 0] == 1 for f in feats]  # type-A points (column 0 of the one-hot)
    assert all(bool(k.any()) and bool((~k).any()) for k in a_type)
    moved = [s + a * k[:, None] for s, k in zip(src, a_type)]
    base = m.predict(src, tr, features=feats)
    out = m.predict(moved, tr, features=feats)
    for pb, po, k in zip(base, out, a_type):
        torch.testing.assert_close(po[k], pb[k] + a, rtol=0, atol=1e-10)
        torch.testing.assert_close(po[~k], pb[~k], rtol=0, atol=1e-10)
    # a field in absolute coordinates is not: the moved points cross another part of it
    raw = MetaFlowMatching(d, method="FM", seed=0, dtype=torch.float64, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        raw.fit(steps=4, progress=False)
    rb, ro = raw.predict(src, tr), raw.predict(moved, tr)
    assert max(float((o[k] - b[k] - a).abs().max()) for b, o, k in zip(rb, ro, a_type)) > 1e-4


@pytest.mark.parametrize("method", ["FM", "CGFM", "MFM"])
def test_every_method_trains_and_predicts_in_the_type_frame(method):
    d = _screen()
    m = _fit(d, method, steps=6)
    assert m.fit_result.steps == 6 and all(torch.isfinite(torch.tensor(m.fit_result.loss_history)))
    f = d.source_features[0].shape[-1]
    plain = MetaFlowMatching(d, method=method, seed=0, **SMALL)
    # the field's input grows by the f one-hot types
    assert m.net["field"].net[0].in_features == plain.net["field"].net[0].in_features + f
    test = d.subset("test")
    pred = m.predict(test.source, test.treatment, features=test.source_features)
    assert [p.shape for p in pred] == [s.shape for s in test.source]
    assert all(bool(torch.isfinite(p).all()) for p in pred)
    # batch=True integrates equal-size populations together in their own frames
    both = m.predict(test.source, test.treatment, features=test.source_features, batch=True)
    for p, q in zip(pred, both):
        torch.testing.assert_close(q, p, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", ["FM", "MFM"])
def test_type_frame_round_trips(tmp_path, method):
    d = _screen()
    m = _fit(d, method)
    back = MetaFlowMatching.load(m.save(tmp_path / "m.pt"))
    assert back.config.type_frame is True
    assert back.config.node_features == d.source_features[0].shape[-1]
    assert back.net["field"].features == m.net["field"].features
    test = d.subset("test")
    args = (test.source, test.treatment)
    kw = dict(features=test.source_features, seed=3)
    for a, b in zip(m.predict(*args, **kw), back.predict(*args, **kw)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_couples_raw_points_before_shifting_them():
    """The minibatch OT pairs are those of the raw points, and the target velocity of a pair
    is its raw ``x1 - x0`` (shifting first by per-type centres would change the pairs)."""

    class Zero(torch.nn.Module):
        def forward(self, t, x, cond=None, features=None):
            assert features is not None and features.shape[:-1] == x.shape[:-1]
            return torch.zeros_like(x)

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 12, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(2, 12, 2, generator=g, dtype=torch.float64) + 3.0
    types = torch.nn.functional.one_hot(torch.arange(12) % 2, 2).double().expand(2, 12, 2)
    ctr = torch.stack([type_centres(a, types[0]) for a in x0])
    kw = dict(device=torch.device("cpu"), dtype=torch.float64)
    got = batch_loss(Zero(), x0, x1, None, torch.Generator().manual_seed(5), "ot", ctr, types, **kw)
    a, b = couple(x0, x1, "ot", torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, cfm_loss(torch.zeros_like(a), b - a), rtol=1e-12, atol=0)


def test_bad_settings_and_features_are_refused():
    d = _screen()
    with pytest.raises(ValueError, match="type_frame.*centered"):
        MFMConfig(type_frame=True, centered=True)
    with pytest.raises(ValueError, match="type_frame: expected True or False"):
        MFMConfig(type_frame="yes")
    with pytest.raises(ValueError, match="node_features.*type_frame"):
        MFMConfig(type_frame=True, node_features=0)
    assert MFMConfig().type_frame is False
    bare = dataclasses.replace(d, source_features=None)
    with pytest.raises(ValueError, match="source_features.*one-hot"):
        MetaFlowMatching(bare, method="FM", type_frame=True, **SMALL)
    with pytest.raises(ValueError, match="node_features"):
        MetaFlowMatching(dim=3, method="FM", type_frame=True, **SMALL)
    soft = dataclasses.replace(
        d, source_features=[0.5 * torch.ones_like(f) for f in d.source_features]
    )
    with pytest.raises(ValueError, match=r"source_features\[0\].*one-hot.*row 0"):
        MetaFlowMatching(soft, method="CGFM", type_frame=True, **SMALL)
    m = _fit(d, "FM", steps=1)
    test = d.subset("test")
    with pytest.raises(ValueError, match="features: this model reads 2 features"):
        m.predict(test.source, test.treatment)
    with pytest.raises(ValueError, match=r"features\[0\]: expected shape"):
        m.predict(test.source, test.treatment, features=[f[:, :1] for f in test.source_features])
    two = [f.clone() for f in test.source_features]
    two[1][4] = 1.0  # a point of both types
    with pytest.raises(ValueError, match=r"features\[1\].*one-hot.*row 4"):
        m.predict(test.source, test.treatment, features=two)
    with pytest.raises(ValueError, match="features: this field reads no point features"):
        MetaFlowMatching(d, method="FM", **SMALL).net["field"](
            0.0, torch.zeros(4, 3), features=torch.zeros(4, 2)
        )


@pytest.mark.parametrize("method", ["FM", "MFM"])
def test_an_ensemble_fits_samples_and_round_trips_in_the_type_frame(tmp_path, method):
    from bayesphys.meta_fm import MFMEnsemble

    d = _screen()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # populations smaller than points
        ens = MFMEnsemble(
            d, members=2, method=method, type_frame=True, seed=0, dtype=torch.float64, **SMALL
        )
        res = ens.fit(steps=3, progress=False)
    assert res.steps == 3 and [m.steps_done for m in ens.models] == [3, 3], res.message
    assert all(m.config.type_frame for m in ens.models)
    test = d.subset("test")
    src, tr, feats = test.source[:3], test.treatment[:3], test.source_features[:3]
    n = src[0].shape[0]
    assert all(s.shape[0] == n for s in src)
    post = ens.posterior(src, tr, features=feats, num_samples=2, seed=1)
    assert post.draws.shape == (2, 2, 3, n, 3)
    assert bool(torch.isfinite(post.draws).all())
    back = MFMEnsemble.load(ens.save(tmp_path / "ens.pt"))
    assert all(m.config.type_frame for m in back.models)
    again = back.posterior(src, tr, features=feats, num_samples=2, seed=1)
    assert torch.equal(again.draws, post.draws)
    # the type frame is read: without the features the members refuse the populations
    with pytest.raises(ValueError, match="features"):
        ens.posterior(src, tr, num_samples=2)


def test_uncertainty_refuses_non_one_hot_test_features_before_predicting(monkeypatch):
    """A type-frame ensemble's ``uncertainty`` checked ``test`` features for their shape only:
    rows that are not one-hot were refused when ``test``'s turn to predict came, after the
    (slow) predictions of ``cal``. Now they are refused before any prediction."""
    from bayesphys.meta_fm import MFMEnsemble

    d = _screen()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # populations smaller than points
        ens = MFMEnsemble(d, members=2, method="FM", type_frame=True, seed=0, **SMALL)
        ens.fit(steps=1, progress=False)
    cal, test = d.subset("test"), d.subset("test")
    bad = [f.clone() for f in test.source_features]
    bad[1][2] = 0.5  # row 2 of population 1: not one-hot
    test = dataclasses.replace(test, source_features=bad)
    predicted = []
    monkeypatch.setattr(ens, "predict_members", lambda *a, **k: predicted.append(1) or [])
    with pytest.raises(ValueError, match=r"test\.source_features\[1\].*one-hot.*row 2"):
        ens.uncertainty(cal, test)
    assert predicted == []
