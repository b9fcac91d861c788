"""``bayesphys calibrate probconserv`` hook: SBC / coverage on the Stefan family.

Simulator: Stefan functions with ``u* ~ U[0.55, 0.7]`` (the training distribution), the
paper's 10 x 10 sensor design; the true object is the field ``u(0.05, x)`` on 201 points.
Inference: the meta-GP Step 1 (trained on separate seeds, variance-calibrated on separate
validation functions) with and without the ProbConserv update. Summaries: the field at
``x = 0.1`` and ``x = 0.2`` and the front position
(:func:`~bayesphys.diagnostics.summaries.front_position` at level ``0.25``: the crossing of
``u = 0.25`` between the last grid point with ``u >= 0.25`` and the next one, by linear
interpolation, not that grid point itself).
"""

from __future__ import annotations

import torch

from ..problems.gpme import GPMEData, make_dataset

_PROBLEM = "stefan"


def simulate(n: int, *, seed: int) -> tuple[torch.Tensor, list[GPMEData]]:
    """``theta [n, 201]`` (true slices at t = 0.05) and ``n`` single-function data sets."""
    data = make_dataset(_PROBLEM, n, seed=50_000 + seed)
    prob = data.problem
    x = prob.grid(201)
    theta = prob.solution(prob.table_time, x, data.params[:, None])
    return theta, [data.subset(slice(i, i + 1)) for i in range(n)]


def calibrate_rows(quick: bool, seed: int) -> list[dict]:
    """Rows for ``GP`` (Step 1) and ``ProbConserv-GP`` (quick: N=100, L=49; full: 300, 99)."""
    from ..diagnostics.calibrate import calibration_rows
    from ..diagnostics.summaries import front_position, probe
    from .model import ProbConserv

    n_sims, n_draws, steps = (100, 49, 300) if quick else (300, 99, 1200)
    n_fit = 50 if quick else 150
    model = ProbConserv(_PROBLEM, step1="gp", seed=seed)
    model.fit(steps=steps, progress=False)
    model.calibrate(seed=seed + 777)
    x = model.problem.grid(201)
    summaries = {
        "u(x=0.1)": probe(20),
        "u(x=0.2)": probe(40),
        "front": front_position(x, level=0.25),
    }

    def infer(method: str):
        # one generator per run, advancing from problem to problem: re-seeding it for each
        # problem gave every problem the same standard-normal draws, which makes SBC reject
        # even an exact posterior (the ranks all come from one fixed set of draws)
        g = torch.Generator(device=model.device).manual_seed(seed)

        def f(d: GPMEData) -> torch.Tensor:
            post = model.posterior(d, method=method)
            return post.sample((2 * n_draws + 2,), generator=g).reshape(-1, x.numel())

        return f

    rows = []
    for method, label in (("none", "GP"), ("probconserv", "ProbConserv-GP")):
        rows += calibration_rows(
            simulate,
            infer(method),
            summaries,
            n_sims=n_sims,
            n_draws=n_draws,
            problem="stefan",
            method=label,
            seed=seed,
            setting={"t": 0.05, "u_star": "U[0.55,0.7]", "var_scale": round(model.var_scale, 4)},
            recalibrate=n_fit,
        )
    return rows
