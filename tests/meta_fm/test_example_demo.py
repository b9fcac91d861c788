import math

import torch

from bayesphys.inference_data import group_dataset, load_netcdf


def test_example_smoke(tmp_path):
    from bayesphys.examples.population_response import DESCRIPTION, main

    assert DESCRIPTION
    res = main(["--smoke", "--out", str(tmp_path), "--seed", "0"])
    assert (tmp_path / "population_response.png").exists()
    idata = load_netcdf(tmp_path / "population_response.nc")
    w2 = group_dataset(idata, "posterior")["w2"]
    assert w2.shape[0] == 2 and bool((w2 > 0).all())
    assert math.isfinite(res["w2_test_mean"]) and res["w2_test_mean"] > 0
    assert 0.0 <= res["coverage90"] <= 1.0


def test_demo_hook(tmp_path):
    from bayesphys.meta_fm._demo import demo

    rows = demo(tmp_path, device=torch.device("cpu"), seed=0)
    assert (tmp_path / "meta_fm.nc").exists() and (tmp_path / "meta_fm.png").exists()
    assert {"component", "problem", "metric", "value", "target"} <= set(rows[0])
    assert all(math.isfinite(r["value"]) for r in rows)
