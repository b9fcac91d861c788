r"""Generalized porous medium equation (GPME) benchmark problems with exact solutions.

The three one-parameter families of the ProbConserv benchmark (Hansen et al., ICML 2023,
§4 and appendix; reference code ``amazon-science/probconserv``, ``deep_pdes/datasets/pme.py``):

.. math::  u_t - \partial_x\big(k(u)\,u_x\big) = 0, \qquad F(u) = -k(u)\,u_x .

============  =========================  ================  =================================
problem       :math:`k(u)`               domain            exact solution
============  =========================  ================  =================================
diffusion     :math:`k` (constant)       x in [0, 2pi]     :math:`\sin(x) e^{-k t}` (periodic)
pme           :math:`u^m`                x, t in [0, 1]    :math:`(m\,\mathrm{ReLU}(t-x))^{1/m}`
stefan        :math:`1\{u \ge u^*\}`     x in [0,1], t in  :math:`1 - c_1\operatorname{erf}(x/2\sqrt t)`
                                         [0, 0.1]          for :math:`x \le \alpha\sqrt t`, else 0
============  =========================  ================  =================================

The conserved quantity is :math:`U(t) = \int_\Omega u(t,x)\,dx = b(t)` with
:math:`b(t) = U(0) + \int_0^t (F(u)|_{x_0} - F(u)|_{x_1})\,ds` (inflow minus outflow);
:meth:`GPMEProblem.mass` gives it in closed form and :meth:`GPMEProblem.boundary_flux` gives
the net inflow :math:`b'(t)`, so ``b`` can be rebuilt from boundary data
(:func:`mass_from_fluxes`).

Data design (paper): contexts are 10 times (one stratified uniform draw per tenth of the time
range) x 10 sensor positions (sorted uniform, the same for every time) = 100 points; training
targets are 10 x 10 sorted uniform points; evaluation on a 201 x 201 uniform grid.

Modules: ``base`` (:class:`GPMEProblem`), one per family (``diffusion``, ``porous_medium``,
``stefan``), ``registry`` (the families by id), ``conservation`` (the mass rebuilt from the
boundary fluxes) and ``datasets`` (seeded data sets and the evaluation grid), with shared
helpers in ``_common``; every public name is re-exported here.
"""  # noqa: E501

from .base import GPMEProblem
from .conservation import mass_from_fluxes
from .datasets import GPMEData, eval_grid, make_dataset, sample_parameters
from .diffusion import Diffusion
from .porous_medium import PorousMedium
from .registry import PROBLEM_CLASSES, get_problem
from .stefan import Stefan, stefan_constants, stefan_front

__all__ = [
    "GPMEProblem",
    "Diffusion",
    "PorousMedium",
    "Stefan",
    "GPMEData",
    "PROBLEM_CLASSES",
    "get_problem",
    "make_dataset",
    "sample_parameters",
    "eval_grid",
    "mass_from_fluxes",
    "stefan_constants",
    "stefan_front",
]
