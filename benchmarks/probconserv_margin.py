"""Choice of the calibration functions' range for the parameter-conditional scale.

The benchmark's diffusion (k = 1, 5) and PME (m = 6) rows sit exactly on an end of the training
range, where the localized conformal scale (``bayesphys.probconserv.conditional``) only has
calibration functions on one side and the inferred parameter is read inward
(``probconserv_edge.py``). ``calibrate(local_margin=w)`` draws the calibration functions from
the training range widened by ``w`` times its length at each end (the Step-1 models and the
inferred-parameter map are unchanged). This script loads the Step-1 models a full benchmark run
saved, calibrates each as the benchmark does (seed 777) with each margin in ``MARGINS``, and
scores **validation** functions: 50 per parameter value at the offsets of
``probconserv_edge.py`` (``lo + d (hi - lo)``, ``hi - d (hi - lo)``, and a uniform draw over the
outermost 5 %), with context seed 30 000 -- not the benchmark's test functions (seed 10 000).

Rule, fixed before the run: the margin with the most (problem, model, end, offset) cells whose
90 % coverage after the update lies in [0.85, 0.95]; ties go to the smaller margin.

    python benchmarks/probconserv.py --threads 1 --save-models DIR     # trains, ~40 min
    python benchmarks/probconserv_margin.py --models DIR               # ~15 min, 1 thread

Writes ``benchmarks/results/probconserv_margin.json``; ``--summary RESULTS_JSON`` prints the
docs' tables (cells in range per margin, and coverage per offset).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bayesphys._bench import write_rows
from bayesphys.problems.gpme import get_problem

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probconserv_saved import calibrated, parse, pivot, score  # noqa: E402
from probconserv_edge import EDGE_BIN, OFFSETS, edge_sets  # noqa: E402

MARGINS = (0.0, 0.025, 0.05, 0.1)  # fractions of the training range, at each end
VALIDATION_SEED = 30_000  # context draws of the validation functions (test: 10 000)
TARGET = (0.85, 0.95)


def in_range(r: dict) -> bool:
    return TARGET[0] <= r["coverage90"] <= TARGET[1]


def chosen_margin(rows: list[dict]) -> tuple[float, dict[float, int]]:
    """The rule of the module docstring -> ``(margin, {margin: cells in range})``."""
    counts = {
        m: sum(in_range(r) for r in rows if r["margin"] == m and r["stage"] == "updated")
        for m in sorted({r["margin"] for r in rows})
    }
    best = max(counts.values())
    return min(m for m, c in counts.items() if c == best), counts


def summary(rows: list[dict]) -> str:
    """Markdown: cells in range per margin, then coverage after the update per offset."""
    margin, counts = chosen_margin(rows)
    n = sum(1 for r in rows if r["margin"] == margin and r["stage"] == "updated")
    head = [
        f"cells (problem, model, end, offset) with coverage90 after the update in "
        f"[{TARGET[0]}, {TARGET[1]}], of {n}: "
        + ", ".join(f"margin {m:g}: {c}" for m, c in counts.items())
        + f" -> chosen margin {margin:g}",
        "",
    ]
    offs = [f"{d:g}" for d in OFFSETS] + [f"0-{EDGE_BIN:g}"]
    table = pivot(
        [r for r in rows if r["stage"] == "updated"],
        ("problem", "method", "edge", "margin"),
        [(f"d = {o}", lambda r, o=o: r["d"] == o) for o in offs],
        lambda r: f"{r['coverage90']:.3f}",
        f"coverage90 after the update (validation functions, context seed {VALIDATION_SEED})",
        key_names=("problem", "method", "end", "margin"),
    )
    return "\n".join(head) + table


def main(argv: list[str] | None = None) -> Path:
    def margins(ap):
        ap.add_argument("--methods", default="ANP,GP", help="Step-1 models to load (ANP, GP)")
        ap.add_argument(
            "--margins", default=",".join(f"{m:g}" for m in MARGINS), help="margins to score"
        )

    parsed = parse(__doc__, argv, "diffusion,pme", summary, margins)
    if isinstance(parsed, Path):
        return parsed
    args, cfg = parsed
    started = time.perf_counter()
    rows = []
    for pname in args.problems.split(","):
        prob = get_problem(pname)
        sets = edge_sets(prob, cfg["n_test"], seed=VALIDATION_SEED)
        for key in args.methods.split(","):
            for margin in (float(m) for m in args.margins.split(",")):
                model = calibrated(args.models, pname, key, cfg, local_margin=margin)
                for edge, d, data in sets:
                    for label, method, stage in (
                        (key, "none", "step1"),
                        (f"ProbConserv-{key}", "probconserv", "updated"),
                    ):
                        row = {
                            "problem": pname,
                            "method": label,
                            "stage": stage,
                            "margin": margin,
                            "edge": edge,
                            "d": d,
                            **score(model, data, method),
                        }
                        rows.append(row)
                        print(row, flush=True)
    path = write_rows("probconserv_margin", rows, script=__file__, out=args.out, started=started)
    print(summary(rows))
    return path


if __name__ == "__main__":
    main()
