"""Bad input to the public meta_fm API and the population generators fails early, with an
error that names the argument; settings that would be silently ignored are refused."""

import dataclasses
import math
import random
import warnings

import numpy as np
import pytest
import torch

from bayesphys import SamplePosterior
from bayesphys.meta_fm import (
    DenseGCN,
    MetaFlowMatching,
    MFMConfig,
    MFMEnsemble,
    VectorField,
    cfm_loss,
    conformal_radius,
    couple,
    ensemble_spread,
    floor_prediction,
    full_ot_plans,
    gaussian_w2,
    identity_prediction,
    integrate,
    interpolate,
    knn_adjacency,
    normalized_adjacency,
    ot_pairing,
    pooled_prediction,
    population_metrics,
    sample_plan_partners,
    sampling_noise_w2,
    time_embedding,
    w2_inference_data,
)
from bayesphys.problems.populations import (
    PopulationPairs,
    interacting_particles,
    letter_points,
    letters,
    linear_map,
    make_population_problem,
    particle_velocity,
    patient_screen,
    redraw_targets,
)
from tests.tiny_models import TINY_MFM

# most models here are untrained (the input checks do not need trained ones): the untrained
# warning of their predictions is not what these tests check
pytestmark = pytest.mark.filterwarnings("ignore:.*the model has not been trained")


def _pairs(n=4, **kw):
    return linear_map(n_train=n, n_cal=2, n_test=2, n_points=20, **kw)


def _screen():
    return patient_screen(n_patients=4, n_treatments=2, n_replicates=1, n_cells=24, dim=3)


# ----------------------------------------------------------------------------- config
def test_config_refuses_mfm_only_settings_for_other_methods():
    with pytest.raises(ValueError, match="^node_features: only the MFM"):
        MFMConfig(method="FM", node_features=2)  # was kept and then demanded at fit
    with pytest.raises(ValueError, match="^schedule: 'alternating'"):
        MFMConfig(method="CGFM", schedule="alternating")  # was silently a joint fit
    cfg = MFMConfig(schedule="alternating")
    with pytest.raises(ValueError, match="^schedule: "):
        cfg.method = "FM"
    assert cfg.method == "MFM"
    assert MFMConfig(method="FM", node_features=0).node_features == 0
    with pytest.raises(TypeError, match="^config: expected a dict"):
        MFMConfig.from_dict("width")


# ----------------------------------------------------------------------------- construction
def test_model_construction_arguments():
    d = _pairs()
    with pytest.raises(TypeError, match="^config: expected an MFMConfig"):
        MetaFlowMatching(d, config={"width": 8})  # was AttributeError on dict
    with pytest.raises(ValueError, match="^dim: the data set it to 2"):
        MetaFlowMatching(d, dim=3, **TINY_MFM)  # was silently replaced by the data's
    with pytest.raises(ValueError, match="^num_treatments: "):
        MetaFlowMatching(d, num_treatments=2, **TINY_MFM)
    with pytest.raises(ValueError, match="^condition_ids: the data set it"):
        MetaFlowMatching(d, method="CGFM", condition_ids=[7, 8], **TINY_MFM)
    m = MetaFlowMatching(d, method="CGFM", dim=2, condition_ids=[3, 1, 0, 2], **TINY_MFM)
    assert m.condition_ids == [0, 1, 2, 3]  # agreeing values are fine
    with pytest.raises(ValueError, match="^condition_ids: expected distinct ids"):
        MetaFlowMatching(dim=2, method="CGFM", condition_ids=[1, 1, 2], **TINY_MFM)
    with pytest.raises(TypeError, match=r"^condition_ids\[1\]: "):
        MetaFlowMatching(dim=2, method="CGFM", condition_ids=[1, 2.5], **TINY_MFM)  # was int(2.5)
    with pytest.raises(TypeError, match="^condition_ids: expected a sequence"):
        MetaFlowMatching(dim=2, method="CGFM", condition_ids=5, **TINY_MFM)


def test_training_split_and_splits_are_checked():
    d = _pairs()
    empty_train = dataclasses.replace(d, splits={**d.splits, "train": []})
    with pytest.raises(ValueError, match=r"^data.splits\['train'\]: expected at least one"):
        MetaFlowMatching(empty_train, **TINY_MFM)  # was IndexError in PopulationPairs.dim
    bad = dataclasses.replace(d, splits={**d.splits, "test": [6, 99]})
    with pytest.raises(ValueError, match=r"^data.splits\['test'\]: expected pair indices"):
        MetaFlowMatching(bad, **TINY_MFM)
    m = MetaFlowMatching(dim=2, **TINY_MFM)
    with pytest.raises(ValueError, match=r"^data.splits\['train'\]: "):
        m.fit(empty_train, steps=1, progress=False)


def test_index_coupling_needs_equal_sizes():
    d = _pairs(n=3)
    short = dataclasses.replace(d, paired=False, target=[t[:10] for t in d.target])
    with pytest.raises(ValueError, match="^coupling: 'index' pairs point j"):
        MetaFlowMatching(short, coupling="index", **TINY_MFM)  # was IndexError at a fit step
    MetaFlowMatching(short, coupling="ot", **TINY_MFM)


def test_index_coupling_refusal_names_the_users_pair():
    """The training split is pairs 1 and 2 of the user's data: the uneven pair is named
    ``data.source[2]``, not by its place in the split (1), at construction and in fit(data)."""
    g = torch.Generator().manual_seed(0)
    data = PopulationPairs(
        name="toy",
        source=[torch.randn(n, 2, generator=g) for n in (4, 4, 6)],
        target=[torch.randn(n, 2, generator=g) for n in (4, 4, 5)],
        source_id=torch.arange(3),
        splits={"test": [0], "train": [1, 2]},
        paired=False,
    )
    kw = dict(TINY_MFM, points=4, method="FM", coupling="index", seed=0)
    named = r"but data\.source\[2\] has 6 points and data\.target\[2\] 5"
    with pytest.raises(ValueError, match=f"^coupling: 'index' .* {named}"):
        MetaFlowMatching(data, **kw)
    m = MetaFlowMatching(dataclasses.replace(data, splits={"train": [0, 1]}), **kw)
    with pytest.raises(ValueError, match=f"^coupling: 'index' .* {named}"):
        m.fit(data, steps=1, progress=False)
    assert m.steps_done == 0


def _malformed(d):
    """Pairs ``d`` with one field broken each: (label, data, error, message)."""
    r = dataclasses.replace
    return [
        (
            "one target short",
            r(d, target=d.target[:-1]),
            ValueError,
            r"^data: expected as many targets as sources, received 8 and 7",
        ),
        (
            "paired, unequal sizes",
            r(d, target=[t[:10] for t in d.target]),
            ValueError,
            r"^data\.target\[0\]: paired data need equal sizes, received 20 and 10",
        ),
        (
            "splits not a dict",
            r(d, splits=[0, 1]),
            TypeError,
            r"^data\.splits: expected a dict of split name -> pair indices, received list",
        ),
        (
            "a bool index",
            r(d, splits={**d.splits, "test": [True]}),
            ValueError,
            r"^data\.splits\['test'\]: expected pair indices in \[0, 8\), received \[True\]",
        ),
        (
            "a str index",
            r(d, splits={**d.splits, "test": ["6"]}),
            ValueError,
            r"^data\.splits\['test'\]: expected pair indices .*received \['6'\]",
        ),
    ]


@pytest.mark.parametrize("case", range(5))
def test_malformed_pairs_are_refused_naming_the_field(case):
    label, data, error, msg = _malformed(_pairs())[case]
    with pytest.raises(error, match=msg):
        MetaFlowMatching(data, **TINY_MFM)
    with pytest.raises(error, match=msg):  # and by fit(data) of a model built without data
        MetaFlowMatching(dim=2, **TINY_MFM).fit(data, steps=1, progress=False)


def test_split_indices_of_any_integer_type_are_accepted():
    d = _pairs()
    np_idx = dataclasses.replace(d, splits={**d.splits, "train": [np.int64(i) for i in range(4)]})
    m = MetaFlowMatching(np_idx, seed=0, **TINY_MFM)
    assert m.fit(steps=1, progress=False).steps == 1


def test_treatments_of_another_count_are_refused():
    s = _screen()
    short = dataclasses.replace(s, treatment=s.treatment[:-1])
    with pytest.raises(ValueError, match=r"^data\.treatment: expected 8 entries, received 7"):
        MetaFlowMatching(short, **TINY_MFM)


def test_point_features_are_read_as_a_stack_or_a_list_one_per_population():
    s = _screen()
    m = MetaFlowMatching(s, seed=0, **TINY_MFM)
    t = s.subset("test")
    listed = m.predict(t.source, t.treatment, features=t.source_features, seed=0)
    stacked = m.predict(t.source, t.treatment, features=torch.stack(t.source_features), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(listed, stacked))
    one = m.predict(t.source[0], t.treatment[:1], features=t.source_features[0], seed=0)
    assert len(one) == 1 and torch.equal(one[0], listed[0])  # one [n, f] for one [n, d]
    with pytest.raises(
        ValueError, match=r"^features: expected one feature tensor per population \(4\), received 1"
    ):
        m.predict(t.source, t.treatment, features=t.source_features[:1])


def test_bad_source_ids_and_features_name_what_was_received():
    """The messages said what was expected only; they name what the data hold too."""
    d = _pairs()
    r = dataclasses.replace
    for data, got in (
        (r(d, source_id=d.source_id.tolist()), "received list"),
        (r(d, source_id=d.source_id[:-1]), r"received shape \(7,\)"),
        (r(d, source_id=d.source_id[:, None]), r"received shape \(8, 1\)"),
    ):
        with pytest.raises(
            ValueError,
            match=rf"^data\.source_id: expected a tensor \[8\] of one id per pair, {got}",
        ):
            MetaFlowMatching(data, **TINY_MFM)
    for feats, got in (
        ([torch.zeros(20, 0) for _ in d.source], r"received shape \(20, 0\)"),
        ([torch.zeros(20) for _ in d.source], r"received shape \(20,\)"),
        ([], "received an empty list"),
        ([[0.0]] * 8, "received list"),
    ):
        with pytest.raises(
            ValueError,
            match=rf"^data\.source_features: expected tensors \[n_i, f\] with f >= 1, {got}",
        ):
            MetaFlowMatching(r(d, source_features=feats), **TINY_MFM)


def test_data_without_treatments_for_a_model_built_with_them_says_what_to_pass():
    s = _screen()
    m = MetaFlowMatching(dim=3, num_treatments=2, method="FM", coupling="ot", **TINY_MFM)
    with pytest.raises(
        ValueError,
        match=r"^data\.treatment: this model was built with 2 treatments; expected one index "
        r"in \[0, 2\) per pair, received None",
    ):
        m.fit(dataclasses.replace(s, treatment=None), steps=1, progress=False)
    assert m.steps_done == 0


def test_no_dimension_and_cgfm_without_ids_are_refused_at_construction():
    with pytest.raises(ValueError, match="^dim: required when no data is given"):
        MetaFlowMatching(**TINY_MFM)
    with pytest.raises(ValueError, match=r"^condition_ids: CGFM needs the training population ids"):
        MetaFlowMatching(dim=2, method="CGFM", **TINY_MFM)


# ----------------------------------------------------------------------------- fit
def test_fit_refuses_data_it_would_silently_mistrain_on():
    scr = _screen()
    m = MetaFlowMatching(d := _pairs(), **TINY_MFM)
    with pytest.raises(TypeError, match="^progress: "):
        m.fit(steps=1, progress="no")
    # auto coupling resolved to 'index' for a model built without data; unpaired data need OT
    with pytest.raises(ValueError, match="^coupling: 'auto' resolved to 'index'"):
        MetaFlowMatching(dim=3, num_treatments=2, method="FM", **TINY_MFM).fit(
            scr, steps=1, progress=False
        )
    # treatments given, model built without them: they were ignored
    with pytest.raises(ValueError, match="^data.treatment: this model was built without"):
        MetaFlowMatching(dim=3, method="FM", coupling="ot", **TINY_MFM).fit(
            scr, steps=1, progress=False
        )
    # more treatments than the model has: refused before the first step, naming the data
    with pytest.raises(ValueError, match=r"^data.treatment: expected indices in \[0, 1\)"):
        MetaFlowMatching(dim=3, num_treatments=1, method="FM", coupling="ot", **TINY_MFM).fit(
            scr, steps=1, progress=False
        )
    # CGFM: ids it has no one-hot for were trained with the average one-hot
    cg = MetaFlowMatching(dim=2, method="CGFM", condition_ids=[100, 101], **TINY_MFM)
    with pytest.raises(ValueError, match="^data.source_id: CGFM has one-hots for ids"):
        cg.fit(d, steps=1, progress=False)


def test_interrupted_fit_leaves_a_model_ready_to_predict():
    d = _pairs()
    m = MetaFlowMatching(d, seed=0, **TINY_MFM)
    batch, calls = m._batch, [0]

    def interrupted(*args, **kw):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return batch(*args, **kw)

    m._batch = interrupted
    with pytest.raises(KeyboardInterrupt):
        m.fit(steps=10, progress=False)
    assert not m.net.training  # was left in training mode
    out = m.predict(d.subset("test").source)
    assert all(bool(torch.isfinite(p).all()) for p in out)
    del m._batch
    assert m.fit(steps=2, progress=False).steps == 2


def test_diverged_fit_restores_a_usable_model():
    d = _pairs()
    m = MetaFlowMatching(d, seed=0, lr=1e30, gnn_lr=1e30, **TINY_MFM)
    res = m.fit(steps=20, progress=False)
    assert not res.converged and res.message.startswith("diverged at step")
    assert not m.net.training
    assert all(bool(torch.isfinite(p).all()) for p in m.predict(d.subset("test").source))


# ----------------------------------------------------------------------------- predict
def test_predict_solver_steps_treatment_and_ids():
    d = _pairs()
    m = MetaFlowMatching(d, **TINY_MFM)
    src = d.subset("test").source
    with pytest.raises(ValueError, match="^solver: "):
        m.predict(src, solver="euler")  # was named 'method', after the embedding
    with pytest.raises(ValueError, match="^solver: "):
        m.predict(src, solver="")  # was the config's solver
    with pytest.raises(ValueError, match="^steps: only the fixed-step 'rk4'"):
        m.predict(src, solver="dopri5", steps=3)  # steps were ignored
    with pytest.raises(ValueError, match="^steps: "):
        MetaFlowMatching(d, solver="dopri5", **TINY_MFM).predict(src, steps=3)
    with pytest.raises(ValueError, match="^treatment: this model was built without"):
        m.predict(src, [0, 1])  # was ignored
    with pytest.raises(ValueError, match="^source_ids: only CGFM"):
        m.predict(src, source_ids=[0, 1])  # was ignored
    cg = MetaFlowMatching(d, method="CGFM", **TINY_MFM)
    with pytest.raises(ValueError, match=r"^source_ids: expected one id per population \(2\)"):
        cg.predict(src, source_ids=[0, 1, 2])  # was IndexError
    with pytest.raises(ValueError, match="^source_ids: "):
        cg.predict(src, source_ids=[0])  # the second population got the average silently
    with pytest.raises(TypeError, match=r"^source_ids\[0\]: "):
        cg.predict(src, source_ids=[0.5, 1])
    a = cg.predict(src, source_ids=[0, None])
    b = cg.predict(src, source_ids=[0, 999])  # None and an unknown id: the average one-hot
    assert torch.equal(a[1], b[1])


def test_predict_reads_one_population_a_batch_or_a_list_and_refuses_others():
    d = _pairs()
    m = MetaFlowMatching(d, seed=0, **TINY_MFM)
    src = d.subset("test").source
    listed = m.predict(src, seed=0)
    assert torch.equal(m.predict(torch.stack(src), seed=0)[1], listed[1])  # [P, n, d]
    assert torch.equal(m.predict(src[0], seed=0)[0], listed[0])  # one [n, d]
    with pytest.raises(
        ValueError,
        match=r"^sources: expected a population \[n, d\] or populations \[P, n, d\], "
        r"received shape \(1, 2, 20, 2\)",
    ):
        m.predict(torch.stack(src)[None])
    with pytest.raises(
        TypeError, match=r"^sources\[0\]: expected a floating tensor, received torch.int64"
    ):
        m.predict(src[0].long())


def test_embed_and_ensemble_posterior_refuse_what_they_cannot_do():
    d = _pairs()
    pops = [torch.randn(20, 2), torch.randn(21, 2)]
    with pytest.raises(ValueError, match=r"^embed: only MFM models .*\(this is FM\)"):
        MetaFlowMatching(d, method="FM", **TINY_MFM).embed(pops)
    ens = MFMEnsemble(d, members=2, **TINY_MFM)
    with (
        pytest.warns(UserWarning, match="not been trained"),
        pytest.raises(
            ValueError, match=r"^x: posterior needs equal population sizes, received \[20, 21\]"
        ),
    ):
        ens.posterior(pops, num_samples=1)


def test_predict_refuses_non_integer_treatments():
    scr = _screen()
    m = MetaFlowMatching(scr, method="FM", **TINY_MFM)
    src = scr.subset("test").source[:2]
    with pytest.raises(ValueError, match=r"^treatment: expected integer indices in \[0, 2\)"):
        m.predict(src, torch.tensor([0.7, 1.2]))  # was truncated to [0, 1]
    with pytest.raises(ValueError, match="^treatment: expected integer"):
        m.predict(src, torch.tensor([math.nan, 0.0]))
    with pytest.raises(ValueError, match="^treatment: expected integer"):
        m.predict(src, torch.tensor([False, True]))  # was read as indices 0 and 1
    assert len(m.predict(src, [0, 1])) == 2


# ----------------------------------------------------------------------------- ensemble
def test_ensemble_models_argument():
    d = _pairs()
    m2, m3 = MetaFlowMatching(d, **TINY_MFM), MetaFlowMatching(dim=3, **TINY_MFM)
    twin = MetaFlowMatching(d, seed=1, **TINY_MFM)
    with pytest.raises(ValueError, match="^models: expected at least 2"):
        MFMEnsemble(models=[])  # was IndexError at posterior
    with pytest.raises(ValueError, match="^models: expected at least 2"):
        MFMEnsemble(models=[m2])
    with pytest.raises(TypeError, match=r"^models\[0\]: expected a MetaFlowMatching"):
        MFMEnsemble(models=[1, 2])
    with pytest.raises(TypeError, match="^models: expected a list"):
        MFMEnsemble(models=m2)
    with pytest.raises(ValueError, match=r"^models\[1\]: expected dim 2"):
        MFMEnsemble(models=[m2, m3])
    with pytest.raises(ValueError, match="^models: the members are already built; data"):
        MFMEnsemble(d, models=[m2, twin])  # data and settings were ignored
    with pytest.raises(ValueError, match="^models: .*width"):
        MFMEnsemble(models=[m2, twin], width=16)
    with pytest.raises(ValueError, match="^members: 2 models are given"):
        MFMEnsemble(models=[m2, twin], members=5)
    assert MFMEnsemble(models=(m2, twin), members=2).members == 2
    assert MFMEnsemble(d, **TINY_MFM).members == 3  # the default is unchanged
    with pytest.raises(TypeError, match="^progress: "):
        MFMEnsemble(models=[m2, twin]).fit(steps=0, progress=None)


def test_ensemble_fit_on_data_a_member_refuses_raises_the_members_error_named():
    """The ensemble's points check skips data its members refuse: the error is the member's
    own, with a note naming it, and no member has trained."""
    d = _pairs()
    ens = MFMEnsemble(d, members=2, **TINY_MFM)
    bad = dataclasses.replace(d, splits={**d.splits, "train": []})
    with pytest.raises(ValueError, match=r"^data.splits\['train'\]: expected at least one") as info:
        ens.fit(bad, steps=1, progress=False)
    assert any("member 0 of 2 failed; no member was fitted" in n for n in info.value.__notes__)
    assert [m.steps_done for m in ens.models] == [0, 0]


def test_ensemble_models_refuses_members_on_different_devices():
    """A member on another device was accepted; fit then trained the members before it and
    failed with torch's raw error on that member."""
    d = _pairs()
    m0, m1 = MetaFlowMatching(d, **TINY_MFM), MetaFlowMatching(d, seed=1, **TINY_MFM)
    m1.net.to(torch.device("meta"))  # no values: a device the CPU can stand in for
    m1.device = torch.device("meta")
    with pytest.raises(ValueError, match=r"^models\[1\]: expected device cpu .*received meta"):
        MFMEnsemble(models=[m0, m1])
    other = MetaFlowMatching(d, seed=2, **TINY_MFM)
    other.device = torch.device("cpu:0")  # the CPU under another name is one device
    assert MFMEnsemble(models=[m0, other]).device == torch.device("cpu")


def test_ensemble_uncertainty_checks_both_splits_before_predicting():
    d = _pairs()
    ens = MFMEnsemble(d, members=2, **TINY_MFM)

    def no_prediction(*a, **k):
        raise AssertionError("a prediction was made before the checks")

    ens.predict_members = no_prediction
    cal, test = d.subset("cal"), d.subset("test")
    with pytest.raises(TypeError, match="^cal: expected PopulationPairs"):
        ens.uncertainty(cal.source, test)  # was AttributeError
    three_d = linear_map(dim=3, n_train=2, n_cal=0, n_test=0, n_points=20)
    with pytest.raises(ValueError, match=r"^test.source\[0\]: expected dimension 2"):
        ens.uncertainty(cal, three_d)  # was named 'sources', after the cal predictions
    tiny = linear_map(n_train=2, n_cal=0, n_test=0, n_points=3)
    with pytest.raises(ValueError, match=r"^cal.source\[0\]: the aleatoric spread"):
        ens.uncertainty(tiny, test)  # was 'preds: expected populations of one size >= 4'
    with pytest.raises(TypeError, match="^normalized: "):
        ens.uncertainty(cal, test, normalized="no")  # was truthy
    with pytest.raises(TypeError, match="^aleatoric: "):
        ens.uncertainty(cal, test, aleatoric=1)
    treated = dataclasses.replace(test, treatment=torch.tensor([0, 1]), num_treatments=2)
    with pytest.raises(ValueError, match="^test.treatment: the members were built without"):
        ens.uncertainty(cal, treated)  # the treatments were ignored
    scr = _screen()
    ens3 = MFMEnsemble(scr, members=2, method="FM", **TINY_MFM)
    ens3.predict_members = no_prediction
    cal3 = scr.subset("cal")
    more = dataclasses.replace(scr.subset("test"), num_treatments=5)
    more.treatment = more.treatment + 3
    with pytest.raises(ValueError, match=r"^test.treatment: expected indices in \[0, 2\)"):
        ens3.uncertainty(cal3, more)  # was an error naming 'treatment' after the cal predictions
    with pytest.raises(ValueError, match="^cal.treatment: the members need one of 2"):
        ens3.uncertainty(dataclasses.replace(cal3, treatment=None), more)


def test_w2_inference_data_checks_the_posterior():
    draws = torch.randn(2, 2, 3, 10, 2)
    with pytest.raises(TypeError, match="^post: expected a SamplePosterior"):
        w2_inference_data(draws)  # was AttributeError
    with pytest.raises(ValueError, match=r"^post: expected draws \[chain, draw, P, n, d\]"):
        w2_inference_data(SamplePosterior(torch.randn(2, 3, 10, 2)))
    with pytest.raises(ValueError, match=r"^truth: expected 3 populations, received 2"):
        w2_inference_data(SamplePosterior(draws), truth=[torch.randn(10, 2)] * 2)
    # without truth: the draws alone (no w2, no observed data or replicates)
    from bayesphys.inference_data import group_dataset, group_names

    idata = w2_inference_data(SamplePosterior(draws))
    assert group_names(idata) == ["posterior"]
    assert list(group_dataset(idata, "posterior").data_vars) == ["population"]


# ----------------------------------------------------------------------------- save / load
def test_load_leaves_the_global_random_state_alone(tmp_path):
    d = _pairs()
    m = MetaFlowMatching(d, seed=5, **TINY_MFM)
    path = m.save(tmp_path / "m.pt")

    def draw():
        return torch.rand(3), float(np.random.rand()), random.random()

    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    want = draw()
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    m2 = MetaFlowMatching.load(path)  # used to reseed python, numpy and torch with seed 5
    got = draw()
    assert torch.equal(want[0], got[0]) and want[1:] == got[1:]
    assert m2.seed == 5
    src = d.subset("test").source
    assert all(torch.equal(a, b) for a, b in zip(m.predict(src), m2.predict(src)))


def _edited(path, name, edit):
    ck = torch.load(path, weights_only=False)
    edit(ck)
    torch.save(ck, path.parent / name)
    return path.parent / name


def test_load_refuses_a_pairing_flag_or_step_count_no_fit_writes(tmp_path):
    path = MetaFlowMatching(_pairs(), seed=0, **TINY_MFM).save(tmp_path / "m.pt")
    # "no" is truthy: it loaded as paired (index coupling in place of OT)
    bad = _edited(path, "paired.pt", lambda ck: ck["config"].update(paired="no"))
    with pytest.raises(ValueError, match=r"^path: .*paired\.pt.*paired: expected True or False"):
        MetaFlowMatching.load(bad)
    bad = _edited(path, "steps.pt", lambda ck: ck["config"].update(steps_done=-1))
    with pytest.raises(ValueError, match=r"^path: .*steps\.pt: steps_done: expected an int >= 0"):
        MetaFlowMatching.load(bad)
    assert MetaFlowMatching.load(path).steps_done == 0  # as written: loads


def test_ensemble_load_refuses_a_member_without_its_weights(tmp_path):
    ens = MFMEnsemble(_pairs(), members=3, seed=0, **TINY_MFM)
    path = ens.save(tmp_path / "e.pt")
    assert MFMEnsemble.load(path).members == 3
    # zip() dropped the member without weights: a 2-member ensemble, another spread, silently
    bad = _edited(path, "short.pt", lambda ck: ck["state"].pop())
    with pytest.raises(
        ValueError,
        match=r"^path: .*short\.pt holds settings for 3 members and "
        r"weights for 2 members",
    ):
        MFMEnsemble.load(bad)
    bad = _edited(path, "extra.pt", lambda ck: ck["config"]["members"].pop())
    with pytest.raises(ValueError, match=r"settings for 2 members and weights for 3 members"):
        MFMEnsemble.load(bad)


# ----------------------------------------------------------------------------- sampling
def test_integrate_checks_field_start_and_mode_settings():
    x = torch.randn(20, 2)

    def f(t, z):
        return -z

    with pytest.raises(TypeError, match="^f: expected a callable"):
        integrate(3, x)
    with pytest.raises(ValueError, match="^f: expected f.* shape"):
        integrate(lambda t, z: z[:, :1], x)  # was broadcast silently
    with pytest.raises(ValueError, match="^f: expected f.* shape"):
        integrate(lambda t, z: z.sum(), x)
    with pytest.raises(ValueError, match="^f: expected f.* shape"):
        integrate(lambda t, z: z[:, :1], x, method="dopri5")
    with pytest.raises(TypeError, match="^x0: expected a torch.Tensor"):
        integrate(f, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="^x0: expected a floating tensor"):
        integrate(f, torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="^x0: expected finite"):
        integrate(f, torch.full((3, 2), math.nan))
    with pytest.raises(ValueError, match="^atol: only the adaptive 'dopri5'"):
        integrate(f, x, atol=1e-3)  # rk4 ignored it
    with pytest.raises(ValueError, match="^steps: only the fixed-step 'rk4'"):
        integrate(f, x, method="dopri5", steps=5)  # dopri5 ignored it
    assert torch.equal(integrate(f, x), integrate(f, x, steps=10))
    assert torch.equal(
        integrate(f, x, method="dopri5"), integrate(f, x, method="dopri5", atol=1e-5, rtol=1e-5)
    )


# ----------------------------------------------------------------------------- helpers
def test_coupling_helpers_check_shapes():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="^v/u: "):
        cfm_loss(torch.randn(10, 2), torch.randn(10, 1))  # was broadcast to a wrong mean
    with pytest.raises(ValueError, match="^x0/x1: "):
        interpolate(x, torch.randn(1, 2), torch.rand(10))
    with pytest.raises(ValueError, match="^t: "):
        interpolate(x, x, torch.rand(3))
    with pytest.raises(ValueError, match="^x0/x1: "):
        couple(torch.randn(2, 10, 2), torch.randn(3, 10, 2), "index")  # was accepted
    with pytest.raises(ValueError, match="^x0/x1: "):
        couple(torch.randn(2, 10, 2), torch.randn(2, 12, 2), "index")
    assert couple(torch.randn(2, 10, 2), torch.randn(2, 12, 2), "ot")[1].shape == (2, 10, 2)
    with pytest.raises(ValueError, match="^x0/x1: "):
        ot_pairing(x, torch.randn(10, 3))
    with pytest.raises(ValueError, match="^x0: "):
        ot_pairing(torch.randn(0, 2), x)
    with pytest.raises(ValueError, match="^x0: expected finite"):
        ot_pairing(torch.full((5, 2), math.nan), x)
    with pytest.raises(ValueError, match=r"^sources\[0\]: expected finite"):
        full_ot_plans([torch.full((5, 2), math.nan)], [x])  # was an empty plan
    plan = full_ot_plans([x], [x + 1])[0]
    with pytest.raises(TypeError, match="^rows: "):
        sample_plan_partners(plan, torch.tensor([0.5, 1.0]))
    with pytest.raises(TypeError, match="^rows: "):
        sample_plan_partners(plan, [0, 1])
    with pytest.raises(TypeError, match="^plan: expected a FullPlan, received tuple"):
        sample_plan_partners(tuple(plan), torch.tensor([0]))
    # a plan whose source point 1 has no partner (its row is empty): not an OT plan
    holed = type(plan)(torch.tensor([0, 1, 1]), torch.tensor([0]), torch.tensor([0.0, 1.0]))
    assert sample_plan_partners(holed, torch.tensor([0])).tolist() == [0]
    with pytest.raises(ValueError, match="^plan: a source point has no partner"):
        sample_plan_partners(holed, torch.tensor([0, 1]))
    with pytest.raises(
        ValueError, match=r"^x0: expected populations \[P, n, d\], received \(10, 2\)"
    ):
        couple(x, x[None], "index")
    with pytest.raises(ValueError, match=r"^x1: expected populations \[P, n, d\], received list"):
        couple(x[None], [x], "ot")
    with pytest.raises(ValueError, match="^coupling: expected 'index' or 'ot', received 'ot_full'"):
        couple(x[None], x[None], "ot_full")
    with pytest.raises(TypeError, match="^t: expected a torch.Tensor, received float"):
        interpolate(x, x, 0.5)


def test_embedding_and_field_helpers_check_shapes():
    with pytest.raises(ValueError, match="^x: expected floating points"):
        knn_adjacency([[0.0, 1.0], [1.0, 2.0]], 1)
    with pytest.raises(ValueError, match="^x: "):
        knn_adjacency(torch.randn(5), 1)
    with pytest.raises(ValueError, match="^adj: "):
        normalized_adjacency(torch.ones(3, 4))
    gcn = DenseGCN(2, 4, 1)
    with pytest.raises(ValueError, match=r"^h: expected node features \[\*, n, 2\]"):
        gcn(torch.randn(5, 3), torch.eye(5))
    with pytest.raises(ValueError, match="^a_hat: "):
        gcn(torch.randn(5, 2), torch.eye(4))
    v = VectorField(2, 3, width=8, layers=2, time_dim=4, fourier=4)
    with pytest.raises(ValueError, match=r"^x: expected points \[\.\.\., 2\]"):
        v(torch.tensor(0.5), torch.randn(5, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="^t: "):
        v(torch.rand(4), torch.randn(5, 2), torch.randn(5, 3))
    v0 = VectorField(2, 0, width=8, layers=2, time_dim=4, fourier=4)
    with pytest.raises(ValueError, match="^cond: this field reads no condition"):
        v0(torch.tensor(0.5), torch.randn(5, 2), torch.randn(5, 3))  # was ignored
    with pytest.raises(ValueError, match="^residual: "):
        VectorField(2, residual="no")
    with pytest.raises(ValueError, match="^max_positions: "):
        time_embedding(torch.rand(2), 4, max_positions=-1.0)  # was 'math domain error'


def test_metric_and_baseline_helpers_check_input():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="^pred: expected a population"):
        population_metrics(torch.randn(10), torch.randn(10))
    with pytest.raises(TypeError, match="^pred: "):
        population_metrics([[1.0, 2.0]], x)
    with pytest.raises(ValueError, match="^pred/true: "):
        population_metrics(x, torch.randn(10, 3))
    with pytest.raises(ValueError, match="^s1: "):
        gaussian_w2(torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2))
    with pytest.raises(TypeError, match="^m2: expected a torch.Tensor, received list"):
        gaussian_w2(torch.zeros(2), torch.eye(2), [0.0, 0.0], torch.eye(2))
    for m1 in (torch.tensor(0.0), torch.zeros(0)):
        with pytest.raises(ValueError, match=r"^m1: expected a mean \[\*, d\] with d >= 1"):
            gaussian_w2(m1, torch.eye(1), m1, torch.eye(1))
    with pytest.raises(
        ValueError, match="^preds: expected at least 2 ensemble members, received 1"
    ):
        ensemble_spread([x])
    with pytest.raises(ValueError, match="^scores: expected at least one calibration score"):
        conformal_radius([])
    with pytest.raises(ValueError, match=r"^preds\[1\]: expected dimension 2"):
        ensemble_spread([x, torch.randn(10, 3)])
    with pytest.raises(ValueError, match=r"^preds\[1\]: expected dimension 2"):
        sampling_noise_w2([x, torch.randn(10, 3)], 5)
    with pytest.raises(ValueError, match="^member_preds: "):
        pooled_prediction([], 5)
    with pytest.raises(ValueError, match=r"^member_preds\[1\]: "):
        pooled_prediction([x, torch.randn(10, 3)], 5)
    d = _pairs()
    with pytest.raises(TypeError, match="^data: expected PopulationPairs"):
        identity_prediction(d.source)
    with pytest.raises(TypeError, match="^seed: "):
        floor_prediction(d, seed=2.5)
    with pytest.raises(TypeError, match="^data: expected PopulationPairs"):
        floor_prediction([1])


def test_floor_prediction_refuses_targets_of_another_dimension():
    d = _pairs()
    wide = dataclasses.replace(d, target=[torch.randn(t.shape[0], 3) for t in d.target])
    with pytest.raises(ValueError, match=r"^data\.target\[0\]: expected dimension 2"):
        floor_prediction(wide)  # was torch's "mat1 and mat2 shapes cannot be multiplied"
    empty = linear_map(n_train=2, n_cal=0, n_test=1, n_points=10).subset("cal")
    assert len(empty) == 0 and floor_prediction(empty, seed=1) == []  # nothing to check or draw
    assert [f.shape for f in floor_prediction(d)] == [t.shape for t in d.target]


# ----------------------------------------------------------------------------- populations
@pytest.mark.parametrize(
    "kw,error,name",
    [
        (dict(rotations=0), ValueError, "rotations"),  # was an empty problem
        (dict(rotations=2.5), TypeError, "rotations"),
        (dict(train_letters=""), ValueError, "train_letters"),
        (dict(train_letters="A1"), ValueError, "train_letters"),
        (dict(val_letter=""), ValueError, "val_letter"),  # was an empty cal split
        (dict(test_letter=None), ValueError, "test_letter"),
        (dict(target_noise=math.nan), ValueError, "target_noise"),  # was NaN populations
        (dict(source_noise=-1.0), ValueError, "source_noise"),
        (dict(seed=2.5), TypeError, "seed"),
        (dict(dtype=torch.int64), ValueError, "dtype"),
    ],
)
def test_letters_arguments(kw, error, name):
    with pytest.raises(error, match=f"^{name}: "):
        letters(**{"rotations": 1, "train_letters": "A", **kw})


def test_letter_points_size():
    with pytest.raises(ValueError, match="^size: "):
        letter_points("A", size=0)
    with pytest.raises(TypeError, match="^size: "):
        letter_points("A", size=2.5)  # was int(2.5)
    with pytest.raises(ValueError, match="^size: 3 pt renders 'I'"):
        letter_points("I", size=3)  # a one-pixel-wide glyph: NaN points


@pytest.mark.parametrize(
    "make,kw,error,name",
    [
        (linear_map, dict(dim=2.5), TypeError, "dim"),
        (linear_map, dict(dim="3"), TypeError, "dim"),
        (linear_map, dict(n_points=0), ValueError, "n_points"),  # was empty populations
        (linear_map, dict(n_points=1), ValueError, "n_points"),
        (linear_map, dict(seed=2.5), TypeError, "seed"),
        (linear_map, dict(dtype=torch.int32), ValueError, "dtype"),  # was truncated to ints
        (interacting_particles, dict(steps=0), ValueError, "steps"),  # ZeroDivisionError
        (interacting_particles, dict(steps=-1), ValueError, "steps"),  # no simulation at all
        (interacting_particles, dict(ell=0.0), ValueError, "ell"),  # NaN targets
        (interacting_particles, dict(a=math.nan), ValueError, "a"),
        (interacting_particles, dict(b=math.inf), ValueError, "b"),
        (interacting_particles, dict(n_points=1), ValueError, "n_points"),
    ],
)
def test_linear_map_and_particles_arguments(make, kw, error, name):
    base = dict(n_train=2, n_cal=0, n_test=0, n_points=8)
    if make is interacting_particles:
        base["steps"] = 2
    with pytest.raises(error, match=f"^{name}: "):
        make(**{**base, **kw})


def test_generator_dtype_by_name():
    d = linear_map(n_train=2, n_cal=0, n_test=0, n_points=4, dtype="float64")
    assert d.source[0].dtype == torch.float64  # was "Invalid device string"


@pytest.mark.parametrize(
    "kw,error,name",
    [
        (dict(n_treatments=0), ValueError, "n_treatments"),  # was a problem with no pairs
        (dict(n_replicates=0), ValueError, "n_replicates"),
        (dict(n_cells=1), ValueError, "n_cells"),
        (dict(dim=0), ValueError, "dim"),
        (dict(fold=0.5), TypeError, "fold"),  # was test patients {1, 2}
        (dict(fold=True), TypeError, "fold"),
        (dict(seed=2.5), TypeError, "seed"),
        (dict(n_treatments=2.5), TypeError, "n_treatments"),
    ],
)
def test_patient_screen_arguments(kw, error, name):
    with pytest.raises(error, match=f"^{name}: "):
        patient_screen(**{"n_cells": 10, "dim": 3, "n_replicates": 1, "n_treatments": 1, **kw})


def test_population_helpers_arguments():
    with pytest.raises(ValueError, match="^name: "):
        make_population_problem(["B2"])  # was 'unhashable type'
    with pytest.raises(ValueError, match="^x: "):
        particle_velocity(torch.randn(8, 2))
    with pytest.raises(ValueError, match="^ell: "):
        particle_velocity(torch.randn(1, 8, 2), ell=0.0)
    d = linear_map(n_train=2, n_cal=0, n_test=0, n_points=5)
    with pytest.raises(TypeError, match="^data: "):
        redraw_targets([1])
    with pytest.raises(TypeError, match="^seed: "):
        redraw_targets(d, seed=2.5)
    empty = PopulationPairs("e", [], [], torch.arange(0), {}, paired=True)
    with pytest.raises(ValueError, match="^data: 'e' holds no populations"):
        _ = empty.dim


def test_ot_pairing_refuses_a_non_tensor_with_a_type_error():
    # a list of points got a ValueError about its "shape" (the other point checks say TypeError)
    from bayesphys.meta_fm.coupling import ot_pairing

    with pytest.raises(
        TypeError, match=r"^x0: expected a torch.Tensor of points \[n, d\], received list"
    ):
        ot_pairing([[0.0, 1.0]], torch.zeros(1, 2))
    with pytest.raises(
        ValueError,
        match=r"^x1: expected a population \[n, d\] of at least 1 point, received shape \(0, 2\)",
    ):
        ot_pairing(torch.zeros(1, 2), torch.zeros(0, 2))


def test_small_populations_warn_in_fit_and_posterior():
    """Populations no larger than ``points``: training resamples them with replacement and the
    posterior embeds them whole (identical draws); both used to happen silently."""
    import warnings

    from bayesphys.meta_fm import MetaFlowMatching
    from bayesphys.problems import linear_map

    data = linear_map(n_train=4, n_cal=0, n_test=2, n_points=16, seed=0)
    m = MetaFlowMatching(
        data, width=16, layers=2, time_dim=8, fourier=8, knn_k=5, points=32, seed=0
    )
    with pytest.warns(UserWarning, match="source population has 16 points, fewer than"):
        m.fit(steps=1, progress=False)
    with pytest.warns(UserWarning, match="every draw is identical"):
        post = m.posterior(data.subset("test").source, num_samples=3)
    assert float(post.variance.max()) == 0.0  # what the warning says
    # populations larger than points: no warning, and the draws differ
    big = MetaFlowMatching(
        data, width=16, layers=2, time_dim=8, fourier=8, knn_k=5, points=8, seed=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big.fit(steps=1, progress=False)
        post = big.posterior(data.subset("test").source, num_samples=3)
    assert float(post.variance.max()) > 0.0


def test_ensemble_spread_refuses_members_of_different_sizes():
    """The members are images of the same source rows; members of 50 and 80 points were
    compared (with max_points, subsampled at different rows), where sampling_noise_w2 refuses
    them."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 2, generator=gen), torch.randn(80, 2, generator=gen)
    with pytest.raises(ValueError, match=r"one size .*\[50, 80\]"):
        ensemble_spread([a, b], max_points=40)


def test_field_refuses_integer_points_and_non_tensor_times():
    v = VectorField(2, 3, width=8, layers=2, time_dim=4, fourier=4)
    xi, c = torch.tensor([[1, -2], [0, 3]]), torch.randn(3)
    # the time was cast to the points' dtype: t = 0.3 read as 0, silently
    with pytest.raises(TypeError, match="^x: expected floating points, received torch.int64"):
        v(0.3, xi, c)
    out = v(0.3, xi.float(), c)
    assert not torch.equal(out, v(0.0, xi.float(), c))  # the time matters
    with pytest.raises(TypeError, match="^t: expected a torch.Tensor"):
        time_embedding(0.5, 4)  # was AttributeError: 'float' object has no attribute 'dtype'


def test_ensemble_refuses_one_model_listed_twice():
    # [m] * 3 was accepted: its members had no spread over weights (only their embedding
    # subsamples differed), and fit() trained the one model once, returning steps=0 and an
    # empty loss_history (the copies after the first had no steps left to take)
    d = _pairs()
    m, other = MetaFlowMatching(d, **TINY_MFM), MetaFlowMatching(d, seed=1, **TINY_MFM)
    with pytest.raises(ValueError, match=r"^models\[1\]: the same model as models\[0\]"):
        MFMEnsemble(models=[m, m])
    with pytest.raises(ValueError, match=r"^models\[2\]: the same model as models\[0\]"):
        MFMEnsemble(models=[m, other, m])
    assert MFMEnsemble(models=[m, other]).members == 2


# ----------------------------------------------------------------------------- dtypes
def test_the_networks_name_an_input_in_another_dtype():
    """Points or conditions in another dtype than a network's weights (float64 into a
    float32 field or embedding) failed deep inside a matrix product with torch's own error;
    they are refused naming the argument and both dtypes. The model itself converts its
    populations to its dtype (as before)."""
    from bayesphys.meta_fm import FourierFeatures, PopulationEmbedding

    d64 = torch.float64
    field = VectorField(2, 3, width=8, layers=2, time_dim=4, fourier=4)
    x, cond = torch.randn(5, 2), torch.randn(5, 3)
    assert field(0.5, x, cond).dtype == torch.float32
    want = r"expected the vector field's dtype torch.float32, received torch.float64"
    with pytest.raises(TypeError, match=rf"x: {want} \(convert it with x.to\(torch.float32\)"):
        field(0.5, x.to(d64), cond)
    with pytest.raises(TypeError, match=rf"cond: {want}"):
        field(0.5, x, cond.to(d64))
    with pytest.raises(TypeError, match=rf"x: {want}"):  # through the ODE solver too
        integrate(lambda t, y: field(t, y, cond), x.to(d64), steps=2)
    assert field.to(d64)(0.5, x.to(d64), cond.to(d64)).dtype == d64  # or the field converted
    with pytest.raises(TypeError, match=r"x: expected the Fourier feature map's dtype"):
        FourierFeatures(2, 4, 1.0)(x.to(d64))
    emb = PopulationEmbedding(2, hidden=8, layers=2, k=3)
    with pytest.raises(TypeError, match=r"x: expected the embedding's dtype torch.float32"):
        emb(torch.randn(2, 6, 2, dtype=d64))
    gcn = DenseGCN(2, 4, 1)
    a_hat = torch.eye(6)
    with pytest.raises(TypeError, match=r"h: expected the GCN's dtype torch.float32"):
        gcn(torch.randn(6, 2, dtype=d64), a_hat)
    with pytest.raises(TypeError, match=r"a_hat: expected the GCN's dtype torch.float32"):
        gcn(torch.randn(6, 2), a_hat.to(d64))


def test_an_ensemble_of_members_of_two_dtypes_is_refused():
    """Members of float32 and float64 formed an ensemble whose dtype said float32 while its
    draws were promoted to float64; they are refused, naming the member and both dtypes."""
    data = _pairs()
    m32 = MetaFlowMatching(data, **TINY_MFM, seed=0)
    m64 = MetaFlowMatching(data, **TINY_MFM, seed=1, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"models\[1\]: expected dtype torch.float32 \(as models\[0\]\), received"
    ):
        MFMEnsemble(models=[m32, m64])
    # the model's own entry points convert populations of any floating dtype to its own
    src = [s.to(torch.float64) for s in data.subset("test").source]
    assert all(p.dtype == torch.float32 for p in m32.predict(src))


@pytest.mark.filterwarnings("ignore:.*has not been trained")
def test_points_that_overflow_the_model_dtype_are_named_as_such():
    """A float64 population of 1e300-sized points for a float32 model became Inf in the
    model's cast and was refused from inside the embedding as ``x: ... NaN/Inf entries``,
    a name and a cause the caller never gave."""
    d = _pairs()
    m = MetaFlowMatching(d, seed=0, **TINY_MFM)
    src = d.subset("test").source[0].double()
    match = r"^{}\[0\]: values up to [\d.]+e\+300 in magnitude overflow torch.float32"
    with pytest.raises(ValueError, match=match.format("sources")):
        m.predict([src * 1e300])
    with pytest.raises(ValueError, match=match.format("x")):
        m.posterior([src * 1e300], num_samples=2)
    assert m.predict([src * 1e30])[0].dtype == torch.float32  # large but representable


def test_an_mfm_model_built_from_dim_alone_warns_that_the_datas_features_go_unread():
    s = _screen()
    m = MetaFlowMatching(
        dim=s.dim, num_treatments=s.num_treatments, coupling="ot", seed=0, **TINY_MFM
    )
    with pytest.warns(UserWarning, match=r"^data\.source_features: .* 2 features per point"):
        m.fit(s, steps=1, progress=False)
    # an explicit node_features=0 ignores them on purpose: no warning
    quiet = MetaFlowMatching(
        dim=s.dim,
        num_treatments=s.num_treatments,
        coupling="ot",
        node_features=0,
        seed=0,
        **TINY_MFM,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        quiet.fit(s, steps=1, progress=False)
    # built from the data, the embedding reads them
    assert MetaFlowMatching(s, seed=0, **TINY_MFM).config.node_features == 2
