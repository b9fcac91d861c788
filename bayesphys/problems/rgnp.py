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
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_optional_seed, check_real, seed_or_draw, stream_seed
from .._device import check_finite, resolve_dtype
from .._stack import user_stacklevel

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

POISSON_SENSOR_INDEX = np.arange(20, 180, 3)  # 54 nodes of the 201-node mesh, x in [-0.8, 0.79]


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------
def _seed(seed: Any) -> int:
    """``seed`` checked (an int ``>= 0``), or for ``None`` one drawn from torch's global stream:
    the package's ``seed=None`` (it was fresh OS entropy here, which ``torch.manual_seed``
    cannot repeat)."""
    seed = check_optional_seed("seed", seed, minimum=0)
    return seed_or_draw("seed", seed)


def _as_array(name: str, value: Any, *, ndim: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a finite float64 array (``ndim``: the allowed numbers of dimensions)."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if np.iscomplexobj(value):
        raise TypeError(f"{name}: expected real values, received complex")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: expected an array of real numbers, received {type(value).__name__}"
        ) from None
    if ndim is not None and arr.ndim not in ndim:
        raise ValueError(
            f"{name}: expected {' or '.join(map(str, ndim))} dimensions, received shape {arr.shape}"
        )
    check_finite(name, arr)
    return arr


def _case_params(z: Any, w: Any, dim_z: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Solver inputs: ``z`` ``[dim_z]`` or ``[B, dim_z]``, ``w`` with ``B`` entries (``[B]``,
    ``[B, 1]``; a scalar for ``B = 1``), both finite."""
    z = np.atleast_2d(_as_array("z", z, ndim=(1, 2)))
    want = "dim_z" if dim_z is None else dim_z
    if z.shape[0] < 1 or z.shape[1] < 1 or (dim_z is not None and z.shape[1] != dim_z):
        raise ValueError(f"z: expected shape [{want}] or [B, {want}] (B >= 1), received {z.shape}")
    w = _as_array("w", w).reshape(-1)
    if w.shape[0] != z.shape[0]:
        raise ValueError(f"z/w: expected the same batch size, received {z.shape} and {w.shape}")
    return z, w


# ---------------------------------------------------------------------------------------------
# Chebyshev basis and residuals (torch, work on any leading shape)
# ---------------------------------------------------------------------------------------------
def chebyshev(x: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Chebyshev polynomials ``T_0..T_{n-1}`` and derivatives at ``x``: two ``[*x.shape, n]``.

    Three-term recurrence :math:`T_{k+1} = 2xT_k - T_{k-1}`,
    :math:`T'_{k+1} = 2T_k + 2xT'_k - T'_{k-1}` (no ``arccos``, so smooth at :math:`\\pm 1`).
    """
    n = check_int("n", n, minimum=1)
    t = [torch.ones_like(x), x]
    d = [torch.zeros_like(x), torch.ones_like(x)]
    for _ in range(2, n):
        t.append(2 * x * t[-1] - t[-2])
        d.append(2 * t[-2] + 2 * x * d[-1] - d[-2])
    return torch.stack(t[:n], -1), torch.stack(d[:n], -1)


def poisson_residual(x: Tensor, u: Tensor, ux: Tensor, uxx: Tensor, z: Tensor, w: Tensor) -> Tensor:
    r"""Strong-form residual :math:`(\kappa u_x)_x + w` at points ``x``.

    Shapes: ``x, u, ux, uxx`` ``[B, N]``; ``z`` ``[B, 5]``; ``w`` ``[B, 1]`` -> ``[B, N]``.
    """
    tk, dk = chebyshev(x, z.shape[-1])
    c = (tk * z.unsqueeze(-2)).sum(-1)
    cx = (dk * z.unsqueeze(-2)).sum(-1)
    a = u * c
    kappa = torch.nn.functional.softplus(a) + 0.1
    kx = torch.sigmoid(a) * (ux * c + u * cx)
    return kx * ux + kappa * uxx + w


def burgers_residual(u: Tensor, ut: Tensor, ux: Tensor, uxx: Tensor, z: Tensor) -> Tensor:
    r""":math:`u_t + z_1 u u_x - z_0 u_{xx}`; fields ``[B, N]``, ``z`` ``[B, 2]`` -> ``[B, N]``."""
    return ut + z[:, 1:2] * u * ux - z[:, 0:1] * uxx


# ---------------------------------------------------------------------------------------------
# Reference solvers (numpy, batched over cases)
# ---------------------------------------------------------------------------------------------
def _thomas(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Batched tridiagonal solve: sub ``a``, diag ``b``, super ``c``, rhs ``d``, all ``[B, n]``."""
    n = b.shape[1]
    cp = np.empty_like(b)
    dp = np.empty_like(b)
    cp[:, 0] = c[:, 0] / b[:, 0]
    dp[:, 0] = d[:, 0] / b[:, 0]
    for i in range(1, n):
        m = b[:, i] - a[:, i] * cp[:, i - 1]
        cp[:, i] = c[:, i] / m
        dp[:, i] = (d[:, i] - a[:, i] * dp[:, i - 1]) / m
    out = np.empty_like(b)
    out[:, -1] = dp[:, -1]
    for i in range(n - 2, -1, -1):
        out[:, i] = dp[:, i] - cp[:, i] * out[:, i + 1]
    return out


def _np_cheb(x: np.ndarray, n: int) -> np.ndarray:
    t = [np.ones_like(x), x]
    for _ in range(2, n):
        t.append(2 * x * t[-1] - t[-2])
    return np.stack(t[:n], -1)


def solve_poisson(
    z: np.ndarray, w: np.ndarray, n_nodes: int = 201, tol: float = 1e-12, max_iter: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    r"""Reference nonlinear Poisson solutions on ``n_nodes`` equispaced nodes of ``[-1, 1]``.

    Conservative scheme :math:`-[\kappa_{i+1/2}(u_{i+1}-u_i) - \kappa_{i-1/2}(u_i-u_{i-1})]/h^2
    = w` with :math:`\kappa_{i\pm1/2} = \kappa(\bar u, x_{i\pm1/2})` at the face, Newton.
    ``z`` ``[B, 5]``, ``w`` ``[B]`` -> ``(x [n_nodes], u [B, n_nodes])``.

    Checked: finite ``z``, ``w`` with one ``w`` per case; ``n_nodes >= 3``, ``max_iter >= 1``
    (ints), ``tol >= 0``. A solve that has not converged after ``max_iter`` Newton steps warns
    (``RuntimeWarning``).
    """
    z, w = _case_params(z, w)
    n_nodes = check_int("n_nodes", n_nodes, minimum=3)
    tol = check_real("tol", tol, minimum=0.0)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    x = np.linspace(-1.0, 1.0, n_nodes)
    h = x[1] - x[0]
    xf = 0.5 * (x[1:] + x[:-1])  # faces
    cf = _np_cheb(xf, z.shape[1]) @ z.T  # [nf, B]
    cf = cf.T  # [B, nf]
    u = 0.5 * w[:, None] * (1 - x**2) / (math.log(2) + 0.1)
    for _ in range(max_iter):
        ub = 0.5 * (u[:, 1:] + u[:, :-1])
        a = ub * cf
        kap = np.logaddexp(0.0, a) + 0.1
        dk = 1 / (1 + np.exp(-a)) * cf * 0.5  # d kappa / d u_i (= d / d u_{i+1}) at a face
        du = u[:, 1:] - u[:, :-1]
        flux = kap * du  # [B, nf]
        res = -(flux[:, 1:] - flux[:, :-1]) / h**2 - w[:, None]  # interior [B, n-2]
        # d flux_f / d u_left = dk*du - kap ; d flux_f / d u_right = dk*du + kap
        dl = dk * du - kap
        dr = dk * du + kap
        # res_i = -(flux_{i} - flux_{i-1})/h^2 with faces i (right) and i-1 (left) of node i
        diag = -(dl[:, 1:] - dr[:, :-1]) / h**2
        sup = -dr[:, 1:] / h**2
        sub = dl[:, :-1] / h**2
        delta = _thomas(sub, diag, sup, -res)
        u[:, 1:-1] += delta
        if np.max(np.abs(delta)) < tol:
            break
    else:
        warnings.warn(
            f"solve_poisson: Newton did not converge in {max_iter} iterations (last update "
            f"{np.max(np.abs(delta)):.3g} > tol {tol:.3g})",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    return x, u


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

    Central differences in space, Crank-Nicolson in time, Newton per step. ``u0``
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
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    return x, t, np.stack(out, 1)


# ---------------------------------------------------------------------------------------------
# Problem descriptions
# ---------------------------------------------------------------------------------------------
def _real_tuple(name: str, value: Any, n: int) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name}: expected {n} real numbers, received {value!r}")
    try:
        vals = tuple(value)
    except TypeError:
        raise TypeError(
            f"{name}: expected a sequence of {n} real numbers, received {type(value).__name__}"
        ) from None
    if len(vals) != n:
        raise ValueError(f"{name}: expected {n} values, received {len(vals)} ({value!r})")
    return tuple(check_real(name, v) for v in vals)


def _check_problem(p: Any, fixed: dict[str, Any]) -> None:
    """Validate and normalise (tuples of floats) the fields of a frozen problem dataclass.

    ``fixed``: the fields set by the equation and its exact boundary transform (name, domain,
    sizes, derivative streams); another value would describe a problem this class does not
    solve, so it is refused. Prior boxes need ``low <= high`` with the sizes ``dim_z``/``dim_w``,
    ``sigma_y > 0``, finite values throughout.
    """
    cls = type(p).__name__
    setf = object.__setattr__  # frozen dataclass
    for name in ("dim_x", "dim_z", "dim_w"):
        setf(p, name, check_int(name, getattr(p, name), minimum=1))
    for name in ("lower", "upper"):
        setf(p, name, _real_tuple(name, getattr(p, name), len(fixed[name])))
    if isinstance(p.coords, (str, bytes)) or not all(isinstance(c, str) for c in p.coords):
        raise TypeError(f"coords: expected a tuple of names, received {p.coords!r}")
    setf(p, "coords", tuple(p.coords))
    if isinstance(p.derivatives, (str, bytes)):
        raise TypeError(
            f"derivatives: expected a tuple of stream names, received {p.derivatives!r}"
        )
    setf(p, "derivatives", tuple(p.derivatives))
    for name, want in fixed.items():
        got = getattr(p, name)
        if got != want:
            raise ValueError(
                f"{name}: {cls} has {name} = {want!r} (fixed by its equation and boundary "
                f"transform), received {got!r}"
            )
    for box, dim in (("z", p.dim_z), ("w", p.dim_w)):
        lo = _real_tuple(f"{box}_low", getattr(p, f"{box}_low"), dim)
        hi = _real_tuple(f"{box}_high", getattr(p, f"{box}_high"), dim)
        if any(a > b for a, b in zip(lo, hi)):
            raise ValueError(
                f"{box}_low/{box}_high: expected {box}_low <= {box}_high in every entry, "
                f"received {lo}, {hi}"
            )
        setf(p, f"{box}_low", lo)
        setf(p, f"{box}_high", hi)
    setf(p, "sigma_y", check_real("sigma_y", p.sigma_y, minimum=0.0, strict=True))


@dataclass(frozen=True)
class PoissonProblem:
    """1-D nonlinear Poisson: domain ``[-1, 1]``, ``z`` (5 Chebyshev weights), ``w`` (source).

    Customisable: the prior boxes ``z_low/z_high`` (``dim_z`` entries each: the number of
    Chebyshev weights), ``w_low/w_high`` and ``sigma_y``; the name, domain and sizes fixed by
    the equation are checked (``ValueError``), as are non-finite or inverted bounds.
    """

    name: str = "poisson"
    dim_x: int = 1
    dim_z: int = 5
    dim_w: int = 1
    lower: tuple[float, ...] = (-1.0,)
    upper: tuple[float, ...] = (1.0,)
    z_low: tuple[float, ...] = (-1.0,) * 5
    z_high: tuple[float, ...] = (1.0,) * 5
    w_low: tuple[float, ...] = (1.0,)
    w_high: tuple[float, ...] = (2.0,)
    sigma_y: float = 0.05
    coords: tuple[str, ...] = field(default=("x",))

    def __post_init__(self) -> None:
        _check_problem(
            self,
            dict(
                name="poisson",
                dim_x=1,
                dim_w=1,
                lower=(-1.0,),
                upper=(1.0,),
                coords=("x",),
                derivatives=("x", "xx"),
            ),
        )

    def boundary(self, x: Tensor, w: Tensor) -> tuple[Tensor, ...]:
        r"""Lift :math:`B`, factor :math:`D` and its derivatives of :math:`u = B + D\tilde u`.

        ``x [n, N, 1]`` (``n`` instances, ``N`` points) -> ``(B, D, D_x, D_xx)``, each
        ``[n, N]`` (:math:`B = 0`, :math:`D = \cos(\pi x/2)`). ``w [n, 1]``: the sources
        :math:`w`, unused (the Poisson transform does not depend on them; taken for the
        interface shared with :class:`BurgersProblem`).
        """
        s = x[..., 0]
        k = math.pi / 2
        d = torch.cos(k * s)
        return torch.zeros_like(s), d, -k * torch.sin(k * s), -(k**2) * d

    def residual(self, x: Tensor, derivs: dict[str, Tensor], z: Tensor, w: Tensor) -> Tensor:
        r"""Residual from :math:`\tilde u` and its derivatives (``derivs`` keys ``v, x, xx``)."""
        _, d, dx, dxx = self.boundary(x, w)
        v, vx, vxx = derivs["v"], derivs["x"], derivs["xx"]
        u = d * v
        ux = dx * v + d * vx
        uxx = dxx * v + 2 * dx * vx + d * vxx
        return poisson_residual(x[..., 0], u, ux, uxx, z, w)

    derivatives: tuple[str, ...] = ("x", "xx")

    def transform(self, x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        r"""Lift :math:`B` and factor :math:`D` of :math:`u = B + D\tilde u`, each ``[n, N]``, at
        ``x [n, N, 1]`` (``n`` instances, ``N`` points); ``w [n, 1]`` unused (see
        :meth:`boundary`)."""
        b, d, _, _ = self.boundary(x, w)
        return b, d


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
        """Burgers residual from :math:`\\tilde u` and derivatives (keys ``v, x, xx, t``)."""
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


def sample_prior(
    problem,
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """``n`` draws ``(z [n, dim_z], w [n, dim_w])`` from the uniform prior boxes (torch).

    ``problem``: a :class:`PoissonProblem` / :class:`BurgersProblem` (or any object with the
    prior boxes ``z_low, z_high, w_low, w_high``); ``n >= 0`` (int); ``dtype`` floating."""
    missing = [a for a in ("z_low", "z_high", "w_low", "w_high") if not hasattr(problem, a)]
    if missing:
        raise TypeError(
            f"problem: expected a problem with prior boxes (e.g. PoissonProblem()), received "
            f"{type(problem).__name__} {problem!r} without {missing}"
        )
    n = check_int("n", n, minimum=0)
    dtype = resolve_dtype(dtype)

    def box(lo, hi):
        lo_t = torch.as_tensor(lo, dtype=dtype, device=device)
        hi_t = torch.as_tensor(hi, dtype=dtype, device=device)
        u = torch.rand((n, len(lo)), generator=generator, dtype=dtype, device=device)
        return lo_t + (hi_t - lo_t) * u

    return box(problem.z_low, problem.z_high), box(problem.w_low, problem.w_high)


def _prior_draw(problem, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    z = rng.uniform(problem.z_low, problem.z_high, size=(n, problem.dim_z))
    w = rng.uniform(problem.w_low, problem.w_high, size=(n, problem.dim_w))
    return z, w


def poisson_test_set(n: int = 1000, *, seed: int = 0, n_nodes: int = 201) -> dict[str, np.ndarray]:
    """Seeded Poisson test cases: ``{"x" [n_nodes], "z" [n, 5], "w" [n, 1], "u" [n, n_nodes]}``.

    ``n >= 1``, ``n_nodes >= 3`` (ints); ``seed`` an int ``>= 0`` (``None``: drawn from torch's global stream).

    The parameters ``(z, w)`` are the first draws of ``numpy.random.default_rng(seed)``, a
    stream shared with :func:`poisson_sensor_data`: ``poisson_sensor_data(n, seed=s)`` holds
    the functions of ``poisson_test_set(n, seed=s)`` (the same ``z, w, u``; for different
    ``n`` the first ``min(n, n')`` rows of ``z`` still coincide, ``w`` does not), and its
    sensor noise is drawn from ``default_rng(s + 10_000)``, the bit stream of
    ``poisson_test_set(seed=s + 10_000)``'s parameters. So a test set is independent of the
    sensor sets only if its seed ``t`` differs from every sensor seed ``s`` and from every
    ``s + 10_000`` (the benchmarks: test seed 0, validation seed 11, sensor seed 1).
    """
    n = check_int("n", n, minimum=1)
    n_nodes = check_int("n_nodes", n_nodes, minimum=3)
    z, w = _prior_draw(PoissonProblem(), n, np.random.default_rng(_seed(seed)))
    x, u = solve_poisson(z, w[:, 0], n_nodes=n_nodes)
    return {"x": x, "z": z, "w": w, "u": u}


def poisson_sensor_data(
    n: int = 1000, *, seed: int = 1, sigma_y: float = 0.05
) -> dict[str, np.ndarray]:
    r"""Noisy labelled sensor sets (P2); ``y`` ``[n, 54]`` at ``x_obs`` ``[54]``.

    :math:`y_{ij} = u_i(x_j) + \sigma_y \varepsilon_{ij}`, :math:`\varepsilon_{ij} \sim
    \mathcal N(0, 1)`. ``sigma_y >= 0`` (finite); ``seed`` an int ``>= 0`` (``None``: drawn from torch's global stream).

    Streams (kept as they are: they define the benchmark data): the functions ``z, w, u`` are
    exactly ``poisson_test_set(n, seed=seed)``'s (``default_rng(seed)``), and the noise
    :math:`\varepsilon` is ``default_rng(seed + 10_000).standard_normal((n, 54))``, the same
    generator (same bit stream) as the parameters of ``poisson_test_set(seed=seed + 10_000)``
    and of ``poisson_sensor_data(seed=seed + 10_000)``. A sensor set is therefore independent of
    a test set made with seed ``t`` only if ``seed != t`` and ``seed + 10_000 != t``, and of
    another sensor set with seed ``s'`` only if ``s'`` is neither ``seed`` nor
    ``seed +- 10_000``: use seeds that differ from each other by other than 0 and 10_000 (the
    benchmarks: sensor seed 1, test seed 0, calibration sets ``60_000 + k``).
    """
    seed = _seed(seed)
    sigma_y = check_real("sigma_y", sigma_y, minimum=0.0)
    ts = poisson_test_set(n, seed=seed)
    rng = np.random.default_rng(seed + 10_000)
    idx = POISSON_SENSOR_INDEX
    y = ts["u"][:, idx] + sigma_y * rng.standard_normal((n, idx.size))
    return {
        "x_obs": ts["x"][idx],
        "y": y,
        "z": ts["z"],
        "w": ts["w"],
        "u_obs": ts["u"][:, idx],
        "sigma_y": np.float64(sigma_y),
    }


def burgers_test_set(
    n: int = 200, *, seed: int = 0, n_nodes: int = 501, n_steps: int = 100
) -> dict[str, np.ndarray]:
    """Seeded Burgers cases: ``{"x" [nx], "t" [nt], "z" [n, 2], "w" [n, 1], "u" [n, nt, nx]}``.

    ``n >= 1``, ``n_nodes >= 3``, ``n_steps >= 1`` (ints); ``seed`` an int ``>= 0`` (``None``: drawn from torch's global stream)."""
    n = check_int("n", n, minimum=1)
    n_nodes = check_int("n_nodes", n_nodes, minimum=3)
    n_steps = check_int("n_steps", n_steps, minimum=1)
    z, w = _prior_draw(BurgersProblem(), n, np.random.default_rng(_seed(seed)))
    x, t, u = solve_burgers(z, w[:, 0], n_nodes=n_nodes, n_steps=n_steps)
    return {"x": x, "t": t, "z": z, "w": w, "u": u}


def invariance_points(n: int, layout: str, *, seed: int = 0) -> np.ndarray:
    """``n`` sorted interior points of ``(-1, 1)`` for the P3 grid-invariance study.

    ``uniform``: equispaced interior; ``random``: i.i.d. uniform; ``clustered``: two Gaussian
    clusters at :math:`\\pm 0.5` (sd 0.15), clipped to :math:`[-0.99, 0.99]`. ``seed`` (an int
    ``>= 0``, ``None``: drawn from torch's global stream) names a stream of its own, apart from the test sets'
    parameters under the same seed.
    """
    n = check_int("n", n, minimum=1)
    seed = _seed(seed)
    # its own stream: default_rng(seed) is also the test sets' parameter stream
    rng = np.random.default_rng(stream_seed(seed, "rgnp-layout"))
    if layout == "uniform":
        x = np.linspace(-1, 1, n + 2)[1:-1]
    elif layout == "random":
        x = rng.uniform(-0.99, 0.99, n)
    elif layout == "clustered":
        c = np.where(rng.uniform(size=n) < 0.5, -0.5, 0.5)
        x = np.clip(c + 0.15 * rng.standard_normal(n), -0.99, 0.99)
    else:
        raise ValueError(
            f"layout: expected 'uniform', 'random' or 'clustered', received {layout!r}"
        )
    return np.sort(x)
