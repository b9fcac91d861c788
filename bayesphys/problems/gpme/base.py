"""The base class of the GPME families of ProbConserv (Hansen et al., ICML 2023, §4):
:class:`GPMEProblem`, the interface of an exact solution, its total mass and boundary flux,
with the parameter-domain checks and the evaluation grid shared by every family.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor

from ..._checks import check_broadcasts, check_int, check_range, check_real
from ..._context_flag import ContextFlag
from ..._device import ArrayLike, as_tensor, values_readable
from ._common import _F64, _f64, _real

__all__ = ["GPMEProblem"]

#: set by :func:`params_checked`: the ``param`` values given to :meth:`GPMEProblem.diffusivity`
#: were checked against ``param_domain`` already (once, before a training loop)
_PARAMS_CHECKED = ContextFlag("gpme_params_checked")


def params_checked() -> AbstractContextManager[None]:
    """Within this block :meth:`GPMEProblem.diffusivity` does not read ``param``'s values for
    the domain check: for a training step (ProbConserv's SoftC penalty) whose parameters were
    checked once before the loop (a read per step was a device synchronisation per step)."""
    return _PARAMS_CHECKED.raised()


@dataclass(frozen=True)
class GPMEProblem:
    """Base class of a one-parameter GPME family.

    Attributes
    ----------
    name
        problem id (``"diffusion"``, ``"pme"``, ``"stefan"``).
    param_name
        name of the varied parameter (``k``, ``m``, ``u_star``).
    x_range, t_range
        domain.
    train_range
        the parameter is drawn ``U(train_range)`` for training functions.
    param_domain
        the open interval where the family is defined (checked by ``make_dataset``);
        ``train_range`` must lie inside it.
    test_params
        the paper's test parameters; ``table_time``: the time of the paper's tables
        (inside ``t_range``).
    """

    name: str = ""
    param_name: str = ""
    x_range: tuple[float, float] = (0.0, 1.0)
    t_range: tuple[float, float] = (0.0, 1.0)
    train_range: tuple[float, float] = (1.0, 2.0)
    param_domain: tuple[float, float] = (-math.inf, math.inf)
    test_params: tuple[float, ...] = ()
    table_time: float = 0.5

    def __post_init__(self) -> None:
        # a reversed or empty domain was accepted and gave reversed grids, negative masses
        # and sign-flipped fluxes without a word
        check_range("x_range", self.x_range)
        lo, hi = check_range("t_range", self.t_range)
        # a reversed train_range drew parameters without a word, one outside the family's
        # domain failed only at the first draw; a table_time that is NaN or outside t_range
        # failed at the first posterior, naming a t the user never passed
        self.check_params("train_range", *check_range("train_range", self.train_range))
        t = check_real("table_time", self.table_time)
        if not lo <= t <= hi:
            raise ValueError(
                f"table_time: expected a time in t_range [{lo:g}, {hi:g}], received {t:g}"
            )

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
        p = _f64(param, self.param_name or "param")
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
        """Exact :math:`u(t, x; \\theta)`; ``t, x, param`` (numbers or tensors ``[*]``) broadcast
        together; the result has their broadcast shape ``[*]`` (float64)."""
        raise NotImplementedError

    def mass(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        """Exact total mass :math:`b(t) = \\int_{x_0}^{x_1} u(t,x)\\,dx` over ``x_range``.

        ``t, param`` (numbers or tensors ``[*]``) broadcast together; the result has their
        broadcast shape ``[*]`` (float64), e.g. ``t [nt]`` -> ``[nt]``. It is
        the integral of :meth:`solution` for every ``t`` (also past ``t_range``, e.g. once a
        front has left the domain); a NaN ``t`` gives NaN, as :meth:`solution` does."""
        raise NotImplementedError

    def flux_breaks(self, param: float) -> list[float]:
        """Times at which :math:`b'(t)` has a kink or a jump (a front reaching a domain end);
        :func:`mass_from_fluxes` splits its quadrature there. None by default."""
        self._check_param(param)
        return []

    def _check_param(self, param) -> float:
        """One parameter value (a number or a one-element tensor) inside the open
        ``param_domain``, as a float, or an error naming ``param_name``."""
        p = _real(self.param_name or "param", param)
        self.check_params(self.param_name or "param", p, p)
        return p

    def boundary_flux(self, t: Tensor | float, param: Tensor | float) -> Tensor:
        """Net inflow :math:`F|_{x_0} - F|_{x_1} = b'(t)` through the boundary.

        Same shapes (``t, param`` ``[*]`` broadcast -> ``[*]``) and validity as :meth:`mass`
        (a NaN ``t`` gives NaN)."""
        raise NotImplementedError

    def diffusivity(self, u: ArrayLike, param: ArrayLike) -> Tensor:
        """:math:`k(u)` (differentiable surrogate where :math:`k` jumps, used by SoftC):
        ``u [*]`` -> ``[*]``, ``param`` broadcasting to ``u`` (tensors, or lists, arrays and
        numbers, converted)."""
        raise NotImplementedError

    def _diffusivity_args(self, u: ArrayLike, param: ArrayLike) -> tuple[Tensor, Tensor]:
        """:meth:`diffusivity`'s arguments checked: ``u`` a real tensor ``[*]`` (a tensor passes
        unchanged, its dtype, device and graph kept; a list, array or number is converted, an
        integral one to the default floating dtype), ``param`` real, every value inside the
        open ``param_domain`` (NaN refused; not read under a :mod:`torch.func` transform or
        inside :func:`params_checked`) and of a shape that broadcasts to ``u``'s; a
        number, list or array ``param`` is converted to ``u``'s dtype and device (a float64
        one did not promote a float32 ``u``), a tensor passes unchanged. A list ``u`` failed
        with an ``AttributeError``, a NaN or out-of-domain ``param`` gave NaN or a wrong
        :math:`k` silently, a string one failed inside torch."""
        name = self.param_name or "param"
        if not isinstance(u, Tensor):
            u = as_tensor("u", u, real=True, finite=False)
        if u.is_complex() or u.dtype == torch.bool:
            raise TypeError(f"u: expected real values, received {u.dtype}")
        if not u.is_floating_point():
            u = u.to(torch.get_default_dtype())
        if not isinstance(param, Tensor):
            param = as_tensor(name, param, real=True, finite=False)
            if param.dtype == torch.bool:
                raise TypeError(f"{name}: expected real values, received {param.dtype}")
            param = param.to(dtype=u.dtype, device=u.device)
        elif param.is_complex() or param.dtype == torch.bool:
            raise TypeError(f"{name}: expected real values, received {param.dtype}")
        check_broadcasts(
            name,
            param.shape,
            u.shape,
            f"a number or a tensor that broadcasts to u's shape {tuple(u.shape)}",
        )
        # the values are read where they can be (not under a torch.func transform or while
        # torch.compile traces) and were not checked already (params_checked)
        if not _PARAMS_CHECKED.is_raised() and values_readable(param):
            self._check_domain(param)
        return u, param

    # -- shared ------------------------------------------------------------------------------
    def grid(self, n: int = 201) -> Tensor:
        """Uniform spatial grid ``[n]`` including both endpoints (float64), ``n >= 2``."""
        return torch.linspace(*self.x_range, check_int("n", n, minimum=2), dtype=_F64)

    def setting(self, param: float) -> dict[str, float]:
        """Benchmark setting dict, e.g. ``{"m": 3, "t": 0.5}`` (``param`` one value inside
        ``param_domain``)."""
        # a parameter outside the family (m = -1) was labelled without a word
        p = self._check_param(param)
        return {self.param_name: int(p) if p == int(p) else p, "t": self.table_time}
