"""Expected coverage, HDI coverage, TARP, scores and the field calibration curve."""

from __future__ import annotations

import pytest
import torch

from bayesphys.diagnostics import (
    CoreFamily,
    expected_coverage,
    field_calibration_curve,
    run_sbc,
    score_summary,
    simulate_and_infer,
    tarp,
)

LEVELS = (0.5, 0.8, 0.9, 0.95)


def _sd(level: float, n: int) -> float:
    return (level * (1 - level) / n) ** 0.5


def test_exact_coverage_is_nominal(exact_model):
    rec = simulate_and_infer(exact_model.simulate, exact_model.infer, n_sims=600, n_draws=49)
    for kind in ("central", "hdi"):
        nominal, obs = expected_coverage(rec.truth, rec.draws, LEVELS, kind)
        assert obs.shape == (len(LEVELS), 2)
        for lv, o in zip(nominal.tolist(), obs.mean(1).tolist()):
            # both read off randomised ranks: exactly nominal in expectation at any L
            assert abs(o - lv) < 4 * _sd(lv, 600), (kind, lv)


def test_overconfident_undercovers(overconfident_model):
    m = overconfident_model
    rec = simulate_and_infer(m.simulate, m.infer, n_sims=400, n_draws=49)
    _, obs = expected_coverage(rec.truth, rec.draws, (0.9,))
    # sd halved: P(|Z| < 1.645 / 2) = 0.589
    assert abs(float(obs.mean()) - 0.589) < 0.06


def test_tarp_exact_vs_biased(exact_model, biased_model):
    good = simulate_and_infer(exact_model.simulate, exact_model.infer, n_sims=500, n_draws=99)
    bad = simulate_and_infer(biased_model.simulate, biased_model.infer, n_sims=500, n_draws=99)
    tg, tb = tarp(good.truth, good.draws, seed=0), tarp(bad.truth, bad.draws, seed=0)
    assert tg["ecp"].shape == tg["alpha"].shape == (101,)
    assert tg["ecp"][0] == 0 and tg["ecp"][-1] == 1
    assert tg["pvalue"] > 0.01
    assert float((tg["ecp"] - tg["alpha"]).abs().max()) < 0.08
    # a biased posterior: the ECP curve leaves the diagonal (its ATC over [1/2, 1] can stay
    # small because the curve crosses the diagonal, so the KS p-value is the test)
    assert tb["pvalue"] < 1e-6
    assert float((tb["ecp"] - tb["alpha"]).abs().max()) > 0.15


def test_tarp_atc_sign(overconfident_model):
    """ATC < 0 for an overconfident posterior, > 0 for an underconfident one."""
    from .conftest import NormalNormal

    under = NormalNormal(inflate=2.0)
    over = overconfident_model
    ro = simulate_and_infer(over.simulate, over.infer, n_sims=400, n_draws=99, field_levels=None)
    ru = simulate_and_infer(under.simulate, under.infer, n_sims=400, n_draws=99, field_levels=None)
    to, tu = tarp(ro.truth, ro.draws), tarp(ru.truth, ru.draws)
    assert to["atc"] < -0.03 and tu["atc"] > 0.03
    assert to["pvalue"] < 1e-6 and tu["pvalue"] < 1e-6


def test_scores_prefer_the_exact_posterior(exact_model, biased_model):
    good = simulate_and_infer(exact_model.simulate, exact_model.infer, n_sims=200, n_draws=99)
    bad = simulate_and_infer(biased_model.simulate, biased_model.infer, n_sims=200, n_draws=99)
    sg, sb = score_summary(good.truth, good.draws), score_summary(bad.truth, bad.draws)
    assert sg["crps"] < sb["crps"] and sg["nll"] < sb["nll"]
    # exact Gaussian posterior, sd = 1/sqrt(6), truth drawn from it: E[CRPS] = sd / sqrt(pi)
    expect = (1 / 6**0.5) / torch.pi**0.5
    assert abs(sg["crps"] - float(expect)) < 0.1 * float(expect)


def test_field_calibration_curve_exact_and_overconfident():
    for inflate, lo, hi in ((1.0, 0.85, 0.95), (0.5, 0.5, 0.7)):
        fam = CoreFamily(inflate=inflate)
        u, y = fam.simulate(40, seed=2)
        posts = [fam.infer(y[i]) for i in range(40)]
        nominal, obs = field_calibration_curve(posts, list(u), (0.5, 0.9))
        assert nominal.tolist() == [0.5, 0.9]
        assert lo < float(obs[1]) < hi, (inflate, obs)
        draws = [p.sample((200,)) for p in posts]
        _, obs_d = field_calibration_curve(draws, list(u), (0.9,))
        assert abs(float(obs_d[0]) - float(obs[1])) < 0.05


def test_row_metrics_keys(exact_model):
    res = run_sbc(exact_model.simulate, exact_model.infer, n_sims=50, n_draws=19, seed=0)
    m = res.metrics()
    for key in ("coverage50", "coverage90", "coverage95", "sbc_pvalue", "tarp_atc", "crps"):
        assert isinstance(m[key], float)
    assert m["seconds"] > 0


def test_coverage_input_checks():
    import pytest

    from bayesphys.diagnostics import hdi_coverage

    truth = torch.randn(20, 3, dtype=torch.float64)
    draws = torch.randn(20, 9, 1, dtype=torch.float64)  # K = 1 draws for K = 3 truths
    for fn in (
        lambda: hdi_coverage(truth, draws, 0.9),
        lambda: expected_coverage(truth, draws, (0.9,), "hdi"),
        lambda: tarp(truth, draws),
    ):
        with pytest.raises(ValueError, match="summaries"):
            fn()
    ok = torch.randn(20, 9, 3, dtype=torch.float64)
    for kind in ("central", "hdi"):
        for bad in (1.5, 0.0, -0.1):
            with pytest.raises(ValueError, match="level"):
                expected_coverage(truth, ok, (bad,), kind)
    nan = ok.clone()
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="draws"):
        tarp(truth, nan)


def test_tarp_exact_discrete_posterior():
    """Exact posterior of a parameter on {0, 1, 2}: draws tie with the truth, and TARP must
    break those ties at random (like the SBC ranks) to stay uniform."""
    vals = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    n, L = 400, 49
    theta = vals[torch.randint(0, 3, (n,), generator=g)]
    y = theta + torch.randn(n, generator=g, dtype=torch.float64)
    w = torch.softmax(-0.5 * (y[:, None] - vals) ** 2, 1)
    draws = vals[torch.multinomial(w, L, replacement=True, generator=g)]
    t = tarp(theta[:, None], draws[:, :, None])
    assert t["pvalue"] > 1e-3
    assert abs(t["atc"]) < 0.03


def test_tarp_atc_integrates_over_the_upper_half_for_any_grid():
    """With an even n_alpha 1/2 is no grid point: the integral started above it (n_alpha = 2
    always gave ATC = 0); it now joins ECP(1/2) to the grid's upper points."""
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(300, 2, generator=g, dtype=torch.float64)
    draws = 0.4 * torch.randn(300, 50, 2, generator=g, dtype=torch.float64)  # overconfident
    f = tarp(truth, draws)["f"]
    # the exact integral of ECP(a) - a over [1/2, 1] for the empirical ECP
    a = torch.linspace(0.5, 1, 20001, dtype=torch.float64)
    exact = float(torch.trapezoid((f[None, :] < a[:, None]).double().mean(1) - a, a))
    for na in (2, 4, 100, 101, 1001):
        assert abs(tarp(truth, draws, n_alpha=na)["atc"] - exact) <= 0.6 / (na - 1) + 1e-3, na
    assert tarp(truth, draws, n_alpha=2)["atc"] != 0.0


def test_field_calibration_curve_of_exact_draws_is_nominal_at_small_s():
    """S = 19 exact draws, as a tensor or a SamplePosterior: interpolated empirical quantiles
    gave 0.455 for 0.5 and 0.817 for 0.9; the randomised PIT is nominal within Monte-Carlo
    error (10000 points: sd <= 0.005)."""
    from bayesphys import SamplePosterior

    g = torch.Generator().manual_seed(0)
    truths = [torch.randn(200, generator=g, dtype=torch.float64) for _ in range(50)]
    draws = [torch.randn(19, 200, generator=g, dtype=torch.float64) for _ in range(50)]
    _, obs = field_calibration_curve(draws, truths, (0.5, 0.9))
    for lv, o in zip((0.5, 0.9), obs.tolist()):
        assert abs(o - lv) < 0.015, (lv, o)
    sp = [SamplePosterior(d, chains=False) for d in draws]
    _, obs_sp = field_calibration_curve(sp, truths, (0.5, 0.9))
    assert torch.equal(obs_sp, obs)  # the same draws, the same seeded PIT
    # at 0.55 the interval ends fall inside a PIT cell (20 * 0.225 = 4.5), where V decides
    _, a = field_calibration_curve(draws, truths, (0.55,), seed=0)
    _, b = field_calibration_curve(draws, truths, (0.55,), seed=1)
    assert not torch.equal(a, b) and abs(float(a[0]) - 0.55) < 0.015
    with pytest.raises(ValueError, match=r"posteriors\[0\]/truths\[0\]"):
        field_calibration_curve(draws, [t[:10] for t in truths])


def test_field_calibration_curve_compares_a_float_truth_with_integer_draws_unrounded():
    """Integer draws 0, 1, 2, 3 and a truth 1.5 at every point: two draws below, none tied,
    so u = (2 + V)/5 lies in [0.4, 0.6) and every point is inside the central 0.2 interval.
    Casting the truth to the draws' dtype read it as 1 (a tie): coverage about 0.5."""
    draws = torch.arange(4).reshape(4, 1).expand(4, 500).contiguous()
    truth = torch.full((500,), 1.5, dtype=torch.float64)
    _, obs = field_calibration_curve([draws], [truth], (0.2, 0.5))
    _, obs_float = field_calibration_curve([draws.double()], [truth], (0.2, 0.5))
    assert obs[0] == 1.0
    assert torch.equal(obs, obs_float)


@pytest.mark.parametrize("scale", [1e-14, 1e8])
def test_tarp_is_unit_free(overconfident_model, scale):
    """TARP normalises each parameter by its range: rescaling a parameter changes nothing
    (a floor of 1e-12 on the range made parameters spanning less than that score otherwise)."""
    m = overconfident_model
    rec = simulate_and_infer(m.simulate, m.infer, n_sims=200, n_draws=49, field_levels=None)
    a = torch.ones(rec.truth.shape[-1], dtype=rec.truth.dtype)
    a[0] = scale
    base, scaled = tarp(rec.truth, rec.draws, seed=0), tarp(rec.truth * a, rec.draws * a, seed=0)
    torch.testing.assert_close(scaled["ecp"], base["ecp"])
    assert scaled["atc"] == pytest.approx(base["atc"], abs=1e-12)
    # a parameter that never varies keeps a unit range and does not break the scores
    const = tarp(rec.truth * 0, rec.draws * 0, seed=0)
    assert const["ecp"].isfinite().all()


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64])
def test_integer_and_bool_summaries_are_scored_as_their_float_values(dtype):
    """A count or a model indicator as a summary: TARP, the HDI rank and the scores give what
    the same values as float64 give (bool summaries crashed TARP and the HDI rank on a bool
    subtraction; integer ones crashed the scores, and so ``analyse``)."""
    from bayesphys.diagnostics import hdi_pit

    g = torch.Generator().manual_seed(0)
    hi = 2 if dtype == torch.bool else 4
    truth = torch.randint(0, hi, (60, 2), generator=g).to(dtype)
    draws = torch.randint(0, hi, (60, 19, 2), generator=g).to(dtype)
    t64, d64 = truth.double(), draws.double()
    got, want = tarp(truth, draws, seed=3), tarp(t64, d64, seed=3)
    assert torch.equal(got["f"], want["f"]) and got["pvalue"] == want["pvalue"]
    assert torch.equal(hdi_pit(truth, draws, seed=3), hdi_pit(t64, d64, seed=3))
    assert score_summary(truth, draws) == score_summary(t64, d64)


def test_central_coverage_of_exchangeable_truths_is_nominal():
    """A truth drawn like its draws is inside the central ``level`` interval with probability
    ``level`` (|u - 1/2| <= level / 2 for the randomised PIT u), within Monte-Carlo error."""
    from bayesphys.diagnostics import central_coverage

    g = torch.Generator().manual_seed(4)
    draws = torch.randn(4000, 10, 1, generator=g, dtype=torch.float64)
    truth = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    for level in (0.2, 0.5, 0.8):
        cov = float(central_coverage(truth, draws, level).double().mean())
        assert abs(cov - level) < 4 * _sd(level, 4000), level


def _brute_force_hdi_depth(pool):
    """Depth of each pooled value (numpy, one problem and summary): the first run size m whose
    first shortest run of m sorted values contains it, ends included; n if none."""
    import numpy as np

    n = len(pool)
    s = np.sort(pool)
    depth = np.full(n, n)
    for m in range(2, n):
        j = int(np.argmin(s[m - 1 :] - s[: n - m + 1]))
        for i in range(n):
            if depth[i] == n and s[j] <= pool[i] <= s[j + m - 1]:
                depth[i] = m
    return depth


@pytest.mark.parametrize("discrete", [False, True])
def test_hdi_pit_against_a_brute_force_depth(discrete):
    """The randomised HDI rank u: floor(u (L + 1)) lies in [less, less + ties] of the truth's
    depth among the draws' depths, the depths found by brute force (every run size for
    L <= 101, ends inclusive: tied values share a depth)."""
    from bayesphys.diagnostics import hdi_pit

    g = torch.Generator().manual_seed(1)
    truth = torch.randn(30, 2, generator=g, dtype=torch.float64)
    draws = torch.randn(30, 12, 2, generator=g, dtype=torch.float64)
    if discrete:  # ties among values and among run widths
        truth, draws = (2 * truth).round(), (2 * draws).round()
    u = hdi_pit(truth, draws, seed=3)
    for i in range(30):
        for k in range(2):
            pool = torch.cat([truth[i : i + 1, k], draws[i, :, k]]).numpy()
            d = _brute_force_hdi_depth(pool)
            less, ties = int((d[1:] < d[0]).sum()), int((d[1:] == d[0]).sum())
            x = float(u[i, k]) * 13
            assert less <= x < less + ties + 1, (i, k)


def test_tarp_is_translation_free_and_its_atc_is_the_trapezoid_of_its_ecp():
    """TARP min-max normalises each parameter over truths and draws, so shifting a parameter
    changes nothing; ATC is the trapezoid rule of ECP(a) - a on [1/2, 1] over 1/2 and the grid
    points above it, ECP(a) = mean(f < a)."""
    import numpy as np

    g = torch.Generator().manual_seed(2)
    truth = torch.randn(200, 2, generator=g, dtype=torch.float64)
    draws = 0.6 * torch.randn(200, 30, 2, generator=g, dtype=torch.float64)
    base = tarp(truth, draws, seed=1)
    shift = torch.tensor([5.0, -3.0], dtype=torch.float64)
    moved = tarp(truth + shift, draws + shift, seed=1)
    torch.testing.assert_close(moved["f"], base["f"], rtol=0, atol=1e-12)
    f = base["f"].numpy()
    alpha = base["alpha"].numpy()
    a = np.concatenate([[0.5], alpha[alpha > 0.5]])
    y = (f[None, :] < a[:, None]).mean(1) - a
    trapezoid = float((0.5 * (y[1:] + y[:-1]) * np.diff(a)).sum())
    assert base["atc"] == pytest.approx(trapezoid, abs=1e-12)


def test_score_summary_against_brute_force_crps_and_gaussian_nll():
    """CRPS = mean over (i, k) of E|X - y| - E|X - X'| / 2 over the L draws (all pairs), NLL
    that of N(sample mean, unbiased sample variance), against numpy and scipy."""
    import numpy as np
    from scipy import stats

    g = torch.Generator().manual_seed(6)
    truth = torch.randn(7, 3, generator=g, dtype=torch.float64)
    draws = 1.5 + 0.7 * torch.randn(7, 9, 3, generator=g, dtype=torch.float64)
    out = score_summary(truth, draws)
    t, d = truth.numpy(), draws.numpy()
    e1 = np.abs(d - t[:, None, :]).mean(1)
    e2 = np.abs(d[:, :, None, :] - d[:, None, :, :]).mean((1, 2))
    assert out["crps"] == pytest.approx(float((e1 - e2 / 2).mean()), rel=1e-12)
    nll = -stats.norm.logpdf(t, d.mean(1), d.std(1, ddof=1))
    assert out["nll"] == pytest.approx(float(nll.mean()), rel=1e-12)
