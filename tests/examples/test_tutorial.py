"""The tutorial example runs (smoke) and the full run is checked under `slow`."""

from __future__ import annotations

import runpy
import sys
import warnings

import pytest

from bayesphys.examples import available, load


def test_tutorial_smoke_as_a_script_says_where_it_wrote(tmp_path, monkeypatch, capsys):
    # as ``python examples/tutorial_arviz.py`` runs it (its result was dropped unprinted)
    monkeypatch.setattr(sys, "argv", ["tutorial_arviz.py", "--smoke", "--out", str(tmp_path)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = runpy.run_module("bayesphys.examples.tutorial_arviz", run_name="__main__")["res"]
    assert res["rel_l2"] < 0.3 and 0.5 <= res["coverage90"] <= 1.0
    # ArviZ's Pareto-k warning is explained in the output, not left unexplained on stderr
    assert not [w for w in caught if "Pareto" in str(w.message)]
    assert 0 <= res["loo_high_pareto_k"] <= 30
    for f in ("tutorial.nc", "tutorial_ppc.png", "tutorial_calibration.png"):
        assert (tmp_path / f).exists()
    out = capsys.readouterr().out
    assert f"wrote the tutorial's files to {tmp_path}" in out
    assert f"{res['loo_high_pareto_k']} of 30 observations have Pareto k >" in out
    assert "tutorial-arviz" in available()


@pytest.mark.slow
def test_tutorial_full_is_calibrated(tmp_path):
    res = load("tutorial-arviz").main(["--out", str(tmp_path)])
    assert res["calibration_max_gap"] < 0.1
