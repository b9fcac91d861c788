r"""Validation of grids, test grids, sources and boundary data, solver scalars and grid tensors;
periodogram frequency initialisation."""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_increasing
from .._device import (
    as_tensor,
    check_finite,
    check_on_device,
    own_memory,
    plain_tensor,
    torch_readable,
    values_as_tensor,
)
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..problems.gp_pde import PDEProblem, tensor_grid
from ._errors import NumericalFailure

__all__ = [
    "parse_grid",
    "check_test_axes",
    "eval_on_grid",
    "periodogram_peaks",
    "check_grid_tensor",
]


def check_grid_tensor(
    name: str,
    value,
    shape: tuple[int, ...],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
    finite: bool = True,
    flat_ok: bool = False,
    what: str = "grid tensor",
) -> Tensor:
    """Check that ``value`` is a tensor of shape ``shape`` (or ``[prod(shape)]`` if ``flat_ok``),
    of ``dtype`` and on ``device`` where given, and finite where ``finite``; returns it.
    Non-finite values raise :class:`~._errors.NumericalFailure` (a ``ValueError``): in a fit
    they come from an iterate that became NaN/Inf, not from the user's data (checked earlier)."""
    shapes = [tuple(shape)]
    if flat_ok and len(shape) > 1:
        shapes.append((math.prod(shape),))
    want = " or ".join(str(s) for s in shapes)
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{name}: expected a {what} of shape {want}, received {type(value).__name__}"
        )
    if tuple(value.shape) not in shapes:
        raise ValueError(
            f"{name}: expected a finite {what} of shape {want}, received shape {tuple(value.shape)}"
        )
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the factors'), received {value.dtype}")
    if device is not None:
        check_on_device(name, value, device, "the factors'")
    if finite:
        try:
            check_finite(name, value)
        except ValueError as err:
            raise NumericalFailure(str(err)) from None
    return value


def _check_values(name: str, value, what: str) -> None:
    """Refuse complex values (the cast to the real dtype dropped the imaginary part with only
    torch's warning) and ``meta`` tensors (no values: the copy failed with torch's
    ``NotImplementedError``), naming ``name``; anything else is left to the conversion."""
    if isinstance(value, Tensor):
        if value.device.type == "meta":
            raise ValueError(
                f"{name}: expected {what} with values, received a tensor on the 'meta' device "
                "(it holds none); use a CPU or CUDA tensor"
            )
        complex_ = value.is_complex()
    else:
        complex_ = (
            getattr(value, "dtype", None) is not None and getattr(value.dtype, "kind", "") == "c"
        )  # a numpy array
    if complex_:
        raise TypeError(f"{name}: expected {what}, received complex values ({value.dtype})")


def parse_grid(
    x, *, dtype: torch.dtype, device: torch.device, grid_tensors: str = ""
) -> list[Tensor]:
    r"""Axes ``[n_j]`` of a tensor-product grid.

    ``x`` is a list of 1-D axes, a single 1-D axis (a 1-D grid), or points ``[n_1, ..., n_d, d]``
    / ``[M, d]`` that must form a full tensor product of distinct coordinates, in any order;
    anything else raises ``ValueError`` (``TypeError`` for values that are not numbers).

    ``grid_tensors``: the arguments given as tensors ``[n_1..n_d]``, which are read on the grid
    of the sorted axes (``""``: none). With any, points must come in that grid's row-major
    order (``tensor_grid(axes)``, increasing coordinates): a tensor of values listed in the
    points' own order (reversed, shuffled, or an ``indexing="xy"`` mesh) was read at other
    points without a word; another order is a ``ValueError`` naming the first point out of
    place.
    """

    def _tensor(v, what: str) -> Tensor:
        _check_values(what, v, "real coordinates (grid axes or points [M, d])")
        try:
            # memory of its own: the solver kept a view of the caller's axis otherwise; no
            # graph: an axis that requires grad made each fit step's backward pass run into
            # the graph of a source computed from it ("backward through the graph a second
            # time"); a read-only or flipped array is copied first (torch warned of the one and
            # refused the other)
            # (a tensor subclass as a plain tensor: the kernels computed from it kept the
            # subclass, and save refused them)
            arr = torch_readable(v) if isinstance(v, np.ndarray) else v
            arr = plain_tensor(arr) if isinstance(arr, Tensor) else arr
            return own_memory(torch.as_tensor(arr, dtype=dtype, device=device).detach(), v)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"{what}: expected real coordinates (grid axes or points [M, d]), received "
                f"{type(v).__name__} ({err})"
            ) from None

    if isinstance(x, (list, tuple)) and all(
        isinstance(a, Sequence) or getattr(a, "ndim", 0) >= 1 for a in x
    ):
        axes = [_tensor(a, f"x[{j}]") for j, a in enumerate(x)]
        for j, a in enumerate(axes):
            if a.ndim != 1:  # a [3, 4] axis was flattened into a 12-point axis
                raise ValueError(
                    f"x[{j}]: expected a 1-D grid axis, received shape {tuple(a.shape)}"
                )
    elif (pts := _tensor(x, "x")).ndim == 1:  # a single axis: a 1-D grid
        axes = [pts]
    else:
        if pts.ndim < 2:
            raise ValueError(
                f"x: expected grid axes or points [M, d], received shape {tuple(pts.shape)}"
            )
        if pts.shape[-1] == 0:  # reshape(-1, 0) failed with torch's "ambiguous" error
            raise ValueError(
                f"x: expected points [M, d] with d >= 1 coordinates, received shape "
                f"{tuple(pts.shape)}"
            )
        pts = pts.reshape(-1, pts.shape[-1])
        # before torch.unique: each NaN counts as a distinct coordinate there, and a NaN point
        # was refused as "not a tensor-product grid"
        check_finite("x", pts)
        axes = [torch.unique(pts[:, j]) for j in range(pts.shape[1])]
        if math.prod(a.numel() for a in axes) != pts.shape[0]:
            raise ValueError(
                f"x: expected a tensor-product grid; {pts.shape[0]} points have "
                f"{[a.numel() for a in axes]} distinct coordinates per dimension"
            )
        # every grid point must be present exactly once
        idx = torch.stack(
            [torch.searchsorted(a, pts[:, j].contiguous()) for j, a in enumerate(axes)], -1
        )
        flat = torch.zeros(math.prod(a.numel() for a in axes), dtype=torch.long, device=device)
        lin = torch.zeros(pts.shape[0], dtype=torch.long, device=device)
        for j, a in enumerate(axes):
            lin = lin * a.numel() + idx[:, j]
        flat.index_add_(0, lin, torch.ones_like(lin))
        if bool((flat != 1).any()):
            raise ValueError(
                "x: expected a tensor-product grid; some grid points are missing or repeated"
            )
        if grid_tensors:
            want = tensor_grid(axes).reshape(-1, len(axes))
            off = (pts != want).any(-1).nonzero()
            if off.numel():
                i = int(off[0, 0])
                raise ValueError(
                    f"x: expected the grid points in row-major order of increasing coordinates "
                    f"(the order {grid_tensors} [{', '.join(str(a.numel()) for a in axes)}] "
                    f"is read in), received x[{i}] = {pts[i].tolist()} where "
                    f"{want[i].tolist()} belongs; sort the points (with the values), give x as "
                    "axes, or give the values as callables"
                )
    if not 1 <= len(axes) <= 3:
        raise ValueError(f"x: expected a 1-, 2- or 3-D grid, received {len(axes)} axes")
    for j, a in enumerate(axes):
        check_finite(f"x[{j}]", a)
        if a.numel() < 4:
            raise ValueError(f"x[{j}]: expected at least 4 grid points, received {a.numel()}")
        check_increasing(f"x[{j}]", a, what="coordinates")
    return axes


def _is_number(value) -> bool:
    """Whether ``value`` is one number: a Python number or a 0-d tensor or array."""
    return isinstance(value, numbers.Number) or (
        getattr(value, "ndim", None) == 0 and hasattr(value, "shape")
    )


def _flat_numbers(value) -> bool:
    """Whether ``value`` is a non-empty list or tuple of numbers (Python numbers, 0-d tensors
    or arrays): one axis of points, not one axis per entry."""
    return isinstance(value, list | tuple) and len(value) > 0 and all(_is_number(v) for v in value)


def _stacked(values: list | tuple):
    """A flat sequence of numbers as one axis: 0-d tensors stacked (their device kept),
    anything else left to the conversion."""
    if all(isinstance(v, Tensor) for v in values):
        return torch.stack(list(values))
    return list(values)


def check_test_axes(
    test_axes: Tensor | Sequence[Tensor] | None,
    axes: list[Tensor],
    problem: PDEProblem | None,
    *,
    name: str = "test_axes",
    dtype: torch.dtype,
    device: torch.device,
) -> list[Tensor]:
    """The test axes ``[p_j]`` of a solver on the grid ``axes`` ``[n_j]``: for ``None`` the
    default test grid (``p_j`` evenly spaced points spanning axis ``j``, ``p_j`` the problem's
    ``n_test``, 300 without a problem), else one checked non-empty 1-D tensor per dimension;
    for a 1-D grid also a single axis: a 1-D tensor or array, or a flat list of numbers (each
    number was read as an axis of its own and the list refused), or one number (a one-point
    axis), detached (data: the model's outputs are not differentiable in them). Test points
    outside the collocation axes are warned about (:func:`_warn_outside`); ``name``: the
    caller's argument, named in the refusals."""
    if test_axes is None:
        n = problem.n_test if problem is not None else 300
        return [
            torch.linspace(float(a[0]), float(a[-1]), n, dtype=dtype, device=device) for a in axes
        ]
    if len(axes) == 1 and _is_number(test_axes):  # one point of a 1-D grid
        test_axes = [test_axes]
    flat = _flat_numbers(test_axes)
    if flat:
        if len(axes) == 1:  # the axis of a 1-D grid (its numbers were read as 1-point axes)
            test_axes = [_stacked(test_axes)]
        else:
            raise ValueError(
                f"{name}: expected {len(axes)} test axes (one 1-D tensor per dimension of the "
                f"{len(axes)}-D grid), received a flat sequence of {len(test_axes)} numbers "
                "(the axis of a 1-D grid)"
            )
    test_axes = list(test_axes) if isinstance(test_axes, list | tuple) else [test_axes]
    if len(test_axes) != len(axes):
        raise ValueError(
            f"{name}: expected {len(axes)} test axes (one 1-D tensor per dimension), "
            f"received {len(test_axes)}"
        )
    out = []
    for j, t in enumerate(test_axes):
        label = name if flat else f"{name}[{j}]"  # a flat list is the argument itself
        _check_values(label, t, "real test coordinates")
        # no graph: the exact solution of rel_l2 on an axis that requires grad made torch
        # warn "Converting a tensor with requires_grad=True to a scalar"
        a = as_tensor(label, t, dtype=dtype, device=device, ndim=1).detach()
        if a.numel() == 0:
            raise ValueError(f"{label}: expected a non-empty axis")
        out.append(a)
    _warn_outside(name, out, axes, flat)
    return out


def _warn_outside(name: str, test_axes: list[Tensor], axes: list[Tensor], flat: bool) -> None:
    """A ``UserWarning`` at the user's line naming ``name`` when test points ``[p_j]`` lie
    outside the collocation axes ``[n_j]`` (beyond round-off): there the field is an
    extrapolation of the kernel, which neither the PDE nor the boundary data constrain (the
    posterior's mean reverts to the prior's and its intervals missed the exact solution by
    several standard deviations half an axis beyond the box); it was returned without a
    word."""
    parts = []
    for j, (t, a) in enumerate(zip(test_axes, axes)):
        lo, hi = float(a[0]), float(a[-1])
        tol = 1e-9 * (hi - lo)
        n = int(((t < lo - tol) | (t > hi + tol)).sum())
        if n:
            label = name if flat else f"{name}[{j}]"
            parts.append(f"{label}: {n} of {t.numel()} points outside [{lo:.6g}, {hi:.6g}]")
    if parts:
        warnings.warn(
            f"{'; '.join(parts)} (the collocation grid): there the solution is extrapolated by "
            "the kernel alone, unconstrained by the PDE and the boundary data, and its "
            "posterior is not a solution of the problem",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


def eval_on_grid(name: str, value, axes: list[Tensor], *, finite: bool = True) -> Tensor:
    """Evaluate a callable ``value(*coords)`` or check a tensor on the grid ``[n_1..n_d]``.

    A callable must accept the ``d`` coordinate tensors ``[n_1..n_d]`` as positional arguments;
    the values must be real, of shape ``[n_1..n_d]`` (a number, or a callable's 0-d result, is
    the constant field of that value) and, if ``finite``, finite (errors name
    ``name``; ``finite=False`` leaves the check to the caller, e.g. on the faces only).
    """
    shape = tuple(a.numel() for a in axes)
    ref = axes[0]
    d = len(axes)
    if callable(value):
        coords = tensor_grid(axes).unbind(-1)
        try:
            sig = inspect.signature(value)
        except (TypeError, ValueError):  # no introspectable signature (some builtins)
            sig = None
        if sig is not None:
            try:
                sig.bind(*coords)
            except TypeError as err:
                args = ", ".join(f"x{j + 1}" for j in range(d))
                raise TypeError(
                    f"{name}: expected a callable {name}({args}) of the {d} grid coordinate "
                    f"tensors (one per dimension), received one with signature {sig} ({err})"
                ) from None
        out = value(*coords)
        what = f"{name}(...) returned"
    else:
        out = value
        what = "received"
    if isinstance(out, Tensor) and out.device.type == "meta":
        raise ValueError(
            f"{name}: expected real values of shape {shape} on the grid; {what} a tensor on "
            "the 'meta' device (it holds none); use a CPU or CUDA tensor"
        )
    if not isinstance(out, Tensor):
        try:
            # a list source was rounded to float32 (~7 digits) before the float64 cast
            out = values_as_tensor(out)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name}: expected real values of shape {shape} on the grid; {what} "
                f"{type(out).__name__}"
            ) from None
    if out.is_complex():
        raise TypeError(
            f"{name}: expected real values of shape {shape} on the grid; {what} complex "
            f"values ({out.dtype})"
        )
    # memory of its own (a copy unless the cast made one): a view of the caller's tensor or
    # array, or of one a callable returns, saw the caller's later edits (a buffer reused to
    # build the next solver changed the earlier solvers' source). Data, not a parameter: a
    # tensor that requires grad kept its graph, so that each fit step's backward pass
    # accumulated gradients into the caller's tensor (and the model could not be deep-copied)
    # (a tensor subclass, given or returned by a callable, as a plain tensor: parse_grid)
    out = own_memory(plain_tensor(out.detach()).to(dtype=ref.dtype, device=ref.device), out)
    if out.ndim == 0:  # a number (or a callable's): the constant field, e.g. boundary=0.0
        out = out.expand(shape).clone()
    if tuple(out.shape) != shape:
        raise ValueError(
            f"{name}: expected values of shape {shape} on the grid, received {tuple(out.shape)}"
        )
    if finite:
        check_finite(name, out)
    return out


def periodogram_peaks(f: Tensor, x: Tensor, dim: int, q: int, pad: int = 8) -> Tensor:
    r"""Up to ``q`` frequencies (cycles per unit) of the largest periodogram peaks of ``f`` along
    ``dim``.

    Hann window, ``pad``-fold zero padding, power summed over the other dimensions; peaks
    sorted by power. On an unevenly spaced axis (e.g. Chebyshev points) ``f`` is first
    interpolated linearly onto ``n`` evenly spaced points of the same interval, so that the
    discrete Fourier transform's frequencies mean cycles per unit of ``x`` (the first spacing
    taken as the step put a Chebyshev grid's peaks ~35x too high).
    """
    n = x.numel()
    fv = torch.movedim(f, dim, -1).reshape(-1, n)
    h = float(x[-1] - x[0]) / (n - 1)
    dx = x[1:] - x[:-1]
    if float((dx - h).abs().max()) > 1e-3 * h:  # even to 0.1 % (float32 linspace): as is
        u = torch.linspace(float(x[0]), float(x[-1]), n, dtype=x.dtype, device=x.device)
        hi = torch.searchsorted(x.contiguous(), u).clamp(1, n - 1)
        w = ((u - x[hi - 1]) / (x[hi] - x[hi - 1])).to(fv.dtype)
        fv = fv[:, hi - 1] * (1 - w) + fv[:, hi] * w
    win = torch.hann_window(n, periodic=False, dtype=f.dtype, device=f.device)
    P = (torch.fft.rfft(fv * win, n=pad * n).abs() ** 2).sum(0)
    fr = torch.fft.rfftfreq(pad * n, d=h, dtype=f.dtype, device=f.device)
    loc = (P[1:-1] > P[:-2]) & (P[1:-1] >= P[2:])
    idx = torch.nonzero(loc).squeeze(-1) + 1
    if P[0] > P[1]:
        idx = torch.cat([torch.zeros(1, dtype=idx.dtype, device=idx.device), idx])
    idx = idx[torch.argsort(P[idx], descending=True)][:q]
    return fr[idx]
