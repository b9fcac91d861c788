"""Smoke test of benchmarks/calibration_shape_bound.py (the rates behind the shape map's bound
on the generalised normal, docs/calibration.md "Recalibration")."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy import stats

from bayesphys._bench import repo_root, script_module

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")


def _script():
    return script_module(str(repo_root() / "benchmarks" / "calibration_shape_bound.py"))


def test_smoke_writes_every_case_and_rule_with_the_command(tmp_path):
    mod = _script()
    path = mod.main(["--smoke", "--out", str(tmp_path)])
    payload = json.loads(path.read_text())
    assert path == tmp_path / "calibration_shape_bound.json"
    assert payload["command"].endswith(
        f"python benchmarks/calibration_shape_bound.py --smoke --out {tmp_path}"
    )
    assert payload["smoke"] is True and payload["reps"] == 4
    assert payload["gennorm_max_shape"] == 8.0 and payload["seconds"] > 0
    rates = [r for r in payload["rows"] if "non_gaussian" in r]
    sizes = [(r["case"], r["n_fit"], r["n_draws"]) for r in rates[:: len(mod.RULES)]]
    assert sizes == [("exact", n, k) for n, k in mod.SIZES] + [
        ("light beta=4", 100, 99),
        ("uniform", 100, 99),
    ]
    assert [r["rule"] for r in rates[: len(mod.RULES)]] == list(mod.RULES)
    for r in rates:
        assert r["fits"] == 4
        for k in ("non_gaussian", "gennorm", "student_t", "gennorm_beyond_8"):
            assert 0 <= r[k] <= 1 and math.isfinite(r[k])
        assert r["non_gaussian"] == pytest.approx(r["gennorm"] + r["student_t"])
        if r["rule"].startswith("bound"):  # a bound keeps no generalised normal beyond it
            bound = float(r["rule"].split()[1])
            assert bound > 8 or r["gennorm_beyond_8"] == 0
    # gp_pde --quick's held-out record: the package's rule keeps the Gaussian for every
    # summary (the committed quick run's shape row), the unbounded rule two uniform limits
    gp = [r for r in payload["rows"] if r["case"] == "gp_pde quick"]
    assert len(gp) == 4 * len(mod.RULES)
    assert {r["family"] for r in gp if r["rule"] == "bound 8"} == {"norm"}
    limit = [r for r in gp if r["rule"] == "unbounded" and r["family"] == "gennorm"]
    assert len(limit) == 2 and all(r["beta"] > 1000 for r in limit)
    an = payload["analytic"]
    assert an["uniform_excess_kurtosis"] == pytest.approx(-1.2)
    assert -1.2 < an["gennorm_excess_kurtosis_beta_8"] < -1.0
    assert an["fisher_location_in_sd_units"]["2"] == pytest.approx(1.0)
    assert an["fisher_location_in_sd_units"]["8"] > 2


def test_replay_of_the_package_rule_is_shapemap_fit_and_the_fits_are_restored():
    mod = _script()
    g = torch.Generator().manual_seed(3)
    for law in ("light", "uniform"):
        draws, truth = mod.law_record(60, 19, law, g)
        m, z, fits = mod.package_fit(draws, truth)
        mod.check_replay(m, z, fits)  # raises when the replay leaves ShapeMap.fit
        assert mod.replay(z, fits, "bound 8")[0] == m.family
    # a uniform z: the unbounded fit runs to the uniform limit and is kept; the bound refuses it
    draws, truth = mod.law_record(100, 99, "uniform", torch.Generator().manual_seed(0))
    m, z, fits = mod.package_fit(draws, truth)
    assert fits["gennorm"][0] > 8 and mod.replay(z, fits, "unbounded")[0] == "gennorm"
    assert m.family != "gennorm"
    assert "fit" not in vars(stats.t) and "fit" not in vars(stats.gennorm)


@pytest.mark.parametrize(
    "argv, option",
    [(["--reps", "0"], "--reps"), (["--seed", "-1"], "--seed"), (["--name", "a/b"], "--name")],
)
def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch, argv, option):
    mod = _script()

    def boom(*a, **k):
        raise AssertionError("a fit would run")

    monkeypatch.setattr(mod, "rate_rows", boom)
    with pytest.raises(SystemExit) as err:
        mod.main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2 and f"{option}: " in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_null_case_rows_and_the_gaussian_null_rule(tmp_path):
    mod = _script()
    path = mod.main(["--case", "null", "--smoke", "--out", str(tmp_path)])
    payload = json.loads(path.read_text())
    assert path == tmp_path / "calibration_shape_null.json" and payload["case"] == "null"
    assert [(r["case"], r["n_fit"], r["rule"]) for r in payload["rows"]] == [
        (p, n, rule) for n in mod.NULL_SIZES for p in mod.NULL_POSTERIORS for rule in mod.NULL_RULES
    ]
    assert all(r["n_draws"] == 9 and r["fits"] == 4 for r in payload["rows"])
    # the Gaussian null is the Gaussian maximum-likelihood fit: the rule keeps a family
    # exactly when its likelihood beats that fit's by the margin
    draws, truth = mod.null_record(1000, 9, "exact", torch.Generator().manual_seed(1))
    m, z, fits = mod.package_fit(draws, truth)
    ll_norm = stats.norm.logpdf(z, z.mean(), z.std()).sum()
    ll_t = stats.t.logpdf(z, *fits["t"]).sum()
    family, _ = mod.replay(z, fits, mod.GAUSSIAN_NULL)
    assert (family != "norm") == (
        max(ll_t, stats.gennorm.logpdf(z, *fits["gennorm"]).sum()) > ll_norm + mod._LR_MARGIN
    )


def test_recal_case_fits_the_shape_maps_of_the_recalibration_table(tmp_path):
    """The fit records are calibration_power.py's: the package's rule replayed on them gives
    the family of ``fit_record_recalibration(fit, "shape")`` in that script's loop."""
    from bayesphys.diagnostics import fit_record_recalibration

    mod = _script()
    power = script_module(str(repo_root() / "benchmarks" / "calibration_power.py"))
    path = mod.main(["--case", "recal", "--smoke", "--out", str(tmp_path)])
    rows = json.loads(path.read_text())["rows"]
    assert [(r["n_fit"], r["rule"]) for r in rows] == [
        (f, rule) for _, _, f in power.RECAL_SIZES for rule in mod.RULES
    ]
    for r in rows:
        assert all(b > 8 for b in r["gennorm_betas_beyond_8"])
        assert len(r["gennorm_betas_beyond_8"]) == round(r["gennorm_beyond_8"] * r["fits"])
    (n_fit, n_draws, make), *_ = mod.recal_table_fits()
    g, g_power = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    for _ in range(2):
        draws, truth = make(g)
        power.record("exact", 100, n_draws, g_power)
        fit = power.record("exact", n_fit, n_draws, g_power)
        assert torch.equal(draws, fit.draws[:, :, 0]) and torch.equal(truth, fit.truth[:, 0])
        shape = fit_record_recalibration(fit, "shape").stages[0][0]
        m, z, fits = mod.package_fit(draws, truth)
        assert mod.replay(z, fits, "bound 8")[0] == shape.family == m.family
