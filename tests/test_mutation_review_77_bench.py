"""Review 77 (mutation testing) of the code that turns benchmark numbers into the verdicts and
tables the docs quote: ``bayesphys/_bench`` (tables), the ProbConserv / Meta FM / ODIL /
neural-process helpers beside ``benchmarks/*.py``. Each test kills a hand-made mutant that the
suite let through (named in its docstring); the expected answers come from the targets' and
helpers' own stated definitions (a closed band, "within one standard error", "better than"),
checked on hand-made rows whose answers are worked out here, not on snapshots."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import bayesphys._bench as bench
from bayesphys._bench import bench_row, render_table, repo_root, rows_table, script_module

BENCH = repo_root() / "benchmarks"

# the benchmark scripts' main set torch's thread count for their process
pytestmark = pytest.mark.usefixtures("restore_threads")


def _script(name: str):
    return script_module(str(BENCH / name))


def _helper(script: str, name: str):
    """A ``benchmarks/_*.py`` helper module (loading its script puts them on the path)."""
    _script(script)
    return sys.modules[name]


# ---------------------------------------------------------------- bayesphys/_bench/tables.py


def test_seed_summary_keep_fields_come_from_the_groups_first_row():
    """Kills ``row.update({k: sel[0][k] ...})`` -> ``sel[-1]`` (the docstring: keep fields
    "from the group's first row"); the existing test's keep field was the same on every row."""
    rows = [
        {"split": "a", "seed": 0, "n": 5, "w2": 1.0},
        {"split": "a", "seed": 1, "n": 6, "w2": 2.0},
        {"split": "a", "seed": 2, "n": 7, "w2": 6.0},
    ]
    out = bench.seed_summary_rows(rows, ("split",), ("w2",), keep=("n",))
    assert [r["n"] for r in out] == [5, 5]
    assert out[0]["w2"] == 3.0  # mean of 1, 2, 6
    assert out[1]["w2"] == pytest.approx(math.sqrt(((1 - 3) ** 2 + 1 + 9) / 2), rel=1e-15)


def _payload(metrics):
    return {
        "command": "demo",
        "date": "2026-01-01",
        "torch": "2",
        "device": "cpu",
        "threads": 1,
        "quick": False,
        "rows": [bench_row("p", "m", metrics)],
    }


def test_docs_table_switches_to_e_notation_exactly_at_its_edges():
    """Kills ``a >= 1e4`` -> ``a > 1e4`` (10000 shown as "1e+04": ``.4g`` drops the mantissa's
    figures) and ``a < 1e-3`` -> ``a <= 1e-3`` (0.001 shown as "1.00e-03"). The rule: three
    significant figures in e-notation for |v| >= 1e4 or |v| < 1e-3, else four (``.4g``)."""
    metrics = {"a": 1e4, "b": -1e4, "c": 9999.0, "d": 1e-3, "e": -1e-3, "f": 9.99e-4}
    line = render_table(_payload(metrics)).splitlines()[-1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3:9] == ["1.00e+04", "-1.00e+04", "9999", "0.001", "-0.001", "9.99e-04"]


@pytest.mark.parametrize("digits", [1, 2, 3, 4])
def test_rows_table_uses_e_notation_only_strictly_below_ten_to_minus_digits(digits):
    """Kills ``abs(v) < 10.0**-digits`` -> ``<=`` (docstring: "in e-notation below
    10^-digits": the edge itself, 0.001 at 3 digits, is written "0.001", not "1.00e-03")."""
    edge = 10.0**-digits
    below = edge * 0.5
    line = rows_table([{"x": edge, "y": -edge, "z": below}], digits=digits).splitlines()[2]
    assert line == (f"| {edge:.{digits}f} | {-edge:.{digits}f} | {below:.{digits - 1}e} |")
    assert f"{edge:.{digits}f}".endswith("1")  # the edge is its last decimal, not 0


# ---------------------------------------------------- benchmarks/_probconserv_rows.py


def _pc_row(problem, method, setting, **m):
    base = {"mse": 1e-4, "ll": 3.0, "ce": 0.0, "coverage90": 0.9}
    return bench_row(problem, method, {**base, **m}, setting=setting)


def _pair(setting, base, pc, se_base, se_pc, model="ANP"):
    return [
        _pc_row("diffusion", model, setting, mse=base, mse_se=se_base),
        _pc_row("diffusion", f"ProbConserv-{model}", setting, mse=pc, mse_se=se_pc),
    ]


def test_ranking_tie_is_within_the_combined_standard_error_edge_included():
    """Kills ``abs(full_diff) <= hypot(se)`` -> ``<`` and hypot -> the plain sum of the two
    SEs. A full-table difference of exactly sqrt(3^2 + 4^2) = 5 is within its standard error
    (a tie); one of 6 is not (the sum, 7, would call it a tie)."""
    agree = _script("probconserv.py").ranking_agreement
    s1, s2 = {"k": 1, "t": 0.5}, {"k": 5, "t": 0.5}
    full = [*_pair(s1, 10.0, 15.0, 3.0, 4.0), *_pair(s2, 10.0, 16.0, 3.0, 4.0)]
    quick = [*_pair(s1, 15.0, 10.0, 0.0, 0.0), *_pair(s2, 15.0, 10.0, 0.0, 0.0)]  # flipped
    out = agree(quick, full)
    assert (out["pairs"], out["ties"], out["agree_strict"], out["agree"]) == (2, 1, 0, 1)
    assert out["disagree"] == [("diffusion", s2, "ANP")]


def test_ranking_sign_of_an_equal_quick_pair_is_zero():
    """Kills ``pc["mse"] < m["mse"]`` -> ``<=``: the sign of MSE(ProbConserv-X) - MSE(X) of a
    quick pair with equal MSEs is 0, which reproduces a full-table difference of 0 and not a
    negative one (ProbConserv better)."""
    agree = _script("probconserv.py").ranking_agreement
    s1, s2 = {"k": 1, "t": 0.5}, {"k": 5, "t": 0.5}
    full = [*_pair(s1, 2.0, 2.0, 0.0, 0.0), *_pair(s2, 2.0, 1.0, 0.0, 0.0)]
    quick = [*_pair(s1, 3.0, 3.0, 0.0, 0.0), *_pair(s2, 3.0, 3.0, 0.0, 0.0)]
    out = agree(quick, full)
    assert (out["pairs"], out["agree_strict"], out["ties"]) == (2, 1, 1)
    assert out["disagree"] == [("diffusion", s2, "ANP")]


def _notes(rows):
    return [r.get("note", "") for r in _script("probconserv.py").target_notes(rows)]


@pytest.mark.parametrize(
    ("cov", "verdict"),
    [(0.85, "met"), (0.95, "met"), (0.9, "met"), (0.8499, "MISSED"), (0.9501, "MISSED")],
)
def test_probconserv_coverage_band_is_closed(cov, verdict):
    """Kills ``0.85 <= cov`` -> ``<`` and ``cov <= 0.95`` -> ``<``: the issue's target is
    coverage "in [0.85, 0.95]", both edges in (17/20 and 19/20 of the test functions)."""
    row = _pc_row("pme", "ProbConserv-GP", {"m": 3, "t": 0.5}, coverage90=cov)
    assert f"in [0.85, 0.95]: {verdict}" in _notes([row])[0]


@pytest.mark.parametrize(
    ("mse", "ll", "verdict"),
    [(1e-4, 2.74, "met"), (1e-4, 2.7399, "MISSED"), (1.55e-4, 3.0, "MISSED"), (1.5e-4, 3, "met")],
)
def test_probconserv_diffusion_target_edges(mse, ll, verdict):
    """Kills ``m["ll"] >= 2.74`` -> ``>``: the target is MSE < 1.55e-4 with LL >= 2.74 (LL of
    exactly 2.74 meets it, MSE of exactly 1.55e-4 does not)."""
    row = _pc_row("diffusion", "ProbConserv-ANP", {"k": 5, "t": 0.5}, mse=mse, ll=ll)
    assert f"mse < 1.55e-4 with ll >= 2.74: {verdict}" in _notes([row])[0]


@pytest.mark.parametrize(("mse", "verdict"), [(4e-4, "met"), (3e-4, "met"), (4.0001e-4, "MISSED")])
def test_probconserv_pme_no_worse_than_the_unconstrained_model(mse, verdict):
    """Kills ``m["mse"] <= base_mse`` -> ``<``: "no worse than" the unconstrained model, so an
    equal MSE meets it."""
    st = {"m": 6, "t": 0.5}
    rows = [_pc_row("pme", "GP", st, mse=4e-4), _pc_row("pme", "ProbConserv-GP", st, mse=mse)]
    assert f"mse no worse than GP (0.0004): {verdict}" in _notes(rows)[1]


@pytest.mark.parametrize(("ll", "verdict"), [(-4.87, "MISSED"), (-4.8699, "met"), (-5.0, "MISSED")])
def test_probconserv_stefan_out_of_range_ll_is_strictly_above(ll, verdict):
    """Kills ``m['ll'] > -4.87`` -> ``>=``: the target is LL > -4.87 (the reference's own
    out-of-range LL), which the reference's figure itself does not meet."""
    row = _pc_row("stefan", "ProbConserv-ANP", {"u_star": 0.5, "t": 0.05}, ll=ll)
    assert f"out-of-range ll > -4.87: {verdict}" in _notes([row])[0]


@pytest.mark.parametrize(
    ("bias", "sd", "verdict"),
    [
        (0.004, 0.015, "met"),  # sd edge included
        (0.004, 0.0151, "MISSED"),
        (-0.004, 0.01, "met"),
        (-0.01, 0.01, "MISSED"),  # a negative bias is judged by its size
        (0.006, 0.01, "MISSED"),
        (-0.006, 0.01, "MISSED"),
    ],
)
def test_probconserv_shock_target_judges_the_size_of_the_bias(bias, sd, verdict):
    """Kills ``abs(m["bias"]) < 0.006`` -> ``m["bias"] < 0.006`` and ``m["sd"] <= 0.015`` ->
    ``<``: the target is |bias| < 0.006 with sd <= 0.015; the exact-mean row's figure in the
    note is judged the same way (kills the ``abs`` dropped there)."""
    st = {"u_star": 0.6}
    row = bench_row("stefan-shock", "ProbConserv-GP", {"bias": bias, "sd": sd}, setting=st)
    perfect = bench_row("stefan-shock", "exact-mean", {"bias": bias, "sd": sd}, setting=st)
    note = _notes([row, perfect])[0]
    assert f"|bias| < 0.006 with sd <= 0.015: {verdict}" in note
    assert note.endswith(f"on this definition: {verdict})")


@pytest.mark.parametrize(("ce", "verdict"), [(-1e-6, "MISSED"), (1e-6, "MISSED"), (-1e-16, "met")])
def test_probconserv_ce_without_absmax_is_judged_by_its_size(ce, verdict):
    """Kills ``m.get("ce_absmax", abs(m["ce"]))`` -> ``m.get("ce_absmax", m["ce"])``: a row
    without ``ce_absmax`` (results files before it was recorded) is judged on |CE|, so a
    negative CE far from round-off misses CE = 0."""
    row = _pc_row("pme", "ProbConserv-ANP", {"m": 3, "t": 0.5}, ce=ce)
    assert f"CE = 0: {verdict}" in _notes([row])[0]


def test_probconserv_ce_target_is_round_off_not_1e_9():
    """Kills the CE threshold 1e-10 raised to 1e-8: the issue's "CE = 0 to round-off"; a
    largest |CE| of 1e-9 on masses of order one is 10^7 float64 round-offs, a miss."""
    st = {"m": 3, "t": 0.5}
    row = _pc_row("pme", "ProbConserv-ANP", st, ce_absmax=1e-9)
    assert "CE = 0: MISSED" in _notes([row])[0]
    assert "CE = 0: met" in _notes([_pc_row("pme", "ProbConserv-ANP", st, ce_absmax=1e-13)])[0]


# -------------------------------------------------------------- benchmarks/_meta_fm_rows.py

MFM_METHODS = ("identity", "floor", "FM", "CGFM", "MFM", "MFM-ensemble")


def _mfm_summary(w2: dict, sd: dict | None = None, spearman: float = 0.5) -> dict[str, dict]:
    s = {m: {"w2": w2.get(m, 1.0), "w2_sd": (sd or {}).get(m, 0.0)} for m in MFM_METHODS}
    s["MFM-ensemble"].update(spearman_spread_error=spearman, coverage90=0.9)
    return s


def test_meta_fm_b1_b3_target_needs_a_margin_of_the_largest_seed_sd():
    """Kills ``s["MFM"]["w2"] < base - sd`` -> ``< base`` and ``sd = max(...)`` -> ``min``:
    "clearly below" is MFM's W2 below min(FM, CGFM) by more than the largest seed sd of the
    three rows. Here min = 1.0 and the sds are 0.05 / 0.1 / 0.3: 0.8 is below by 0.2 < 0.3."""
    targets = _script("meta_fm.py").targets
    key = "MFM w2 < FM and CGFM by > 1 seed sd"
    sd = {"MFM": 0.05, "FM": 0.1, "CGFM": 0.3}
    for pid in ("B1", "B3"):
        assert not targets(pid, _mfm_summary({"MFM": 0.8, "FM": 1.0, "CGFM": 1.2}, sd))[key]
        assert targets(pid, _mfm_summary({"MFM": 0.6, "FM": 1.0, "CGFM": 1.2}, sd))[key]
        # the margin is from the better of FM and CGFM (1.0), not the worse (1.2)
        assert not targets(pid, _mfm_summary({"MFM": 0.8, "FM": 1.2, "CGFM": 1.0}, sd))[key]


def test_meta_fm_b4_target_is_strictly_below_the_better_baseline():
    """Kills ``base = min(FM, CGFM)`` -> ``max`` and ``MFM < base`` -> ``<=`` on B4 (and its
    replica): MFM's W2 must be below both FM's and CGFM's."""
    targets = _script("meta_fm.py").targets
    key = "MFM w2 < FM and CGFM"
    for pid in ("B4", "B4-replica"):
        assert not targets(pid, _mfm_summary({"MFM": 1.5, "FM": 1.0, "CGFM": 2.0}))[key]
        assert not targets(pid, _mfm_summary({"MFM": 1.0, "FM": 1.0, "CGFM": 2.0}))[key]
        assert targets(pid, _mfm_summary({"MFM": 0.99, "FM": 1.0, "CGFM": 2.0}))[key]


def test_meta_fm_b2_and_spearman_target_edges():
    """Kills ``MFM <= 2 * floor`` -> ``<`` (the target "W2 <= 2x floor" holds at equality) and
    ``spearman > 0.3`` -> ``>=`` (a Spearman of exactly 0.3 does not exceed 0.3)."""
    targets = _script("meta_fm.py").targets
    assert targets("B2", _mfm_summary({"MFM": 0.5, "floor": 0.25}))["MFM w2 <= 2x floor"]
    assert not targets("B2", _mfm_summary({"MFM": 0.5001, "floor": 0.25}))["MFM w2 <= 2x floor"]
    assert not targets("B2", _mfm_summary({}, spearman=0.3))["spearman > 0.3"]
    assert targets("B2", _mfm_summary({}, spearman=0.3001))["spearman > 0.3"]


# ------------------------------------------------------------ benchmarks/_odil_b4.py, atlas


def test_odil_b4_win_rate_counts_strictly_better_cases_only():
    """Kills ``better = cov > std + 1e-12`` -> ``cov >= std - 1e-12`` (ties counted as wins),
    the win rate as ``(~worse).mean()`` (the "not worse" share) and the coverage delta's sign
    flipped. Per case: better, tied, worse, better (cov - std = +0.1, 0, -0.1, +0.1): win rate
    2/4, among non-tied 2/3, not worse 3/4, delta +2.5 points (GliODIL's better/worse/equal)."""
    b4 = _helper("odil.py", "_odil_b4")
    std = [0.5, 0.5, 0.5, 0.75]
    model = [0.625, 0.5, 0.375, 0.875]  # dyadic: the differences are exact
    res = [
        {
            "std_any": s,
            "map_T_any": c,
            "q95_T60_any": s,
            "std_enh": s,
            "map_T_enh": s,
            "q95_T60_enh": s,
        }
        for s, c in zip(std, model)
    ]
    rows = b4._b4_rows(res, {"cases": 4})
    assert [(r["method"], r["setting"]["recurrence"]) for r in rows] == [
        ("ODIL-GN", "any"), ("ODIL-GN", "any"), ("standard-margin", "any"),
        ("ODIL-GN", "enh"), ("ODIL-GN", "enh"), ("standard-margin", "enh"),
    ]  # fmt: skip
    m = rows[0]["metrics"]
    assert m["rt_coverage_win_rate"] == 0.5
    assert m["rt_coverage"] == pytest.approx(np.mean(model), rel=1e-15)
    assert m["rt_coverage_delta_pts"] == pytest.approx(100 * (0.125 + 0 - 0.125 + 0.125) / 4)
    assert rows[0]["note"] == (
        "better/worse/tied 2/1/1; win rate among non-tied 0.67; not worse 0.75"
    )
    # a plan equal to the standard one everywhere: every case a tie, no win
    assert rows[1]["metrics"]["rt_coverage_win_rate"] == 0.0
    assert rows[1]["note"].startswith("better/worse/tied 0/0/4; win rate among non-tied nan")
    assert rows[2]["metrics"] == {"rt_coverage": pytest.approx(np.mean(std), rel=1e-15)}


def test_odil_worst_note_counts_cases_with_both_errors_strictly_under_ten_percent():
    """Kills ``max(rel_err_l, rel_err_v) < 0.10`` -> ``min(...)``: a case counts when both its
    ell and v relative errors are under 10 % (0.10 itself does not)."""
    atlas = _helper("odil.py", "_odil_atlas")
    rr = [
        {"rel_err_l": 0.05, "rel_err_v": 0.2},
        {"rel_err_l": 0.05, "rel_err_v": 0.09},
        {"rel_err_l": 0.10, "rel_err_v": 0.0},
        {"rel_err_l": 0.3, "rel_err_v": 0.01},
    ]
    assert atlas._worst_note(rr) == (
        "max rel_err_l 0.300, max rel_err_v 0.200; 1 of 4 cases with both < 0.10; "
    )


def test_odil_dice_is_twice_the_overlap_over_the_sizes():
    """Kills ``2 * |a & b| / (|a| + |b|)`` with the 2 dropped: Dice of identical masks is 1,
    of disjoint ones 0, and of [1, 1, 0, 0] and [1, 0, 1, 0] 2 * 1 / 4."""
    import torch

    dice = _helper("odil.py", "_odil_common")._dice
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    assert dice(a, b) == 0.5
    assert dice(a, a) == 1.0 and dice(a, ~a) == 0.0
    assert dice(a & ~a, a & ~a) == 1.0  # two empty masks agree


# ------------------------------------------------------------ benchmarks/neural_process.py


def test_neural_process_seed_mean_and_seed_sd_with_ddof_one():
    """Kills ``np.std(..., ddof=1)`` -> ``ddof=0`` in ``_seed_mean``: the seed sd of NSE_u /
    NSE_z is the sample sd (of 1, 2, 6: sqrt(14 / 2)); a metric that is None is left out."""
    seed_mean = _script("neural_process.py")._seed_mean
    evs = [
        {"nse_u": 1.0, "nse_z": 0.5, "nll": -1.0, "crps": None},
        {"nse_u": 2.0, "nse_z": 0.5, "nll": -2.0, "crps": None},
        {"nse_u": 6.0, "nse_z": 2.0, "nll": -6.0, "crps": None},
    ]
    out = seed_mean(evs)
    assert set(out) == {"nse_u", "nse_z", "nll", "nse_u_seed_sd", "nse_z_seed_sd"}
    assert out["nse_u"] == 3.0 and out["nll"] == -3.0 and out["nse_z"] == 1.0
    assert out["nse_u_seed_sd"] == pytest.approx(math.sqrt(14 / 2), rel=1e-14)
    assert out["nse_z_seed_sd"] == pytest.approx(math.sqrt((0.25 + 0.25 + 1) / 2), rel=1e-14)
    assert "nse_u_seed_sd" not in seed_mean(evs[:1])  # one seed: no sd


def test_neural_process_p3_spread_per_layout_is_over_that_layout_only():
    """Kills ``spread_<layout> = max(w) / min(w)`` -> ``max(v) / min(w)`` (the max over every
    setting): each layout's spread is max / min NSE_z over its own settings."""
    p3 = _script("neural_process.py").p3_spread
    rows = [
        ({"layout": "grid", "n": 4}, {"nse_z": 0.5}),
        ({"layout": "grid", "n": 8}, {"nse_z": 1.0}),
        ({"layout": "random", "n": 4}, {"nse_z": 4.0}),
        ({"layout": "random", "n": 8}, {"nse_z": 3.0}),
    ]
    assert p3(rows) == {"spread_all": 8.0, "spread_grid": 2.0, "spread_random": 4.0 / 3.0}


def test_neural_process_parameter_variance_scale_defaults_to_one():
    """Kills ``cal.get("parameters", 1.0)`` -> ``cal.get("parameters", cal["field"])``: a
    calibration without a parameter scale leaves the parameters' variance unscaled (1), not
    scaled by the field's multiplier."""
    f = _script("neural_process.py")._raw_and_scales
    raw = {"coverage2sd_u": 0.8, "nll": 1.5, "other": 7.0}
    assert f(raw, {"field": 2.5}) == {
        "coverage2sd_u_raw": 0.8,
        "nll_raw": 1.5,
        "var_scale_u": 2.5,
        "var_scale_z": 1.0,
    }
    assert f(raw, {"field": 2.5, "parameters": 0.5})["var_scale_z"] == 0.5


# ------------------------------------------------------ benchmarks/_probconserv_scoring.py


def _gaussian(mean, var):
    from linear_operator.operators import DiagLinearOperator

    from bayesphys.posterior import GaussianPosterior

    return GaussianPosterior(mean, DiagLinearOperator(var), event_shape=(mean.shape[-1],))


def test_shock_sd_is_the_mean_per_function_sd_and_coverage_the_5_95_band():
    """Kills ``sd = sp.std(0).mean()`` -> ``sp.std()`` (the spread of every draw of every
    function, which counts the functions' different fronts as posterior sd) and the 90 % band
    ``[q0.05, q0.95]`` narrowed to ``[q0.1, q0.9]``. Oracle: the draws' fronts read by
    ``shock_posterior`` (the same seed), summarised per function here with numpy."""
    import torch

    from bayesphys.probconserv.evaluate import shock_posterior
    from bayesphys.problems.gpme import get_problem, stefan_front

    scoring = _helper("probconserv.py", "_probconserv_scoring")
    prob = get_problem("stefan")
    x = prob.grid(201)
    n_fun = 24
    params = torch.full((n_fun,), 0.6, dtype=torch.float64)
    truth = prob.solution(prob.table_time, x, params[:, None])[:, None]  # [B, 1, nx]
    # each function's posterior mean shifted by its own amount: fronts spread across functions
    shift = torch.linspace(-0.15, 0.1, n_fun, dtype=torch.float64)[:, None, None]
    post = _gaussian(truth + shift, torch.full_like(truth, 0.05**2))
    m = scoring.shock_metrics(post, x, truth, 0.6, 60, 0, prob.table_time)
    xr = scoring.reference_positions(x)
    sp = shock_posterior(post, xr, 60, seed=0, missing="nan").squeeze(-1).numpy()  # [S, B]
    sp = np.where(np.isnan(sp), float(xr[0]), sp)
    true = float(stefan_front(prob.table_time, 0.6))
    assert m["sd"] == pytest.approx(sp.std(0, ddof=1).mean(), rel=1e-12)
    assert m["sd"] < 0.8 * sp.std(ddof=1)  # the functions' spread is not posterior sd
    lo, hi = np.quantile(sp, [0.05, 0.95], axis=0)
    want = ((lo <= true) & (true <= hi)).mean()
    lo10, hi10 = np.quantile(sp, [0.1, 0.9], axis=0)
    assert want != ((lo10 <= true) & (true <= hi10)).mean()  # the case tells the bands apart
    assert m["coverage90"] == pytest.approx(want, abs=1e-12)
    assert m["bias"] == pytest.approx(sp.mean(0).mean() - true, rel=1e-12)


class _StubModel:
    """A Step-1 stand-in: the same diagonal Gaussian for every method."""

    calibration, var_scale = None, 1.0

    def __init__(self, mean, var):
        self.mean, self.var = mean, var

    def posterior(self, test, method="none"):
        return _gaussian(self.mean, self.var)


def test_ce_absmax_is_the_largest_size_of_a_negative_ce():
    """Kills ``ce_absmax = sc["ce"].abs().max()`` -> ``sc["ce"].max()``: with every function's
    mass too small (CE < 0 everywhere) the largest |CE| is that of the most negative CE, and the
    CE = 0 target is missed; the signed max was a tiny negative number, "met"."""
    from types import SimpleNamespace

    import torch

    from bayesphys.problems.gpme import get_problem

    prob = get_problem("diffusion")
    x = prob.grid(201)
    params = torch.full((4,), 5.0, dtype=torch.float64)
    truth = prob.solution(prob.table_time, x, params[:, None])[:, None]
    mass = prob.mass(prob.table_time, params)[:, None]
    low = torch.tensor([0.01, 0.02, 0.03, 0.04], dtype=torch.float64)[:, None, None]
    mean = truth - low  # CE = -low * (x_max - x_min), below zero for every function
    rows = _script("probconserv.py").evaluate(
        prob,
        {"ANP": (_StubModel(mean, torch.full_like(truth, 1e-4)), 0.0)},
        [(5.0, SimpleNamespace(params=params))],
        10,
        0,
        lambda *_: None,
    )
    m = rows[0]["metrics"]
    ce = np.trapezoid(mean[:, 0].numpy(), x.numpy(), axis=-1) - mass[:, 0].numpy()
    assert (ce < 0).all()
    assert m["ce_absmax"] == pytest.approx(np.abs(ce).max(), rel=1e-10)
    # judged as a ProbConserv row (the stub makes no projection): the target is missed
    assert "CE = 0: MISSED" in _notes([{**rows[0], "method": "ProbConserv-ANP"}])[0]


def test_odil_b3_speedup_is_nuts_seconds_over_the_laplace_fits(monkeypatch):
    """Kills ``speed.append(nsec / sec)`` -> ``sec / nsec``: the anchor's ">= 50x faster" is
    NUTS's seconds over the Laplace fit's (here 100 s against 2 s: 50)."""
    import torch

    b3 = _helper("odil.py", "_odil_b3")
    sd = torch.tensor([1.0, 2.0, 0.5, 4.0], dtype=torch.float64)

    class Fake:
        theta = torch.zeros(4, dtype=torch.float64)
        theta_cov = torch.diag(sd**2)

        def laplace_covariance(self, kind):
            return self.theta_cov

    draws = torch.stack([sd, -sd]) / math.sqrt(2)  # sample sd (n - 1) exactly sd
    z = np.random.default_rng(0).standard_normal((12, 4))
    monkeypatch.setattr(b3, "brain_phantom", lambda n, h: None)
    monkeypatch.setattr(b3, "synthetic_patient", lambda seed, phantom: {})
    monkeypatch.setattr(b3, "_fit_case", lambda p, device: (Fake(), 2.0))
    monkeypatch.setattr(b3, "_b3_z", lambda seeds, ph, device: (z[: len(seeds)], [1.0]))
    monkeypatch.setattr(b3, "nuts_reference", lambda m, **kw: (draws[None], 100.0))
    nuts = [r for r in b3.bench_b3(True, None) if r["method"] == "NUTS"][0]
    assert nuts["metrics"]["speedup_vs_nuts"] == 50.0
    assert nuts["metrics"]["sd_ratio_vs_nuts"] == pytest.approx(1.0, rel=1e-12)


# ---------------------------------------------------------------- benchmarks/_gp_pde_run.py


def test_gp_pde_coverage_column_is_the_95_percent_interval():
    """Kills ``_coverage``'s ``post.interval(0.95)`` -> ``0.9`` (its docstring: "95% interval
    coverage of the exact solution"). A stand-in solver whose posterior is N(0, 1) at five
    points and whose exact solution sits at z = 0, 1, 1.7, 1.9, 2.5: the central 95 % band
    (|z| <= 1.95996) holds four of them, the 90 % band (|z| <= 1.64485) two; the sd / |error|
    ratio is the medians' ratio, 1 / 1.7."""
    import torch

    from bayesphys import GaussianPosterior

    run = _helper("gp_pde.py", "_gp_pde_run")
    z = torch.tensor([0.0, 1.0, 1.7, 1.9, 2.5], dtype=torch.float64)

    class _Problem:
        def solution(self, axes):
            return z.clone()

    class _Solver:
        dim = 1
        problem = _Problem()

        def _test_axes(self, _):
            return [torch.linspace(0.0, 1.0, 5, dtype=torch.float64)]

        def posterior(self, axes):
            return GaussianPosterior(torch.zeros(5, dtype=torch.float64), torch.eye(5).double())

    cov, ratio = run._coverage(_Solver(), 5)
    assert cov == pytest.approx(4 / 5, abs=1e-12)
    assert ratio == pytest.approx(1 / 1.7, rel=1e-12)
