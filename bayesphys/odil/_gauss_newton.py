r"""The Gauss-Newton / Levenberg-Marquardt loop of :func:`~bayesphys.odil.minimize`: accepting
or rejecting damped steps (:mod:`~bayesphys.odil._damped_step`), the damping update, the
round-off and stall endings, and the warning for inexact inner CG solves."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .._model import FitResult
from .._progress import progress_bar
from .._stack import user_stacklevel
from .._time_budget import TimeBudget
from .._warning_types import BayesphysRuntimeWarning
from ._cg_shortfall import _cg_shortfall, _short_reasons
from ._damped_step import _damped_step, _linearise
from .sparse import ColouredJacobian, NonFiniteJacobian


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
        BayesphysRuntimeWarning,
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

_BELOW_ULP = ", below the change of one unit in the last place of x"


def _ulp_loss(fn: Callable[[Tensor], Tensor], x: Tensor) -> float:
    r""":math:`\tfrac12\lVert r(x + \varepsilon\, x \odot s) - r(x)\rVert^2`, ``s`` fixed
    random signs: what moving every unknown by about one unit in its last place changes the
    loss by. A loss below it is at the resolution of ``x``'s dtype. The round-off of a
    stencil scales with its terms, :math:`\varepsilon |J||x|`, not with the residuals at the
    start: an exactly solved linear Poisson problem (loss 1.6e-28 after two steps, then
    noise) stayed above :math:`m\varepsilon^2 L_0` (6.5e-29) and ran to ``steps``."""
    gen = torch.Generator(device=x.device).manual_seed(0)
    signs = torch.randint(0, 2, x.shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1
    with torch.no_grad():
        d = fn(x + torch.finfo(x.dtype).eps * x * signs) - fn(x)
    return 0.5 * float(d.square().sum())


def _gauss_newton(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    method: str,
    steps: int,
    damping: float,
    linear_solver: str,
    cg_tol: float,
    cg_maxiter: int,
    tol: float | None,
    progress: bool,
    callback: Callable[[int, Tensor], None] | None,
    jacobian: Callable[[Tensor], tuple[Tensor, Tensor]] | None,
    colours: ColouredJacobian | None,
    warn_inexact: bool,
    budget: TimeBudget,
) -> tuple[Tensor, FitResult]:
    """The GN/LM loop of :func:`~bayesphys.odil.minimize` (``method`` ``"gn"`` or ``"lm"``),
    from ``x`` with the settings ``minimize`` checked; its ``tol`` documents the endings."""
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
    try:
        with torch.no_grad():
            r0 = fn(x)
            loss = 0.5 * float((r0**2).sum())
    except BaseException:  # the residuals failed at the start (Ctrl-C too): no bar left open
        bar.close()
        raise
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
                    lin = _linearise(fn, x, linear_solver, jacobian, colours, n_res)
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
                tiny = step <= _STEP_ROUNDOFF * eps * float(x.abs().max())
                at_roundoff = tiny and (
                    loss <= loss_floor or abs(hist[-2] - loss) <= _STEP_ROUNDOFF * eps * hist[-2]
                )
                # a stencil's round-off scales with its terms, not with r0: a loss below what
                # one unit in the last place of x changes is at round-off too (asked only of
                # a round-off step that the tests above did not stop)
                below_ulp = (
                    tol is not None
                    and tiny
                    and not at_roundoff
                    and not abs(rel) < tol
                    and loss <= _ulp_loss(fn, x)
                )
                if tol is not None and (abs(rel) < tol or loss == 0.0 or at_roundoff or below_ulp):
                    res.converged = True
                    res.message = f"converged after {k + 1} steps"
                    if not abs(rel) < tol and loss != 0.0:
                        res.message += (
                            f" (step and loss at round-off: max|dx| {step:.1e} <= "
                            f"{_STEP_ROUNDOFF} eps max|x|, loss {loss:.1e}"
                            + (_BELOW_ULP if below_ulp else "")
                            + ")"
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
                    and step <= _STEP_ROUNDOFF * eps * float(x.abs().max())
                    and (
                        max(loss, new_loss) <= loss_floor or max(loss, new_loss) <= _ulp_loss(fn, x)
                    )
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
                        f"{_STEP_ROUNDOFF} sqrt(m) eps of {str(x.dtype).replace('torch.', '')}, "
                        f"and the least damped step since predicted a decrease {least:.1e} <= "
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
