"""Time-step sensitivity of the glioma posterior's calibration (issue 6, B3 diagnosis).

B3 scores the Laplace posterior of ``(log D_w, log rho, x0, y0)`` on simulated patients (32 x 32
phantom, 4 mm). This script varies the two time steps involved:

* ``refine``: the truth is simulated with ``refine`` times the stable explicit steps of its own
  ``D_w`` (:func:`bayesphys.problems.glioma.synthetic_patient`);
* ``d_max``: the fit's step is the stable step for ``D_w = d_max``
  (:class:`bayesphys.odil.GliomaModel`; default 1, i.e. 32 steps over 100 days at 4 mm).

For each ``refine:d_max`` pair it fits ``--cases`` patients (seeds 70000+, disjoint from B3's
5000+ and the calibration hook's 90000+) and reports per-parameter 90 % coverage and mean z.

    python benchmarks/odil_timestep.py --configs 1:1,2:1,4:1,8:1,32:1,32:4,4:4 --cases 80 \\
        --out benchmarks/results/odil_timestep.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bayesphys.odil import GliomaModel
from bayesphys.problems.glioma import brain_phantom, synthetic_patient, truth_theta

PARAMS = ("log_dw", "log_rho", "x0", "y0")


def run_config(refine: int, d_max: float, cases: int) -> dict:
    """Coverage of the 90 % intervals and mean z over ``cases`` simulated patients."""
    ph = brain_phantom(32, 4.0)
    z = []
    t0 = time.perf_counter()
    for s in range(cases):
        p = synthetic_patient(70_000 + s, phantom=ph, refine=refine)
        m = GliomaModel.from_patient(p, d_max=d_max)
        m.fit(progress=False)
        sd = m.theta_cov.diagonal().sqrt().cpu()
        z.append(((m.theta.cpu() - truth_theta(p)) / sd).numpy())
    zz = np.array(z)
    cov = (np.abs(zz) <= 1.6449).mean(0)
    return {
        "refine": refine,
        "d_max": d_max,
        "cases": cases,
        "coverage90": dict(zip(PARAMS, cov.round(4).tolist())),
        "coverage90_mean": float(cov.mean()),
        "mean_z": dict(zip(PARAMS, zz.mean(0).round(3).tolist())),
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="1:1,2:1,4:1,8:1,32:1,32:4,4:4", help="refine:d_max,...")
    ap.add_argument("--cases", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON file for the rows")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for item in args.configs.split(","):
        r, d = item.split(":")
        row = run_config(int(r), float(d), args.cases)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        cmd = "python benchmarks/odil_timestep.py " + " ".join(
            argv if argv is not None else __import__("sys").argv[1:]
        )
        Path(args.out).write_text(json.dumps({"command": cmd, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
