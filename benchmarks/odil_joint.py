"""Joint space-time ODIL glioma fit (``GliomaModel.fit_odil``): matrix-free CG vs sparse solves.

One 32 x 32 phantom patient (4 mm, ``synthetic_patient(seed)``), the reduced fit first, then the
joint refinement (``nt`` time levels, ``sigma_pde`` 3e-3, 8 Levenberg-Marquardt steps) with each
``linear_solver``; reports the wall time of the joint fit (Schur-complement covariance
included), the estimates and the posterior sds, so that the two solvers can be compared on the
same work.

    python benchmarks/odil_joint.py --out benchmarks/results/odil_joint.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bayesphys._bench import (
    comma_ids,
    positive_int,
    recorded_command,
    threading_info,
    write_results_json,
)
from bayesphys._files import out_file_arg

SOLVERS = ("sparse", "cg")


def run(solver: str, nt: int, seed: int) -> dict:
    from bayesphys.odil import GliomaModel
    from bayesphys.problems.glioma import brain_phantom, synthetic_patient

    p = synthetic_patient(seed, phantom=brain_phantom(32, 4.0))
    kw = {"spacing": p["spacing"], "th_up": p["th_up"], "th_down": p["th_down"]}
    model = GliomaModel(p["wm"], p["gm"], p["labels"], **kw)
    model.fit(progress=False)
    sd_reduced = model.theta_cov.diagonal().sqrt().tolist()
    t0 = time.perf_counter()
    res = model.fit_odil(nt=nt, sigma_pde=3e-3, steps=8, linear_solver=solver)
    seconds = time.perf_counter() - t0
    return {
        "linear_solver": solver,
        "nt": nt,
        "seed": seed,
        "n_unknowns": res.extra["n_unknowns"],
        "seconds": seconds,
        "steps": res.steps,
        "theta": model.theta.tolist(),
        "sd": model.theta_cov.diagonal().sqrt().tolist(),
        "sd_reduced": sd_reduced,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--nt", type=positive_int, default=8, help="time levels (>= 2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--solvers", type=comma_ids(SOLVERS, what="solvers"), default=",".join(SOLVERS))
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--out", type=out_file_arg, default=None, help="JSON file for the rows")
    args = ap.parse_args(argv)
    solvers = args.solvers
    if args.nt < 2:
        ap.error(f"--nt: expected >= 2, received {args.nt}")
    torch.set_num_threads(args.threads)
    rows = []
    for solver in solvers:
        row = run(solver, args.nt, args.seed)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        cmd = recorded_command(__file__, argv)
        payload = {
            "command": cmd.strip(),
            "threads": args.threads,
            "threading": threading_info(),
            "rows": rows,
        }
        write_results_json(args.out, payload)
    return rows


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
