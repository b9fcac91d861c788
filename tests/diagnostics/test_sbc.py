"""SBC ranks, uniformity tests, PIT-ECDF bands and the InferenceData export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.diagnostics import (
    CoreFamily,
    ecdf_band,
    pit_ecdf,
    plot_pit_ecdf,
    ranks_inference_data,
    run_sbc,
    sbc_ranks,
    sbc_uniformity,
)
from bayesphys.diagnostics.pit_ecdf import _simulated_band
from bayesphys.diagnostics.sbc import sbc_pit
from bayesphys.inference_data import group_dataset, group_names, load_netcdf, save_netcdf


def test_ranks_count_draws_below_truth():
    truth = torch.tensor([[0.5], [2.0], [-1.0]], dtype=torch.float64)
    draws = torch.tensor([0.0, 1.0, 0.2], dtype=torch.float64).reshape(1, 3, 1).expand(3, 3, 1)
    assert sbc_ranks(truth, draws).flatten().tolist() == [2, 3, 0]


def test_ties_are_broken_uniformly():
    truth = torch.zeros(4000, 1, dtype=torch.float64)
    draws = torch.zeros(4000, 3, 1, dtype=torch.float64)  # every draw ties with the truth
    counts = torch.bincount(sbc_ranks(truth, draws, seed=1).flatten(), minlength=4)
    assert counts.numel() == 4
    assert (counts.double() / 4000 - 0.25).abs().max() < 0.03


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="truth/draws"):
        sbc_ranks(torch.zeros(3), torch.zeros(3, 4, 1))
    with pytest.raises(ValueError, match="ranks"):
        sbc_uniformity(torch.tensor([[0], [7]]), n_draws=5)


def test_exact_posterior_not_rejected(exact_model):
    res = run_sbc(exact_model.simulate, exact_model.infer, n_sims=400, n_draws=49, seed=0)
    assert res.record.names == ["theta_0", "theta_1"]
    assert res.ranks.min() >= 0 and res.ranks.max() <= 49
    assert res.uniformity["pvalue"] > 0.01
    assert res.uniformity["pvalue_ks"] > 0.01


def test_overconfident_posterior_rejected(overconfident_model):
    m = overconfident_model
    res = run_sbc(m.simulate, m.infer, n_sims=400, n_draws=49, seed=0)
    assert res.uniformity["pvalue"] < 1e-4
    assert res.uniformity["pvalue_ks"] < 1e-4
    # overconfidence piles ranks at both ends (U shape)
    r = res.ranks.flatten()
    ends = ((r <= 2) | (r >= 47)).double().mean()
    assert ends > 3 * 6 / 50


def test_field_summaries_exact_vs_overconfident():
    exact, over = CoreFamily(), CoreFamily(inflate=0.5)
    r1 = run_sbc(exact.simulate, exact.infer, exact.summaries(), n_sims=150, n_draws=29, seed=3)
    r2 = run_sbc(over.simulate, over.infer, over.summaries(), n_sims=150, n_draws=29, seed=3)
    assert r1.record.names == ["u(0.25)", "u(0.5)", "u(0.9)", "mass", "max"]
    assert r1.uniformity["pvalue"] > 0.01
    assert r2.uniformity["pvalue"] < 1e-4


def test_ecdf_band_is_simultaneous():
    """A fraction ~prob of uniform ECDFs stays inside the band everywhere."""
    n, z = 100, np.arange(1, 50) / 50
    lo, hi, method = ecdf_band(n, z, 0.9)
    assert lo.shape == hi.shape == z.shape and "band" in method
    rng = np.random.default_rng(0)
    u = rng.uniform(size=(2000, n))
    f = (u[:, :, None] < z[None, None, :]).mean(1)
    inside = ((f >= lo - 1e-12) & (f <= hi + 1e-12)).all(1).mean()
    assert 0.85 < inside < 0.96


def test_simulated_band_fallback_close_to_arviz():
    z = np.arange(1, 40) / 40
    lo_a, hi_a, _ = ecdf_band(80, z, 0.95)
    lo_s, hi_s = _simulated_band(80, z, 0.95, n_trials=1000)
    assert np.abs(lo_a - lo_s).max() <= 0.03
    assert np.abs(hi_a - hi_s).max() <= 0.03


def test_pit_ecdf_values_by_hand():
    # L = 19 draws: z_m = m / 20 for m = 1..19 and F(z_m) = #{r_i < m} / N. The rank 0 is below
    # every m, the rank 5 below m >= 6 only, the rank 19 (= L) below none of them.
    z, f = pit_ecdf(torch.tensor([[0], [5], [19]]), 19)
    np.testing.assert_array_equal(z, np.arange(1, 20) / 20)
    want = np.array([1 / 3] * 5 + [2 / 3] * 14)[:, None]
    np.testing.assert_allclose(f, want, rtol=0, atol=1e-15)
    # two summaries, a 1-D input and float ranks: each column is its own ECDF
    z2, f2 = pit_ecdf(torch.tensor([[1.0, 3.0], [2.0, 0.0], [3.0, 3.0], [0.0, 1.0]]), 3)
    np.testing.assert_array_equal(z2, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(f2, [[0.25, 0.25], [0.5, 0.5], [0.75, 0.5]], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(pit_ecdf(torch.tensor([2, 0, 1]), 3)[1][:, 0], [1 / 3, 2 / 3, 1])


def test_pit_ecdf_thins_a_long_grid_to_100_points():
    # L = 999: the grid is the rounded linspace(1, L, 100) of ranks m, over L + 1
    ranks = torch.arange(1000).reshape(-1, 1)  # every rank once: F(m / 1000) = m / 1000
    z, f = pit_ecdf(ranks, 999)
    m = np.unique(np.linspace(1, 999, 100).round().astype(int))
    assert len(z) == 100 and z[0] == 1 / 1000 and z[-1] == 999 / 1000
    np.testing.assert_allclose(z, m / 1000, rtol=0, atol=1e-15)
    np.testing.assert_allclose(f[:, 0], m / 1000, rtol=0, atol=1e-15)


def test_pit_ecdf_and_plot(exact_model):
    res = run_sbc(exact_model.simulate, exact_model.infer, n_sims=60, n_draws=19, seed=0)
    z, f = pit_ecdf(res.ranks, 19)
    assert z.shape == (19,) and f.shape == (19, 2)
    assert np.all(np.diff(f, axis=0) >= 0)
    ax = plot_pit_ecdf(res.ranks, 19, res.record.names)
    assert len(ax.lines) >= 2
    import matplotlib.pyplot as plt

    plt.close("all")


def test_ranks_inference_data_roundtrip(tmp_path, exact_model):
    res = run_sbc(exact_model.simulate, exact_model.infer, n_sims=30, n_draws=9, seed=0)
    idata = res.to_inference_data()
    ds = group_dataset(idata, "prior_sbc")
    assert ds["theta_0"].dims == ("sbc_simulation",)
    assert int(ds["sbc_n_draws"]) == 9
    assert ds.attrs["method"] == "method"
    np.testing.assert_array_equal(ds["theta_1"].values, res.ranks[:, 1].numpy())
    post = exact_model.infer(exact_model.simulate(1, seed=0)[1][0]).to_inference_data(
        num_samples=20
    )
    both = ranks_inference_data(res.ranks, res.record.names, 9, idata=post)
    path = save_netcdf(both, tmp_path / "sbc.nc")
    back = load_netcdf(path)
    assert "prior_sbc" in group_names(back) and "posterior" in group_names(back)
    np.testing.assert_array_equal(
        group_dataset(back, "prior_sbc")["theta_0"].values, res.ranks[:, 0].numpy()
    )


def test_sbc_on_device(device):
    """Simulation and posteriors on ``device``; diagnostics come back on the CPU."""
    from .conftest import NormalNormal

    class OnDevice(NormalNormal):
        def simulate(self, n, *, seed):
            theta, y = super().simulate(n, seed=seed)
            return theta.to(device), y.to(device)

        def infer(self, y):
            post = super().infer(y.cpu())
            return post.to(y.device)

    m = OnDevice()
    res = run_sbc(m.simulate, m.infer, n_sims=200, n_draws=29, seed=0)
    assert res.ranks.device.type == "cpu"
    assert res.uniformity["pvalue"] > 0.01
    assert 0.8 < res.metrics()["coverage90"] < 1.0


@pytest.mark.parametrize("n_draws", [100, 7, 1])
def test_uniform_ranks_any_l(n_draws):
    """Exactly uniform ranks pass for any L (101 rank values is prime: unequal bins)."""
    gen = torch.Generator().manual_seed(0)
    ranks = torch.randint(0, n_draws + 1, (1000, 3), generator=gen)
    out = sbc_uniformity(ranks, n_draws)
    assert 2 <= out["n_bins"] <= min(20, n_draws + 1)
    assert out["pvalue"] > 0.01
    skew = ranks.clamp(max=n_draws // 2 + 1) if n_draws > 1 else ranks * 0
    assert sbc_uniformity(skew, n_draws)["pvalue"] < 1e-6


def test_non_finite_draws_are_refused(exact_model):
    """A NaN draw compares neither below nor equal to the truth: refuse it rather than count it
    silently as a draw above the truth."""
    truth = torch.zeros(3, 1, dtype=torch.float64)
    draws = torch.randn(3, 5, 1, dtype=torch.float64)
    draws[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="draws"):
        sbc_ranks(truth, draws)
    with pytest.raises(ValueError, match="truth"):
        sbc_ranks(torch.full((3, 1), float("nan"), dtype=torch.float64), draws.nan_to_num())

    def infer(y):
        d = exact_model.infer(y).sample((50,))
        d[::3] = float("nan")  # e.g. diverged chains
        return d

    with pytest.raises(ValueError, match="problem 0"):
        run_sbc(exact_model.simulate, infer, n_sims=20, n_draws=9, seed=0)


def test_uniformity_argument_checks():
    ranks = torch.tensor([[0], [3], [5], [1]])
    with pytest.raises(ValueError, match="n_draws"):
        sbc_uniformity(ranks * 0, n_draws=0)
    out = sbc_uniformity(ranks.double(), n_draws=5)  # integral floats are accepted
    assert out["pvalue"] == sbc_uniformity(ranks, n_draws=5)["pvalue"]
    with pytest.raises(ValueError, match="ranks"):
        sbc_uniformity(ranks.double() + 0.5, n_draws=5)


def test_metrics_leave_out_levels_the_run_did_not_ask_for(exact_model):
    res = run_sbc(
        exact_model.simulate, exact_model.infer, n_sims=100, n_draws=19, seed=0, levels=(0.8,)
    )
    m = res.metrics()  # used to raise "level: 0.5 not among [0.8]"
    assert m["coverage50"] is None and m["coverage90"] is None and m["hdi90"] is None
    assert m["sbc_pvalue"] == res.uniformity["pvalue"]
    full = run_sbc(exact_model.simulate, exact_model.infer, n_sims=100, n_draws=19, seed=0)
    assert 0 < full.metrics()["coverage90"] <= 1


def test_uniformity_accepts_narrow_integer_ranks():
    """``ranks * bins`` was computed in the ranks' dtype: uint8 overflowed, int16 wrapped."""
    g = torch.Generator().manual_seed(0)
    r = torch.randint(0, 256, (200, 1), generator=g)
    ref = sbc_uniformity(r, 255)
    for dt in (torch.uint8, torch.int16, torch.int32):
        out = sbc_uniformity(r.to(dt), 255)
        assert out["pvalue"] == ref["pvalue"]
    r2 = torch.randint(0, 2001, (200, 1), generator=g)
    assert sbc_uniformity(r2.to(torch.int16), 2000)["pvalue"] == sbc_uniformity(r2, 2000)["pvalue"]


def test_sbc_pit_keeps_the_shape_of_its_ranks_and_n_bins_is_clamped():
    """As documented: ranks [N] -> PIT [N] and [N, K] -> [N, K] (the same values column by
    column); an explicit n_bins above L + 1 is reduced to L + 1."""
    r = torch.tensor([0, 1, 2, 3, 3, 0])
    u1, u2 = sbc_pit(r, 3), sbc_pit(r[:, None], 3)
    assert u1.shape == (6,) and u2.shape == (6, 1)
    torch.testing.assert_close(u1, u2[:, 0])
    assert bool(((u1 >= r / 4) & (u1 < (r + 1) / 4)).all())
    ranks = torch.randint(0, 10, (200, 2), generator=torch.Generator().manual_seed(0))
    assert sbc_uniformity(ranks, 9, n_bins=50)["n_bins"] == 10
    assert sbc_uniformity(ranks, 9, n_bins=5)["n_bins"] == 5


def test_the_combined_pvalues_are_bonferroni_over_the_summaries():
    """pvalue = min(1, K * min_k p_k), for chi-square and KS (dropping the factor K passed
    every test that compared the p-value with a loose threshold)."""
    g = torch.Generator().manual_seed(3)
    ranks = torch.randint(0, 20, (200, 3), generator=g)
    ranks[:, 1] = torch.randint(0, 14, (200,), generator=g)  # one summary a little off
    out = sbc_uniformity(ranks, n_draws=19)
    assert out["pvalue"] == min(1.0, 3 * min(out["chi2_pvalue"]))
    assert out["pvalue_ks"] == min(1.0, 3 * min(out["ks_pvalue"]))
    assert out["pvalue"] < 1.0 and out["pvalue_ks"] < 1.0  # the factor 3 is not clipped away
    one = sbc_uniformity(ranks[:, 1], n_draws=19)  # one summary: no correction
    assert one["pvalue"] == one["chi2_pvalue"][0]


def test_uniform_ranks_are_rejected_at_about_the_nominal_rate():
    """Over 200 runs of exactly uniform ranks (K = 10 summaries), the combined test rejects at
    5 % in at most 5 % + Monte Carlo slack of them (Bonferroni is conservative)."""
    g = torch.Generator().manual_seed(0)
    rejected = sum(
        sbc_uniformity(torch.randint(0, 20, (100, 10), generator=g), n_draws=19)["pvalue"] < 0.05
        for _ in range(200)
    )
    assert rejected <= 0.05 * 200 + 3 * (200 * 0.05 * 0.95) ** 0.5  # 16 of 200


@settings(max_examples=40, deadline=None)
@given(
    n_sims=st.integers(1, 5),
    n_draws=st.integers(1, 8),
    k=st.integers(1, 3),
    levels=st.integers(2, 6),
    seed=st.integers(0, 10_000),
)
def test_ranks_against_a_brute_force_count_with_ties(n_sims, n_draws, k, levels, seed):
    """Each rank lies between #(draws < truth) and that plus #(draws == truth), counted one by
    one (equal to the first without ties); it does not depend on the order of the draws nor
    on a strictly increasing relabelling of the values; its PIT lies in its rank's bin."""
    g = torch.Generator().manual_seed(seed)
    # few distinct values: ties are common
    truth = torch.randint(0, levels, (n_sims, k), generator=g).double()
    draws = torch.randint(0, levels, (n_sims, n_draws, k), generator=g).double()
    ranks = sbc_ranks(truth, draws, seed=seed)
    assert ranks.shape == (n_sims, k) and ranks.dtype == torch.long
    for i in range(n_sims):
        for j in range(k):
            vals = [float(v) for v in draws[i, :, j]]
            less = sum(v < float(truth[i, j]) for v in vals)
            ties = sum(v == float(truth[i, j]) for v in vals)
            assert less <= int(ranks[i, j]) <= less + ties
    perm = torch.randperm(n_draws, generator=g)
    assert torch.equal(sbc_ranks(truth, draws[:, perm], seed=seed), ranks)
    assert torch.equal(sbc_ranks(truth.exp() * 3 - 1, draws.exp() * 3 - 1, seed=seed), ranks)
    pit = sbc_pit(ranks, n_draws, seed=seed)
    assert bool((pit >= ranks / (n_draws + 1)).all() and (pit < (ranks + 1) / (n_draws + 1)).all())
    # continuous values: no ties, the rank is the count itself
    cont = draws + 0.5 * torch.rand(draws.shape, generator=g, dtype=torch.float64) + 0.25
    less = (cont < truth[:, None, :]).sum(1)
    assert torch.equal(sbc_ranks(truth, cont, seed=seed), less)


def test_a_single_draw_is_refused_before_any_simulation():
    """L = 1 cannot be scored (the moment-matched NLL needs a variance of the draws): run_sbc
    refuses it before simulating, where it used to run every inference first."""
    fam = CoreFamily()
    calls = []

    def simulate(n, *, seed):
        calls.append(n)
        return fam.simulate(n, seed=seed)

    with pytest.raises(ValueError, match="draws"):
        run_sbc(simulate, fam.infer, fam.summaries(), n_sims=5, n_draws=1, progress=False)
    assert calls == []


def test_complex_truths_or_draws_are_refused_by_name():
    """Complex values passed the shared check and failed later with a raw torch error."""
    truth = torch.zeros(4, 2, dtype=torch.complex128)
    draws = torch.zeros(4, 9, 2, dtype=torch.complex128)
    with pytest.raises(TypeError, match="truth: expected real values"):
        sbc_ranks(truth, draws.real)
    with pytest.raises(TypeError, match="draws: expected real values"):
        sbc_ranks(truth.real, draws)


def test_sbc_pit_spreads_each_rank_uniformly_over_its_bin():
    """u = (r + V)/(L+1) with V ~ U(0, 1): the offset V = u (L+1) - r inside each rank's bin is
    itself uniform (a fixed offset, e.g. the bin's midpoint, is no randomised PIT: its values
    sit on L + 1 points and a KS test against U(0, 1) rejects it)."""
    from scipy import stats

    r = torch.randint(0, 4, (2000,), generator=torch.Generator().manual_seed(5))
    v = (sbc_pit(r, 3, seed=2) * 4 - r).numpy()
    assert v.min() >= 0.0 and v.max() < 1.0
    assert stats.kstest(v, "uniform").pvalue > 1e-3
    assert v.min() < 0.01 and v.max() > 0.99


@pytest.mark.parametrize(("n_sims", "want"), [(12, 2), (50, 10), (99, 19), (400, 20)])
def test_default_chi2_bins_are_min_20_and_n_over_5(n_sims, want):
    """B = min(20, N // 5) (at least 2, at most L + 1): about five expected ranks per bin."""
    ranks = torch.randint(0, 100, (n_sims, 1), generator=torch.Generator().manual_seed(0))
    assert sbc_uniformity(ranks, 99)["n_bins"] == want


def test_a_rank_above_l_is_refused():
    """Ranks lie in 0..L: L + 1 is out of range (it would land in a bin past the last)."""
    with pytest.raises(ValueError, match=r"ranks: expected values in 0\.\.5"):
        sbc_uniformity(torch.tensor([[0], [6], [2]]), n_draws=5)
    with pytest.raises(ValueError, match=r"ranks: expected values in 0\.\.5"):
        sbc_pit(torch.tensor([0, 6]), 5)
    sbc_uniformity(torch.tensor([[0], [5], [2]]), n_draws=5)  # L itself is a rank
