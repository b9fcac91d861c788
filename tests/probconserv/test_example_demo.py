"""The inverse example (--smoke) and the demo hook."""

from __future__ import annotations

import pytest
import torch

from bayesphys.inference_data import group_dataset, load_netcdf


def test_stefan_front_example_smoke(tmp_path):
    from bayesphys.examples.stefan_front import main

    torch.set_num_threads(1)
    res = main(["--smoke", "--out", str(tmp_path), "--seed", "0"])
    assert (tmp_path / "stefan_front.png").exists()
    idata = load_netcdf(tmp_path / "stefan_front.nc")
    post = group_dataset(idata, "posterior")
    assert set(post.data_vars) >= {"u", "front", "u_star"}
    assert post["u"].shape[-1] == 201
    # the update pulls the mass to b(t) within the stated tolerance (sd 1e-4)
    assert abs(res["ce_after"]) < 1e-3
    assert abs(res["ce_after"]) < abs(res["ce_before"])
    assert 0.0 < res["front_after"][0] < 1.0


@pytest.mark.slow
def test_demo_hook(tmp_path):
    from bayesphys.probconserv._demo import demo

    rows = demo(tmp_path, device=torch.device("cpu"), seed=0)
    assert (tmp_path / "probconserv.nc").exists() and (tmp_path / "probconserv.png").exists()
    ce = {r["metric"]: r["value"] for r in rows}
    assert ce["|CE| ProbConserv"] < 1e-10
    assert all(set(r) == {"component", "problem", "metric", "value", "target"} for r in rows)
