r"""Viscous Burgers (B1) of Random Grid Neural Processes (Vadeboncoeur et al., ICML 2023).

On :math:`(x, t) \in [0, 1]^2`:

.. math:: u_t + z_1 u u_x - z_0 u_{xx} = 0, \quad u(0, t) = u(1, t) = 0,
          \quad u(x, 0) = \sin(2 w \pi x)\sin(\pi x),

priors :math:`z_0 \sim U[0.01, 0.1]`, :math:`z_1 \sim U[0.5, 1]`, :math:`w \sim U[0.5, 2]`
(:class:`BurgersProblem`, with the exact boundary transform
:math:`u = \sin(2 w\pi x)\sin(\pi x) + t \sin(\pi x)\,\tilde u`); the residual
(:func:`burgers_residual`); the reference solver (:func:`solve_burgers`: second-order finite
differences on 501 nodes, Crank-Nicolson, Newton at every step) and the seeded test cases
(:func:`burgers_test_set`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..._checks import check_int, check_real
from ..._stack import user_stacklevel
from ..._warning_types import BayesphysRuntimeWarning
from ._common import _as_array, _case_params, _check_problem, _seed, _thomas
from .prior import _prior_draw

__all__ = ["burgers_residual", "solve_burgers", "BurgersProblem", "burgers_test_set"]


def burgers_residual(u: Tensor, ut: Tensor, ux: Tensor, uxx: Tensor, z: Tensor) -> Tensor:
    r""":math:`u_t + z_1 u u_x - z_0 u_{xx}`; fields ``[B, N]``, ``z`` ``[B, 2]`` -> ``[B, N]``."""
    return ut + z[:, 1:2] * u * ux - z[:, 0:1] * uxx


def solve_burgers(
    z: np.ndarray,
    w: np.ndarray,
    n_nodes: int = 501,
    n_steps: int = 100,
    t_end: float = 1.0,
    tol: float = 1e-11,
    u0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Reference Burgers solutions: ``z`` ``[B, 2]`` (viscosity, advection), ``w`` ``[B]``.

    Central differences in space, Crank-Nicolson in time, Newton per step (second order in
    both; the first steps are less accurate next to the walls, where the initial condition's
    :math:`\nu u_{xx} \ne 0` meets :math:`u = 0` and Crank-Nicolson does not damp the fast
    modes: at the prior corner viscosity 0.1, advection 1, w = 2, the largest error against
    3200 steps is 5.2e-3 at the default 100 steps, at t = 0.01 next to a wall, 6e-4 from
    t = 0.1 on and 3.6e-5 at t = 1; the test sets' noise sd is 0.05). ``u0``
    (``[B, n_nodes]``, zero at both ends) replaces the initial condition (used for checks).
    Returns ``(x [n_nodes], t [n_steps + 1], u [B, n_steps + 1, n_nodes])``.

    Checked: finite ``z`` with viscosity ``z_0 > 0``, one ``w`` per case; ``n_nodes >= 3``,
    ``n_steps >= 1`` (ints), ``t_end > 0``, ``tol >= 0``; ``u0`` ``[n_nodes]`` or
    ``[B, n_nodes]``, finite and zero at both ends. A time step whose Newton iteration has not
    converged warns (``RuntimeWarning``).
    """
    z, w = _case_params(z, w, dim_z=2)
    if bool((z[:, 0] <= 0).any()):
        raise ValueError(
            f"z: expected a positive viscosity z[:, 0] > 0, received min {z[:, 0].min():.3g}"
        )
    n_nodes = check_int("n_nodes", n_nodes, minimum=3)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    t_end = check_real("t_end", t_end, minimum=0.0, strict=True)
    tol = check_real("tol", tol, minimum=0.0)
    if u0 is not None:
        u0 = _as_array("u0", u0, ndim=(1, 2))
        if u0.shape[-1] != n_nodes or (u0.ndim == 2 and u0.shape[0] not in (1, z.shape[0])):
            raise ValueError(
                f"u0: expected shape [{n_nodes}] or [{z.shape[0]}, {n_nodes}], received {u0.shape}"
            )
        ends = np.abs(u0[..., [0, -1]]).max()
        if ends > 1e-8 * max(1.0, float(np.abs(u0).max())):
            raise ValueError(
                f"u0: expected zero at both ends (u(0, t) = u(1, t) = 0), received |u0| = "
                f"{ends:.3g} at an end"
            )
    x = np.linspace(0.0, 1.0, n_nodes)
    t = np.linspace(0.0, t_end, n_steps + 1)
    h, dt = x[1] - x[0], t[1] - t[0]
    nu, adv = z[:, 0:1], z[:, 1:2]
    if u0 is None:
        u = np.sin(2 * w[:, None] * np.pi * x) * np.sin(np.pi * x)
    else:
        u = np.array(np.broadcast_to(u0, (z.shape[0], n_nodes)), dtype=np.float64)
    u[:, 0] = u[:, -1] = 0.0
    out = [u.copy()]

    def f(v):  # spatial operator on interior nodes, v [B, n]
        vx = (v[:, 2:] - v[:, :-2]) / (2 * h)
        vxx = (v[:, 2:] - 2 * v[:, 1:-1] + v[:, :-2]) / h**2
        return -adv * v[:, 1:-1] * vx + nu * vxx

    unconverged = 0
    for _ in range(n_steps):
        fo = f(u)
        v = u.copy()
        for _ in range(30):
            g = v[:, 1:-1] - u[:, 1:-1] - 0.5 * dt * (f(v) + fo)
            vi = v[:, 1:-1]
            vx = (v[:, 2:] - v[:, :-2]) / (2 * h)
            diag = 1 - 0.5 * dt * (-adv * vx - 2 * nu / h**2)
            sup = -0.5 * dt * (-adv * vi / (2 * h) + nu / h**2)
            sub = -0.5 * dt * (adv * vi / (2 * h) + nu / h**2)
            delta = _thomas(sub, diag, sup, -g)
            v[:, 1:-1] += delta
            if np.max(np.abs(delta)) < tol:
                break
        else:
            unconverged += 1
        u = v
        out.append(u.copy())
    if unconverged:
        warnings.warn(
            f"solve_burgers: Newton did not converge in 30 iterations (tol {tol:.3g}) in "
            f"{unconverged} of {n_steps} time steps",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    return x, t, np.stack(out, 1)


@dataclass(frozen=True)
class BurgersProblem:
    """Viscous Burgers on ``(x, t) in [0, 1]^2``; ``z = (nu, a)``, ``w`` (initial frequency).

    Customisable: the prior boxes (viscosity ``z_low[0] > 0``) and ``sigma_y``; the name,
    domain and sizes fixed by the equation are checked (``ValueError``).
    """

    name: str = "burgers"
    dim_x: int = 2
    dim_z: int = 2
    dim_w: int = 1
    lower: tuple[float, ...] = (0.0, 0.0)
    upper: tuple[float, ...] = (1.0, 1.0)
    z_low: tuple[float, ...] = (0.01, 0.5)
    z_high: tuple[float, ...] = (0.1, 1.0)
    w_low: tuple[float, ...] = (0.5,)
    w_high: tuple[float, ...] = (2.0,)
    sigma_y: float = 0.05
    coords: tuple[str, ...] = field(default=("x", "t"))

    def __post_init__(self) -> None:
        _check_problem(
            self,
            dict(
                name="burgers",
                dim_x=2,
                dim_z=2,
                dim_w=1,
                lower=(0.0, 0.0),
                upper=(1.0, 1.0),
                coords=("x", "t"),
                derivatives=("x", "xx", "t"),
            ),
        )
        if self.z_low[0] <= 0:
            raise ValueError(
                f"z_low: expected a positive viscosity bound z_low[0] > 0, received {self.z_low[0]}"
            )

    def boundary(self, x: Tensor, w: Tensor) -> dict[str, Tensor]:
        r"""Lift :math:`B`, factor :math:`D` and their derivatives of :math:`u = B + D\tilde u`.

        ``x [n, N, 2]`` (``n`` instances, ``N`` points :math:`(x, t)`), ``w [n, 1]`` the
        initial frequency of each instance (:math:`B = \sin(2 w\pi x)\sin(\pi x)`; it
        broadcasts against the points, so it must be ``[n, 1]`` or ``[1, 1]``, not ``[n]``) ->
        ``{"B", "Bx", "Bxx", "D", "Dx", "Dxx", "Dt"}``, each ``[n, N]``.
        """
        s, t = x[..., 0], x[..., 1]
        pi = math.pi
        a = 2 * w * pi  # [B, 1]
        sa, ca, sp, cp = torch.sin(a * s), torch.cos(a * s), torch.sin(pi * s), torch.cos(pi * s)
        b = sa * sp
        bx = a * ca * sp + pi * sa * cp
        bxx = -(a**2) * b + 2 * a * pi * ca * cp - pi**2 * b
        return {
            "B": b,
            "Bx": bx,
            "Bxx": bxx,
            "D": t * sp,
            "Dx": t * pi * cp,
            "Dxx": -t * pi**2 * sp,
            "Dt": sp,
        }

    def residual(self, x: Tensor, derivs: dict[str, Tensor], z: Tensor, w: Tensor) -> Tensor:
        r"""Burgers residual :math:`u_t + z_1 u u_x - z_0 u_{xx}` of :math:`u = B + D\tilde u`
        from :math:`\tilde u` and its derivatives (``derivs`` keys ``v, x, xx, t``, each
        ``[n, N]``) at ``x [n, N, 2]``, for ``z [n, 2]``, ``w [n, 1]`` -> ``[n, N]``."""
        g = self.boundary(x, w)
        v, vx, vxx, vt = derivs["v"], derivs["x"], derivs["xx"], derivs["t"]
        u = g["B"] + g["D"] * v
        ux = g["Bx"] + g["Dx"] * v + g["D"] * vx
        uxx = g["Bxx"] + g["Dxx"] * v + 2 * g["Dx"] * vx + g["D"] * vxx
        ut = g["Dt"] * v + g["D"] * vt
        return burgers_residual(u, ut, ux, uxx, z)

    derivatives: tuple[str, ...] = ("x", "xx", "t")

    def transform(self, x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        r"""Lift :math:`B` and factor :math:`D` of :math:`u = B + D\tilde u`, each ``[n, N]``, at
        ``x [n, N, 2]`` (``n`` instances, ``N`` points) for the initial frequencies
        ``w [n, 1]`` (as in :meth:`boundary`)."""
        g = self.boundary(x, w)
        return g["B"], g["D"]


def burgers_test_set(
    n: int = 200, *, seed: int | None = 0, n_nodes: int = 501, n_steps: int = 100
) -> dict[str, np.ndarray]:
    """Seeded Burgers cases: ``{"x" [nx], "t" [nt], "z" [n, 2], "w" [n, 1], "u" [n, nt, nx]}``.

    ``n >= 1``, ``n_nodes >= 3``, ``n_steps >= 1`` (ints); ``seed`` an int ``>= 0`` (``None``: drawn
    from torch's global stream)."""
    n = check_int("n", n, minimum=1)
    n_nodes = check_int("n_nodes", n_nodes, minimum=3)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    z, w = _prior_draw(BurgersProblem(), n, np.random.default_rng(_seed(seed)))
    x, t, u = solve_burgers(z, w[:, 0], n_nodes=n_nodes, n_steps=n_steps)
    return {"x": x, "t": t, "z": z, "w": w, "u": u}
