"""Metrics of the Meta Flow Matching benchmark (``benchmarks/meta_fm.py``; Atanackovic et al.,
Meta Flow Matching, ICLR 2025; issue 7): W1 / W2 / MMD averaged over test populations, CellOT's
r (the anchor's B4 metric) and B2's exact-law (Bures) W2."""

from __future__ import annotations

import numpy as np
import torch

from bayesphys.meta_fm import correlation_of_correlations, gaussian_w2, population_metrics


def mean_metrics(preds, targets, max_points):
    ms = [
        population_metrics(p, t, max_points=max_points, seed=i)
        for i, (p, t) in enumerate(zip(preds, targets))
    ]
    return {k: float(np.mean([m[k] for m in ms])) for k in ("w1", "w2", "mmd")}


def mean_r(preds, targets) -> float:
    """Mean over populations of CellOT's r (correlation of the feature-correlation matrices,
    every point; the anchor's B4 metric, defined for d >= 3 features)."""
    return float(np.mean([correlation_of_correlations(p, t) for p, t in zip(preds, targets)]))


def bures(preds, test) -> float:
    """Mean exact-law W2 on B2: Gaussian fit of the prediction vs the true target Gaussian."""
    out = []
    for i, p in enumerate(preds):
        p = p.double()
        out.append(
            float(
                gaussian_w2(
                    p.mean(0),
                    torch.cov(p.T),
                    test.extra["target_mean"][i],
                    test.extra["target_cov"][i],
                )
            )
        )
    return float(np.mean(out))
