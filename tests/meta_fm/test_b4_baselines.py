"""The shift / ideal-shift baselines and the correlation-of-correlations metric r (anchor 1.7,
1.8, 6.4): exact means, hand-computed pooled means, r's invariances and its refusals."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from bayesphys.meta_fm import (
    correlation_of_correlations,
    ideal_shift_prediction,
    identity_prediction,
    shift_prediction,
)
from bayesphys.problems.populations import PopulationPairs, patient_screen


def _pairs(sources, targets, treatment=None) -> PopulationPairs:
    return PopulationPairs(
        name="toy",
        source=list(sources),
        target=list(targets),
        source_id=torch.arange(len(sources)),
        splits={"all": list(range(len(sources)))},
        paired=False,
        treatment=None if treatment is None else torch.tensor(treatment),
        num_treatments=0 if treatment is None else max(treatment) + 1,
    )


@pytest.fixture(scope="module")
def screen() -> PopulationPairs:
    return patient_screen(n_cells=60, dim=4, n_treatments=3, fold=1)


def _const_rows(x: Tensor) -> bool:
    """All rows of ``x [n, d]`` equal (to float32 round-off)."""
    return bool(torch.allclose(x, x[:1].expand_as(x), atol=1e-5, rtol=0))


# ----------------------------------------------------------------------------- ideal shift
def test_ideal_shift_has_the_target_mean_and_the_centred_source_shape(screen):
    test = screen.subset("test")
    pred = ideal_shift_prediction(test)
    assert len(pred) == len(test)
    for p, s, t in zip(pred, test.source, test.target):
        assert p.shape == s.shape and p.dtype == s.dtype
        torch.testing.assert_close(p.double().mean(0), t.double().mean(0), atol=1e-5, rtol=0)
        # prediction minus centred source: one constant vector (the target's mean)
        diff = p.double() - (s.double() - s.double().mean(0))
        assert _const_rows(diff)
        torch.testing.assert_close(diff[0], t.double().mean(0), atol=1e-5, rtol=0)
        assert not torch.allclose(p.mean(0), s.mean(0), atol=1e-2)  # it did move the source


def test_ideal_shift_is_the_best_translation_in_w2(screen):
    from bayesphys.meta_fm import population_metrics

    test = screen.subset("test")
    s, t = test.source[0], test.target[0]
    best = population_metrics(ideal_shift_prediction(test)[0], t)["w2"]
    for delta in (0.1, -0.2):
        off = ideal_shift_prediction(test)[0] + delta
        assert population_metrics(off, t)["w2"] > best
    assert population_metrics(s, t)["w2"] >= best


# ----------------------------------------------------------------------------- shift
def test_shift_adds_the_pooled_training_target_mean_by_hand():
    # training targets of different sizes: pooled mean = sum of all points / number of points
    y1 = torch.tensor([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]], dtype=torch.float64)  # sum (2, 2, 2)
    y2 = torch.tensor([[3.0, 0.0, 6.0]] * 4, dtype=torch.float64)  # sum (12, 0, 24)
    src = torch.tensor([[1.0, 1.0, 1.0], [3.0, 5.0, 1.0]], dtype=torch.float64)
    train = _pairs([src, src], [y1, y2])
    data = _pairs([src], [src])
    pooled = torch.tensor([14 / 6, 2 / 6, 26 / 6], dtype=torch.float64)
    # mean of per-population means would be (1.75, 0.5, 3.5): pooling weighs by points
    (pred,) = shift_prediction(data, train)
    want = src - torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64) + pooled
    torch.testing.assert_close(pred, want)


def test_shift_on_the_screen_matches_a_hand_computation(screen):
    test, train = screen.subset("test"), screen.subset("train")
    mu = torch.cat([y.double() for y in train.target]).mean(0)
    pred = shift_prediction(test, train)
    for p, s in zip(pred, test.source):
        assert p.dtype == s.dtype == torch.float32
        want = s.double() - s.double().mean(0) + mu
        torch.testing.assert_close(p.double(), want, atol=1e-5, rtol=0)
    # one mean for every pair, whatever its treatment
    assert _const_rows(torch.stack([p.double().mean(0) for p in pred]))


def test_shift_by_treatment_uses_that_treatments_training_targets(screen):
    test, train = screen.subset("test"), screen.subset("train")
    pred = shift_prediction(test, train, by_treatment=True)
    means = {}
    for t in range(screen.num_treatments):
        ys = [y.double() for y, u in zip(train.target, train.treatment) if int(u) == t]
        assert ys
        means[t] = torch.cat(ys).mean(0)
    assert not torch.allclose(means[0], means[1], atol=1e-2)
    for p, s, t in zip(pred, test.source, test.treatment):
        want = s.double() - s.double().mean(0) + means[int(t)]
        torch.testing.assert_close(p.double(), want, atol=1e-5, rtol=0)


def test_shift_refusals(screen):
    test, train = screen.subset("test"), screen.subset("train")
    with pytest.raises(TypeError, match="data"):
        shift_prediction(test.source, train)
    with pytest.raises(TypeError, match="train"):
        shift_prediction(test, train.target)
    with pytest.raises(TypeError, match="by_treatment"):
        shift_prediction(test, train, by_treatment="yes")
    other = _pairs([torch.randn(5, 3)], [torch.randn(5, 3)])
    with pytest.raises(ValueError, match=r"train\.source\[0\]: expected dimension 4"):
        shift_prediction(test, other)
    # no treatments: by_treatment refused, the pooled shift works
    plain = _pairs([torch.randn(5, 4)], [torch.randn(6, 4)])
    assert len(shift_prediction(plain, train)) == 1
    with pytest.raises(ValueError, match="by_treatment: data has no treatments"):
        shift_prediction(plain, train, by_treatment=True)
    with pytest.raises(ValueError, match="by_treatment: train has no treatments"):
        shift_prediction(test, plain, by_treatment=True)
    # a treatment of data that train never saw
    only0 = _pairs([torch.randn(5, 4)], [torch.randn(6, 4)], treatment=[0])
    only0.num_treatments = 3
    with pytest.raises(ValueError, match=r"train: no training target for treatment\(s\) \[1, 2\]"):
        shift_prediction(test, only0, by_treatment=True)
    bad = _pairs([torch.randn(5, 4)], [torch.full((6, 4), math.nan)])
    with pytest.raises(ValueError, match=r"train\.target\[0\]"):
        shift_prediction(test, bad)
    with pytest.raises(TypeError, match="data"):
        ideal_shift_prediction(test.source)


# ----------------------------------------------------------------------------- r
def _correlated(n: int = 2000, d: int = 6, seed: int = 0, law: int = 0) -> Tensor:
    """``[n, d]`` points of a two-factor model (loadings drawn with ``law``): strongly
    correlated features."""
    load = torch.randn(2, d, generator=torch.Generator().manual_seed(law), dtype=torch.float64)
    gen = torch.Generator().manual_seed(1000 + seed)
    z = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return z @ load + 0.3 * torch.randn(n, d, generator=gen, dtype=torch.float64)


def test_r_of_a_population_with_itself_is_one():
    x = _correlated()
    assert correlation_of_correlations(x, x) == pytest.approx(1.0, abs=1e-12)
    assert correlation_of_correlations(x.float(), x.float()) == pytest.approx(1.0, abs=1e-6)


def test_r_is_the_pearson_correlation_of_the_upper_triangles_by_numpy():
    import numpy as np

    x, y = _correlated(n=300, d=5, seed=0).numpy(), _correlated(n=200, d=5, seed=1, law=1).numpy()
    iu = np.triu_indices(5, k=1)
    cx, cy = np.corrcoef(x.T)[iu], np.corrcoef(y.T)[iu]
    want = np.corrcoef(cx, cy)[0, 1]
    got = correlation_of_correlations(torch.from_numpy(x), torch.from_numpy(y))
    assert got == pytest.approx(want, abs=1e-12)
    assert abs(want) < 0.99  # a non-trivial value (two different laws)


@settings(max_examples=25, deadline=None)
@given(
    scale=st.lists(st.floats(0.01, 100.0), min_size=6, max_size=6),
    offset=st.lists(st.floats(-100.0, 100.0), min_size=6, max_size=6),
    which=st.sampled_from(["pred", "true"]),
)
def test_r_is_invariant_to_per_feature_affine_rescaling(scale, offset, which):
    x, y = _correlated(seed=0), _correlated(seed=1, law=1)[:1500]
    a = torch.tensor(scale, dtype=torch.float64)
    b = torch.tensor(offset, dtype=torch.float64)
    base = correlation_of_correlations(x, y)
    if which == "pred":
        moved = correlation_of_correlations(a * x + b, y)
    else:
        moved = correlation_of_correlations(x, a * y + b)
    assert moved == pytest.approx(base, abs=1e-9)


def test_r_against_independently_permuted_features_is_near_zero():
    x = _correlated(n=5000, d=8)
    gen = torch.Generator().manual_seed(3)
    # every feature shuffled across cells on its own: the marginals stay, the correlations go
    shuffled = torch.stack([c[torch.randperm(len(c), generator=gen)] for c in x.T], 1)
    off = torch.corrcoef(x.T)[torch.triu_indices(8, 8, 1).unbind()]
    assert off.abs().mean() > 0.3  # a strongly correlated example
    assert abs(correlation_of_correlations(x, shuffled)) < 0.3
    # against a fresh draw of the same law instead: near 1
    assert correlation_of_correlations(x, _correlated(n=5000, d=8, seed=1)) > 0.95


def test_r_of_a_translation_baseline_is_the_identitys(screen):
    test, train = screen.subset("test"), screen.subset("train")
    for pred in (shift_prediction(test, train), ideal_shift_prediction(test)):
        for p, q, t in zip(pred, identity_prediction(test), test.target):
            assert correlation_of_correlations(p, t) == pytest.approx(
                correlation_of_correlations(q, t), abs=1e-5
            )


def test_r_is_nan_for_a_constant_feature_or_constant_correlations():
    x = _correlated(d=4)
    flat = x.clone()
    flat[:, 2] = 1.5  # zero variance: no correlations for feature 2
    assert math.isnan(correlation_of_correlations(flat, x))
    assert math.isnan(correlation_of_correlations(x, flat))
    # every feature a copy of one: all off-diagonal correlations equal, so the second
    # correlation is 0 / 0
    copies = x[:, [0, 0, 0, 0]]
    assert math.isnan(correlation_of_correlations(x, copies))
    assert math.isnan(correlation_of_correlations(copies, x))
    # two copied pairs are not constant: defined
    assert not math.isnan(correlation_of_correlations(x, x[:, [0, 0, 1, 1]]))


def test_r_refusals():
    x = _correlated(d=4)
    with pytest.raises(ValueError, match=r"d >= 3 .*received d = 2"):
        correlation_of_correlations(x[:, :2], x[:, :2])
    with pytest.raises(ValueError, match="pred/true: expected points of one dimension"):
        correlation_of_correlations(x, x[:, :3])
    bad = x.clone()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="pred"):
        correlation_of_correlations(bad, x)
    with pytest.raises(ValueError, match="true"):
        correlation_of_correlations(x, bad)
    with pytest.raises(TypeError, match="pred"):
        correlation_of_correlations(x.numpy(), x)
    with pytest.raises(ValueError, match="true: expected at least 2 points"):
        correlation_of_correlations(x, x[:1])
    with pytest.raises(ValueError, match="pred: expected a population"):
        correlation_of_correlations(x[None], x)
