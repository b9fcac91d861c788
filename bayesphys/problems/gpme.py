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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import (
    check_int,
    check_range,
    check_real,
    check_scalar,
    check_seed,
    did_you_mean,
    stream_seed,
)
from .._device import as_tensor, make_generator, own_memory
from .._repr import fields_repr

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

_F64 = torch.float64


@dataclass(frozen=True)
class GPMEProblem:
    """Base class of a one-parameter GPME family.

    Attributes
    ----------
    name: problem id (``"diffusion"``, ``"pme"``, ``"stefan"``).
    param_name: name of the varied parameter (``k``, ``m``, ``u_star``).
    x_range, t_range: domain.
    train_range: the parameter is drawn ``U(train_range)`` for training functions.
    param_domain: the open interval where the family is defined (checked by ``make_dataset``).
    test_params: the paper's test parameters; ``table_time``: the time of the paper's tables.
    """

    name: str = ""
    param_name: str = ""
    x_range: tuple[float, float] = (0.0, 1.0)
    t_range: tuple[float, float] = (0.0, 1.0)
    train_range: tuple[float, float] = (1.0, 2.0)
    param_domain: tuple[float, float] = (-math.inf, math.inf)
    test_params: tuple[float, ...] = ()
    table_time: float = 0.5

    def widened_range(self, margin: float) -> tuple[float, float]:
        """``train_range`` widened by ``margin`` times its length at each end (``margin`` >= 0;
        the result is not checked against ``param_domain``: see :meth:`check_params`)."""
        margin = check_real("margin", margin, minimum=0.0)
        lo, hi = self.train_range
        return lo - margin * (hi - lo), hi + margin * (hi - lo)

    def check_params(self, name: str, lo: float, hi: float) -> None:
        """Raise a ``ValueError`` naming ``name`` unless ``[lo, hi]`` lies inside the open
        ``param_domain`` (e.g. a porous-medium exponent ``m <= 0`` has no solution)."""
        a, b = self.param_domain
        if not (a < lo and hi < b):
            raise ValueError(
                f"{name}: expected {self.param_name} in ({a:g}, {b:g}) for {self.name}, "
                f"received values in [{lo:g}, {hi:g}]"
            )

    def _check_domain(self, param) -> None:
        """Raise a ``ValueError`` naming ``param_name`` unless every ``param`` lies inside the
        open ``param_domain`` (NaN refused): outside it the closed forms are undefined and
        would give NaN or a wrong value silently."""
        p = _f64(param)
        a, b = self.param_domain
        if p.numel() and not bool(((p > a) & (p < b)).all()):
            finite = p[~torch.isnan(p)]
            got = (
                f"values in [{float(finite.min()):g}, {float(finite.max()):g}]"
                if finite.numel() == p.numel()
                else f"{p.numel() - finite.numel()} NaN value(s)"
            )
            raise ValueError(
                f"{self.param_name}: expected values in ({a:g}, {b:g}) for {self.name}, "
                f"received {got}"
            )

    # -- to be overridden --------------------------------------------------------------------
    def solution(self, t: Tensor | float, x: Tensor | float, param: Tensor | float) -> Tensor:
        """Exact :math:`u(t, x; \\theta)`; ``t, x, param`` broadcast together."""
        raise NotImplementedError

    def mass(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        """Exact total mass :math:`b(t) = \\int_{x_0}^{x_1} u(t,x)\\,dx` over ``x_range``.

        ``t, param`` broadcast together; the result has their broadcast shape (float64). It is
        the integral of :meth:`solution` for every ``t`` (also past ``t_range``, e.g. once a
        front has left the domain); a NaN ``t`` gives NaN, as :meth:`solution` does."""
        raise NotImplementedError

    def flux_breaks(self, param: float) -> list[float]:
        """Times at which :math:`b'(t)` has a kink or a jump (a front reaching a domain end);
        :func:`mass_from_fluxes` splits its quadrature there. None by default."""
        return []

    def boundary_flux(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        """Net inflow :math:`F|_{x_0} - F|_{x_1} = b'(t)` through the boundary.

        Same shapes and validity as :meth:`mass` (a NaN ``t`` gives NaN)."""
        raise NotImplementedError

    def diffusivity(self, u: Tensor, param: Tensor) -> Tensor:
        """:math:`k(u)` (differentiable surrogate where :math:`k` jumps, used by SoftC)."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    def grid(self, n: int = 201) -> Tensor:
        """Uniform spatial grid ``[n]`` including both endpoints (float64), ``n >= 2``."""
        return torch.linspace(*self.x_range, check_int("n", n, minimum=2), dtype=_F64)

    def setting(self, param: float) -> dict[str, float]:
        """Benchmark setting dict, e.g. ``{"m": 3, "t": 0.5}``."""
        p = _real(self.param_name or "param", param)
        return {self.param_name: int(p) if p == int(p) else p, "t": self.table_time}


def _f64(v) -> Tensor:
    return torch.as_tensor(v, dtype=_F64)


def _real(name: str, value, **kw) -> float:
    """:func:`check_scalar` accepting a one-element tensor (as ``float()`` did)."""
    return check_scalar(name, value, one_element=True, **kw)


def _nan_at(t: Tensor, out: Tensor) -> Tensor:
    """``out`` with NaN wherever ``t`` is NaN (``t, out`` broadcast): the closed forms below
    mask by ``t > 0`` or clamp ``t``, which turned a NaN time into a silent 0."""
    return torch.where(torch.isnan(t), t, out)


def _pos_pow(s: Tensor, e: Tensor | float) -> Tensor:
    """:math:`s^e` where ``s > 0``, else 0 (``s, e`` broadcast); finite gradients at ``s = 0``
    (a plain ``pow`` gives ``inf * 0 = nan`` there for ``e < 1``)."""
    pos = s > 0
    return torch.where(pos, torch.where(pos, s, torch.ones_like(s)).pow(e), torch.zeros_like(s))


@dataclass(frozen=True)
class Diffusion(GPMEProblem):
    """Heat equation, :math:`u = \\sin(x)e^{-kt}` on :math:`[0, 2\\pi]` periodic, mass 0.

    On another ``x_range`` :math:`[x_0, x_1]` (the same solution, with its Dirichlet values)
    :math:`b(t) = (\\cos x_0 - \\cos x_1)e^{-kt}` and the net inflow
    :math:`F(x_0) - F(x_1) = -k(\\cos x_0 - \\cos x_1)e^{-kt}` (flux :math:`F = -k u_x`);
    both vanish on the default period.
    """

    name: str = "diffusion"
    param_name: str = "k"
    x_range: tuple[float, float] = (0.0, 2 * math.pi)
    t_range: tuple[float, float] = (0.0, 1.0)
    train_range: tuple[float, float] = (1.0, 5.0)
    param_domain: tuple[float, float] = (0.0, math.inf)
    test_params: tuple[float, ...] = (1.0, 5.0)
    table_time: float = 0.5

    def solution(self, t: Tensor | float, x: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact :math:`u = \sin(x)\,e^{-kt}` (``param`` = :math:`k`); ``t, x, param`` broadcast."""
        self._check_domain(param)
        return torch.sin(_f64(x)) * torch.exp(-_f64(param) * _f64(t))

    def _cos_span(self) -> float:
        # cos x0 - cos x1: 0 on the default period (what leaves at 2*pi enters at 0)
        x0, x1 = self.x_range
        return math.cos(x0) - math.cos(x1)

    def mass(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact :math:`b(t) = (\cos x_0 - \cos x_1)\,e^{-kt}` (broadcast shape, float64)."""
        self._check_domain(param)
        t, param = torch.broadcast_tensors(_f64(t), _f64(param))
        return _nan_at(t, self._cos_span() * torch.exp(-param * t))

    def boundary_flux(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Net inflow :math:`b'(t) = -k(\cos x_0 - \cos x_1)\,e^{-kt}`."""
        self._check_domain(param)
        t, param = torch.broadcast_tensors(_f64(t), _f64(param))
        x0, x1 = self.x_range  # -k (cos x0 - cos x1) e^{-kt}, written to give +0.0 on a period
        return _nan_at(t, (math.cos(x1) - math.cos(x0)) * param * torch.exp(-param * t))

    def diffusivity(self, u: Tensor, param: Tensor) -> Tensor:
        r"""The constant :math:`k(u) = k`, shaped like ``u``."""
        return torch.ones_like(u) * param


@dataclass(frozen=True)
class PorousMedium(GPMEProblem):
    """PME :math:`k(u) = u^m`, :math:`u(t,0) = (mt)^{1/m}`, front at :math:`x = t`.

    The travelling wave :math:`u = (m\\,\\mathrm{ReLU}(t-x))^{1/m}` has flux
    :math:`F(u) = (m\\,\\mathrm{ReLU}(t-x))^{1/m}`, so with :math:`s_i = \\mathrm{ReLU}(t - x_i)`

    .. math::  b(t) = \\frac{m^{1+1/m}}{m+1}\\big(s_0^{1+1/m} - s_1^{1+1/m}\\big), \\qquad
               b'(t) = (m s_0)^{1/m} - (m s_1)^{1/m};

    the :math:`s_1` terms (outflow once the front passes :math:`x_1`, i.e. ``t > 1`` on the
    default domain) vanish inside ``t_range``.
    """

    name: str = "pme"
    param_name: str = "m"
    x_range: tuple[float, float] = (0.0, 1.0)
    t_range: tuple[float, float] = (0.0, 1.0)
    train_range: tuple[float, float] = (1.0, 6.0)
    param_domain: tuple[float, float] = (0.0, math.inf)
    test_params: tuple[float, ...] = (1.0, 3.0, 6.0)
    table_time: float = 0.5

    def solution(self, t: Tensor | float, x: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact solution for exponent ``param`` = :math:`m` (class docstring); ``t, x, param`` broadcast."""
        self._check_domain(param)
        m = _f64(param)
        return (m * torch.relu(_f64(t) - _f64(x))).pow(1.0 / m)

    def mass(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact total mass :math:`b(t)` over ``x_range`` (broadcast shape, float64)."""
        self._check_domain(param)
        m, t = _f64(param), _f64(t)
        x0, x1 = self.x_range
        s0, s1 = (t - x0).clamp_min(0), (t - x1).clamp_min(0)
        p = 1 + 1 / m
        return _nan_at(t, m.pow(p) / (m + 1) * (_pos_pow(s0, p) - _pos_pow(s1, p)))

    def boundary_flux(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Net inflow :math:`b'(t)` through the boundary (broadcast shape)."""
        # -u^m u_x equals (m (t - x))^{1/m} behind the front, 0 ahead of it: inflow at x0,
        # outflow at x1 once the front has reached it
        self._check_domain(param)
        m, t = _f64(param), _f64(t)
        x0, x1 = self.x_range
        s0, s1 = (t - x0).clamp_min(0), (t - x1).clamp_min(0)
        return _nan_at(t, _pos_pow(m * s0, 1 / m) - _pos_pow(m * s1, 1 / m))

    def flux_breaks(self, param: float) -> list[float]:
        r"""Times where the front :math:`x = t` reaches :math:`x_0` and :math:`x_1` (kinks of
        :math:`b'`)."""
        # the front x = t reaches x0 (inflow starts) and x1 (outflow starts)
        return [float(v) for v in self.x_range]

    def diffusivity(self, u: Tensor, param: Tensor) -> Tensor:
        r""":math:`k(u) = u^m`."""
        return u.clamp_min(0).pow(param)


def stefan_constants(u_star: Tensor | float, iters: int = 200) -> tuple[Tensor, Tensor]:
    r"""Stefan constants :math:`(\alpha, c_1)` for :math:`u^*` (vectorised bisection, float64).

    :math:`z_1` solves :math:`u^*\operatorname{erf}(z) z e^{z^2} = (1-u^*)/\sqrt\pi`;
    :math:`\alpha = 2 z_1`, :math:`c_1 = (1-u^*)/\operatorname{erf}(z_1)`.
    """
    iters = check_int("iters", iters, minimum=1)
    us = _f64(u_star)
    if not bool(((us > 0) & (us < 1)).all()):  # NaN is refused too
        n_nan = int(torch.isnan(us).sum())
        got = (
            f"{n_nan} NaN value(s)"
            if n_nan
            else f"values in [{float(us.min()):g}, {float(us.max()):g}]"
        )
        raise ValueError(f"u_star: expected values in (0, 1), received {got}")
    rhs = (1 - us) / math.sqrt(math.pi)
    # z1 grows like sqrt(log(1/u*)): hi = 5 saturated (alpha = 10 exactly) for u* < ~1.6e-12;
    # 30 brackets every positive float64 u* (exp(900) = inf only makes f > 0, as wanted)
    lo, hi = torch.full_like(us, 1e-8), torch.full_like(us, 30.0)
    # z1 ~ sqrt((1 - u*) / 2) falls below 1e-8 once 1 - u* < 2e-16: bracket from 0 there
    # (f(0) = -rhs < 0); every other u* keeps its bracket, so its constants bit for bit
    lo = torch.where(1 - us < 1e-15, torch.zeros_like(lo), lo)
    for k in range(iters):
        mid = 0.5 * (lo + hi)
        f = us * torch.erf(mid) * mid * torch.exp(mid * mid) - rhs
        neg = f < 0
        lo2, hi2 = torch.where(neg, mid, lo), torch.where(neg, hi, mid)
        # a fixed point (float64 bisection stops moving after ~55-85 halvings): the later
        # iterations would change nothing, so stopping there keeps the result bit for bit
        done = k % 8 == 7 and torch.equal(lo2, lo) and torch.equal(hi2, hi)
        lo, hi = lo2, hi2
        if done:
            break
    z1 = 0.5 * (lo + hi)
    return 2 * z1, (1 - us) / torch.erf(z1)


def stefan_front(t: Tensor | float, u_star: Tensor | float) -> Tensor:
    """Exact front (shock) position :math:`x^*(t) = \\alpha\\sqrt t`."""
    alpha, _ = stefan_constants(u_star)
    return alpha * _f64(t).clamp_min(0).sqrt()


@dataclass(frozen=True)
class Stefan(GPMEProblem):
    """Stefan problem :math:`k(u) = 1\\{u \\ge u^*\\}`, :math:`u(t,0) = 1`, moving front.

    Behind the front :math:`x^*(t) = \\alpha\\sqrt t` the flux is
    :math:`F = -u_x = c_1 e^{-x^2/4t}/\\sqrt{\\pi t}`, ahead of it 0. While the front is inside
    the domain :math:`b(t) = 2c_1\\sqrt{t/\\pi}`; once it passes :math:`x_1` (at
    :math:`t = x_1^2/\\alpha^2`: for small :math:`u^*` already inside ``t_range``, e.g.
    :math:`u^* \\lesssim 0.03`) the part beyond :math:`x_1` is removed with the antiderivative
    :math:`\\int (1 - c_1\\operatorname{erf} y)\\,dy = y - c_1(y\\operatorname{erf} y
    + (e^{-y^2} - 1)/\\sqrt\\pi)` and the outflow :math:`F|_{x_1}` enters :math:`b'(t)`.
    """

    name: str = "stefan"
    param_name: str = "u_star"
    x_range: tuple[float, float] = (0.0, 1.0)
    t_range: tuple[float, float] = (0.0, 0.1)
    train_range: tuple[float, float] = (0.55, 0.7)
    param_domain: tuple[float, float] = (0.0, 1.0)
    test_params: tuple[float, ...] = (0.5, 0.6)
    table_time: float = 0.05
    smooth: float = field(default=0.02, compare=False)

    def solution(self, t: Tensor | float, x: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact solution for threshold ``param`` = :math:`u^*` (class docstring); ``t, x, param`` broadcast."""
        # the constants depend on the parameter only: solved once per parameter, then
        # broadcast over the grid (they were solved at every grid point)
        alpha, c1 = stefan_constants(_f64(param))
        t, x, alpha, c1 = torch.broadcast_tensors(_f64(t), _f64(x), alpha, c1)
        ts = t.clamp_min(1e-300).sqrt()
        inside = (x <= alpha * ts) & (t > 0)
        u = 1 - c1 * torch.erf(x / (2 * ts))
        out = torch.where(inside, u, torch.zeros_like(u))
        return _nan_at(t, torch.where((x == 0) & (t <= 0), torch.ones_like(u), out))

    def mass(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact total mass :math:`b(t)`: :math:`2c_1\sqrt{t/\pi}` while the front is inside (class docstring)."""
        alpha, c1 = stefan_constants(param)
        t = _f64(t)
        x0, x1 = self.x_range
        two_ts = 2 * t.clamp_min(1e-300).sqrt()
        z1 = alpha / 2  # the front in y = x / (2 sqrt t)

        def antiderivative(y: Tensor) -> Tensor:  # of 1 - c1 erf(y), zero at y = 0
            return y - c1 * (y * torch.erf(y) + (torch.exp(-y * y) - 1) / math.sqrt(math.pi))

        y0 = torch.minimum(x0 / two_ts, z1)
        y1 = torch.minimum(x1 / two_ts, z1)
        # mass on [0, front] minus the part beyond x1 and the part before x0 (both exactly 0
        # on the default domain while the front is inside it)
        total = 2 * c1 * (t.clamp_min(0) / math.pi).sqrt()
        out = total - two_ts * (antiderivative(z1) - antiderivative(y1))
        out = out - two_ts * antiderivative(y0)
        return _nan_at(t, torch.where(t > 0, out, torch.zeros_like(out)))

    def flux_breaks(self, param: float) -> list[float]:
        r"""Times :math:`(x / \alpha)^2` where the front :math:`\alpha\sqrt t` reaches
        :math:`x_0` and :math:`x_1` (breaks of :math:`b'`)."""
        # the front alpha sqrt(t) reaches x0 and x1 at t = (x / alpha)^2
        alpha = float(stefan_constants(param)[0])
        return [(max(x, 0.0) / alpha) ** 2 for x in self.x_range]

    def boundary_flux(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Net inflow :math:`b'(t) = F|_{x_0} - F|_{x_1}`, :math:`F(t, x) = c_1 e^{-x^2/4t}
        /\sqrt{\pi t}` behind the front (:math:`x \le \alpha\sqrt t`), 0 ahead of it.

        ``t, param`` broadcast together; the result has their broadcast shape (float64).
        Before the start (``t < 0``) the flux is 0, as :meth:`mass` is. At ``t = 0`` it is the
        limit :math:`t \to 0^+`: :math:`+\infty` through a boundary at :math:`x = 0` (the
        :math:`c_1/\sqrt{\pi t}` singularity of the inflow, integrable:
        :math:`b(t) = 2c_1\sqrt{t/\pi}`), 0 through one at :math:`x \ne 0`; so on the default
        domain ``boundary_flux(0) = inf``. A NaN ``t`` gives NaN. (``t <= 0`` used to give
        about ``4.5e149``: the time was clamped to ``1e-300`` and never masked.)
        """
        alpha, c1 = stefan_constants(param)
        t_in = _f64(t)
        t = t_in.clamp_min(1e-300)
        front = alpha * t.sqrt()
        x0, x1 = self.x_range

        def flux(x: float) -> Tensor:  # -u_x behind the front (k = 1 there), 0 ahead of it
            f = c1 / (math.pi * t).sqrt() * torch.exp(-(x * x) / (4 * t))
            f = torch.where(x <= front, f, torch.zeros_like(f))
            at_zero = torch.full_like(f, math.inf if x == 0 else 0.0)  # the limit t -> 0+
            return torch.where(t_in > 0, f, torch.where(t_in == 0, at_zero, torch.zeros_like(f)))

        return _nan_at(t_in, flux(x0) - flux(x1))

    def diffusivity(self, u: Tensor, param: Tensor) -> Tensor:
        r"""A smooth surrogate of :math:`k(u) = 1\{u \ge u^*\}` (used by SoftC)."""
        # smooth surrogate of 1{u >= u*} for the SoftC residual (k_min = 0, k_max = 1)
        return torch.sigmoid((u - param) / self.smooth)


_PROBLEMS = {"diffusion": Diffusion, "pme": PorousMedium, "stefan": Stefan}
#: the GPME families (a checkpoint rebuilds its problem from one of them by class name)
PROBLEM_CLASSES: tuple[type[GPMEProblem], ...] = (Diffusion, PorousMedium, Stefan)


def get_problem(name: str | GPMEProblem) -> GPMEProblem:
    """Problem by id: ``"diffusion"``, ``"pme"`` or ``"stefan"``."""
    if isinstance(name, GPMEProblem):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"problem: expected one of {sorted(_PROBLEMS)} or a GPMEProblem, received "
            f"{type(name).__name__} {name!r}"
        )
    if name not in _PROBLEMS:
        raise ValueError(
            f"problem: expected one of {sorted(_PROBLEMS)}, received {name!r}{did_you_mean(name, sorted(_PROBLEMS))}"
        )
    return _PROBLEMS[name]()


def mass_from_fluxes(problem: GPMEProblem, t: float, param: float, n: int = 4001) -> float:
    r""":math:`b(t) = U(t_0) + \int_{t_0}^t b'(s)\,ds` by the midpoint rule on the fluxes.

    (The Stefan inflow is :math:`\propto s^{-1/2}`; the substitution :math:`s = a + r^2` on
    each piece :math:`[a, b]` makes the integrand smooth.) The interval is split where :math:`b'` has a kink or jump
    (:meth:`GPMEProblem.flux_breaks`: a front leaving the domain), ``n`` points per piece.
    """
    problem = get_problem(problem)
    param = _real("param", param)
    problem.check_params("param", param, param)
    t0 = problem.t_range[0]
    t = check_real("t", t, minimum=t0)
    n = check_int("n", n, minimum=2)  # n = 1 has no interval: it returned U(t0) for any t
    # from t0 itself: starting at max(t0, 0) lost the flux over [t0, 0) of a time range that
    # begins before 0
    ends = [t0, *sorted(b for b in problem.flux_breaks(param) if t0 < b < t), t]
    total = problem.mass(t0, param)
    for a, b in zip(ends[:-1], ends[1:]):
        if b <= a:  # t = t0: nothing to add (the Stefan flux at s = 0 is inf * 0 = NaN)
            continue
        # s = a + r^2 on each piece: a flux that starts like (s - a)^p (p = -1/2 for the
        # Stefan inflow, 1/m for the PME outflow) becomes r^(2p+1), smooth enough for the
        # midpoint rule
        r = torch.linspace(0.0, math.sqrt(b - a), n, dtype=_F64)
        mid, dr = 0.5 * (r[1:] + r[:-1]), r[1:] - r[:-1]
        total = total + (problem.boundary_flux(a + mid * mid, param) * 2 * mid * dr).sum()
    return float(total)


@dataclass
class GPMEData:
    """A set of GPME functions (one PDE instance each).

    Shapes: ``params [B]``, ``x_context [B, Nc, 2]`` (columns ``t, x``), ``y_context [B, Nc]``,
    ``x_target [B, Nt, 2]``, ``y_target [B, Nt]`` (float64; exact solution values).
    """

    problem: GPMEProblem
    params: Tensor
    x_context: Tensor
    y_context: Tensor
    x_target: Tensor
    y_target: Tensor

    def __len__(self) -> int:
        return int(self.params.shape[0])

    def __repr__(self) -> str:
        # shapes, not values (the default printed every context and target point)
        return fields_repr(
            self,
            (),
            problem=self.problem.name,
            functions=len(self),
            params=self.params.tolist() if len(self) <= 4 else self.params,
            x_context=self.x_context,
            x_target=self.x_target,
        )

    def subset(self, idx: slice | Tensor | Sequence[int]) -> GPMEData:
        """The functions ``idx`` (a slice, index tensor or list)."""
        return GPMEData(
            self.problem,
            self.params[idx],
            self.x_context[idx],
            self.y_context[idx],
            self.x_target[idx],
            self.y_target[idx],
        )


def sample_parameters(
    problem: GPMEProblem,
    n: int,
    *,
    seed: int | None = None,
    param_range: tuple[float, float] | None = None,
) -> Tensor:
    """``n`` parameters ``U(param_range)`` ``[n]`` (float64; default range: ``train_range``).

    The same ``seed`` gives the same uniform draws whatever the range (an affine image)."""
    problem = get_problem(problem)
    n = check_int("n", n, minimum=0)
    if seed is not None:
        seed = check_seed("seed", seed)
    g = make_generator(seed)
    lo, hi = problem.train_range if param_range is None else check_range("param_range", param_range)
    problem.check_params("param_range", lo, hi)
    return lo + (hi - lo) * torch.rand(n, dtype=_F64, generator=g)


def _sorted_uniform(b: int, n: int, lo: float, hi: float, g) -> Tensor:
    return (lo + (hi - lo) * torch.rand(b, n, dtype=_F64, generator=g)).sort(-1).values


def make_dataset(
    problem: str | GPMEProblem,
    n_functions: int | None = None,
    *,
    params: Tensor | list[float] | None = None,
    seed: int | None = 0,
    n_t_context: int = 10,
    n_x_context: int = 10,
    n_t_target: int = 10,
    n_x_target: int = 10,
    noise_std: float = 0.0,
    param_range: tuple[float, float] | None = None,
) -> GPMEData:
    """Seeded functions with the paper's context design (generated on the fly).

    Either ``n_functions`` functions with parameters drawn ``U(param_range)`` (default
    ``train_range``: training functions), or the given ``params`` (one function each). Contexts: ``n_t_context`` stratified times x the same
    ``n_x_context`` sorted uniform sensor positions; targets: sorted uniform ``n_t_target x
    n_x_target``. ``noise_std`` adds Gaussian sensor noise to the contexts only.

    ``seed`` names two independent streams (:func:`bayesphys.stream_seed`): the parameters'
    and the design's (times, sensors, targets, noise), so no two seeds share either draw.
    The design stream depends on ``seed`` alone, not on ``params`` or ``n_functions``: two
    sets made with the same ``seed`` -- e.g. a training set ``make_dataset(p, B, seed=s)``
    and a test set ``make_dataset(p, params=[...] * B, seed=s)`` -- have the same context
    times, sensor positions, target points and noise draws function by function (with
    different numbers of functions the first functions' context times still coincide). Give
    training, validation and test sets different seeds to keep their designs independent
    (``benchmarks/probconserv.py`` uses ``555 + seed``, ``777 + seed``, ``10_000 + seed``).
    """
    prob = get_problem(problem)
    if seed is not None:
        seed = check_seed("seed", seed)
    if params is None:
        if n_functions is None:
            raise ValueError("n_functions: expected a positive int (or params), received None")
        n_functions = check_int("n_functions", n_functions, minimum=1)
        p = sample_parameters(
            prob,
            n_functions,
            seed=None if seed is None else stream_seed(seed, "gpme-params"),
            param_range=param_range,
        )
    else:
        if param_range is not None:
            raise ValueError("param_range: give either params or param_range, not both")
        if n_functions is not None:
            raise ValueError(
                f"n_functions: give either params (one function each) or n_functions, not "
                f"both; received n_functions={n_functions!r}"
            )
        p = as_tensor("params", params, dtype=_F64)
        if p.ndim > 1:
            raise ValueError(
                f"params: expected a 1-D sequence (one parameter per function), received "
                f"shape {tuple(p.shape)}"
            )
        # memory of its own: the set kept a view of the caller's params, so a later edit of
        # them relabelled functions whose values stayed those of the old parameters
        p = own_memory(p.reshape(-1), params)
        if not p.numel():
            raise ValueError("params: expected at least one parameter value, received none")
        prob.check_params("params", float(p.min()), float(p.max()))
    noise_std = check_real("noise_std", noise_std, minimum=0.0)
    n_t_context, n_x_context, n_t_target, n_x_target = (
        check_int(name, v, minimum=1)
        for name, v in (
            ("n_t_context", n_t_context),
            ("n_x_context", n_x_context),
            ("n_t_target", n_t_target),
            ("n_x_target", n_x_target),
        )
    )
    b = p.shape[0]
    g = make_generator(None if seed is None else stream_seed(seed, "gpme-design"))
    t0, t1 = prob.t_range
    x0, x1 = prob.x_range
    # stratified times: one uniform draw in each of n_t_context equal bins
    edges = torch.linspace(t0, t1, n_t_context + 1, dtype=_F64)
    tc = edges[:-1] + (edges[1:] - edges[:-1]) * torch.rand(b, n_t_context, dtype=_F64, generator=g)
    xc = _sorted_uniform(b, n_x_context, x0, x1, g)
    tt = _sorted_uniform(b, n_t_target, t0, t1, g)
    xt = _sorted_uniform(b, n_x_target, x0, x1, g)

    def mesh(tv, xv):
        tm = tv[:, :, None].expand(-1, -1, xv.shape[1])
        xm = xv[:, None, :].expand(-1, tv.shape[1], -1)
        return torch.stack([tm.reshape(b, -1), xm.reshape(b, -1)], -1)

    xin_c, xin_t = mesh(tc, xc), mesh(tt, xt)
    yc = prob.solution(xin_c[..., 0], xin_c[..., 1], p[:, None])
    yt = prob.solution(xin_t[..., 0], xin_t[..., 1], p[:, None])
    if noise_std > 0:
        yc = yc + noise_std * torch.randn(yc.shape, dtype=_F64, generator=g)
    return GPMEData(prob, p, xin_c, yc, xin_t, yt)


def eval_grid(problem: str | GPMEProblem, t: float | None = None, n_x: int = 201) -> Tensor:
    """Target inputs ``[n_x, 2]`` (``t, x``) on the uniform slice at time ``t`` (default table time)."""
    prob = get_problem(problem)
    tt = prob.table_time if t is None else _real("t", t, minimum=prob.t_range[0])
    x = prob.grid(n_x)
    return torch.stack([torch.full_like(x, tt), x], -1)
