"""Problems and per-problem settings of the Meta Flow Matching benchmark
(``benchmarks/meta_fm.py``; Atanackovic et al., Meta Flow Matching, ICLR 2025; issue 7): the
data of B1-B4 and B4's replica split, and the field's presets (Fourier features, training steps,
conditioning, centring, noise splits, ensemble members, task costs, the model's keyword
arguments) chosen by the ablation scripts."""

from __future__ import annotations

from bayesphys.problems.populations import (
    interacting_particles,
    letters,
    linear_map,
    patient_screen,
)


def problem_data(pid: str, quick: bool, seed: int):
    if pid == "B1":
        return letters(seed=0), {"split": "test"}, 50
    # B2/B3: the anchor's training sizes; a fresh draw of every population per seed, and 200
    # calibration / 200 test populations in the full run, so that the conformal coverage is not
    # the coverage of one small fixed split (binomial sd 0.02 instead of 0.04)
    if pid == "B2":
        n = (200, 50, 50) if quick else (200, 200, 200)
        return (
            linear_map(dim=2, n_train=n[0], n_cal=n[1], n_test=n[2], seed=seed),
            {"split": "test", "d": 2},
            50,
        )
    if pid == "B3":
        n = (100, 30, 30) if quick else (300, 200, 200)
        return (
            interacting_particles(n_train=n[0], n_cal=n[1], n_test=n[2], seed=seed),
            {"split": "test"},
            50,
        )
    if pid == "B4":
        fold = seed % 4
        cells = 500 if quick else 1000
        return patient_screen(n_cells=cells, fold=fold, seed=0), {"split": "patient"}, 100
    if pid == "B4-replica":
        # the anchor's second B4 split: the same populations, one replicate of every
        # (patient, treatment) held out (test), the next one calibrates; seed s uses fold s % 3
        cells = 500 if quick else 1000
        data = patient_screen(n_cells=cells, fold=seed % 3, seed=0, split="replica")
        return data, {"split": "replica"}, 100
    raise ValueError(pid)


# random Fourier features of x per problem (`benchmarks/meta_fm_fourier_ablation.py`). B2 has
# none: on its populations (spread ~0.35 against a data scale ~2) the sigma_B = 1 features
# generalise worse across populations (exact-law W2 0.315 with, 0.196 without, at 5000 steps).
# B4's MFM (there without its cell types) is worse without them (fold 0: W2 1.678 vs 1.565),
# so the other problems keep them.
FOURIER = {"B1": 64, "B2": 0, "B3": 64, "B4": 64}

# training steps per model in the fuller run (``--steps N`` sets N for every problem; --quick:
# 300). B1 gets 5000: at 1000 steps MFM, FM and CGFM tie on B1 (W2 0.333 / 0.334 / 0.335 in
# the 2026-11-29 run, inside one seed sd). B2 gets 5000: without Fourier features its held-out
# error keeps falling with training (exact-law W2 0.247 / 0.196 / 0.166 at 1k / 5k / 20k steps,
# meta_fm_fourier_ablation.py). Both fields are cheap on one thread per worker (--jobs).
FULL_STEPS = {"B1": 5000, "B2": 5000, "B3": 1000, "B4": 1000}
QUICK_STEPS = 300


# how the field reads its condition per problem (MFMConfig.conditioning; the same field for FM,
# CGFM and MFM), chosen by `benchmarks/meta_fm_conditioning_ablation.py --selection` on data the
# benchmark does not test on, with the rule "FiLM where it lowers that run's W2 by more than
# 1 %, else the reference's concatenation": FiLM on B2 (0.243 vs 0.274; the field rotates x by
# a population-dependent angle) and B3 (0.236 vs 0.261), concatenation on B1 (FiLM 0.355 vs
# 0.322) and B4 (1.541 vs 1.545, a tie).
CONDITIONING = {"B1": "concat", "B2": "film", "B3": "film", "B4": "concat"}

# whether MFM's field reads each point relative to its source population's mean
# (MFMConfig.centered; MFM and its ensemble only: FM and CGFM stay the reference's baselines),
# chosen by `benchmarks/meta_fm_conditioning_ablation.py --centering --selection` with the rule
# "centred where it lowers that run's W2 by more than 1 % (B2: 3 %)": B2 (0.176 vs 0.237) and
# B3 (0.222 vs 0.236); B1 (0.327 vs 0.323) and B4 (1.611 vs 1.545) keep the raw input.
CENTERED = {"B1": False, "B2": True, "B3": True, "B4": False}


# random splits that estimate each prediction's own sampling noise (the aleatoric part of the
# predictive spread, MFMEnsemble.uncertainty). More splits estimate it better
# (`meta_fm_spread_ablation.py`: B3 Spearman 0.41 / 0.50 with 5 / 20 splits on the seed-0 split
# with concatenation, 0.29 / 0.35 on seed 3 with the FiLM field); B3's populations are small,
# so it gets 20; elsewhere the exact OT of each split costs more (B4: 1000-point populations).
NOISE_SPLITS = {"B1": 5, "B2": 5, "B3": 20, "B4": 5}

# ensemble members per problem (the MFM fit plus members - 1 more seeds). B3 gets 5: on seed 3
# (`meta_fm_spread_ablation.py --seed 3 --conditioning film --members 3,5 --splits 20`) its
# Spearman was 0.375 with 5 members vs 0.350 with 3 (rule stated before the run: 5 if it gains
# more than 0.02 with coverage in [0.85, 0.95]); coverage 0.885 either way. A member costs one
# MFM fit (B3: ~20 s), so the others keep 3.
MEMBERS = {"B1": 3, "B2": 3, "B3": 5, "B4": 3}

# one-thread wall seconds of one (problem, seed) task of the fuller run, evaluation included
# (the mean of `task_seconds` in the committed results, rounded). Only the order in which
# tasks are submitted uses it (`longest_first`); no result depends on it.
TASK_COST = {"B1": 410, "B2": 860, "B3": 500, "B4": 430}

# B4-replica (--problems B4-replica; not in the default set) takes every per-problem setting
# of B4 above, chosen on B4's patient split: nothing was tuned on the replica split
for _table in (FOURIER, FULL_STEPS, CONDITIONING, CENTERED, NOISE_SPLITS, MEMBERS, TASK_COST):
    _table["B4-replica"] = _table["B4"]


def model_kwargs(k: int, fourier: int = 64, conditioning: str = "concat") -> dict:
    return dict(
        conditioning=conditioning,
        width=128,
        layers=4,
        time_dim=32,
        fourier=fourier,
        fourier_sigma=1.0,
        gnn_hidden=64,
        gnn_layers=3,
        knn_k=k,
        points=256,
        pops_per_step=4,
        lr=2e-3,
        gnn_lr=2e-3,
        lr_schedule="cosine",
        solver="rk4",
        solver_steps=10,
    )
