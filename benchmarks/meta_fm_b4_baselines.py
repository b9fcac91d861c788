"""Trivial baselines on B4 (patient x treatment screen): identity, floor, shift, ideal shift.

The anchor's review points (sections 1.7, 6.4 and 8): besides identity and the sampling floor,
the "shift" baseline (each source centred on the mean of all training targets, and a variant
with the training targets of the same treatment) and the "ideal shift" oracle (each source
centred on its own observed target's mean), on both B4 splits:

* ``patient``: B4 exactly as ``benchmarks/meta_fm.py`` builds it for its full run
  (``problem_data("B4", False, seed)``: 1000 cells, data seed 0, fold = seed), seeds 0, 1, 2;
* ``replica``: the same populations, with replicate ``fold`` of every (patient, treatment)
  held out for test and replicate ``fold + 1`` for calibration, folds = seeds 0, 1, 2.

Per test population: W1, W2, MMD (``mean_metrics``, the benchmark's ``max_points`` 1000) and r,
the correlation of the feature-correlation matrices (``correlation_of_correlations``), averaged
over the test populations; then mean and sd over seeds. Nothing is trained.

    python benchmarks/meta_fm_b4_baselines.py            # writes benchmarks/results
    python benchmarks/meta_fm_b4_baselines.py --smoke    # tiny sizes, a temp folder (tests)

Writes ``<out>/meta_fm_b4_baselines.json`` (rows per split, seed and method, then ``mean`` and
``sd`` rows) and prints the rows' table and a mean ± sd summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import seed_summary_rows, smoke_ablation_main
from bayesphys.meta_fm import (
    correlation_of_correlations,
    floor_prediction,
    ideal_shift_prediction,
    identity_prediction,
    shift_prediction,
)
from bayesphys.problems.populations import PopulationPairs, patient_screen

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_fm import mean_metrics, problem_data  # noqa: E402  (the benchmark's B4 and metrics)

NAME = "meta_fm_b4_baselines"
SPLITS = ("patient", "replica")
SEEDS = (0, 1, 2)
METHODS = ("identity", "floor", "shift", "shift-treatment", "ideal-shift")
METRICS = ("w1", "w2", "mmd", "r")
# the benchmark's full-run evaluation size (benchmarks/meta_fm.py: max_points 1000)
MAX_POINTS = 1000
# --smoke: tiny populations (every split, seed and method still runs)
SMOKE = {"n_cells": 40, "n_treatments": 2, "max_points": 40}


def screen(split: str, seed: int, smoke: bool = False) -> PopulationPairs:
    """B4 for ``seed``: the benchmark's patient split (``problem_data``), or its populations
    under the replica split with fold ``seed % 3`` (checked to be the same populations)."""
    if smoke:
        kw = {"n_cells": SMOKE["n_cells"], "n_treatments": SMOKE["n_treatments"], "seed": 0}
        patient = patient_screen(fold=seed % 4, **kw)
    else:
        patient = problem_data("B4", False, seed)[0]
    if split == "patient":
        return patient
    if smoke:
        replica = patient_screen(fold=seed % 3, split="replica", **kw)
    else:  # the benchmark's own replica problem (fold seed % 3)
        replica = problem_data("B4-replica", False, seed)[0]
    if not patient.same_populations(replica):
        raise RuntimeError(f"seed {seed}: the replica split's populations are not the benchmark's")
    return replica


def predictions(data: PopulationPairs, seed: int) -> dict[str, list[torch.Tensor]]:
    """Each method's predicted test populations (``floor`` as ``run_seed``: seed 1000 + seed)."""
    test, train = data.subset("test"), data.subset("train")
    return {
        "identity": identity_prediction(test),
        "floor": floor_prediction(test, seed=1000 + seed),
        "shift": shift_prediction(test, train),
        "shift-treatment": shift_prediction(test, train, by_treatment=True),
        "ideal-shift": ideal_shift_prediction(test),
    }


def run_task(task: tuple[str, int], smoke: bool = False) -> list[dict]:
    """The rows of one ``(split, seed)``: one per method, metrics averaged over test
    populations."""
    split, seed = task
    data = screen(split, seed, smoke)
    test = data.subset("test")
    max_points = SMOKE["max_points"] if smoke else MAX_POINTS
    rows = []
    for meth, pred in predictions(data, seed).items():
        m = mean_metrics(pred, test.target, max_points)
        m["r"] = float(
            np.mean([correlation_of_correlations(p, t) for p, t in zip(pred, test.target)])
        )
        rows.append(
            {
                "split": split,
                "seed": seed,
                "fold": seed % 4 if split == "patient" else seed % 3,  # as screen() builds it
                "method": meth,
                "test_pops": len(test),
                **m,
            }
        )
    return rows


def summary_rows(rows: list[dict]) -> list[dict]:
    """``mean`` and ``sd`` (ddof 1) over seeds of each (split, method)'s metrics."""
    return seed_summary_rows(
        rows, ("split", "method"), METRICS, keep=("test_pops",), fill={"fold": None}
    )


def summary_table(rows: list[dict]) -> str:
    """Markdown table of mean ± sd over seeds per (split, method)."""
    by = {(r["split"], r["method"], r["seed"]): r for r in rows if r["seed"] in ("mean", "sd")}
    lines = [
        "| split | method | " + " | ".join(f"{k} (± sd)" for k in METRICS) + " |",
        "|" + "---|" * (2 + len(METRICS)),
    ]
    for split in SPLITS:
        for meth in METHODS:
            if (split, meth, "mean") not in by:
                continue
            m, s = by[(split, meth, "mean")], by[(split, meth, "sd")]
            cells = []
            for k in METRICS:
                fmt = ".2e" if k == "mmd" else ".3f"
                cells.append(f"{m[k]:{fmt}} ± {s[k]:{fmt}}")
            lines.append(f"| {split} | {meth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    return smoke_ablation_main(
        __doc__,
        argv,
        script=__file__,
        name=NAME,
        tasks=[(split, seed) for split in SPLITS for seed in SEEDS],
        summarise=summary_rows,
        table=summary_table,
        extra=lambda smoke: {
            "data_seed": 0,
            "n_cells": SMOKE["n_cells"] if smoke else 1000,
            "max_eval_points": SMOKE["max_points"] if smoke else MAX_POINTS,
            "note": "r = correlation_of_correlations on every point; floor = floor_prediction"
            "(test, seed=1000 + seed); shift uses the train split's targets only",
        },
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
