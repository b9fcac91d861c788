"""Time-step and likelihood sensitivity of the glioma posterior's calibration (issue 6, B3).

B3 scores the Laplace posterior of ``(log D_w, log rho, x0, y0)`` on simulated patients (32 x 32
phantom, 4 mm). A config ``refine:d_max:fit_scheme:truth:seg_sigma`` sets

* the truth (:func:`bayesphys.problems.glioma.synthetic_patient`): ``truth`` = ``strang`` or
  ``euler`` time stepping with ``refine`` x the fit's default step count (stable step for
  D_w = 1), or ``strang-own`` / ``euler-own``: ``refine`` x the stable steps of the patient's own
  D_w (``euler-own`` with ``refine`` 4 is the truth B3 used up to 2026-11-28);
* the fit (:class:`bayesphys.odil.GliomaModel`): its stable step for D_w = ``d_max`` (1: 32 steps
  over 100 days at 4 mm), its ``time_scheme`` and its ``seg_sigma``.

For each config it fits ``--cases`` patients (seeds 70000+, disjoint from B3's 5000+ / 6000+ and
the calibration hook's 90000+) and reports per-parameter 90 % coverage and mean z.

    python benchmarks/odil_timestep.py --cases 80 --out benchmarks/results/odil_timestep.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from bayesphys._bench import (
    comma_list,
    positive_int,
    recorded_command,
    threading_info,
    write_results_json,
)
from bayesphys._files import out_file_arg
from bayesphys.odil import GliomaModel
from bayesphys.problems.glioma import brain_phantom, synthetic_patient, truth_theta

PARAMS = ("log_dw", "log_rho", "x0", "y0")
DEFAULT_CONFIGS = (
    "4:1:euler:euler-own:0.05,"  # B3 up to 2026-11-28: errors of truth and fit partly cancel
    "4:1:euler:strang:0.05,"  # the same Euler fit against an accurate truth
    "4:1:strang:strang:0.05,"  # Strang fit (the default now) against the accurate truth
    "1:1:strang:strang:0.05,"  # truth = the fit's own discrete model: what is left is not
    # time steps
    "4:4:strang:strang:0.05,"  # 4x the fit's steps
    "4:1:strang:strang:0.04,"
    "4:1:strang:strang:0.03"
)


def run_config(
    refine: int,
    d_max: float,
    cases: int,
    fit_scheme: str = "strang",
    truth: str = "strang",
    seg_sigma: float = 0.05,
) -> dict:
    """Coverage of the 90 % intervals and mean z over ``cases`` simulated patients."""
    ph = brain_phantom(32, 4.0)
    scheme, own = truth.removesuffix("-own"), truth.endswith("-own")
    z = []
    t0 = time.perf_counter()
    for s in range(cases):
        p = synthetic_patient(
            70_000 + s, phantom=ph, refine=refine, scheme=scheme, step_d=None if own else 1.0
        )
        m = GliomaModel.from_patient(p, d_max=d_max, time_scheme=fit_scheme, seg_sigma=seg_sigma)
        m.fit(progress=False)
        sd = m.theta_cov.diagonal().sqrt().cpu()
        z.append(((m.theta.cpu() - truth_theta(p)) / sd).numpy())
    zz = np.array(z)
    cov = (np.abs(zz) <= 1.6449).mean(0)
    return {
        "refine": refine,
        "d_max": d_max,
        "fit_scheme": fit_scheme,
        "truth": truth,
        "seg_sigma": seg_sigma,
        "cases": cases,
        "coverage90": dict(zip(PARAMS, cov.round(4).tolist())),
        "coverage90_mean": float(cov.mean()),
        "mean_z": dict(zip(PARAMS, zz.mean(0).round(3).tolist())),
        "seconds": time.perf_counter() - t0,
    }


_SCHEMES = ("euler", "strang")


def _config(text: str) -> tuple[int, float, str, str, float]:
    """One config ``refine:d_max:fit_scheme:truth:seg_sigma`` (module docstring) as
    ``(refine, d_max, fit_scheme, truth, seg_sigma)``: ``refine >= 1``, ``d_max > 0``,
    ``seg_sigma > 0``, a scheme of :data:`_SCHEMES`, the truth one of them or ``<scheme>-own``."""
    parts = text.split(":")
    if len(parts) != 5:
        raise argparse.ArgumentTypeError(
            f"expected refine:d_max:fit_scheme:truth:seg_sigma, received {text!r}"
        )
    r, d, fit_scheme, truth, sg = parts
    refine, d_max, seg_sigma = int(r), float(d), float(sg)
    truths = _SCHEMES + tuple(f"{s}-own" for s in _SCHEMES)
    if refine < 1 or not d_max > 0 or not seg_sigma > 0 or d_max == float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected refine >= 1 and d_max, seg_sigma finite and > 0, received {text!r}"
        )
    if fit_scheme not in _SCHEMES or truth not in truths:
        raise argparse.ArgumentTypeError(
            f"expected fit_scheme in {list(_SCHEMES)} and truth in {list(truths)}, "
            f"received {text!r}"
        )
    return refine, d_max, fit_scheme, truth, seg_sigma


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument(
        "--configs",
        type=comma_list(_config, what="configs refine:d_max:fit_scheme:truth:seg_sigma"),
        default=DEFAULT_CONFIGS,
        help="refine:d_max:fit_scheme:truth:seg_sigma,... (module docstring)",
    )
    ap.add_argument("--cases", type=positive_int, default=80)
    ap.add_argument("--threads", type=positive_int, default=1)
    ap.add_argument("--out", type=out_file_arg, default=None, help="JSON file for the rows")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for r, d, fit_scheme, truth, sg in args.configs:
        row = run_config(r, d, args.cases, fit_scheme, truth, sg)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        cmd = recorded_command(__file__, argv)
        payload = {"command": cmd.strip(), "threading": threading_info(), "rows": rows}
        write_results_json(args.out, payload)
    return rows


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
