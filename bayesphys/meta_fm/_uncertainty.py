r"""Spread-vs-error and split-conformal scores of a deep ensemble's predictions, for
:meth:`~bayesphys.meta_fm.MFMEnsemble.uncertainty` (Atanackovic et al. 2024, Meta Flow
Matching).

For each population :math:`i` of a split, :func:`split_scores` computes the error
:math:`e_i = W_2(\bar p_i, p_i)` of the pooled prediction, the epistemic spread
:math:`s^{ep}_i` (mean pairwise :math:`W_2` between members), the sampling noise
:math:`s^{al}_i` and the predictive spread :math:`s_i = \sqrt{(s^{ep}_i)^2 + (s^{al}_i)^2}`;
:func:`uncertainty_summary` ranks spread against error on the test split (Spearman) and
calibrates split-conformal radii of :math:`e_i / s_i` and :math:`e_i` on the calibration split.
:func:`check_split` refuses a split the members cannot be asked about.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..problems.populations import PopulationPairs
from ._type_frame import check_type_onehots
from ._validate import check_features, check_pairs
from .evaluation import (
    conformal_coverage,
    ensemble_spread,
    pooled_prediction,
    population_metrics,
    sampling_noise_w2,
    spearman,
)
from .model import MetaFlowMatching

__all__ = ["check_split", "SplitScores", "split_scores", "uncertainty_summary"]


def check_split(name: str, data: PopulationPairs, m0: MetaFlowMatching, aleatoric: bool) -> None:
    """Refuse a split ``data`` (named ``name``) that members like ``m0`` cannot be asked
    about: pairs of their dimension, with treatments (and point features) exactly when they
    read them (indices in ``[0, num_treatments)``, of at most the members' number of
    treatments), one-hot point features when they read types (``type_frame``), and
    (``aleatoric``) sources of at least 4 points."""
    check_pairs(data, m0.dim, name=name)
    if m0.num_treatments and data.treatment is None:
        raise ValueError(
            f"{name}.treatment: the members need one of {m0.num_treatments} treatments "
            "per population, received None"
        )
    if not m0.num_treatments and data.treatment is not None:
        raise ValueError(
            f"{name}.treatment: the members were built without treatments "
            "(num_treatments=0); they would be ignored"
        )
    if m0.num_treatments and int(torch.as_tensor(data.treatment).max()) >= m0.num_treatments:
        raise ValueError(
            f"{name}.treatment: expected indices in [0, {m0.num_treatments}) (the members' "
            f"num_treatments), received {torch.as_tensor(data.treatment).tolist()!r:.200}"
        )
    if m0.num_treatments and int(data.num_treatments) > m0.num_treatments:
        raise ValueError(  # indices of another labelling, read as the members' treatments
            f"{name}.num_treatments: the members were built for {m0.num_treatments} "
            f"treatments, received data of {int(data.num_treatments)}"
        )
    if m0.config.node_features:
        check_features(
            f"{name}.source_features",
            data.source_features,
            data.source,
            m0.config.node_features,
        )
        if m0.config.type_frame:  # else refused only when this split's turn to predict came
            check_type_onehots(f"{name}.source_features", data.source_features)
    if aleatoric:
        for i, src in enumerate(data.source):
            if src.shape[0] < 4:
                raise ValueError(
                    f"{name}.source[{i}]: the aleatoric spread splits each predicted "
                    f"population in halves and needs at least 4 points, received "
                    f"{src.shape[0]} (or pass aleatoric=False)"
                )


class SplitScores(NamedTuple):
    """Per-population scores of one split (arrays ``[P]``) and the pooled prediction's metrics."""

    error: np.ndarray
    spread: np.ndarray
    epistemic: np.ndarray
    noise: np.ndarray
    metrics: list[dict[str, float]]


def split_scores(
    preds: Sequence[Sequence[Tensor]],
    data: PopulationPairs,
    *,
    max_points: int | None,
    noise_splits: int,
    aleatoric: bool,
) -> SplitScores:
    """Scores of the members' predictions ``preds[m][i]`` of the populations of ``data``:
    population ``i``'s pooled prediction (:func:`~.evaluation.pooled_prediction` at the true
    population's size, seed ``i``) against its truth, the members' spread and (``aleatoric``) the
    sampling noise averaged over ``noise_splits`` splits, distances on at most ``max_points``
    points."""
    err, epi, noise, mets = [], [], [], []
    for i, tgt in enumerate(data.target):
        members = [p[i] for p in preds]
        pooled = pooled_prediction(members, tgt.shape[0], seed=i)
        met = population_metrics(pooled, tgt, max_points=max_points, seed=i)
        mets.append(met)
        err.append(met["w2"])
        epi.append(ensemble_spread(members, max_points=max_points, seed=i))
        noise.append(
            sampling_noise_w2(
                members, tgt.shape[0], max_points=max_points, seed=i, splits=noise_splits
            )
            if aleatoric
            else 0.0
        )
    epi, noise = np.asarray(epi), np.asarray(noise)
    return SplitScores(np.asarray(err), np.sqrt(epi**2 + noise**2), epi, noise, mets)


def uncertainty_summary(
    cal: SplitScores, test: SplitScores, alpha: float, normalized: bool
) -> dict[str, Any]:
    """The result of :meth:`~bayesphys.meta_fm.MFMEnsemble.uncertainty` from the scores of the
    calibration and test splits (``normalized`` picks the score behind ``"coverage"`` and
    ``"radius"``)."""
    ce, cs = cal.error, cal.spread
    te, ts, te_epi, te_noise, tm = test
    norm_cal, norm_test = ce / np.maximum(cs, 1e-12), te / np.maximum(ts, 1e-12)
    radius_n, cov_n = conformal_coverage(norm_cal, norm_test, alpha)
    radius_r, cov_r = conformal_coverage(ce, te, alpha)
    return {
        "spearman": spearman(ts, te),
        "spearman_epistemic": spearman(te_epi, te),
        "coverage": cov_n if normalized else cov_r,
        "radius": radius_n if normalized else radius_r,
        "coverage_normalized": cov_n,
        "coverage_raw": cov_r,
        "radius_normalized": radius_n,
        "radius_raw": radius_r,
        "test_error": te.tolist(),
        "test_spread": ts.tolist(),
        "test_spread_epistemic": te_epi.tolist(),
        "test_noise": te_noise.tolist(),
        "test_metrics": tm,
    }
