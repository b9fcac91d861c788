"""B3's NUTS comparison, the part the benchmark did not measure: Laplace means against NUTS.

The anchor's B3 target asks the fast posterior to be within 10 % of the NUTS reference's sd
and within 0.2 sd of its mean; ``benchmarks/odil.py`` (B3) reports the sd ratio only. This
script refits B3's NUTS cases with the same settings (32 x 32 phantom at 4 mm, patients
5000, 5001, 5002, NUTS 400 draws after 300 warm-up steps, chain seed = case index) and
reports, per case and parameter (log Dw, log rho, x0, y0):

* ``mean_diff_sd``: (Laplace mode - NUTS mean) / NUTS sd (target: |.| <= 0.2);
* ``sd_ratio``: Laplace sd / NUTS sd with the exact Hessian (the model's default);
* ``mc_se_sd``: the Monte Carlo standard error of the NUTS mean in NUTS sd, from the
  effective sample size (``arviz.ess``), so a difference below it is not resolved.

    python benchmarks/odil_nuts_means.py            # ~1 h on one thread (3 NUTS runs)

Writes ``benchmarks/results/odil_nuts_means.json``; ``--table RESULTS_JSON`` prints its table.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import (
    ablation_parser,
    positive_int,
    print_rows_table,
    script_module,
    write_rows,
)
from bayesphys.odil import nuts_reference
from bayesphys.problems.glioma import brain_phantom, synthetic_patient

SEED0 = 5000  # B3's NUTS cases (benchmarks/odil.py: synthetic_patient(5000 + s))
PARAMS = ("log_Dw", "log_rho", "x0", "y0")
ODIL = script_module(str(Path(__file__).with_name("odil.py")))  # B3's own fit of a case


def case_rows(s: int, phantom: dict, num_samples: int, warmup: int) -> list[dict]:
    """One B3 NUTS case: a row per parameter."""
    import arviz as az

    m, fit_s = ODIL._fit_case(synthetic_patient(SEED0 + s, phantom=phantom), None)
    draws, nuts_s = nuts_reference(m, num_samples=num_samples, warmup_steps=warmup, seed=s)
    d = draws[0].cpu().double()  # [draw, 2 + 2]
    mean_n, sd_n = d.mean(0), d.std(0)
    mode, sd_l = m.theta.cpu().double(), m.theta_cov.diagonal().sqrt().cpu().double()
    ess = [float(az.ess(np.asarray(d[:, j])[None])) for j in range(d.shape[1])]  # one chain
    rows = []
    for j, name in enumerate(PARAMS[: d.shape[1]]):
        rows.append(
            {
                "case": SEED0 + s,
                "param": name,
                "mean_diff_sd": float((mode[j] - mean_n[j]) / sd_n[j]),
                "sd_ratio": float(sd_l[j] / sd_n[j]),
                "mc_se_sd": float(1.0 / np.sqrt(max(ess[j], 1.0))),
                "ess": float(ess[j]),
                "fit_seconds": fit_s,
                "nuts_seconds": nuts_s,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> Path:
    ap = ablation_parser(__doc__, jobs=False)
    ap.add_argument("--cases", type=positive_int, default=3, help="NUTS cases (B3: 3)")
    ap.add_argument("--draws", type=positive_int, default=400, help="NUTS draws (B3: 400)")
    ap.add_argument("--warmup", type=positive_int, default=300, help="warm-up steps (B3: 300)")
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    torch.set_num_threads(1)
    started = time.perf_counter()
    phantom = brain_phantom(32, 4.0)
    rows = []
    for s in range(args.cases):
        rows += case_rows(s, phantom, args.draws, args.warmup)
        print(rows[-len(PARAMS) :], flush=True)
    diffs = np.array([abs(r["mean_diff_sd"]) for r in rows])
    extra = {
        "max_abs_mean_diff_sd": float(diffs.max()),
        "mean_abs_mean_diff_sd": float(diffs.mean()),
        "within_0.2_sd": int((diffs <= 0.2).sum()),
        "cells": len(rows),
        "mean_sd_ratio": float(np.mean([r["sd_ratio"] for r in rows])),
    }
    print(extra)
    return write_rows(
        "odil_nuts_means",
        rows,
        script=__file__,
        argv=argv,
        out=args.out,
        started=started,
        extra=extra,
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
