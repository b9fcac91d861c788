r"""The hyperparameter fit of a :class:`~.model.GPPDESolver` (Fang et al., ICLR 2024, GP-HM).

Adam over the kernel hyperparameters and :math:`\log\tau_{1,2}` (cosine-decayed learning rate
for ``method="gp-hm"``, constant for the paper's ``"ref"``, which also optimises the field
:math:`U` jointly); for ``gp-hm`` the field is eliminated exactly at every step. Keeps the
lowest-objective iterate, reports a numerical failure of a solve as a divergence, and stops
early on a time budget.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_real
from .._fit_callback import FitCallback, check_fit_callback
from .._fit_state import optimizer_state_finite, refresh, restore_snapshot, snapshot
from .._model import FitResult, optimize, release_grads
from .._stack import user_stacklevel
from .._time_budget import check_max_seconds
from .._warning_types import BayesphysDeprecationWarning
from ._errors import NUMERICAL
from ._memory import check_kernel_memory
from ._units import warn_axes, warn_field_scale
from .solve import objective

if TYPE_CHECKING:
    from .model import GPPDESolver

__all__ = ["fit_solver", "settle", "objective_value", "steps_done"]


def fit_solver(
    model: GPPDESolver,
    data: None,
    *,
    steps: int,
    lr: float | None,
    progress: bool,
    eval_every: int,
    max_seconds: float | None,
    tau_lr_mult: float | None,
    clock: str,
    keep_best: bool | None,
    time_limit: float | None,
    callback: Callable[[GPPDESolver, int], Any] | None = None,
    callback_every: int = 100,
) -> FitResult:
    """Run :meth:`~.model.GPPDESolver.fit` on ``model`` (its docstring states the arguments,
    their checks and the result); updates the model's hyperparameters, field and history."""
    if data is not None:
        raise ValueError(
            "data: expected None; GPPDESolver takes its source and boundary data at "
            f"construction, received {type(data).__name__}"
        )
    steps = check_int("steps", steps, minimum=0)
    if lr is not None:
        lr = check_real("lr", lr, minimum=0.0, strict=True)
    eval_every = check_int("eval_every", eval_every, minimum=0)
    if time_limit is not None:  # the former name of max_seconds (the other models' name)
        if max_seconds is not None:
            raise ValueError("time_limit, max_seconds: give max_seconds only (one budget)")
        warnings.warn(
            "fit: time_limit is renamed max_seconds (as in the other models' fit); "
            "time_limit will be removed",
            BayesphysDeprecationWarning,
            stacklevel=user_stacklevel(),
        )
        max_seconds = check_real("time_limit", time_limit, minimum=0.0, strict=True)
    max_seconds = check_max_seconds(max_seconds)
    if tau_lr_mult is not None:
        tau_lr_mult = check_real("tau_lr_mult", tau_lr_mult, minimum=0.0)
        if model.config.get("nugget") is not None:  # it was accepted and had no effect
            raise ValueError(
                f"tau_lr_mult: only with learned precisions (nugget=None); this model's "
                f"nugget={model.config['nugget']!r} fixes them, received {tau_lr_mult!r}"
            )
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock: expected 'wall' or 'cpu', received {clock!r}")
    if clock != "wall" and max_seconds is None:  # it measures max_seconds only
        raise ValueError(
            f"clock: only with max_seconds (the clock the budget is measured on), "
            f"received clock={clock!r} and max_seconds=None"
        )
    callback_every = check_fit_callback(model, callback, callback_every)
    if steps:  # its kernel evaluations keep their graph: refused by name, not by torch
        q = model.kernels[0].num_mixtures
        check_kernel_memory(model.axes, q, model.dtype, model.device, fit=True)
    warn_axes(model.axes)  # at fit, not construction: a load builds the model too
    ref = model.config["method"] == "ref"
    keep_best = not ref if keep_best is None else check_bool("keep_best", keep_best)
    joint = ref or not model.can_eliminate
    if tau_lr_mult is None:
        tau_lr_mult = 1.0 if ref else 4.0
    lr = (0.01 if ref else 0.05) if lr is None else float(lr)
    params = model._params()
    u_param = None
    if joint:
        u_param = torch.nn.Parameter(model.u.clone())
        params = params + [u_param]
    kparams = list(model.kernels.parameters())
    groups = [{"params": kparams, "lr": lr}]
    if model.config.get("nugget") is None:
        groups.append({"params": [model.log_tau_b, model.log_tau_pde], "lr": lr * tau_lr_mult})
    if u_param is not None:
        groups.append({"params": [u_param], "lr": lr})
    opt = torch.optim.Adam(groups, lr=lr)
    sched = (
        None
        if ref
        else torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr * 0.01)
    )
    now = time.perf_counter if clock == "wall" else time.process_time
    t0 = time.perf_counter()
    c0 = now()
    cpu0 = time.process_time()
    # "k": the steps begun; "applied": the updates taken (an interrupt between steps, after
    # one's update and before the next begins, has as many of each)
    state = {"k": 0, "applied": 0}
    # a later fit continues the history: its steps count on from the last recorded one
    # and rel_l2_best is this fit's (a second fit restarted at step 0 and took the best
    # of every earlier fit's checkpoints)
    first_eval = len(model.history["rel_l2"])
    done = model.history.setdefault("fit_steps", [])  # steps of each earlier fit
    # past the last recorded step too: an interrupt after a step's checkpoint counts
    # that step as not done
    step_offset = steps_done(model.history)
    # the lowest-objective starting point: its loss, step, hyperparameters and field. A
    # step's start that beats it waits in `pending` until the step's update passed
    # optimize's check of Adam's state (the next step begins, or the fit ends without a
    # divergence): a poisoned update's start is discarded by optimize, loss unrecorded,
    # and keep_best does not bring it back
    best = {"loss": math.inf, "step": -1, "field": None}
    best["values"] = snapshot(params) if keep_best else None
    pending = {"loss": math.inf, "step": -1, "field": None}
    pending["values"] = snapshot(params) if keep_best else None

    def admit_pending() -> None:
        """The last step's start becomes the best if it beat it (its update went through)."""
        if pending["step"] >= 0:
            values = best["values"]
            best.update(pending)
            pending.update(step=-1, field=None, values=values)  # best's buffers, reused

    w = model.config["weighting"]
    # the user's callback, after the update of every callback_every-th step; its time counts
    # neither in the budget nor in seconds / cpu_seconds
    user = FitCallback(model, callback, callback_every, lambda: model.steps_done)
    spent = (lambda: user.seconds) if clock == "wall" else (lambda: user.cpu_seconds)

    def call_user(k: int) -> None:
        """The callback after step ``k``'s update: the history counts this fit's ``k + 1``
        steps meanwhile (a checkpoint written from it resumes after them) and a joint fit's
        field is the model's; a field solved inside it (posterior, predict) is not the next
        step's start, as without a callback."""
        done.append(step_offset + k + 1 - sum(done))
        if joint:
            model.u = u_param.detach().clone()
            model._solved_key = None  # optimised jointly, not eliminated
        field = model.u, model._solved_key
        try:
            user()
        finally:
            done.pop()
            if not joint:
                model.u, model._solved_key = field

    def closure():
        opt.zero_grad()
        try:
            fac = model._factors()
        except NUMERICAL:
            return torch.tensor(float("nan"), dtype=model.dtype)
        if joint:
            u = u_param
        else:
            try:
                with torch.no_grad():
                    _, run = model._solver(fac)
                    u = run()
            except NUMERICAL:
                return torch.tensor(float("nan"), dtype=model.dtype)
            model._set_field(u)
        loss = objective(
            fac,
            model.op,
            u,
            model.f,
            model.g,
            model.log_tau_b,
            model.log_tau_pde,
            model.config["lam_b"],
            w,
        )
        if torch.isfinite(loss):
            loss.backward()
        return loss

    def step():
        k = state["k"]
        state["k"] += 1
        if keep_best:  # the previous step went through (optimize called this one)
            admit_pending()
        # asked from the second step on: a fit takes at least one step, also when the budget
        # was spent before its first (a 1e-9 s budget took none; a collector's pause before
        # the first step took none under a 0.01 s budget)
        if k and max_seconds is not None and now() - c0 - spent() > max_seconds:
            raise StopIteration
        loss = closure()
        if keep_best and torch.isfinite(loss) and float(loss.detach()) < best["loss"]:
            # the hyperparameters and the field this loss was computed at (the field is not
            # re-solved on restore: a nonlinear solve depends on its warm start)
            refresh(pending["values"])
            field = None if joint else model.u.clone()
            pending.update(loss=float(loss.detach()), step=k, field=field)
        # a step whose loss is not finite diverged: its hyperparameters are discarded (and an
        # eliminated field was not solved at them), so it has no test error to record; a
        # checkpoint recorded there also counted the diverged step as done (steps_done)
        finite = bool(torch.isfinite(loss))
        if eval_every and model.problem is not None and k % eval_every == 0 and finite:
            if joint:
                model.u = u_param.detach().clone()
                model._solved_key = None  # optimised jointly, not eliminated
            # the loss is finite, so the Gram factors of these hyperparameters did not fail
            # in the closure: the same factorisation here succeeds as well
            model.history["step"].append(step_offset + k)
            model.history["rel_l2"].append(model._rel_l2(solve=False))
        if finite:
            opt.step()
            state["applied"] += 1
            if sched is not None:
                sched.step()
            # not after an update that left Adam's state non-finite: optimize ends the fit
            # there and restores the last good state, as after a non-finite objective
            if user.due(k + 1) and optimizer_state_finite(opt):
                call_user(k)
        return loss.detach()

    try:
        with user.propagating():
            res = _run(step, steps, params, progress, opt)
    except BaseException:
        # a bug or an interrupt inside a step: the hyperparameters are those of the last
        # completed step; a joint fit keeps its field too, an eliminated one is re-solved
        # for them on next use (its key no longer matches). The steps done are the updates
        # taken: an error of the callback comes after its step's update (that step is done),
        # and so does an interrupt between two steps (the last one begun is done; counting
        # the steps begun less one left it out, though the model held its update)
        done.append(state["applied"])
        if joint:
            model._settle(joint, u_param)
        raise
    finally:
        release_grads(params)  # the last step's gradients: read by no later step
    # this fit's test errors at states it kept: every recorded one but a poisoned step's
    # (its hyperparameters are discarded), for rel_l2_best below
    kept_errors = [
        e
        for s, e in zip(model.history["step"][first_eval:], model.history["rel_l2"][first_eval:])
        if s < step_offset + res.steps
    ]
    fit_steps = res.steps
    if res.message.startswith("diverged"):
        # optimize restored the hyperparameters the last recorded step started from: its
        # update is undone, so this fit did res.steps - 1 steps (docs/concepts.md, "Models":
        # steps_done counts the updates of the kept state). The checkpoints from that step on
        # go: a checkpoint numbers the state at the start of its step, and the next fit
        # numbers its first step (from the restored state) steps_done. A poisoned update's
        # step had recorded its test error too (its objective finite); neither counts it.
        fit_steps = max(res.steps - 1, 0)
        while model.history["step"][first_eval:] and (
            model.history["step"][-1] >= step_offset + fit_steps
        ):
            model.history["step"].pop()
            model.history["rel_l2"].pop()
    done.append(fit_steps)
    if keep_best and not res.message.startswith("diverged"):
        admit_pending()  # the last step's update went through too
    # final state consistent with the final hyperparameters
    failed = model._settle(joint, u_param)
    if keep_best and best["step"] >= 0:
        # the last iterate's objective (inf if its solve failed). After a divergence the
        # last iterate is the restored good state, already evaluated: the evaluated best
        # is kept even if re-solving it (a nonlinear solve, warm-started elsewhere) scored
        # lower; when it is that very state (step steps - 1) the message says so once.
        final = math.inf if failed else model._objective_value(u_param if joint else model.u)
        res.extra.update(best_objective=best["loss"], final_objective=final)
        diverged = res.message.startswith("diverged")
        if best["loss"] <= final or diverged:
            restore_snapshot(params, best["values"])
            if joint:
                model._settle(joint, u_param)
            else:
                model._set_field(best["field"])
            res.extra["best_step"] = best["step"]
            if failed:
                res.message += f"; final solve failed ({failed})"
            if failed or not (diverged and best["step"] == res.steps - 1):
                res.message += f"; kept the lowest-objective iterate (start of step {best['step']})"
            failed = None
        else:
            res.extra["best_step"] = res.steps
    if failed:
        res.message += f"; final solve failed ({failed}), kept the last field"
    res.seconds = time.perf_counter() - t0 - user.seconds
    res.extra["cpu_seconds"] = time.process_time() - cpu0 - user.cpu_seconds
    if model.problem is not None:
        res.extra["rel_l2"] = model._rel_l2(solve=False)
        if kept_errors:
            res.extra["rel_l2_best"] = min(kept_errors + [res.extra["rel_l2"]])
    res.extra["tau_b"] = float(model.log_tau_b.detach().exp())
    res.extra["tau_pde"] = float(model.log_tau_pde.detach().exp())
    if res.steps and not getattr(model, "_field_scale_warned", False):
        # once per model: the scale is the problem's, and the rms in the message drifts from
        # fit to fit, so a loop fitting on in chunks was shown it at (nearly) every fit
        model._field_scale_warned = warn_field_scale(model.u)
    return res


def settle(model: GPPDESolver, joint: bool, u_param: Tensor | None) -> Exception | None:
    """Make ``model.u`` consistent with the current hyperparameters (``u_param`` if joint);
    returns the numerical error of a failed solve (the last good field is kept)."""
    if joint:
        model.u = u_param.detach().clone()
        model._solved_key = None  # optimised jointly, not eliminated
        return None
    try:
        with torch.no_grad():
            _, run = model._solver(model._factors())
            model._set_field(run())
    except NUMERICAL as err:  # keep the last good field
        return err
    return None


def steps_done(history: dict[str, Any]) -> int:
    """The optimiser steps of the fits recorded in ``history`` (``fit_steps``), at least one
    past the last recorded checkpoint (``step``): an interrupt after a step's checkpoint
    counts that step as not done, and the next fit numbers its steps after it."""
    done, evals = sum(history.get("fit_steps", ())), history.get("step", ())
    return max(done, evals[-1] + 1 if evals else 0)


def objective_value(model: GPPDESolver, u: Tensor) -> float:
    r""":math:`\mathcal J` at the current hyperparameters of ``model`` and field ``u`` (``inf``
    if a factorisation fails)."""
    with torch.no_grad():
        try:
            fac = model._factors()
        except NUMERICAL:
            return math.inf
        val = objective(
            fac,
            model.op,
            u.detach(),
            model.f,
            model.g,
            model.log_tau_b,
            model.log_tau_pde,
            model.config["lam_b"],
            model.config["weighting"],
        )
    return float(val) if torch.isfinite(val) else math.inf


def _run(step, steps, params, progress, opt) -> FitResult:
    """:func:`optimize` with a time limit signalled by ``StopIteration`` from ``step``
    (an early stop, not a divergence: the current hyperparameters are kept); ``opt``'s state
    checked after each step (a finite objective whose gradients overflow poisons Adam)."""
    res = optimize(
        step, steps=steps, params=params, optimizer=opt, progress=progress, desc="gp_pde"
    )
    if res.message.startswith("stopped by step()"):
        res.message = f"time limit reached after {res.steps} steps"
    return res
