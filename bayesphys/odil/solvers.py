r"""Optimisers for the discrete loss :math:`L(x) = \tfrac12\lVert r(x)\rVert^2`.

* ``"adam"`` -- :class:`torch.optim.Adam` on :math:`L`;
* ``"lbfgs"`` -- :class:`torch.optim.LBFGS` with a strong-Wolfe line search;
* ``"gn"`` -- Gauss-Newton: :math:`J^\top J\,\delta = -J^\top r`, full step;
* ``"lm"`` -- Levenberg-Marquardt: :math:`(J^\top J + \lambda I)\delta = -J^\top r` with the gain-ratio
  update of :math:`\lambda` (Nielsen 1999), rejected steps retried with larger damping (from the
  residuals and Jacobian already computed at the unmoved iterate: a retry costs one linear
  solve, no new Jacobian).

The (damped) normal equations are solved either matrix-free with conjugate gradients
(``linear_solver="cg"``), where :math:`J v` is a forward-mode product (:func:`torch.func.jvp`) and
:math:`J^\top w` a reverse-mode one (:func:`torch.func.vjp`), so neither :math:`J` nor
:math:`J^\top J` is formed; with a sparse direct solve (``"sparse"``: :math:`J` assembled from a
few products by column colouring of the stencil, :mod:`~bayesphys.odil.sparse`, then sparse LU);
or densely (``"dense"``, :func:`torch.func.jacfwd` + Cholesky) for small problems. Everything runs on the unknowns' device (CPU or CUDA).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_bool, check_dense_memory, check_int, check_real
from .._device import as_tensor, check_finite
from .._fit_callback import call_propagating, propagating
from .._linalg import lstsq_any_rank, pcg_with_breakdown
from .._model import FitResult, autograd_on, optimize, optimizer_state_finite
from .._progress import progress_bar
from .._stack import user_stacklevel
from .._time_budget import TimeBudget
from ._cg_shortfall import _cg_shortfall, _short_reasons
from ._forward_mode import jacfwd
from .problem import DiscreteProblem
from .sparse import ColouredJacobian, NonFiniteJacobian, sparse_normal_solve

__all__ = ["cg", "minimize", "jvp_vjp", "dense_jacobian"]


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
    in ``b``'s dtype and on its device, as :func:`minimize` takes its ``x0`` in the problem's).
    """
    x, it, rel, _ = cg_with_breakdown(matvec, b, x0=x0, tol=tol, maxiter=maxiter, precond=precond)
    return x, it, rel


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


def _rowwise(v: Tensor) -> bool:
    """Whether a batch of tangents ``v [k, ...]`` is taken one row at a time: on the CPU a loop
    of single backward passes gives the batched pass's values bit for bit and runs about 12 %
    faster (the batched pass's vmap costs more than it saves there); elsewhere one batched
    pass."""
    return v.device.type == "cpu" and v.shape[0] > 0


def jvp_vjp(
    fn: Callable[[Tensor], Tensor], x: Tensor
) -> tuple[Tensor, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    r"""Return ``(r, Jv, JTw)``: the residual at ``x`` and closures for :math:`Jv` and :math:`J^\top w`
    (``Jv`` also takes a batch of tangents ``[k, n]`` and returns ``[k, m]``; ``JTw`` a batch
    ``[k, m]`` and returns ``[k, n]``).

    One graph of :math:`r(x)` is recorded; :math:`J^\top w` is a reverse-mode product on it and
    :math:`Jv` the "double-vjp" product :math:`\partial_u (J^\top u)\cdot v` (exact, and on CPU
    much cheaper than re-running the forward pass in forward mode for every CG iteration).
    The graph is recorded in any caller's mode, ``torch.inference_mode()`` included.
    """
    with autograd_on():
        xx = x.detach().clone().requires_grad_(True)
        r = fn(xx)
        u0 = torch.zeros_like(r, requires_grad=True)
        (g,) = torch.autograd.grad(r, xx, u0, create_graph=True)

    def jv(v: Tensor) -> Tensor:
        with autograd_on():
            if not g.requires_grad:  # J^T u does not depend on u: J = 0
                return r.new_zeros((*v.shape[:-1], *r.shape))
            # v [k, n]: k products in one batched backward pass (on the CPU one pass per
            # row: the same values, and cheaper than the batched pass's vmap)
            batched = v.ndim == 2 and r.ndim == 1
            if batched and _rowwise(v):
                return torch.stack([jv(vi) for vi in v])
            out = torch.autograd.grad(g, u0, v, retain_graph=True, is_grads_batched=batched)
            return out[0].detach()

    def jtw(w: Tensor) -> Tensor:
        with autograd_on():
            # w [k, m]: k products in one batched backward pass, as for jv
            batched = w.ndim == r.ndim + 1
            if batched and _rowwise(w):
                return torch.stack([jtw(wi) for wi in w])
            out = torch.autograd.grad(r, xx, w, retain_graph=True, is_grads_batched=batched)
            return out[0].detach()

    return r.detach(), jv, jtw


def check_dense_gn_memory(name: str, m: int, x: Tensor, alternative: str) -> None:
    r"""Refuse a dense Gauss-Newton solve of ``m`` residuals in the ``n = x.numel()`` unknowns
    ``x`` that cannot fit on ``x``'s device: the Jacobian ``[m, n]`` (and forward mode's
    tangents of the same size) and :math:`J^\top J` ``[n, n]`` with its factor or inverse,
    in ``x``'s dtype. ``name``: the argument that chose the dense path."""
    n = x.numel()
    check_dense_memory(
        name,
        (2 * m * n + 2 * n * n) * x.element_size(),
        what=f"a dense Jacobian [{m}, {n}] and Gauss-Newton matrix [{n}, {n}] ({x.dtype})",
        alternative=alternative,
        device=x.device,
    )


def dense_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Dense Jacobian ``[m, n]`` of ``fn`` at ``x`` (forward mode; for small problems), in
    ``x``'s dtype: ``torch.func.jacfwd`` returns float64 rows for a 0-dim float32 value combined
    with a Python number (``p - 1000.0``), which the float32 solve then refused."""
    return jacfwd(fn, x).to(x.dtype)


def _checked_jacobian(out: object, n: int) -> tuple[Tensor, Tensor]:
    """The ``(r [m], J [m, n])`` pair a user ``jacobian(x)`` returned, or a clear error."""
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
    return r, jac


def _linearise(fn, x, linear_solver, jacobian=None, colours=None) -> dict:
    r"""The residuals and Jacobian of ``fn`` at ``x``: everything a damped step at ``x`` needs that
    does not depend on :math:`\lambda` (``"dense"``: ``r``, ``J``, :math:`g = J^\top r` and
    :math:`J^\top J`; ``"sparse"``: ``r`` and the assembled sparse ``J``; ``"cg"``: ``r``,
    :math:`g` and the product closures, which hold :math:`r`'s graph). An LM step rejected at
    ``x`` is retried from the same linearisation with a larger :math:`\lambda`.
    ``colours``: a :class:`ColouredJacobian` (``linear_solver="sparse"``)."""
    if linear_solver == "sparse":
        r, jv, _ = jvp_vjp(fn, x)
        return {"r": r, "jac": colours(jv, r.numel())}
    if linear_solver == "dense":
        if jacobian is not None:
            r, jac = _checked_jacobian(jacobian(x), x.numel())
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


def _warn_inexact_steps(
    rels: list[float],
    broken: list[bool],
    iters: list[int],
    cg_tol: float,
    cg_maxiter: int,
    method: str,
) -> None:
    """A ``RuntimeWarning`` when GN/LM steps' inner CG stopped above ``cg_tol``, saying per
    reason (:func:`~bayesphys.odil._cg_shortfall._cg_shortfall`) how many steps stopped there
    and its remedy: raising ``cg_maxiter`` mends a capped solve, not a breakdown (a NaN
    residual is left out: it means a non-finite step, which the fit's message reports)."""
    finite = [r if math.isfinite(r) else 0.0 for r in rels]
    capped = [k >= cg_maxiter for k in iters]
    short = _cg_shortfall(finite, broken, capped, cg_tol)
    if not short:
        return
    worst = max(finite[j] for idx in short.values() for j in idx)
    n_short = sum(len(idx) for idx in short.values())
    matrix = _GN_DAMPED if method == "lm" else _GN_UNDAMPED
    reasons = _short_reasons(short, cg_maxiter, matrix)
    # a truncated inner solve still gives a descent step, but not the GN/LM step the
    # method promises, and the fit may need many more (and slower) outer steps
    warnings.warn(
        f"minimize: the inner CG stopped above cg_tol={cg_tol:g} on {n_short} of {len(rels)} "
        f"steps (largest relative residual {worst:.1e}), so the steps are inexact: {reasons}; "
        "or use linear_solver='sparse' (plain-grid float64 problems)",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )


_GN_DAMPED = "the damped Gauss-Newton matrix J^T J + lambda I"
_GN_UNDAMPED = "the Gauss-Newton matrix J^T J, undamped with method='gn' (method='lm' damps it)"


#: an LM step rejected at ``x`` is retried from the residuals and Jacobian already computed
#: there (``x`` did not move); ``False`` recomputes them for every step (the same iterates,
#: bit for bit, at the cost of one more Jacobian per rejected step)
_REUSE_LINEARISATION = True


# round-off in machine epsilons: a GN/LM step of at most this many eps of the iterate's largest
# entry, with a loss change of at most this many eps (see ``minimize``'s ``tol``)
_STEP_ROUNDOFF = 8


def _no_progress(
    problem: DiscreteProblem, xp: torch.nn.Parameter, opt: torch.optim.LBFGS, res: FitResult
) -> None:
    """An L-BFGS fit that ended "converged" without ever moving from its start: converged
    only if the gradient there is within L-BFGS's own first-order tolerance (``tolerance_grad``
    in max-abs, below which it takes no step), else ``res`` is marked not converged (every
    line search returned a zero-length step: a gradient inconsistent with the loss, or steps
    below the spacing of ``x`` in its dtype)."""
    xp.grad = None
    problem.loss(xp).backward()
    g = float(xp.grad.detach().abs().max())
    xp.grad = None
    tol_g = opt.defaults["tolerance_grad"]
    if not g <= tol_g:
        res.converged = False
        res.message = (
            f"no progress: L-BFGS never moved from x0 in {res.steps} steps, while the "
            f"gradient there is not small (max |g| = {g:.3g} > {tol_g:g}): a gradient "
            "inconsistent with the loss, or steps below the spacing of x in its dtype"
        )


@autograd_on()
def minimize(
    problem: DiscreteProblem,
    x0: Tensor | None = None,
    *,
    method: str = "lm",
    steps: int = 50,
    lr: float = 1e-2,
    damping: float = 1e-3,
    linear_solver: str = "cg",
    cg_tol: float = 1e-8,
    cg_maxiter: int = 500,
    tol: float | None = 1e-10,
    progress: bool = False,
    callback: Callable[[int, Tensor], None] | None = None,
    jacobian: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
    stencil_radius: int | None = None,
    warn_inexact: bool = True,
    max_seconds: float | None = None,
) -> tuple[Tensor, FitResult]:
    r"""Minimise :math:`\tfrac12\lVert r(x)\rVert^2` of ``problem`` from ``x0``.

    Parameters
    ----------
    method: ``"gn"``, ``"lm"``, ``"adam"`` or ``"lbfgs"`` (module docstring).
    steps: outer iterations (GN/LM steps, Adam steps, L-BFGS calls of 20 inner iterations).
    damping: initial :math:`\lambda` for LM.
    linear_solver: ``"cg"`` (matrix-free), ``"sparse"`` (the Jacobian assembled from
        :math:`2C` products by column colouring, :mod:`~bayesphys.odil.sparse`, and the normal
        equations factorised by sparse LU; float64 plain-grid problems) or ``"dense"`` (the
        Jacobian ``[m, n]`` and :math:`J^\top J`; a ``MemoryError`` before them when they
        cannot fit in memory).
    callback: ``callback(k, x)`` after each step (GN/LM: each accepted one; Adam / L-BFGS:
        not after a step whose update left the optimiser's state non-finite, which ends the
        fit as a divergence) with the step's index and the iterate (a detached view: do not
        modify it); its time is not counted in
        ``max_seconds``, and an exception it raises, ``StopIteration`` included, leaves the fit
        (with every method; Adam / L-BFGS took a ``StopIteration`` for the end of the fit).
    warn_inexact: a ``RuntimeWarning`` when inner CG solves stop above ``cg_tol``, saying for
        how many steps CG reached ``cg_maxiter`` (raise it) and for how many it broke down on
        a non-positive curvature (round-off; more iterations do not mend it) (``False``: only
        ``extra["cg_rel"]`` and ``extra["cg_breakdown"]`` record them, for a caller that
        reports them itself).
    max_seconds: ``None`` or a wall-time budget ``> 0``: the fit ends after the first step
        (accepted or rejected) that finishes past it, with ``converged=False`` and the message
        ``"time budget (... s) reached after k steps"``; the ``callback``'s time is not
        counted. The iterate is the last accepted one, as after ``steps`` steps.
    stencil_radius: with ``"sparse"`` (GN/LM only): the residuals' stencil radius in cells (default 1: each
        residual reads field values at most one cell away along each axis, as every
        first/second-difference stencil of :mod:`~bayesphys.problems.stencil` does; periodic
        ones included); a wider stencil is detected (by a check against a product with a random
        tangent) and the colouring refined, at the cost of more products.
    jacobian: optional ``x -> (r [m], J [m, n])`` for the dense solver (e.g. a hand-written
        tangent-linear model), taken in the problem's dtype and device; default
        :func:`torch.func.jacfwd`.
    tol: stop when the relative loss decrease of a step is below ``tol``, or the loss is 0.
        GN/LM also stop, converged, at round-off: an accepted step with
        :math:`\max_i|\delta_i| \le 8\,\varepsilon \max_i|x_i|` (:math:`\varepsilon` the
        dtype's machine epsilon) whose loss is at round-off too, :math:`L_k \le
        m\,\varepsilon^2 L_0` (:math:`m` residuals: :math:`\lVert r_k\rVert \le \sqrt
        m\,\varepsilon \lVert r_0\rVert`) or :math:`|L_{k-1} - L_k| \le 8\,\varepsilon
        L_{k-1}`. An exactly solved linear problem, whose loss falls to round-off in one step
        and then changes by noise, would otherwise end at ``steps`` with ``converged=False``.
        Each test alone also holds mid-fit (a heavily damped LM step; a small field beside a
        large parameter; a large penalty solved at once while the rest is not), hence both.
        LM ends the same way, at the iterate it keeps, on a step it rejects with
        :math:`\max_i|\delta_i| \le 8\,\varepsilon \max_i|x_i|` when the loss before and
        after it are both :math:`\le m\,\varepsilon^2 L_0`: whether such a step raised or
        lowered the loss is round-off, which differs between machines' kernels.
        ``tol=None``: run all ``steps``. Whatever ``tol``, LM stops when its damping passes
        :math:`10^{16}` without an accepted step ("stalled"): converged if the least damped
        step it rejected predicted a decrease within the loss's round-off,
        :math:`\le 8\sqrt m\,\varepsilon L` (or the loss is at round-off of its start), and
        not converged otherwise (a Jacobian inconsistent with the residuals, or steps below the
        spacing of ``x`` in its dtype, stall while predicting a real decrease; the message says
        which: an exact root that ``x``'s dtype cannot represent ends this way too).
        GN/LM steps that run out are converged ("stalled at round-off") when the last accepted
        step changed the loss by at most :math:`8\sqrt m\,\varepsilon L` (the round-off of a
        sum of :math:`m` squares, whose size depends on the machine's float32 kernels: a
        bound of :math:`8\,\varepsilon L` held for a test fit on one machine and not on
        another) and the least damped
        step since then (that one, or the first one rejected after it) predicted a decrease
        :math:`\le 8\sqrt m\,\varepsilon L`: a float32 fit at its optimum accepts and
        rejects round-off steps, and its damping may not reach :math:`10^{16}` before the steps
        end. The iterate and the number of steps are those of any other ending; with ``tol``
        above :math:`8\sqrt m\,\varepsilon` such a step has already met the relative-decrease
        test, so a float64 fit with the default ``tol`` never ends this way. The accepted-step
        rule above keeps :math:`8\,\varepsilon L_{k-1}`: it ends a fit that could go on, and a
        step below :math:`8\,\varepsilon \max_i|x_i|` (a small unknown beside a large one) can
        still lower the loss by more than that, up to :math:`8\sqrt m\,\varepsilon L`, for
        real; this rule only labels a fit whose steps ended anyway.
        L-BFGS, whatever ``tol``: a fit whose iterate never moved from ``x0`` is converged
        only if the gradient there is within L-BFGS's first-order tolerance
        (:math:`\max_i|g_i| \le 10^{-7}`, below which it takes no step); otherwise every line
        search returned a zero-length step (a gradient inconsistent with the loss, e.g. a
        cliff of slope 1e200 beside a finite loss) and it ends ``converged=False``,
        ``"no progress: ..."``.

    Returns
    -------
    tuple
        ``(x, FitResult)``; ``FitResult.extra`` holds per-step ``cg_iters`` for GN/LM (and,
        with ``linear_solver="cg"``, each step's final relative CG residual ``cg_rel`` and
        whether its CG stopped on a breakdown, ``cg_breakdown``; a ``RuntimeWarning`` says
        when any step's CG stopped above ``cg_tol``, and why).

    Settings are checked whatever the method: ``steps >= 0`` (0 returns ``x0``), ``lr > 0``,
    ``damping >= 0``, ``cg_tol >= 0``, ``cg_maxiter >= 1``, ``tol`` ``None`` or ``>= 0``;
    ``problem`` a :class:`DiscreteProblem`, ``x0`` real and finite of shape ``[n]``,
    ``callback`` and ``jacobian`` callables, ``jacobian`` only with ``method="gn"``/``"lm"`` and
    ``linear_solver="dense"`` (elsewhere it would be ignored). A non-finite loss at ``x0``
    ends a GN/LM fit at once (``converged=False``, ``x0`` returned), as it does Adam/L-BFGS.
    A step whose linear solve fails (e.g. a singular sparse system) raises ``ValueError``
    carrying ``partial_result = (x, loss, step)``: the last accepted iterate is not lost.
    """
    steps = check_int("steps", steps, minimum=0)
    progress = check_bool("progress", progress)  # "no" showed the bar
    warn_inexact = check_bool("warn_inexact", warn_inexact)
    budget = TimeBudget(max_seconds)  # checks max_seconds (None: never over)
    lr = check_real("lr", lr, minimum=0.0, strict=True)
    damping = check_real("damping", damping, minimum=0.0)
    cg_tol = check_real("cg_tol", cg_tol, minimum=0.0)
    cg_maxiter = check_int("cg_maxiter", cg_maxiter, minimum=1)
    if tol is not None:
        tol = check_real("tol", tol, minimum=0.0)
    if linear_solver not in ("cg", "sparse", "dense"):
        raise ValueError(
            f"linear_solver: expected 'cg', 'sparse' or 'dense', received {linear_solver!r}"
        )
    if not isinstance(problem, DiscreteProblem):
        raise TypeError(f"problem: expected a DiscreteProblem, received {type(problem).__name__}")
    colours = None
    if stencil_radius is not None and (linear_solver != "sparse" or method in ("adam", "lbfgs")):
        # Adam and L-BFGS solve no linear system: it was ignored there without a word
        raise ValueError(
            f"stencil_radius: only used by method='gn' or 'lm' with linear_solver='sparse', "
            f"received method={method!r}, linear_solver={linear_solver!r} (it would be ignored)"
        )
    if linear_solver == "sparse" and method in ("gn", "lm"):
        colours = ColouredJacobian(problem, 1 if stencil_radius is None else stencil_radius)
    if callback is not None:
        _check_callable("callback", callback)
    if jacobian is not None:
        _check_callable("jacobian", jacobian)
        if method not in ("gn", "lm") or linear_solver != "dense":
            raise ValueError(
                "jacobian: only used by method='gn' or 'lm' with linear_solver='dense'; "
                f"received method={method!r}, linear_solver={linear_solver!r} (it would be ignored)"
            )
    if x0 is None:
        x = problem.initial().detach()  # not the caller's autograd graph (Adam/L-BFGS detach too)
    else:
        # real=True: a complex start lost its imaginary part with only a ComplexWarning
        x = as_tensor("x0", x0, finite=False, real=True)
        x = x.detach().clone().to(problem.device, problem.dtype)
    if x.shape != (problem.n,):
        raise ValueError(f"x0: expected shape ({problem.n},), received {tuple(x.shape)}")
    if x0 is not None:
        check_finite("x0", x)
    fn = problem.residual
    if method in ("adam", "lbfgs"):
        start = x.clone() if method == "lbfgs" else None  # the Parameter shares x's memory
        xp = torch.nn.Parameter(x)
        if method == "adam":
            opt = torch.optim.Adam([xp], lr=lr)
        else:
            opt = torch.optim.LBFGS(
                [xp], lr=1.0, max_iter=20, history_size=50, line_search_fn="strong_wolfe"
            )

        def closure():
            opt.zero_grad()
            loss = problem.loss(xp)
            loss.backward()
            return loss

        t_start, cb = time.perf_counter(), [0.0]  # cb: the callback's time, not in the budget

        def step():
            if res_hist and budget.over(time.perf_counter() - t_start - cb[0]):
                raise StopIteration
            if method == "adam":
                loss = closure()
                opt.step()
            else:
                loss = opt.step(closure)
            # not after an update that left the optimiser's state non-finite (a non-finite
            # loss's gradients do): optimize ends the fit there and restores the last good x
            if callback is not None and optimizer_state_finite(opt):
                t_cb = time.perf_counter()
                try:  # a StopIteration it raises leaves the fit (optimize would end it)
                    call_propagating(callback, len(res_hist), xp.detach())
                finally:
                    cb[0] += time.perf_counter() - t_cb
            res_hist.append(1)
            return loss

        res_hist: list[int] = []
        with propagating():  # the callback's StopIteration leaves the fit, as with GN/LM
            res = optimize(
                step,
                steps=steps,
                params=[xp],
                optimizer=opt,  # a finite loss with non-finite gradients poisons its state
                progress=progress,
                desc=method,
                tol=tol,
            )
        if budget.reached:
            res.message = budget.message(res.steps)
        if start is not None and res.converged and res.steps and torch.equal(xp.detach(), start):
            _no_progress(problem, xp, opt, res)
        return xp.detach(), res
    if method not in ("gn", "lm"):
        raise ValueError(f"method: expected 'gn', 'lm', 'adam' or 'lbfgs', received {method!r}")
    lam = 0.0 if method == "gn" else float(damping)
    nu = 2.0
    hist: list[float] = []
    cg_iters: list[int] = []
    cg_rels: list[float] = []
    cg_broken: list[bool] = []  # per step with a CG solve: it stopped on a breakdown
    t0 = time.perf_counter()
    cb_seconds = 0.0  # the callback's time, not counted in max_seconds
    res = FitResult()
    bar = progress_bar(total=steps, desc=method, progress=progress, leave=False)
    with torch.no_grad():
        r0 = fn(x)
        loss = 0.5 * float((r0**2).sum())
    hist.append(loss)
    # predicted decrease of the first rejected step since the last accepted one (the least
    # damped of a rejection streak): the stall test below
    streak_pred: float | None = None
    streak_step = math.inf  # the largest |dx| of that step
    # the relative loss change and predicted decrease of the last accepted step: the
    # round-off stall test when the steps run out
    last_rel: float | None = None
    last_pred = math.inf
    eps = torch.finfo(x.dtype).eps
    # the loss of residuals at round-off of their starting size: |r| <= sqrt(m) eps |r0|
    n_res = r0.numel()
    loss_floor = n_res * eps**2 * loss
    del r0
    if not math.isfinite(loss) and steps > 0:
        # every step from a NaN loss was rejected until the damping "stalled" and the fit
        # reported convergence at a NaN loss
        bar.close()
        res.message = f"diverged at step 0 (loss {loss} at x0); no step taken"
        res.loss_history = hist
        res.seconds = time.perf_counter() - t0
        res.extra = {"cg_iters": cg_iters, "damping": lam}
        return x, res
    # the residuals and Jacobian at x (_linearise), kept while LM rejects steps: x does not
    # move, so a retry with a larger damping needs only a new linear solve
    lin: dict | None = None
    try:
        for k in range(steps):
            try:
                if lin is None or not _REUSE_LINEARISATION:
                    lin = None  # the last point's graph and Jacobian go before the new ones
                    lin = _linearise(fn, x, linear_solver, jacobian, colours)
                delta, r, pred, info = _damped_step(lin, x, lam, linear_solver, cg_tol, cg_maxiter)
            except NonFiniteJacobian:  # as a non-finite dense / CG step below
                res.message = (
                    f"non-finite Jacobian or step at step {k} (a residual with an infinite "
                    "derivative at the iterate? start elsewhere with x0); kept the last iterate"
                )
                break
            except ValueError as err:  # e.g. a singular sparse system: keep the last iterate
                err.partial_result = (x, hist[-1], k)
                raise
            cg_iters.append(int(info["cg_iters"]))
            if "cg_rel" in info:
                cg_rels.append(float(info["cg_rel"]))
                cg_broken.append(info["cg_breakdown"])
            if not (math.isfinite(pred) and bool(torch.isfinite(delta).all())):
                # e.g. sqrt(u) at u = 0: an infinite derivative at the iterate. LM used to raise
                # the damping until it "stalled" and reported a local minimum at the start
                res.message = (
                    f"non-finite Jacobian or step at step {k} (a residual with an infinite "
                    "derivative at the iterate? start elsewhere with x0); kept the last iterate"
                )
                break
            x_new = x + delta
            with torch.no_grad():
                new_loss = 0.5 * float((fn(x_new) ** 2).sum())
            if not math.isfinite(new_loss):
                new_loss = math.inf
            if method == "gn" and not math.isfinite(new_loss):
                # undamped step into overflow: keep the last finite iterate (LM rejects it)
                res.message = f"diverged at step {k}"
                break
            gain = (loss - new_loss) / pred if pred > 0 else -1.0
            if method == "gn" or gain > 0:
                streak_pred = None
                rel = (loss - new_loss) / max(abs(loss), 1e-300)
                last_rel, last_pred = rel, pred
                x, loss = x_new, new_loss
                lin = None  # x moved: linearise again at the next step
                if method == "lm":
                    lam *= max(1 / 3, 1 - (2 * gain - 1) ** 3)
                    nu = 2.0
                hist.append(loss)
                if callback is not None:
                    t_cb = time.perf_counter()
                    callback(k, x)
                    cb_seconds += time.perf_counter() - t_cb
                # round-off: the step moves x only in its last bits AND the loss is at
                # round-off (of its start, or of its last value); either alone also holds
                # mid-fit (a damped LM step, a small field beside a large parameter; a large
                # penalty solved at x0 while the rest is not)
                step = float(delta.abs().max())
                at_roundoff = step <= _STEP_ROUNDOFF * eps * float(x.abs().max()) and (
                    loss <= loss_floor or abs(hist[-2] - loss) <= _STEP_ROUNDOFF * eps * hist[-2]
                )
                if tol is not None and (abs(rel) < tol or loss == 0.0 or at_roundoff):
                    res.converged = True
                    res.message = f"converged after {k + 1} steps"
                    if not abs(rel) < tol and loss != 0.0:
                        res.message += (
                            f" (step and loss at round-off: max|dx| {step:.1e} <= "
                            f"{_STEP_ROUNDOFF} eps max|x|, loss {loss:.1e})"
                        )
                    bar.update(1)
                    break
            else:
                if tol is not None and loss == 0.0:
                    # an exact root (only x0 can be one here: an accepted step to loss 0 ends
                    # the fit above): no step decreases a zero loss, so LM rejected each and
                    # ran on to max steps, not converged, or to a damping stall
                    res.converged = True
                    res.message = f"converged after {k + 1} steps (loss 0)"
                    bar.update(1)
                    break
                step = float(delta.abs().max())
                if (
                    tol is not None
                    and max(loss, new_loss) <= loss_floor
                    and step <= _STEP_ROUNDOFF * eps * float(x.abs().max())
                ):
                    # the rule of an accepted step at round-off, met by a rejected one: with
                    # both losses at round-off of the start, whether the step raised or lowered
                    # the loss is round-off (it flips with the machine's kernels), and LM ran
                    # on to max steps, not converged, where an accepted step stopped
                    res.converged = True
                    res.message = (
                        f"converged after {k + 1} steps (step and loss at round-off: max|dx| "
                        f"{step:.1e} <= {_STEP_ROUNDOFF} eps max|x|, loss {loss:.1e}; the step "
                        "was rejected by a round-off change of the loss and is not taken)"
                    )
                    bar.update(1)
                    break
                if streak_pred is None:
                    streak_pred = pred
                    streak_step = step
                lam = max(lam, 1e-12) * nu
                nu *= 2
                if lam > 1e16:
                    # a minimum only if the least damped rejected step promised no decrease
                    # above the loss's round-off (sqrt(m) eps L): a wrong Jacobian, or steps
                    # below the spacing of x, also stall, while promising a real decrease
                    noise = _STEP_ROUNDOFF * math.sqrt(n_res) * eps * loss
                    res.converged = loss <= loss_floor or streak_pred <= noise
                    tiny = streak_step <= _STEP_ROUNDOFF * eps * float(x.abs().max())
                    if res.converged:
                        why = "local minimum"
                    elif tiny:  # the Jacobian may be right: x is at its dtype's resolution
                        why = (
                            f"NOT a minimum to round-off: the least damped rejected step "
                            f"(max|dx| {streak_step:.1e}) is below the spacing of x in "
                            f"{str(x.dtype).replace('torch.', '')}, so no representable step "
                            f"gives its predicted decrease {streak_pred:.1e} (loss {loss:.3e}): "
                            "x is as close as this dtype resolves"
                        )
                    else:
                        why = (
                            f"NOT a minimum: the least damped rejected step predicted a decrease "
                            f"{streak_pred:.1e} (loss {loss:.3e}) that the residuals never gave "
                            "(a Jacobian inconsistent with the residuals?)"
                        )
                    res.message = f"stalled at step {k} (damping {lam:.1e}); {why}"
                    break
            bar.update(1)
            if progress:
                bar.set_postfix(loss=f"{loss:.4g}", lam=f"{lam:.1e}", refresh=False)
            if k + 1 < steps and budget.over(time.perf_counter() - t0 - cb_seconds):
                res.message = budget.message(k + 1)
                break
        else:
            res.message = f"max steps ({steps})"
            res.converged = tol is None
            if tol is not None and last_rel is not None:
                # a float32 fit at its optimum accepts steps whose loss change is round-off
                # (above a tol like 1e-9) and rejects others until the damping passes 1e16:
                # the steps can run out in between, and it ended "max steps", not converged.
                # A float64 fit never comes here with tol > 8 sqrt(m) eps: such a step met
                # rel < tol.
                least = last_pred if streak_pred is None else streak_pred
                noise = _STEP_ROUNDOFF * math.sqrt(n_res) * eps * loss
                if abs(last_rel) <= _STEP_ROUNDOFF * math.sqrt(n_res) * eps and least <= noise:
                    res.converged = True
                    res.message = (
                        f"converged after {steps} steps (stalled at round-off: the last "
                        f"accepted step changed the loss by {abs(last_rel):.1e} of it <= "
                        f"{_STEP_ROUNDOFF} sqrt(m) eps of {str(x.dtype).replace('torch.', '')}, and "
                        f"the least damped step since predicted a decrease {least:.1e} <= "
                        f"{_STEP_ROUNDOFF} sqrt(m) eps L = {noise:.1e}; the steps ran out)"
                    )
    finally:
        bar.close()
    res.loss_history = hist
    res.steps = len(cg_iters)
    res.seconds = time.perf_counter() - t0
    res.extra = {"cg_iters": cg_iters, "damping": lam}
    if cg_rels:
        res.extra["cg_rel"] = cg_rels
        res.extra["cg_breakdown"] = cg_broken
        if warn_inexact:
            _warn_inexact_steps(cg_rels, cg_broken, cg_iters, cg_tol, cg_maxiter, method)
    return x, res
