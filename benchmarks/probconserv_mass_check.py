"""Ablation of the mass-residual discrepancy (``bayesphys.probconserv.mass_check``).

Loads the Step-1 models a full benchmark run saved, calibrates each as the benchmark does
(hybrid covariance, parameter-conditional scale on 600 functions, seed 777), and scores the
benchmark's test sets (50 functions per test parameter, seed 10 000) with the check off, with
the default gate (a discrepancy only where the inferred parameter lies more than 2 sd outside
the training range, with the default floor of one residual's resolution) at kernel lengths of
2.5 %, 5 % (the default) and 10 % of the domain, the default gate without the floor (the
maximum-likelihood estimate alone, 5 %), and without the gate (every function, 5 %): MSE, LL, 90 %
coverage and CRPS, before (``ANP`` / ``GP``) and after the update (``ProbConserv-*``), and the share
of test functions that get a discrepancy. ``kappa`` and the gate's margin do not depend on the
length, the floor or the gate, so each model is calibrated once.

    python benchmarks/probconserv.py --threads 1 --save-models DIR     # trains, ~40 min
    python benchmarks/probconserv_mass_check.py --models DIR           # ~5 min, 1 thread

Writes ``benchmarks/results/probconserv_mass_check.json``; ``--summary RESULTS_JSON`` prints
the docs' table (LL / coverage90 / CRPS per variant, and the share of functions widened).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probconserv_saved import calibrated, param_sets, pivot, rescore, score  # noqa: E402

# (label, kernel length as a fraction of the domain, gated, floor); None: the check off
VARIANTS = (
    ("off", None, True, 1.0),
    ("gated", 0.025, True, 1.0),
    ("gated", 0.05, True, 1.0),
    ("gated", 0.1, True, 1.0),
    ("gated, no floor", 0.05, True, 0.0),
    ("every function", 0.05, False, 0.0),
)


def share_widened(model, test) -> float:
    """Share of test functions with a positive discrepancy variance."""
    if model.calibration.mass_kappa is None:
        return 0.0
    return float((model.mass_discrepancy(test) > 0).double().mean())


def summary(rows: list[dict]) -> str:
    """Markdown table: one line per (problem, parameter, method), one column per variant."""

    def cell(r: dict) -> str:
        out = f"{r['ll']:.2f} / {r['coverage90']:.3f} / {r['crps']:.2e}"
        return out + (f" ({r['widened']:.0%})" if r["widened"] > 0 else "")

    columns = [
        (
            v if length is None else f"{v} {length:g}",
            lambda r, v=v, length=length: (
                r["check"] == v and r["length"] == ("-" if length is None else length)
            ),
        )
        for v, length, _, _ in VARIANTS
    ]
    return pivot(
        rows,
        ("problem", "param", "method"),
        columns,
        cell,
        "LL / coverage90 / CRPS (share of functions widened)",
    )


def rows_for(args, cfg, prob):
    pname = prob.name
    tests = param_sets(prob, cfg["n_test"], seed=10_000)
    for key in args.methods:
        model = calibrated(args.models, pname, key, cfg)
        cal = model.calibration
        kappa, span = cal.mass_kappa, float(prob.grid(201)[-1] - prob.grid(201)[0])
        margin = cal.mass_margin
        for variant, length, gated, floor in VARIANTS:
            cal.mass_kappa = None if length is None else kappa
            cal.mass_length = None if length is None else length * span
            cal.mass_margin = margin if gated else None
            cal.mass_floor = floor
            for param, test in tests:
                widened = share_widened(model, test)
                for label, method in ((key, "none"), (f"ProbConserv-{key}", "probconserv")):
                    yield {
                        "problem": pname,
                        "param": param,
                        "method": label,
                        "check": variant,
                        "length": "-" if length is None else length,
                        "kappa": kappa,
                        "margin": margin,
                        "floor": floor if gated and length is not None else None,
                        "widened": widened,
                        **score(model, test, method),
                    }


def main(argv: list[str] | None = None) -> Path:
    return rescore(
        __doc__,
        argv,
        name="probconserv_mass_check",
        script=__file__,
        problems="diffusion,pme,stefan",
        summary=summary,
        rows_for=rows_for,
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
