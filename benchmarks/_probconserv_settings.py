"""Training and calibration settings of the ProbConserv benchmark (``benchmarks/probconserv.py``;
Hansen et al. 2023, anchor file): SoftC penalty weights and learning rates, the quick and
full run's step counts and test sizes, the ANP's training margin, and the hybrid
calibration's options (:func:`calibration_options`)."""

from __future__ import annotations

from bayesphys.problems.gpme import make_dataset

# SoftC penalty weight (reference: lambda = 1 for PME). The residual is O(1e2-1e3) at the PME /
# Stefan fronts (infinite slope / smoothed step k), so lambda = 1 (PME) and 0.01 (Stefan)
# wiped out the data fit in the first full run: 0.01 / 1e-4 now, and the fine-tune keeps the
# state with the smallest validation MSE (checked every SOFTC_CHECK steps, starting from the ANP).
SOFTC_WEIGHT = {"diffusion": 1.0, "pme": 0.01, "stefan": 1e-4}
SOFTC_CHECK = 50
# the fine-tune's learning rate by Step-1 model: the ANP's 2e-4 (a fifth of its training's
# 1e-3); the meta-GP's 1e-3, a tenth of its training's 1e-2, chosen on the validation MSE the
# fine-tune keeps its state by (2026-12-07, the committed run's saved GPs): at 1e-2 every
# check after step 0 was worse on all three problems (diffusion 1.2e-4 at step 50 against the
# GP's 9.9e-6; kept step 0 everywhere); at 1e-3 diffusion reached 8.2e-6 (kept step 350) and
# PME / Stefan kept the GP. SoftC-GP reuses SOFTC_WEIGHT: the GP's loss is, like the ANP's, a
# negative log likelihood per point, and its mean's residual has the same scale as the ANP's
SOFTC_LR = {"anp": 2e-4, "gp": 1e-3}


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


NEIGHBOURS = (0, 20, 50)  # analog sizes tried by the hybrid calibration (0: all errors)
# the functions the hybrid calibration is fitted on come from the training range widened by
# RANGE_MARGIN of its length at each end (calibrate(range_margin=...)): with RANGE_SCOPE
# "local" only the parameter-conditional scale's functions, with "all" the validation
# functions too. Chosen by `probconserv_margin.py` on validation functions (context seed
# 30 000, not the test functions) with the rule stated there (most (problem, model, end,
# offset) cells in [0.85, 0.95]): of 64 cells, on the models before the 2026-12-01 retrain,
# none 51; local 0.025 / 0.05 / 0.1: 52 / 53 / 40; all 0.025 / 0.05 / 0.1: 59 / 62 / 55; rerun
# on the retrained models (benchmarks/results/probconserv_margin.json), none 56;
# local 0.025 / 0.05 / 0.1: 56 / 55 / 50; all 0.025 / 0.05 / 0.1: 60 / 63 / 58
RANGE_MARGIN = 0.05
RANGE_SCOPE = "all"
# how the hybrid's (K, beta) is picked from its 2-fold held-out MSEs (calibrate(selection=...)):
# the one-standard-error rule, adopted by the rule of benchmarks/probconserv_selection.py on
# validation functions (of 14 cells, on the models before the 2026-12-01 retrain: coverage in
# range 14 / 14 both, ranking 13 / 14 both, MSE ratio 1.003; rerun on the retrained models,
# benchmarks/results/probconserv_selection.json: coverage 13 (min) / 14 (one_se), ranking
# 12 / 14 both, MSE ratio 1.030)
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
