r"""Calibration diagnostics for every bayesphys posterior.

* :mod:`.simulate` — the simulate -> infer -> draw loop over ``N`` problems and field summaries
  (:func:`probe`, :func:`total_mass`, :func:`front_position`);
* :mod:`.sbc` — simulation-based calibration ranks (per summary, and the joint pooled
  Mahalanobis rank of the summary vector, and a cross-fitted joint test that learns the
  direction of a misfit on half of the problems), chi-square / KS uniformity tests, the
  PIT-ECDF plot with simultaneous bands, ranks as an InferenceData ``prior_sbc`` group;
* :mod:`.coverage` — central and HDI expected coverage, TARP with its ATC, field calibration
  curves, CRPS and NLL;
* :mod:`.recalibrate` — variance scaling (z-score or split-conformal) and isotonic quantile
  recalibration wrapped around any ``Posterior``, with held-out coverage (off by default);
* :mod:`.record_recal` — the same maps fitted per summary on held-out simulations and applied to
  a calibration run's draws (the recalibrated row beside a rejected posterior);
* :mod:`.result` — :class:`CalibrationResult` and :func:`analyse` (every diagnostic of a record);
* :mod:`.calibrate` / :mod:`.suite` — one run's row, and ``bayesphys calibrate COMPONENT``.

References
----------
* S. Talts, M. Betancourt, D. Simpson, A. Vehtari, A. Gelman (2018). Validating Bayesian
  inference algorithms with simulation-based calibration. arXiv:1804.06788.
* T. Säilynoja, P.-C. Bürkner, A. Vehtari (2022). Graphical test for discrete uniformity and
  its applications in goodness-of-fit evaluation and multiple sample comparison. Statistics and
  Computing 32:32.
* P. Lemos, A. Coogan, Y. Hezaveh, L. Perreault-Levasseur (2023). Sampling-based accuracy
  testing of posterior estimators for general inference. ICML.
* V. Kuleshov, N. Fenner, S. Ermon (2018). Accurate uncertainties for deep learning using
  calibrated regression. ICML.
* T. Gneiting, A. E. Raftery (2007). Strictly proper scoring rules, prediction, and estimation.
  JASA 102:359-378.

Example
-------
>>> from bayesphys.diagnostics import CoreFamily, run_sbc
>>> fam = CoreFamily()
>>> res = run_sbc(fam.simulate, fam.infer, fam.summaries(), n_sims=50, n_draws=19, seed=0)
>>> tuple(res.ranks.shape)
(50, 5)
"""

from .calibrate import calibration_rows, is_calibrated, run_sbc
from .conformal import conformal_min_scores, conformal_rank
from .core_problem import CoreFamily
from .coverage import (
    central_coverage,
    expected_coverage,
    field_calibration_curve,
    hdi_coverage,
    hdi_pit,
    score_summary,
    tarp,
)
from .fit_recal import fit_recalibration
from .pit_ecdf import ecdf_band, pit_ecdf, plot_pit_ecdf
from .recalibrate import Recalibrator
from .recalibrated import RecalibratedPosterior
from .record_maps import AffineMap, ShapeMap, standardised_residuals
from .record_recal import RecordRecalibration, fit_record_recalibration, recalibrated_rows
from .result import CalibrationResult, analyse
from .sbc import ranks_inference_data, sbc_pit, sbc_ranks, sbc_uniformity
from .sbc_joint import sbc_joint_crossfit, sbc_joint_ranks
from .simulate import (
    DEFAULT_LEVELS,
    SimulationRecord,
    default_summaries,
    front_position,
    posterior_draws,
    probe,
    simulate_and_infer,
    total_mass,
)
from .suite import CalibrationFailed, run_calibration

__all__ = [
    "AffineMap",
    "CalibrationFailed",
    "CalibrationResult",
    "CoreFamily",
    "DEFAULT_LEVELS",
    "RecalibratedPosterior",
    "Recalibrator",
    "conformal_min_scores",
    "conformal_rank",
    "RecordRecalibration",
    "ShapeMap",
    "SimulationRecord",
    "analyse",
    "calibration_rows",
    "central_coverage",
    "default_summaries",
    "ecdf_band",
    "expected_coverage",
    "field_calibration_curve",
    "fit_recalibration",
    "fit_record_recalibration",
    "front_position",
    "hdi_coverage",
    "hdi_pit",
    "is_calibrated",
    "pit_ecdf",
    "plot_pit_ecdf",
    "posterior_draws",
    "probe",
    "ranks_inference_data",
    "recalibrated_rows",
    "run_calibration",
    "run_sbc",
    "sbc_joint_crossfit",
    "sbc_joint_ranks",
    "sbc_pit",
    "sbc_ranks",
    "sbc_uniformity",
    "score_summary",
    "simulate_and_infer",
    "standardised_residuals",
    "tarp",
    "total_mass",
]
