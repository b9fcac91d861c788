r"""Several tumour foci: the initial state, a starting guess, and the choice of their number.

A multi-focal glioma starts from :math:`K` focal seeds (as GliODIL's three-focal synthetic
patients); the initial state is the pointwise maximum of the focal Gaussians (GliODIL's
generator adds them instead),

.. math:: c_0(x) = \max_{k=1..K} a\,\exp\!\bigl(-|x - x_k|^2 / 2w^2\bigr),

with :math:`\partial c_0/\partial x_k = 1[k = \arg\max]\; g_k(x)\,(x - x_k)/w^2` (one-hot
subgradient of the maximum). The number :math:`K` is chosen by the Laplace approximation of the
model evidence,

.. math:: \log p(y \mid K) \approx -L(\theta^*) - \tfrac12 \log\det H
          - \sum_i \log \sigma_i + \log K!,

where :math:`L = \tfrac12\lVert r\rVert^2` is the loss (data residuals, whose squares are
:math:`-2\log` of the probit label probabilities, normalised over the three labels up to the
product of the two probit tails, about 5e-8 at noise 0.05 and thresholds 0.35 apart, plus the
Gaussian prior residuals with sds
:math:`\sigma_i`), :math:`H` the Hessian at the mode :math:`\theta^*` (inverse Laplace
covariance), and :math:`\log K!` counts the :math:`K!` relabelled, equivalent modes of the
symmetric model (MacKay, *Information Theory, Inference and Learning Algorithms*, ch. 28).
Reference: M. Balcerak et al., GliODIL, arXiv 2312.05063 (multi-focal synthetic patients).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from .._checks import check_int_sequence
from .._device import as_tensor
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning

# the initial state and the starting guess sit below the model, which builds on them
from ._focal import FOCAL_WIDTH_MM as FOCAL_WIDTH_MM  # the focal width, re-exported by name
from ._focal import kmeans_foci, multifocal_initial_condition
from .glioma import GliomaModel

__all__ = [
    "multifocal_initial_condition",
    "kmeans_foci",
    "log_evidence",
    "select_n_foci",
    "focus_error_mm",
]


def log_evidence(model: GliomaModel) -> float:
    r"""Laplace log evidence :math:`\log p(y \mid K)` of a fitted model (module docstring),
    up to a constant that is the same for every number of foci (PET normalisation). Read at
    the fitted mode and covariance (:meth:`~bayesphys.odil.GliomaModel.fitted_theta`): a
    :meth:`~bayesphys.odil.GliomaModel.recalibrate` map does not change the evidence."""
    _check_model(model)
    theta, cov = model.fitted_theta()
    with torch.no_grad():
        loss = float(model.loss(theta))
    logdet_cov = float(torch.linalg.slogdet(cov)[1])
    pr = model._prior()
    log_sd = math.log(pr["log_dw"][1]) + math.log(pr["log_rho"][1])
    log_sd += model.n_foci * model.ndim * math.log(pr["focus_sd"])
    return -loss + 0.5 * logdet_cov - log_sd + math.lgamma(model.n_foci + 1)


def _check_model(model: Any, name: str = "model") -> None:
    if not isinstance(model, GliomaModel):
        raise TypeError(f"{name}: expected a GliomaModel, received {type(model).__name__}")


def select_n_foci(
    make_model: Any,
    candidates: Sequence[int] = (1, 2, 3),
    **fit_kwargs: Any,
) -> tuple[GliomaModel, dict[int, float]]:
    """Fit one model per number of foci and keep the one of largest Laplace evidence.

    ``make_model(n_foci)`` builds an unfitted :class:`~bayesphys.odil.GliomaModel` (e.g.
    ``lambda k: GliomaModel.from_patient(p, n_foci=k)``); ``fit_kwargs`` go to ``fit``. Returns
    ``(best fitted model, {K: log evidence})``. ``make_model`` must return a model with
    ``n_foci == K`` (one that ignored ``K`` compared evidences of the wrong models).
    A ``K`` whose evidence is not a finite number (NaN from a fit that broke down) is left
    out of the choice with a ``RuntimeWarning`` naming it (it is still in the scores; a NaN
    first candidate used to be kept as the best, since no comparison with NaN is true); if
    no candidate has a finite evidence, a ``RuntimeError``.
    """
    if not callable(make_model):
        raise TypeError(
            f"make_model: expected a callable make_model(n_foci), received "
            f"{type(make_model).__name__}"
        )
    cands = check_int_sequence("candidates", candidates, minimum=1)
    best, scores = None, {}
    for k in cands:
        m = make_model(k)
        _check_model(m, f"make_model({k})")
        if m.n_foci != k:
            raise ValueError(
                f"make_model({k}): expected a model with n_foci={k}, received {m.n_foci}"
            )
        m.fit(**fit_kwargs)
        scores[k] = log_evidence(m)
        if not math.isfinite(scores[k]):
            warnings.warn(
                f"select_n_foci: the log evidence of n_foci={k} is {scores[k]} (its fit broke "
                "down: see its result.message); that candidate is left out of the choice",
                BayesphysRuntimeWarning,
                stacklevel=user_stacklevel(),
            )
            continue
        if best is None or scores[k] > scores[best.n_foci]:
            best = m
    if best is None:
        raise RuntimeError(
            f"select_n_foci: no candidate has a finite log evidence ({scores}); check the "
            "fits (result.message of make_model(K).fit(...))"
        )
    return best, scores


def focus_error_mm(est: Any, true: Any) -> float:
    r"""Distance (mm) between estimated foci ``[K, d]`` and true foci ``[K', d]``: the mean over
    true foci of the distance to the nearest estimate, averaged with the same over estimates,

    .. math:: \tfrac12\Big(\tfrac1{K'}\sum_j \min_k |\hat x_k - x_j|
              + \tfrac1K\sum_k \min_j |\hat x_k - x_j|\Big).

    The plain focus distance for one focus each; missed and spurious foci both count."""
    # finite: NaN foci gave a NaN distance; detached: a distance is a number, and foci that
    # required grad (a fit's theta) gave torch's warning of a tensor read as a float
    e = as_tensor("est", est, dtype=torch.float64).detach()
    t = as_tensor("true", true, dtype=torch.float64).detach()
    for name, v in (("est", e), ("true", t)):
        if v.ndim != 2 or len(v) == 0:
            raise ValueError(f"{name}: expected foci [K, d] with K >= 1, received {tuple(v.shape)}")
    if e.shape[1] != t.shape[1]:
        raise ValueError(
            f"est, true: expected foci of one dimension, received {e.shape[1]}, {t.shape[1]}"
        )
    d = torch.cdist(e, t)
    return float(0.5 * (d.min(0).values.mean() + d.min(1).values.mean()))
