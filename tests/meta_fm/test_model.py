import math
import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from bayesphys import FitResult, SamplePosterior
from bayesphys.inference_data import group_dataset
from bayesphys.meta_fm import (
    MetaFlowMatching,
    MFMEnsemble,
    conformal_coverage,
    conformal_radius,
    floor_prediction,
    gaussian_w2,
    identity_prediction,
    mmd_anchor,
    population_metrics,
    spearman,
    w2_inference_data,
)
from bayesphys.problems.populations import PopulationPairs, linear_map, patient_screen
from tests.tiny_models import SMALL_MFM as SMALL

# tiny (often untrained) models on toy populations drive these tests: the package's warnings
# about them are expected here, not asserted (tests elsewhere assert them)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*has not been trained:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*far from every training source:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*calibration scores are too few:UserWarning"),
]


def test_fit_reduces_loss_and_beats_identity_on_b2():
    d = linear_map(n_train=40, n_cal=0, n_test=5, n_points=128, seed=0)
    m = MetaFlowMatching(
        d,
        seed=0,
        width=64,
        layers=3,
        time_dim=16,
        fourier=16,
        fourier_sigma=1.0,
        gnn_hidden=16,
        knn_k=10,
        points=64,
        lr=3e-3,
        gnn_lr=3e-3,
    )
    res = m.fit(steps=150, progress=False)
    assert isinstance(res, FitResult) and res.steps == 150 and res.seconds > 0
    assert sum(res.loss_history[-30:]) / 30 < 0.9 * sum(res.loss_history[:10]) / 10
    te = d.subset("test")
    pred = m.predict(te.source)
    w_model = sum(population_metrics(p, t)["w2"] for p, t in zip(pred, te.target))
    w_ident = sum(
        population_metrics(p, t)["w2"] for p, t in zip(identity_prediction(te), te.target)
    )
    assert w_model < w_ident


@pytest.mark.parametrize(
    "method,schedule", [("MFM", "alternating"), ("CGFM", "joint"), ("FM", "joint")]
)
def test_treatments_and_unpaired_data(method, schedule):
    d = patient_screen(n_cells=40, dim=3)
    m = MetaFlowMatching(d, method=method, schedule=schedule, seed=0, **SMALL)
    assert m.coupling == "ot"
    res = m.fit(steps=6, progress=False)
    assert res.steps == 6 and all(math.isfinite(v) for v in res.loss_history)
    te = d.subset("test")
    f = te.source_features  # the cell-type one-hot (read by the MFM embedding only)
    pred = m.predict(te.source[:3], te.treatment[:3], features=f[:3])
    assert [p.shape for p in pred] == [(40, 3)] * 3
    with pytest.raises(ValueError, match="treatment"):
        m.predict(te.source[:3], features=f[:3])
    with pytest.raises(ValueError, match="treatment"):
        m.predict(te.source[:1], [7], features=f[:1])


def test_cgfm_unseen_population_uses_average_onehot():
    d = linear_map(n_train=5, n_cal=0, n_test=1, n_points=32)
    m = MetaFlowMatching(d, method="CGFM", seed=0, **SMALL)
    c = m._cgfm_cond([0, 999], 2)
    assert float(c[0, 0]) == 1.0 and float(c[0].sum()) == 1.0
    torch.testing.assert_close(c[1], torch.full((5,), 0.2))


def test_single_model_posterior_and_embedding_bootstrap():
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=64)
    m = MetaFlowMatching(d, seed=0, **SMALL)
    m.fit(steps=5, progress=False)
    post = m.posterior(d.subset("test").source, num_samples=3)
    assert isinstance(post, SamplePosterior)
    assert post.draws.shape == (1, 3, 2, 64, 2)
    assert float(post.variance.mean()) > 0  # different subsamples -> different embeddings
    with pytest.raises(ValueError, match="equal population sizes"):
        m.posterior([torch.randn(10, 2), torch.randn(12, 2)])


def test_ensemble_uncertainty_and_arviz(tmp_path):
    d = linear_map(n_train=10, n_cal=6, n_test=6, n_points=48)
    ens = MFMEnsemble(d, members=2, seed=0, **SMALL)
    res = ens.fit(steps=5, progress=False)
    assert len(res.extra["members"]) == 2
    te = d.subset("test")
    post = ens.posterior(te.source[:2], num_samples=2)
    assert post.draws.shape == (2, 2, 2, 48, 2)
    unc = ens.uncertainty(d.subset("cal"), te, max_points=48)
    assert 0.0 <= unc["coverage"] <= 1.0 and len(unc["test_error"]) == 6
    assert all(s > 0 for s in unc["test_spread"])
    # the summaries recomputed from the returned per-population lists
    err, spread = np.asarray(unc["test_error"]), np.asarray(unc["test_spread"])
    epi = np.asarray(unc["test_spread_epistemic"])
    assert unc["spearman"] == pytest.approx(scipy.stats.spearmanr(spread, err).statistic)
    assert unc["spearman_epistemic"] == pytest.approx(scipy.stats.spearmanr(epi, err).statistic)
    assert unc["coverage_raw"] == np.mean(err <= unc["radius_raw"])
    assert unc["coverage_normalized"] == np.mean(err / spread <= unc["radius_normalized"])
    # normalized=True (the default) reports the normalized score's pair
    assert unc["coverage"] == unc["coverage_normalized"]
    assert unc["radius"] == unc["radius_normalized"]
    assert [m["w2"] for m in unc["test_metrics"]] == unc["test_error"]
    idata = w2_inference_data(post, te.target[:2])
    w2 = group_dataset(idata, "posterior")["w2"]
    assert w2.shape == (2, 2, 2) and bool((w2 > 0).all())
    path = ens.save(tmp_path / "e.pt")
    ens2 = MFMEnsemble.load(path)
    for a, b in zip(ens.predict_members(te.source[:1])[1], ens2.predict_members(te.source[:1])[1]):
        assert torch.equal(a, b)


def test_ensemble_uncertainty_summaries_recomputed_from_the_returned_lists():
    # the conformal radius at alpha = 0.5 over 6 calibration scores is their
    # ceil((6 + 1) * 0.5) = 4th smallest; the scores of a split are reproducible (seeded), so
    # passing the calibration split as the test split returns them
    d = linear_map(n_train=10, n_cal=6, n_test=6, n_points=48)
    ens = MFMEnsemble(d, members=2, seed=0, **SMALL)
    ens.fit(steps=5, progress=False)
    cal, te = d.subset("cal"), d.subset("test")
    self_cal = ens.uncertainty(cal, cal, alpha=0.5, max_points=48)
    c_err, c_spread = np.asarray(self_cal["test_error"]), np.asarray(self_cal["test_spread"])
    assert len(set(c_err)) == 6 and len(set(c_err / c_spread)) == 6  # no ties
    r_raw, r_norm = np.sort(c_err)[3], np.sort(c_err / c_spread)[3]
    assert self_cal["radius_raw"] == r_raw and self_cal["radius_normalized"] == r_norm
    assert self_cal["coverage_raw"] == self_cal["coverage_normalized"] == pytest.approx(4 / 6)

    unc = ens.uncertainty(cal, te, alpha=0.5, max_points=48)
    err, spread = np.asarray(unc["test_error"]), np.asarray(unc["test_spread"])
    epi, noise = np.asarray(unc["test_spread_epistemic"]), np.asarray(unc["test_noise"])
    np.testing.assert_allclose(spread, np.hypot(epi, noise), rtol=1e-12)
    assert unc["radius_raw"] == r_raw and unc["radius_normalized"] == r_norm
    cov_raw, cov_norm = np.mean(err <= r_raw), np.mean(err / spread <= r_norm)
    assert cov_raw != cov_norm  # this split tells the two scores apart
    assert unc["coverage_raw"] == cov_raw and unc["coverage_normalized"] == cov_norm
    assert unc["spearman"] == pytest.approx(scipy.stats.spearmanr(spread, err).statistic)
    assert unc["spearman_epistemic"] == pytest.approx(scipy.stats.spearmanr(epi, err).statistic)
    # normalized=True (the default) reports the normalized pair, normalized=False the raw one
    assert unc["radius"] == r_norm and unc["coverage"] == cov_norm
    raw = ens.uncertainty(cal, te, alpha=0.5, max_points=48, normalized=False)
    assert raw["radius"] == r_raw and raw["coverage"] == cov_raw
    assert raw["test_error"] == unc["test_error"] and raw["test_spread"] == unc["test_spread"]


def test_metrics_helpers():
    x = torch.randn(200, 2, dtype=torch.float64)
    assert population_metrics(x, x)["w2"] < 1e-6
    assert mmd_anchor(x, x) < 1e-12 and mmd_anchor(x, x + 1) > 0
    shifted = population_metrics(x, x + torch.tensor([3.0, 4.0], dtype=torch.float64))
    assert abs(shifted["w2"] - 5.0) < 1e-6 and abs(shifted["w1"] - 5.0) < 1e-6
    # Bures formula: shifted isotropic Gaussians
    m1, m2 = torch.zeros(2, dtype=torch.float64), torch.tensor([3.0, 4.0], dtype=torch.float64)
    s1, s2 = torch.eye(2, dtype=torch.float64), 4 * torch.eye(2, dtype=torch.float64)
    assert abs(float(gaussian_w2(m1, s1, m2, s2)) - math.sqrt(25 + 2)) < 1e-9
    assert spearman([1, 2, 3, 4], [10, 20, 30, 50]) == pytest.approx(1.0)
    # conformal: ceil((n + 1) * 0.9)-th smallest of 1..9 is the 9th
    assert conformal_radius(list(range(1, 10)), 0.1) == 9
    assert conformal_radius([1.0, 2.0], 0.1) == math.inf
    q, cov = conformal_coverage(list(range(1, 20)), [0.5, 18.5, 30], 0.1)
    assert q == 18 and cov == pytest.approx(1 / 3)


def test_score_helpers_refuse_bad_input():
    """A miscoverage level outside (0, 1) used to index from the end (alpha = 1.5 returned a
    finite radius); NaN scores sorted last and gave a radius of inf; unequal lengths failed
    inside scipy."""
    with pytest.raises(ValueError, match="alpha: expected a miscoverage level in"):
        conformal_radius([1.0, 2.0, 3.0], alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        conformal_radius([1.0, 2.0, 3.0], alpha=0.0)
    with pytest.raises(ValueError, match="NaN"):
        conformal_radius([1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match="test_scores"):
        conformal_coverage([1.0, 2.0], [math.nan])
    with pytest.raises(ValueError, match="equal lengths"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        spearman([1, 2, math.nan], [1, 2, 3])
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # constant input: undefined, documented


def test_floor_is_below_identity():
    d = linear_map(n_train=1, n_cal=0, n_test=3, n_points=128).subset("test")
    fl = floor_prediction(d)
    for f, s, t in zip(fl, d.source, d.target):
        assert population_metrics(f, t)["w2"] < population_metrics(s, t)["w2"]


@pytest.mark.parametrize("schedule", ["joint", "alternating"])
def test_cosine_lr_schedule_decays_to_zero_and_constant_keeps_lr(schedule):
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=40, seed=0)
    steps = 8
    kw = dict(SMALL, lr=2e-3, gnn_lr=2e-3, schedule=schedule)
    cos = MetaFlowMatching(d, seed=0, lr_schedule="cosine", **kw).fit(steps=steps, progress=False)
    const = MetaFlowMatching(d, seed=0, **kw).fit(steps=steps, progress=False)
    # the last step runs at 1/2 (1 + cos(pi (K-1) / K)) of the base rate
    want = 2e-3 * 0.5 * (1 + math.cos(math.pi * (steps - 1) / steps))
    assert cos.extra["final_lr"] == pytest.approx(want, rel=1e-9)
    assert const.extra["final_lr"] == 2e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        MetaFlowMatching(d, lr_schedule="linear", **SMALL)


def test_treatments_refused_without_num_treatments_or_out_of_range():
    from bayesphys.problems.populations import PopulationPairs

    g = torch.Generator().manual_seed(0)
    src = [torch.randn(12, 2, generator=g) for _ in range(4)]
    kw = dict(
        name="toy",
        source=src,
        target=[s + 1 for s in src],
        source_id=torch.arange(4),
        splits={"train": [0, 1, 2, 3]},
        paired=True,
    )
    small = dict(
        width=8, layers=2, time_dim=4, fourier=0, gnn_hidden=4, gnn_layers=1, knn_k=3, points=8
    )
    # treatments given, num_treatments left at 0: they would be silently ignored
    with pytest.raises(ValueError, match="num_treatments"):
        MetaFlowMatching(PopulationPairs(**kw, treatment=torch.tensor([0, 1, 0, 1])), **small)
    # an index >= num_treatments is refused up front, not at whichever fit step samples it
    with pytest.raises(ValueError, match=r"data.treatment: expected integer indices in \[0, 2\)"):
        MetaFlowMatching(
            PopulationPairs(**kw, treatment=torch.tensor([0, 1, 0, 5]), num_treatments=2), **small
        )
    m = MetaFlowMatching(
        PopulationPairs(**kw, treatment=torch.tensor([0, 1, 0, 1]), num_treatments=2), **small
    )
    assert m.num_treatments == 2


def test_ensemble_members_embed_through_their_own_subsamples():
    # two members with the same weights: they may differ only by the embedding subsample.
    # Before the fix every member used the same subsample seeds, so such members agreed bit
    # for bit and the ensemble's spread left out the subsample's variation.
    d = linear_map(n_train=10, n_cal=0, n_test=2, n_points=48)
    m = MetaFlowMatching(d, seed=0, **(SMALL | {"points": 16}))
    twin = MetaFlowMatching(d, seed=1, **(SMALL | {"points": 16}))
    twin.net.load_state_dict(m.net.state_dict())
    ens = MFMEnsemble(models=[m, twin])
    src = d.subset("test").source
    a, b = ens.predict_members(src, seed=5)
    assert not torch.equal(a[0], b[0])
    for lone, first in zip(m.predict(src, seed=5), a):  # member 0 reads as a lone model
        assert torch.equal(lone, first)
    draws = ens.posterior(src, num_samples=2, seed=5).draws  # [M, K, P, n, d]
    seen = [draws[j, k] for j in range(2) for k in range(2)]
    assert all(not torch.equal(x, y) for i, x in enumerate(seen) for y in seen[i + 1 :])
    assert torch.equal(draws[1, 0], torch.stack(twin.predict(src, seed=5 + 2)))
    # member 0 reads as a lone model for every seed torch takes, negative and top ones too
    for seed in (-3, 2**64 - 1):
        first = ens.predict_members(src, seed=seed)[0]
        assert all(torch.equal(x, y) for x, y in zip(m.predict(src, seed=seed), first))
    top = ens.posterior(src, num_samples=2, seed=2**64 - 1).draws  # seeds past the top wrap
    assert torch.equal(top[0, 1], torch.stack(m.predict(src, seed=0)))


def test_save_refuses_a_module_swapped_in_by_hand(tmp_path):
    d = linear_map(n_train=4, n_cal=0, n_test=1, n_points=32, seed=0)
    m = MetaFlowMatching(d, seed=0, **SMALL)

    class MeanEmbed(torch.nn.Module):
        def forward(self, x, f=None):
            return x.mean(-2)

    m.net["embed"] = MeanEmbed()
    # the checkpoint was written, and its load failed with a raw state-dict error
    with pytest.raises(ValueError, match=r"^save: net\['embed'\] is a MeanEmbed, not the module"):
        m.save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()
    del m.net["embed"]
    with pytest.raises(ValueError, match=r"^save: net\['embed'\] is missing"):
        m.save(tmp_path / "m.pt")


def _weights(m, part):
    return [p.detach().clone() for p in m.net[part].parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_alternating_schedule_updates_field_and_gcn_on_alternate_steps():
    """schedule="alternating": step 1 updates only the vector field (with detached cached
    embeddings), step 2 only the GCN through the fixed field; "joint" updates both at once."""
    d = linear_map(n_train=6, n_cal=0, n_test=0, n_points=40, seed=0)
    kw = dict(SMALL, lr=1e-2, gnn_lr=1e-2)
    fresh = MetaFlowMatching(d, seed=0, schedule="alternating", **kw)
    f0, e0 = _weights(fresh, "field"), _weights(fresh, "embed")
    one = MetaFlowMatching(d, seed=0, schedule="alternating", **kw)
    one.fit(steps=1, progress=False)
    f1, e1 = _weights(one, "field"), _weights(one, "embed")
    assert not _same(f1, f0) and _same(e1, e0)
    two = MetaFlowMatching(d, seed=0, schedule="alternating", **kw)
    two.fit(steps=2, progress=False)
    f2, e2 = _weights(two, "field"), _weights(two, "embed")
    assert _same(f2, f1) and not _same(e2, e1)
    joint = MetaFlowMatching(d, seed=0, schedule="joint", **kw)
    joint.fit(steps=1, progress=False)
    assert not _same(_weights(joint, "field"), f0) and not _same(_weights(joint, "embed"), e0)


def test_alternating_schedule_starts_each_fit_call_with_a_field_step():
    """The callback's ``step`` counts on across calls, the alternation restarts in each call:
    after fit(3), the next call's first step (``step`` 4) updates the field, its second the
    GCN."""
    d = linear_map(n_train=6, n_cal=0, n_test=0, n_points=40, seed=0)
    m = MetaFlowMatching(d, seed=0, schedule="alternating", **SMALL)
    m.fit(steps=3, progress=False)
    seen = {3: (_weights(m, "field"), _weights(m, "embed"))}

    def record(model, step):
        seen[step] = (_weights(model, "field"), _weights(model, "embed"))

    m.fit(steps=2, progress=False, callback=record, callback_every=1)
    (f3, e3), (f4, e4), (f5, e5) = seen[3], seen[4], seen[5]
    assert not _same(f4, f3) and _same(e4, e3)  # step 4: the field
    assert _same(f5, f4) and not _same(e5, e4)  # step 5: the GCN


def test_knn_k_assigned_after_construction_is_used_and_survives_save_load(tmp_path):
    """``config.knn_k`` assigned after construction was ignored by the embedding (it kept
    the k it was built with) but written to the checkpoint, whose model then embedded with
    the new k: the loaded model predicted otherwise than the saved one."""
    d = linear_map(n_train=4, n_cal=0, n_test=2, n_points=40, seed=0)
    m = MetaFlowMatching(d, seed=0, **dict(SMALL, knn_k=3, points=32))
    m.fit(steps=2, progress=False)
    src = d.subset("test").source
    before = m.predict(src)
    m.config.knn_k = 12
    after = m.predict(src)
    assert not torch.equal(after[0], before[0])  # the new k is read
    m.save(tmp_path / "m.pt")
    loaded = MetaFlowMatching.load(tmp_path / "m.pt")
    for a, b in zip(loaded.predict(src), after):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("name", "value"), [("fourier_sigma", 1.0), ("method", "FM"), ("width", 16)]
)
def test_setting_read_at_construction_assigned_later_is_refused_at_use(tmp_path, name, value):
    """``config.fourier_sigma`` assigned after construction changed nothing (the Fourier
    matrix was drawn with the old sd) and was saved as if it had; an assigned ``method``
    failed later on the condition's width and ``width`` was read by ``save`` only."""
    d = linear_map(n_train=4, n_cal=0, n_test=2, n_points=40, seed=0)
    m = MetaFlowMatching(d, seed=0, **SMALL)
    m.fit(steps=1, progress=False)
    src = d.subset("test").source
    before = m.predict(src)
    old = getattr(m.config, name)
    setattr(m.config, name, value)
    calls = {
        "fit": lambda: m.fit(steps=1, progress=False),
        "embed": lambda: m.embed(src),
        "predict": lambda: m.predict(src),
        "posterior": lambda: m.posterior(src, num_samples=2),
    }
    for where, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{where}: config {name}={value!r} was assigned"):
            call()
    with pytest.raises(ValueError, match=rf"^save: config {name}={value!r}"):
        m.save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists() and m.steps_done == 1
    setattr(m.config, name, old)  # set back: the model is usable and unchanged
    assert all(torch.equal(a, b) for a, b in zip(m.predict(src), before))
    m.save(tmp_path / "m.pt")


@pytest.mark.parametrize("scale", [1e-11, 1e8])
def test_predictions_scale_with_the_data_whatever_their_units(scale):
    # the frame's scale had a floor of 1e-8: points spread by 1e-11 were squashed in the
    # model's frame and the predictions were about 100 spreads off
    def pairs(s):
        g = torch.Generator().manual_seed(0)
        mus = 4.0 * torch.randn(8, 2, generator=g)
        src = [mu + 0.3 * torch.randn(48, 2, generator=g) for mu in mus]
        tgt = [mu + 0.5 * (x - mu) for mu, x in zip(mus, src)]
        return PopulationPairs(
            name="contractions",
            source=[x * s for x in src],
            target=[x * s for x in tgt],
            source_id=torch.arange(8),
            splits={"train": list(range(6)), "test": [6, 7]},
            paired=True,
        )

    preds = []
    for s in (1.0, scale):
        d = pairs(s)
        m = MetaFlowMatching(d, seed=0, **SMALL)
        m.fit(steps=3, progress=False)
        preds.append([p / s for p in m.predict(d.subset("test").source)])
    for a, b in zip(*preds):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_points_far_from_the_origin_for_the_dtype_are_warned_about():
    # float32 points centred at 1e6 with sd ~4 were predicted on a lattice of 0.06, silently
    g = torch.Generator().manual_seed(0)
    src = [1e6 + 4 * torch.randn(40, 2, generator=g) for _ in range(4)]
    far = PopulationPairs(
        name="far",
        source=src,
        target=[x + 1.0 for x in src],
        source_id=torch.arange(4),
        splits={"train": [0, 1, 2, 3]},
        paired=True,
    )
    with pytest.warns(UserWarning, match=r"centred 1e\+06 from the origin.*dtype=torch.float64"):
        MetaFlowMatching(far, seed=0, **SMALL).fit(steps=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MetaFlowMatching(far, seed=0, dtype=torch.float64, **SMALL).fit(steps=1, progress=False)
        near = [x - 1e6 for x in src]
        MetaFlowMatching(
            PopulationPairs(
                name="near",
                source=near,
                target=[x + 1.0 for x in near],
                source_id=torch.arange(4),
                splits={"train": [0, 1, 2, 3]},
                paired=True,
            ),
            seed=0,
            **SMALL,
        ).fit(steps=1, progress=False)


@pytest.mark.parametrize("schedule", ["alternating", "joint"])
def test_fit_leaves_no_gradients_on_the_weights(schedule):
    """The last step's gradients were kept on every weight after fit, of each ensemble member
    too (memory nothing reads: each step clears those it uses first); a fit ended by an error
    releases them too."""
    d = linear_map(n_train=8, n_cal=0, n_test=2, n_points=64, seed=0)
    ens = MFMEnsemble(d, members=2, schedule=schedule, **SMALL)
    ens.fit(steps=3, progress=False)
    assert all(p.grad is None for m in ens.models for p in m.net.parameters())
    m = ens.models[0]

    def stop(model, step):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        m.fit(steps=3, progress=False, callback=stop, callback_every=1)
    assert all(p.grad is None for p in m.net.parameters())


@pytest.mark.parametrize("method", ["FM", "CGFM"])
def test_fm_and_cgfm_predict_single_point_populations(method):
    """FM and CGFM move each point on its own (no population embedding), yet a one-point
    population was refused as one that 'cannot be embedded'; it is now pushed through the same
    flow as the point inside a larger population. MFM still needs two points (kNN graph)."""
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=40, seed=0)
    small = {k: v for k, v in SMALL.items() if k not in ("gnn_hidden", "gnn_layers", "knn_k")}
    m = MetaFlowMatching(d, method=method, seed=0, **small)
    m.fit(steps=2, progress=False)
    src = d.subset("test").source[0]
    whole = m.predict([src])[0]
    alone = m.predict([src[3:4]])[0]
    assert alone.shape == (1, 2)
    torch.testing.assert_close(alone, whole[3:4], rtol=1e-5, atol=1e-5)
    post = m.posterior([src[:1], src[1:2]], num_samples=2)
    assert post.draws.shape == (1, 2, 2, 1, 2)
    torch.testing.assert_close(post.draws[0, 0, 1], whole[1:2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"at least 1 point"):
        m.predict([src[:0]])
    mfm = MetaFlowMatching(d, seed=0, **SMALL)
    with pytest.raises(ValueError, match="cannot be embedded"):
        mfm.predict([src[:1]])


def test_fm_ensemble_posterior_of_single_point_populations():
    """An FM ensemble's posterior takes one-point populations, as its members' predict does."""
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=40, seed=0)
    small = {k: v for k, v in SMALL.items() if k not in ("gnn_hidden", "gnn_layers", "knn_k")}
    ens = MFMEnsemble(d, members=2, method="FM", seed=0, **small)
    ens.fit(steps=2, progress=False)
    src = d.subset("test").source[0]
    post = ens.posterior([src[:1]])
    assert post.draws.shape == (2, 1, 1, 1, 2)
    for j, m in enumerate(ens.models):
        torch.testing.assert_close(
            post.draws[j, 0, 0], m.predict([src])[0][:1], rtol=1e-5, atol=1e-5
        )


def test_predict_in_chunks_of_populations_equals_each_population_alone():
    """With ``batch=True`` populations of one size are pushed ``chunk // n`` at a time (at
    least one): five of 10 points and two of 7 give, for every chunk (one population,
    2 + 2 + 1, 3 + 2, 4 + 1, all), what each population gives alone: its own condition row
    and centring in every group, in the order given (rk4, float64; an untrained model with
    random FiLM heads)."""
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=32, seed=1, dtype=torch.float64)
    m = MetaFlowMatching(
        d, seed=0, dtype=torch.float64, centered=True, conditioning="film", **SMALL
    )
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # FiLM heads start at zero: make each population's condition count
        for head in m.net["field"].film:
            head.weight.normal_(generator=gen)
    sizes = (10, 7, 10, 10, 7, 10, 10)
    pops = [torch.randn(n, 2, generator=gen, dtype=torch.float64) + i for i, n in enumerate(sizes)]
    kw = dict(seed=3, solver="rk4", steps=4)
    alone = [m.predict([q], **kw)[0] for q in pops]
    for chunk in (1, 10, 20, 29, 30, 40, 50, 70):
        got = m.predict(pops, chunk=chunk, batch=True, **kw)
        assert [tuple(p.shape) for p in got] == [(n, 2) for n in sizes]
        for i, (p, a) in enumerate(zip(got, alone)):
            assert p.dtype == torch.float64
            torch.testing.assert_close(p, a, rtol=1e-12, atol=1e-12, msg=f"chunk={chunk}, {i}")
