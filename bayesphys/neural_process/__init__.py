r"""Random-grid neural processes with GICNets for forward and inverse parametric PDEs.

A. Vadeboncoeur, I. Kazlauskaite, Y. Papandreou, F. Cirak, M. Girolami, Ö. D. Akyildiz,
*Random Grid Neural Processes for Parametric Partial Differential Equations*, ICML 2023
(PMLR 202:34759-34778, arXiv:2301.11040); predecessor PDDLVM (J. Comput. Phys. 491, 2023).

* :mod:`.grids` — random collocation grids as measures over point sets (uniform, Sobol,
  adaptive importance sampling).
* :mod:`.forward` — :math:`q_\alpha(\tilde u \mid z, w, X) = \mathcal N(\mu, \operatorname{diag}
  \sigma^2 + CC^\top)`, a GP over the field.
* :mod:`.gicnet` — grid-invariant inverse network :math:`p_\beta(z \mid \tilde u, X, w)`.
* :mod:`.objective` — physics ELBO and noisy-data marginal likelihood.
* :mod:`.config` — :class:`RGNPConfig`, the ``"R0"``/``"RGNP"`` presets and sizes.
* :mod:`.model` — :class:`RandomGridNP` (``"R0"`` reference setting, ``"RGNP"`` ours).
* :mod:`.calibrate` — post-hoc variance multipliers fitted on validation instances.
* :mod:`.evaluate` — test-set metrics (NSE, 2-sigma coverage, NLL, CRPS).
"""

from .calibrate import calibrate_variance, interval_scale
from .evaluate import (
    burgers_inverse_inputs,
    evaluate_burgers,
    evaluate_poisson,
    information_oracle,
    invariance_study,
    match_oracle_sigma,
)
from .forward import ForwardNet
from .gicnet import GICNet, KernelInterpolation
from .grids import AdaptiveGrid, GridMeasure, SobolGrid, UniformGrid, check_points, make_grid
from .model import SIZES, RandomGridNP, RGNPConfig, get_problem, preset
from .objective import data_log_likelihood, field_marginal, physics_elbo

__all__ = [
    "AdaptiveGrid",
    "ForwardNet",
    "GICNet",
    "GridMeasure",
    "KernelInterpolation",
    "RGNPConfig",
    "RandomGridNP",
    "SobolGrid",
    "UniformGrid",
    "calibrate_variance",
    "check_points",
    "data_log_likelihood",
    "burgers_inverse_inputs",
    "evaluate_burgers",
    "evaluate_poisson",
    "field_marginal",
    "get_problem",
    "interval_scale",
    "invariance_study",
    "information_oracle",
    "match_oracle_sigma",
    "make_grid",
    "physics_elbo",
    "preset",
    "SIZES",
]
