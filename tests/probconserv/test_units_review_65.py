"""ProbConserv in the user's units: the update and the scores of a field stated in small or
large units (domain [0, 1e-3] m or [0, 3.6e4] s, values ~1e-6 or ~1e6)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys.posterior import GaussianPosterior
from bayesphys.probconserv import (
    ProbConserv,
    conserve_slices,
    project_monotone,
    project_nonnegative,
    slice_scores,
    trapezoid_weights,
)
from bayesphys.problems.gpme import make_dataset

F64 = torch.float64


def _problem():
    g = torch.Generator().manual_seed(3)
    x = torch.sort(torch.rand(12, dtype=F64, generator=g)).values
    mu = torch.randn(2, 3, 12, dtype=F64, generator=g)
    var = 0.05 + torch.rand(2, 3, 12, dtype=F64, generator=g)
    truth = mu + var.sqrt() * torch.randn(2, 3, 12, dtype=F64, generator=g)
    mass = torch.randn(2, 3, dtype=F64, generator=g)
    return x, mu, var, truth, mass


@pytest.mark.parametrize(("a", "b"), [(1e-3, 1e-6), (3.6e4, 1e6), (1e-3, 1e6), (3.6e4, 1e-6)])
def test_update_and_scores_follow_a_change_of_units(a, b):
    """x -> a x, u -> b u: the conserving update's mean, sd and quantiles scale by b, the mass
    is met, and with the floor given in the new units the scores transform exactly."""
    x, mu, var, truth, mass = _problem()
    ref_post = conserve_slices(
        GaussianPosterior(mu, DiagLinearOperator(var), event_shape=(12,)), x, mass
    )
    post = conserve_slices(
        GaussianPosterior(b * mu, DiagLinearOperator(b * b * var), event_shape=(12,)),
        a * x,
        a * b * mass,
    )
    torch.testing.assert_close(post.mean / b, ref_post.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(post.stddev / b, ref_post.stddev, rtol=1e-12, atol=1e-12)
    p = torch.tensor([0.05, 0.95], dtype=F64)
    torch.testing.assert_close(post.quantile(p) / b, ref_post.quantile(p), rtol=1e-12, atol=1e-12)
    ref = slice_scores(ref_post, truth, x, mass)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sc = slice_scores(post, b * truth, a * x, a * b * mass, var_floor=1e-12 * b * b)
    torch.testing.assert_close(sc["mse"] / b**2, ref["mse"], rtol=1e-10, atol=0)
    torch.testing.assert_close(sc["ll"] + math.log(b), ref["ll"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sc["coverage90"], ref["coverage90"])
    torch.testing.assert_close(sc["crps"] / b, ref["crps"], rtol=1e-10, atol=0)
    torch.testing.assert_close(sc["ce"] / (a * b), ref["ce"], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("a", "b"), [(1e-3, 1e-6), (3.6e4, 1e6)])
def test_inequality_projections_follow_a_change_of_units(a, b):
    """The non-negative and monotone projections of draws scaled by b onto the mass a b m on
    the grid a x are the unit-scale projections times b."""
    x, *_ = _problem()
    g = trapezoid_weights(x)
    gen = torch.Generator().manual_seed(4)
    v = 0.3 + 0.1 * torch.randn(40, 12, dtype=F64, generator=gen).cumsum(-1).flip(-1)
    m = torch.full((40,), 0.2, dtype=F64)
    for project in (project_nonnegative, lambda *t: project_monotone(*t, nonnegative=True)):
        ref = project(v, g, m)
        out = project(b * v, a * g, a * b * m)
        torch.testing.assert_close(out / b, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out @ (a * g) / (a * b), m, rtol=1e-12, atol=1e-12)


def test_an_absolute_floor_that_swamps_small_variances_is_warned_about():
    """Values ~1e-6 with sds ~2e-7: the default floor 1e-12 raised every variance (~4e-14) and
    scored the floor (coverage 1, an LL about 3 nats too low) without a word."""
    x, mu, var, truth, mass = _problem()
    b = 1e-6
    post = GaussianPosterior(b * mu, DiagLinearOperator(b * b * var), event_shape=(12,))
    with pytest.warns(UserWarning, match=r"var_floor=1e-12 is not small .* raised 72 of 72"):
        slice_scores(post, b * truth, x, b * mass)


def test_the_default_floor_is_silent_on_fields_of_order_one():
    x, mu, var, truth, mass = _problem()
    var = var.clone()
    var[..., 0] = 0.0  # a pinned boundary value: what the floor is for
    post = GaussianPosterior(mu, DiagLinearOperator(var), event_shape=(12,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sc = slice_scores(post, truth, x, mass)
    assert bool(torch.isfinite(sc["ll"]).all())


def _scaled(data, a):
    return dataclasses.replace(data, y_context=a * data.y_context, y_target=a * data.y_target)


@pytest.mark.parametrize("a", [1e-6, 1e3])
def test_fit_on_field_values_far_from_order_one_is_warned_about(a):
    """Step 1 reads the field values unscaled (the ANP's sd floor 1e-3 is in the field's
    units): data 1e-6 times smaller fitted sds thousands of times the field, 1e3 times larger
    a flat prediction, without a word."""
    data = _scaled(make_dataset("diffusion", 8, seed=0), a)
    model = ProbConserv("diffusion", step1="anp", hidden=8, batch_size=4, seed=0)
    with pytest.warns(
        UserWarning, match=r"ProbConserv\.fit: the training field values have an rms"
    ):
        model.fit(data, steps=1, progress=False)


def test_fit_on_fields_of_order_one_is_silent_about_units():
    model = ProbConserv("diffusion", step1="anp", hidden=8, batch_size=4, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(make_dataset("diffusion", 8, seed=0), steps=1, progress=False)
        model.fit(steps=1, progress=False)  # the problem's own training functions
    assert not [w for w in caught if "rms" in str(w.message)]
