"""Smoke test of benchmarks/probconserv_mass_check.py (the mass-check ablation)."""

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
def test_ablation_scores_every_length_and_the_check_off(tmp_path, capsys):
    torch.set_num_threads(1)
    for key, step1 in (("ANP", "anp"), ("GP", "gp")):
        kw = {"hidden": 16, "n_samples": 8} if step1 == "anp" else {"gp_width": 8}
        m = ProbConserv("stefan", step1=step1, seed=0, **kw)
        m.fit(steps=3, progress=False)
        m.save(tmp_path / f"stefan_{key}.pt")
    script = script_module(str(repo_root() / "benchmarks" / "probconserv_mass_check.py"))
    argv = ["--models", str(tmp_path), "--problems", "stefan", "--smoke", "--out", str(tmp_path)]
    rows = json.loads(script.main(argv).read_text())["rows"]
    # 2 models x (off + 3 gated lengths + gated without floor + ungated) x 2 test parameters
    # x (before, after)
    assert len(rows) == 2 * 6 * 2 * 2
    assert {r["length"] for r in rows} == {"-", 0.025, 0.05, 0.1}
    assert {r["check"] for r in rows} == {"off", "gated", "gated, no floor", "every function"}
    off = [r for r in rows if r["check"] == "off"]
    assert all(r["widened"] == 0.0 for r in off)
    assert {r["floor"] for r in rows if r["check"] == "gated"} == {1.0}
    assert {r["floor"] for r in rows if r["check"] == "gated, no floor"} == {0.0}
    # the floor only adds: a function widened without it is widened with it
    for r in rows:
        if r["check"] == "gated, no floor":
            ref = next(
                o
                for o in rows
                if o["check"] == "gated"
                and o["length"] == 0.05
                and (o["method"], o["param"]) == (r["method"], r["param"])
            )
            assert ref["widened"] >= r["widened"]
    # the discrepancy never changes the mean: MSE is the same with the check on and off
    for r in rows:
        ref = next(o for o in off if (o["method"], o["param"]) == (r["method"], r["param"]))
        assert r["mse"] == pytest.approx(ref["mse"], rel=1e-9)
    out = tmp_path / "probconserv_mass_check.json"
    capsys.readouterr()
    script.main(["--summary", str(out)])
    table = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("| stefan |") for line in table) == 2 * 2 * 2
    with pytest.raises(SystemExit):
        script.main(["--problems", "stefan"])  # no --models
