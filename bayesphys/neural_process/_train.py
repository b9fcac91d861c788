r"""Training pieces of a :class:`~bayesphys.neural_process.RandomGridNP` (Vadeboncoeur et al.,
ICML 2023): the learning-rate schedule (:func:`learning_rate`), scrambled-Sobol prior draws
(:func:`qmc_prior`), the amortisation term on observation layouts (:func:`layout_term`) and the
loop that runs a fit's steps in chunks under one progress bar, with the user's callback and the
time budget between chunks (:func:`run_chunks`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._data_parallel import GradientSync
from .._model import DivergenceGuard, FitResult, optimize
from .._process_state import sobol_engine
from .._progress import progress_bar
from .._time_budget import TimeBudget
from .config import RGNPConfig
from .forward import ForwardNet
from .gicnet import GICNet, check_kernel_memory

__all__ = [
    "learning_rate",
    "qmc_prior",
    "check_fit_memory",
    "layout_term",
    "run_chunks",
    "OptimizerUndo",
]


def learning_rate(config: RGNPConfig, step_count: int) -> float:
    """The learning rate of step ``step_count``: ``config.lr`` after a linear warm-up over
    ``lr_warmup`` steps, halved every ``lr_half_every`` steps (smoothly, or in a staircase)."""
    c = config
    warm = min(1.0, (step_count + 1) / c.lr_warmup) if c.lr_warmup else 1.0
    if not c.lr_half_every:
        return c.lr * warm
    e = step_count / c.lr_half_every
    return c.lr * warm * 0.5 ** (math.floor(e) if c.lr_staircase else e)


def qmc_prior(
    problem: Any, n: int, generator: torch.Generator, dtype: torch.dtype, device: Any
) -> tuple[Tensor, Tensor]:
    """``n`` prior draws ``(z, w)`` from one scrambled Sobol net over the joint box of
    ``problem`` (its seed drawn from ``generator``): each draw is marginally uniform (unbiased
    Monte Carlo), the set covers the box more evenly."""
    p, g = problem, generator
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device).item())
    lo = torch.as_tensor([*p.z_low, *p.w_low], dtype=torch.float64)
    hi = torch.as_tensor([*p.z_high, *p.w_high], dtype=torch.float64)
    eng = sobol_engine(len(lo), seed)
    u = lo + (hi - lo) * eng.draw(n, dtype=torch.float64)
    u = u.to(dtype).to(device)
    return u[:, : p.dim_z], u[:, p.dim_z :]


def check_fit_memory(
    config: RGNPConfig, inverse_net: GICNet, dtype: torch.dtype, device: Any
) -> None:
    """Refuse, before the first step, a fit whose GICNet kernel weights cannot fit in memory,
    naming the settings that size them: each step interpolates ``batch`` sets of
    ``n_points`` points (the ELBO) and, with ``aug_weight > 0``, of up to ``max(aug_points)``
    points (the layout term), with gradients (:func:`~.gicnet.check_kernel_memory`)."""
    c = config
    sizes = [("batch/n_points", c.n_points)]
    if c.aug_weight > 0:
        sizes.append(("batch/aug_points", max(c.aug_points)))
    for name, n in sizes:
        check_kernel_memory(
            name,
            inverse_net,
            c.batch,
            n,
            dtype=dtype,
            device=device,
            copies=2,
            alternative=f"use a smaller batch or fewer points a set ({name.split('/')[1]})",
        )


def layout_term(
    layouts: Any,
    forward_net: ForwardNet,
    inverse_net: GICNet,
    aug_points: Sequence[int],
    generator: torch.Generator,
    z: Tensor,
    w: Tensor,
    dtype: torch.dtype,
    device: Any,
) -> Tensor:
    r"""Amortisation term on observation layouts: :math:`\log p_\beta(z \mid \tilde u', X', w)`
    ``[B]`` with :math:`X'` drawn from ``layouts`` (``N'`` drawn from ``aug_points``) and
    :math:`\tilde u' \sim q_\alpha(\cdot \mid z, w, X')` drawn without gradient (the term trains
    GICNet only: it is not part of the ELBO); every draw from ``generator``."""
    g, pts = generator, aug_points
    gd = g.device
    n = int(pts[int(torch.randint(0, len(pts), (1,), generator=g, device=gd))])
    xa, _ = layouts.sample(z.shape[0], n, generator=g, dtype=dtype, device=device)
    with torch.no_grad():
        q = forward_net.distribution(xa, z, w)
        eps = torch.randn(q.loc.shape, generator=g, dtype=dtype, device=device)
        eta = torch.randn(
            (*q.loc.shape[:-1], q.cov_factor.shape[-1], 1),
            generator=g,
            dtype=dtype,
            device=device,
        )
        ua = q.loc + q.cov_diag.sqrt() * eps + (q.cov_factor @ eta)[..., 0]
    return inverse_net(xa, ua, w).log_prob(z)


def run_chunks(
    step: Callable[[], Tensor],
    steps: int,
    guard: DivergenceGuard,
    sync: GradientSync,
    *,
    progress: bool,
    desc: str,
    callback: Callable[[], Any] | None,
    callback_every: int,
    max_seconds: float | None,
) -> FitResult:
    """Take ``steps`` calls of ``step`` in chunks (of ``callback_every`` steps with a
    ``callback``, else up to 50) under one progress bar, ``guard`` restoring the last good
    state on a non-finite loss. Between chunks ``callback()`` runs every ``callback_every``
    steps (its time excluded from ``seconds``), and the fit stops once ``max_seconds`` of
    training time are spent: under a time budget a lone process takes one-step chunks (it
    stops after the first step that ends past the budget, as the other models' fits), and the
    ranks of a process group chunks of a divisor of 5 steps, voting at each chunk's end so
    that they stop together. The chunks do not change the steps (one guard for the fit)."""
    hist: list[float] = []
    spent, cb_time, done = 0.0, 0.0, 0
    budget = TimeBudget(max_seconds, sync, every=1)  # asked at chunk ends, on every rank
    msg, conv = f"max steps ({steps})", True
    chunk = callback_every if callback is not None else max(1, min(steps, 50))
    if max_seconds is not None:
        # a lone process asks its clock after every step (chunks of 5 ran up to 4 steps past
        # the budget: a 1e-9 s budget took 5 steps, the other fits none); ranks vote every
        # few steps, as TimeBudget's voting does
        chunk = math.gcd(chunk, 5) if sync.active else 1
    # one bar for the whole fit (the chunks below run without their own)
    bar = progress_bar(total=steps, desc=desc, progress=progress, leave=False)
    try:
        while done < steps:
            n = min(chunk, steps - done)
            r = optimize(step, steps=n, guard=guard, progress=False)
            hist += r.loss_history
            spent += r.seconds
            done += r.steps
            bar.update(r.steps)
            if progress and r.loss_history:
                bar.set_postfix(loss=f"{r.loss_history[-1]:.4g}", refresh=False)
            if r.steps < n:  # diverged (the guard restored the last good state)
                msg, conv = r.message, False
                break
            if callback is not None and done % callback_every == 0:
                t0 = time.perf_counter()
                callback()
                cb_time += time.perf_counter() - t0
            if done < steps and budget.over(spent):  # the ranks vote: all stop together
                msg, conv = (
                    f"time budget ({max_seconds:.3g} s) reached after {done} steps",
                    False,
                )
                break
    finally:
        bar.close()
    return FitResult(
        loss_history=hist,
        seconds=spent,
        converged=conv,
        steps=done,
        message=msg,
        extra={"steps_per_second": done / max(spent, 1e-12)},
    )


class OptimizerUndo:
    """The state of ``optimizer`` before its latest update, to take that update back.

    :meth:`save` before each ``optimizer.step()`` copies the per-parameter state (Adam's
    moments ``exp_avg``, ``exp_avg_sq`` ``[*]`` of each parameter's shape and its ``step``
    count); :meth:`restore` puts it back, as it was before that update (an empty state, as
    before a model's first update, included). A fit whose divergence guard undoes the last
    recorded step's update restores the weights that step started from, and with this the
    optimiser's state of those weights too. Cost: one copy of the state, refreshed in place
    (one fused copy) before each update."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._saved: dict[Any, dict[str, Any]] | None = None  # None: no update saved

    def save(self) -> None:
        """Copy the current state (before the update about to be taken)."""
        state, saved = self.optimizer.state, self._saved
        same = (
            saved is not None
            and saved.keys() == state.keys()
            and all(
                saved[p].keys() == s.keys()
                and all(
                    not isinstance(v, Tensor)
                    or (isinstance(saved[p][k], Tensor) and saved[p][k].shape == v.shape)
                    for k, v in s.items()
                )
                for p, s in state.items()
            )
        )
        if not same:  # the first save, or a state of another structure (a load, a reset)
            self._saved = {
                p: {k: v.detach().clone() if isinstance(v, Tensor) else v for k, v in s.items()}
                for p, s in state.items()
            }
            return
        dst, src = [], []
        for p, s in state.items():
            for k, v in s.items():
                if isinstance(v, Tensor):
                    dst.append(saved[p][k])
                    src.append(v.detach())
                else:
                    saved[p][k] = v
        if dst:
            torch._foreach_copy_(dst, src)

    def restore(self) -> None:
        """Put back the state :meth:`save` copied last (nothing saved: nothing changes); the
        copy becomes the optimiser's state and is not kept."""
        if self._saved is None:
            return
        self.optimizer.state.clear()
        for p, s in self._saved.items():
            self.optimizer.state[p] = s
        self._saved = None
