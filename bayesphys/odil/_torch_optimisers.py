r"""The Adam and L-BFGS loops of :func:`~bayesphys.odil.minimize`: :mod:`torch.optim` on the
loss :math:`\tfrac12\lVert r(x)\rVert^2`, with the callback, the time budget and L-BFGS's
no-progress check."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from .._fit_callback import call_propagating, propagating
from .._fit_state import optimizer_state_finite
from .._model import FitResult, optimize
from .._time_budget import TimeBudget
from .problem import DiscreteProblem


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


def _torch_optimiser(
    problem: DiscreteProblem,
    x: Tensor,
    *,
    method: str,
    steps: int,
    lr: float,
    tol: float | None,
    progress: bool,
    callback: Callable[[int, Tensor], None] | None,
    budget: TimeBudget,
) -> tuple[Tensor, FitResult]:
    """The Adam / L-BFGS loop of :func:`~bayesphys.odil.minimize` (``method`` ``"adam"`` or
    ``"lbfgs"``) on ``problem.loss``, from ``x`` with the settings ``minimize`` checked."""
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
