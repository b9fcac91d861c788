r"""The diffusion (heat equation) family of ProbConserv's GPME benchmark (Hansen et al., ICML
2023, §4): constant :math:`k(u) = k` on :math:`[0, 2\pi]`, exact solution
:math:`\sin(x) e^{-k t}` (periodic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..._device import ArrayLike
from ._common import _check_broadcast, _f64, _nan_at
from .base import GPMEProblem

__all__ = ["Diffusion"]


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
        r"""Exact :math:`u = \sin(x)\,e^{-kt}` (``param`` = :math:`k`); ``t, x, param``
        ``[*]`` broadcast -> ``[*]`` (float64)."""
        _check_broadcast(t=t, x=x, **{self.param_name or "param": param})
        self._check_domain(param)
        return torch.sin(_f64(x, "x")) * torch.exp(
            -_f64(param, self.param_name or "param") * _f64(t, "t")
        )

    def _cos_span(self) -> float:
        # cos x0 - cos x1: 0 on the default period (what leaves at 2*pi enters at 0)
        x0, x1 = self.x_range
        return math.cos(x0) - math.cos(x1)

    def mass(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Exact :math:`b(t) = (\cos x_0 - \cos x_1)\,e^{-kt}`: ``t, param`` ``[*]``
        broadcast -> ``[*]`` (float64)."""
        _check_broadcast(t=t, **{self.param_name or "param": param})
        self._check_domain(param)
        t, param = torch.broadcast_tensors(_f64(t, "t"), _f64(param, self.param_name or "param"))
        return _nan_at(t, self._cos_span() * torch.exp(-param * t))

    def boundary_flux(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        r"""Net inflow :math:`b'(t) = -k(\cos x_0 - \cos x_1)\,e^{-kt}`: ``t, param`` ``[*]``
        broadcast -> ``[*]`` (float64)."""
        _check_broadcast(t=t, **{self.param_name or "param": param})
        self._check_domain(param)
        t, param = torch.broadcast_tensors(_f64(t, "t"), _f64(param, self.param_name or "param"))
        x0, x1 = self.x_range  # -k (cos x0 - cos x1) e^{-kt}, written to give +0.0 on a period
        return _nan_at(t, (math.cos(x1) - math.cos(x0)) * param * torch.exp(-param * t))

    def diffusivity(self, u: ArrayLike, param: ArrayLike) -> Tensor:
        r"""The constant :math:`k(u) = k`, shaped like ``u``: ``u [*]`` -> ``[*]``; ``param``
        (:math:`k > 0`) a number or a tensor whose shape broadcasts to ``u``'s, every value
        inside ``param_domain`` (else a ``ValueError`` naming ``k``); a number, list or
        array takes ``u``'s dtype and device, a tensor is used as given (differentiable). A
        list or array ``u`` is converted.
        Under a :mod:`torch.func` transform ``param``'s values are not read (no domain check)."""
        u, param = self._diffusivity_args(u, param)
        return torch.ones_like(u) * param
