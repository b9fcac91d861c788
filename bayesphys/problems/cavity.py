r"""Lid-driven cavity (incompressible Navier-Stokes): the RGNP paper's NS problem, with our own
reference solver.

Vadeboncoeur et al., "Random Grid Neural Processes for Parametric Partial Differential
Equations" (ICML 2023), problem "NS": on :math:`\Omega = [0, 1]^2`, :math:`t \in [0, 1]`,

.. math::
    \rho(u_t + u u_x + v u_y) + p_x - \mu\Delta u = 0, \qquad
    \rho(v_t + u v_x + v v_y) + p_y - \mu\Delta v = 0, \qquad u_x + v_y = 0,

no slip on the walls except the lid :math:`u(x, 1, t) = w\,(1 - (2x - 1)^6)\,t`, a fluid at
rest at :math:`t = 0`; parameters :math:`z = (\rho, \mu)`, :math:`\rho \sim U[0.8, 1]`,
:math:`\mu \sim U[0.1, 1]`, :math:`w = 1` (Reynolds number :math:`\rho w/\mu \in [0.8, 10]`).

**Reference solver** (:func:`solve_cavity`; the paper used a FEniCS Chorin projection, which we
do not depend on): the vorticity-streamfunction form
:math:`\omega_t + u\omega_x + v\omega_y = \nu\Delta\omega`, :math:`\Delta\psi = -\omega`,
:math:`u = \psi_y`, :math:`v = -\psi_x`, :math:`\nu = \mu/\rho`, on an ``n x n`` node grid
(second-order central differences; the streamfunction by an exact discrete sine-transform
Poisson solve; wall vorticity by Thom's formula
:math:`\omega_w = -2\psi_{w\pm1}/h^2 - 2u_w/h`; explicit Euler in time at a stable step).
Pressure is not computed: the paper scores ``u`` and ``v`` only. :func:`ns_residual` gives
the strong-form residual of the equations above from fields and their derivatives, for
physics-informed models.

Shapes: snapshots ``[T, n, n]`` indexed ``[t, y, x]`` (row = y), grid ``x = y = linspace(0, 1, n)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft
from torch import Tensor

from .._checks import check_int, check_real, check_seed, did_you_mean

__all__ = [
    "CAVITY_PRIOR",
    "CAVITY_MAX_STEPS",
    "solve_cavity",
    "cavity_test_set",
    "ns_residual",
    "lid_velocity",
]

#: Prior box of ``z = (rho, mu)`` and the fixed lid speed ``w`` (the paper's code).
CAVITY_PRIOR = {"rho": (0.8, 1.0), "mu": (0.1, 1.0), "w": 1.0}

#: most explicit time steps one :func:`solve_cavity` may take (the prior box takes at most
#: about 15 000 at ``n = 50``; a huge lid speed ``w`` needed ~``|w| t_end / h`` steps and
#: effectively hung)
CAVITY_MAX_STEPS = 1_000_000


def lid_velocity(
    x: np.ndarray, t: float, w: float = 1.0, profile: str = "regularised"
) -> np.ndarray:
    """Lid speed ``w (1 - (2x - 1)^6) t`` (``profile="regularised"``, the paper's) or ``w``
    (``"constant"``, the classical steady benchmark)."""
    if profile == "constant":
        return np.full_like(x, w, dtype=float)
    if profile != "regularised":
        raise ValueError(
            f"profile: expected 'regularised' or 'constant', received {profile!r}"
            f"{did_you_mean(profile, ('regularised', 'constant'))}"
        )
    return w * (1.0 - (2.0 * x - 1.0) ** 6) * t


def _poisson_dirichlet(rhs: np.ndarray, h: float) -> np.ndarray:
    """Solve the 5-point :math:`-\\Delta\\psi = f` on interior nodes ``[m, m]`` with ``psi = 0``
    on the boundary, exactly, by a type-I discrete sine transform."""
    m = rhs.shape[0]
    k = np.arange(1, m + 1)
    lam = (2.0 - 2.0 * np.cos(np.pi * k / (m + 1))) / h**2
    f_hat = fft.dstn(rhs, type=1)
    return fft.idstn(f_hat / (lam[:, None] + lam[None, :]), type=1)


def solve_cavity(
    rho: float,
    mu: float,
    *,
    w: float = 1.0,
    n: int = 50,
    t_end: float = 1.0,
    n_snapshots: int = 50,
    dt: float | None = None,
    profile: str = "regularised",
) -> dict[str, np.ndarray]:
    r"""Reference lid-driven cavity solution (module docstring) for one ``(rho, mu)``.

    Parameters
    ----------
    rho, mu : float
        Density and viscosity (``> 0``).
    w : float
        Lid speed (finite; see the notes).
    n : int
        Nodes per side (``>= 5``, ``h = 1/(n-1)``).
    t_end : float
        Final time (``> 0``).
    n_snapshots : int
        Equally spaced output times in ``(0, t_end]`` (``>= 1``).
    dt : float or None
        Time step (default: 0.8 x the explicit stability limit
        :math:`\min(h^2/(4\nu),\ h/U,\ 2\nu/U^2)`, :math:`U` the largest lid speed of the
        run: :math:`|w|` for the constant lid, :math:`|w|\max(1, t_{end})` for the
        regularised one, whose speed grows like :math:`t`). The last term is the explicit
        (forward Euler, central advection) scheme's advection-diffusion limit; without it and
        with the lid speed taken as :math:`|w|` a long run (e.g. ``t_end=20`` at ``n=11``,
        the prior's :math:`\nu = 0.1`) or a fast lid (``w=1000``, ``n=50``) ended in NaN.
    profile : str
        Lid profile (:func:`lid_velocity`).

    Notes
    -----
    The run takes :math:`\lceil t_{end}/\Delta t\rceil` steps (rounded up to a multiple of
    ``n_snapshots``); more than :data:`CAVITY_MAX_STEPS` is a ``ValueError`` before any
    stepping. Through the limits :math:`\Delta t \le h/U` and :math:`\Delta t \le 2\nu/U^2`
    this bounds the lid speed, e.g. to about :math:`U \le \sqrt{1.6\,\nu N_{max}/t_{end}}`
    (:math:`N_{max}` = ``CAVITY_MAX_STEPS``) where the last limit binds (``U <~ 400`` for
    :math:`\nu = 0.1`, ``t_end = 1``); the viscous limit :math:`h^2/(4\nu)` counts too.

    Returns
    -------
    dict[str, np.ndarray]
        ``{"x": [n], "t": [n_snapshots], "u", "v", "psi", "omega": [n_snapshots, n, n]}``
        (index ``[t, y, x]``).
    """
    rho, mu, t_end = (
        check_real(name, val, minimum=0.0, strict=True)
        for name, val in (("rho", rho), ("mu", mu), ("t_end", t_end))
    )
    w = check_real("w", w)  # NaN gave NaN fields
    n = check_int("n", n)
    if n < 5:
        raise ValueError(f"n: expected at least 5 nodes per side, received {n}")
    n_snapshots = check_int("n_snapshots", n_snapshots, minimum=1)
    if dt is not None:
        dt = check_real("dt", dt, minimum=0.0, strict=True)
    nu = mu / rho
    h = 1.0 / (n - 1)
    x = np.linspace(0.0, 1.0, n)
    # the largest lid speed of the run: the regularised lid moves at w t, faster than |w|
    # once t > 1 (max(1, t_end) keeps the step of runs to t_end <= 1 as it was)
    speed = max(abs(w) * (max(1.0, t_end) if profile == "regularised" else 1.0), 1e-12)
    # forward Euler with central differences: viscous h^2/(4 nu), advective h/U and the
    # advection-diffusion bound 2 nu / U^2 (|G| <= 1 for the long waves); both of the
    # latter were exceeded once U h / nu > 2 and the run ended in NaN
    limits = {
        "viscous": h * h / (4.0 * nu),
        "advective": h / speed,
        "advection-diffusion": 2.0 * nu / speed**2,
    }
    limit = min(limits.values())
    given_dt = dt is not None
    dt = 0.8 * limit if dt is None else float(dt)
    if not (0 < dt <= limit):
        raise ValueError(f"dt: expected 0 < dt <= {limit:.3g} (stability), received {dt}")
    out_t = np.linspace(0.0, t_end, n_snapshots + 1)[1:]
    # a whole number of steps between output times (dt only shrinks, so it stays stable):
    # every snapshot lands on its own step, exactly at its time
    per = max(1, int(math.ceil(t_end / (dt * n_snapshots) - 1e-9)))
    n_steps = per * n_snapshots
    if n_steps > CAVITY_MAX_STEPS:
        # the advice follows the limit that binds (h/U never does: it is below h^2/(4 nu)
        # only where U h / nu > 4, where 2 nu / U^2 is lower still): n does nothing to
        # 2 nu / U^2, and a larger viscosity shortens the viscous step
        if given_dt:
            what = f"dt: {dt:g} (with rho={rho:g}, mu={mu:g}, w={w:g}, n={n}, t_end={t_end:g})"
            advice = f"a larger dt (<= {limit:.3g}) or a smaller t_end"
        elif limits["viscous"] <= limits["advection-diffusion"]:
            what = f"mu: viscosity {mu:g} (with rho={rho:g}, w={w:g}, n={n}, t_end={t_end:g})"
            advice = "a smaller n, t_end or viscosity mu / rho"
        else:
            what = f"w: lid speed {w:g} (with rho={rho:g}, mu={mu:g}, n={n}, t_end={t_end:g})"
            advice = (
                "a smaller |w| or t_end, or a larger viscosity mu / rho (a smaller n does "
                f"not help: the step limit 2 nu / U^2 = {limit:.3g} does not depend on it)"
            )
        raise ValueError(
            f"{what} needs {n_steps} explicit steps, more than "
            f"CAVITY_MAX_STEPS={CAVITY_MAX_STEPS}; use {advice}"
        )
    dt = t_end / n_steps
    save_at = {per * (i + 1): i for i in range(n_snapshots)}
    omega = np.zeros((n, n))
    psi = np.zeros((n, n))
    shots = {k: np.zeros((n_snapshots, n, n)) for k in ("u", "v", "psi", "omega")}

    def velocities(psi: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        u = np.zeros_like(psi)
        v = np.zeros_like(psi)
        u[1:-1, :] = (psi[2:, :] - psi[:-2, :]) / (2 * h)
        v[:, 1:-1] = -(psi[:, 2:] - psi[:, :-2]) / (2 * h)
        u[-1, :] = lid_velocity(x, t, w, profile)
        u[0, :] = u[:, 0] = u[:, -1] = 0.0
        u[-1, 0] = u[-1, -1] = 0.0
        v[0, :] = v[-1, :] = v[:, 0] = v[:, -1] = 0.0
        return u, v

    def walls(omega: np.ndarray, psi: np.ndarray, t: float) -> None:
        lid = lid_velocity(x, t, w, profile)
        omega[-1, :] = -2.0 * psi[-2, :] / h**2 - 2.0 * lid / h
        omega[0, :] = -2.0 * psi[1, :] / h**2
        omega[:, 0] = -2.0 * psi[:, 1] / h**2
        omega[:, -1] = -2.0 * psi[:, -2] / h**2

    for step in range(1, n_steps + 1):
        t = (step - 1) * dt
        u, v = velocities(psi, t)
        walls(omega, psi, t)
        c = omega[1:-1, 1:-1]
        wx = (omega[1:-1, 2:] - omega[1:-1, :-2]) / (2 * h)
        wy = (omega[2:, 1:-1] - omega[:-2, 1:-1]) / (2 * h)
        lap = (
            omega[1:-1, 2:] + omega[1:-1, :-2] + omega[2:, 1:-1] + omega[:-2, 1:-1] - 4 * c
        ) / h**2
        omega[1:-1, 1:-1] = c + dt * (nu * lap - u[1:-1, 1:-1] * wx - v[1:-1, 1:-1] * wy)
        psi[1:-1, 1:-1] = _poisson_dirichlet(omega[1:-1, 1:-1], h)
        if step in save_at:
            i = save_at[step]
            tn = step * dt
            walls(omega, psi, tn)
            u, v = velocities(psi, tn)
            for k, arr in (("u", u), ("v", v), ("psi", psi), ("omega", omega)):
                shots[k][i] = arr
    return {"x": x, "t": out_t, **shots}


def cavity_test_set(
    n_cases: int = 25, *, seed: int = 0, n: int = 50, n_snapshots: int = 50
) -> dict[str, np.ndarray]:
    """Seeded test cases: ``z = (rho, mu)`` from :data:`CAVITY_PRIOR`, each solved by
    :func:`solve_cavity`. Returns ``{"z": [C, 2], "w": [C, 1], "x": [n], "t": [T],
    "u", "v": [C, T, n, n]}`` (the paper scores ``u, v`` on the ``(n-2)^2`` interior).
    ``n_cases >= 1`` (an int), ``seed`` an int ``>= 0`` (numpy's seed range); ``n``,
    ``n_snapshots`` as in :func:`solve_cavity`."""
    n_cases = check_int("n_cases", n_cases, minimum=1)
    rng = np.random.default_rng(check_seed("seed", seed, minimum=0))
    lo = np.array([CAVITY_PRIOR["rho"][0], CAVITY_PRIOR["mu"][0]])
    hi = np.array([CAVITY_PRIOR["rho"][1], CAVITY_PRIOR["mu"][1]])
    z = lo + (hi - lo) * rng.uniform(size=(n_cases, 2))
    sols = [solve_cavity(r, m, n=n, n_snapshots=n_snapshots) for r, m in z]
    return {
        "z": z,
        "w": np.full((n_cases, 1), CAVITY_PRIOR["w"]),
        "x": sols[0]["x"],
        "t": sols[0]["t"],
        "u": np.stack([s["u"] for s in sols]),
        "v": np.stack([s["v"] for s in sols]),
    }


def ns_residual(
    fields: dict[str, dict[str, Tensor]], rho: Tensor, mu: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Strong-form residuals (momentum x, momentum y, continuity) of the NS equations above.

    ``fields["u"|"v"]`` hold the value ``"v"`` and derivatives ``"x", "y", "t", "xx", "yy"``;
    ``fields["p"]`` holds ``"x", "y"``; all broadcastable ``[B, N]``; ``rho``, ``mu`` ``[B, 1]``.
    """
    u, v, p = fields["u"], fields["v"], fields["p"]
    mx = rho * (u["t"] + u["v"] * u["x"] + v["v"] * u["y"]) + p["x"] - mu * (u["xx"] + u["yy"])
    my = rho * (v["t"] + u["v"] * v["x"] + v["v"] * v["y"]) + p["y"] - mu * (v["xx"] + v["yy"])
    return mx, my, u["x"] + v["y"]
