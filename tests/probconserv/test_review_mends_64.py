"""Mends and property gaps found using the public ProbConserv API as a user would."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linear_operator.operators import (
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

from bayesphys import GaussianPosterior
from bayesphys.probconserv import conserve_slices, hard_projection, trapezoid_weights

F64 = torch.float64


def test_hard_projection_refuses_more_rows_than_unknowns_by_name():
    """More constraint rows than grid values are linearly dependent: refused by name (the
    QR solve failed inside torch with "A must be batches of square matrices")."""
    prior = GaussianPosterior(torch.zeros(4, dtype=F64), torch.eye(4, dtype=F64))
    rows = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(
        ValueError,
        match=r"^G: expected at most 4 linearly independent constraint rows .* "
        r"received G of shape \(5, 4\) with 5 rows$",
    ):
        hard_projection(prior, rows, 1.0)
    # as many rows as unknowns is still a (unique) projection
    square = rows[:4] + 4 * torch.eye(4, dtype=F64)
    b = torch.arange(4, dtype=F64)
    post = hard_projection(prior, square, b)
    torch.testing.assert_close(square @ post.mean, b, rtol=0, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(2, 12),
    rank=st.sampled_from(["zero", "one", "n", "above_n"]),
    seed=st.integers(0, 10_000),
)
def test_slice_update_with_low_rank_factors_of_any_rank_on_non_uniform_grids(n, rank, seed):
    """Batch (2, 3) of low-rank-plus-diagonal priors, root of rank 0, 1, n or n + 3, on a
    random non-uniform grid: in the limit the trapezoid mass of the mean and of every draw is
    b to round-off, Sigma~ g = 0, and mean and covariance equal the dense conditioning."""
    gen = torch.Generator().manual_seed(seed)
    k = {"zero": 0, "one": 1, "n": n, "above_n": n + 3}[rank]
    x = torch.cumsum(0.05 + torch.rand(n, dtype=F64, generator=gen), 0)
    mu = torch.randn(2, 3, n, dtype=F64, generator=gen)
    d = 0.1 + torch.rand(2, 3, n, dtype=F64, generator=gen)
    r = torch.randn(2, 3, n, k, dtype=F64, generator=gen)
    cov = LowRankRootAddedDiagLinearOperator(LowRankRootLinearOperator(r), DiagLinearOperator(d))
    mass = torch.randn(2, 3, dtype=F64, generator=gen)
    post = conserve_slices(GaussianPosterior(mu, cov, event_shape=(n,)), x, mass)
    g = trapezoid_weights(x)
    assert post.mean.shape == (2, 3, n)
    torch.testing.assert_close(post.mean @ g, mass, rtol=0, atol=1e-12)
    dense = post.covariance.to_dense()
    assert float((dense @ g).abs().max()) <= 1e-12 * max(1.0, float(dense.abs().max()))
    draws = post.sample((20,), generator=torch.Generator().manual_seed(seed))
    assert draws.shape == (20, 2, 3, n)
    torch.testing.assert_close(draws @ g, mass.expand(20, 2, 3), rtol=0, atol=1e-11)
    # dense conditioning on g^T u = b
    s = r @ r.mT + torch.diag_embed(d)
    sg = s @ g
    gain = sg / (sg @ g).unsqueeze(-1)
    mean = mu - gain * (mu @ g - mass).unsqueeze(-1)
    torch.testing.assert_close(post.mean, mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(dense, s - gain.unsqueeze(-1) * sg.unsqueeze(-2), rtol=0, atol=1e-10)


def _gp_model():
    from bayesphys.probconserv import ProbConserv

    return ProbConserv("pme", step1="gp", seed=0)


def _set_with_inputs(prob, t, x):
    from bayesphys.problems.gpme import GPMEData

    inputs = torch.stack([torch.as_tensor(t, dtype=F64), torch.as_tensor(x, dtype=F64)], -1)
    values = prob.solution(inputs[..., 0], inputs[..., 1], 3.0)
    return GPMEData(
        prob, torch.tensor([3.0], dtype=F64), inputs[None], values[None], inputs[None], values[None]
    )


@pytest.mark.filterwarnings("ignore:ProbConserv.posterior. the model has not been trained")
def test_sensors_outside_the_domain_are_refused_by_name_and_boundary_sensors_taken():
    """Sensors past the problem's domain (PME: t, x in [0, 1]) were conditioned on (and
    trained on) without a word, though the prediction grid is refused there; sensors on the
    domain's boundary are inside it."""
    model = _gp_model()
    prob = model.problem
    edge = _set_with_inputs(prob, [0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0])
    post = model.posterior(edge, t=torch.tensor([0.0, 1.0]))
    assert post.mean.shape == (1, 2, 201)
    assert bool(torch.isfinite(post.mean).all()) and bool(torch.isfinite(post.variance).all())
    outside_x = _set_with_inputs(prob, [0.5, 0.5], [0.5, 2.0])
    with pytest.raises(
        ValueError,
        match=r"^context\.x_context: expected x \(column 1\) in the pme domain \[0\.0, 1\.0\] "
        r"\(where the model was trained\), received \[0\.5, 2\.0\]$",
    ):
        model.posterior(outside_x)
    outside_t = _set_with_inputs(prob, [-0.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"^context\.x_context: expected t \(column 0\)"):
        model.step1(outside_t)
    wrong_target = _set_with_inputs(prob, [0.5, 0.5], [0.5, 0.5])
    wrong_target.x_target = wrong_target.x_target + torch.tensor([3.0, 0.0], dtype=F64)
    with pytest.raises(ValueError, match=r"^data\.x_target: expected t \(column 0\)"):
        model.fit(wrong_target, steps=1, progress=False)
    assert model.steps_done == 0
    # float32 inputs one float32 rounding past an end are on the end
    f32 = _set_with_inputs(prob, [0.5, 0.5], [0.5, 1.0])
    f32.x_context = f32.x_context.float() * torch.tensor([1.0, 1.0 + 6e-8])
    assert model.posterior(f32).mean.shape == (1, 1, 201)


def test_hybrid_calibration_on_too_few_functions_names_the_argument_before_any_work():
    """objective='hybrid' on fewer than 4 validation functions failed in fit_hybrid with
    "validation set: ...", after the Step 1 had run on them: refused up front, naming
    n_functions (or data), and the calibration is left as it was."""
    from bayesphys.problems.gpme import make_dataset

    model = _gp_model()
    with pytest.raises(
        ValueError,
        match=r"^n_functions: expected at least 4 validation functions with "
        r"objective='hybrid' \(its 2-fold held-out selection\), received 3$",
    ):
        model.calibrate(n_functions=3, objective="hybrid")
    with pytest.raises(ValueError, match=r"^data: expected at least 4 validation functions"):
        model.calibrate(make_dataset("pme", 2, seed=5), objective="hybrid")
    assert model.calibration is None and model.var_scale == 1.0
    # the scalar objectives still take a single function
    assert model.calibrate(n_functions=1) > 0
