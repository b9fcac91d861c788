"""Choice of the calibration functions' range (``ProbConserv.calibrate(range_margin=...)``).

The benchmark's diffusion (k = 1, 5) and PME (m = 6) rows sit exactly on an end of the training
range, where the localized conformal scale (``bayesphys.probconserv.conditional``) only has
calibration functions on one side and the inferred parameter is read inward
(``probconserv_edge.py``). ``calibrate(range_margin=w)`` draws the functions it calibrates on
from the training range widened by ``w`` times its length at each end (the Step-1 models are
unchanged). Two scopes are compared: ``local``, only the conditional scale's ``M`` functions
(the validation functions, which fit the hybrid covariance and the inferred-parameter map, are
passed in from the training range), and ``all``, the validation functions as well (what
``range_margin`` does). This script loads the Step-1 models a full benchmark run saved,
calibrates each as the benchmark does (seed 777) with each candidate in ``CANDIDATES``, and
scores **validation** functions: 50 per parameter value at the offsets of
``probconserv_edge.py`` (``lo + d (hi - lo)``, ``hi - d (hi - lo)``, and a uniform draw over the
outermost 5 %), with context seed 30 000 -- not the benchmark's test functions (seed 10 000).

Rule, fixed before the run: the candidate with the most (problem, model, end, offset) cells
whose 90 % coverage after the update lies in [0.85, 0.95]; ties go to the earlier candidate in
``CANDIDATES`` (smaller margin first, ``local`` before ``all``).

    python benchmarks/probconserv.py --threads 1 --save-models DIR     # trains, ~40 min
    python benchmarks/probconserv_margin.py --models DIR               # ~20 min, 1 thread

Writes ``benchmarks/results/probconserv_margin.json``; ``--summary RESULTS_JSON`` prints the
docs' tables (cells in range per candidate, and coverage per offset).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from bayesphys.problems.gpme import make_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probconserv_saved import calibrated, pivot, rescore, score  # noqa: E402
from probconserv_edge import EDGE_BIN, OFFSETS, edge_sets  # noqa: E402

# (scope, margin as a fraction of the training range at each end), in the rule's tie order
CANDIDATES = (
    ("none", 0.0),
    ("local", 0.025),
    ("all", 0.025),
    ("local", 0.05),
    ("all", 0.05),
    ("local", 0.1),
    ("all", 0.1),
)
VALIDATION_SEED = 30_000  # context draws of the validation functions (test: 10 000)
TARGET = (0.85, 0.95)


def in_range(r: dict) -> bool:
    return TARGET[0] <= r["coverage90"] <= TARGET[1]


def parse_candidates(text: str) -> list[tuple[str, float]]:
    """An argparse ``type``: ``"local:0.05,all:0.1"`` -> ``[("local", 0.05), ("all", 0.1)]``."""
    out = []
    for item in text.split(","):
        scope, _, margin = item.partition(":")
        try:
            value = float(margin)
        except ValueError:
            value = math.nan
        if scope not in ("none", "local", "all") or not 0 <= value < math.inf:
            raise argparse.ArgumentTypeError(
                f"expected scope:margin with scope none, local or all and margin >= 0, "
                f"received {item!r}"
            )
        out.append((scope, value))
    return out


def _label(scope: str, margin: float) -> str:
    return f"{scope} {margin:g}"


def chosen_margin(rows: list[dict]) -> tuple[str, dict[str, int]]:
    """The rule of the module docstring -> ``(candidate label, {label: cells in range})``
    (labels ``"scope margin"``, in ``CANDIDATES`` order)."""
    present = {_label(r["scope"], r["margin"]) for r in rows}
    order = [_label(*c) for c in CANDIDATES if _label(*c) in present]
    order += sorted(present - set(order))
    counts = {
        lab: sum(
            in_range(r)
            for r in rows
            if _label(r["scope"], r["margin"]) == lab and r["stage"] == "updated"
        )
        for lab in order
    }
    best = max(counts.values())
    return next(lab for lab in order if counts[lab] == best), counts


def summary(rows: list[dict]) -> str:
    """Markdown: cells in range per candidate, then coverage after the update per offset."""
    choice, counts = chosen_margin(rows)
    n = sum(
        1 for r in rows if _label(r["scope"], r["margin"]) == choice and r["stage"] == "updated"
    )
    head = [
        f"cells (problem, model, end, offset) with coverage90 after the update in "
        f"[{TARGET[0]}, {TARGET[1]}], of {n}: "
        + ", ".join(f"{lab}: {c}" for lab, c in counts.items())
        + f" -> chosen {choice}",
        "",
    ]
    offs = [f"{d:g}" for d in OFFSETS] + [f"0-{EDGE_BIN:g}"]
    table = pivot(
        [r for r in rows if r["stage"] == "updated"],
        ("problem", "method", "edge", "scope", "margin"),
        [(f"d = {o}", lambda r, o=o: r["d"] == o) for o in offs],
        lambda r: f"{r['coverage90']:.3f}",
        f"coverage90 after the update (validation functions, context seed {VALIDATION_SEED})",
        key_names=("problem", "method", "end", "scope", "margin"),
    )
    return "\n".join(head) + table


def rows_for(args, cfg, prob):
    pname = prob.name
    sets = edge_sets(prob, cfg["n_test"], seed=VALIDATION_SEED)
    for key in args.methods:
        for scope, margin in args.candidates:
            kw: dict = {"range_margin": margin, "data": None}  # None: calibrate draws
            if scope == "local":  # validation functions from the training range itself
                kw["data"] = make_dataset(prob, cfg["n_val"], seed=777)
            model = calibrated(args.models, pname, key, cfg, **kw)
            for edge, d, data in sets:
                for label, method, stage in (
                    (key, "none", "step1"),
                    (f"ProbConserv-{key}", "probconserv", "updated"),
                ):
                    yield {
                        "problem": pname,
                        "method": label,
                        "stage": stage,
                        "scope": scope,
                        "margin": margin,
                        "edge": edge,
                        "d": d,
                        **score(model, data, method),
                    }


def main(argv: list[str] | None = None) -> Path:
    def options(ap):
        ap.add_argument(
            "--candidates",
            type=parse_candidates,
            default=CANDIDATES,
            help="comma-separated scope:margin pairs (scope none, local or all; margin >= 0)",
        )

    return rescore(
        __doc__,
        argv,
        name="probconserv_margin",
        script=__file__,
        problems="diffusion,pme",
        summary=summary,
        rows_for=rows_for,
        extra=options,
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
