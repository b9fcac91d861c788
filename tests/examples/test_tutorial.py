"""The tutorial example runs (smoke) and the full run is checked under `slow`."""

from __future__ import annotations

import pytest

from bayesphys.examples import available, load


def test_tutorial_smoke(tmp_path):
    res = load("tutorial-arviz").main(["--smoke", "--out", str(tmp_path)])
    assert res["rel_l2"] < 0.3 and 0.5 <= res["coverage90"] <= 1.0
    for f in ("tutorial.nc", "tutorial_ppc.png", "tutorial_calibration.png"):
        assert (tmp_path / f).exists()
    assert "tutorial-arviz" in available()


@pytest.mark.slow
def test_tutorial_full_is_calibrated(tmp_path):
    res = load("tutorial-arviz").main(["--out", str(tmp_path)])
    assert res["calibration_max_gap"] < 0.1
