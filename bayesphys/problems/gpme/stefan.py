r"""The Stefan family of ProbConserv's GPME benchmark (Hansen et al., ICML 2023, §4):
:math:`k(u) = 1\{u \ge u^*\}` on :math:`x \in [0, 1]`, :math:`t \in [0, 0.1]`, exact solution
:math:`1 - c_1\operatorname{erf}(x/2\sqrt t)` behind the moving front
:math:`x^*(t) = \alpha\sqrt t` and 0 ahead of it; the constants :math:`(\alpha, c_1)`
(:func:`stefan_constants`) and the front (:func:`stefan_front`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..._checks import check_int, check_real
from ..._device import ArrayLike
from ._common import _check_broadcast, _f64, _nan_at
from .base import GPMEProblem

__all__ = ["Stefan", "stefan_constants", "stefan_front"]


def stefan_constants(u_star: Tensor | float, iters: int = 200) -> tuple[Tensor, Tensor]:
    r"""Stefan constants :math:`(\alpha, c_1)` for :math:`u^*` (vectorised bisection, float64).

    :math:`z_1` solves :math:`u^*\operatorname{erf}(z) z e^{z^2} = (1-u^*)/\sqrt\pi`;
    :math:`\alpha = 2 z_1`, :math:`c_1 = (1-u^*)/\operatorname{erf}(z_1)`. ``u_star`` a
    number or a tensor ``[*]`` of values in ``(0, 1)``; ``alpha`` and ``c1`` ``[*]``, its shape.
    """
    iters = check_int("iters", iters, minimum=1)
    us = _f64(u_star, "u_star")
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
    z1 = _implicit_root(0.5 * (lo + hi), us, rhs)
    return 2 * z1, (1 - us) / torch.erf(z1)


def _implicit_root(z: Tensor, us: Tensor, rhs: Tensor) -> Tensor:
    r"""The bisection's root ``z [*]`` of :math:`f(z, u^*) = u^*\operatorname{erf}(z) z e^{z^2}
    - (1 - u^*)/\sqrt\pi` with the implicit-function gradient :math:`dz/du^* = -f_{u^*} / f_z`
    attached: the same values bit for bit (``f - f.detach()`` is exactly 0), but a gradient
    through ``u_star`` (the bisection's comparisons carry none: alpha had a zero gradient in
    ``u_star`` and c1 only its explicit part, both silently wrong). Where :math:`z^2` would
    overflow ``exp`` or :math:`f_z` is not positive, no gradient is attached (the value is
    kept)."""
    ok = z * z < 700.0
    zs = torch.where(ok, z, torch.ones_like(z)).detach()  # finite everywhere: no NaN gradient
    e = torch.exp(zs * zs)
    f = us * torch.erf(zs) * zs * e - rhs
    fz = us.detach() * (2 * zs / math.sqrt(math.pi) + torch.erf(zs) * e * (1 + 2 * zs * zs))
    ok = ok & (fz > 0)
    step = (f - f.detach()) / torch.where(ok, fz, torch.ones_like(fz))
    return z - torch.where(ok, step, torch.zeros_like(step))


def stefan_front(t: Tensor | float, u_star: Tensor | float) -> Tensor:
    """Exact front (shock) position :math:`x^*(t) = \\alpha\\sqrt t` (:math:`t < 0`: 0):
    ``t, u_star`` (numbers or tensors ``[*]``) broadcast -> ``[*]`` (float64)."""
    _check_broadcast(t=t, u_star=u_star)
    alpha, _ = stefan_constants(u_star)
    return alpha * _f64(t, "t").clamp_min(0).sqrt()


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
    The problem is posed on :math:`x \\ge 0` (the boundary :math:`x = 0` holds :math:`u = 1`):
    an ``x_range`` with :math:`x_0 < 0` is refused (``ValueError``), as the closed form
    continued there jumps at :math:`t = 0^+` and :math:`b(t) \\ne b(0) + \\int_0^t b'\\,ds`.
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

    def __post_init__(self) -> None:
        super().__post_init__()
        # smooth = 0 divided by zero in diffusivity (NaN / inf SoftC residuals); a negative
        # one flipped the surrogate step
        check_real("smooth", self.smooth, minimum=0.0, strict=True)
        # the problem is posed on x >= 0 with u(t, 0) = 1: the closed form continued to x < 0
        # jumps from 0 (t = 0) to 1 + c1 (t -> 0+) there, so b(0) + int b' ds missed the mass
        # of [x0, 0] (0.07 against the closed form's 0.42 at t = 0.05 on [-0.2, 1])
        if self.x_range[0] < 0:
            raise ValueError(
                f"x_range: expected x0 >= 0 for stefan (the problem is posed on x >= 0, with "
                f"u(t, 0) = 1), received {tuple(self.x_range)}"
            )

    def solution(self, t: Tensor | float, x: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact solution for threshold ``param`` = :math:`u^*` (class docstring); ``t, x, param``
        ``[*]`` broadcast -> ``[*]`` (float64). A NaN ``t`` or ``x`` gives NaN, as for the
        other families."""
        _check_broadcast(t=t, x=x, **{self.param_name or "param": param})
        # the constants depend on the parameter only: solved once per parameter, then
        # broadcast over the grid (they were solved at every grid point)
        alpha, c1 = stefan_constants(_f64(param, self.param_name or "param"))
        t, x, alpha, c1 = torch.broadcast_tensors(_f64(t, "t"), _f64(x, "x"), alpha, c1)
        ts = t.clamp_min(1e-300).sqrt()
        inside = (x <= alpha * ts) & (t > 0)
        u = 1 - c1 * torch.erf(x / (2 * ts))
        out = torch.where(inside, u, torch.zeros_like(u))
        out = torch.where((x == 0) & (t <= 0), torch.ones_like(u), out)
        # a NaN position fails ``x <= front`` and was read as "ahead of the front": 0
        return _nan_at(x, _nan_at(t, out))

    def mass(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact total mass :math:`b(t)`: :math:`2c_1\sqrt{t/\pi}` while the front is inside
        (class docstring), 0 for :math:`t \le 0`; ``t, param`` ``[*]`` broadcast -> ``[*]``
        (float64). Differentiable in ``t`` and ``param``; at :math:`t \le 0` the gradient is
        0 (at :math:`t = 0` the left derivative: the right one is :math:`+\infty`, the
        ``boundary_flux(0)`` limit), never NaN."""
        _check_broadcast(t=t, **{self.param_name or "param": param})
        alpha, c1 = stefan_constants(param)
        t = _f64(t, "t")
        x0, x1 = self.x_range
        # t <= 0 (mass 0, masked below) computed at t = 1: sqrt of a clamped 1e-300 gave the
        # masked branch an infinite derivative, and 0 * inf made d mass / dt NaN at t = 0
        # (and subnormal t is clamped in the correction terms, whose x / sqrt(t) overflows)
        started = t > 0
        t_pos = torch.where(started, t, torch.ones_like(t))
        two_ts = 2 * t_pos.clamp_min(1e-300).sqrt()
        z1 = alpha / 2  # the front in y = x / (2 sqrt t)

        def antiderivative(y: Tensor) -> Tensor:  # of 1 - c1 erf(y), zero at y = 0
            return y - c1 * (y * torch.erf(y) + (torch.exp(-y * y) - 1) / math.sqrt(math.pi))

        y0 = torch.minimum(x0 / two_ts, z1)
        y1 = torch.minimum(x1 / two_ts, z1)
        # mass on [0, front] minus the part beyond x1 and the part before x0 (both exactly 0
        # on the default domain while the front is inside it)
        total = 2 * c1 * (t_pos / math.pi).sqrt()
        out = total - two_ts * (antiderivative(z1) - antiderivative(y1))
        out = out - two_ts * antiderivative(y0)
        return _nan_at(t, torch.where(started, out, torch.zeros_like(out)))

    def flux_breaks(self, param: float) -> list[float]:
        r"""Times :math:`(x / \alpha)^2` where the front :math:`\alpha\sqrt t` reaches
        :math:`x_0` and :math:`x_1` (breaks of :math:`b'`)."""
        # the front alpha sqrt(t) reaches x0 and x1 at t = (x / alpha)^2
        # a tensor of several values failed in float() ("only one element tensors")
        alpha = float(stefan_constants(self._check_param(param))[0])
        return [(max(x, 0.0) / alpha) ** 2 for x in self.x_range]

    def boundary_flux(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Net inflow :math:`b'(t) = F|_{x_0} - F|_{x_1}`, :math:`F(t, x) = c_1 e^{-x^2/4t}
        /\sqrt{\pi t}` behind the front (:math:`x \le \alpha\sqrt t`), 0 ahead of it.

        ``t, param`` ``[*]`` broadcast together; the result has their broadcast shape ``[*]``
        (float64). Before the start (``t < 0``) the flux is 0, as :meth:`mass` is. At
        ``t = 0`` it is the
        limit :math:`t \to 0^+`: :math:`+\infty` through a boundary at :math:`x = 0` (the
        :math:`c_1/\sqrt{\pi t}` singularity of the inflow, integrable:
        :math:`b(t) = 2c_1\sqrt{t/\pi}`), 0 through one at :math:`x \ne 0`; so on the default
        domain ``boundary_flux(0) = inf``. A NaN ``t`` gives NaN. (``t <= 0`` used to give
        about ``4.5e149``: the time was clamped to ``1e-300`` and never masked.)
        """
        _check_broadcast(t=t, **{self.param_name or "param": param})
        alpha, c1 = stefan_constants(param)
        t_in = _f64(t, "t")
        t = t_in.clamp_min(1e-300)
        front = alpha * t.sqrt()
        x0, x1 = self.x_range

        def flux(x: float) -> Tensor:  # -u_x behind the front (k = 1 there), 0 ahead of it
            f = c1 / (math.pi * t).sqrt() * torch.exp(-(x * x) / (4 * t))
            f = torch.where(x <= front, f, torch.zeros_like(f))
            at_zero = torch.full_like(f, math.inf if x == 0 else 0.0)  # the limit t -> 0+
            return torch.where(t_in > 0, f, torch.where(t_in == 0, at_zero, torch.zeros_like(f)))

        return _nan_at(t_in, flux(x0) - flux(x1))

    def diffusivity(self, u: ArrayLike, param: ArrayLike) -> Tensor:
        r"""A smooth surrogate of :math:`k(u) = 1\{u \ge u^*\}` (used by SoftC),
        :math:`\sigma((u - u^*)/\epsilon)` with :math:`\epsilon` = ``smooth``: ``u [*]`` ->
        ``[*]``; ``param`` (:math:`u^* \in (0, 1)`) a number or a tensor whose shape
        broadcasts to ``u``'s, every value inside ``param_domain`` (else a ``ValueError``
        naming ``u_star``); a number, list or array takes ``u``'s dtype and device, a tensor is
        used as given (differentiable). A list or array ``u`` is converted.
        Under a :mod:`torch.func` transform ``param``'s values are not read (no domain check)."""
        u, param = self._diffusivity_args(u, param)
        # smooth surrogate of 1{u >= u*} for the SoftC residual (k_min = 0, k_max = 1)
        return torch.sigmoid((u - param) / self.smooth)
