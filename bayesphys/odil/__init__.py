r"""Discrete-loss inference (ODIL) with a Laplace / NUTS posterior, and the glioma model.

Unknowns are grid values of fields plus scalar parameters; the loss is a sum of squared
weighted residuals (PDE stencils, data, boundary/initial conditions, regularisers), minimised by
Adam, L-BFGS or Gauss-Newton / Levenberg-Marquardt with matrix-free CG. Read as a negative log
posterior, its Gauss-Newton matrix gives a Laplace posterior (parameter marginal via a Schur
complement, never densifying the field block).

References
----------
* P. Karnakov, S. Litvinov, P. Koumoutsakos, "Solving inverse problems in physics by optimizing
  a discrete loss: Fast and accurate learning without neural networks", PNAS Nexus 3(1), pgae005
  (2024). The ``odil`` package.
* P. Karnakov et al., "Flow reconstruction by multiresolution optimization of a discrete loss
  with automatic differentiation", Eur. Phys. J. E 46, 59 (2023) (multigrid decomposition).
* M. Balcerak et al., "Individualizing glioma radiotherapy planning by optimization of a data
  and physics-informed discrete loss", Nature Communications (2025), arXiv 2312.05063 (GliODIL).
* J. Lipkova et al., "Personalized radiotherapy design for glioblastoma: integrating
  mathematical tumor models, multimodal scans and Bayesian inference", IEEE TMI 38 (2019).
"""

from ..problems.stencil import d1, d2, div_flux, face_average, laplacian, shift
from .foci import (
    focus_error_mm,
    kmeans_foci,
    log_evidence,
    multifocal_initial_condition,
    select_n_foci,
)
from .glioma import GliomaModel
from .laplace import dense_gn_matrix, field_posterior, gn_matvec, theta_covariance
from .multigrid import Multigrid
from .nuts import nuts_reference
from .problem import DiscreteProblem
from .radiotherapy import model_plan, recurrence_coverage, standard_margin_plan
from .recalibration import fit_recalibration_map
from .solvers import cg, minimize
from .sparse import ColouredJacobian, column_colours, sparse_normal_solve, sparse_schur_covariance

__all__ = [
    "DiscreteProblem",
    "GliomaModel",
    "select_n_foci",
    "focus_error_mm",
    "log_evidence",
    "kmeans_foci",
    "multifocal_initial_condition",
    "nuts_reference",
    "fit_recalibration_map",
    "standard_margin_plan",
    "model_plan",
    "recurrence_coverage",
    "minimize",
    "ColouredJacobian",
    "column_colours",
    "sparse_normal_solve",
    "sparse_schur_covariance",
    "cg",
    "theta_covariance",
    "field_posterior",
    "gn_matvec",
    "dense_gn_matrix",
    "Multigrid",
    "shift",
    "d1",
    "d2",
    "laplacian",
    "face_average",
    "div_flux",
]
