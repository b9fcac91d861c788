r"""One damped Gauss-Newton step of :func:`~bayesphys.odil.minimize`: the linearisation of the
residuals at ``x`` (:func:`_linearise`, kept while LM retries a rejected step) and the solve of
:math:`(J^\top J + \lambda I)\delta = -J^\top r` from it (:func:`_damped_step`) by CG, sparse LU
or a dense Cholesky."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._linalg import lstsq_any_rank
from ._cg_solve import cg_with_breakdown
from ._jacobian import check_dense_gn_memory, dense_jacobian, jvp_vjp
from .sparse import sparse_normal_solve


def _checked_jacobian(out: object, n: int, m: int | None = None) -> tuple[Tensor, Tensor]:
    """The ``(r [m], J [m, n])`` pair a user ``jacobian(x)`` returned, or a clear error;
    ``m``, when given, the number of the problem's residuals (a pair of another length, e.g.
    one that left out a residual term, was fitted without a word: the steps minimised its
    residuals, not the problem's)."""
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
        raise TypeError(
            f"jacobian: expected jacobian(x) to return a pair of tensors (r [m], J [m, {n}]), "
            f"received {type(out).__name__}"
        )
    r, jac = out
    if r.ndim != 1 or jac.shape != (r.numel(), n):
        raise ValueError(
            f"jacobian: expected jacobian(x) to return r [m] and J [m, {n}], received shapes "
            f"{tuple(r.shape)} and {tuple(jac.shape)}"
        )
    if m is not None and r.numel() != m:
        raise ValueError(
            f"jacobian: expected jacobian(x) to return the problem's {m} residuals, r [{m}] "
            f"and J [{m}, {n}], received shapes {tuple(r.shape)} and {tuple(jac.shape)}"
        )
    return r, jac


def _linearise(fn, x, linear_solver, jacobian=None, colours=None, n_res=None) -> dict:
    r"""The residuals and Jacobian of ``fn`` at ``x``: everything a damped step at ``x`` needs that
    does not depend on :math:`\lambda` (``"dense"``: ``r``, ``J``, :math:`g = J^\top r` and
    :math:`J^\top J`; ``"sparse"``: ``r`` and the assembled sparse ``J``; ``"cg"``: ``r``,
    :math:`g` and the product closures, which hold :math:`r`'s graph). An LM step rejected at
    ``x`` is retried from the same linearisation with a larger :math:`\lambda`.
    ``colours``: a :class:`ColouredJacobian` (``linear_solver="sparse"``); ``n_res``: the
    number of residuals of ``fn``, which a user ``jacobian``'s pair must have."""
    if linear_solver == "sparse":
        r, jv, _ = jvp_vjp(fn, x)
        return {"r": r, "jac": colours(jv, r.numel())}
    if linear_solver == "dense":
        if jacobian is not None:
            r, jac = _checked_jacobian(jacobian(x), x.numel(), n_res)
            # in x's dtype, as jacfwd's below: a float64 pair for a float32 problem turned the
            # iterate float64, a float64 J beside a float32 r failed in the matmul
            r, jac = r.detach().to(x), jac.detach().to(x)
        else:
            # in x's dtype, as the Jacobian is: a float32 problem's residual that closes over
            # float64 data came back float64 (the CG path accepted it, this one crashed)
            r = fn(x).detach().to(x.dtype)
            check_dense_gn_memory(
                "linear_solver",
                r.numel(),
                x,
                "use linear_solver='cg' (matrix-free) or 'sparse' (coloured Jacobian)",
            )
            jac = dense_jacobian(fn, x)
        return {"r": r, "jac": jac, "g": jac.T @ r, "h": jac.T @ jac}
    # "cg" (minimize checked linear_solver before its first step)
    r, jv, jtw = jvp_vjp(fn, x)
    return {"r": r, "jv": jv, "jtw": jtw, "g": jtw(r)}


def _damped_step(lin: dict, x, lam, linear_solver, cg_tol, cg_maxiter):
    r"""One solve of :math:`(J^\top J + \lambda I)\delta = -J^\top r` from the linearisation
    ``lin`` at ``x`` (:func:`_linearise`); returns (delta, r, pred, info)."""
    r = lin["r"]
    if linear_solver == "sparse":
        jac = lin["jac"]
        delta, g, jd = sparse_normal_solve(jac, r, lam)
        info = {"cg_iters": 0, "jacobian_nnz": int(jac.nnz)}
    elif linear_solver == "dense":
        jac, g, h = lin["jac"], lin["g"], lin["h"]
        a = h + lam * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
        if not bool(torch.isfinite(a).all()):  # lstsq fails with an internal assert on inf/NaN
            return torch.full_like(x, math.nan), r, math.nan, {"cg_iters": 0}
        try:
            chol = torch.linalg.cholesky(a)
            delta = -torch.cholesky_solve(g[:, None], chol)[:, 0]
        except RuntimeError:
            delta = -lstsq_any_rank(a, g[:, None])[:, 0]  # rank-deficient a, any device
        jd = jac @ delta
        info = {"cg_iters": 0}
    else:  # "cg"
        jv, jtw, g = lin["jv"], lin["jtw"], lin["g"]

        def mv(v):
            return jtw(jv(v)) + lam * v

        delta, its, rel, broken = cg_with_breakdown(mv, -g, tol=cg_tol, maxiter=cg_maxiter)
        jd = jv(delta)
        info = {"cg_iters": its, "cg_rel": rel, "cg_breakdown": bool(broken)}
    pred = -(g @ delta) - 0.5 * (jd @ jd)  # predicted decrease of 0.5||r||^2
    return delta, r, float(pred), info
