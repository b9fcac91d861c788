"""Smoke test of benchmarks/odil_b1_cases.py (B1's per-case errors: optimiser or data?)."""

from __future__ import annotations

import json
import math

import pytest

from bayesphys._bench import repo_root, script_module

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")


def test_b1_cases_rows_and_counts(tmp_path):
    script = script_module(str(repo_root() / "benchmarks" / "odil_b1_cases.py"))
    path = script.main(["--cases", "2", "--grid", "32", "--out", str(tmp_path)])
    payload = json.loads(path.read_text())
    rows = payload["rows"]
    assert [r["seed"] for r in rows] == [1000, 1001]
    for r in rows:
        assert all(math.isfinite(r[k]) for k in r)
        # the fit minimises the loss it reports: the truth cannot score much lower
        assert r["loss_fit"] <= r["loss_truth"] + 1e-6
    assert payload["cases"] == 2 and payload["fit_loss_at_most_truth"] == 2


def test_summary_counts_hand_made_rows():
    script = script_module(str(repo_root() / "benchmarks" / "odil_b1_cases.py"))
    row = dict(rel_err_l=0.05, rel_err_v=-0.02, loss_fit=1.0, loss_truth=2.0, z_log_ell=0.5)
    rows = [
        row | {"z_log_v": 0.1},
        row | {"rel_err_l": -0.3, "loss_truth": 0.5, "z_log_ell": -3.0, "z_log_v": -2.0},
    ]
    assert script.summary(rows) == {
        "cases": 2,
        "within_10pct": 1,
        "fit_loss_at_most_truth": 1,
        "truth_in_90_ell": 1,
        "truth_in_90_v": 1,
    }
