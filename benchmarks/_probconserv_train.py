"""Step-1 models of the ProbConserv benchmark (``benchmarks/probconserv.py``; Hansen et al.
2023): the ANP, the meta-learned GP and their SoftC fine-tunes (PDE-residual penalty), trained
here or loaded from ``--load-models`` (a folder without ``{problem}_SoftC-GP.pt``, written
before SoftC-GP existed: the other three are loaded and SoftC-GP alone is trained, from the
loaded GP)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from bayesphys.probconserv.model import ProbConserv
from bayesphys.problems.gpme import make_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probconserv_settings import SOFTC_CHECK, SOFTC_LR, SOFTC_WEIGHT  # noqa: E402

#: the Step-1 models of a run, in the order they are trained, calibrated and saved
MODELS = ("ANP", "SoftC-ANP", "GP", "SoftC-GP")


def _softc(anp: ProbConserv, prob, cfg, seed, log) -> tuple[ProbConserv, dict]:
    """SoftC-ANP / SoftC-GP: the trained ANP (or meta-GP) fine-tuned with the PDE-residual
    penalty (weight ``SOFTC_WEIGHT``, learning rate ``SOFTC_LR`` of its Step-1 model),
    keeping the state with the smallest Step-1 MSE on 50 validation functions (training
    distribution; checked every ``SOFTC_CHECK`` steps; the model itself is the starting
    candidate). ``cfg["softc"]`` steps."""
    soft = copy.deepcopy(anp)
    lr = SOFTC_LR[anp.config.step1]
    soft.calibration, soft.var_scale = None, 1.0
    soft.set_softc_weight(SOFTC_WEIGHT[prob.name])
    val = make_dataset(prob, 50, seed=555 + seed)
    x = prob.grid(201)
    truth = prob.solution(prob.table_time, x, val.params[:, None])[:, None]

    def val_mse() -> float:
        return float((soft.step1(val).mean - truth).pow(2).mean())

    best, best_state, best_step, done, secs = (
        val_mse(),
        copy.deepcopy(soft.net.state_dict()),
        0,
        0,
        0.0,
    )
    history = [(0, best)]
    while done < cfg["softc"]:
        r = soft.fit(steps=min(SOFTC_CHECK, cfg["softc"] - done), progress=False, lr=lr)
        done, secs = done + r.steps, secs + r.seconds
        mse = val_mse()
        history.append((done, mse))
        if mse < best:
            best, best_state, best_step = mse, copy.deepcopy(soft.net.state_dict()), done
    soft.net.load_state_dict(best_state)
    name = f"SoftC-{anp.config.step1.upper()}"
    log(f"[{prob.name}] {name} fine-tune {done} steps {secs:.0f}s, kept step {best_step}")
    return soft, {"steps": done, "seconds": secs, "kept_step": best_step, "val_mse": history}


def _softc_gp(gp: ProbConserv, info: dict, prob, cfg, seed, log) -> tuple[ProbConserv, dict]:
    """SoftC-GP from the trained (or loaded) meta-GP ``gp`` (:func:`_softc`) with its record:
    steps and seconds are the GP's plus the fine-tune's. Under a forked global stream (the
    seeded models draw from their own; this keeps every other row's draws as without it)."""
    with torch.random.fork_rng(devices=[]):
        soft, r = _softc(gp, prob, cfg, seed, log)
    return soft, {
        **r,
        "steps": gp.steps_done + r["steps"],
        "seconds": info["seconds"] + r["seconds"],
    }


def _train(
    prob, cfg, dev, seed, log, load_models, prev, retrain_softc=False, anp_margin=0.0
) -> dict[str, tuple[ProbConserv, dict]]:
    """Step-1 models :data:`MODELS` trained here or loaded from ``load_models`` (SoftC-GP, if
    its file is absent there, or both SoftC models with ``retrain_softc``, fine-tuned afresh
    from the loaded ANP / GP)."""
    pname = prob.name
    if load_models:
        out = {}
        for key in ("ANP", "GP") if retrain_softc else MODELS:
            path = Path(load_models) / f"{pname}_{key}.pt"
            if key == "SoftC-GP" and not path.exists():  # a folder from before SoftC-GP
                continue
            model = ProbConserv.load(path)
            info = dict(prev.get(f"{pname}/{key}", {"seconds": float("nan")}))
            info.pop("calibration", None)
            info["loaded_from"] = str(path)
            if key not in ("GP", "SoftC-GP"):  # what the ANP was trained with (not this run's)
                info["train_margin"] = model.config.train_margin
            out[key] = (model, info)
            log(f"[{pname}] {key} loaded ({model.steps_done} steps)")
        if retrain_softc:
            anp, info = out["ANP"]
            soft, r2 = _softc(anp, prob, cfg, seed, log)
            out["SoftC-ANP"] = (
                soft,
                {
                    **r2,
                    "steps": anp.steps_done + r2["steps"],
                    "seconds": info["seconds"] + r2["seconds"],
                },
            )
        if "SoftC-GP" not in out:
            out["SoftC-GP"] = _softc_gp(*out["GP"], prob, cfg, seed, log)
        return {key: out[key] for key in MODELS}
    anp = ProbConserv(prob, step1="anp", seed=seed, device=dev, train_margin=anp_margin)
    r = anp.fit(steps=cfg["anp"], progress=False)
    log(f"[{pname}] ANP {r.steps} steps {r.seconds:.0f}s loss {r.loss_history[-1]:.3f}")
    soft, r2 = _softc(anp, prob, cfg, seed, log)
    gp = ProbConserv(prob, step1="gp", seed=seed, device=dev)
    r3 = gp.fit(steps=cfg["gp"], progress=False)
    log(f"[{pname}] GP {r3.steps} steps {r3.seconds:.0f}s loss {r3.loss_history[-1]:.3f}")
    gp_info = {"steps": r3.steps, "seconds": r3.seconds, "message": r3.message}
    return {
        "ANP": (
            anp,
            {
                "steps": r.steps,
                "seconds": r.seconds,
                "message": r.message,
                "train_margin": anp_margin,
            },
        ),
        "SoftC-ANP": (
            soft,
            {**r2, "steps": r.steps + r2["steps"], "seconds": r.seconds + r2["seconds"]},
        ),
        "GP": (gp, gp_info),
        "SoftC-GP": _softc_gp(gp, gp_info, prob, cfg, seed, log),
    }
