"""Smoke test of benchmarks/probconserv_margin.py (the calibration functions' range)."""

from __future__ import annotations

import json

import pytest

from bayesphys._bench import repo_root, script_module


def test_margin_sweep_scores_validation_functions_and_applies_its_rule(saved_tiny_anp, capsys):
    m, tmp_path = saved_tiny_anp
    script = script_module(str(repo_root() / "benchmarks" / "probconserv_margin.py"))
    argv = ["--models", str(tmp_path), "--problems", "diffusion", "--methods", "ANP"]
    argv += ["--candidates", "none:0,local:0.1,all:0.1", "--smoke", "--out", str(tmp_path)]
    rows = json.loads(script.main(argv).read_text())["rows"]
    edge = script_module(str(repo_root() / "benchmarks" / "probconserv_edge.py"))
    n_sets = 2 * (len(edge.OFFSETS) + 1)  # both ends: the offsets and the uniform edge bin
    assert len(rows) == 3 * n_sets * 2  # candidates x sets x (Step 1, updated)
    # the margin reaches the calibration only: Step-1 means (MSE) equal, scales differ
    by = {(r["scope"], r["edge"], r["d"], r["stage"]): r for r in rows}
    a, b = by[("none", "lo", "0", "step1")], by[("all", "lo", "0", "step1")]
    assert a["mse"] == pytest.approx(b["mse"], rel=1e-12)
    for scope in ("local", "all"):
        assert any(
            by[("none", *k)]["ll"] != by[(scope, *k)]["ll"] for (sc, *k) in by if sc == "none"
        )
    # the scopes differ: "all" also widens the validation functions
    assert any(by[("local", *k)]["ll"] != by[("all", *k)]["ll"] for (sc, *k) in by if sc == "none")

    # the rule: most cells in range, ties to the earlier candidate
    def row(scope, margin, cov, stage="updated"):
        return {"scope": scope, "margin": margin, "stage": stage, "coverage90": cov}

    fake = [
        row("none", 0.0, 0.80),
        row("none", 0.0, 0.90),
        row("local", 0.05, 0.90),
        row("local", 0.05, 0.96),
        row("all", 0.05, 0.86),
        row("all", 0.05, 0.94),
        row("all", 0.05, 0.20, "step1"),
    ]
    assert script.chosen_margin(fake) == ("all 0.05", {"none 0": 1, "local 0.05": 1, "all 0.05": 2})
    assert script.chosen_margin(fake[:4])[0] == "none 0"
    capsys.readouterr()
    script.main(["--summary", str(tmp_path / "probconserv_margin.json")])
    out = capsys.readouterr().out
    # the summary prints the rule's choice on the rows the sweep wrote
    assert f"-> chosen {script.chosen_margin(rows)[0]}" in out
    assert sum(line.startswith("| diffusion |") for line in out.splitlines()) == 2 * 3


@pytest.mark.parametrize("bad", ["wide:0.05", "all", "all:-0.1", "all:x", "local:inf"])
def test_bad_candidates_are_argparse_errors(bad, capsys):
    script = script_module(str(repo_root() / "benchmarks" / "probconserv_margin.py"))
    with pytest.raises(SystemExit) as exc:
        script.main(["--models", "unused", "--candidates", bad])
    assert exc.value.code == 2
    assert "argument --candidates: expected scope:margin" in capsys.readouterr().err
