"""bayesphys: probabilistic (Bayesian) physics modelling on torch.

Shared core: the :class:`Posterior` interface (:class:`GaussianPosterior`,
:class:`SamplePosterior`), ArviZ export, metrics, plots, devices and seeds. Components live in
subpackages: ``gp_pde``, ``probconserv``, ``neural_process``, ``odil``, ``meta_fm``.
"""

import warnings as _warnings

with _warnings.catch_warnings():
    # linear_operator (gpytorch's) decorates functions with torch.jit.script as it is
    # imported, which torch deprecates: a warning no user of bayesphys can act on, which under
    # `python -W error` failed `import bayesphys` (and every spawned worker that imports it).
    # Only that message, only during this import; the filters are restored after it.
    _warnings.filterwarnings(
        "ignore",
        message=r"`torch\.jit\.script` is (deprecated|not supported)",
        category=DeprecationWarning,
    )
    import linear_operator as _linear_operator  # noqa: F401

from ._checkpoint import load_checkpoint, save_checkpoint
from ._checks import MissingPackage, check_int, check_real, check_seed, stream_seed
from ._device import as_tensor, check_finite, model_device, resolve_device, resolve_dtype
from ._model import DivergenceError, DivergenceGuard, FitResult, optimize
from ._process_state import seed_everything, seeded
from ._version import __version__
from ._warning_types import (
    BayesphysDeprecationWarning,
    BayesphysFutureWarning,
    BayesphysRuntimeWarning,
    BayesphysUserWarning,
    BayesphysWarning,
)
from .distributed import FitManyResult, fit_many, problem_seed
from .inference_data import build_inference_data, load_netcdf, save_netcdf
from .plots import plot_bands, plot_field, plot_populations
from .posterior import GaussianPosterior, Posterior, SamplePosterior

__all__ = [
    "__version__",
    "Posterior",
    "GaussianPosterior",
    "SamplePosterior",
    "build_inference_data",
    "save_netcdf",
    "load_netcdf",
    "FitResult",
    "optimize",
    "DivergenceError",
    "DivergenceGuard",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_device",
    "model_device",
    "resolve_dtype",
    "seed_everything",
    "seeded",
    "check_finite",
    "check_int",
    "check_real",
    "check_seed",
    "stream_seed",
    "MissingPackage",
    "as_tensor",
    "fit_many",
    "FitManyResult",
    "problem_seed",
    "plot_bands",
    "plot_field",
    "plot_populations",
    "BayesphysWarning",
    "BayesphysUserWarning",
    "BayesphysRuntimeWarning",
    "BayesphysDeprecationWarning",
    "BayesphysFutureWarning",
]
