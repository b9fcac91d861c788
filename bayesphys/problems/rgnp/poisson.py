r"""Nonlinear Poisson (P1/P2/P3) of Random Grid Neural Processes (Vadeboncoeur et al., ICML 2023).

On :math:`x \in [-1, 1]`:

.. math:: -\frac{d}{dx}\Big(\kappa(u, x)\,\frac{du}{dx}\Big) = w, \qquad u(\pm 1) = 0,
          \qquad \kappa(u, x) = \operatorname{softplus}\Big(u \sum_{i=0}^{4} z_i T_i(x)\Big) + 0.1,

with Chebyshev polynomials :math:`T_i` (:func:`chebyshev`), priors :math:`z \sim U[-1, 1]^5`,
:math:`w \sim U[1, 2]` (:class:`PoissonProblem`, with the exact boundary transform
:math:`u = \cos(\pi x / 2)\,\tilde u`); the strong-form residual (:func:`poisson_residual`);
the reference solver (:func:`solve_poisson`: conservative finite differences on 201 nodes,
Newton); the seeded test cases (:func:`poisson_test_set`), the P2 sensor sets
(:func:`poisson_sensor_data`, sensors :data:`POISSON_SENSOR_INDEX`) and the P3
grid-invariance points (:func:`invariance_points`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..._checks import check_int, check_real, did_you_mean, stream_seed
from ..._stack import user_stacklevel
from ..._warning_types import BayesphysRuntimeWarning
from ._common import _case_params, _check_problem, _seed, _thomas
from .prior import _prior_draw

__all__ = [
    "chebyshev",
    "poisson_residual",
    "solve_poisson",
    "PoissonProblem",
    "poisson_test_set",
    "poisson_sensor_data",
    "invariance_points",
    "POISSON_SENSOR_INDEX",
]

POISSON_SENSOR_INDEX = np.arange(20, 180, 3)  # 54 nodes of the 201-node mesh, x in [-0.8, 0.79]
r"""Mesh indices of the 54 Poisson sensors (nodes 20, 23, ..., 179 of the 201-node mesh,
:math:`x \in [-0.8, 0.79]`)."""


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
    = w` with :math:`\kappa_{i\pm1/2} = \kappa(\bar u_{i\pm1/2}, x_{i\pm1/2})` at the face
    :math:`x_{i\pm1/2} = (x_i + x_{i\pm1})/2`, :math:`\bar u_{i\pm1/2} = (u_i + u_{i\pm1})/2`
    (the arithmetic mean of the two nodes, not a mean of nodal :math:`\kappa`), Newton.
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
        with np.errstate(over="ignore"):  # exp(-a) = inf for a < -709: the sigmoid is 0
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
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    return x, u


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
        r"""Residual :math:`(\kappa u_x)_x + w` of :math:`u = D\tilde u` from :math:`\tilde u`
        and its derivatives (``derivs`` keys ``v, x, xx``, each ``[n, N]``) at ``x [n, N, 1]``,
        for ``z [n, 5]`` (the Chebyshev coefficients inside
        :math:`\kappa = \operatorname{softplus}(u \sum_i z_i T_i(x)) + 0.1`), ``w [n, 1]`` ->
        ``[n, N]`` (:func:`poisson_residual`)."""
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


def poisson_test_set(
    n: int = 1000, *, seed: int | None = 0, n_nodes: int = 201
) -> dict[str, np.ndarray]:
    """Seeded Poisson test cases: ``{"x" [n_nodes], "z" [n, 5], "w" [n, 1], "u" [n, n_nodes]}``.

    ``n >= 1``, ``n_nodes >= 3`` (ints); ``seed`` an int ``>= 0`` (``None``: drawn from torch's
    global stream).

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
    n: int = 1000, *, seed: int | None = 1, sigma_y: float = 0.05
) -> dict[str, np.ndarray]:
    r"""Noisy labelled sensor sets (P2); ``y`` ``[n, 54]`` at ``x_obs`` ``[54]``.

    :math:`y_{ij} = u_i(x_j) + \sigma_y \varepsilon_{ij}`, :math:`\varepsilon_{ij} \sim
    \mathcal N(0, 1)`. ``sigma_y >= 0`` (finite); ``seed`` an int ``>= 0`` (``None``: drawn from
    torch's global stream).

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


def invariance_points(n: int, layout: str, *, seed: int | None = 0) -> np.ndarray:
    """``n`` sorted interior points of ``(-1, 1)`` for the P3 grid-invariance study, an
    array ``(n,)``.

    ``uniform``: equispaced interior (``linspace(-1, 1, n + 2)[1:-1]``); ``random``: i.i.d.
    uniform on :math:`[-0.99, 0.99]`; ``clustered``: two Gaussian
    clusters at :math:`\\pm 0.5` (sd 0.15), clipped to :math:`[-0.99, 0.99]`. ``seed`` (an int
    ``>= 0``, ``None``: drawn from torch's global stream) names a stream of its own, apart from the
    test sets' parameters under the same seed.
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
            f"{did_you_mean(layout, ('uniform', 'random', 'clustered'))}"
        )
    return np.sort(x)
