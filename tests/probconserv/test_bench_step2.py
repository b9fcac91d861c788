"""Smoke test of benchmarks/probconserv_step2.py (Step 2 once after moment matching vs per
latent draw, on the same saved ANP)."""

from __future__ import annotations

import json

import pytest
import torch

from bayesphys._bench import repo_root, script_module
from bayesphys.probconserv import ProbConserv

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")


# the script's tiny quick model is trained on a narrower parameter range than the contexts it
# scores; that extrapolation warning is not what the test checks
@pytest.mark.filterwarnings("ignore:posterior. .* context functions have a parameter outside")
def test_step2_variants_score_the_same_model_and_the_stefan_shock(saved_tiny_anp, capsys):
    _, folder = saved_tiny_anp
    stefan = ProbConserv("stefan", step1="anp", hidden=16, n_samples=4, seed=0)
    stefan.fit(steps=3, progress=False)
    stefan.save(folder / "stefan_ANP.pt")
    script = script_module(str(repo_root() / "benchmarks" / "probconserv_step2.py"))
    argv = ["--models", str(folder), "--problems", "diffusion,stefan", "--smoke"]
    rows = json.loads(script.main([*argv, "--out", str(folder)]).read_text())["rows"]
    by = {(r["problem"], r["param"], r["variant"]): r for r in rows}
    # diffusion k = 1, 5 and Stefan u* = 0.5, 0.6, each with both updates; Stefan's
    # reference-sampling shock rows beside them
    assert len(rows) == 2 * 2 + 2 * 3
    for (problem, param, variant), r in by.items():
        if variant == "mixture-ref-sampling":
            assert "mse" not in r and 0.0 <= r["shock_coverage90"] <= 1.0
            continue
        assert r["ce_absmax"] < 1e-10  # both updates conserve the mass
        assert (problem == "stefan") == ("shock_bias" in r)
        other = by[(problem, param, "mixture" if variant == "diag" else "diag")]
        assert r["var_scale"] == other["var_scale"]  # one scalar scale, fitted on Step 1
        # the raw scores carry no variance scale: they differ from the calibrated ones
        assert r["ll_raw"] != r["ll"] or r["var_scale"] == 1.0
    # the two updates differ (different weights of the mass correction)
    assert any(
        by[(p, q, "diag")]["mse"] != by[(p, q, "mixture")]["mse"] for (p, q, v) in by if v == "diag"
    )
    capsys.readouterr()
    script.main(["--summary", str(folder / "probconserv_step2.json")])
    out = capsys.readouterr().out
    assert "Stefan shock position" in out
    assert sum(line.startswith("| diffusion |") for line in out.splitlines()) == 2


def test_step2_needs_saved_models(tmp_path, capsys):
    script = script_module(str(repo_root() / "benchmarks" / "probconserv_step2.py"))
    with pytest.raises(SystemExit) as exc:
        script.main(["--smoke"])
    # any argparse error exits 2: the message names the missing option
    assert exc.value.code == 2 and "--models: required" in capsys.readouterr().err
    torch.set_num_threads(1)
