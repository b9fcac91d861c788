"""Benchmark problems and data generators with exact or reference solutions.

Each component's problems live in a module or subpackage of this package:
``linear_gaussian`` (the core's conjugate reference problem), ``gp_pde``, ``gpme`` (a package,
one module per GPME family), ``rgnp`` (a package: Poisson, Burgers), ``cavity``, ``glioma``
(with ``fisher_kolmogorov``), ``populations`` (a package, one module per benchmark B1-B4);
grid stencils in ``stencil``.
The most used names are re-exported here.
"""

from .cavity import cavity_test_set, solve_cavity
from .glioma import (
    GLIOMA_PRIOR,
    atlas_unavailable_reason,
    brain_phantom,
    mni_atlas,
    segment,
    synthetic_patient,
    truth_theta,
)
from .gp_pde import PDEProblem
from .gp_pde import get_problem as get_gp_pde_problem
from .gp_pde import problem_ids as gp_pde_problem_ids
from .gpme import (
    Diffusion,
    GPMEData,
    GPMEProblem,
    PorousMedium,
    Stefan,
    eval_grid,
    make_dataset,
    mass_from_fluxes,
    stefan_front,
)
from .gpme import get_problem as get_gpme_problem
from .linear_gaussian import ConjugateGaussianField, linear_gaussian_problem
from .populations import (
    PopulationPairs,
    interacting_particles,
    letters,
    linear_map,
    make_population_problem,
    patient_screen,
    redraw_targets,
)
from .rgnp import (
    BurgersProblem,
    PoissonProblem,
    burgers_test_set,
    invariance_points,
    poisson_sensor_data,
    poisson_test_set,
)

__all__ = [
    "ConjugateGaussianField",
    "GPMEProblem",
    "linear_gaussian_problem",
    "PDEProblem",
    "get_gp_pde_problem",
    "gp_pde_problem_ids",
    "brain_phantom",
    "mni_atlas",
    "atlas_unavailable_reason",
    "synthetic_patient",
    "truth_theta",
    "segment",
    "GLIOMA_PRIOR",
    "BurgersProblem",
    "PoissonProblem",
    "burgers_test_set",
    "invariance_points",
    "poisson_sensor_data",
    "poisson_test_set",
    "solve_cavity",
    "cavity_test_set",
    "PopulationPairs",
    "letters",
    "linear_map",
    "interacting_particles",
    "patient_screen",
    "make_population_problem",
    "redraw_targets",
    "Diffusion",
    "PorousMedium",
    "Stefan",
    "GPMEData",
    "get_gpme_problem",
    "make_dataset",
    "eval_grid",
    "mass_from_fluxes",
    "stefan_front",
]
