"""Smoke test of benchmarks/probconserv_margin.py (the calibration functions' range)."""

from __future__ import annotations

import json

import pytest
import torch

from bayesphys._bench import repo_root, script_module
from bayesphys.probconserv import ProbConserv


def test_margin_sweep_scores_validation_functions_and_applies_its_rule(tmp_path, capsys):
    torch.set_num_threads(1)
    m = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0)
    m.fit(steps=3, progress=False)
    m.save(tmp_path / "diffusion_ANP.pt")
    script = script_module(str(repo_root() / "benchmarks" / "probconserv_margin.py"))
    argv = ["--models", str(tmp_path), "--problems", "diffusion", "--methods", "ANP"]
    argv += ["--margins", "0,0.1", "--smoke", "--out", str(tmp_path)]
    rows = json.loads(script.main(argv).read_text())["rows"]
    edge = script_module(str(repo_root() / "benchmarks" / "probconserv_edge.py"))
    n_sets = 2 * (len(edge.OFFSETS) + 1)  # both ends: the offsets and the uniform edge bin
    assert len(rows) == 2 * n_sets * 2  # margins x sets x (Step 1, updated)
    # the margin reaches the calibration only: Step-1 means (MSE) equal, scales differ
    by = {(r["margin"], r["edge"], r["d"], r["stage"]): r for r in rows}
    a, b = by[(0.0, "lo", "0", "step1")], by[(0.1, "lo", "0", "step1")]
    assert a["mse"] == pytest.approx(b["mse"], rel=1e-12)
    assert any(by[(0.0, *k)]["ll"] != by[(0.1, *k)]["ll"] for (mg, *k) in by if mg == 0.0)
    # the rule: most cells in range, ties to the smaller margin
    fake = [
        {"margin": 0.0, "stage": "updated", "coverage90": 0.80},
        {"margin": 0.0, "stage": "updated", "coverage90": 0.90},
        {"margin": 0.05, "stage": "updated", "coverage90": 0.90},
        {"margin": 0.05, "stage": "updated", "coverage90": 0.96},
        {"margin": 0.1, "stage": "updated", "coverage90": 0.86},
        {"margin": 0.1, "stage": "updated", "coverage90": 0.94},
        {"margin": 0.1, "stage": "step1", "coverage90": 0.20},
    ]
    assert script.chosen_margin(fake) == (0.1, {0.0: 1, 0.05: 1, 0.1: 2})
    assert script.chosen_margin(fake[:4])[0] == 0.0
    capsys.readouterr()
    script.main(["--summary", str(tmp_path / "probconserv_margin.json")])
    out = capsys.readouterr().out
    assert "chosen margin" in out
    assert sum(line.startswith("| diffusion |") for line in out.splitlines()) == 2 * 2
