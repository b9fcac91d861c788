import pathlib

import pytest
import torch

from bayesphys.inference_data import group_dataset, load_netcdf


def test_inverse_example_smoke(tmp_path):
    from bayesphys.examples import gp_pde_inverse

    out = gp_pde_inverse.main(["--smoke", "--out", str(tmp_path), "--seed", "0"])
    assert out["D_covered"]
    assert abs(out["D_mean"] - out["D_true"]) < 0.05
    idata = load_netcdf(out["netcdf"])
    post = group_dataset(idata, "posterior")
    assert "D" in post and "u" in post
    assert "y" in group_dataset(idata, "observed_data")
    assert pathlib.Path(out["png"]).stat().st_size > 0


@pytest.mark.slow
def test_demo_hook(tmp_path):
    from bayesphys.gp_pde._demo import demo

    rows = demo(tmp_path, device=torch.device("cpu"), seed=0)
    err = next(r for r in rows if r["metric"] == "rel_l2")["value"]
    assert err < 1e-5
    assert (tmp_path / "gp_pde.nc").exists() and (tmp_path / "gp_pde.png").exists()
