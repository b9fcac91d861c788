r"""Fisher-Kolmogorov tumour growth on tissue maps: face diffusivities, forward solver, residual.

.. math:: \partial_t c = \nabla\cdot(D(x)\nabla c) + \rho\, c(1-c), \qquad t\in[0, T],

with the GliODIL face-based diffusivity (Balcerak et al.; the ``D_minus_z`` bug of their
``get_D`` is not reproduced: every axis uses its own face maps): for a face between cells
:math:`i, i+1` along axis :math:`k`,

.. math:: D_{i+1/2} = D_w\big(\overline{W}_{i+1/2} + \overline{G}_{i+1/2}/r\big),\quad
          \overline{W}_{i+1/2} = \tfrac12(W_i + W_{i+1}),\ r = D_w/D_g,

set to 0 when either cell has :math:`W + G < 0.1` (CSF, background). Zero faces carry no flux:
the no-flux condition into CSF and through the skull, and the discrete operator conserves mass
exactly apart from the reaction term. Tensors: tissue maps ``[*grid]`` (``d`` = 1..3 axes),
states ``[*grid]`` (the forward solvers take one state, no batch dimension).
"""

# The implementation lives in three private modules: _fk_geometry (face maps, initial
# condition), _fk_stability (step bounds and their checks), _fk_solver (forward solve, tangent,
# residual). Every name is re-exported here, where the package and its users import it from.
from ._fk_geometry import initial_condition, tissue_faces
from ._fk_solver import (
    _fk_forward,  # noqa: F401  (private, imported by bayesphys.odil.glioma)
    fk_forward,
    fk_forward_tangent,
    fk_residual,
    logistic_step,
)
from ._fk_stability import SCHEMES, max_step, max_steps, stable_steps

__all__ = [
    "tissue_faces",
    "initial_condition",
    "fk_forward",
    "fk_residual",
    "stable_steps",
    "max_step",
    "max_steps",
    "fk_forward_tangent",
    "logistic_step",
    "SCHEMES",
]
