"""Choice of the hybrid calibration's selection rule (``ProbConserv.calibrate(selection=...)``).

The hybrid covariance (``bayesphys.probconserv.calibration``) picks its analog size ``K`` and
weight ``beta`` by 2-fold held-out MSE of the updated mean on the validation functions. Plain
``"min"`` takes the smallest held-out MSE even on a near tie; ``"one_se"`` applies the
one-standard-error rule and, among the candidates within one paired standard error of the
best, takes the one closest to the model's own covariance (largest ``beta``, then all errors
before analogs). This script loads the Step-1 models a full benchmark run saved, calibrates
each as the benchmark does (seed 777) once per rule, and scores **validation** functions:
``n_test`` per benchmark parameter value (diffusion k = 1, 5; PME m = 1, 3, 6; Stefan
u* = 0.5, 0.6) with context seed 30 000 -- not the benchmark's test functions (seed 10 000).

Rule, fixed before the run: ``one_se`` replaces ``min`` when, over the (problem, parameter,
model) cells after the update, (a) no fewer cells have 90 % coverage in [0.85, 0.95], (b) no
fewer cells keep the ranking (ProbConserv-X's MSE below X's), and (c) the geometric mean of
the MSE ratio one_se / min is at most 1.05.

    python benchmarks/probconserv.py --threads 1 --save-models DIR     # trains, ~35 min
    python benchmarks/probconserv_selection.py --models DIR            # ~10 min, 1 thread

Writes ``benchmarks/results/probconserv_selection.json``; ``--summary RESULTS_JSON`` prints the
docs' table.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from bayesphys.probconserv.candidate_selection import SELECTIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probconserv_saved import calibrated, param_sets, pivot, rescore, score  # noqa: E402

VALIDATION_SEED = 30_000  # context draws of the validation functions (test: 10 000)
TARGET = (0.85, 0.95)
MSE_TOLERANCE = 1.05  # (c): geometric-mean MSE ratio one_se / min


def _cells(rows: list[dict], selection: str) -> dict[tuple, dict]:
    return {(r["problem"], r["param"], r["model"]): r for r in rows if r["selection"] == selection}


def decide(rows: list[dict]) -> tuple[str, dict[str, float]]:
    """The rule of the module docstring -> ``(selection, {criterion: value})``."""
    base, alt = _cells(rows, "min"), _cells(rows, "one_se")
    keys = sorted(set(base) & set(alt))
    if not keys:
        raise ValueError("rows: expected both selections scored on the same cells")

    def in_range(r):
        return TARGET[0] <= r["coverage90"] <= TARGET[1]

    def ranked(r):
        return r["mse"] < r["step1_mse"]

    stats = {
        "cells": len(keys),
        "coverage_min": sum(in_range(base[k]) for k in keys),
        "coverage_one_se": sum(in_range(alt[k]) for k in keys),
        "ranking_min": sum(ranked(base[k]) for k in keys),
        "ranking_one_se": sum(ranked(alt[k]) for k in keys),
        "mse_ratio_gmean": math.exp(
            sum(math.log(alt[k]["mse"] / base[k]["mse"]) for k in keys) / len(keys)
        ),
    }
    adopt = (
        stats["coverage_one_se"] >= stats["coverage_min"]
        and stats["ranking_one_se"] >= stats["ranking_min"]
        and stats["mse_ratio_gmean"] <= MSE_TOLERANCE
    )
    return ("one_se" if adopt else "min"), stats


def summary(rows: list[dict]) -> str:
    choice, stats = decide(rows)
    head = (
        f"{stats['cells']} (problem, parameter, model) cells; coverage90 in [{TARGET[0]}, "
        f"{TARGET[1]}] after the update: min {stats['coverage_min']}, one_se "
        f"{stats['coverage_one_se']}; ProbConserv-X MSE below X: min {stats['ranking_min']}, "
        f"one_se {stats['ranking_one_se']}; geometric-mean MSE ratio one_se / min "
        f"{stats['mse_ratio_gmean']:.3f} (at most {MSE_TOLERANCE}) -> chosen {choice}\n\n"
    )
    table = pivot(
        rows,
        ("problem", "param", "model"),
        [(sel, lambda r, s=sel: r["selection"] == s) for sel in SELECTIONS],
        lambda r: (
            f"(K, β) = ({r['neighbours']}, {r['beta']:g}); MSE {r['mse']:.3g} "
            f"(Step 1 {r['step1_mse']:.3g}); cov {r['coverage90']:.3f}"
        ),
        f"after the update (validation functions, context seed {VALIDATION_SEED})",
        key_names=("problem", "parameter", "model"),
    )
    return head + table


def rows_for(args, cfg, prob):
    sets = param_sets(prob, cfg["n_test"], seed=VALIDATION_SEED)
    for key in args.methods:
        for selection in SELECTIONS:
            model = calibrated(args.models, prob.name, key, cfg, selection=selection)
            cal = model.calibration
            for param, data in sets:
                yield {
                    "problem": prob.name,
                    "param": param,
                    "model": key,
                    "selection": selection,
                    "neighbours": cal.neighbours,
                    "beta": cal.beta,
                    "step1_mse": score(model, data, "none")["mse"],
                    **score(model, data, "probconserv"),
                }


def main(argv: list[str] | None = None) -> Path:
    return rescore(
        __doc__,
        argv,
        name="probconserv_selection",
        script=__file__,
        problems="diffusion,pme,stefan",
        summary=summary,
        rows_for=rows_for,
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
