"""Smoke test of benchmarks/probconserv_edge.py (coverage against the distance to the ends)."""

from __future__ import annotations

import json

import pytest

from bayesphys._bench import repo_root, script_module
from bayesphys.probconserv.evaluate import slice_scores
from bayesphys.problems.gpme import get_problem, make_dataset

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")


def test_edge_sweep_scores_every_offset_and_reproduces_the_edge_row(saved_tiny_anp, capsys):
    m, tmp_path = saved_tiny_anp
    script = script_module(str(repo_root() / "benchmarks" / "probconserv_edge.py"))
    argv = ["--models", str(tmp_path), "--problems", "diffusion", "--methods", "ANP"]
    rows = json.loads(script.main([*argv, "--smoke", "--out", str(tmp_path)]).read_text())["rows"]
    n_sets = len(script.OFFSETS) + 1  # the offsets and the uniform edge bin
    assert len(rows) == 2 * n_sets * 2  # 2 ends x sets x (ANP, ProbConserv-ANP)
    prob = get_problem("diffusion")
    lo, hi = prob.train_range
    by = {(r["edge"], r["d"], r["method"]): r for r in rows}
    assert by[("lo", "0", "ANP")]["param_mean"] == pytest.approx(lo)
    assert by[("hi", "0", "ANP")]["param_mean"] == pytest.approx(hi)
    assert by[("hi", "0.05", "ANP")]["param_mean"] == pytest.approx(hi - 0.05 * (hi - lo))
    inner = by[("hi", "0-0.05", "ANP")]["param_mean"]
    assert hi - 0.05 * (hi - lo) < inner < hi
    # d = 0 is the benchmark's own edge row: the same test functions and calibration
    bench = script_module(str(repo_root() / "benchmarks" / "probconserv.py"))
    m.calibrate(**bench.calibration_options(prob, {"n_val": 12, "n_local": 20}, 0))
    test = make_dataset(prob, params=[hi] * 3, seed=10_000)
    x = prob.grid(201)
    truth = prob.solution(prob.table_time, x, test.params[:, None])[:, None]
    mass = prob.mass(prob.table_time, test.params)[:, None]
    sc = slice_scores(m.posterior(test, method="probconserv"), truth, x, mass)
    assert by[("hi", "0", "ProbConserv-ANP")]["coverage90"] == pytest.approx(
        float(sc["coverage90"].mean()), abs=1e-12
    )
    assert by[("hi", "0", "ProbConserv-ANP")]["mse"] == pytest.approx(float(sc["mse"].mean()))
    capsys.readouterr()
    script.main(["--summary", str(tmp_path / "probconserv_edge.json")])
    table = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("| diffusion |") for line in table) == 2 * 2
    with pytest.raises(SystemExit):
        script.main(["--problems", "diffusion"])  # no --models
