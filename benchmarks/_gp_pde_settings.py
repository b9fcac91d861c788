"""Settings of the GP-HM benchmark (``benchmarks/gp_pde.py``; Fang et al., ICLR 2024, arXiv
2311.04465): the anchor note, every problem's GP-HM settings, fit keyword arguments and CPU-time
budget (full and quick runs), the extra coarser-grid rows and the paper-settings rows'
budgets."""

from __future__ import annotations

ANCHOR_NOTE = (
    "arXiv 2311.04465 Tables 1-2 could not be read here (searched again 2026-11-28: stored copies "
    "of the paper stop after the introduction; the reference repository's README, configs, "
    "notebooks and figures hold no error table); the reference code costs 4.9 s/step at N=400 "
    "on this CPU (about 5.7 days for one 1-D run of 1e5 steps)"
)
REF_SRC = "Fang et al. 2024 (GP-HM); paper table not found, reference-code cost only"

# Gauss-Newton per hyperparameter step (warm-started from the previous field)
GN_OPTS = dict(max_iter=3, cg_maxiter=300, cg_tol=1e-3)
# problem -> (GP-HM settings, fit kwargs, time budget s), per method
OURS = {
    # 1-D: the paper's identity residual metric, solved densely, jitter 1e-10
    "poisson1d-sin100": (dict(weighting="identity", jitter=1e-10), dict(steps=150), 300),
    "poisson1d-xsin200": (dict(weighting="identity", jitter=1e-10), dict(steps=100), 600),
    "poisson1d-multiscale": (
        dict(weighting="identity", jitter=1e-10, zero_component=True),
        dict(steps=150),
        600,
    ),
    # the variant the reference code runs (0.05 sin(100x) where the paper writes cos)
    "poisson1d-multiscale-sin": (
        dict(weighting="identity", jitter=1e-10, zero_component=True),
        dict(steps=150),
        600,
    ),
    "poisson1d-sin500-trend": (
        dict(weighting="identity", jitter=1e-10, zero_component=True),
        dict(steps=150),
        600,
    ),
    # 2-D: prior metric, exact Kronecker + Woodbury elimination
    "poisson2d-sin100": (dict(), dict(steps=40), 1800),  # 120 steps: final 6.8e-4 (unstable)
    # Allen-Cahn: hyperparameters fitted on a 200 x 200 grid (Picard-Kronecker fixed point), then
    # continued on 400 x 400 with matrix-free Gauss-Newton on the field (PCG, Kronecker-Woodbury
    # preconditioner with the exact diagonal), coarse-to-fine, timed together
    "allencahn2d-multiscale": (
        dict(n_col=400, nonlinear_solver="gauss-newton", solver_options=GN_OPTS),
        dict(steps=40, lr=0.005, coarse=dict(n_col=200, steps=200)),
        1800,
    ),
    # advection: complex-eigenbasis Kronecker solve, frequencies from the boundary data
    "advection": (dict(n_col=400), dict(steps=200), 1800),
}
# extra rows (method label -> settings): the same solver on a coarser collocation grid
EXTRA = {
    "allencahn2d-multiscale": (
        "GP-HM-200x200",
        dict(n_col=200),
        dict(steps=200),
        1800,
    ),
}
REF_BUDGET = {"1": 30, "2": 60}  # CPU seconds for the paper-settings runs (they need 1e5+ steps)
QUICK = {
    "poisson1d-sin100": (dict(), dict(steps=15), 60),
    "poisson2d-low": (dict(num_mixtures=8), dict(steps=15), 60),
}
