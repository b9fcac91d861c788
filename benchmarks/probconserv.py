"""ProbConserv benchmark: GPME diffusion / PME / Stefan + Stefan shock position.

``bayesphys bench probconserv [--quick]`` or ``python benchmarks/probconserv.py [--quick]``.
The problems run on ``--jobs`` worker processes with one thread each (default 2; the quick
run took 315 s on 2 cores on 2026-12-02); ``--jobs 1`` runs them here with ``--threads``
threads (default 1). A problem's rows do not depend on where it runs: ``--jobs 2`` reproduces
``--jobs 1`` (one thread) bit for bit, and ``--problems stefan`` the full run's Stefan rows.
Trains, per problem, an ANP (Step 1), a SoftC-ANP (the ANP fine-tuned with the PDE-residual
penalty) and a meta-learned GP on freshly generated training functions, then scores on seeded
test sets (50 functions per test parameter; 201 points at the table time):
ANP / SoftC-ANP / HardC-ANP / ProbConserv-ANP (hybrid validation-fitted Sigma,
bayesphys.probconserv.calibration, with a parameter-conditional variance scale,
bayesphys.probconserv.conditional, and the mass-residual discrepancy,
bayesphys.probconserv.mass_check) / ProbConserv-ANP-model (the ANP's own low-rank Sigma, one
scalar scale) / ProbConserv-ANP-diag (the reference's diagonal Sigma) and GP / HardC-GP /
ProbConserv-GP / ProbConserv-GP-model. ``--load-models`` / ``--merge`` / ``--problems`` rerun
parts without retraining or losing the other rows.
Anchor figures: Hansen et al. 2023 Table 1 (diffusion) and the reference-checkpoint
measurements of the anchor file (PME, Stefan, shock).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys._bench import bench_row, positive_int, recorded_command, repo_root, write_results
from bayesphys._device import resolve_device
from bayesphys.examples import _args
from bayesphys.posterior import GaussianPosterior
from bayesphys.probconserv.evaluate import shock_position, shock_posterior, slice_scores
from bayesphys.probconserv.model import ProbConserv
from bayesphys.problems.gpme import GPMEData, get_problem, make_dataset, stefan_front

T1 = "Hansen et al. 2023, Table 1 (quoted; k not stated, README figure k=5)"
REF = "anchor §3.2: reference checkpoints, measured"
GPREF = "anchor §3.3: per-function GP prototype (not meta-learned)"

# anchor figures: {(problem, param, method): {metric: value}}
ANCHORS: dict[tuple[str, float, str], tuple[str, dict[str, float]]] = {
    ("diffusion", 5.0, "ANP"): (T1, {"ce": 4.68e-3, "ll": 2.72, "mse": 1.71e-4}),
    ("diffusion", 5.0, "SoftC-ANP"): (T1, {"ce": 3.47e-3, "ll": 2.40, "mse": 2.24e-4}),
    ("diffusion", 5.0, "HardC-ANP"): (T1, {"ce": 0.0, "ll": 3.08, "mse": 1.37e-4}),
    ("diffusion", 5.0, "ProbConserv-ANP"): (T1, {"ce": 0.0, "ll": 2.74, "mse": 1.55e-4}),
    ("diffusion", 5.0, "ProbConserv-ANP-diag"): (T1, {"ce": 0.0, "ll": 2.74, "mse": 1.55e-4}),
}
_PME = {
    "ANP": [
        (4.889e-05, 3.784, -4.550e-04),
        (1.814e-04, 3.680, 4.616e-03),
        (7.463e-04, 3.801, 5.516e-03),
    ],
    "SoftC-ANP": [
        (8.631e-05, 3.332, 2.371e-03),
        (2.343e-04, 3.427, 4.567e-03),
        (6.604e-04, 3.287, 4.410e-03),
    ],
    "HardC-ANP": [(3.953e-05, 3.544, 0.0), (1.526e-04, 3.626, 0.0), (7.123e-04, 3.580, 0.0)],
    "ProbConserv-ANP": [(2.595e-05, 3.825, 0.0), (3.599e-04, 3.720, 0.0), (8.389e-04, 3.846, 0.0)],
}
for meth, vals in _PME.items():
    for m, (a, b, c) in zip((1.0, 3.0, 6.0), vals):
        ANCHORS[("pme", m, meth)] = (REF, {"mse": a, "ll": b, "ce": c})
        if meth == "ProbConserv-ANP":
            ANCHORS[("pme", m, "ProbConserv-ANP-diag")] = (REF, {"mse": a, "ll": b, "ce": c})
_STEFAN = {
    "ANP": [(1.477e-02, -5.012, -2.938e-02), (5.212e-03, 3.736, -1.164e-02)],
    "HardC-ANP": [(1.385e-02, -18.514, 0.0), (5.076e-03, 1.370, 0.0)],
    "ProbConserv-ANP": [(1.492e-02, -4.865, 0.0), (2.033e-03, 3.758, 0.0)],
}
for meth, vals in _STEFAN.items():
    for u, (a, b, c) in zip((0.5, 0.6), vals):
        ANCHORS[("stefan", u, meth)] = (REF, {"mse": a, "ll": b, "ce": c})
        if meth == "ProbConserv-ANP":
            ANCHORS[("stefan", u, "ProbConserv-ANP-diag")] = (REF, {"mse": a, "ll": b, "ce": c})
_GP = {  # (GP mse, GP ll, ProbConserv-GP mse, ProbConserv-GP ll)
    ("diffusion", 1.0): (2.743e-03, 2.819, 5.491e-04, 3.004),
    ("diffusion", 5.0): (5.358e-04, 2.837, 1.708e-05, 3.002),
    ("pme", 1.0): (1.008e-04, 3.139, 9.333e-05, 3.106),
    ("pme", 3.0): (2.050e-02, 0.485, 5.540e-03, 0.619),
    ("pme", 6.0): (1.860e-02, 0.386, 1.303e-02, 0.353),
    ("stefan", 0.5): (9.029e-03, 0.201, 7.677e-03, 0.303),
    ("stefan", 0.6): (1.244e-02, 0.434, 7.165e-03, -1.283),
}
for (pb, p), (a, b, c, d) in _GP.items():
    ANCHORS[(pb, p, "GP")] = (GPREF, {"mse": a, "ll": b})
    ANCHORS[(pb, p, "ProbConserv-GP")] = (GPREF, {"mse": c, "ll": d})
# shock position (function id 1, 500 draws): mean, sd; truth 0.2773 (u*=0.5), 0.2351 (u*=0.6)
_SHOCK = {
    0.5: {
        "ANP": (0.2237, 0.0173),
        "HardC-ANP": (0.2630, 0.1665),
        "ProbConserv-ANP": (0.2511, 0.0108),
    },
    0.6: {
        "ANP": (0.2232, 0.0178),
        "HardC-ANP": (0.2302, 0.0545),
        "ProbConserv-ANP": (0.2410, 0.0146),
    },
}
for u, d in _SHOCK.items():
    truth = float(stefan_front(0.05, u))
    for meth, (mean, sd) in d.items():
        ANCHORS[("stefan-shock", u, meth)] = (
            "anchor §3.2.2: reference checkpoints, function id 1, 500 draws",
            {"bias_fid1": round(mean - truth, 4), "sd_fid1": sd},
        )

# SoftC penalty weight (reference: lambda = 1 for PME). The residual is O(1e2-1e3) at the PME /
# Stefan fronts (infinite slope / smoothed step k), so lambda = 1 (PME) and 0.01 (Stefan)
# wiped out the data fit in the first full run: 0.01 / 1e-4 now, and the fine-tune keeps the
# state with the smallest validation MSE (checked every SOFTC_CHECK steps, starting from the ANP).
SOFTC_WEIGHT = {"diffusion": 1.0, "pme": 0.01, "stefan": 1e-4}
SOFTC_CHECK = 50
# second shock definition: first point below half the smallest plausible u* (u* >= 0.5)
SHOCK_THRESHOLD_2 = 0.25
# variance of the "exact-mean" shock row: the exact field plus tiny iid noise
EXACT_VAR = 1e-12

SETTINGS = {
    "quick": {
        "anp": 400,
        "softc": 60,
        "gp": 250,
        "n_test": 20,
        "shock_draws": 200,
        "n_val": 100,
        "n_local": 200,
    },
    "full": {
        "anp": 3000,
        "softc": 500,
        "gp": 1200,
        "n_test": 50,
        "shock_draws": 500,
        "n_val": 200,
        "n_local": 600,
    },
}
# --quick trains Stefan twice as long (800 ANP / 120 SoftC / 500 GP steps): with 400 ANP steps
# its out-of-range (u* = 0.5) ANP was far enough from the full run's that the update helped it,
# while it hurts the full run's, so the quick ranking missed that pair (chosen after seeing that
# disagreement; the quick run then stayed < 5 min on 2 threads, on an earlier machine)
QUICK_STEP_SCALE = {"stefan": 2.0}
# the ANP's training parameters: U(train_range) widened by this fraction at each end
# (ProbConserv(train_margin=...)); 0 is the paper's setting
ANP_TRAIN_MARGIN = 0.0
# n_local: calibration functions (seed 777 + seed + 100_003; parameters from the training range
# widened by RANGE_MARGIN at each end) of the
# parameter-conditional variance scale (bayesphys.probconserv.conditional); 0 = one scalar scale


def _anchor(problem, param, method):
    a = ANCHORS.get((problem, float(param), method))
    return {"source": a[0], "metrics": a[1]} if a else None


def _raw(model):
    """The same Step-1 model without any variance calibration (coverage "before")."""
    raw = copy.copy(model)
    raw.calibration, raw.var_scale = None, 1.0
    return raw


def _score(model, test, method, x, truth, mass):
    t0 = time.perf_counter()
    post = model.posterior(test, method=method)
    sc = slice_scores(post, truth, x, mass)
    secs = time.perf_counter() - t0
    raw = slice_scores(_raw(model).posterior(test, method=method), truth, x, mass)
    sc["coverage90_raw"] = raw["coverage90"]
    return post, {k: v.squeeze(-1) for k, v in sc.items()}, secs


VARIANTS = [
    ("ANP", "ANP", "none"),
    ("SoftC-ANP", "SoftC-ANP", "none"),
    ("HardC-ANP", "ANP", "hardc"),
    ("ProbConserv-ANP", "ANP", "probconserv"),
    ("ProbConserv-ANP-model", "ANP-model", "probconserv"),
    ("ProbConserv-ANP-diag", "ANP-diag", "probconserv"),
    ("GP", "GP", "none"),
    ("HardC-GP", "GP", "hardc"),
    ("ProbConserv-GP", "GP", "probconserv"),
    ("ProbConserv-GP-model", "GP-model", "probconserv"),
]


def evaluate(prob, models, tests, shock_draws, seed, log, extra_setting=None) -> list[dict]:
    """Rows for every (test parameter, variant); ``models[key] = (model, train_seconds)``."""
    rows = []
    x = prob.grid(201)
    for param, test in tests:
        truth = prob.solution(prob.table_time, x, test.params[:, None])[:, None]  # [B, 1, nx]
        mass = prob.mass(prob.table_time, test.params)[:, None]  # [B, 1]
        setting = {**prob.setting(param), **(extra_setting or {})}
        for label, key, method in VARIANTS:
            if key not in models:
                continue
            model, train_s = models[key]
            post, sc, secs = _score(model, test, method, x, truth, mass)
            n = sc["mse"].numel()
            met = {k: float(v.mean()) for k, v in sc.items()}
            met["mse_se"] = float(sc["mse"].std() / n**0.5)
            met["ce_se"] = float(sc["ce"].std() / n**0.5)
            met["ce_absmax"] = float(sc["ce"].abs().max())  # the CE = 0 target: every function
            met["seconds"] = train_s + secs
            rows.append(
                bench_row(
                    prob.name, label, met, setting=setting, anchor=_anchor(prob.name, param, label)
                )
            )
            log(
                f"  {prob.name} {setting} {label:22s} mse {met['mse']:.3e} ll {met['ll']:.3f} "
                f"ce {met['ce']:.1e} cov90 {met['coverage90']:.2f} crps {met['crps']:.2e}"
            )
            if prob.name != "stefan":
                continue
            t0 = time.perf_counter()
            smet = shock_metrics(post, x, truth, param, shock_draws, seed, prob.table_time)
            smet["seconds"] = time.perf_counter() - t0 + secs
            rows.append(
                bench_row(
                    "stefan-shock",
                    label,
                    smet,
                    setting=setting,
                    anchor=_anchor("stefan-shock", param, label),
                )
            )
            log(
                f"  shock {setting} {label:22s} bias {smet['bias']:+.4f} sd {smet['sd']:.4f} "
                f"(fid1 {smet['bias_fid1']:+.4f} / {smet['sd_fid1']:.4f}; u25 "
                f"{smet['bias_u25']:+.4f} / {smet['sd_u25']:.4f})"
            )
        if prob.name == "stefan":
            # a perfect mean: the exact solution with a tiny iid variance (EXACT_VAR)
            exact = GaussianPosterior(
                truth,
                DiagLinearOperator(torch.full_like(truth, EXACT_VAR)),
                event_shape=(x.numel(),),
            )
            smet = shock_metrics(exact, x, truth, param, shock_draws, seed, prob.table_time)
            rows.append(bench_row("stefan-shock", "exact-mean", smet, setting=setting))
            log(
                f"  shock {setting} {'exact-mean':22s} bias {smet['bias']:+.4f} sd "
                f"{smet['sd']:.4f} (exact field {smet['bias_exact']:+.4f})"
            )
    return rows


def reference_positions(x: torch.Tensor) -> torch.Tensor:
    """The reference code's reading of grid index ``i`` as a position: ``i / nx * x_max``
    (anchor §2; ``x[i] = i / (nx - 1) * x_max`` on our grid, so it reads 200/201 of it)."""
    nx = x.numel()
    return torch.arange(nx, dtype=x.dtype) / nx * float(x[-1])


def shock_metrics(post, x, truth, param, shock_draws, seed, t) -> dict[str, float]:
    """Shock-position metrics of ``post`` (event ``(nx,)``, batch ``[B, 1]``) against the
    Stefan front at ``u* = param``, time ``t``; ``truth [B, 1, nx]`` the exact fields.

    Reference definition (``bias``, ``sd``, ``*_fid1``, ``bias_exact``): first index where a draw
    is <= 0, read as ``idx / nx * x_max``, a draw that never crosses read as index 0 (the
    reference's ``argmin``); ``no_crossing`` is the share of such draws. Level-set reading
    (``*_u25``): first grid point <= 0.25, on the grid itself."""
    xr = reference_positions(x)
    sp = shock_posterior(post, xr, shock_draws, seed=seed, missing="nan").squeeze(-1)  # [S, B]
    none = torch.isnan(sp)
    sp = torch.where(none, xr[0], sp)  # the reference's index 0
    sp2 = shock_posterior(post, x, shock_draws, seed=seed, threshold=SHOCK_THRESHOLD_2).squeeze(-1)
    true = float(stefan_front(t, param))
    lo, hi = torch.quantile(sp, torch.tensor([0.05, 0.95], dtype=sp.dtype), dim=0)
    return {
        "bias": float(sp.mean(0).mean() - true),
        # the exact field read the same way: the first grid point past the front
        "bias_exact": float(shock_position(truth[:, 0], xr, missing="first").mean() - true),
        "sd": float(sp.std(0).mean()),
        "bias_fid1": float(sp[:, 1].mean() - true),
        "sd_fid1": float(sp[:, 1].std()),
        "coverage90": float(((lo <= true) & (true <= hi)).double().mean()),
        "no_crossing": float(none.double().mean()),
        "bias_u25": float(sp2.mean(0).mean() - true),
        "sd_u25": float(sp2.std(0).mean()),
        "bias_u25_fid1": float(sp2[:, 1].mean() - true),
        "sd_u25_fid1": float(sp2[:, 1].std()),
    }


def load_reference_set(prob, path: Path) -> list[tuple[float, GPMEData]]:
    """The reference test functions (``pme_test.npz`` / ``stefan_test.npz``) by parameter."""
    d = np.load(path)
    key = prob.param_name
    params = torch.as_tensor(d[key], dtype=torch.float64)
    out = []
    for p in prob.test_params:
        idx = torch.nonzero((params - p).abs() < 1e-6).flatten()
        out.append(
            (
                p,
                GPMEData(
                    prob,
                    params[idx],
                    torch.as_tensor(d["input_contexts"][idx.numpy()], dtype=torch.float64),
                    torch.as_tensor(d["output_contexts"][idx.numpy(), :, 0], dtype=torch.float64),
                    torch.as_tensor(d["input_targets"][idx.numpy()], dtype=torch.float64),
                    torch.as_tensor(d["output_targets"][idx.numpy(), :, 0], dtype=torch.float64),
                ),
            )
        )
    return out


def reference_rows(
    models_dir: Path,
    data_dir: Path,
    seed: int = 0,
    log=print,
    problems: tuple[str, ...] = ("pme", "stefan"),
) -> list[dict]:
    """Score saved Step-1 models on the reference repository's own PME / Stefan test sets."""
    rows = []
    for pname in problems:
        prob = get_problem(pname)
        path = data_dir / f"{pname}_test.npz"
        if not path.exists():
            log(f"skip {pname}: {path} not found")
            continue
        models = {}
        for key in ("ANP", "SoftC-ANP", "GP"):
            f = models_dir / f"{pname}_{key}.pt"
            if f.exists():
                models[key] = (ProbConserv.load(f), float("nan"))
        if "ANP" in models:
            anpd = copy.deepcopy(models["ANP"][0])
            anpd.config.covariance = "diag"
            anpd.calibrate(seed=777 + seed, n_functions=200, objective="ll")
            models["ANP-diag"] = (anpd, float("nan"))
        tests = load_reference_set(prob, path)
        rows += evaluate(prob, models, tests, 500, seed, log, {"test_set": "reference"})
    for r in rows:
        r["metrics"].pop("seconds", None)
    return rows


NEIGHBOURS = (0, 20, 50)  # analog sizes tried by the hybrid calibration (0: all errors)
# the functions the hybrid calibration is fitted on come from the training range widened by
# RANGE_MARGIN of its length at each end (calibrate(range_margin=...)): with RANGE_SCOPE
# "local" only the parameter-conditional scale's functions, with "all" the validation
# functions too. Chosen by `probconserv_margin.py` on validation functions (context seed
# 30 000, not the test functions) with the rule stated there (most (problem, model, end,
# offset) cells in [0.85, 0.95]): of 64 cells, none 51; local 0.025 / 0.05 / 0.1: 52 / 53 / 40;
# all 0.025 / 0.05 / 0.1: 59 / 62 / 55
RANGE_MARGIN = 0.05
RANGE_SCOPE = "all"
# how the hybrid's (K, beta) is picked from its 2-fold held-out MSEs (calibrate(selection=...)):
# the one-standard-error rule, adopted by the rule of benchmarks/probconserv_selection.py on
# validation functions (coverage cells in range 14 / 14 both, ranking 13 / 13, MSE ratio 1.003)
SELECTION = "one_se"


def calibration_options(prob, cfg: dict, seed: int) -> dict:
    """The benchmark's ``ProbConserv.calibrate`` options (hybrid, conditional scale, margin)."""
    opts = dict(
        seed=777 + seed,
        n_functions=cfg["n_val"],
        objective="hybrid",
        neighbours=NEIGHBOURS,
        local_functions=cfg["n_local"],
        range_margin=RANGE_MARGIN,
        selection=SELECTION,
    )
    if RANGE_SCOPE == "local":  # the validation functions from the training range itself
        opts["data"] = make_dataset(prob, cfg["n_val"], seed=777 + seed)
    return opts


def _softc(anp: ProbConserv, prob, cfg, seed, log) -> tuple[ProbConserv, dict]:
    """SoftC-ANP: the trained ANP fine-tuned with the PDE-residual penalty, keeping the state
    with the smallest Step-1 MSE on 50 validation functions (training distribution; checked
    every ``SOFTC_CHECK`` steps; the ANP itself is the starting candidate)."""
    soft = copy.deepcopy(anp)
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
        r = soft.fit(steps=min(SOFTC_CHECK, cfg["softc"] - done), progress=False, lr=2e-4)
        done, secs = done + r.steps, secs + r.seconds
        mse = val_mse()
        history.append((done, mse))
        if mse < best:
            best, best_state, best_step = mse, copy.deepcopy(soft.net.state_dict()), done
    soft.net.load_state_dict(best_state)
    log(f"[{prob.name}] SoftC fine-tune {done} steps {secs:.0f}s, kept step {best_step}")
    return soft, {"steps": done, "seconds": secs, "kept_step": best_step, "val_mse": history}


def _train(
    prob, cfg, dev, seed, log, load_models, prev, retrain_softc=False, anp_margin=0.0
) -> dict[str, tuple[ProbConserv, dict]]:
    """Step-1 models ``{"ANP", "SoftC-ANP", "GP"}`` trained here or loaded from ``load_models``."""
    pname = prob.name
    if load_models:
        out = {}
        for key in ("ANP", "GP") if retrain_softc else ("ANP", "SoftC-ANP", "GP"):
            model = ProbConserv.load(Path(load_models) / f"{pname}_{key}.pt")
            info = dict(prev.get(f"{pname}/{key}", {"seconds": float("nan")}))
            info.pop("calibration", None)
            info["loaded_from"] = str(Path(load_models) / f"{pname}_{key}.pt")
            if key != "GP":  # what the loaded ANP was trained with (not this run's option)
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
        return out
    anp = ProbConserv(prob, step1="anp", seed=seed, device=dev, train_margin=anp_margin)
    r = anp.fit(steps=cfg["anp"], progress=False)
    log(f"[{pname}] ANP {r.steps} steps {r.seconds:.0f}s loss {r.loss_history[-1]:.3f}")
    soft, r2 = _softc(anp, prob, cfg, seed, log)
    gp = ProbConserv(prob, step1="gp", seed=seed, device=dev)
    r3 = gp.fit(steps=cfg["gp"], progress=False)
    log(f"[{pname}] GP {r3.steps} steps {r3.seconds:.0f}s loss {r3.loss_history[-1]:.3f}")
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
        "GP": (gp, {"steps": r3.steps, "seconds": r3.seconds, "message": r3.message}),
    }


def run(
    quick: bool,
    device: str = "cpu",
    seed: int = 0,
    log=print,
    scale: float = 1.0,
    save_models: str | None = None,
    problems: tuple[str, ...] = ("diffusion", "pme", "stefan"),
    load_models: str | None = None,
    prev_training: dict | None = None,
    retrain_softc: bool = False,
    anp_train_margin: float = ANP_TRAIN_MARGIN,
) -> tuple[list[dict], dict]:
    cfg = dict(SETTINGS["quick" if quick else "full"])
    for k in ("anp", "softc", "gp"):
        cfg[k] = max(1, int(cfg[k] * scale))
    dev = resolve_device(device)
    rows: list[dict] = []
    train_info: dict[str, dict] = {}
    for pname in problems:
        prob = get_problem(pname)
        cpu0 = time.process_time()
        steps = QUICK_STEP_SCALE.get(pname, 1.0) if quick else 1.0
        pcfg = cfg | {k: max(1, int(cfg[k] * steps)) for k in ("anp", "softc", "gp")}
        trained = _train(
            prob,
            pcfg,
            dev,
            seed,
            log,
            load_models,
            prev_training or {},
            retrain_softc,
            anp_train_margin,
        )
        train_info[f"{pname}/cpu"] = {"training_cpu_seconds": time.process_time() - cpu0}
        models = {}
        for key, (model, info) in trained.items():
            train_info[f"{pname}/{key}"] = info
            t_cal = time.perf_counter()
            beta = model.calibrate(**calibration_options(prob, cfg, seed))
            cal = model.calibration
            info["calibration"] = {
                "beta": beta,
                "neighbours": cal.neighbours,
                "selection": cal.selection,
                "prior_scale": cal.prior_scale,
                "post_scale": cal.post_scale,
                "cv_mse": {f"K={k},beta={b}": v for (k, b), v in cal.cv_mse.items()},
                "seconds": time.perf_counter() - t_cal,
            }
            if cal.mass_kappa is not None:
                info["calibration"]["mass_check"] = {
                    "kappa": cal.mass_kappa,
                    "length": cal.mass_length,
                    "margin": cal.mass_margin,
                }
            if cal.local is not None:
                info["calibration"]["local"] = {
                    "functions": cfg["n_local"],
                    "range_margin": RANGE_MARGIN,
                    "range_scope": RANGE_SCOPE,
                    "bandwidth": {st: str(h) for st, h in cal.local.bandwidth.items()},
                    "cv_binned_coverage_error": {
                        st: {str(h): e for h, e in d.items()} for st, d in cal.local.cv.items()
                    },
                }
            log(
                f"[{pname}] {key} hybrid calibration K {cal.neighbours} beta {beta} scales "
                f"{cal.prior_scale:.3g}/{cal.post_scale:.3g}"
                + (f" local bandwidth {cal.local.bandwidth}" if cal.local is not None else "")
            )
            models[key] = (model, info["seconds"] + info["calibration"]["seconds"])
        # without the hybrid: the model's own Sigma with one scalar variance scale, and the
        # reference's diagonal Sigma (same scalar calibration)
        for key, base, cov in (
            ("ANP-model", "ANP", "lowrank"),
            ("ANP-diag", "ANP", "diag"),
            ("GP-model", "GP", None),
        ):
            m = copy.deepcopy(trained[base][0])
            if cov:
                m.config.covariance = cov
            m.calibrate(seed=777 + seed, n_functions=cfg["n_val"], objective="ll")
            models[key] = (m, models[base][1])
        if save_models:
            for key in ("ANP", "SoftC-ANP", "GP"):
                models[key][0].save(Path(save_models) / f"{pname}_{key}.pt")
        tests = [
            (param, make_dataset(prob, params=[param] * cfg["n_test"], seed=10_000 + seed))
            for param in prob.test_params
        ]
        rows += evaluate(prob, models, tests, cfg["shock_draws"], seed, log)
    return rows, train_info


# the problems' relative training cost (one-thread CPU seconds of the full run: diffusion 508,
# PME 464, Stefan 593; --quick trains Stefan twice as long): the longest is submitted first
PROBLEM_COST = {"diffusion": 1.0, "pme": 0.9, "stefan": 1.2}


def run_problem(pname: str, **kwargs) -> dict:
    """:func:`run` for one problem (a worker process's unit of work with ``--jobs``): its
    rows, training records and wall / CPU seconds."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows, train_info = run(problems=(pname,), **kwargs)
    return {
        "rows": rows,
        "training": train_info,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - cpu0,
    }


def run_problems(problems: tuple[str, ...], jobs: int, **kwargs) -> tuple[list[dict], dict, dict]:
    """:func:`run_problem` for every problem, on ``jobs`` worker processes with one thread each
    (longest first, :data:`PROBLEM_COST`), or here when ``jobs == 1``; rows and training records
    in the order of ``problems``, and each problem's wall and CPU seconds (in its worker)."""
    from bayesphys._bench import call_script
    from bayesphys.distributed import resolve_runner

    order = sorted(
        problems,
        key=lambda p: (
            -PROBLEM_COST.get(p, 1.0)
            * (QUICK_STEP_SCALE.get(p, 1.0) if kwargs.get("quick") else 1.0)
        ),
    )
    if jobs > 1:
        fn = functools.partial(call_script, __file__, "run_problem", **kwargs)
        runner = resolve_runner("local", max_workers=jobs, threads_per_worker=1)
    else:
        fn = functools.partial(run_problem, **kwargs)
        runner = resolve_runner("sequential", threads_per_worker=None)
    done: dict[str, dict] = {}
    with runner:  # released on any exit (an error, Ctrl-C)
        for i, ok, value in runner.run(fn, order):
            if not ok:
                raise RuntimeError(f"problem {order[i]!r} failed") from value
            done[order[i]] = value
            print(
                f"[{order[i]}] done in {value['seconds']:.0f} s ({len(done)} of {len(order)})",
                file=sys.stderr,
            )
    rows = [r for p in problems for r in done[p]["rows"]]
    train_info = {k: v for p in problems for k, v in done[p]["training"].items()}
    seconds = {p: {k: done[p][k] for k in ("seconds", "cpu_seconds")} for p in problems}
    return rows, train_info, seconds


NOTES = (
    "stefan-shock bias/sd: mean over the test functions of (posterior mean - true "
    "front) and of the posterior sd, front = first grid index where a draw is <= 0 read as "
    "idx / nx * x_max (the reference definition and conversion, anchor §2; a draw that never "
    "crosses is read as index 0, the reference's argmin; no_crossing: the share of such "
    "draws; the issue's target is judged on it); *_fid1: function id 1 only (the reference's "
    "choice; the anchor figures stand beside these columns); bias_exact: the exact field read "
    "the same way; method exact-mean: the exact field as the "
    "mean with a tiny iid variance (1e-12), i.e. a perfect mean with any symmetric noise: "
    "past the front each point is <= 0 with probability 1/2, so its bias is bias_exact plus "
    "one grid spacing on average; *_u25: front = first grid point x[i] = i / (nx - 1) <= 0.25 "
    "(level-set definition, reported beside it). ProbConserv-* rows use the "
    "hybrid validation-fitted covariance (bayesphys.probconserv.calibration, "
    "200 validation functions from the training distribution, analog size K and weight "
    "beta by 2-fold held-out MSE with the one-standard-error rule (SELECTION), see "
    "training/*/calibration) with a parameter-conditional "
    "variance scale (bayesphys.probconserv.conditional: inferred parameter from the Step-1 "
    "mean and the mass, localized split-conformal 90 % scale on n_local further "
    "functions from the training range widened by RANGE_MARGIN of its length at each end "
    "(RANGE_SCOPE all: the validation functions too), "
    "bandwidth by 2-fold binned coverage) and the mass-residual "
    "discrepancy (bayesphys.probconserv.mass_check: where the inferred parameter lies more "
    "than 2 sd outside the training range, a smooth mass-neutral discrepancy sized by the "
    "slice's mass residual; means unchanged); ANP/GP/SoftC-ANP/HardC-* rows (unconstrained: "
    "they never see the conservation right-hand side b) the same hybrid covariance with the "
    "pooled validation scale and no mass check (HardC projects the mean onto b); "
    "*-model rows the "
    "model's own covariance with one scalar variance scale; coverage90_raw: the same "
    "method without any variance calibration. SoftC weight per problem: " + str(SOFTC_WEIGHT)
)

HEADLINE = ("ProbConserv-ANP", "ProbConserv-GP")  # the rows the targets are judged on


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def ranking_agreement(rows: list[dict], full_rows: list[dict]) -> dict:
    """How far a (quick) run reproduces the full table's ranking: for every (problem, setting,
    model X in ANP / GP) of both, the sign of MSE(ProbConserv-X) - MSE(X). A full-table pair
    whose difference is within its standard error, ``sqrt(se_1^2 + se_2^2)`` of the two rows'
    ``mse_se``, is a tie that either order reproduces. Returns ``{"pairs", "agree",
    "agree_strict", "ties", "disagree": [(problem, setting, X), ...]}``."""

    def table(rs):
        return {
            (r["problem"], json.dumps(r["setting"], sort_keys=True), r["method"]): r["metrics"]
            for r in rs
            if r["problem"] in ("diffusion", "pme", "stefan")
            and r["setting"].get("test_set") != "reference"
        }

    mine, full = table(rows), table(full_rows)
    out = {"pairs": 0, "agree": 0, "agree_strict": 0, "ties": 0, "disagree": []}
    for (problem, setting, method), m in mine.items():
        if method not in ("ANP", "GP"):
            continue
        pc, f, fpc = (
            mine.get((problem, setting, f"ProbConserv-{method}")),
            full.get((problem, setting, method)),
            full.get((problem, setting, f"ProbConserv-{method}")),
        )
        if pc is None or f is None or fpc is None:
            continue
        out["pairs"] += 1
        full_diff = fpc["mse"] - f["mse"]
        tie = abs(full_diff) <= float(np.hypot(fpc.get("mse_se", 0.0), f.get("mse_se", 0.0)))
        same = (pc["mse"] < m["mse"]) == (full_diff < 0)
        out["ties"] += tie
        out["agree_strict"] += same
        out["agree"] += same or tie
        if not (same or tie):
            out["disagree"].append((problem, json.loads(setting), method))
    return out


def target_notes(rows: list[dict]) -> list[dict]:
    """The rows with the issue's targets written as notes on the rows they are judged on
    (``met`` / ``MISSED``, the setting named in each note); earlier target notes are replaced.

    CE = 0 and 90 % coverage in [0.85, 0.95] on every ProbConserv-ANP / -GP row; diffusion
    k = 5 MSE < 1.55e-4 with LL >= 2.74; PME m = 3, 6 MSE no worse than the unconstrained
    model; Stefan u* = 0.5 LL > -4.87 (the reference's out-of-range LL); shock position at
    u* = 0.6 |bias| < 0.006 with sd <= 0.015 (reference definition; the note also gives the
    ``exact-mean`` row's score on it where that row is present)."""
    by_key = {
        (r["problem"], json.dumps(r["setting"], sort_keys=True), r["method"]): r for r in rows
    }
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if k != "note"}
        m, st, meth = r["metrics"], r["setting"], r["method"]
        checks: list[str] = []
        if st.get("test_set") == "reference":  # the reference's own test functions: no targets
            out.append(r)
            continue
        if meth in HEADLINE and r["problem"] != "stefan-shock":
            ce = m.get("ce_absmax", abs(m["ce"]))  # largest |CE| over the functions
            checks.append(f"CE = 0: {_verdict(ce < 1e-10)}")
            cov = m["coverage90"]
            checks.append(f"coverage90 {cov:.3f} in [0.85, 0.95]: {_verdict(0.85 <= cov <= 0.95)}")
            if r["problem"] == "diffusion" and st.get("k") == 5:
                ok = m["mse"] < 1.55e-4 and m["ll"] >= 2.74
                checks.append(f"mse < 1.55e-4 with ll >= 2.74: {_verdict(ok)}")
            if r["problem"] == "pme" and st.get("m") in (3, 6):
                base = by_key.get(
                    (r["problem"], json.dumps(st, sort_keys=True), meth.split("-", 1)[1])
                )
                if base is not None:
                    ok = m["mse"] <= base["metrics"]["mse"]
                    checks.append(
                        f"mse no worse than {base['method']} ({base['metrics']['mse']:.3g}): "
                        f"{_verdict(ok)}"
                    )
            if r["problem"] == "stefan" and st.get("u_star") == 0.5:
                checks.append(f"out-of-range ll > -4.87: {_verdict(m['ll'] > -4.87)}")
        if meth in HEADLINE and r["problem"] == "stefan-shock" and st.get("u_star") == 0.6:
            ok = abs(m["bias"]) < 0.006 and m["sd"] <= 0.015
            text = f"|bias| < 0.006 with sd <= 0.015: {_verdict(ok)}"
            perfect = by_key.get(("stefan-shock", json.dumps(st, sort_keys=True), "exact-mean"))
            if perfect is not None:
                pm_ = perfect["metrics"]
                text += (
                    f" (exact-mean, a perfect mean with tiny noise, scores "
                    f"{pm_['bias']:+.4f} / {pm_['sd']:.4f} on this definition: "
                    f"{_verdict(abs(pm_['bias']) < 0.006 and pm_['sd'] <= 0.015)})"
                )
            checks.append(text)
        if checks:
            where = ", ".join(f"{k}={v}" for k, v in st.items())
            r["note"] = f"({where}) targets: " + "; ".join(checks)
        out.append(r)
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(
        prog="bayesphys bench probconserv", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--quick", action="store_true", help="short training, 20 test functions")
    ap.add_argument("--out", default=None, help="output folder (quick default: a temp dir)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=_args.seed, default=0)
    ap.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        help="worker processes over the problems, one thread each (default: 2, or 1 when "
        "--threads is given or one problem runs); 1: in this process with --threads threads",
    )
    ap.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads of this process with --jobs 1 (default 1: every problem's rows are then "
        "those of a worker's)",
    )
    ap.add_argument(
        "--scale", type=_args.float_in(0.0), default=1.0, help="multiply all training steps"
    )
    ap.add_argument("--save-models", default=None, help="folder for the trained Step-1 models")
    ap.add_argument("--problems", default="diffusion,pme,stefan")
    ap.add_argument(
        "--anp-train-margin",
        type=_args.nonnegative_float,
        default=None,
        help="widen the ANP's training range by this fraction at each end (default "
        f"{ANP_TRAIN_MARGIN})",
    )
    ap.add_argument(
        "--reference",
        nargs=2,
        metavar=("MODELS", "DATA"),
        default=None,
        help="only add rows scoring the saved models in MODELS on the reference test sets in "
        "DATA (pme_test.npz, stefan_test.npz) to the existing results file",
    )
    ap.add_argument(
        "--load-models",
        default=None,
        help="skip training: load {problem}_{ANP,SoftC-ANP,GP}.pt from this folder (written by "
        "--save-models); training seconds are taken from the existing results file",
    )
    ap.add_argument(
        "--retrain-softc",
        action="store_true",
        help="with --load-models: fine-tune SoftC-ANP afresh from the loaded ANP",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the problems not in --problems from the existing results file",
    )
    ap.add_argument(
        "--retarget",
        action="store_true",
        help="only rewrite the target notes (and the docs table) of the existing results file",
    )
    args = ap.parse_args(argv)
    unknown = sorted(set(args.problems.split(",")) - {"diffusion", "pme", "stefan"})
    if unknown:
        ap.error(f"--problems: unknown {unknown}; expected some of diffusion, pme, stefan")
    if args.load_models and args.anp_train_margin is not None:
        ap.error(
            "--anp-train-margin: loaded models keep the margin they were trained with (recorded "
            "as train_margin); give it only when training"
        )
    n_problems = len(args.problems.split(","))
    if args.reference or args.retarget:
        args.jobs = 1  # these modes train nothing
    elif args.jobs is None:
        args.jobs = 1 if args.threads is not None else min(2, n_problems)
    if args.jobs > 1 and args.threads not in (None, 1):
        ap.error(
            f"--threads {args.threads}: with --jobs {args.jobs} each worker runs one thread; "
            "give --jobs 1 to run here with more threads"
        )
    # one thread unless asked: a problem's rows are the same whether it runs alone (a
    # --problems stefan --merge refresh), in a worker or beside the others
    args.threads = args.threads or 1
    torch.set_num_threads(args.threads)
    if args.reference:
        return _add_reference(args)
    if args.retarget:
        return _rewrite(args, lambda payload: payload["rows"], {"notes": NOTES})
    out = args.out
    if out is None and args.quick:
        out = tempfile.mkdtemp(prefix="bench_probconserv_")
    prev = _previous(out)
    problems = tuple(args.problems.split(","))
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows, train_info, problem_seconds = run_problems(
        problems,
        min(args.jobs, len(problems)),
        quick=args.quick,
        device=args.device,
        seed=args.seed,
        scale=args.scale,
        save_models=args.save_models,
        load_models=args.load_models,
        prev_training=prev.get("training", {}),
        retrain_softc=args.retrain_softc,
        anp_train_margin=ANP_TRAIN_MARGIN
        if args.anp_train_margin is None
        else args.anp_train_margin,
    )
    total, total_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    jobs = min(args.jobs, len(problems))
    if jobs > 1:  # the workers' CPU time (this process only waited)
        total_cpu = sum(s["cpu_seconds"] for s in problem_seconds.values())
    # the arguments as given (thread count, model folders): a --threads 2 and a --threads 1
    # run train the float32 ANP differently
    cmd = recorded_command(__file__, argv)
    if args.merge and prev:
        keep = [r for r in prev["rows"] if r["problem"].split("-")[0] not in problems]
        rows = keep + rows
        train_info = {
            **{
                k: v for k, v in prev.get("training", {}).items() if k.split("/")[0] not in problems
            },
            **train_info,
        }
    runs = list(prev.get("runs", [])) if args.merge else []
    runs.append(
        {
            "problems": list(problems),
            "seconds": total,
            "cpu_seconds": total_cpu,
            "jobs": jobs,
            "threads": 1 if jobs > 1 else args.threads,  # of each process that fitted
            # each problem's wall and CPU seconds in its worker (or here, with --jobs 1)
            "problem_seconds": problem_seconds,
            "load_models": args.load_models,
            "argv": list(argv) if argv is not None else sys.argv[1:],
        }
    )
    extra = {}
    full_path = repo_root() / "benchmarks" / "results" / "probconserv.json"
    if args.quick and full_path.exists():
        full = json.loads(full_path.read_text(encoding="utf-8"))
        if not full.get("quick"):
            agreement = ranking_agreement(rows, full["rows"])
            extra["ranking_vs_full"] = agreement
            print(
                f"ranking vs the full table (benchmarks/results/probconserv.json): "
                f"{agreement['agree']} of {agreement['pairs']} (model, setting) pairs agree "
                f"({agreement['agree_strict']} in sign; {agreement['ties']} full-table ties "
                f"within one standard error); disagree: {agreement['disagree']}",
                file=sys.stderr,
            )
    if jobs > 1:  # the fits ran in worker processes with one thread each
        extra["threads"] = f"{jobs} workers x 1"
    extra |= {
        "total_seconds": total,
        "total_cpu_seconds": total_cpu,
        "runs": runs,
        "training": train_info,
        "reference_training_cost": "reference ANP: ~3 s/step x 20k steps (~16-19 h) on this "
        "2-core machine (anchor §4)",
        "notes": NOTES,
    }
    path = write_results(
        "probconserv",
        target_notes(rows),
        quick=args.quick,
        command=cmd,
        out=out,
        device=args.device,
        extra=extra,
    )
    print(f"wrote {path} in {total:.0f}s", file=sys.stderr)
    return path


def _previous(out) -> dict:
    """The existing results file in ``out`` (default: benchmarks/results), or ``{}``."""
    import json

    from bayesphys._bench import repo_root

    path = (Path(out) if out else repo_root() / "benchmarks" / "results") / "probconserv.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _rewrite(args, new_rows, extra_update: dict) -> Path:
    """Rewrite the existing results file (``--out`` or benchmarks/results) with the rows
    ``new_rows(payload)``, target notes recomputed, its command and the description of the
    run that produced it (date, versions, threads, machine) kept."""
    import json

    from bayesphys._bench import repo_root

    out = Path(args.out) if args.out else repo_root() / "benchmarks" / "results"
    payload = json.loads((out / "probconserv.json").read_text(encoding="utf-8"))
    extra = {k: v for k, v in payload.items() if k not in _BASE_KEYS}
    extra.update(extra_update)
    return write_results(
        "probconserv",
        target_notes(new_rows(payload)),
        quick=payload["quick"],
        command=payload["command"],
        out=args.out,
        device=payload["device"],
        extra=extra,
    )


def _add_reference(args) -> Path:
    def rows(payload):
        kept = [r for r in payload["rows"] if r["setting"].get("test_set") != "reference"]
        return kept + reference_rows(Path(args.reference[0]), Path(args.reference[1]), args.seed)

    note = (
        "rows with test_set=reference: the same trained models scored on the reference "
        "repository's PME/Stefan test functions (50 per parameter)"
    )
    return _rewrite(args, rows, {"reference_test_sets": note})


# keys write_results sets from its arguments; every other key of the existing file (among
# them the run's date, torch, python, threads and machine) is carried over unchanged
_BASE_KEYS = {"component", "command", "quick", "device", "rows"}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    res = main()
    if res is not None:  # a results file (internal modes print their own output)
        print(f"results: {res}")
