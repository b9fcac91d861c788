r"""High-frequency and multi-scale PDE benchmarks of GP-HM (Fang et al., ICLR 2024) with exact
solutions.

Sign conventions follow the reference code: Poisson :math:`\Delta u = f` (not :math:`-\Delta u`),
Allen-Cahn :math:`\Delta u + u(u^2 - 1) = f`, advection :math:`\beta u_x + u_t = 0`. The source
:math:`f` is obtained from the exact :math:`u` by automatic differentiation (float64); boundary
data are the exact :math:`u` on the two end points (1-D) or on the four grid edges (2-D).

========================  ==============================================================  ==========  ===  ==========
id                        exact :math:`u`                                                 domain      N    freq_scale
========================  ==============================================================  ==========  ===  ==========
poisson1d-sin100          :math:`\sin 100x`                                               [0, 2pi]    400  20
poisson1d-xsin200         :math:`x \sin 200x`                                             [0, 2pi]    900  50
poisson1d-multiscale      :math:`\sin x + 0.1\sin 20x + 0.05\cos 100x`                    [0, 1]      900  30
poisson1d-multiscale-sin  same with :math:`0.05\sin 100x` (what the code ran)             [0, 1]      900  30
poisson1d-sin500-trend    :math:`\sin 500x - 2(x - 0.5)^2`                                [0, 1]      400  100
poisson1d-low             :math:`\sin(2\pi x) + x` (test problem)                         [0, 1]      64   4
allencahn1d-sin100        :math:`\sin 100x`                                               [0, 2pi]    400  20
poisson2d-sin100          :math:`\sin 100x \sin 100y`                                     [0, 2pi]^2  400  20
poisson2d-low             :math:`\sin(\pi x)\sin(2\pi y) + xy` (test)                     [0, 1]^2    32   4
allencahn2d-multiscale    :math:`h(x)h(y)`, :math:`h = \sin t + 0.1\sin 20t + \cos 100t`  [0, 1]^2    400  30
advection                 :math:`\sin(x - 200 t)`, :math:`\beta = 200`                    [0, 1]^2    200  40
allencahn2d-low           :math:`\sin(\pi x)\sin(2\pi y) + xy` (test)                     [0, 1]^2    24   4
advection-low             :math:`\sin 2\pi(x - 2t)`, :math:`\beta = 2` (test)             [0, 1]^2    24   4
========================  ==============================================================  ==========  ===  ==========
"""  # noqa: E501

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import check_int, did_you_mean
from .._detached import warn_detached
from .._device import AxisLike, DTypeLike, as_tensor, resolve_dtype
from .._model import autograd_on

__all__ = [
    "PDEProblem",
    "get_problem",
    "PROBLEMS",
    "problem_ids",
    "solution_frequencies",
    "tensor_grid",
]

_F64 = torch.float64
EQUATIONS = ("poisson", "allencahn", "advection")


def tensor_grid(axes: list[Tensor]) -> Tensor:
    """Points of the tensor-product grid ``[n_1, ..., n_d, d]`` (``indexing="ij"``)."""
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


@dataclass(frozen=True)
class PDEProblem:
    r"""A PDE on a box with a known solution.

    Attributes
    ----------
    name
        problem id.
    equation
        ``"poisson"``, ``"allencahn"`` or ``"advection"``.
    domain
        ``((lo_1, hi_1), ..., (lo_d, hi_d))``.
    n_col
        collocation points per dimension (the paper's grid).
    exact
        :math:`u(x_1, ..., x_d)`, elementwise on ``d`` coordinate tensors of equal shape
        ``[*]`` -> ``[*]``.
    freq_scale
        the paper's frequency initialisation scale.
    llk_weight
        :math:`\lambda_b`, the boundary-likelihood weight (200; 500 for advection).
    beta
        advection speed.
    """

    name: str
    equation: str
    domain: tuple[tuple[float, float], ...]
    n_col: int
    exact: Callable[..., Tensor]
    freq_scale: float
    llk_weight: float = 200.0
    beta: float = 0.0
    n_test: int = 300
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """``d``, the number of coordinates (``len(domain)``)."""
        return len(self.domain)

    def __reduce__(self):
        # a registered problem pickles as its name, the same object where it unpickles (a user's
        # own exact solution may be a lambda, which pickle cannot store: GPPDESolver failed
        # under multiprocessing, joblib, fit_many); a problem a user registers unpickles where
        # the registration ran again (a module-level one does in spawned workers), as
        # registered() lets it be saved by name
        if PROBLEMS.get(self.name) is self:
            return (get_problem, (self.name,))
        return super().__reduce__()

    def axes(
        self,
        n: int | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: DTypeLike = _F64,
    ) -> list[Tensor]:
        """Uniform grid axes, each ``[n]`` (default ``n_col``), end points included; ``n`` an int
        ``>= 2`` (``int(n)`` truncated 2.7 to 2 and took 0); ``dtype`` floating (an integer
        dtype rounded the axes)."""
        n = self.n_col if n is None else check_int("n", n, minimum=2)
        dtype = resolve_dtype(dtype)
        return [torch.linspace(lo, hi, n, dtype=dtype, device=device) for lo, hi in self.domain]

    def _check_axes(self, axes: Sequence[AxisLike]) -> list[Tensor]:
        """One 1-D axis per dimension (another count failed inside ``exact`` with "missing 1
        required positional argument", or with a shape error for a 2-D tensor), as tensors:
        a sequence of numbers or an array is converted (:func:`~bayesphys._device.as_tensor`;
        it was refused) in the dtype and on the device of the first tensor axis, float64 on
        the CPU without one. Every axis is taken in one floating dtype, the promotion of the
        floating tensor axes' (float64 without one): integer or boolean axes, or axes of
        mixed float dtypes, failed inside ``torch.meshgrid`` or autograd (an integer-only
        grid gave a float32 solution); complex axes are a ``TypeError``."""
        if isinstance(axes, Tensor) or len(axes) != self.dim:
            got = (
                f"a tensor of shape {tuple(axes.shape)}" if isinstance(axes, Tensor) else len(axes)
            )
            raise ValueError(
                f"axes: expected a list of {self.dim} 1-D axes (one per dimension of "
                f"{self.name!r}), received {got}"
            )
        floats = [a for a in axes if isinstance(a, Tensor) and a.is_floating_point()]
        dtype, device = (_F64, None) if not floats else (floats[0].dtype, floats[0].device)
        for a in floats[1:]:
            dtype = torch.promote_types(dtype, a.dtype)
        out = []
        for j, a in enumerate(axes):
            if isinstance(a, Tensor) and a.is_complex():
                raise TypeError(f"axes[{j}]: expected real coordinates, received {a.dtype}")
            if not isinstance(a, Tensor):
                a = as_tensor(f"axes[{j}]", a, dtype=dtype, device=device, finite=False, real=True)
            if a.ndim != 1:
                raise ValueError(f"axes[{j}]: expected a 1-D tensor, received {tuple(a.shape)}")
            out.append(a if a.dtype == dtype else a.to(dtype))
        return out

    def solution(self, axes: Sequence[AxisLike]) -> Tensor:
        """Exact :math:`u` on the tensor grid of ``axes`` (``d`` 1-D axes ``[n_j]``: tensors,
        arrays or sequences of numbers), ``[n_1, ..., n_d]``."""
        pts = tensor_grid(self._check_axes(axes))
        return self.exact(*pts.unbind(-1))

    def source(self, axes: Sequence[AxisLike]) -> Tensor:
        r"""Source :math:`f` on the tensor grid of ``axes`` (``d`` 1-D axes ``[n_j]``:
        tensors, arrays or sequences of numbers), ``[n_1, ..., n_d]``, by autograd of
        ``exact``; detached from ``axes`` (not differentiable in them: axes that require grad
        are a ``UserWarning``; :meth:`solution` is differentiable)."""
        warn_detached("PDEProblem.source", axes=axes)
        axes = self._check_axes(axes)
        pts = tensor_grid([a.detach() for a in axes])
        with autograd_on():  # also inside torch.no_grad() / inference_mode()
            cs = [c.clone().requires_grad_(True) for c in pts.unbind(-1)]
            u = self.exact(*cs)
            firsts = _derivatives(u, cs, create_graph=True)
            if self.equation == "advection":
                return (self.beta * firsts[0] + firsts[1]).detach()
            lap = 0
            for c, g in zip(cs, firsts):
                lap = lap + _derivatives(g, [c], create_graph=False)[0]
        f = lap.detach()
        if self.equation == "allencahn":
            ud = u.detach()
            f = f + ud * (ud * ud - 1)
        return f


def _derivatives(y: Tensor, xs: list[Tensor], *, create_graph: bool) -> list[Tensor]:
    r""":math:`\partial (\sum y) / \partial x` for each ``x`` of ``xs`` (each ``[*]``), zero
    where ``y`` does not depend on it: an exact solution constant in a coordinate (``u = 1``,
    ``u = x`` in 2-D) or linear in it (its second derivative) failed with autograd's "element
    0 of tensors does not require grad" or "appears to not have been used in the graph"."""
    if not (isinstance(y, Tensor) and y.requires_grad):
        return [torch.zeros_like(x) for x in xs]
    out = torch.autograd.grad(
        y.sum(), xs, create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    return [torch.zeros_like(x) if g is None else g for g, x in zip(out, xs)]


def _p(name, eq, dom, n, fn, fs, **kw) -> PDEProblem:
    return PDEProblem(name, eq, tuple(dom), n, fn, fs, **kw)


_TWO_PI = 2 * math.pi


def _h(t):
    return torch.sin(t) + 0.1 * torch.sin(20 * t) + torch.cos(100 * t)


# the exact solutions, module-level functions (not lambdas) so that a problem copied with
# dataclasses.replace (a custom or modified problem), and a solver holding it, pickle
def _sin100(x: Tensor) -> Tensor:
    return torch.sin(100 * x)


def _xsin200(x: Tensor) -> Tensor:
    return x * torch.sin(200 * x)


def _multiscale(x: Tensor) -> Tensor:
    return torch.sin(x) + 0.1 * torch.sin(20 * x) + 0.05 * torch.cos(100 * x)


def _multiscale_sin(x: Tensor) -> Tensor:
    return torch.sin(x) + 0.1 * torch.sin(20 * x) + 0.05 * torch.sin(100 * x)


def _sin500_trend(x: Tensor) -> Tensor:
    return torch.sin(500 * x) - 2 * (x - 0.5) ** 2


def _low1d(x: Tensor) -> Tensor:
    return torch.sin(_TWO_PI * x) + x


def _sin100_2d(x: Tensor, y: Tensor) -> Tensor:
    return torch.sin(100 * x) * torch.sin(100 * y)


def _low2d(x: Tensor, y: Tensor) -> Tensor:
    return torch.sin(math.pi * x) * torch.sin(_TWO_PI * y) + x * y


def _multiscale_2d(x: Tensor, y: Tensor) -> Tensor:
    return _h(x) * _h(y)


def _advection_low(x: Tensor, t: Tensor) -> Tensor:
    return torch.sin(_TWO_PI * (x - 2 * t))


def _advection(x: Tensor, t: Tensor) -> Tensor:
    return torch.sin(x - 200 * t)


PROBLEMS: dict[str, PDEProblem] = {
    p.name: p
    for p in [
        _p("poisson1d-sin100", "poisson", [(0, _TWO_PI)], 400, _sin100, 20),
        _p(
            "poisson1d-xsin200",
            "poisson",
            [(0, _TWO_PI)],
            900,
            _xsin200,
            50,
        ),
        _p(
            "poisson1d-multiscale",
            "poisson",
            [(0, 1)],
            900,
            _multiscale,
            30,
        ),
        _p(
            "poisson1d-multiscale-sin",
            "poisson",
            [(0, 1)],
            900,
            _multiscale_sin,
            30,
        ),
        _p(
            "poisson1d-sin500-trend",
            "poisson",
            [(0, 1)],
            400,
            _sin500_trend,
            100,
        ),
        _p("poisson1d-low", "poisson", [(0, 1)], 64, _low1d, 4),
        _p("allencahn1d-sin100", "allencahn", [(0, _TWO_PI)], 400, _sin100, 20),
        _p(
            "poisson2d-sin100",
            "poisson",
            [(0, _TWO_PI), (0, _TWO_PI)],
            400,
            _sin100_2d,
            20,
        ),
        _p(
            "poisson2d-low",
            "poisson",
            [(0, 1), (0, 1)],
            32,
            _low2d,
            4,
        ),
        _p(
            "allencahn2d-multiscale",
            "allencahn",
            [(0, 1), (0, 1)],
            400,
            _multiscale_2d,
            30,
        ),
        _p(
            "allencahn2d-low",
            "allencahn",
            [(0, 1), (0, 1)],
            24,
            _low2d,
            4,
        ),
        _p(
            "advection-low",
            "advection",
            [(0, 1), (0, 1)],
            24,
            _advection_low,
            4,
            llk_weight=500.0,
            beta=2.0,
        ),
        _p(
            "advection",
            "advection",
            [(0, 1), (0, 1)],
            200,
            _advection,
            40,
            llk_weight=500.0,
            beta=200.0,
        ),
    ]
}


#: the highest frequency of each registered exact solution along each coordinate, in cycles
#: per unit length (:math:`\sin 100x`: :math:`100 / 2\pi`), keyed by the solution itself: a
#: problem copied with another ``exact`` has none
_SOLUTION_FREQUENCIES: dict[Callable[..., Tensor], tuple[float, ...]] = {
    _sin100: (100 / _TWO_PI,),
    _xsin200: (200 / _TWO_PI,),
    _multiscale: (100 / _TWO_PI,),
    _multiscale_sin: (100 / _TWO_PI,),
    _sin500_trend: (500 / _TWO_PI,),
    _low1d: (1.0,),
    _sin100_2d: (100 / _TWO_PI, 100 / _TWO_PI),
    _low2d: (0.5, 1.0),
    _multiscale_2d: (100 / _TWO_PI, 100 / _TWO_PI),
    _advection_low: (1.0, 2.0),
    _advection: (1 / _TWO_PI, 200 / _TWO_PI),
}


def solution_frequencies(problem: PDEProblem) -> tuple[float, ...] | None:
    r"""The highest frequency :math:`\nu_i` (cycles per unit length) of ``problem``'s exact
    solution along each of its ``d`` coordinates, for the registered solutions (``None`` for
    any other ``exact``): a uniform grid of ``n`` points over a length :math:`L_i` resolves it
    only below its Nyquist frequency, :math:`\nu_i \le (n - 1) / (2 L_i)`."""
    return _SOLUTION_FREQUENCIES.get(problem.exact)


def problem_ids() -> list[str]:
    """All problem ids."""
    return list(PROBLEMS)


def get_problem(name: str, *, argument: str = "name") -> PDEProblem:
    """The :class:`PDEProblem` called ``name`` (see the module table); ``argument`` is the
    caller's name for it in the error."""
    if name not in PROBLEMS:
        raise ValueError(
            f"{argument}: expected one of {problem_ids()}, received {name!r}"
            f"{did_you_mean(name, problem_ids())}"
        )
    return PROBLEMS[name]
