r"""Optimisers for the discrete loss :math:`L(x) = \tfrac12\lVert r(x)\rVert^2`.

* ``"adam"`` -- :class:`torch.optim.Adam` on :math:`L`;
* ``"lbfgs"`` -- :class:`torch.optim.LBFGS` with a strong-Wolfe line search;
* ``"gn"`` -- Gauss-Newton: :math:`J^\top J\,\delta = -J^\top r`, full step;
* ``"lm"`` -- Levenberg-Marquardt: :math:`(J^\top J + \lambda I)\delta = -J^\top r` with the
  gain-ratio update of :math:`\lambda` (Nielsen 1999), rejected steps retried with larger damping
  (from the residuals and Jacobian already computed at the unmoved iterate: a retry costs one linear
  solve, no new Jacobian).

The (damped) normal equations are solved either matrix-free with conjugate gradients
(``linear_solver="cg"``), where :math:`J^\top w` is a reverse-mode product on one recorded graph
of :math:`r(x)` and :math:`J v` the double-vjp product :math:`\partial_u (J^\top u)\cdot v` on
the same graph (:func:`torch.autograd.grad`; no forward-mode pass), so neither :math:`J` nor
:math:`J^\top J` is formed; with a sparse direct solve (``"sparse"``: :math:`J` assembled from a
few products by column colouring of the stencil, :mod:`~bayesphys.odil.sparse`, then sparse LU);
or densely (``"dense"``, :func:`torch.func.jacfwd` + Cholesky) for small problems. Everything runs
on the unknowns' device (CPU or CUDA).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .._checks import check_bool, check_callback, check_int, check_real, did_you_mean
from .._detached import warn_detached
from .._device import as_tensor, check_finite
from .._inference_tensors import inference_tensors_named
from .._model import FitResult, autograd_on
from .._precision import own_precision
from .._time_budget import TimeBudget

# cg_with_breakdown and check_dense_gn_memory: still importable from here, as before the split
from ._cg_solve import _check_callable, cg
from ._cg_solve import cg_with_breakdown as cg_with_breakdown
from ._gauss_newton import _gauss_newton
from ._jacobian import check_dense_gn_memory as check_dense_gn_memory
from ._jacobian import dense_jacobian, jvp_vjp
from ._torch_optimisers import _torch_optimiser
from .problem import DiscreteProblem
from .sparse import ColouredJacobian

__all__ = ["cg", "minimize", "jvp_vjp", "dense_jacobian"]


@inference_tensors_named("minimize", "data or an index the residual function captures")
@autograd_on()
@own_precision()
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

    Runs with autograd on inside the caller's ``torch.no_grad()`` or
    ``torch.inference_mode()``; a tensor the residual function captures that was created
    inside ``torch.inference_mode()`` cannot be recorded, and is a ``RuntimeError`` naming
    ``minimize`` and the remedy (create it outside the block, or clone it there).

    Parameters
    ----------
    method
        ``"gn"``, ``"lm"``, ``"adam"`` or ``"lbfgs"`` (module docstring).
    steps
        outer iterations (GN/LM steps, Adam steps, L-BFGS calls of 20 inner iterations).
    damping
        initial :math:`\lambda` for LM.
    linear_solver
        ``"cg"`` (matrix-free), ``"sparse"`` (the Jacobian assembled from
        :math:`3C + 1` products by column colouring of :math:`C` colours, three per colour
        and one check, :mod:`~bayesphys.odil.sparse`, and the normal
        equations factorised by sparse LU; float64 plain-grid problems) or ``"dense"`` (the
        Jacobian ``[m, n]`` and :math:`J^\top J`; a ``MemoryError`` before them when they
        cannot fit in memory).
    callback
        ``callback(k, x)`` after each step (GN/LM: each accepted one; Adam / L-BFGS:
        not after a step whose update left the optimiser's state non-finite, which ends the
        fit as a divergence) with the step's index and the iterate (a detached view: do not
        modify it); its time is not counted in
        ``max_seconds``, and an exception it raises, ``StopIteration`` included, leaves the fit
        (with every method; Adam / L-BFGS took a ``StopIteration`` for the end of the fit).
    warn_inexact
        a ``RuntimeWarning`` when inner CG solves stop above ``cg_tol``, saying for
        how many steps CG reached ``cg_maxiter`` (raise it) and for how many it broke down on
        a non-positive curvature (round-off; more iterations do not mend it) (``False``: only
        ``extra["cg_rel"]`` and ``extra["cg_breakdown"]`` record them, for a caller that
        reports them itself).
    max_seconds
        ``None`` or a wall-time budget ``> 0``: the fit ends after the first step
        (accepted or rejected) that finishes past it, with ``converged=False`` and the message
        ``"time budget (... s) reached after k steps"``; the ``callback``'s time is not
        counted. The iterate is the last accepted one, as after ``steps`` steps.
    stencil_radius
        with ``"sparse"`` (GN/LM only): the residuals' stencil radius in cells
        (default 1: each residual reads field values at most one cell away along each axis, as
        every first/second-difference stencil of :mod:`~bayesphys.problems.stencil` does; periodic
        ones included); a wider stencil is detected (by a check against a product with a random
        tangent) and the colouring refined, at the cost of more products.
    jacobian
        optional ``x -> (r [m], J [m, n])`` for the dense solver (e.g. a hand-written
        tangent-linear model), ``m`` the problem's residual count (another length is a
        ``ValueError``), taken in the problem's dtype and device; default
        :func:`torch.func.jacfwd`.
    tol
        stop when the relative loss decrease of a step is below ``tol``, or the loss is 0.
        GN/LM also stop, converged, at round-off: an accepted step with
        :math:`\max_i|\delta_i| \le 8\,\varepsilon \max_i|x_i|` (:math:`\varepsilon` the
        dtype's machine epsilon) whose loss is at round-off too, :math:`L_k \le
        m\,\varepsilon^2 L_0` (:math:`m` residuals: :math:`\lVert r_k\rVert \le \sqrt
        m\,\varepsilon \lVert r_0\rVert`), :math:`|L_{k-1} - L_k| \le 8\,\varepsilon
        L_{k-1}`, or :math:`L_k \le \tfrac12\lVert r(x + \varepsilon\,x\odot s) -
        r(x)\rVert^2` (``s`` fixed random signs: the change one unit in the last place of every
        unknown makes; a stencil's round-off scales with its terms, not with :math:`r_0`, and an
        exactly solved Poisson problem stayed above the first two). An exactly solved linear
        problem, whose loss falls to round-off in one step and then changes by noise, would
        otherwise end at ``steps`` with ``converged=False``.
        Each test alone also holds mid-fit (a heavily damped LM step; a small field beside a
        large parameter; a large penalty solved at once while the rest is not), hence both.
        LM ends the same way, at the iterate it keeps, on a step it rejects with
        :math:`\max_i|\delta_i| \le 8\,\varepsilon \max_i|x_i|` when the loss before and
        after it are both :math:`\le m\,\varepsilon^2 L_0` (or both below that last-place
        change): whether such a step raised or
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
        when any step's CG stopped above ``cg_tol``, and why). GN/LM count differently from
        the training fits (where ``steps == len(loss_history)``): ``FitResult.steps`` counts
        the steps taken, accepted or rejected (one linear solve each: ``len(extra["cg_iters"])``),
        and ``loss_history`` holds the loss at ``x0`` and after each accepted step (``1 +`` the
        accepted steps, those ``callback`` is given), so it is shorter than ``steps + 1`` by
        the rejected ones. ``x`` is detached: the solve
        is not differentiated (an ``x0`` that requires grad is read detached, with a
        ``UserWarning``; differentiate ``problem``'s residuals at the returned ``x``, e.g. by
        the implicit function theorem, for sensitivities).

    Notes
    -----
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
            f"{did_you_mean(linear_solver, ('cg', 'sparse', 'dense'))}"
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
    # the signatures too: a callback(k) failed at the first step with the bare TypeError of
    # its own call, naming neither the argument nor what it is called with
    if callback is not None:
        _check_callable("callback", callback)
        check_callback("callback", callback, (0, None), ("k", "x"))
    if jacobian is not None:
        _check_callable("jacobian", jacobian)
        check_callback("jacobian", jacobian, (None,), ("x",))
        if method not in ("gn", "lm") or linear_solver != "dense":
            raise ValueError(
                "jacobian: only used by method='gn' or 'lm' with linear_solver='dense'; "
                f"received method={method!r}, linear_solver={linear_solver!r} (it would be ignored)"
            )
    warn_detached("minimize", x0=x0)
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
        return _torch_optimiser(
            problem,
            x,
            method=method,
            steps=steps,
            lr=lr,
            tol=tol,
            progress=progress,
            callback=callback,
            budget=budget,
        )
    if method not in ("gn", "lm"):
        raise ValueError(
            f"method: expected 'gn', 'lm', 'adam' or 'lbfgs', received {method!r}"
            f"{did_you_mean(method, ('gn', 'lm', 'adam', 'lbfgs'))}"
        )
    return _gauss_newton(
        fn,
        x,
        method=method,
        steps=steps,
        damping=damping,
        linear_solver=linear_solver,
        cg_tol=cg_tol,
        cg_maxiter=cg_maxiter,
        tol=tol,
        progress=progress,
        callback=callback,
        jacobian=jacobian,
        colours=colours,
        warn_inexact=warn_inexact,
        budget=budget,
    )
