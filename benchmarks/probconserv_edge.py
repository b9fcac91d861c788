"""Coverage against the distance to the training range's ends (ProbConserv benchmark models).

The benchmark's diffusion (k = 1, 5) and PME (m = 6) rows sit exactly on an end of the
training range (k ~ U(1, 5), m ~ U(1, 6)), and there the ANP's 90 % coverage is below 0.85.
This script shows where that starts: it loads the Step-1 models a full benchmark run saved,
calibrates each as the benchmark does (hybrid covariance, parameter-conditional scale on 600
functions, mass check with its gate, seed 777) and scores 50 test functions (seed 10 000, the
benchmark's) at parameter values a fraction ``d`` of the range inside each end,
``lo + d (hi - lo)`` and ``hi - d (hi - lo)``, for ``d`` in ``OFFSETS``; ``d = 0`` is the
benchmark's own edge row (the same functions, so the same numbers). It also scores 50
functions drawn uniformly from the outermost 5 % at each end (``d`` = ``"0-0.05"``), i.e. what
the training distribution's edge bin looks like. Metrics per method before (``ANP`` / ``GP``)
and after the update (``ProbConserv-*``): 90 % coverage, MSE, LL, CRPS, and the mean of the
inferred parameter :math:`\\hat\\theta` the conditional scale is looked up at.

    python benchmarks/probconserv.py --threads 1 --save-models DIR     # trains, ~40 min
    python benchmarks/probconserv_edge.py --models DIR                 # ~10 min, 1 thread

Writes ``benchmarks/results/probconserv_edge.json``; ``--summary RESULTS_JSON`` prints the
docs' table (coverage90 per offset).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from bayesphys.problems.gpme import make_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probconserv_saved import calibrated, pivot, rescore, score  # noqa: E402

OFFSETS = (0.0, 0.0025, 0.0125, 0.025, 0.05, 0.1, 0.25)  # fractions of the range
EDGE_BIN = 0.05  # the outermost bin, drawn uniformly


def _theta_hat(model, test) -> float:
    tt, xx = model._grid(None, None)
    mean = model._step1(test, tt, xx, seed=0, stage="raw").mean
    return float(model.calibration.local.pmap(mean, model.mass(test, tt)).mean())


def edge_sets(prob, n: int, seed: int = 10_000) -> list[tuple[str, str, object]]:
    """``(edge, offset, dataset)`` for both ends: fixed offsets, then the uniform edge bin.
    ``seed`` 10 000 (the default) gives the benchmark's test functions at ``d = 0``."""
    lo, hi = prob.train_range
    w = hi - lo
    sets = []
    for edge, sign, base in (("lo", 1.0, lo), ("hi", -1.0, hi)):
        for d in OFFSETS:
            p = base + sign * d * w
            sets.append((edge, f"{d:g}", make_dataset(prob, params=[p] * n, seed=seed)))
        g = torch.Generator().manual_seed(seed + 10_000 + (edge == "hi"))
        u = torch.rand(n, generator=g, dtype=torch.float64) * EDGE_BIN * w
        params = lo + u if edge == "lo" else hi - u
        sets.append((edge, f"0-{EDGE_BIN:g}", make_dataset(prob, params=params, seed=seed)))
    return sets


def summary(rows: list[dict]) -> str:
    """Markdown table: coverage90 per (problem, method, end), one column per offset."""
    offs = [f"{d:g}" for d in OFFSETS] + [f"0-{EDGE_BIN:g}"]
    return pivot(
        rows,
        ("problem", "method", "edge"),
        [(f"d = {o}", lambda r, o=o: r["d"] == o) for o in offs],
        lambda r: f"{r['coverage90']:.3f}",
        "coverage90 at parameter lo + d (hi - lo) / hi - d (hi - lo); last column: uniform over "
        f"the outermost {EDGE_BIN:.0%}",
        key_names=("problem", "method", "end"),
    )


def rows_for(args, cfg, prob):
    pname = prob.name
    sets = edge_sets(prob, cfg["n_test"])
    for key in args.methods:
        model = calibrated(args.models, pname, key, cfg)
        for edge, d, test in sets:
            theta = _theta_hat(model, test)
            for label, method in ((key, "none"), (f"ProbConserv-{key}", "probconserv")):
                yield {
                    "problem": pname,
                    "method": label,
                    "edge": edge,
                    "d": d,
                    "param_mean": float(test.params.mean()),
                    "theta_hat_mean": theta,
                    **score(model, test, method),
                }


def main(argv: list[str] | None = None) -> Path:
    return rescore(
        __doc__,
        argv,
        name="probconserv_edge",
        script=__file__,
        problems="diffusion,pme",
        summary=summary,
        rows_for=rows_for,
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
