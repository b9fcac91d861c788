"""The cohort and ddp_training examples run with --smoke."""

from __future__ import annotations

import json

import pytest

from bayesphys.examples import cohort, ddp_training
from bayesphys.inference_data import group_dataset, load_netcdf


def test_cohort_smoke_and_resume(tmp_path):
    out = tmp_path / "cohort"
    argv = ["--smoke", "--out", str(out), "--executor", "sequential"]
    summary = cohort.main(argv)
    assert summary["patients"] == 4 and summary["failed"] == []
    # --patients overrides the smoke size (it was ignored: 4 patients whatever was asked)
    two = cohort.main(
        ["--smoke", "--patients", "2", "--out", str(tmp_path / "two"), "--executor", "sequential"]
    )
    assert two["patients"] == 2
    assert summary["rel_l2_median"] < 0.3
    assert 0.6 < summary["coverage95_mean"] <= 1.0
    assert len(list((out / "fits").glob("p*.nc"))) == 4
    again = cohort.main(argv)  # everything is resumed from out/fits
    assert again["rel_l2_median"] == summary["rel_l2_median"]
    assert again["executor"].startswith("none")
    idata = load_netcdf(out / "cohort.nc")
    u = group_dataset(idata, "posterior")["u"]
    assert u.dims == ("chain", "draw", "patient", "x") and u.sizes["patient"] == 4


def test_ddp_training_smoke_two_processes_and_resume(tmp_path, capsys):
    out = tmp_path / "ddp"
    summary = ddp_training.main(["--smoke", "--out", str(out)])
    assert summary["world_size"] == 2 and summary["backend"] == "gloo"
    assert summary["epochs_run"] == 3 and summary["start_epoch"] == 0
    assert summary["final_train_loss"] < 0.5
    assert (out / "checkpoint.pt").exists()
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    # a full-size run in the same folder would load the smoke run's narrower model: refused
    # before any process starts, as a usage error naming the way out (it was a traceback)
    for argv in (["--nproc", "1", "--epochs", "1"], ["--smoke", "--batch-size", "32"]):
        with pytest.raises(SystemExit) as exc:
            ddp_training.main(["--out", str(out), *argv])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--no-resume or another --out" in err and "Traceback" not in err
    # the same run again: nothing left to train, and the finished run's summary is kept (it
    # was overwritten with an empty one: 0 epochs, no loss)
    before = (out / "summary.json").read_text()
    again = ddp_training.main(["--smoke", "--out", str(out)])
    assert again["already_finished"] and again["epochs_run"] == 3
    assert (out / "summary.json").read_text() == before
    assert "already holds a finished run (3 epochs)" in capsys.readouterr().out
    # a --no-resume run's summary is not the checkpoint's: a later run resumes the checkpoint
    ddp_training.main(["--smoke", "--out", str(out), "--no-resume", "--epochs", "5"])
    again = ddp_training.main(["--smoke", "--out", str(out), "--epochs", "4"])
    assert not again.get("already_finished") and again["start_epoch"] == 3
    assert again["epochs_run"] == 1


def test_ddp_training_of_the_neural_process_resumes(tmp_path):
    """--model rgnp: RandomGridNP.fit data-parallel on 2 gloo ranks; a rerun resumes."""
    out = tmp_path / "rgnp"
    first = ddp_training.main(["--smoke", "--model", "rgnp", "--steps", "4", "--out", str(out)])
    assert first["model"] == "rgnp" and first["world_size"] == 2
    assert first["epochs_run"] == 4 and first["start_epoch"] == 0
    assert first["global_batch"] == 16 and (out / "rgnp.pt").exists()
    assert 0 < first["test_value"] < 5
    again = ddp_training.main(["--smoke", "--model", "rgnp", "--steps", "6", "--out", str(out)])
    assert again["start_epoch"] == 4 and again["epochs_run"] == 2


@pytest.mark.slow  # ~15 s idle: four ODIL glioma fits
def test_cohort_glioma_smoke(tmp_path):
    pytest.importorskip("bayesphys.odil")
    summary = cohort.main(
        ["--smoke", "--out", str(tmp_path), "--executor", "sequential", "--model", "glioma"]
    )
    assert summary["failed"] == [] and summary["patients"] == 4
    assert summary["rel_err_ell_median"] < 0.3 and summary["rel_err_v_median"] < 0.3
    assert set(summary["arviz_summary"]) >= {"D_w[p000]", "rho[p003]"}


@pytest.mark.parametrize(
    "main,argv",
    [
        (cohort.main, ["--patients", "0"]),
        (cohort.main, ["--workers", "-1"]),
        (ddp_training.main, ["--nproc", "0"]),
        (ddp_training.main, ["--batch-size", "2.5"]),
    ],
)
def test_example_sizes_are_argparse_errors(main, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert f"argument {argv[0]}: expected a positive int" in capsys.readouterr().err


def test_ddp_training_no_resume_does_not_rewrite_the_checkpoints_record(tmp_path):
    # before: --smoke --no-resume rewrote run_mlp.json to the smoke settings while the full run's
    # checkpoint stayed, so the next --smoke run resumed a model of another width
    full = {"out": str(tmp_path), "model": "mlp", "width": 64, "n_train": 512, "seed": 0}
    full.update(batch_size=64, lr=3e-3, world_size=2)
    smoke = {**full, "width": 32, "n_train": 64}
    ddp_training._check_resumable({**full, "resume": True})  # the full run records its settings
    (tmp_path / "checkpoint.pt").write_bytes(b"full-width weights")
    ddp_training._check_resumable({**smoke, "resume": False})  # nothing checkpointed: no record
    with pytest.raises(ValueError, match="--no-resume or another --out"):
        ddp_training._check_resumable({**smoke, "resume": True})


def test_ddp_training_resume_with_another_rank_count_is_a_usage_error(tmp_path):
    """Resuming with another --nproc failed inside the spawned ranks (a traceback naming
    resume=False) while another --seed was refused up front; both are refused up front now.
    A record written before the rank count was recorded resumes as before."""
    import json

    cfg = {"out": str(tmp_path), "model": "mlp", "width": 32, "n_train": 64, "seed": 0}
    cfg.update(batch_size=64, lr=3e-3, world_size=2, resume=True)
    ddp_training._check_resumable(cfg)
    (tmp_path / "checkpoint.pt").write_bytes(b"weights")
    with pytest.raises(ValueError, match=r"other settings \{'world_size': 2\} than this run's"):
        ddp_training._check_resumable({**cfg, "world_size": 1})
    ddp_training._check_resumable(cfg)  # the same rank count resumes
    record = tmp_path / "run_mlp.json"
    old = {k: v for k, v in json.loads(record.read_text()).items() if k != "world_size"}
    record.write_text(json.dumps(old))
    ddp_training._check_resumable({**cfg, "world_size": 1})  # unknown, not different


@pytest.mark.parametrize("text", ["{cut", "[1, 2]", '"text"'])
def test_ddp_training_unreadable_settings_record_is_a_usage_error(tmp_path, text):
    """A damaged run_mlp.json raised a JSONDecodeError without its path (a list: an
    AttributeError)."""
    cfg = {"out": str(tmp_path), "model": "mlp", "width": 32, "n_train": 64, "seed": 0}
    cfg.update(batch_size=64, lr=3e-3, world_size=2, resume=True)
    (tmp_path / "checkpoint.pt").write_bytes(b"weights")
    (tmp_path / "run_mlp.json").write_text(text)
    with pytest.raises(
        ValueError, match=r"settings record run_mlp.json is unreadable .*--no-resume"
    ):
        ddp_training._check_resumable(cfg)


def test_cohort_script_exit_status_reports_failed_problems(monkeypatch):
    """``python examples/cohort.py`` exited 0 when problems failed (``bayesphys run cohort``
    exits 1)."""
    import pathlib
    import runpy

    script = pathlib.Path(__file__).parents[2] / "examples" / "cohort.py"
    for result, code in (({"failed": ["3"]}, 1), ({"failed": []}, 0)):
        monkeypatch.setattr(cohort, "main", lambda result=result: result)
        with pytest.raises(SystemExit) as exc:
            runpy.run_path(str(script), run_name="__main__")
        assert exc.value.code == code


def test_cohort_with_no_finished_patient_removes_the_earlier_runs_posterior(tmp_path, monkeypatch):
    out = tmp_path / "cohort"
    argv = ["--smoke", "--patients", "2", "--out", str(out), "--executor", "sequential"]
    cohort.main(argv)
    assert (out / "cohort.nc").exists()

    def broken(self, *args, **kwargs):
        raise RuntimeError("no fit today")

    monkeypatch.setattr(cohort.LinearGaussianModel, "fit", broken)
    with pytest.warns(RuntimeWarning, match="fit_many: 2 of 2 problems failed"):
        summary = cohort.main([*argv, "--seed", "1"])
    assert len(summary["failed"]) == 2
    # the seed-0 posterior no longer sits beside the seed-1 summary that reports no patient
    assert not (out / "cohort.nc").exists()


def test_an_interrupted_rgnp_ddp_run_keeps_its_checkpoints(tmp_path, monkeypatch):
    """--model rgnp saved rgnp.pt only at the end: an interrupted run kept nothing."""
    import torch

    from bayesphys.neural_process import RandomGridNP

    saves = []
    real = RandomGridNP.save

    def save_then_interrupt(self, path):
        out = real(self, path)
        saves.append(self.step_count)
        if len(saves) == 2:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(RandomGridNP, "save", save_then_interrupt)
    threads = torch.get_num_threads()
    cfg = dict(threads=1, device="cpu", out=str(tmp_path), resume=True, smoke=True, seed=0)
    try:
        with pytest.raises(KeyboardInterrupt):
            ddp_training._train_rgnp(dict(cfg, steps=4, rgnp_batch=None))
    finally:
        torch.set_num_threads(threads)
    monkeypatch.undo()
    assert saves == [1, 2]
    assert RandomGridNP.load(tmp_path / "rgnp.pt").step_count == 2


def test_examples_read_cpu_0_as_the_cpu(tmp_path, monkeypatch, capsys):
    """``--device cpu:0`` names the CPU: ddp_training passed it on as no device at all (each
    rank then took cuda:LOCAL_RANK where CUDA exists) and cohort refused it."""
    seen = {}

    def stop(cfg):
        seen.update(cfg)
        raise ValueError("stop here")

    monkeypatch.setattr(ddp_training, "_check_resumable", stop)
    with pytest.raises(SystemExit):
        ddp_training.main(["--smoke", "--device", "cpu:0", "--out", str(tmp_path / "ddp")])
    assert seen["device"] == "cpu:0"
    import bayesphys.distributed

    def ran(*args, **kwargs):
        raise KeyError("ran")

    monkeypatch.setattr(bayesphys.distributed, "fit_many", ran)
    with pytest.raises(KeyError, match="ran"):  # past the device check, into the fits
        cohort.main(["--smoke", "--device", "cpu:0", "--out", str(tmp_path / "cohort")])
