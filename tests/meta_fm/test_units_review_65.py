"""Population metrics in the user's units: the exact W1 / W2 of populations of any size scale
with them (POT's simplex has absolute tolerances: clouds 1e-8 across read W2 53 % high, so a
predictive spread or conformal radius in metres of micron-sized populations was wrong), and a
Meta FM model trained and evaluated in other units gives the same predictions in them."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, population_metrics
from bayesphys.metrics import wasserstein
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM

F64 = torch.float64


@pytest.fixture(scope="module")
def data():
    return linear_map(n_train=6, n_cal=0, n_test=2, n_points=32, seed=0)


@pytest.mark.parametrize("scale", [1e-7, 1e-8, 1e-150, 1e8, 1e150])
def test_population_w1_w2_scale_with_the_points(data, scale):
    x, y = data.source[0].to(F64), data.target[0].to(F64)
    ref = population_metrics(x, y)
    got = population_metrics(x * scale, y * scale)
    assert got["w1"] / scale == pytest.approx(ref["w1"], rel=1e-12)
    assert got["w2"] / scale == pytest.approx(ref["w2"], rel=1e-12)


def test_wasserstein_of_a_far_off_tiny_cloud(data):
    x, y = data.source[0].to(F64), data.target[0].to(F64)
    ref = float(wasserstein(x, y))
    got = float(wasserstein(1.0 + 1e-9 * x, 1.0 + 1e-9 * y))
    assert got == pytest.approx(1e-9 * ref, rel=1e-6)  # the offset rounds the points by 1e-7
    assert float(wasserstein(x + 1e300, x + 1e300)) == 0.0  # scaling up would overflow: kept


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_predictions_follow_the_units_of_the_training_points(data, scale):
    def fitted(d):
        m = MetaFlowMatching(d, seed=0, **TINY_MFM)
        m.fit(steps=5, progress=False)
        return m

    scaled = dataclasses.replace(
        data, source=[s * scale for s in data.source], target=[t * scale for t in data.target]
    )
    test = data.splits["test"]
    ref = fitted(data).predict([data.source[i] for i in test], seed=0)
    got = fitted(scaled).predict([scaled.source[i] for i in test], seed=0)
    for a, b in zip(ref, got):
        torch.testing.assert_close(b / scale, a, rtol=1e-5, atol=1e-5)


def test_training_points_that_require_grad_are_constants_of_the_fit(data):
    # e.g. the output of a differentiable simulator: the second step failed with torch's
    # "backward through the graph a second time" (and a warning of a tensor read as a float)
    graph = dataclasses.replace(
        data,
        source=[s.clone().requires_grad_() for s in data.source],
        target=[t.clone().requires_grad_() for t in data.target],
    )
    test = [data.source[i] for i in data.splits["test"]]
    ref = MetaFlowMatching(data, seed=0, **TINY_MFM)
    ref.fit(steps=3, progress=False)
    m = MetaFlowMatching(graph, seed=0, **TINY_MFM)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(steps=3, progress=False)
    for a, b in zip(ref.predict(test, seed=0), m.predict(test, seed=0)):
        assert torch.equal(a, b)
    assert all(s.grad is None for s in graph.source)  # the user's tensors untouched


@pytest.mark.parametrize(("scale", "shift"), [(1e-3, 1e5), (1e-9, 0.0), (1e-9, 1.0)])
def test_ot_plans_follow_a_change_of_units(scale, shift):
    """The exact-OT pairings are those of the clouds in any units: POT's ot.dist cancelled far
    from the origin (clouds 1e-3 across at 1e5 were paired at random), and costs under the
    old floor 1e-12 met POT's absolute tolerances."""
    from bayesphys.meta_fm.coupling import full_ot_plans, ot_pairing_rows

    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 2, generator=g, dtype=torch.float64)
    b = torch.randn(40, 2, generator=g, dtype=torch.float64) + 0.5
    ref = full_ot_plans([a], [b])[0]
    got = full_ot_plans([a * scale + shift], [b * scale + shift])[0]
    assert torch.equal(got.cols, ref.cols)
    assert torch.equal(got.ptr, ref.ptr)
    i0, j0 = ot_pairing_rows(a, b, torch.Generator().manual_seed(1))
    i1, j1 = ot_pairing_rows(a * scale + shift, b * scale + shift, torch.Generator().manual_seed(1))
    assert torch.equal(i0, i1) and torch.equal(j0, j1)
