"""The cross-fitted joint SBC test: exact under the null (including a skewed law with ties and
singular pools), power against ignored correlation, affine invariance, input checks."""

from __future__ import annotations

import json

import pytest
import torch

from bayesphys._bench import repo_root, script_module
from bayesphys.diagnostics import sbc_joint_crossfit, sbc_joint_ranks, sbc_uniformity
from tests.diagnostics.test_joint_ranks import _exchangeable_pool

# the benchmark's posteriors of known calibration (benchmarks/calibration_power.py)
record = script_module(str(repo_root() / "benchmarks" / "calibration_power.py")).record


def test_the_test_holds_its_level_for_an_exchangeable_truth():
    """Over 300 runs (N = 60, L = 19, K = 3, a skewed correlated law with a binary summary)
    the chi-square and KS p-values reject at 1 % within the binomial band, and the ranks
    pooled over the runs are uniform on 0..19."""
    g = torch.Generator().manual_seed(0)
    reps, rej_chi2, rej_ks, all_ranks = 300, 0, 0, []
    for r in range(reps):
        truth, draws = _exchangeable_pool(60, 19, 3, g)
        out = sbc_joint_crossfit(truth, draws, seed=r)
        assert out["ranks"].shape == (60,) and out["ranks"].dtype == torch.long
        rej_chi2 += out["pvalue"] < 0.01
        rej_ks += out["pvalue_ks"] < 0.01
        all_ranks.append(out["ranks"])
    sd = (0.01 * 0.99 / reps) ** 0.5
    assert rej_chi2 / reps <= 0.01 + 3 * sd and rej_ks / reps <= 0.01 + 3 * sd
    pooled = sbc_uniformity(torch.cat(all_ranks), 19)
    assert pooled["pvalue"] > 1e-3 and pooled["pvalue_ks"] > 1e-3


def test_exact_gaussian_posteriors_hold_the_level_and_ignored_correlation_is_rejected():
    """The benchmark's K = 2 cases at N = 200, L = 99: exact posteriors are not rejected at
    1 % in 5 seeded runs; draws with the exact marginals and no correlation are rejected in
    every one (the pooled Mahalanobis rank rejects them in about a third of runs)."""
    g = torch.Generator().manual_seed(1)
    for r in range(5):
        exact = record("exact K=2", 200, 99, g)
        assert sbc_joint_crossfit(exact.truth, exact.draws, seed=r)["pvalue"] > 0.01
        dec = record("decorrelated K=2", 200, 99, g)
        out = sbc_joint_crossfit(dec.truth, dec.draws, seed=r)
        assert out["pvalue"] < 1e-4 and out["pvalue_ks"] < 1e-4
        # M learned on each half finds the ignored correlation (0.76 in the truths' frame)
        for m in out["m"]:
            assert m[0, 1] / (m[0, 0] * m[1, 1]).sqrt() > 0.5


def test_the_result_is_invariant_to_an_affine_map_and_to_the_order_of_the_draws():
    g = torch.Generator().manual_seed(2)
    rec = record("decorrelated K=2", 100, 49, g)
    a = torch.tensor([[3.0, 1.0], [-0.5, 0.2]], dtype=torch.float64)
    b = torch.tensor([5.0, -7.0], dtype=torch.float64)
    base = sbc_joint_crossfit(rec.truth, rec.draws, seed=4)
    moved = sbc_joint_crossfit(rec.truth @ a.T + b, rec.draws @ a.T + b, seed=4)
    assert torch.equal(base["ranks"], moved["ranks"]) and torch.equal(base["half"], moved["half"])
    assert base["pvalue"] == pytest.approx(moved["pvalue"], rel=1e-9)
    assert base["pvalue_ks"] == pytest.approx(moved["pvalue_ks"], rel=1e-9)
    perm = torch.randperm(49, generator=g)
    shuffled = sbc_joint_crossfit(rec.truth, rec.draws[:, perm], seed=4)
    assert torch.equal(base["ranks"], shuffled["ranks"])


def test_the_split_is_seeded_random_halves_and_the_output_is_complete():
    g = torch.Generator().manual_seed(3)
    rec = record("exact K=2", 41, 9, g)
    out = sbc_joint_crossfit(rec.truth, rec.draws, seed=7)
    assert set(out) >= {"pvalue", "pvalue_ks", "ranks", "half", "pvalues", "pvalues_ks", "m"}
    assert int((out["half"] == 0).sum()) == 20 and int((out["half"] == 1).sum()) == 21
    assert not torch.equal(out["half"], torch.arange(41) % 2)
    again = sbc_joint_crossfit(rec.truth, rec.draws, seed=7)
    assert torch.equal(out["ranks"], again["ranks"]) and torch.equal(out["half"], again["half"])
    other = sbc_joint_crossfit(rec.truth, rec.draws, seed=8)
    assert not torch.equal(out["half"], other["half"])
    assert out["ranks"].min() >= 0 and out["ranks"].max() <= 9
    assert out["pvalue"] == min(1.0, 2 * min(out["pvalues"]))
    assert out["pvalue_ks"] == min(1.0, 2 * min(out["pvalues_ks"]))
    assert [tuple(m.shape) for m in out["m"]] == [(2, 2), (2, 2)]


def test_singular_pools_give_uniform_ranks():
    """K >= L and a constant summary (dropped by the pseudo-inverse roots) keep the ranks
    uniform, and no value is infinite or NaN."""
    g = torch.Generator().manual_seed(4)
    truth, draws = torch.randn(2000, 6, generator=g), torch.randn(2000, 4, 6, generator=g)
    out = sbc_joint_crossfit(truth, draws)
    assert sbc_uniformity(out["ranks"], 4)["pvalue"] > 1e-3
    assert all(bool(torch.isfinite(m).all()) for m in out["m"])
    truth = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    draws = torch.randn(2000, 9, 2, generator=g, dtype=torch.float64)
    truth[:, 1], draws[..., 1] = 2.0, 2.0
    out = sbc_joint_crossfit(truth, draws, seed=1)
    assert sbc_uniformity(out["ranks"], 9)["pvalue"] > 1e-3
    assert out["pvalue"] > 1e-3
    # integer summaries are taken as float64; N = 4 is the smallest accepted
    ints = torch.randint(0, 3, (4, 7, 2), generator=g)
    assert sbc_joint_crossfit(ints[:, 0], ints[:, 1:])["ranks"].shape == (4,)


def test_one_summary_works():
    g = torch.Generator().manual_seed(5)
    rec = record("exact", 100, 49, g)
    out = sbc_joint_crossfit(rec.truth, rec.draws)
    assert out["ranks"].shape == (100,) and 0 <= out["pvalue"] <= 1


def test_bad_input_is_refused():
    t, d = torch.randn(10, 2), torch.randn(10, 5, 2)
    with pytest.raises(TypeError, match="truth"):
        sbc_joint_crossfit(t.numpy(), d)
    with pytest.raises(ValueError, match="truth/draws"):
        sbc_joint_crossfit(t, d[:5])
    with pytest.raises(ValueError, match="K = 2"):
        sbc_joint_crossfit(t, torch.randn(10, 5, 3))
    with pytest.raises(ValueError, match="N >= 4"):
        sbc_joint_crossfit(t[:3], d[:3])
    bad = d.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="draws"):
        sbc_joint_crossfit(t, bad)
    with pytest.raises((TypeError, ValueError), match="seed"):
        sbc_joint_crossfit(t, d, seed=1.5)
    # the pooled rank and this test agree on what a valid input is
    assert sbc_joint_ranks(t, d).shape == (10,)


def test_the_benchmark_option_prints_the_crossfit_table(capsys, tmp_path):
    script = script_module(str(repo_root() / "benchmarks" / "calibration_power.py"))
    path = script.main(["--crossfit", "--reps", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| N | L | posterior | crossfit | crossfit ks | joint | joint ks |" in out
    assert out.count("K=2 |") == 8 and "| 50 | 49 | exact |" not in out
    rows = json.loads(path.read_text())["rows"]  # and the rows are written, table "crossfit"
    assert [r["table"] for r in rows] == ["crossfit"] * 8


def test_analyse_adds_the_crossfit_pvalues_for_several_summaries_and_enough_problems():
    from bayesphys.diagnostics import SimulationRecord, analyse, is_calibrated
    from tests.diagnostics.test_joint_ranks import _gauss_case

    g = torch.Generator().manual_seed(8)
    truth, draws = _gauss_case(300, 49, g, draws="decorrelated")
    res = analyse(SimulationRecord(names=["a", "b"], truth=truth, draws=draws), seed=4)
    direct = sbc_joint_crossfit(truth, draws, seed=4)
    m = res.metrics()
    assert m["sbc_pvalue_crossfit"] == direct["pvalue"]
    assert m["sbc_pvalue_crossfit_ks"] == direct["pvalue_ks"]
    assert torch.equal(res.crossfit["ranks"], direct["ranks"])
    assert m["sbc_pvalue_crossfit"] < 1e-3  # the ignored correlation
    assert is_calibrated(m)  # the marginals are exact; is_calibrated's rule is unchanged
    one = analyse(SimulationRecord(names=["a"], truth=truth[:, :1], draws=draws[..., :1]))
    few = analyse(SimulationRecord(names=["a", "b"], truth=truth[:3], draws=draws[:3]))
    for r in (one, few):
        assert r.crossfit is None
        assert r.metrics()["sbc_pvalue_crossfit"] is None
        assert r.metrics()["sbc_pvalue_crossfit_ks"] is None


def test_pvalues_are_listed_per_ranked_half_and_a_missed_correlation_ranks_high():
    """``pvalues[h]`` is the chi-square p-value of the ranks of half h (``half == h``), and
    the statistic is large where the truths lie in a direction the draws do not cover: draws
    that ignore a correlation put the truths' ranks high (mean well above L / 2), not low."""
    g = torch.Generator().manual_seed(5)
    rec = record("exact K=2", 60, 19, g)
    out = sbc_joint_crossfit(rec.truth, rec.draws, seed=2)
    want = [sbc_uniformity(out["ranks"][out["half"] == h], 19)["pvalue"] for h in (0, 1)]
    assert want[0] != pytest.approx(want[1], rel=1e-3)
    assert out["pvalues"] == pytest.approx(want, rel=1e-12)
    dec = record("decorrelated K=2", 200, 49, g)
    ranks = sbc_joint_crossfit(dec.truth, dec.draws, seed=2)["ranks"]
    assert float(ranks.double().mean()) > 0.6 * 49
