"""Tests of bayesphys.metrics against closed forms and independent computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys import GaussianPosterior
from bayesphys.metrics import (
    calibration_curve,
    conservation_error,
    crps_gaussian,
    crps_samples,
    gaussian_nll,
    interval_coverage,
    mmd,
    mse,
    relative_l2,
    wasserstein,
)


def test_relative_l2_and_mse():
    t = torch.tensor([3.0, 4.0])
    assert float(relative_l2(t * 1.1, t)) == pytest.approx(0.1)
    assert float(mse(t + 1, t)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="pred/truth"):
        relative_l2(t, torch.ones(3))


@pytest.mark.parametrize("scale", [1e-30, 1e-25, 1.0, 1e20, 1e30])
def test_relative_l2_is_scale_invariant_across_float32s_range(scale):
    # float32 norms square their entries: fields of size 1e-25 read a 100 % error as 0 (both
    # norms underflowed) and of size 1e20 as NaN (both overflowed)
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(3, 50, generator=g)
    pred = truth + 0.3 * torch.randn(3, 50, generator=g)
    ref = np.linalg.norm((pred - truth).double().numpy()) / np.linalg.norm(truth.double().numpy())
    got = relative_l2(pred * scale, truth * scale)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(ref, rel=1e-5)
    per_row = relative_l2(pred * scale, truth * scale, dim=1)
    ref_rows = np.linalg.norm((pred - truth).double().numpy(), axis=1) / np.linalg.norm(
        truth.double().numpy(), axis=1
    )
    np.testing.assert_allclose(per_row.numpy(), ref_rows, rtol=1e-5)
    zero = torch.zeros_like(truth)
    assert float(relative_l2(truth * scale, zero)) == math.inf
    assert float(relative_l2(zero, zero)) == 0.0


def test_gaussian_nll_matches_scipy():
    m, v, y = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 4.0]), torch.tensor([0.5, -1.0])
    ref = -scipy.stats.norm(m.numpy(), np.sqrt(v.numpy())).logpdf(y.numpy()).mean()
    assert float(gaussian_nll(m, v, y)) == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="var"):
        gaussian_nll(m, torch.zeros(2), y)


def test_gaussian_nll_refuses_var_that_broadcasts_past_the_mean():
    m, y = torch.zeros(4), torch.tensor([0.0, 1.0, 2.0, 3.0])
    v = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # a column of variances used to broadcast to [4, 4] and return a wrong number silently
    with pytest.raises(ValueError, match=r"var: expected the mean's shape \(4,\)"):
        gaussian_nll(m, v[:, None], y)
    with pytest.raises(ValueError, match="var"):
        gaussian_nll(m, torch.ones(3), y)
    # a scalar variance is still fine
    torch.testing.assert_close(
        gaussian_nll(m, torch.tensor(2.0), y), gaussian_nll(m, 2 * torch.ones(4), y)
    )


@pytest.mark.parametrize("level", [-0.5, 0.0, 1.0, 1.5])
def test_calibration_curve_checks_levels_for_samples_too(level):
    # draws used to give "lower/upper: expected lower <= upper" (-0.5), torch's quantile error
    # (1.5) or a silent 0 / 1 coverage where a Posterior refuses the level
    samples, y = torch.randn(100, 20), torch.randn(20)
    with pytest.raises(ValueError, match="levels"):
        calibration_curve(samples, y, levels=[level])


@settings(max_examples=15, deadline=None)
@given(mu=st.floats(-3, 3), sd=st.floats(0.2, 3), y=st.floats(-4, 4))
def test_crps_gaussian_matches_sample_crps(mu, sd, y):
    gen = torch.Generator().manual_seed(0)
    s = mu + sd * torch.randn(40000, 1, generator=gen, dtype=torch.float64)
    closed = crps_gaussian(torch.tensor([mu]), torch.tensor([sd]), torch.tensor([y]))
    emp = crps_samples(s, torch.tensor([y], dtype=torch.float64))
    assert float(emp) == pytest.approx(float(closed), rel=0.03, abs=0.01)


@pytest.mark.parametrize(
    "mu,sd,y", [(0.0, 1.0, 0.0), (0.5, 2.0, -1.3), (-2.0, 0.3, -1.7), (1.0, 0.7, 4.0)]
)
def test_crps_gaussian_matches_the_integral_definition(mu, sd, y):
    # CRPS = int (F(x) - 1{x >= y})^2 dx, integrated numerically on each side of y
    import scipy.integrate

    cdf = scipy.stats.norm(mu, sd).cdf
    quad = scipy.integrate.quad
    below = quad(lambda x: cdf(x) ** 2, -np.inf, y, epsabs=1e-13, epsrel=1e-12)[0]
    above = quad(lambda x: (1 - cdf(x)) ** 2, y, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    got = float(crps_gaussian(t(mu), t(sd), t(y)))
    assert got == pytest.approx(below + above, rel=1e-7)


def test_crps_samples_bruteforce():
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    y = torch.tensor([0.3, -0.2], dtype=torch.float64)
    brute = (s - y).abs().mean(0) - 0.5 * (s[:, None] - s[None]).abs().mean((0, 1))
    torch.testing.assert_close(crps_samples(s, y), brute.mean())


def test_crps_samples_of_float32_draws_far_from_zero_is_accurate():
    """The sorted-draw sum ran in float32 for float32 draws: at an offset of 1e4 with sd 0.1
    its terms cancelled to a 2.6e-3 relative error (review of 2026-12-04)."""
    gen = torch.Generator().manual_seed(0)
    s = (1e4 + 0.1 * torch.randn(1000, 3, generator=gen, dtype=torch.float64)).float()
    y = torch.full((3,), 1e4, dtype=torch.float32)
    ref = crps_samples(s.double(), y.double())  # the same float32 values, summed in float64
    got = crps_samples(s, y)
    assert got.dtype == torch.float32
    assert abs(float(got) - float(ref)) <= 1e-6 * float(ref)


def test_interval_coverage_and_curve():
    y = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert float(interval_coverage(torch.full((4,), 0.5), torch.full((4,), 2.5), y)) == 0.5
    with pytest.raises(ValueError, match="lower <= upper"):
        interval_coverage(torch.ones(4), torch.zeros(4), y)
    gen = torch.Generator().manual_seed(2)
    truth = torch.randn(4000, generator=gen, dtype=torch.float64)
    post = GaussianPosterior(
        torch.zeros(4000, dtype=torch.float64),
        __import__("linear_operator").operators.DiagLinearOperator(
            torch.ones(4000, dtype=torch.float64)
        ),
    )
    nominal, observed = calibration_curve(post, truth)
    assert float((nominal - observed).abs().max()) < 0.04
    # an overconfident set of samples under-covers
    samples = 0.3 * torch.randn(500, 4000, generator=gen, dtype=torch.float64)
    _, obs2 = calibration_curve(samples, truth, levels=[0.9])
    assert float(obs2[0]) < 0.5


def test_conservation_error():
    w = torch.tensor([0.5, 1.0, 0.5])
    u = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    torch.testing.assert_close(
        conservation_error(u, w, torch.tensor(2.0)), torch.tensor([0.0, 2.0])
    )
    with pytest.raises(ValueError, match="weights"):
        conservation_error(u, torch.ones(4), 1.0)


def test_wasserstein_exact_cases():
    x = torch.tensor([[0.0], [1.0]])
    assert float(wasserstein(x, x + 2.0, p=1)) == pytest.approx(2.0)
    assert float(wasserstein(x, x + 2.0, p=2)) == pytest.approx(2.0)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 1, generator=gen, dtype=torch.float64)
    b = torch.randn(50, 1, generator=gen, dtype=torch.float64) + 1
    # 1-D exact W1 equals scipy's
    ref = scipy.stats.wasserstein_distance(a[:, 0].numpy(), b[:, 0].numpy())
    assert float(wasserstein(a, b, p=1)) == pytest.approx(ref, rel=1e-8)
    with pytest.raises(ValueError, match="dimensions"):
        wasserstein(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x: expected finite"):
        wasserstein(torch.tensor([[float("nan")]]), x)


def test_mmd_zero_for_same_and_positive_for_shift():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(100, 2, generator=gen)
    assert float(mmd(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(mmd(x, x + 3)) > 0.1
    assert math.isfinite(float(mmd(x, torch.randn(80, 2, generator=gen))))


# ``wasserstein`` with explicit point weights: probability vectors, whatever their scale


def test_wasserstein_weights_are_normalised_and_match_scipy():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 1, generator=gen, dtype=torch.float64) + 0.5
    # equal weights of any scale are the uniform measure (before: W1 times the total mass, 3)
    assert float(wasserstein(x[:3], y[:3], p=1, weights_x=[1, 1, 1], weights_y=[1, 1, 1])) == (
        pytest.approx(float(wasserstein(x[:3], y[:3], p=1)), rel=1e-10)
    )
    wx = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 2.5], dtype=torch.float64)
    wy = torch.tensor([2.0, 1.0, 1.0, 4.0], dtype=torch.float64)
    ref = scipy.stats.wasserstein_distance(x[:, 0], y[:, 0], wx, wy)
    assert float(wasserstein(x, y, p=1, weights_x=wx, weights_y=wy)) == pytest.approx(ref, rel=1e-8)


def test_wasserstein_refuses_bad_weights():
    x = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="weights_x: expected shape"):
        wasserstein(x, x, weights_x=[1.0, 1.0])
    with pytest.raises(ValueError, match="weights_y: expected finite non-negative"):
        wasserstein(x, x, weights_y=[1.0, -1.0, 1.0])


def test_conservation_error_accepts_a_list_target():
    from bayesphys.metrics import conservation_error

    err = conservation_error(torch.ones(4, 3), torch.ones(3), [3.0, 3.0, 3.0, 2.0])
    assert torch.equal(err, torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_calibration_curve_reads_every_level_from_one_sort(monkeypatch):
    """All levels' quantiles in one call (one sort per level: 5.5 s for 1000 draws of 3000
    points, 0.5 s now); the coverage is that of each level's own quantiles."""
    import torch

    from bayesphys.metrics import calibration_curve, interval_coverage

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 50, generator=g), torch.randn(50, generator=g)
    expected = [
        float(
            interval_coverage(*torch.quantile(x, torch.tensor([(1 - lv) / 2, (1 + lv) / 2]), 0), y)
        )
        for lv in (0.5, 0.9)
    ]
    calls = []
    real = torch.quantile
    monkeypatch.setattr(torch, "quantile", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, obs = calibration_curve(x, y, levels=(0.5, 0.9))
    assert len(calls) == 1 and obs.tolist() == expected


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 3),
    p=st.sampled_from([1, 2]),
    seed=st.integers(0, 10_000),
)
def test_wasserstein_of_equal_uniform_clouds_is_the_best_assignment(n, d, p, seed):
    """Between two clouds of n equally weighted points the optimal plan is a permutation
    (Birkhoff): W_p^p is the smallest mean |x_i - y_s(i)|^p over all n! assignments s."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64) + 0.3
    cost = torch.cdist(x, y).pow(p)
    best = min(
        float(cost[torch.arange(n), list(perm)].mean()) for perm in itertools.permutations(range(n))
    )
    got = float(wasserstein(x, y, p=p))
    assert got**p == pytest.approx(best, rel=1e-9, abs=1e-12)
    # a metric: symmetric, and 0 between a cloud and a reordering of itself
    assert float(wasserstein(y, x, p=p)) == pytest.approx(got, rel=1e-9, abs=1e-12)
    perm = torch.randperm(n, generator=g)
    assert float(wasserstein(x, x[perm], p=p)) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 3),
    p=st.sampled_from([1, 2]),
    offset=st.sampled_from([1e2, 1e4, 1e6]),
    seed=st.integers(0, 10_000),
)
def test_wasserstein_is_translation_invariant_far_from_the_origin(n, d, p, offset, seed):
    """W_p(x + c, y + c) = W_p(x, y): the ground costs must not cancel (|a|^2 + |b|^2 - 2 a.b
    lost W entirely at clouds 1e-3 apart at 1e6, and read 1e-8 for W(x, x))."""
    g = torch.Generator().manual_seed(seed)
    x = 1e-2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x + 1e-3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    c = offset * torch.randn(d, generator=g, dtype=torch.float64).sign()
    xc, yc = x + c, y + c
    # the reference on the shifted points as stored (their rounding is the input's, not W's)
    ref = float(wasserstein(xc - c, yc - c, p=p))
    assert float(wasserstein(xc, yc, p=p)) == pytest.approx(ref, rel=1e-6, abs=1e-12)
    assert float(wasserstein(xc, xc, p=p)) == 0.0


def test_conservation_error_keeps_a_fractional_target_of_an_integer_field():
    """Integer counts [1, 2] with unit weights sum to 3: the error against 2.5 is 0.5 (the
    target was cast to the field's integer dtype, 2, and the error read 1)."""
    field = torch.tensor([[1, 2]])
    weights = torch.tensor([1, 1])
    assert conservation_error(field, weights, 2.5).tolist() == [0.5]
    assert conservation_error(field, weights, [2.5]).tolist() == [0.5]
    assert conservation_error(field, weights, torch.tensor(2.5)).tolist() == [0.5]
    assert conservation_error(field, weights, 2).tolist() == [1]


@pytest.mark.parametrize(
    "metric",
    [
        lambda x, dim=None: gaussian_nll(x, torch.ones_like(x), x, dim=dim),
        lambda x, dim=None: crps_gaussian(x, torch.ones_like(x), x, dim=dim),
        lambda x, dim=None: crps_samples(torch.stack([x, x + 1]), x, dim=dim),
        lambda x, dim=None: interval_coverage(x - 1, x + 1, x, dim=dim),
        lambda x, dim=None: mse(x, x, dim=dim),
    ],
    ids=["gaussian_nll", "crps_gaussian", "crps_samples", "interval_coverage", "mse"],
)
def test_reducing_metrics_refuse_empty_inputs_and_dims_outside(metric):
    """The mean of no element was a silent NaN (mse refused it), and a dim outside the input
    an IndexError from torch."""
    x = torch.zeros(2, 3, dtype=torch.float64)
    assert metric(x, dim=1).shape == (2,)
    with pytest.raises(ValueError, match="expected at least one element"):
        metric(torch.zeros(0, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="expected at least one element"):
        metric(torch.zeros(0, 3, dtype=torch.float64), dim=1)
    with pytest.raises(ValueError, match="dim: expected an int"):
        metric(x, dim=2)
    # one dim named twice was torch's RuntimeError, not the argument's ValueError
    with pytest.raises(ValueError, match="dim: expected distinct dimensions"):
        metric(x, dim=(0, -2))
    with pytest.raises(ValueError, match="dim: expected distinct dimensions"):
        metric(x, dim=[1, 1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_calibration_curve_of_half_precision_draws(dtype):
    """Half-precision draws passed the floating-point check and then failed in torch.quantile
    ("input tensor must be either float or double dtype"); they give the coverage of the same
    draws in float32."""
    gen = torch.Generator().manual_seed(0)
    draws = torch.randn(64, 200, generator=gen).to(dtype)
    y = torch.randn(200, generator=gen).to(dtype)
    _, obs = calibration_curve(draws, y, levels=[0.5, 0.9])
    _, ref = calibration_curve(draws.float(), y.float(), levels=[0.5, 0.9])
    assert torch.equal(obs, ref)


def test_calibration_curve_names_non_finite_draws():
    draws = torch.randn(10, 3, dtype=torch.float64)
    draws[4, 1] = float("nan")
    with pytest.raises(ValueError, match="posterior_or_samples: expected finite"):
        calibration_curve(draws, torch.zeros(3, dtype=torch.float64))


def test_complex_inputs_are_refused_where_the_imaginary_part_would_be_dropped():
    """crps_samples and wasserstein cast to float64, which kept only the real part: clouds
    {i, 2i} and {0, 0} were at distance 0."""
    z = torch.tensor([[1j], [2j]], dtype=torch.complex128)
    with pytest.raises(TypeError, match="x: expected a real point cloud"):
        wasserstein(z, torch.zeros(2, 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="samples: expected real values"):
        crps_samples(z, torch.zeros(1, dtype=torch.float64))
    with pytest.raises(TypeError, match="y: expected real values"):
        crps_samples(torch.zeros(2, 1), torch.ones(1, dtype=torch.complex64))


def test_mse_of_complex_fields_is_the_mean_squared_modulus():
    """Errors [1j, 0]: the squared modulus averages to 0.5 (the complex square gave -0.5),
    consistent with relative_l2's norm."""
    pred = torch.tensor([[1j, 0], [3 + 4j, 1]], dtype=torch.complex128)
    truth = torch.zeros(2, 2, dtype=torch.complex128)
    out = mse(pred, truth, dim=1)
    assert out.dtype == torch.float64
    assert out.tolist() == [0.5, 13.0]
    assert float(mse(pred, truth)) == 6.75
    assert float(mse(pred, truth)) == pytest.approx(
        float(torch.linalg.vector_norm(pred - truth)) ** 2 / 4, rel=1e-15
    )


def test_wasserstein_dtype_is_symmetric_and_mmd_refuses_a_0d_bandwidth():
    """W(x, y) took x's dtype alone (float32 one way, float64 the other); a 0-d tensor of
    bandwidths failed in ``list()`` with torch's "iteration over a 0-d tensor"."""
    pytest.importorskip("ot")
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    y = x.double() + 1.0
    assert wasserstein(x, y).dtype == torch.float64
    assert wasserstein(y, x).dtype == torch.float64
    assert wasserstein(x, x).dtype == torch.float32
    with pytest.raises(TypeError, match="bandwidths"):
        mmd(x, x, bandwidths=torch.tensor(1.0))


def test_crps_gaussian_over_a_dim_is_the_mean_of_the_pointwise_scores():
    """``dim`` reduces by the mean over that dim, like the full reduction (a sum would scale
    the score with the number of points)."""
    g = torch.Generator().manual_seed(0)
    mu, y = (
        torch.randn(4, 6, generator=g, dtype=torch.float64),
        torch.zeros(4, 6, dtype=torch.float64),
    )
    sd = 0.5 + torch.rand(4, 6, generator=g, dtype=torch.float64)
    per = torch.stack(
        [crps_gaussian(mu[i, j], sd[i, j], y[i, j]) for i in range(4) for j in range(6)]
    ).reshape(4, 6)
    torch.testing.assert_close(crps_gaussian(mu, sd, y, dim=1), per.mean(1))
    torch.testing.assert_close(crps_gaussian(mu, sd, y, dim=0), per.mean(0))


def test_interval_coverage_counts_both_ends_as_inside():
    """The interval is closed: y equal to its lower or its upper end is inside."""
    lo = torch.tensor([0.0, 0.0, 0.0, 0.0])
    hi = torch.tensor([1.0, 1.0, 1.0, 1.0])
    y = torch.tensor([0.0, 1.0, 0.5, 1.5])
    assert float(interval_coverage(lo, hi, y)) == 0.75


def test_conservation_error_is_the_absolute_defect():
    """|G u - b|: a deficit and an excess of mass give the same positive error."""
    u = torch.tensor([[1.0, 1.0], [2.0, 2.0]], dtype=torch.float64)
    w = torch.tensor([0.5, 0.5], dtype=torch.float64)
    out = conservation_error(u, w, torch.tensor([1.5, 1.5], dtype=torch.float64))
    assert out.tolist() == [0.5, 0.5]


def test_relative_l2_of_float32_values_near_the_largest_float():
    """Norms of values near float32's maximum: the squares overflow, and the values are
    divided by their largest magnitude (a sum of magnitudes would itself overflow)."""
    truth = torch.full((3,), 3e38, dtype=torch.float32)
    assert float(relative_l2(0.5 * truth, truth)) == pytest.approx(0.5, rel=1e-6)


def test_mmd_self_terms_are_exact_for_float32_clouds():
    """With a bandwidth far below every squared distance between distinct points, only the
    self-pairs (distance exactly 0) count: MMD^2 = 1/n + 1/m. Squared distances as
    |a|^2 + |b|^2 - 2 a.b leave ~1e-7 of round-off on the self-pairs in float32, enough to
    zero their kernels; the direct differences give exactly 0."""
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.rand(40, 2, generator=g)
    y = 3 * torch.rand(30, 2, generator=g)
    assert float(mmd(x, y, bandwidths=[1e-9])) == pytest.approx(1 / 40 + 1 / 30, rel=1e-5)


def test_fair_crps_samples_matches_brute_force_and_is_unbiased():
    """``fair=True``: E|X-y| - sum_ij |x_i-x_j| / (2 S (S-1)), brute force; its mean over many
    small ensembles is the Gaussian closed form, which the default (empirical-law) CRPS exceeds
    by E|X-X'| / (2S)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.randn(5, generator=g, dtype=torch.float64)
    pair = (x[:, None] - x[None]).abs().sum((0, 1))
    brute = (x - y).abs().mean(0) - pair / (2 * 7 * 6)
    torch.testing.assert_close(crps_samples(x, y, fair=True), brute.mean())
    torch.testing.assert_close(crps_samples(x, y), ((x - y).abs().mean(0) - pair / 98).mean())
    s, reps = 10, 40000
    draws = torch.randn(s, reps, generator=g, dtype=torch.float64)
    y0 = torch.zeros(reps, dtype=torch.float64)
    exact = float(crps_gaussian(y0, torch.ones(reps, dtype=torch.float64), y0).mean())
    fair = float(crps_samples(draws, y0, fair=True))
    plain = float(crps_samples(draws, y0))
    assert abs(fair - exact) < 0.005
    assert abs(plain - exact - (2 / math.sqrt(math.pi)) / (2 * s)) < 0.005


def test_fair_crps_samples_refuses_one_draw_and_a_bad_flag():
    y = torch.zeros(3)
    with pytest.raises(ValueError, match="fair CRPS needs at least 2 draws"):
        crps_samples(torch.zeros(1, 3), y, fair=True)
    with pytest.raises(TypeError, match="fair"):
        crps_samples(torch.zeros(2, 3), y, fair="yes")


def test_crps_gaussian_of_a_tiny_std_is_the_absolute_error():
    """(y - mean) / std overflowing (float32 std 1e-39 against an error of 1) gave inf; the
    score is |y - mean| to the dtype's precision."""
    f32 = torch.float32
    got = crps_gaussian(
        torch.zeros(2, dtype=f32),
        torch.full((2,), 1e-39, dtype=f32),
        torch.tensor([1.0, -2.0], dtype=f32),
    )
    torch.testing.assert_close(got, torch.tensor(1.5, dtype=f32))


def test_second_tensors_on_another_device_are_moved_to_the_first():
    """The module computes on the first tensor's device and already moved var, std and y of
    gaussian_nll / crps_gaussian there; mse's truth and conservation_error's weights and
    target on another device failed with torch's "not on the expected device" instead. (The
    meta device stands in for a second device: these two metrics run on it.)"""
    pred = torch.zeros(3, 5, device="meta")
    out = mse(pred, torch.randn(3, 5), dim=-1)
    assert out.device.type == "meta" and out.shape == (3,)
    err = conservation_error(pred, torch.ones(5), torch.zeros(3))
    assert err.device.type == "meta" and err.shape == (3,)


@pytest.mark.gpu
def test_every_metric_takes_a_second_tensor_on_another_device():
    a, b = torch.rand(4, 6, dtype=torch.float64) + 0.5, torch.rand(4, 6, dtype=torch.float64)
    dev = torch.device("cuda")
    pairs = [
        (relative_l2, (a.to(dev), b)),
        (mse, (a.to(dev), b)),
        (gaussian_nll, (a.to(dev), a, b)),
        (crps_gaussian, (a.to(dev), a, b)),
        (crps_samples, (a.to(dev), b[0])),
        (interval_coverage, (b.to(dev) - 1, b + 1, a)),
        (conservation_error, (a.to(dev), torch.ones(6, dtype=torch.float64), b[:, 0])),
    ]
    for fn, args in pairs:
        on_cpu = fn(*(t.cpu() for t in args))
        moved = fn(*args)
        assert moved.device.type == "cuda"
        torch.testing.assert_close(moved.cpu(), on_cpu)


def test_wasserstein_refuses_a_cost_matrix_beyond_memory_before_building_it(
    memory_limit, no_dense_allocation
):
    """Exact OT holds a dense [n, m] float64 cost matrix and the solver's arcs (~33 bytes a
    pair): two 50k-point clouds need ~80 GB. Beyond the device's memory it is refused by name
    before the cost matrix is built (it swapped or was killed after minutes of work)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64)
    y = torch.randn(60, 2, generator=g, dtype=torch.float64)
    small = wasserstein(x[:5], y[:5])
    memory_limit(4000)  # 5 x 5 points pass; 50 x 60 (about 99 kB) do not
    torch.testing.assert_close(wasserstein(x[:5], y[:5]), small, rtol=0, atol=0)
    no_dense_allocation("bayesphys._cloud_distances.cdist")
    no_dense_allocation("ot.emd2")
    with pytest.raises(
        MemoryError,
        match=r"^x/y: exact optimal transport between 50 and 60 points .* would need about "
        r"96\.7 KiB .* more than the 3\.9 KiB of the CPU; subsample the clouds",
    ):
        wasserstein(x, y)


def test_relative_l2_of_scalars():
    """0-d fields: the error's size over the truth's, 0 where they agree, inf for a zero
    truth that the prediction misses."""
    f64 = torch.float64
    assert float(relative_l2(torch.tensor(3.0, dtype=f64), torch.tensor(2.0, dtype=f64))) == 0.5
    assert float(relative_l2(torch.tensor(0.0), torch.tensor(0.0))) == 0.0
    assert float(relative_l2(torch.tensor(1.0), torch.tensor(0.0))) == math.inf
    assert float(relative_l2(torch.tensor(2.0), torch.tensor(2.0))) == 0.0


def test_score_shapes_and_scales_are_checked_by_name():
    with pytest.raises(
        ValueError, match=r"^mean/y: expected equal shapes .*received \(3,\) and \(4,\)$"
    ):
        crps_gaussian(torch.zeros(3), torch.ones(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"^std: expected strictly positive standard deviations$"):
        crps_gaussian(torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]), torch.zeros(3))
    with pytest.raises(ValueError, match=r"^samples: expected shape \[S, 3\], received \(10, 4\)$"):
        crps_samples(torch.zeros(10, 4), torch.zeros(3))
    with pytest.raises(ValueError, match=r"^field: expected shape \[\*batch, n\], received a 0-d"):
        conservation_error(torch.tensor(1.0), torch.ones(1), 0.0)


def test_point_clouds_of_one_coordinate_may_be_vectors_and_others_are_checked():
    """A 1-D cloud ``[n]`` is ``n`` points on a line (``[n, 1]``); an empty cloud, one of
    three dimensions and clouds of different dimensions are refused by name."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, generator=gen, dtype=torch.float64)
    y = torch.randn(20, generator=gen, dtype=torch.float64) + 0.5
    assert float(mmd(x, y)) == float(mmd(x[:, None], y[:, None])) > 0
    assert float(wasserstein(x, y)) == pytest.approx(float(wasserstein(x[:, None], y[:, None])))
    for bad, shape in ((torch.zeros(0, 2), r"\(0, 2\)"), (torch.zeros(2, 3, 1), r"\(2, 3, 1\)")):
        with pytest.raises(
            ValueError, match=rf"^x: expected a point cloud \[n, d\] with n >= 1, received {shape}$"
        ):
            mmd(bad, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"^x/y: expected equal dimensions, received 2 and 3$"):
        mmd(torch.zeros(4, 2), torch.zeros(4, 3))


def test_crps_samples_names_the_draw_shape_of_a_scalar_truth():
    """A 0-d truth takes draws ``[S]``: the refusal of other draws said ``[S, ]``."""
    with pytest.raises(ValueError, match=r"^samples: expected shape \[S\], received \(\)$"):
        crps_samples(torch.tensor(1.0), torch.tensor(0.0))
    with pytest.raises(ValueError, match=r"^samples: expected shape \[S\], received \(4, 2\)$"):
        crps_samples(torch.zeros(4, 2), torch.tensor(0.0))
    with pytest.raises(ValueError, match=r"^samples: expected shape \[S, 2, 3\], received \(4,"):
        crps_samples(torch.zeros(4, 3, 2), torch.zeros(2, 3))
    assert float(crps_samples(torch.tensor([1.0, -1.0]), torch.tensor(0.0))) == 0.5


def test_wasserstein_and_mmd_read_list_clouds_in_float64():
    """Clouds given as Python lists are read as float64, as tensors and arrays are:
    torch.as_tensor made them float32, and clouds 1e-3 across at 1e5 collapsed to one point
    (W and MMD read 0)."""
    x = [[1e5 + 1e-3 * i] for i in range(5)]
    y = [[1e5 + 1e-3 * i + 5e-4] for i in range(5)]
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    torch.testing.assert_close(wasserstein(x, y), wasserstein(xt, yt), rtol=1e-9, atol=0)
    assert abs(float(wasserstein(x, y)) - 5e-4) < 1e-9
    torch.testing.assert_close(mmd(x, y), mmd(xt, yt), rtol=1e-9, atol=0)
    # rows given as tensors are stacked (a graph is dropped, as for the tensors' own path)
    rows = [torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 3.0])]
    assert float(wasserstein(rows, [[1.0, 2.0], [1.0, 3.0]])) == 0.0
