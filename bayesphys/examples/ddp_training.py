r"""Data-parallel (DDP) training of a small neural surrogate on two CPU processes.

The network learns the parametric heat-equation solution
:math:`u(x, t; \kappa) = e^{-\kappa \pi^2 t} \sin(\pi x)` from samples
:math:`(x, t, \kappa) \mapsto u` (inputs ``[N, 3]``, targets ``[N, 1]``) with
:func:`bayesphys.distributed.ddp.train_ddp`: each rank sees ``batch_size`` samples per step, DDP
averages the gradients, rank 0 writes a checkpoint after every epoch and a rerun resumes from
it. With ``--model rgnp`` the random-grid neural process (:class:`~bayesphys.neural_process.
RandomGridNP`, Poisson family) trains instead, data-parallel inside its own ``fit``
(:class:`~bayesphys.distributed.GradientSync`: each rank draws its own tasks and random grids,
gradients are averaged); ``MetaFlowMatching.fit`` works the same way under ``torchrun``.
A resumed multi-rank RGNP run continues rank 0's random stream exactly; the other ranks' streams
are re-split from it, so it is reproducible but not bitwise the uninterrupted run.

Launch either way::

    python examples/ddp_training.py --nproc 2          # spawns 2 gloo processes itself
    python examples/ddp_training.py --nproc 2 --model rgnp   # the neural process
    torchrun --standalone --nproc_per_node=2 examples/ddp_training.py   # torchrun launches
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_write_text
from ._args import add_out, positive_int, seed
from ._args import device as device_arg

DESCRIPTION = "DDP training of a neural surrogate with 2 CPU processes (gloo), resumable"

__all__ = ["DESCRIPTION", "heat_data", "make_model", "mse_loss", "main"]


def heat_data(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[n, 3]`` = (x, t, kappa) uniform on [0,1] x [0,0.5] x [0.1,1]; targets
    ``[n, 1]``."""
    gen = torch.Generator().manual_seed(seed)
    # float32 whatever torch's default dtype (under a float64 default the same seed drew
    # other data, in float64)
    z = torch.rand(n, 3, generator=gen, dtype=torch.float32)
    z[:, 1] *= 0.5
    z[:, 2] = 0.1 + 0.9 * z[:, 2]
    u = torch.exp(-z[:, 2] * math.pi**2 * z[:, 1]) * torch.sin(math.pi * z[:, 0])
    return z, u[:, None]


def make_model(width: int = 64) -> torch.nn.Module:
    """MLP 3 -> width -> width -> 1 (tanh), float32."""
    f32 = torch.float32  # whatever torch's default dtype (a float64 default built float64)
    return torch.nn.Sequential(
        torch.nn.Linear(3, width, dtype=f32),
        torch.nn.Tanh(),
        torch.nn.Linear(width, width, dtype=f32),
        torch.nn.Tanh(),
        torch.nn.Linear(width, 1, dtype=f32),
    )


def mse_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Batch-mean squared error (a mean, so DDP's gradient average is exact)."""
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def _leave_group() -> None:
    """All ranks leave the process group in order (rank 0, which hosts the store, last) before
    rank 0 goes on alone: a rank whose store vanishes during teardown aborts."""
    from ..distributed.ddp import cleanup_distributed

    cleanup_distributed()


# what the MLP run's checkpoint depends on, recorded in it: train_ddp refuses to resume it with
# other values, while a rerun may change the rest (more epochs, threads, the folder)
_MLP_CONFIG = ("model", "seed", "n_train", "batch_size", "width", "lr")


def _train(cfg: dict[str, Any]) -> dict[str, Any] | None:
    from functools import partial

    from ..distributed.ddp import init_distributed, train_ddp

    torch.set_num_threads(cfg["threads"])
    ctx = init_distributed(device=cfg["device"])
    out = Path(cfg["out"])
    data = heat_data(cfg["n_train"], seed=cfg["seed"])
    res = train_ddp(
        partial(make_model, cfg["width"]),
        mse_loss,
        data,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        seed=cfg["seed"],
        checkpoint=out / "checkpoint.pt" if cfg["resume"] else None,
        progress=False,
        device=ctx.device,
        config={k: cfg[k] for k in _MLP_CONFIG},
    )
    _leave_group()
    if not ctx.is_main:
        return None
    model = res.extra["model"].eval()
    xt, yt = heat_data(2048, seed=cfg["seed"] + 1)
    with torch.no_grad():
        pred = model(xt.to(ctx.device)).cpu()
    summary = {
        "seed": cfg["seed"],
        "world_size": res.extra["world_size"],
        "backend": ctx.backend or "none",
        "device": str(ctx.device),
        "epochs_run": len(res.loss_history),
        "start_epoch": res.extra["start_epoch"],
        "final_train_loss": res.loss_history[-1] if res.loss_history else None,
        "model": "mlp",
        "test_rel_l2": float(torch.linalg.norm(pred - yt) / torch.linalg.norm(yt)),
        "test_metric": "rel_l2",
        "test_value": float(torch.linalg.norm(pred - yt) / torch.linalg.norm(yt)),
        "samples_per_second": res.extra["samples_per_second"],
        "train_seconds": res.seconds,
        "global_batch": cfg["batch_size"] * res.extra["world_size"],
        "checkpoint": str(out / "checkpoint.pt") if cfg["resume"] else None,
        "resume": cfg["resume"],
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def _train_rgnp(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The random-grid neural process on the Poisson family, data-parallel inside its own
    ``fit`` (each rank draws ``batch`` tasks and random grids; gradients averaged)."""
    from ..distributed.ddp import init_distributed
    from ..neural_process import RandomGridNP, evaluate_poisson
    from ..problems.rgnp import poisson_test_set

    torch.set_num_threads(cfg["threads"])
    ctx = init_distributed(device=cfg["device"])
    out = Path(cfg["out"])
    ckpt = out / "rgnp.pt"
    if cfg["resume"] and ckpt.exists():
        model = RandomGridNP.load(ckpt, device=ctx.device)
    else:
        small: dict[str, Any] = {"hidden": 32, "depth": 2, "batch": 8} if cfg["smoke"] else {}
        if cfg.get("rgnp_batch"):
            small["batch"] = cfg["rgnp_batch"]
        model = RandomGridNP("poisson", "RGNP", seed=cfg["seed"], device=ctx.device, **small)
    todo = max(0, cfg["steps"] - model.step_count)
    start = model.step_count
    out.mkdir(parents=True, exist_ok=True)

    def checkpoint(m, step):  # rank 0, every quarter of the run: an interrupt keeps the rest
        if ctx.is_main:
            m.save(ckpt)

    res = model.fit(
        steps=todo, progress=False, callback=checkpoint, callback_every=max(1, todo // 4)
    )
    _leave_group()
    if not ctx.is_main:
        return None
    out.mkdir(parents=True, exist_ok=True)
    model.save(ckpt)
    metrics = evaluate_poisson(model, poisson_test_set(50 if cfg["smoke"] else 200, seed=1))
    summary = {
        "seed": cfg["seed"],
        "model": "rgnp",
        "world_size": ctx.world_size,
        "backend": ctx.backend or "none",
        "device": str(ctx.device),
        "epochs_run": res.steps,
        "start_epoch": start,
        "final_train_loss": res.loss_history[-1] if res.loss_history else None,
        "test_metric": "nse_u",
        "test_value": metrics["nse_u"],
        "test_metrics": metrics,
        "samples_per_second": res.steps
        * model.config.batch
        * ctx.world_size
        / max(res.seconds, 1e-12),
        "train_seconds": res.seconds,
        "global_batch": model.config.batch * ctx.world_size,
        "checkpoint": str(ckpt),
        "resume": cfg["resume"],
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=float))
    return summary


def _run(cfg: dict[str, Any]) -> dict[str, Any] | None:
    return _train_rgnp(cfg) if cfg["model"] == "rgnp" else _train(cfg)


# the settings that define what a checkpoint holds: resuming with others would load a model of
# another shape (a smoke run's narrower MLP) or continue another run's stream
_RUN_KEYS = {
    "mlp": ("model", "width", "n_train", "seed", "batch_size", "lr", "world_size"),
    "rgnp": ("model", "smoke", "rgnp_batch", "seed", "world_size"),
}


def _finished_run(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a finished run in ``out`` that this one would resume with nothing left
    to train (its epochs / steps all done), else ``None`` (a rerun used to overwrite that
    summary with an empty one: 0 epochs, no loss)."""
    out = Path(cfg["out"])
    ckpt = out / ("rgnp.pt" if cfg["model"] == "rgnp" else "checkpoint.pt")
    path = out / "summary.json"
    if not (cfg["resume"] and ckpt.exists() and path.exists()):
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        done = int(summary["start_epoch"]) + int(summary["epochs_run"])
    except (ValueError, KeyError, TypeError):
        return None
    target = cfg["steps"] if cfg["model"] == "rgnp" else cfg["epochs"]
    # only a summary of a run that trained the checkpoint (a --no-resume run writes a summary
    # of its own, of a model that is not in the checkpoint)
    ours = summary.get("model") == cfg["model"] and summary.get("resume") is True
    return summary if ours and done >= target else None


def _check_resumable(cfg: dict[str, Any]) -> None:
    """Refuse to resume from ``out`` when its checkpoint was written with other settings
    (``run.json`` beside it); record this run's settings otherwise (rank 0 only)."""
    out = Path(cfg["out"])
    keys = _RUN_KEYS[cfg["model"]]
    mine = {k: cfg[k] for k in keys}
    ckpt = out / ("rgnp.pt" if cfg["model"] == "rgnp" else "checkpoint.pt")
    record = out / f"run_{cfg['model']}.json"
    if cfg["resume"] and ckpt.exists() and record.exists():
        try:
            theirs = json.loads(record.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            theirs = err
        if not isinstance(theirs, dict):
            why = theirs if isinstance(theirs, Exception) else type(theirs).__name__
            raise ValueError(
                f"--out {out}: its settings record {record.name} is unreadable ({why}), so "
                "the checkpoint beside it cannot be checked; pass --no-resume or another --out"
            )
        # records written before world_size was recorded: that key is unknown, not different
        # (the library's checkpoint check still refuses another rank count inside the ranks)
        diff = {
            k: (theirs.get(k), mine[k])
            for k in keys
            if theirs.get(k) != mine[k] and (k in theirs or k != "world_size")
        }
        if diff:
            raise ValueError(
                f"--out {out}: its checkpoint was written with other settings "
                f"{ {k: v[0] for k, v in diff.items()} } than this run's "
                f"{ {k: v[1] for k, v in diff.items()} }; pass --no-resume or another --out"
            )
    # only a run that writes the checkpoint records its settings: with --no-resume nothing is
    # checkpointed, and rewriting the record would let a later run resume the old checkpoint
    if cfg["resume"] and os.environ.get("RANK", "0") == "0":
        out.mkdir(parents=True, exist_ok=True)
        # atomic through a name of its own: other ranks never read a half-written record
        atomic_write_text(record, json.dumps(mine))


def _spawn_entry(rank: int, world: int, port: int, cfg: dict[str, Any]) -> None:
    from ..distributed.ddp import set_local_rank_env

    set_local_rank_env(rank, world, port)
    _run(cfg)


def main(argv: list[str] | None = None) -> dict:
    """Train with ``--nproc`` processes (spawned here unless launched by torchrun)."""
    from ..distributed.ddp import free_port, launched_by_torchrun, planned_world

    ap = argparse.ArgumentParser(prog="bayesphys run ddp-training", description=DESCRIPTION)
    ap.add_argument("--smoke", action="store_true", help="tiny run (< 30 s)")
    ap.add_argument(
        "--device",
        type=device_arg,
        default="cpu",
        help="cpu (gloo) or cuda (nccl, one GPU per rank)",
    )
    add_out(ap, "ddp_training")
    ap.add_argument("--seed", type=seed, default=0)
    ap.add_argument(
        "--nproc", type=positive_int, default=2, help="processes when not under torchrun"
    )
    ap.add_argument("--epochs", type=positive_int, default=None, help="mlp: training epochs")
    ap.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="per rank (mlp: 64; rgnp: the model's)",
    )
    ap.add_argument("--threads", type=positive_int, default=1, help="torch threads per rank")
    ap.add_argument("--no-resume", action="store_true", help="ignore/skip the checkpoint")
    ap.add_argument(
        "--model",
        choices=("mlp", "rgnp"),
        default="mlp",
        help="mlp: a heat-equation surrogate through train_ddp; rgnp: the random-grid neural "
        "process, data-parallel inside RandomGridNP.fit",
    )
    ap.add_argument("--steps", type=positive_int, default=None, help="rgnp: total optimiser steps")
    args = ap.parse_args(argv)
    # each model trains for its own unit: the other one's option was accepted and ignored
    if args.model == "mlp" and args.steps is not None:
        ap.error("argument --steps: only with --model rgnp (the mlp trains for --epochs)")
    if args.model == "rgnp" and args.epochs is not None:
        ap.error("argument --epochs: only with --model mlp (the rgnp trains for --steps)")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and args.nproc > torch.cuda.device_count():
        ap.error(
            f"argument --nproc: {args.nproc} ranks need {args.nproc} GPUs, "
            f"found {torch.cuda.device_count()}"
        )
    try:
        # torchrun's WORLD_SIZE, checked and named ("abc" was int()'s bare "invalid literal")
        world_size = planned_world()[1] if launched_by_torchrun() else args.nproc
    except ValueError as err:
        ap.error(str(err))
    cfg = {
        "out": str(args.out),
        "seed": args.seed,
        # cuda: cuda:LOCAL_RANK per rank; "cpu:0" is the CPU too (it was read as cuda)
        "device": device if torch.device(device).type == "cpu" else None,
        "epochs": args.epochs or (3 if args.smoke else 30),
        "n_train": 1024 if args.smoke else 8192,
        "batch_size": args.batch_size or 64,
        "rgnp_batch": args.batch_size,
        "width": 32 if args.smoke else 64,
        "lr": 3e-3,
        "threads": args.threads,
        "resume": not args.no_resume,
        "model": args.model,
        "smoke": args.smoke,
        "steps": args.steps or (6 if args.smoke else 1000),
        # the rank count a checkpoint was written with: resuming with another one is refused
        # here as a usage error (it failed inside the spawned ranks, as a traceback)
        "world_size": world_size,
    }
    try:
        _check_resumable(cfg)
    except ValueError as err:  # a usage error, before any rank starts
        ap.error(str(err))
    done = _finished_run(cfg)
    if done is not None:  # nothing left to train: keep the finished run's summary as it is
        unit = "steps" if args.model == "rgnp" else "epochs"
        print(
            f"ddp_training: --out {cfg['out']} already holds a finished run "
            f"({done['start_epoch'] + done['epochs_run']} {unit}); nothing to train (pass "
            f"--no-resume or another --out to train anew, a larger --{unit} to continue it)"
        )
        return {**done, "already_finished": True}
    t0 = time.perf_counter()
    if launched_by_torchrun():
        summary = _run(cfg) or {}
    else:
        import torch.multiprocessing as mp

        Path(cfg["out"]).mkdir(parents=True, exist_ok=True)
        mp.spawn(_spawn_entry, args=(args.nproc, free_port(), cfg), nprocs=args.nproc, join=True)
        summary = json.loads((Path(cfg["out"]) / "summary.json").read_text(encoding="utf-8"))
    summary["wall_seconds"] = time.perf_counter() - t0
    if summary.get("world_size"):
        print(
            f"ddp_training: {summary['world_size']} x {summary['backend']} on {summary['device']}, "
            f"{'steps' if args.model == 'rgnp' else 'epochs'} "
            f"{summary['start_epoch']}..{summary['start_epoch'] + summary['epochs_run'] - 1}, "
            f"test {summary.get('test_metric', 'rel_l2')} "
            f"{summary.get('test_value', summary.get('test_rel_l2')):.3f}, "
            f"{summary['samples_per_second']:.0f} samples/s"
        )
    return summary


if __name__ == "__main__":  # pragma: no cover
    from .._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
