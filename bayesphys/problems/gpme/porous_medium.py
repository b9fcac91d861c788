r"""The porous medium equation (PME) family of ProbConserv's GPME benchmark (Hansen et al.,
ICML 2023, §4): :math:`k(u) = u^m` on :math:`x, t \in [0, 1]`, exact travelling wave
:math:`(m\,\mathrm{ReLU}(t-x))^{1/m}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..._device import ArrayLike
from ._common import _check_broadcast, _f64, _nan_at, _pos_pow
from .base import GPMEProblem

__all__ = ["PorousMedium"]


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
        r"""Exact solution :math:`u = (m\,\mathrm{ReLU}(t-x))^{1/m}` for exponent ``param`` =
        :math:`m`; ``t, x, param`` ``[*]`` broadcast -> ``[*]`` (float64). Differentiable
        in ``t``, ``x`` and ``param``, with gradient 0 ahead of the front (``x >= t``; a plain
        power gave NaN gradients there, :math:`0^{1/m - 1} \cdot 0`); a NaN ``t`` or ``x``
        gives NaN."""
        _check_broadcast(t=t, x=x, **{self.param_name or "param": param})
        self._check_domain(param)
        m, t, x = _f64(param, self.param_name or "param"), _f64(t, "t"), _f64(x, "x")
        return _nan_at(x, _nan_at(t, _pos_pow(m * torch.relu(t - x), 1.0 / m)))

    def mass(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact total mass :math:`b(t)` over ``x_range`` (class docstring): ``t, param``
        ``[*]`` broadcast -> ``[*]`` (float64)."""
        _check_broadcast(t=t, **{self.param_name or "param": param})
        self._check_domain(param)
        m, t = _f64(param, self.param_name or "param"), _f64(t, "t")
        x0, x1 = self.x_range
        s0, s1 = (t - x0).clamp_min(0), (t - x1).clamp_min(0)
        p = 1 + 1 / m
        return _nan_at(t, m.pow(p) / (m + 1) * (_pos_pow(s0, p) - _pos_pow(s1, p)))

    def boundary_flux(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Net inflow :math:`b'(t) = F|_{x_0} - F|_{x_1}` through the boundary (class
        docstring): ``t, param`` ``[*]`` broadcast -> ``[*]`` (float64)."""
        _check_broadcast(t=t, **{self.param_name or "param": param})
        # -u^m u_x equals (m (t - x))^{1/m} behind the front, 0 ahead of it: inflow at x0,
        # outflow at x1 once the front has reached it
        self._check_domain(param)
        m, t = _f64(param, self.param_name or "param"), _f64(t, "t")
        x0, x1 = self.x_range
        s0, s1 = (t - x0).clamp_min(0), (t - x1).clamp_min(0)
        return _nan_at(t, _pos_pow(m * s0, 1 / m) - _pos_pow(m * s1, 1 / m))

    def flux_breaks(self, param: float) -> list[float]:
        r"""Times where the front :math:`x = t` reaches :math:`x_0` and :math:`x_1` (kinks of
        :math:`b'`)."""
        # the front x = t reaches x0 (inflow starts) and x1 (outflow starts)
        self._check_param(param)  # m = -1 has no front, yet its breaks were listed
        return [float(v) for v in self.x_range]

    def diffusivity(self, u: ArrayLike, param: ArrayLike) -> Tensor:
        r""":math:`k(u) = \max(u, 0)^m`: ``u [*]`` -> ``[*]``; ``param`` (:math:`m > 0`) a
        number or a tensor whose shape broadcasts to ``u``'s, every value inside
        ``param_domain`` (else a ``ValueError`` naming ``m``); a number, list or array takes
        ``u``'s dtype and device, a tensor is used as given (differentiable). A list or array
        ``u`` is converted.
        Under a :mod:`torch.func` transform ``param``'s values are not read (no domain check)."""
        u, param = self._diffusivity_args(u, param)
        return u.clamp_min(0).pow(param)
