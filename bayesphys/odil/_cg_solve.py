r"""Conjugate gradients for the (damped) normal equations of :func:`~bayesphys.odil.minimize`:
the argument checks around :func:`bayesphys._linalg.pcg_with_breakdown`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_int, check_real
from .._device import check_finite
from .._linalg import pcg_with_breakdown


def cg(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    x0: Tensor | None = None,
    tol: float = 1e-8,
    maxiter: int = 500,
    precond: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, int, float]:
    r"""Preconditioned conjugate gradients for SPD :math:`A x = b` (``b [n]`` or ``[n, k]``,
    columns solved together); :func:`bayesphys._linalg.pcg`. Stops when
    :math:`\lVert b - Ax\rVert \le \mathrm{tol}\,\lVert b\rVert` (per column); a column
    whose curvature :math:`p^\top Ap \le 0` (breakdown) keeps its last iterate while the
    others go on. Returns ``(x, iterations, relative residual)`` (the largest over the
    columns). ``tol >= 0``, ``maxiter >= 1``; ``matvec``
    (and ``precond``, if given) callables, ``b`` a tensor and ``x0`` of ``b``'s shape (taken
    in ``b``'s dtype and on its device, as :func:`minimize` takes its ``x0`` in the problem's);
    ``b`` and ``x0`` finite (a NaN right-hand side ran all ``maxiter`` iterations and returned
    a NaN solution without a word); each ``matvec(v)`` and ``precond(v)`` a finite tensor of
    ``v``'s shape (a ``ValueError`` naming it otherwise).
    """
    if isinstance(b, Tensor):
        check_finite("b", b)
    if isinstance(x0, Tensor):
        check_finite("x0", x0)
    _check_callable("matvec", matvec)
    if precond is not None:
        _check_callable("precond", precond)
        precond = _checked_product("precond", precond)
    x, it, rel, _ = cg_with_breakdown(
        _checked_product("matvec", matvec), b, x0=x0, tol=tol, maxiter=maxiter, precond=precond
    )
    return x, it, rel


def _checked_product(name: str, fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``fn`` (a user's ``matvec`` or ``precond`` of :func:`cg`) refusing, by ``name``, a
    result that is not a tensor of its argument's shape (a product of another length was
    broadcast into the iterate: CG returned values of 1e15 without a word; a list failed
    inside torch) or not finite (every remaining iteration ran on NaN)."""

    def product(v: Tensor) -> Tensor:
        out = fn(v)
        if not isinstance(out, Tensor) or out.shape != v.shape:
            got = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"{name}: expected a tensor of its argument's shape {tuple(v.shape)} (b's), "
                f"received {got}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ValueError(
                f"{name}: returned non-finite values (NaN or infinite) for a finite argument"
            )
        return out

    return product


def cg_with_breakdown(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    x0: Tensor | None = None,
    tol: float = 1e-8,
    maxiter: int = 500,
    precond: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, int, float, Tensor]:
    r""":func:`cg`, also returning which columns stopped on a breakdown (non-positive
    curvature :math:`p^\top Ap \le 0`, which more iterations do not mend): ``(x, iterations,
    relative residual, broken)``, ``broken`` a bool tensor ``[k]`` for ``b [n, k]``, ``[]``
    for ``b [n]`` (:func:`bayesphys._linalg.pcg_with_breakdown`)."""
    tol = check_real("tol", tol, minimum=0.0)
    maxiter = check_int("maxiter", maxiter, minimum=1)
    _check_callable("matvec", matvec)
    if precond is not None:
        _check_callable("precond", precond)
    if not isinstance(b, Tensor):
        raise TypeError(f"b: expected a tensor, received {type(b).__name__}")
    if x0 is not None and (not isinstance(x0, Tensor) or x0.shape != b.shape):
        got = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"x0: expected a tensor of b's shape {tuple(b.shape)}, received {got}")
    if x0 is not None:  # another dtype or device failed inside the first matrix product
        x0 = x0.to(dtype=b.dtype, device=b.device)
    return pcg_with_breakdown(
        matvec, b, precond=precond, x0=x0, tol=tol, maxiter=maxiter, columns=b.ndim == 2
    )


def _check_callable(name: str, fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"{name}: expected a callable, received {type(fn).__name__}")
