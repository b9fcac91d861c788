"""Recalibration wrappers: protocol, exact transforms, and held-out repair of overconfidence."""

from __future__ import annotations

import math
import re

import pytest
import torch

from bayesphys import GaussianPosterior, Posterior, SamplePosterior
from bayesphys.diagnostics import (
    CoreFamily,
    RecalibratedPosterior,
    Recalibrator,
    fit_recalibration,
    run_sbc,
)
from bayesphys.inference_data import group_dataset


@pytest.mark.parametrize("method", ["zscore", "conformal", "quantile"])
def test_recalibration_fixes_overconfidence_on_heldout(method):
    fam = CoreFamily(inflate=0.5)
    rec = fit_recalibration(fam.simulate, fam.infer, n_fit=30, n_eval=30, method=method, seed=0)
    ho = rec.heldout
    j = ho["levels"].index(0.9)
    assert ho["n_problems"] == 30
    assert ho["coverage_before"][j] < 0.7
    assert 0.85 <= ho["coverage_after"][j] <= 0.95
    if method != "quantile":
        assert 1.8 < rec.scale < 2.2  # the true factor is 2
    post = rec.wrap(fam.infer(fam.simulate(1, seed=99)[1][0]))
    assert isinstance(post, Posterior)
    assert post.heldout_coverage == ho


def test_recalibrated_sbc_not_rejected():
    fam = CoreFamily(inflate=0.5)
    rec = fit_recalibration(fam.simulate, fam.infer, n_fit=30, n_eval=10, seed=10)
    before = run_sbc(fam.simulate, fam.infer, fam.summaries(), n_sims=150, n_draws=29, seed=0)
    after = run_sbc(
        fam.simulate,
        lambda y: rec.wrap(fam.infer(y)),
        fam.summaries(),
        n_sims=150,
        n_draws=29,
        seed=0,
    )
    assert before.uniformity["pvalue"] < 1e-4
    assert after.uniformity["pvalue"] > 0.01
    assert 0.85 <= after.metrics()["coverage90"] <= 0.95


def test_variance_scaling_matches_scaled_gaussian():
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.3, 0.0], [0.3, 2.0, 0.1], [0.0, 0.1, 0.5]], dtype=torch.float64)
    base = GaussianPosterior(mean, cov)
    rec = Recalibrator("zscore", scale=1.7)
    post = rec.wrap(base)
    ref = GaussianPosterior(mean, cov * 1.7**2)
    torch.testing.assert_close(post.mean, ref.mean)
    torch.testing.assert_close(post.variance, ref.variance)
    torch.testing.assert_close(post.quantile([0.1, 0.7]), ref.quantile([0.1, 0.7]))
    v = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(post.log_prob(v), ref.log_prob(v))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    s = post.sample((5,), generator=g1)
    torch.testing.assert_close(s, mean + 1.7 * (base.sample((5,), generator=g2) - mean))
    assert post.rsample((2,)).shape == (2, 3)
    lo, hi = post.interval(0.9)
    assert bool((lo < hi).all())
    torch.testing.assert_close(post.stddev, ref.stddev)
    assert repr(rec) == "Recalibrator(method='zscore', scale=1.7)"
    assert repr(post) == f"RecalibratedPosterior({base!r}, {rec!r})"


def test_quantile_map_on_sample_posterior():
    gen = torch.Generator().manual_seed(0)
    truths = [torch.randn(4, generator=gen, dtype=torch.float64) for _ in range(100)]
    # overconfident empirical posteriors: centred on truth + N(0, 1) noise, sd 0.6 (too small)
    posts = []
    for t in truths:
        centre = t + torch.randn(4, generator=gen, dtype=torch.float64)
        draws = centre + 0.6 * torch.randn(1, 400, 4, generator=gen, dtype=torch.float64)
        posts.append(SamplePosterior(draws))
    rec = Recalibrator.fit(posts[:60], truths[:60], method="quantile")
    ho = rec.evaluate(posts[60:], truths[60:], levels=(0.5, 0.9))
    # sd 0.6 instead of 1: expected coverage90 P(|Z| < 0.99) = 0.68 before, 0.9 after
    assert ho["coverage_before"][1] < 0.78
    assert 0.82 <= ho["coverage_after"][1] <= 0.97
    w = rec.wrap(posts[0])
    assert w.sample((7,)).shape == (7, 4)
    assert w.quantile([0.2, 0.5, 0.8]).shape == (3, 4)
    assert bool((w.variance > posts[0].variance).all())
    with pytest.raises(NotImplementedError):
        w.log_prob(torch.zeros(4, dtype=torch.float64))
    with pytest.raises(
        NotImplementedError, match="^RecalibratedPosterior.rsample: not with a quantile map"
    ):
        w.rsample((2,))  # no reparameterised draws through an empirical quantile map
    torch.testing.assert_close(w.stddev, w.variance.sqrt())
    idata = w.to_inference_data(num_samples=10, seed=0)
    assert group_dataset(idata, "posterior")["u"].shape == (1, 10, 4)


def test_sample_base_cdf_puts_the_draws_at_exchangeable_positions():
    """An empirical base with L draws: F(x_(j)) = j/(L+1) (the uniform PIT of a truth
    exchangeable with the draws), Gaussian tails beyond the extreme draws; held-out PIT
    quantiles at k/(P+1). Interpolated sample quantiles put x_(1), x_(L) at probabilities 0 and
    1, so the recalibration map could never move the extreme draws."""
    gen = torch.Generator().manual_seed(0)
    draws = torch.randn(1, 19, 3, generator=gen, dtype=torch.float64)
    post = SamplePosterior(draws)
    rec = Recalibrator("quantile", pits=torch.linspace(0.02, 0.98, 49, dtype=torch.float64))
    xs = draws[0].sort(0).values  # [19, 3]
    j = torch.arange(1, 20, dtype=torch.float64)[:, None] / 20
    torch.testing.assert_close(rec._base_cdf(post, xs), j.expand(19, 3))
    grid, q = rec._base_quantiles(post)
    assert q.shape == (3, grid.numel()) and bool((q.diff(dim=-1) >= 0).all())
    below, above = xs[0] - 0.5 * post.stddev, xs[-1] + 0.5 * post.stddev
    p_out = rec._base_cdf(post, torch.stack([below, above]))
    assert bool((p_out[0] > 0).all() and (p_out[0] < 1 / 20).all())
    assert bool((p_out[1] < 1).all() and (p_out[1] > 19 / 20).all())
    k = torch.arange(1, 50, dtype=torch.float64) / 50
    torch.testing.assert_close(rec.r_inverse(k), rec.pits)


def test_sample_base_cdf_tails_are_mirror_images():
    """The Gaussian tails of an empirical base beyond its extreme draws are mirrored (module
    docstring): F(x_(1) - a sd) = 1 - F(x_(L) + a sd) for every a >= 0, both continuous at
    the extreme draws (1/(L+1) and L/(L+1)), and F(x_(L) + a sd) = Phi(a - Phi^-1(1/(L+1)))
    up to the grid's interpolation."""
    gen = torch.Generator().manual_seed(1)
    draws = torch.randn(1, 19, 2, generator=gen, dtype=torch.float64)
    post = SamplePosterior(draws)
    rec = Recalibrator("quantile", pits=torch.linspace(0.02, 0.98, 49, dtype=torch.float64))
    xs = draws[0].sort(0).values
    sd = draws[0].std(0)
    a = torch.tensor([0.0, 0.1, 0.7, 2.0], dtype=torch.float64)[:, None]
    lower = rec._base_cdf(post, xs[0] - a * sd)
    upper = rec._base_cdf(post, xs[-1] + a * sd)
    torch.testing.assert_close(lower, 1 - upper, rtol=0, atol=1e-12)
    torch.testing.assert_close(upper[0], torch.full((2,), 19 / 20, dtype=torch.float64))
    z1 = torch.special.ndtri(torch.tensor(1 / 20, dtype=torch.float64))
    torch.testing.assert_close(upper, torch.special.ndtr(a - z1).expand(4, 2), rtol=0, atol=2e-3)


@pytest.mark.parametrize("inflate", [2.0, 1.0, 0.5])
def test_quantile_map_calibrates_sample_posteriors_with_few_draws(inflate):
    """Gaussian truth, L = 19 draws from a posterior with `inflate` x the true sd: after the
    quantile map the truth's rank among the mapped draws is uniform, so the rank coverage is
    nominal (before the fix: 0.99 at 90 % for inflate = 2, and an exact posterior was moved
    to 0.55 at 50 %), and an exact posterior keeps its draws."""
    from bayesphys.diagnostics.coverage import central_coverage

    def problems(seed, n):
        g = torch.Generator().manual_seed(seed)
        mu = 3 * torch.randn(n, generator=g, dtype=torch.float64)
        truth = mu + torch.randn(n, generator=g, dtype=torch.float64)
        d = mu + inflate * torch.randn(19, n, generator=g, dtype=torch.float64)
        return truth, SamplePosterior(d[None], event_ndim=0)  # batch of n problems

    truth, post = problems(1, 20000)
    rec = Recalibrator.fit([post], [truth], method="quantile")
    truth, post = problems(2, 20000)
    mapped = rec.wrap(post).map_draws(post.draws[0])  # [19, n]
    for level in (0.5, 0.9):
        cov = float(central_coverage(truth[:, None], mapped.mT[:, :, None], level).double().mean())
        assert abs(cov - level) < 0.02, (level, cov)
    if inflate == 1.0:  # mean |x' - x| / sd (interpolated sample quantiles: 0.11)
        assert float(((mapped - post.draws[0]).abs() / post.stddev).mean()) < 0.04


def test_bad_input():
    with pytest.raises(ValueError, match="method"):
        Recalibrator("platt")
    with pytest.raises(TypeError, match="base"):
        RecalibratedPosterior(torch.zeros(3), Recalibrator("zscore", scale=1.0))
    with pytest.raises(ValueError, match="posteriors/truths"):
        Recalibrator.fit([], [])


def test_pinned_points_are_ignored():
    """A zero-variance (pinned) point must not turn the fitted scale into NaN."""
    from linear_operator.operators import DiagLinearOperator

    gen = torch.Generator().manual_seed(0)
    posts, truths = [], []
    for _ in range(50):
        t = torch.randn(3, generator=gen, dtype=torch.float64)
        t[0] = 0.0  # pinned boundary value, known exactly
        var = torch.tensor([0.0, 0.25, 0.25], dtype=torch.float64)
        mean = t + torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64) * torch.randn(
            3, generator=gen, dtype=torch.float64
        )
        posts.append(GaussianPosterior(mean, DiagLinearOperator(var)))
        truths.append(t)
    for method in ("zscore", "conformal", "quantile"):
        rec = Recalibrator.fit(posts, truths, method=method)
        if method != "quantile":
            assert 1.6 < rec.scale < 2.5  # true factor 2
        else:
            assert bool(torch.isfinite(rec.pits).all()) and rec.pits.numel() == 100


def test_fit_refuses_truths_of_the_wrong_shape_or_non_finite():
    fam = CoreFamily(inflate=0.5)
    u, y = fam.simulate(6, seed=1)
    posts = [fam.infer(y[i]) for i in range(6)]
    for method in ("zscore", "quantile"):
        with pytest.raises(ValueError, match=r"truths\[0\]"):
            Recalibrator.fit(posts, [u[i, :1] for i in range(6)], method=method)
    bad = list(u)
    bad[2] = torch.full_like(u[2], float("nan"))
    with pytest.raises(ValueError, match=r"truths\[2\]"):
        Recalibrator.fit(posts, bad)
    rec = Recalibrator.fit(posts, list(u))
    with pytest.raises(ValueError, match=r"truths\[0\]"):
        rec.evaluate(posts, [u[i, :1] for i in range(6)])


def test_constructor_refuses_maps_that_cannot_work():
    for bad in (None, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scale: the zscore method needs"):
            Recalibrator("zscore", scale=bad)
    with pytest.raises(ValueError, match="pits: expected"):
        Recalibrator("quantile", pits=torch.tensor([0.2, 1.5]))
    with pytest.raises(ValueError, match="never fitted"):
        Recalibrator("quantile").wrap(GaussianPosterior(torch.zeros(3), torch.eye(3)))
    with pytest.raises(ValueError, match="n_grid"):
        Recalibrator("zscore", scale=1.0, n_grid=1)


def test_pit_maps_of_an_unfitted_or_variance_map_are_refused_by_name():
    # r_inverse / r_forward read the PITs, None for these maps: an AttributeError on
    # NoneType; built directly, the wrapper of an unfitted map failed at its first mean
    q = torch.tensor([0.2, 0.5])
    base = GaussianPosterior(torch.zeros(3), torch.eye(3))
    for method in ("zscore", "conformal"):
        rec = Recalibrator(method, scale=1.5)
        for fn in ("r_inverse", "r_forward"):
            with pytest.raises(ValueError, match=rf"{fn}: the PIT map of the quantile method"):
                getattr(rec, fn)(q)
    unfitted = Recalibrator("quantile")
    for fn in ("r_inverse", "r_forward"):
        with pytest.raises(ValueError, match="never fitted"):
            getattr(unfitted, fn)(q)
    with pytest.raises(ValueError, match="never fitted"):
        RecalibratedPosterior(base, unfitted)
    with pytest.raises(TypeError, match="recalibrator: expected a Recalibrator"):
        RecalibratedPosterior(base, "quantile")
    # a fitted map: R(R^{-1}(q)) = q inside [1/(P+1), P/(P+1)], and the wrapper works
    fitted = Recalibrator("quantile", pits=torch.tensor([0.9, 0.1, 0.6, 0.3]))
    assert torch.allclose(fitted.r_forward(fitted.r_inverse(q)), q)
    assert RecalibratedPosterior(base, fitted).mean.shape == (3,)


def test_an_unfitted_quantile_map_is_refused_naming_the_method_called():
    # the refusal began "pits: ..." whatever was called, though no call takes pits; evaluate
    # reached it only after the uncalibrated curves
    base = GaussianPosterior(torch.zeros(3), torch.eye(3))
    unfitted = Recalibrator("quantile")
    calls = {
        "Recalibrator.wrap": lambda: unfitted.wrap(base),
        "Recalibrator.r_inverse": lambda: unfitted.r_inverse(torch.tensor([0.5])),
        "Recalibrator.r_forward": lambda: unfitted.r_forward(torch.tensor([0.5])),
        "Recalibrator.evaluate": lambda: unfitted.evaluate([base], [torch.zeros(3)]),
        "recalibrator": lambda: RecalibratedPosterior(base, unfitted),
    }
    for name, call in calls.items():
        with pytest.raises(
            ValueError,
            match=rf"^{re.escape(name)}: this quantile map was never fitted .* "
            r"Recalibrator\.fit\(posteriors, truths\)",
        ):
            call()


def test_conformal_scale_takes_the_exact_order_statistic_and_refuses_too_few_scores():
    # |z| = 1..99: the split-conformal scale at level 0.55 is the ceil(100 * 0.55) = 55th
    # smallest |z|; in floats 100 * 0.55 = 55.00000000000001 took the 56th
    z = torch.arange(1, 100, dtype=torch.float64)
    zq = float(torch.special.ndtri(torch.tensor(0.775, dtype=torch.float64)))
    rec = Recalibrator.from_z(z, method="conformal", level=0.55)
    assert rec.scale == pytest.approx(55.0 / zq, rel=1e-12)
    # 8 scores at level 0.9: ceil(9 * 0.9) = 9 > 8, no finite scale has the guarantee (it used to
    # take the largest score silently)
    with pytest.raises(ValueError, match="at least 9 held-out z-scores"):
        Recalibrator.from_z(torch.ones(8, dtype=torch.float64), method="conformal", level=0.9)
    assert Recalibrator.from_z(torch.ones(9, dtype=torch.float64), method="conformal").scale > 0


def test_conformal_scale_refuses_nan_scores():
    z = torch.cat([torch.randn(100, dtype=torch.float64), torch.tensor([math.nan])])
    with pytest.raises(ValueError, match="^z: expected finite"):
        Recalibrator.from_z(z, method="conformal")


def test_fit_refuses_unknown_methods_and_takes_array_truths():
    """An unknown method was fitted as "quantile" silently; numpy truths passed the check and
    then failed with "'numpy.ndarray' object has no attribute 'to'"."""
    fam = CoreFamily(inflate=0.5)
    u, y = fam.simulate(6, seed=1)
    posts = [fam.infer(y[i]) for i in range(6)]
    with pytest.raises(ValueError, match="^method: expected 'zscore', 'conformal' or 'quantile'"):
        Recalibrator.fit(posts, list(u), method="zscores")
    fam2 = CoreFamily(inflate=0.5)
    with pytest.raises(ValueError, match="^method: expected"):  # before any simulation
        fit_recalibration(fam2.simulate, fam2.infer, n_fit=4, n_eval=4, method="platt")
    arrays = [t.numpy() for t in u]
    for method in ("zscore", "quantile"):
        a = Recalibrator.fit(posts, arrays, method=method)
        b = Recalibrator.fit(posts, list(u), method=method)
        assert a.scale == b.scale and (a.pits is None or torch.equal(a.pits, b.pits))
        assert a.evaluate(posts, arrays) == b.evaluate(posts, list(u))


def test_quantile_map_from_given_pits_sorts_them_and_repr_without_pits():
    p = torch.tensor([0.9, 0.1, 0.5, 0.3], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    given, ordered = (
        Recalibrator("quantile", pits=p),
        Recalibrator("quantile", pits=p.sort().values),
    )
    torch.testing.assert_close(given.r_inverse(q), ordered.r_inverse(q))
    torch.testing.assert_close(given.r_forward(q), ordered.r_forward(q))
    assert repr(Recalibrator("quantile")) == "Recalibrator(method='quantile', pits=None)"


def test_recalibrated_export_checks_its_arguments_like_any_posterior():
    fam = CoreFamily(inflate=0.5)
    u, y = fam.simulate(6, seed=1)
    posts = [fam.infer(y[i]) for i in range(6)]
    wrapped = Recalibrator.fit(posts, list(u)).wrap(posts[0])
    one = wrapped.to_inference_data(num_samples=1, seed=0)  # "need at least two draws" before
    assert group_dataset(one, "posterior").sizes["draw"] == 1
    with pytest.raises(TypeError, match="seed"):
        wrapped.to_inference_data(num_samples=3, seed=True)
    with pytest.raises(ValueError, match="num_samples"):
        wrapped.to_inference_data(num_samples=0)
    a = wrapped.to_inference_data(num_samples=4, num_chains=2, seed=5)
    b = wrapped.to_inference_data(num_samples=4, num_chains=2, seed=5)
    assert group_dataset(a, "posterior")["u"].equals(group_dataset(b, "posterior")["u"])


def test_recalibrated_export_names_the_draws_like_its_base():
    # the wrapper had no export_name: a recalibrated posterior over a latent z exported
    # its draws as "u", where its base exports them as "z"
    base = GaussianPosterior(torch.zeros(3, dtype=torch.float64), torch.eye(3), export_name="z")
    wrapped = RecalibratedPosterior(base, Recalibrator("zscore", scale=2.0))
    assert wrapped.export_name == "z" == wrapped.to("cpu").export_name
    ds = group_dataset(wrapped.to_inference_data(num_samples=5, seed=0), "posterior")
    assert list(ds.data_vars) == ["z"] and ds["z"].dims == ("chain", "draw", "z_dim_0")
    named = wrapped.to_inference_data(num_samples=5, seed=0, name="w")
    assert list(group_dataset(named, "posterior").data_vars) == ["w"]


def _exact_sample_posteriors(n: int, s: int = 19, e: int = 200, seed: int = 0):
    """Truth fields N(0, 1) per point and S draws of the same law: exact empirical posteriors."""
    g = torch.Generator().manual_seed(seed)
    truths = [torch.randn(e, generator=g, dtype=torch.float64) for _ in range(n)]
    posts = [
        SamplePosterior(torch.randn(s, e, generator=g, dtype=torch.float64), chains=False)
        for _ in range(n)
    ]
    return posts, truths


def test_exact_sample_posteriors_fit_scale_one_and_evaluate_nominal():
    """S = 19 exact draws: the zscore fit gave 1.10 (z inflated by c_L = 1.088) and evaluate
    read interpolated empirical quantiles, 0.81 for 0.9 before and 0.85 after."""
    posts, truths = _exact_sample_posteriors(60)
    rec = Recalibrator.fit(posts[:30], truths[:30], method="zscore")
    assert abs(rec.scale - 1.0) < 0.03, rec.scale
    ho = rec.evaluate(posts[30:], truths[30:], (0.5, 0.9))
    for key in ("coverage_before", "coverage_after"):
        for lv, c in zip((0.5, 0.9), ho[key]):
            # 6000 points: Monte-Carlo sd <= 0.0065
            assert abs(c - lv) < 0.02, (key, lv, c)
    # a Gaussian posterior keeps its interval coverage, bit for bit as before
    from bayesphys.metrics import calibration_curve

    F64 = torch.float64
    gp = [
        GaussianPosterior(torch.zeros(200, dtype=F64), torch.eye(200, dtype=F64)) for _ in range(3)
    ]
    ho = Recalibrator("zscore", scale=1.3).evaluate(gp, truths[:3], (0.5, 0.9))
    ref = torch.stack([calibration_curve(p, t, (0.5, 0.9))[1] for p, t in zip(gp, truths)]).mean(0)
    assert ho["coverage_before"] == ref.tolist()


def test_scale_must_be_positive_and_zero_z_is_refused():
    with pytest.raises(ValueError, match=r"^scale: the zscore method needs a finite scale > 0"):
        Recalibrator("zscore", scale=0.0)
    with pytest.raises(ValueError, match=r"^scale: the conformal method needs a finite scale > 0"):
        Recalibrator("conformal", scale=-0.5)
    zeros = torch.zeros(20, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^z: all 20 held-out z-scores are 0"):
        Recalibrator.from_z(zeros, method="zscore")
    with pytest.raises(ValueError, match=r"^z: the split-conformal order statistic .* is 0"):
        Recalibrator.from_z(zeros, method="conformal", level=0.9)
    # 19 of 20 scores zero: the 19th smallest |z| is 0 too
    z = torch.cat([torch.zeros(19, dtype=torch.float64), torch.ones(1, dtype=torch.float64)])
    with pytest.raises(ValueError, match=r"19 z-scores are 0"):
        Recalibrator.from_z(z, method="conformal", level=0.9)


def test_fit_refuses_posteriors_without_spread():
    post = SamplePosterior(torch.ones(1, 5, 3, dtype=torch.float64))
    for method in ("zscore", "quantile"):
        with pytest.raises(ValueError, match=r"^posteriors: every held-out point has zero"):
            Recalibrator.fit([post, post], [torch.ones(3), torch.ones(3)], method=method)


def test_r_forward_inverts_r_inverse():
    """r_inverse is linear through (k/(P+1), p_(k)); r_forward was the step CDF #{p_(k) <= p}/P,
    so r_forward(r_inverse(0.2)) = 0.25 for PITs 0.1, 0.3, 0.6, 0.9."""
    rec = Recalibrator("quantile", pits=torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=torch.float64))
    q = torch.tensor([0.2, 0.3, 0.45, 0.6, 0.8], dtype=torch.float64)
    torch.testing.assert_close(rec.r_forward(rec.r_inverse(q)), q)
    p = torch.tensor([[0.1, 0.2], [0.5, 0.9]], dtype=torch.float64)
    torch.testing.assert_close(rec.r_inverse(rec.r_forward(p)), p)
    ends = rec.r_forward(torch.tensor([0.0, 0.05, 0.95, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ends, torch.tensor([0.0, 0.1, 0.9, 1.0], dtype=torch.float64))
    # tied PITs (0 and 1 are common with few draws) take the rank of the last of their run,
    # as the empirical CDF does; interpolation read the first (R(1) = 0.75, R(0.2) = 0.1875)
    tied = Recalibrator(
        "quantile", pits=torch.tensor([0.0, 0.2, 0.2, 0.2, 0.5, 1.0, 1.0], dtype=torch.float64)
    )
    got = tied.r_forward(torch.tensor([0.0, 0.2, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor([1 / 8, 4 / 8, 5 / 8, 1.0], dtype=torch.float64))


def test_scale_and_level_arguments_are_checked_where_they_do_not_apply_too():
    """``scale=True`` was taken as the scale 1.0, and ``from_z(..., level=2.0)`` went through
    for the zscore map (which does not read the level); both are refused now."""
    with pytest.raises(TypeError, match="scale"):
        Recalibrator("zscore", scale=True)
    z = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="level"):
        Recalibrator.from_z(z, method="zscore", level=2.0)
    assert Recalibrator.from_z(z, method="zscore", level=0.5).scale == pytest.approx(
        float(z.pow(2).mean().sqrt())
    )


def test_conformal_min_scores_is_the_fewest_n_with_a_finite_rank():
    """Brute force over n for float and exact levels; an exact level 1 - 1e-17 (1.0 as a
    float) has no finite rank for any small n; a level outside (0, 1) is refused."""
    from fractions import Fraction

    from bayesphys.diagnostics import conformal_min_scores, conformal_rank

    for level in (0.5, 0.55, 0.8, 0.9, 0.95, 1 - Fraction(1, 3), 1 - Fraction(1, 6)):
        need = next(n for n in range(1, 200) if conformal_rank(n, level) is not None)
        assert conformal_min_scores(level) == need
    assert conformal_rank(10**6, 1 - Fraction("1e-17")) is None
    with pytest.raises(ValueError, match="level"):
        conformal_rank(5, Fraction(1))


def test_scaled_float32_interval_is_symmetric_at_extreme_levels():
    # the scaled quantiles passed the base q already rounded to float32: the upper end of
    # interval(0.999999) lay 0.2% further from the mean than the lower one
    base = GaussianPosterior(torch.tensor([1.0, -2.0]), torch.diag(torch.tensor([4.0, 0.25])))
    post = Recalibrator("zscore", scale=1.5).wrap(base)
    lo, hi = post.interval(0.999999)
    assert lo.dtype == torch.float32
    torch.testing.assert_close(hi - post.mean, post.mean - lo, rtol=1e-6, atol=0)


def test_constructor_checks_the_shape_and_method_of_given_pits():
    """PITs of any shape were flattened without a word (the docstring promises ``[P]``), and
    PITs given to a variance method were kept unchecked and never read."""
    grid = torch.linspace(0.1, 0.9, 6, dtype=torch.float64)
    for bad in (grid.reshape(2, 3), torch.tensor(0.5)):
        with pytest.raises(ValueError, match=r"pits: expected a 1-d set of held-out PITs \[P\]"):
            Recalibrator("quantile", pits=bad)
    with pytest.raises(ValueError, match="pits: only the quantile method reads"):
        Recalibrator("zscore", scale=1.0, pits=grid)
    assert torch.equal(Recalibrator("quantile", pits=grid.flip(0)).pits, grid)
    assert torch.equal(
        Recalibrator("quantile", pits=[0.5, 0.25]).pits, grid.new_tensor([0.25, 0.5])
    )


def test_a_scale_given_to_the_quantile_method_is_refused():
    # it was stored and never read: the quantile map reads held-out PITs only
    grid = torch.linspace(0.1, 0.9, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^scale: the quantile method maps by held-out PITs"):
        Recalibrator("quantile", scale=2.0, pits=grid)
    assert Recalibrator("quantile", pits=grid).scale is None
