"""Smoke test of benchmarks/probconserv_selection.py (the hybrid's (K, beta) selection rule)."""

from __future__ import annotations

import json

import pytest

from bayesphys._bench import repo_root, script_module


def test_selection_ablation_scores_validation_functions_and_applies_its_rule(
    saved_tiny_anp, capsys
):
    _, folder = saved_tiny_anp
    script = script_module(str(repo_root() / "benchmarks" / "probconserv_selection.py"))
    argv = ["--models", str(folder), "--problems", "diffusion", "--methods", "ANP"]
    rows = json.loads(script.main([*argv, "--smoke", "--out", str(folder)]).read_text())["rows"]
    assert len(rows) == 2 * 2  # selections x the parameters k = 1, 5
    assert {r["selection"] for r in rows} == {"min", "one_se"}
    assert {r["param"] for r in rows} == {1.0, 5.0}
    by = {(r["selection"], r["param"]): r for r in rows}
    # the rule changes the calibration only: the Step-1 means are the same
    assert by[("min", 1.0)]["step1_mse"] == pytest.approx(by[("one_se", 1.0)]["step1_mse"])
    for r in rows:
        assert 0 < r["beta"] <= 1 and r["neighbours"] >= 0 and r["mse"] > 0

    def row(sel, param, mse, step1, cov):
        return {
            "problem": "p",
            "param": param,
            "model": "ANP",
            "selection": sel,
            "mse": mse,
            "step1_mse": step1,
            "coverage90": cov,
        }

    base = [row("min", 1, 1.0, 2.0, 0.90), row("min", 2, 1.0, 2.0, 0.80)]
    # (a), (b) and (c) hold: one_se adopted
    good = base + [row("one_se", 1, 1.04, 2.0, 0.90), row("one_se", 2, 1.0, 2.0, 0.86)]
    choice, stats = script.decide(good)
    assert choice == "one_se" and stats["coverage_one_se"] == 2 and stats["coverage_min"] == 1
    # (a) fails: fewer cells in range
    assert (
        script.decide(base + [row("one_se", 1, 1.0, 2.0, 0.97), row("one_se", 2, 1.0, 2.0, 0.8)])[0]
        == "min"
    )
    # (b) fails: a ranking lost
    assert (
        script.decide(base + [row("one_se", 1, 2.5, 2.0, 0.9), row("one_se", 2, 0.5, 2.0, 0.8)])[0]
        == "min"
    )
    # (c) fails: MSE 10 % worse on (geometric) average
    assert (
        script.decide(base + [row("one_se", 1, 1.1, 2.0, 0.9), row("one_se", 2, 1.1, 2.0, 0.8)])[0]
        == "min"
    )
    with pytest.raises(ValueError, match="both selections"):
        script.decide(base)
    capsys.readouterr()
    script.main(["--summary", str(folder / "probconserv_selection.json")])
    out = capsys.readouterr().out
    assert "-> chosen" in out
    assert sum(line.startswith("| diffusion |") for line in out.splitlines()) == 2
