r"""Step-1 training of :class:`~bayesphys.probconserv.ProbConserv` (Hansen et al., ICML 2023).

The fit loop (Adam with cosine learning-rate decay, gradient clipping, data-parallel under
``torchrun``, a wall-time budget), its batch streams (fresh GPME training functions, or
minibatches of given data, keyed by global step and rank), the SoftC penalty
:math:`\overline{r^2}`, :math:`r = u_t - \partial_x(k(u)u_x)` on a random subset of targets
(the ANP's mean by autograd, the meta-GP's predictive mean by central finite differences),
and the model's private stream of training draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_real, stream_seed
from .._data_parallel import GradientSync, rank_generator_seed
from .._fit_callback import FitCallback, check_fit_callback
from .._fit_state import optimizer_state_finite
from .._model import FitResult, optimize, release_grads
from .._time_budget import TimeBudget, check_max_seconds
from ..problems.gpme import GPMEData, make_dataset
from ..problems.gpme.base import params_checked
from ._inputs import check_data
from ._trained_range import record_trained_range
from ._units import warn_field_scale
from .anp import AttentiveNP
from .metagp import MetaGP

if TYPE_CHECKING:
    from .model import ProbConserv

__all__ = ["fork_stream", "train_step1", "softc_penalty", "softc_penalty_gp"]


def fork_stream(device: torch.device) -> torch.Generator:
    """A generator on ``device`` holding the current state of torch's global generator there."""
    gen = torch.Generator(device=device)
    if device.type == "cuda":
        gen.set_state(torch.cuda.get_rng_state(device))
    else:
        gen.set_state(torch.get_rng_state())
    return gen


def train_step1(
    model: ProbConserv,
    data: GPMEData | None,
    *,
    steps: int,
    progress: bool,
    lr: float | None,
    max_seconds: float | None,
    callback: Callable[[ProbConserv, int], Any] | None = None,
    callback_every: int = 100,
) -> FitResult:
    """Run :meth:`~bayesphys.probconserv.ProbConserv.fit` on ``model`` (its docstring states the
    arguments and the result); advances ``model.steps_done`` (after every step while a
    ``callback`` runs, so that it reads the step the callback receives)."""
    cfg = model.config
    if data is not None and not isinstance(data, GPMEData):
        raise TypeError(f"data: expected GPMEData or None, received {type(data).__name__}")
    steps = check_int("steps", steps, minimum=0)
    progress = check_bool("progress", progress)
    max_seconds = check_max_seconds(max_seconds)
    callback_every = check_fit_callback(model, callback, callback_every)
    if data is not None:
        check_data("data", data, model.problem, targets=True)  # tensors of real values
        if cfg.softc_weight > 0:  # the SoftC residual uses each function's parameter
            model.problem.check_params(
                "data.params", float(data.params.min()), float(data.params.max())
            )
    if lr is not None:
        lr = check_real("lr", lr, minimum=0.0, strict=True)
    if steps:  # the parameters the weights are about to see (predictions warn outside them)
        record_trained_range(model, data)
    lr = lr or cfg.lr or (1e-3 if cfg.step1 == "anp" else 1e-2)
    opt = torch.optim.Adam(model.net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr * 0.05)
    # training batches: the stream "probconserv-train" keyed by (global step, rank), apart
    # from every dataset seed a user (or a calibration) passes to make_dataset; minibatches
    # of ``data``: "probconserv-subset" keyed the same way, so fit(4) + fit(2) draws the
    # batches of fit(6) on either path
    start, seed0 = model.steps_done, cfg.seed or 0
    # "k": the steps begun; "applied": the updates taken (a step interrupted before its
    # update has begun but not updated); "rng": the latent-noise stream as the last step began
    counter: dict[str, Any] = {"k": 0, "applied": 0, "rng": None}
    # data-parallel under torchrun: identical replicas, per-rank batches, mean gradients
    sync = GradientSync(model.net)
    if model._train_rng is not None and model._split_rng:
        # ranks draw their own latent noise (rank 0 keeps its)
        rank_generator_seed(model._train_rng)
        model._split_rng = False
    progress = progress and sync.is_main

    # training parameters: U(train_range), widened by train_margin at each end
    train_range = model.problem.widened_range(cfg.train_margin) if cfg.train_margin else None

    def batch():
        if data is None:
            return make_dataset(
                model.problem,
                cfg.batch_size,
                seed=stream_seed(seed0, "probconserv-train", start + counter["k"], sync.rank),
                noise_std=cfg.noise_std,
                param_range=train_range,
            )
        key = stream_seed(seed0, "probconserv-subset", start + counter["k"], sync.rank)
        gen = torch.Generator().manual_seed(key)
        idx = torch.randint(len(data), (min(cfg.batch_size, len(data)),), generator=gen)
        return data.subset(idx)

    def step():
        if model._train_rng is not None:  # an interrupt before the update rewinds it
            counter["rng"] = model._train_rng.get_state()
        d = batch()
        if counter["k"] == 0:  # the first batch of this fit: values in the field's units
            warn_field_scale(d.y_context, d.y_target)
        counter["k"] += 1
        cast = {"device": model.device, "dtype": model.dtype}
        xc, yc = d.x_context.to(**cast), d.y_context.to(**cast)
        xt, yt = d.x_target.to(**cast), d.y_target.to(**cast)
        model.net.train()
        if cfg.step1 == "anp":
            loss, _, _ = model.net.loss(xc, yc, xt, yt, generator=model._train_rng)
            if cfg.softc_weight > 0:
                loss = loss + cfg.softc_weight * softc_penalty(
                    model, xc, yc, xt, d.params.to(**cast)
                )
        else:
            loss = model.net.loss(xc, yc)
            if cfg.softc_weight > 0:  # SoftC-GP: the residual of the predictive mean
                loss = loss + cfg.softc_weight * softc_penalty_gp(
                    model, xc, yc, xt, d.params.to(**cast)
                )
        opt.zero_grad()
        loss.backward()
        sync.average_gradients()
        torch.nn.utils.clip_grad_norm_(model.net.parameters(), 10.0)
        opt.step()
        counter["applied"] += 1
        sched.step()
        # the rank mean in the loss's dtype (a bare torch.tensor rounded float64 losses to float32)
        return torch.tensor(sync.mean(loss), dtype=loss.dtype) if sync.active else loss.detach()

    budget = TimeBudget(max_seconds, sync)  # every rank stops after the same step
    # the user's callback, after the update of every callback_every-th step (on every rank:
    # the ranks take the same steps); its time counts neither in the budget nor in seconds
    user = FitCallback(model, callback, callback_every, lambda: model.steps_done)

    def budgeted() -> Tensor:
        # asked from the second step on (as every rank does): a fit takes at least one step,
        # also when the budget was spent before its first (a 1e-9 s budget took none)
        if counter["k"] and budget.over(time.perf_counter() - t0 - user.seconds):
            raise StopIteration
        out = step()
        # a non-finite loss, or an update that left Adam's state non-finite, ends the fit
        # (optimize restores the weights): no callback then
        due = user.due(counter["k"]) and bool(torch.isfinite(out))
        if due and optimizer_state_finite(opt):
            model.steps_done = start + counter["k"]
            model.net.eval()  # as a fit leaves it: ready to predict (step() sets train mode)
            user()
        return out

    budget.start()
    t0 = time.perf_counter()
    try:
        with user.propagating():
            res = optimize(
                budgeted,
                steps=steps,
                params=model.net,
                optimizer=opt,  # a finite loss with non-finite gradients poisons Adam
                progress=progress,
                desc=f"ProbConserv {cfg.step1} ({cfg.problem})",
            )
    except BaseException:
        # interrupted (e.g. Ctrl-C, or an error of the callback): steps_done counts the updates
        # the weights hold (a step interrupted before its update was counted, though its
        # weights were the previous step's), so the next fit draws the batch that step drew
        # and never used, as a fit stopped cleanly there would; the latent-noise stream goes
        # back to where that step began
        if counter["applied"] < counter["k"] and counter["rng"] is not None:
            model._train_rng.set_state(counter["rng"])
        model.steps_done = start + counter["applied"]
        model.net.eval()
        raise
    finally:
        release_grads(model.net)  # the last step's gradients: read by no later step
    model.net.eval()  # as after an interrupt: left ready to predict
    model.steps_done = start + res.steps
    if res.message.startswith("diverged"):
        # optimize restored the weights before the last recorded step's update (the loss a
        # step returns is that of the weights before its update): not one of those counted.
        # A step whose finite loss came with a non-finite update is not recorded (res.steps)
        model.steps_done = start + max(res.steps - 1, 0)
    res.seconds -= user.seconds  # the callback's time is not the fit's
    if budget.reached:
        res.message, res.converged = budget.message(res.steps), False
    return res


def softc_penalty(model: ProbConserv, xc: Tensor, yc: Tensor, xt: Tensor, params: Tensor) -> Tensor:
    """The SoftC penalty: mean squared PDE residual of the ANP's mean at (a random subset of
    ``softc_points`` of) the targets ``xt [B, n, 2]``, by autograd; ``params [B]``."""
    net: AttentiveNP = model.net  # type: ignore[assignment]
    xt = _softc_subset(model, xt)  # the residual on a random subset of targets
    xt = xt.detach().clone().requires_grad_(True)
    mz, _ = net.latent(xc, yc)
    mu, _ = net.decode(net.deterministic(xc, yc, xt), mz, xt)
    (du,) = torch.autograd.grad(mu.sum(), xt, create_graph=True)
    # the training parameters were checked against the family's domain once (train_step1:
    # data.params, or make_dataset's range): no read of them, no device sync, per step
    with params_checked():
        k = model.problem.diffusivity(mu, params[:, None].to(mu.dtype))
    (dflux,) = torch.autograd.grad((k * du[..., 1]).sum(), xt, create_graph=True)
    r = du[..., 0] - dflux[..., 1]
    return r.pow(2).mean()


#: the finite-difference step of :func:`softc_penalty_gp`, as a fraction of each side of the box
SOFTC_GP_STEP = 1e-3


def _softc_subset(model: ProbConserv, xt: Tensor) -> Tensor:
    """A random subset of ``softc_points`` of the targets ``xt [B, n, 2]`` (the same for every
    function; drawn from the model's training stream), or all of them if ``n`` is no more."""
    if xt.shape[1] > model.config.softc_points:
        idx = torch.randperm(xt.shape[1], device=xt.device, generator=model._train_rng)
        xt = xt[:, idx[: model.config.softc_points]]
    return xt


def softc_penalty_gp(
    model: ProbConserv, xc: Tensor, yc: Tensor, xt: Tensor, params: Tensor
) -> Tensor:
    r"""The SoftC penalty of the meta-GP: :math:`\overline{r^2}`, the mean squared PDE residual
    :math:`r = u_t - \partial_x(k(u)\,u_x)` of its differentiable predictive mean
    :math:`m(a) = m_0 + K(a, X_c)(K(X_c, X_c) + \sigma_n^2 I)^{-1}(y_c - m_0)`
    (:meth:`~bayesphys.probconserv.metagp.MetaGP.mean_at`, conditioned on each function's
    contexts ``xc [B, Nc, 2]``, ``yc [B, Nc]``), at a random subset of ``softc_points`` of the
    targets ``xt [B, n, 2]``; ``params [B]`` each function's parameter; returns ``[]``,
    differentiable in the GP's hyperparameters and feature net.

    By central finite differences in :math:`a = (t, x)` (not autograd in the input, whose
    Matern-5/2 derivative at a target that coincides with a context is NaN), with steps
    :math:`h_t, h_x` = ``SOFTC_GP_STEP`` (1e-3) of the box's sides; :math:`m` is evaluated at
    the five-point stencil of each target (``[B, 5 n]`` points in one call):

    .. math::  u_t \approx \frac{m(t + h_t, x) - m(t - h_t, x)}{2 h_t},\qquad
        \partial_x(k(u) u_x) \approx \frac{k(u_{+1/2})\,(m_{+} - m_0)
        - k(u_{-1/2})\,(m_0 - m_{-})}{h_x^2},

    :math:`m_\pm = m(t, x \pm h_x)`, :math:`m_0 = m(t, x)`,
    :math:`u_{\pm 1/2} = (m_0 + m_\pm) / 2`, with the problem's ``diffusivity(u, params)``
    (both second order in the steps)."""
    net: MetaGP = model.net  # type: ignore[assignment]
    xt = _softc_subset(model, xt).detach()
    prob = model.problem
    side = torch.tensor(
        [prob.t_range[1] - prob.t_range[0], prob.x_range[1] - prob.x_range[0]],
        dtype=xt.dtype,
        device=xt.device,
    )
    ht, hx = (SOFTC_GP_STEP * side).unbind()
    shift = torch.zeros(5, 2, dtype=xt.dtype, device=xt.device)
    shift[1, 0], shift[2, 0], shift[3, 1], shift[4, 1] = ht, -ht, hx, -hx
    b, n = xt.shape[:2]
    pts = (xt[:, None] + shift[None, :, None]).reshape(b, 5 * n, 2)  # [B, 5 n, 2]
    m = net.mean_at(xc, yc, pts).reshape(b, 5, n)
    m0, mtp, mtm, mxp, mxm = m.unbind(1)
    # the training parameters were checked against the family's domain once (train_step1:
    # data.params, or make_dataset's range): no read of them, no device sync, per step
    with params_checked():
        p = params[:, None].to(m.dtype)
        kp = prob.diffusivity(0.5 * (m0 + mxp), p)
        km = prob.diffusivity(0.5 * (m0 + mxm), p)
    u_t = (mtp - mtm) / (2 * ht)
    flux = (kp * (mxp - m0) - km * (m0 - mxm)) / hx**2
    return (u_t - flux).pow(2).mean()
