r"""Ablation: B4's MFM with and without the cell-type one-hot in the population embedding.

The reference's organoid model feeds each cell's type one-hot to its GNN; the benchmark does the
same on B4 (``source_features``). Here, per fold ``k`` = seed 0, 1, 2 (the benchmark's seeds),
one MFM fit with the features (``node_features=2``) and one without (``node_features=0``), plus
the FM baseline, at the benchmark's 1000 steps and settings, scored by the benchmark's sample W2
(mean over the held-out patients' populations, 1000 points). ``MFM-oracle`` replaces the GCN by
the source population's cell-type fractions :math:`(\hat\pi_p, 1-\hat\pi_p)` (the mean of the
one-hot, padded with zeros to the embedding width): the variable that drives B4's treatment
effect, given exactly, so it bounds what a better embedding could do for this field and budget.

    python benchmarks/meta_fm_features_ablation.py --jobs 2       # about 6 min on 2 cores

Writes ``benchmarks/results/meta_fm_features_ablation.json``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bayesphys._bench import (
    ablation_parser,
    positive_int,
    print_rows_table,
    run_script_tasks,
    write_rows,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_fm import FOURIER, mean_metrics, model_kwargs, problem_data  # noqa: E402

CONFIGS = (("MFM", 2), ("MFM", 0), ("FM", 0), ("MFM-oracle", 2))


class OracleFraction(nn.Module):
    """Embedding ``[P, width]`` = the mean cell-type one-hot of each population, zero-padded
    (one trainable scale, so the optimiser has a parameter to hold)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        single = x.ndim == 2
        x, f = (x[None], f[None]) if single else (x, f)
        out = torch.zeros(x.shape[0], self.width, dtype=x.dtype, device=x.device)
        out[:, : f.shape[-1]] = f.mean(-2).to(x) * self.scale
        return out[0] if single else out


def fit_one(task: tuple[int, str, int], steps: int) -> dict:
    """One ``(seed, method, node_features)`` fit on B4 fold ``seed``, scored on its test split."""
    from bayesphys.meta_fm import MetaFlowMatching

    seed, meth, nf = task
    data, _, k = problem_data("B4", False, seed)
    test = data.subset("test")
    kw = model_kwargs(k, FOURIER["B4"])
    oracle = meth == "MFM-oracle"
    m = MetaFlowMatching(data, method="MFM" if oracle else meth, seed=seed, node_features=nf, **kw)
    if oracle:
        m.net["embed"] = OracleFraction(kw["gnn_hidden"])
    t0 = time.perf_counter()
    m.fit(steps=steps, progress=False)
    pred = m.predict(test.source, test.treatment, features=test.source_features)
    row = {"fold": seed % 4, "seed": seed, "method": meth, "cell_type_features": nf > 0}
    row.update(mean_metrics(pred, test.target, 1000))
    row["seconds"] = time.perf_counter() - t0
    return row


def main(argv: list[str] | None = None) -> Path:
    ap = ablation_parser(__doc__)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=positive_int, default=3)
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    tasks = [(s, meth, nf) for s in range(args.seeds) for meth, nf in CONFIGS]
    t0 = time.perf_counter()
    rows = run_script_tasks(__file__, "fit_one", tasks, args.jobs, argv=argv, steps=args.steps)
    for meth, nf in CONFIGS:  # mean over folds
        sel = [r for r in rows if r["method"] == meth and r["cell_type_features"] == (nf > 0)]
        rows.append(
            {
                "fold": "mean",
                "seed": "-",
                "method": meth,
                "cell_type_features": nf > 0,
                **{k: float(np.mean([r[k] for r in sel])) for k in ("w1", "w2", "mmd")},
            }
        )
    return write_rows(
        "meta_fm_features_ablation", rows, script=__file__, argv=argv, out=args.out, started=t0
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
