r"""Ablation: minibatch OT vs whole-population OT pairing on B4 (unpaired populations).

B4's control and treated populations are independent draws, so the flow models pair them by
OT. ``coupling="ot"`` (the reference) solves the exact OT between two ``points``-point
subsamples at every step; ``"ot_full"`` solves it once per fit between the whole populations
(1000 cells) and draws each subsampled point's partner from that plan. Per fold (the
benchmark's seed), one FM and one MFM fit with each coupling at the benchmark's settings
(``model_kwargs``, ``FOURIER``, ``FULL_STEPS``, cell-type features), scored by the benchmark's
sample W2 on the held-out patients. ``trcov_pred`` / ``trcov_true``: mean trace of the
covariance of the predicted and of the true treated populations: a value below the truth's
means the learned flow contracts the populations.

    python benchmarks/meta_fm_coupling_ablation.py --jobs 2     # fold 3, ~5 min on 2 cores

The default fold 3 is the one the benchmark's seeds 0-2 do not test on (the rule for the
benchmark: ``ot_full`` if it lowers MFM's W2 there by more than 1 %).
Writes ``benchmarks/results/meta_fm_coupling_ablation.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import print_rows_table, run_script_tasks, write_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_fm import FOURIER, FULL_STEPS, mean_metrics, model_kwargs, problem_data  # noqa: E402

COUPLINGS = ("ot", "ot_full")


def _trcov(pops) -> float:
    return float(np.mean([float(torch.cov(p.double().T).trace()) for p in pops]))


def fit_one(task: tuple[int, str, str]) -> dict:
    """One B4 fit ``(seed, method, coupling)`` scored on the held-out patients."""
    from bayesphys.meta_fm import MetaFlowMatching

    seed, method, coupling = task
    data, _, k = problem_data("B4", False, seed)
    test = data.subset("test")
    kw = model_kwargs(k, FOURIER["B4"], "concat") | {"coupling": coupling}
    m = MetaFlowMatching(data, method=method, seed=seed, **kw)
    fit = m.fit(steps=FULL_STEPS["B4"], progress=False)
    pred = m.predict(test.source, test.treatment, features=test.source_features)
    row = {"problem": "B4", "fold": seed % 4, "seed": seed, "method": method}
    row |= {"coupling": coupling} | mean_metrics(pred, test.target, 1000)
    row |= {"trcov_pred": _trcov(pred), "trcov_true": _trcov(test.target)}
    return row | {"seconds": fit.seconds}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="3", help="comma list of seeds (fold = seed mod 4)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (1 thread each)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--table", metavar="RESULTS_JSON", help="only print a results file's table")
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = [(s, m, c) for s in seeds for m in ("FM", "MFM") for c in COUPLINGS]
    t0 = time.perf_counter()
    rows = run_script_tasks(__file__, "fit_one", tasks, args.jobs)
    return write_rows(
        "meta_fm_coupling_ablation", rows, script=__file__, argv=argv, out=args.out, started=t0
    )


if __name__ == "__main__":
    main()
