"""Glioma inverse problem: infer D_w, rho and the focus from one synthetic segmentation.

``bayesphys run glioma [--smoke] [--pet] [--atlas] [--foci K] [--device cuda] [--out DIR] [--seed N]``:
simulates a tumour on the 2-D analytic brain phantom (or, with ``--atlas``, an axial slice of
the MNI152 2009a template shipped in nilearn), fits the Fisher-Kolmogorov model (reduced-space ODIL,
Levenberg-Marquardt), prints the ArviZ summary of the Laplace posterior (D_w, rho, focus,
infiltration length ell, front speed v), and writes the posterior tumour-cell map with 90% bands
and a radiotherapy plan from the posterior (iso-volumetric with the standard 1.5 cm margin) to
``OUT/glioma.png`` plus InferenceData to ``OUT/glioma.nc``. ``--foci 3`` simulates a three-focal
tumour (GliODIL's multi-focal recipe) and lets the Laplace evidence choose 1-3 model foci.
"""  # noqa: E501

from __future__ import annotations

import argparse
from pathlib import Path

from . import _args

DESCRIPTION = (
    "ODIL/Laplace glioma inference (D, rho, focus) from segmentations + RT plan vs 1.5 cm margin"
)


def _truth_line(truth: dict[str, float], foci: list[list[float]]) -> str:
    """The true parameters as ``k=v`` pairs; with more than one focus each coordinate lists
    every true focus (``x0=[60.22, 56.31]``; ``truth`` holds the first focus alone, so a
    multi-focal tumour printed one focus beside a summary of several). The true foci are in
    the simulation's order, which need not be the model's ``x0[k]`` order."""
    coords = ("x0", "y0", "z0")

    def value(k: str, v: float) -> str:
        if k in coords and len(foci) > 1:
            return "[" + ", ".join(f"{f[coords.index(k)]:.4g}" for f in foci) + "]"
        return f"{v:.4g}"

    return ", ".join(f"{k}={value(k, v)}" for k, v in truth.items())


def main(argv: list[str] | None = None) -> dict:
    from .._arviz_version import import_arviz

    az = import_arviz()

    from .._device import resolve_device
    from ..odil._demo import glioma_case

    ap = argparse.ArgumentParser(prog="bayesphys run glioma", description=DESCRIPTION)
    ap.add_argument("--smoke", action="store_true", help="32x32 grid at 4 mm (seconds)")
    ap.add_argument("--pet", action="store_true", help="also use the PET proxy")
    ap.add_argument(
        "--atlas",
        action="store_true",
        help="MNI152 2009a axial slice (needs nilearn) instead of the analytic phantom",
    )
    ap.add_argument(
        "--foci",
        type=int,
        default=1,
        choices=(1, 2, 3),
        help="foci of the simulated tumour; > 1: the model's 1-3 foci are chosen by evidence",
    )
    ap.add_argument("--device", type=_args.device, default="cpu")
    _args.add_out(ap, "glioma")
    ap.add_argument("--seed", type=_args.seed, default=0)
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    r = glioma_case(
        Path(args.out),
        device=dev,
        seed=args.seed,
        small=args.smoke,
        pet=args.pet,
        atlas=args.atlas,
        num_samples=40 if args.smoke else 200,
        progress=not args.smoke,
        name="glioma",
        foci=args.foci,
    )
    summ = az.summary(r["idata"], var_names=["D_w", "rho", "x0", "y0", "ell", "v"], kind="stats")
    print(summ.to_string())
    tr = r["truth"]
    print("truth:", _truth_line(tr, r["foci"]))
    print(
        f"rel. error ell {r['rel_err_l']:.3f}, v {r['rel_err_v']:.3f}, focus "
        f"{r['focus_err_mm']:.2f} mm; "
        f"recurrence coverage: posterior plan {r['rt_coverage_model']:.3f} vs 15 mm margin "
        f"{r['rt_coverage_standard']:.3f}; {r['seconds']:.1f} s"
    )
    if r["log_evidence"]:
        ev = ", ".join(f"K={k}: {v:.1f}" for k, v in r["log_evidence"].items())
        print(f"foci chosen by Laplace evidence: {r['n_foci']} (log evidence {ev})")
    print(f"wrote {r['png']} and {r['netcdf']}")
    keys = (
        "rel_err_l",
        "rel_err_v",
        "focus_err_mm",
        "z_log_v",
        "rt_coverage_model",
        "rt_coverage_standard",
        "seconds",
        "n_foci",
        "log_evidence",
        "png",
        "netcdf",
    )
    return {
        "seed": args.seed,
        **{k: r[k] for k in keys},
        "estimates": r["estimates"],
        "truth": tr,
        "true_foci": r["foci"],
    }


if __name__ == "__main__":  # pragma: no cover
    from .._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        _args.run_script(main)  # nilearn missing for --atlas: named, without a traceback
