"""Meta Flow Matching on a user's own populations: splits held as tensors, and predictions
under a treatment that no training pair carried."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble, population_metrics
from bayesphys.problems.populations import PopulationPairs
from tests.tiny_models import TINY_MFM

UNTRAINED = r"treatment \[2\] never occurred in the training pairs"


def _screen(splits=None) -> PopulationPairs:
    """Three source populations of different sizes in d = 3 (float64, as read from a user's
    arrays), each under treatments 0 and 1 in training; treatment 2 is held out of it."""
    rng = np.random.default_rng(0)
    src, tgt, tr, sid = [], [], [], []
    for p, n in enumerate((20, 30, 24)):
        s = torch.as_tensor(rng.normal(size=(n, 3)))
        for k in range(3):
            src.append(s)
            tgt.append(s + (k + 1.0))
            tr.append(k)
            sid.append(p)
    train = [i for i in range(9) if tr[i] != 2]
    return PopulationPairs(
        name="screen",
        source=src,
        target=tgt,
        source_id=torch.tensor(sid),
        splits=splits or {"train": train, "test": [2, 5, 8]},
        paired=False,
        treatment=torch.tensor(tr),
        num_treatments=3,
    )


def _recorded(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in rec]


def test_splits_held_as_a_tensor_or_array_select_their_pairs():
    """A split given as torch.tensor([...]) failed in subset() with torch's "too many indices
    for tensor of dimension 1", naming nothing of the user's."""
    ref = _screen().subset("train")
    for as_type in (torch.tensor, np.array):
        data = _screen({"train": as_type([0, 1, 3, 4, 6, 7]), "test": as_type([2, 5, 8])})
        train = data.subset("train")
        assert train.same_populations(ref)
        assert train.source_id.tolist() == [0, 0, 1, 1, 2, 2]
        model = MetaFlowMatching(data, seed=0, **TINY_MFM)
        model.fit(steps=1, progress=False)
        assert model.steps_done == 1


def test_a_split_of_bad_indices_is_refused_naming_it():
    for split, err, match in (
        ([0, 9], ValueError, r"splits\['train'\]: expected pair indices in \[0, 9\), .*\[9\]"),
        ([0, -1], ValueError, r"splits\['train'\]\[1\]"),
        ([0, 1.5], TypeError, r"splits\['train'\]\[1\]"),
        (torch.tensor(3), TypeError, r"splits\['train'\]: expected a sequence of ints"),
    ):
        data = _screen({"train": split})
        with pytest.raises(err, match=match):
            data.subset("train")


@pytest.mark.filterwarnings("ignore:.*fewer than config.points")
def test_predicting_under_a_treatment_not_trained_on_warns():
    """Treatment 2 is in the data's labelling (num_treatments=3) but in no training pair: the
    field's weights for its one-hot never received a gradient, and its prediction came back
    from their initial values without a word."""
    data = _screen()
    test = data.subset("test")
    for method in ("MFM", "FM", "CGFM"):
        model = MetaFlowMatching(data, method=method, seed=0, **TINY_MFM)
        model.fit(steps=2, progress=False)
        got = _recorded(lambda m=model: m.predict(test.source, [0, 1, 2]))
        assert sum("never occurred in the training pairs" in w for w in got) == 1, got
        assert any("MetaFlowMatching.predict: treatment [2]" in w for w in got)
        # trained treatments predict as before, without the warning
        assert not _recorded(lambda m=model: m.predict(test.source, [0, 1, 1]))


@pytest.mark.filterwarnings("ignore:.*fewer than config.points")
def test_posterior_ensemble_and_a_loaded_model_warn_once(tmp_path):
    data = _screen()
    same = [torch.randn(20, 3, dtype=torch.float64) for _ in range(2)]
    model = MetaFlowMatching(data, seed=0, **TINY_MFM)
    model.fit(steps=2, progress=False)
    with pytest.warns(UserWarning, match=UNTRAINED) as rec:
        model.posterior(same, [1, 2], num_samples=3)
    assert sum("never occurred" in str(w.message) for w in rec) == 1  # not once per draw
    ens = MFMEnsemble(data, members=2, seed=0, **TINY_MFM)
    ens.fit(steps=2, progress=False)
    for call in (
        lambda: ens.posterior(same, [1, 2], num_samples=2),
        lambda: ens.predict_members(same, [1, 2]),
    ):
        got = _recorded(call)
        assert sum("never occurred" in w for w in got) == 1, got  # not once per member
    model.save(tmp_path / "m.pt")
    loaded = MetaFlowMatching.load(tmp_path / "m.pt")
    with pytest.warns(UserWarning, match=UNTRAINED):
        loaded.predict(same, [0, 2])
    ens.save(tmp_path / "e.pt")
    with pytest.warns(UserWarning, match=UNTRAINED):
        MFMEnsemble.load(tmp_path / "e.pt").predict_members(same, [0, 2])


@pytest.mark.filterwarnings("ignore:.*fewer than config.points")
def test_fitting_on_the_held_out_treatment_silences_the_warning(tmp_path):
    data = _screen()
    model = MetaFlowMatching(data, seed=0, **TINY_MFM)
    model.fit(steps=1, progress=False)
    model.fit(data.subset("test"), steps=1, progress=False)  # pairs of treatment 2
    assert not _recorded(lambda: model.predict(data.subset("test").source, [0, 1, 2]))
    # a model that has trained no step warns that it is untrained, not per treatment
    fresh = MetaFlowMatching(data, seed=0, **TINY_MFM)
    got = _recorded(lambda: fresh.predict(data.subset("test").source, [0, 1, 2]))
    assert any("has not been trained" in w for w in got)
    assert not any("never occurred" in w for w in got)
    # a checkpoint written before the treatments were recorded: not known, no warning
    model.save(tmp_path / "m.pt")
    ck = torch.load(tmp_path / "m.pt", weights_only=False)
    del ck["config"]["trained_treatments"]
    torch.save(ck, tmp_path / "old.pt")
    old = MetaFlowMatching.load(tmp_path / "old.pt")
    assert not _recorded(lambda: old.predict(data.subset("test").source, [0, 1, 2]))


def test_features_as_numpy_arrays_are_refused_as_such():
    """A per-point feature array of the right shape was refused as 'expected shape (40, 2),
    received ndarray', and one [n, f] array for one population was read as n populations'."""
    rng = np.random.default_rng(1)
    src = [torch.as_tensor(rng.normal(size=(n, 2))) for n in (20, 24, 22)]
    feats = [torch.nn.functional.one_hot(torch.arange(n) % 2, 2).double() for n in (20, 24, 22)]
    data = PopulationPairs(
        name="typed",
        source=src,
        target=[s + 1.0 for s in src],
        source_id=torch.arange(3),
        splits={"train": [0, 1], "test": [2]},
        paired=True,
        source_features=feats,
    )
    model = MetaFlowMatching(data, seed=0, **TINY_MFM)
    model.fit(steps=1, progress=False)
    hint = r"received numpy\.ndarray \(convert it with torch\.as_tensor\(x\)\)"
    with pytest.raises(
        TypeError, match=rf"features\[0\]: expected a torch\.Tensor of shape \(22, 2\), {hint}"
    ):
        model.predict([src[2]], features=[feats[2].numpy()])
    with pytest.raises(TypeError, match=rf"features: expected a tensor \[n, f\] .*{hint}"):
        model.predict([src[2]], features=feats[2].numpy())
    with pytest.raises(
        TypeError, match=rf"pred: expected a torch\.Tensor of points \[n, d\], {hint}"
    ):
        population_metrics(src[0].numpy(), src[1])
    ref = model.predict([src[2]], features=[feats[2]])[0]
    assert torch.equal(model.predict([src[2]], features=feats[2])[0], ref)


def test_a_dataframe_is_refused_with_a_conversion_that_works():
    """The hint for a DataFrame was torch.as_tensor(x), which raises KeyError: 2 on one."""
    import pandas as pd

    frame = pd.DataFrame(np.random.default_rng(2).normal(size=(20, 2)))
    with pytest.raises(TypeError, match=r"received pandas\.DataFrame") as err:
        population_metrics(frame, torch.zeros(4, 2))
    assert "torch.tensor(x.to_numpy())" in str(err.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the conversion named is taken without a warning
        converted = torch.tensor(frame.to_numpy())
    assert population_metrics(converted, torch.zeros(4, 2))["w2"] > 0
    model = MetaFlowMatching(dim=2, seed=0, **TINY_MFM)
    # refused before the untrained warning (a call that fails does not also warn)
    with pytest.raises(TypeError, match=r"sources: .*received pandas\.DataFrame") as err:
        model.predict(frame)
    assert "torch.tensor(x.to_numpy())" in str(err.value)


@pytest.mark.filterwarnings("ignore:.*fewer than config.points")
def test_a_model_pickled_without_the_record_predicts_and_fits(tmp_path):
    """A model object pickled by an earlier release has no record of its treatments."""
    data = _screen()
    model = MetaFlowMatching(data, seed=0, **TINY_MFM)
    model.fit(steps=1, progress=False)
    del model._trained_treatments
    assert not _recorded(lambda: model.predict(data.subset("test").source, [0, 1, 2]))
    model.fit(steps=1, progress=False)
    assert model.steps_done == 2
    model.save(tmp_path / "m.pt")  # saved as not known, loaded as not known
    loaded = MetaFlowMatching.load(tmp_path / "m.pt")
    assert not _recorded(lambda: loaded.predict(data.subset("test").source, [0, 1, 2]))
