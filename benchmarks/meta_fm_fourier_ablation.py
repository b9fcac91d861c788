"""Ablation behind the benchmark's per-problem Fourier features (``FOURIER`` in meta_fm.py).

* **B2**: one seed (0), one MFM fit per (Fourier features, steps), scored on 100 held-out
  populations of the linear map by the exact-law (Bures) W2 between the Gaussian fit of the
  prediction and the true target Gaussian, split into its mean part and its covariance part
  (sampling floor of the Bures W2 at 512 points: ~0.027). The draw,
  ``linear_map(n_train=200, n_cal=0, n_test=100, seed=0)``, has the population means of the
  benchmark's seed-0 training and first 100 calibration populations (292 of 300 coincide)
  but other covariances and points; none of the benchmark's test populations is used here.
* **B4**: fold 0 (the benchmark's seed 0), FM and MFM with and without Fourier features at the
  benchmark's 1000 steps, scored by the benchmark's sample W2 on the held-out patients. The
  MFM here does not read the cell-type features (``node_features=0``), as when this ablation
  was run; ``meta_fm_features_ablation.py`` measures them.

    python benchmarks/meta_fm_fourier_ablation.py    # 72 min of fits when sharing 2 cores
    python benchmarks/meta_fm_fourier_ablation.py --steps 1000 --no-b4

Writes ``benchmarks/results/meta_fm_fourier_ablation.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import ablation_parser, comma_list, positive_int, print_rows_table, write_rows
from bayesphys.meta_fm import MetaFlowMatching, gaussian_w2
from bayesphys.problems.populations import linear_map

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_fm import mean_metrics, model_kwargs, problem_data  # noqa: E402  (same settings)

CONFIGS = {"fourier 64 (sigma_B = 1)": 64, "no Fourier features": 0}


def score(model: MetaFlowMatching, data) -> dict[str, float]:
    """Mean exact-law W2 over the held-out populations, and its mean / covariance parts."""
    test = data.subset("test")
    tm, tc = test.extra["target_mean"], test.extra["target_cov"]
    full, mean_part, cov_part = [], [], []
    for i, p in enumerate(model.predict(test.source)):
        p = p.double()
        m, c = p.mean(0), torch.cov(p.T)
        full.append(float(gaussian_w2(m, c, tm[i], tc[i])))
        mean_part.append(float((m - tm[i]).norm()))
        cov_part.append(float(gaussian_w2(tm[i], c, tm[i], tc[i])))
    return {
        "w2_bures": float(np.mean(full)),
        "mean_error": float(np.mean(mean_part)),
        "cov_w2": float(np.mean(cov_part)),
    }


def main(argv: list[str] | None = None) -> Path:
    ap = ablation_parser(__doc__, jobs=False)
    ap.add_argument(
        "--steps",
        type=comma_list(positive_int, what="step counts"),
        default="1000,5000,20000",
        help="comma list of step counts",
    )
    ap.add_argument("--no-b4", action="store_true", help="skip the B4 part")
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    data = linear_map(dim=2, n_train=200, n_cal=0, n_test=100, seed=0)
    rows = []
    for label, fourier in CONFIGS.items():
        for steps in args.steps:
            m = MetaFlowMatching(data, method="MFM", seed=0, **model_kwargs(50, fourier))
            t0 = time.perf_counter()
            fit = m.fit(steps=steps, progress=False)
            row = {"problem": "B2", "config": label, "fourier": fourier, "steps": steps}
            row.update(score(m, data))
            row["train_loss_last_10pct"] = float(np.mean(fit.loss_history[-max(steps // 10, 1) :]))
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(json.dumps(row), flush=True)
    if not args.no_b4:
        b4, _, k = problem_data("B4", False, 0)
        test = b4.subset("test")
        for fourier in (64, 0):
            for meth in ("FM", "MFM"):
                m = MetaFlowMatching(
                    b4, method=meth, seed=0, node_features=0, **model_kwargs(k, fourier)
                )
                t0 = time.perf_counter()
                m.fit(steps=1000, progress=False)
                met = mean_metrics(m.predict(test.source, test.treatment), test.target, 1000)
                row = {"problem": "B4", "fold": 0, "method": meth, "fourier": fourier, **met}
                row["seconds"] = time.perf_counter() - t0
                rows.append(row)
                print(json.dumps(row), flush=True)
    return write_rows("meta_fm_fourier_ablation", rows, script=__file__, argv=argv, out=args.out)


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
