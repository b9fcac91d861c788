"""Ablation behind the MFM ensemble's predictive spread (``MFMEnsemble.uncertainty``).

B3 (interacting particles, the benchmark's seed-0 split: 300 train / 200 cal / 200 test
populations), a 3-member MFM ensemble at the benchmark's 1000 steps, scored with the
epistemic spread alone and with the aleatoric (sampling-noise) part averaged over 1, 5 and 20
random splits: Spearman of spread and error, and split-conformal 90 % coverage of the
W2 / spread score.

    python benchmarks/meta_fm_spread_ablation.py            # ~6 min on 2 cores
    python benchmarks/meta_fm_spread_ablation.py --seed 3 --conditioning film \
        --name meta_fm_spread_ablation_film_seed3          # the benchmark's B3 field, seed 3
    python benchmarks/meta_fm_spread_ablation.py --seed 3 --conditioning film \
        --members 3,5 --splits 20 --name meta_fm_members_ablation_seed3   # ensemble size

``--members 3,5`` trains 5 members (seeds ``seed + 100 j``) and scores the first 3 and all 5.

``--bagging`` also trains members ``1..n-1`` again, each on a bootstrap resample of the
training populations (drawn with replacement, ``numpy.random.default_rng(10000 + seed)``),
and scores that ensemble (member 0, fitted on every training population, shared) beside the
plain one: members that saw different populations might disagree where the field errs.
``--centered`` reads each point relative to its source population's mean (the benchmark's
B2 / B3 MFM field, ``CENTERED``)::

    python benchmarks/meta_fm_spread_ablation.py --seed 3 --conditioning film --centered \
        --members 5 --splits 20 --bagging --name meta_fm_bagging_ablation_seed3

Writes ``benchmarks/results/<name>.json`` (default ``meta_fm_spread_ablation``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import (
    ablation_parser,
    comma_list,
    print_rows_table,
    results_name_arg,
    write_rows,
)
from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_fm import FOURIER, model_kwargs, problem_data  # noqa: E402  (same settings)


def _ensemble_size(text: str) -> int:
    """An ensemble size: an int >= 2 (one member has no spread)."""
    n = int(text)
    if n < 2:
        raise argparse.ArgumentTypeError(f"expected ensemble sizes >= 2, received {text!r}")
    return n


def _split_count(text: str) -> int:
    """A number of noise splits: an int >= 0 (0: the epistemic spread alone)."""
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected split counts >= 0, received {text!r}")
    return n


def main(argv: list[str] | None = None) -> Path:
    ap = ablation_parser(__doc__, jobs=False)
    ap.add_argument("--problem", default="B3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument(
        "--conditioning",
        default="concat",
        choices=("concat", "film"),
        help="the field (default concat: the committed seed-0 table's)",
    )
    ap.add_argument(
        "--members",
        type=comma_list(_ensemble_size, what="ensemble sizes"),
        default="3",
        help="comma list of ensemble sizes (the first n members; each >= 2)",
    )
    ap.add_argument(
        "--splits",
        type=comma_list(_split_count, what="noise split counts"),
        default="0,1,5,20",
        help="comma list of noise splits (0: epistemic spread)",
    )
    ap.add_argument(
        "--centered", action="store_true", help="the field reads points relative to the source mean"
    )
    ap.add_argument(
        "--bagging",
        action="store_true",
        help="also score members 1..n-1 refitted on bootstrap resamples of the training pairs",
    )
    ap.add_argument(
        "--name", type=results_name_arg, default="meta_fm_spread_ablation", help="results file name"
    )
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data, _, k = problem_data(args.problem, False, args.seed)
    cal, test = data.subset("cal"), data.subset("test")
    sizes, splits_list = args.members, args.splits
    t0 = time.perf_counter()
    kw = model_kwargs(k, FOURIER[args.problem], args.conditioning) | {"centered": args.centered}
    members = []
    for j in range(max(sizes)):  # the benchmark's ensemble seeds: seed, seed + 100, seed + 200
        m = MetaFlowMatching(data, method="MFM", seed=args.seed + 100 * j, **kw)
        m.fit(steps=args.steps, progress=False)
        members.append(m)
    ensembles = {"plain": members}
    if args.bagging:
        rng = np.random.default_rng(10_000 + args.seed)
        train = np.asarray(data.splits["train"])
        bagged = [members[0]]
        for j in range(1, max(sizes)):
            idx = rng.choice(train, size=len(train), replace=True).tolist()
            resampled = dataclasses.replace(data, splits={**data.splits, "train": idx})
            m = MetaFlowMatching(resampled, method="MFM", seed=args.seed + 100 * j, **kw)
            m.fit(steps=args.steps, progress=False)
            bagged.append(m)
        ensembles["bagged"] = bagged
    rows = []
    for name, size, n_splits in ((e, s, n) for e in ensembles for s in sizes for n in splits_list):
        ens = MFMEnsemble(models=ensembles[name][:size], seed=args.seed)
        aleatoric, splits = n_splits > 0, max(n_splits, 1)
        u = ens.uncertainty(
            cal, test, alpha=0.1, max_points=1000, aleatoric=aleatoric, noise_splits=splits
        )
        row = {
            "problem": args.problem,
            "seed": args.seed,
            "conditioning": args.conditioning,
            "centered": args.centered,
            "ensemble": name,
            "members": size,
            "spread": "epistemic + aleatoric" if aleatoric else "epistemic",
            "noise_splits": splits if aleatoric else 0,
            "spearman_spread_error": u["spearman"],
            "coverage90": u["coverage"],
            "coverage90_raw": u["coverage_raw"],
            "mean_error_w2": float(np.mean(u["test_error"])),
            "mean_noise_w2": float(np.mean(u["test_noise"])),
            "mean_epistemic_spread": float(np.mean(u["test_spread_epistemic"])),
            "spearman_epistemic": u["spearman_epistemic"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return write_rows(args.name, rows, script=__file__, argv=argv, out=args.out, started=t0)


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
