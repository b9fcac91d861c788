"""The glioma example (--smoke) and the demo hook."""

from __future__ import annotations

import pytest
import torch

from bayesphys.examples.glioma import main
from bayesphys.inference_data import load_netcdf
from bayesphys.odil._demo import demo


def test_example_smoke(tmp_path, capsys):
    out = main(["--smoke", "--out", str(tmp_path), "--seed", "1"])
    text = capsys.readouterr().out
    assert "D_w" in text and "rho" in text and "15 mm margin" in text
    assert (tmp_path / "glioma.png").exists()
    idata = load_netcdf(tmp_path / "glioma.nc")
    assert "c" in idata.posterior.data_vars
    assert out["rel_err_v"] < 0.15 and out["focus_err_mm"] < 4.0
    assert 0.0 <= out["rt_coverage_model"] <= 1.0


@pytest.mark.slow
def test_demo_rows(tmp_path):
    rows = demo(tmp_path, device=torch.device("cpu"), seed=0)
    assert (tmp_path / "odil.nc").exists() and (tmp_path / "odil.png").exists()
    names = {r["metric"] for r in rows}
    assert {"rel_err_l", "rel_err_v", "focus_err_mm", "seconds"} <= names
    assert all(r["component"] == "odil" for r in rows)


def test_example_smoke_atlas(tmp_path):
    pytest.importorskip("nilearn")
    out = main(["--smoke", "--atlas", "--out", str(tmp_path), "--seed", "2"])
    assert (tmp_path / "glioma.png").exists()
    assert out["focus_err_mm"] < 4.0 and 0.0 <= out["rt_coverage_model"] <= 1.0


def test_example_smoke_three_foci(tmp_path, capsys):
    out = main(["--smoke", "--foci", "3", "--out", str(tmp_path), "--seed", "2"])
    text = capsys.readouterr().out
    assert "foci chosen by Laplace evidence" in text
    assert set(out["log_evidence"]) == {1, 2, 3}
    best = max(out["log_evidence"], key=out["log_evidence"].get)
    assert out["n_foci"] == best
    assert out["focus_err_mm"] < 8.0  # two voxels at 4 mm
    idata = load_netcdf(tmp_path / "glioma.nc")
    if out["n_foci"] > 1:
        assert idata.posterior["x0"].dims == ("chain", "draw", "focus")
