"""A tiny SBC per component through ``bayesphys calibrate COMPONENT --quick`` (slow: minutes)."""

import json

import pytest

from bayesphys.diagnostics import is_calibrated, suite


@pytest.mark.slow
@pytest.mark.parametrize("component", suite.COMPONENTS)
def test_quick_calibration_run(component, tmp_path):
    path = suite.run_calibration(component, quick=True, out=tmp_path, seed=0)
    rows = [
        r
        for r in json.loads(path.read_text())["rows"]
        if r["setting"].get("component") == component
    ]
    assert rows and all(r["method"] != "-" for r in rows), [r.get("note") for r in rows]
    for r in rows:
        m = r["metrics"]
        assert set(suite.REQUIRED_METRICS) <= set(m)
        assert 0.0 <= m["coverage90"] <= 1.0 and 0.0 <= m["sbc_pvalue"] <= 1.0
    base = [r for r in rows if "recal" not in r["method"]]
    for b in base:  # every rejected posterior has its recalibrated rows beside it
        recal = [r for r in rows if r["method"].startswith(b["method"] + " + ")]
        assert is_calibrated(b["metrics"]) or len(recal) == 2, b["method"]
    assert (tmp_path / f"calibration_{component}.png").exists()
