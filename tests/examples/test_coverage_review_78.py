"""Review 78 (line/branch coverage): paths of the cohort and ddp_training examples that no
test ran (a usage error, a damaged summary, the glioma summary's formulas, a run under
torchrun in this process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist

from bayesphys.distributed import ddp
from bayesphys.examples import cohort, ddp_training
from bayesphys.inference_data import build_inference_data
from tests.env_vars import DDP_ENV, clear_env


def _cuda_present(monkeypatch, count: int) -> None:
    """Simulate ``count`` CUDA devices (nothing here runs on them: refused before)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_cohort_refuses_a_cuda_device_as_a_usage_error(monkeypatch, tmp_path, capsys):
    _cuda_present(monkeypatch, 1)
    with pytest.raises(SystemExit) as exc:
        cohort.main(["--device", "cuda", "--out", str(tmp_path / "c")])
    assert exc.value.code == 2
    assert "argument --device: this example runs on cpu, received 'cuda'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_ddp_training_refuses_more_ranks_than_gpus_as_a_usage_error(monkeypatch, tmp_path, capsys):
    _cuda_present(monkeypatch, 1)
    with pytest.raises(SystemExit) as exc:
        ddp_training.main(["--device", "cuda", "--nproc", "2", "--out", str(tmp_path / "d")])
    assert exc.value.code == 2
    assert "argument --nproc: 2 ranks need 2 GPUs, found 1" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "text", ["{", '{"start_epoch": 0}', '{"start_epoch": null, "epochs_run": 3}']
)
def test_a_damaged_summary_is_no_finished_run(tmp_path, text):
    """A summary that does not parse, lacks a count, or holds a null one: the run is not taken
    for finished (it trains; only a readable summary of a completed run stops it)."""
    (tmp_path / "checkpoint.pt").write_bytes(b"weights")
    (tmp_path / "summary.json").write_text(text, encoding="utf-8")
    cfg = {"out": str(tmp_path), "model": "mlp", "resume": True, "epochs": 1, "steps": 1}
    assert ddp_training._finished_run(cfg) is None
    good = {"start_epoch": 0, "epochs_run": 3, "model": "mlp", "resume": True}
    (tmp_path / "summary.json").write_text(json.dumps(good), encoding="utf-8")
    assert ddp_training._finished_run(cfg) == good  # the same folder, a readable summary


@pytest.mark.usefixtures("restore_threads")
def test_ddp_training_under_torchrun_trains_in_this_process(monkeypatch, tmp_path):
    """One rank launched by torchrun (RANK/WORLD_SIZE set): no ranks are spawned, the run
    trains here; --device auto is the CPU without CUDA, and --batch-size is the neural
    process's batch per rank (global batch = batch x world size)."""
    clear_env(monkeypatch, *DDP_ENV)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("torch.multiprocessing.spawn", lambda *a, **k: pytest.fail("spawned ranks"))
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for var, value in {**env, "MASTER_PORT": str(ddp.free_port())}.items():
        monkeypatch.setenv(var, value)
    argv = ["--smoke", "--model", "rgnp", "--steps", "1", "--batch-size", "4", "--device", "auto"]
    try:
        summary = ddp_training.main([*argv, "--out", str(tmp_path)])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert (summary["world_size"], summary["backend"], summary["device"]) == (1, "gloo", "cpu")
    assert summary["global_batch"] == 4 and summary["epochs_run"] == 1
    assert json.loads((tmp_path / "summary.json").read_text())["global_batch"] == 4
    assert not dist.is_initialized()  # the group it made is gone


def test_summarise_glioma_reports_median_errors_and_90_percent_intervals(capsys):
    """Two patients, 4000 draws each: the relative error of the posterior median and whether
    the truth lies in the 5 %..95 % quantiles, against numpy's median and quantiles."""
    rng = np.random.default_rng(0)
    draws = {
        name: rng.normal(loc, 0.1, size=(1, 4000, 2))
        for name, loc in {"D_w": 0.5, "rho": 0.2, "ell": 1.0, "v": 2.0}.items()
    }
    idata = build_inference_data(
        posterior=draws,
        coords={"patient": ["p000", "p001"]},
        dims={name: ["patient"] for name in draws},
    )
    # p000: both truths near the median (inside); p001: ell far above the 95 % quantile
    problems = {
        "p000": {"truth": {"ell": 1.01, "v": 1.95}},
        "p001": {"truth": {"ell": 1.5, "v": 2.0}},
    }
    out = cohort.summarise_glioma(idata, problems)
    for k, pid in enumerate(("p000", "p001")):
        inside = []
        for name in ("ell", "v"):
            d = draws[name][0, :, k]
            truth = problems[pid]["truth"][name]
            expected = abs(np.median(d) - truth) / truth
            assert out[f"rel_err_{name}"][pid] == pytest.approx(expected, rel=1e-12)
            lo, hi = np.quantile(d, [0.05, 0.95])
            inside.append(bool(lo <= truth <= hi))
        assert out["in_90"][pid] == inside
    assert out["in_90"] == {"p000": [True, True], "p001": [False, True]}
    assert out["coverage90"] == 0.75
    assert out["rel_err_ell_median"] == pytest.approx(
        np.median([out["rel_err_ell"]["p000"], out["rel_err_ell"]["p001"]]), rel=1e-12
    )
    assert set(out["arviz_summary"]) >= {"D_w[p000]", "v[p001]"}
    assert "D_w[p000]" in capsys.readouterr().out
