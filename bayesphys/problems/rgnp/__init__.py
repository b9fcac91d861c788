r"""Benchmark problems of Random Grid Neural Processes (Vadeboncoeur et al., ICML 2023).

Our own reference solvers (no FEniCS), seeded test sets, no downloads.

**Nonlinear Poisson (P1/P2/P3)** on :math:`x \in [-1, 1]`:

.. math:: -\frac{d}{dx}\Big(\kappa(u, x)\,\frac{du}{dx}\Big) = w, \qquad u(\pm 1) = 0,
          \qquad \kappa(u, x) = \operatorname{softplus}\Big(u \sum_{i=0}^{4} z_i T_i(x)\Big) + 0.1,

with Chebyshev polynomials :math:`T_i` (three-term recurrence, smooth at :math:`\pm 1`),
priors :math:`z \sim U[-1, 1]^5`, :math:`w \sim U[1, 2]`. Strong-form residual
:math:`R = \kappa_x^{tot} u_x + \kappa u_{xx} + w` with
:math:`\kappa_x^{tot} = \sigma(a)(u_x c + u c_x)`, :math:`a = u c`, :math:`c = \sum z_i T_i`.
Reference: conservative finite differences (finite volumes) on 201 nodes, Newton with a batched
tridiagonal solve. Sensors (P2): every 3rd node from index 20 to 179 (54 points in
:math:`[-0.8, 0.79]`), noise :math:`\sigma_y = 0.05`.

**Burgers (B1)** on :math:`(x, t) \in [0, 1]^2`:

.. math:: u_t + z_1 u u_x - z_0 u_{xx} = 0, \quad u(0, t) = u(1, t) = 0,
          \quad u(x, 0) = \sin(2 w \pi x)\sin(\pi x),

priors :math:`z_0 \sim U[0.01, 0.1]`, :math:`z_1 \sim U[0.5, 1]`, :math:`w \sim U[0.5, 2]`
(the training prior, also used for the test set; see the anchor's note on the repo's mismatch).
Reference: second-order finite differences on 501 nodes, Crank-Nicolson (the trapezoidal rule
in time, on the nonlinear term too) with ``dt = 0.01`` for 100 steps, Newton at every step.

Boundary conditions are imposed exactly, :math:`u = B(x) + D(x)\,\tilde u`:
Poisson :math:`B = 0, D = \cos(\pi x / 2)`; Burgers :math:`B = \sin(2 w\pi x)\sin(\pi x)`,
:math:`D = t \sin(\pi x)`.

Modules: ``poisson`` and ``burgers`` (each equation's residual, problem description, reference
solver and test sets) and ``prior`` (draws from the prior boxes), with shared helpers in
``_common``; every public name is re-exported here.
"""

from .burgers import BurgersProblem, burgers_residual, burgers_test_set, solve_burgers
from .poisson import (
    POISSON_SENSOR_INDEX,
    PoissonProblem,
    chebyshev,
    invariance_points,
    poisson_residual,
    poisson_sensor_data,
    poisson_test_set,
    solve_poisson,
)
from .prior import sample_prior

__all__ = [
    "chebyshev",
    "poisson_residual",
    "burgers_residual",
    "solve_poisson",
    "solve_burgers",
    "PoissonProblem",
    "BurgersProblem",
    "poisson_test_set",
    "poisson_sensor_data",
    "burgers_test_set",
    "invariance_points",
    "sample_prior",
    "POISSON_SENSOR_INDEX",
]
