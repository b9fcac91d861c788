r"""ProbConserv: conservation-constrained Bayesian updates with calibrated uncertainty.

Hansen, Maddix, Alizadeh, Gupta, Mahoney, *Learning Physical Models that Can Respect
Conservation Laws*, ICML 2023 (PMLR 202:12469-12510, arXiv:2302.11002).

Step 1 (a probabilistic data-driven model) gives :math:`u \sim \mathcal N(\mu, \Sigma)` on a
space-time grid; Step 2 conditions it on the integral conservation law
:math:`G u = b(t) + \varepsilon` (one trapezoid row :math:`G` per time slice):
:math:`\tilde\mu = \mu - \Sigma G^\top(\sigma_G^2 I + G\Sigma G^\top)^{-1}(G\mu - b)`,
:math:`\tilde\Sigma = \Sigma - \Sigma G^\top(\sigma_G^2 I + G\Sigma G^\top)^{-1} G\Sigma`.
"""

from .anp import AttentiveNP
from .calibration import (
    HybridCalibration,
    fit_hybrid,
    hybrid_covariance,
)
from .candidate_selection import select_candidate
from .conditional import (
    LocalScale,
    ParameterMap,
    fit_local_scale,
    fit_parameter_map,
    local_coverage_scale,
)
from .evaluate import shock_position, shock_posterior, slice_scores
from .inequality import nonnegative_posterior, project_nonnegative
from .mass_check import (
    add_discrepancy,
    discrepancy_roots,
    discrepancy_variance,
    fit_mass_kappa,
    gated_discrepancy_variance,
    mass_residual,
)
from .metagp import MetaGP
from .mixture_update import conserve_latent_mixture
from .model import ProbConserv, ProbConservConfig
from .monotone import monotone_posterior, project_monotone
from .update import (
    conservation_update,
    conserve_slices,
    cov_times_gt,
    hard_projection,
    trapezoid_weights,
)

__all__ = [
    "AttentiveNP",
    "HybridCalibration",
    "fit_hybrid",
    "fit_local_scale",
    "hybrid_covariance",
    "select_candidate",
    "LocalScale",
    "ParameterMap",
    "fit_parameter_map",
    "local_coverage_scale",
    "mass_residual",
    "fit_mass_kappa",
    "gated_discrepancy_variance",
    "discrepancy_roots",
    "discrepancy_variance",
    "add_discrepancy",
    "MetaGP",
    "monotone_posterior",
    "project_monotone",
    "nonnegative_posterior",
    "project_nonnegative",
    "ProbConserv",
    "ProbConservConfig",
    "shock_position",
    "shock_posterior",
    "slice_scores",
    "conservation_update",
    "conserve_slices",
    "conserve_latent_mixture",
    "cov_times_gt",
    "hard_projection",
    "trapezoid_weights",
]
