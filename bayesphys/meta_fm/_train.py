r"""Training pieces of :class:`~bayesphys.meta_fm.MetaFlowMatching` (Atanackovic et al. 2024,
Meta Flow Matching).

A fit first fixes the frame the weights learn in (:func:`normalization`: the training mean and
one scale for every dimension, warning when the dimensions' spreads differ widely), then takes
optimiser steps (:func:`optimizers`; :class:`FlowSteps`, the reference's alternation of GNN and
field updates or one joint update) on minibatches of ``pops_per_step`` populations with
``points`` points each (:func:`draw_batch`), each scored by the conditional flow-matching loss
of :mod:`~bayesphys.meta_fm.coupling` (:func:`batch_loss`). The MFM embedding reads each
population as prediction does (:func:`embed_batch`): through its ``points`` subsample, or
whole when it has fewer points.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import dense_memory_checked, offset_seed, seed_or_draw
from .._data_parallel import GradientSync
from .._fit_callback import FitCallback
from .._fit_state import optimizer_state_finite
from .._model import FitResult, optimize, release_grads
from .._stack import user_stacklevel
from .._time_budget import TimeBudget
from .._warning_types import BayesphysUserWarning
from ..problems.populations import PopulationPairs
from ._type_frame import type_centres, type_frame_loss
from .config import MFMConfig
from .coupling import (
    FullPlan,
    _interpolate,
    cfm_loss,
    check_full_plan_memory,
    check_pairing_memory,
    couple,
    sample_plan_partners,
)
from .embedding import check_knn_memory

__all__ = [
    "SPREAD_RATIO_WARN",
    "warn_unequal_spreads",
    "OFFSET_ROUNDING_WARN",
    "warn_far_from_origin",
    "normalization",
    "check_fit_memory",
    "batch_stream",
    "subsample",
    "draw_batch",
    "embed_batch",
    "batch_loss",
    "optimizers",
    "FlowSteps",
]

#: per population of a batch, ``None`` (the embedding reads its subsample) or its whole source
#: population ``[m, d]`` (normalised) with its features ``[m, f]`` (or ``None``)
Whole = list[tuple[Tensor, Tensor | None] | None]

#: a training minibatch: sources and targets ``[P, n, d]`` (normalised), the treatments, the
#: population ids, the source features ``[P, n, f]``, the source centres ``[P, 1, d]`` and what
#: the embedding reads in place of the subsample (:data:`Whole`; ``None`` when it reads the
#: subsample of every population)
Batch = tuple[Tensor, Tensor, Any, list[int], Tensor | None, Tensor | None, Whole | None]


#: ratio of the largest to the smallest per-dimension sd above which fit warns
SPREAD_RATIO_WARN = 100.0


def warn_unequal_spreads(sd: Tensor) -> None:
    """Warn when the per-dimension sds ``[d]`` of the training points differ by more than
    :data:`SPREAD_RATIO_WARN`: the model standardises with one scale for every dimension (as
    the reference code), so a feature in much smaller units is squashed for the kNN graph and
    the field (measured: one of two dimensions in 1000x other units raised the test W2 on a
    linear-map problem from 0.53 to 6.5, above the identity's 0.93)."""
    pos = sd[sd > 0]
    if pos.numel() < 2:
        return
    ratio = float(pos.max() / pos.min())
    if ratio > SPREAD_RATIO_WARN:
        big, small = int(sd.argmax()), int(torch.where(sd > 0, sd, sd.max()).argmin())
        warnings.warn(
            f"MetaFlowMatching: the points' spreads differ by {ratio:.3g}x across dimensions "
            f"(sd {float(sd[big]):.3g} in dimension {big}, {float(sd[small]):.3g} in dimension "
            f"{small}); the model standardises with one scale for all dimensions, which "
            "squashes the small-spread ones (a dimension in 1000x other units raised the test "
            "W2 from 0.53 to 6.5): standardise each feature before fitting and map the "
            "predictions back",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


#: rounding of the points' coordinates in the model's dtype, as a fraction of their spread,
#: above which fit warns
OFFSET_ROUNDING_WARN = 1e-3


def warn_far_from_origin(mean: Tensor, scale: Tensor, dtype: torch.dtype) -> None:
    """Warn when the training points' centre ``mean [d]`` lies so far from the origin, for their
    spread ``scale``, that coordinates in ``dtype`` (the model's) are rounded by more than
    :data:`OFFSET_ROUNDING_WARN` of the spread: points are taken and predictions returned in
    that dtype (float32 points centred at 1e6 with sd 4 were predicted on a lattice of 0.06)."""
    far = float(mean.abs().max())
    quantum = far * torch.finfo(dtype).eps
    if quantum > OFFSET_ROUNDING_WARN * float(scale):
        warnings.warn(
            f"MetaFlowMatching: the points are centred {far:.3g} from the origin with a spread "
            f"of {float(scale):.3g}; in the model's dtype ({str(dtype).removeprefix('torch.')}) "
            f"coordinates there are rounded to about {quantum:.2g}, "
            f"{quantum / float(scale):.1e} of the spread, and so are the predictions: subtract "
            "a centre from the points before fitting (and add it back to the predictions), or "
            "build the model with dtype=torch.float64",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


def normalization(data: PopulationPairs) -> tuple[Tensor, Tensor]:
    """The frame of the training points of ``data`` (sources and targets together), in float64:
    their mean ``[d]`` and one scale ``[]``, the mean over dimensions of their sample sds
    (Bessel-corrected, divisor ``N - 1`` for the ``N`` points pooled; 1 when every point is
    the same); warns as :func:`warn_unequal_spreads`. The frame scales with the data
    whatever their units (a floor of 1e-8 on the scale squashed points spread by 1e-11 to 1e-3
    in the model's frame, and predictions were 100 spreads off)."""
    allx = torch.cat([*data.source, *data.target]).to(torch.float64)
    mean = allx.mean(0)
    warn_unequal_spreads(allx.std(0))
    scale = (allx - mean).std(0).mean()
    return mean, torch.where(scale > 0, scale, torch.ones_like(scale))


def check_fit_memory(
    data: PopulationPairs,
    rows: list[int],
    config: MFMConfig,
    coupling: str,
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> None:
    """Refuse, before the first step, a fit on ``data`` (the training pairs, pair ``k`` being
    the user's pair ``rows[k]``) whose dense arrays cannot fit in memory, naming what the
    user set: ``points`` for the MFM embedding's kNN graphs (a step embeds the subsamples of
    up to ``pops_per_step`` populations ``[pops_per_step, points, points]`` together, a source
    of fewer points alone and whole) and for the minibatch plans of ``coupling="ot"``
    (``points x points``); ``data.source[i]/data.target[i]`` for the whole-population plans
    of ``"ot_full"`` (the pair of the largest plan, ``n_i x m_i``: every other fits when it
    does). The helpers check the same sizes again, under their own argument names: run them
    within :func:`~bayesphys._checks.dense_memory_checked`, so that they refuse as always but
    do not repeat a warning given here."""
    cfg = config
    if cfg.method == "MFM":
        largest = max(s.shape[0] for s in data.source)
        batch, n = (cfg.pops_per_step, cfg.points) if largest >= cfg.points else (1, largest)
        alternative = (
            "embed a subsample of fewer points (the config's points) or fewer populations a "
            "step (pops_per_step)"
        )
        check_knn_memory("points", batch, n, dtype, device, alternative)
    if coupling == "ot":
        check_pairing_memory("points", cfg.points, cfg.points)
    elif coupling == "ot_full":
        # the largest plan (the first of that size): a fit warns once, not once per pair
        sizes = [a.shape[0] * b.shape[0] for a, b in zip(data.source, data.target)]
        k = sizes.index(max(sizes))
        i, n, m = rows[k], data.source[k].shape[0], data.target[k].shape[0]
        check_full_plan_memory(f"data.source[{i}]/data.target[{i}]", n, m)


def batch_stream(seed: int | None) -> torch.Generator:
    """The training batches' stream of a model (or a fit) seeded ``seed``: a CPU generator
    seeded ``seed + 1`` (``None``: from torch's global stream)."""
    return torch.Generator().manual_seed(  # None: from the global stream
        seed_or_draw("seed", None) if seed is None else offset_seed(seed, 1)
    )


def subsample(x: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """Row indices: ``n`` without replacement when possible, else with replacement."""
    m = x.shape[0]
    if m >= n:
        return torch.randperm(m, generator=gen)[:n]
    return torch.randint(m, (n,), generator=gen)


def draw_batch(
    data: PopulationPairs,
    gen: torch.Generator,
    config: MFMConfig,
    coupling: str,
    norm: Callable[[Tensor], Tensor],
    plans: list[FullPlan] | None = None,
) -> Batch:
    """``config.pops_per_step`` populations of ``data`` (drawn with replacement) with
    ``config.points`` points each, from ``gen``: a source point's partner is the point of the
    same index (``coupling="index"``), a draw from its row of the whole-population plan
    (``plans``, ``"ot_full"``) or an independent subsample of the target (minibatch OT pairs
    them later). Points are mapped by ``norm`` into the model's frame. The centres are
    ``[P, 1, d]`` source means (``centered``), ``[P, n, d]`` the type centre of each source
    point (``type_frame``, :func:`~bayesphys.meta_fm._type_frame.type_centres` of its whole
    population) or ``None``.

    A source population of fewer than ``points`` points is resampled with replacement for the
    flow-matching pairs, but (MFM) the embedding reads it whole, without the repeated points
    (the batch's :data:`Whole` entry), as prediction embeds it: a 30-point population and a
    64-point resample of it were embedded about as far apart (0.18 on the unit sphere, an
    untrained GCN) as two 30-point draws of the same law (0.22).
    The draws from ``gen`` do not depend on this."""
    cfg = config
    idx = torch.randint(len(data), (cfg.pops_per_step,), generator=gen).tolist()
    x0s, x1s, f0s, ctrs = [], [], [], []
    feats = data.source_features if cfg.node_features else None
    whole: Whole = []
    for i in idx:
        s, t = data.source[i], data.target[i]
        small = cfg.method == "MFM" and s.shape[0] < cfg.points
        whole.append((s, None if feats is None else feats[i]) if small else None)
        r0 = subsample(s, cfg.points, gen)
        if plans is not None:  # ot_full: each point's partner from the whole-population plan
            r1 = sample_plan_partners(plans[i], r0, gen)
        else:
            r1 = r0 if coupling == "index" else subsample(t, cfg.points, gen)
        x0s.append(s[r0])
        x1s.append(t[r1])
        if cfg.centered:
            ctrs.append(s.mean(0))
        elif cfg.type_frame:  # each point's type centre, over the whole source population
            ctrs.append(type_centres(s, feats[i])[r0])
        if feats is not None:
            f0s.append(feats[i][r0])
    x0 = norm(torch.stack(x0s))
    x1 = norm(torch.stack(x1s))
    f0 = torch.stack(f0s).to(x0) if f0s else None
    tr = None if data.treatment is None else data.treatment[idx]
    sids = [int(data.source_id[i]) for i in idx]
    ctr = None
    if ctrs:  # centred: one centre a population [P, 1, d]; type frame: one a point [P, n, d]
        ctr = norm(torch.stack(ctrs)) if cfg.type_frame else norm(torch.stack(ctrs))[:, None, :]
    if not any(w is not None for w in whole):
        return x0, x1, tr, sids, f0, ctr, None
    whole = [
        None if w is None else (norm(w[0]), None if w[1] is None else w[1].to(x0)) for w in whole
    ]
    return x0, x1, tr, sids, f0, ctr, whole


def embed_batch(embed: nn.Module, x0: Tensor, f0: Tensor | None, whole: Whole | None) -> Tensor:
    """Embeddings ``[P, h]`` of a batch's populations: of their subsamples ``x0 [P, n, d]``
    (features ``f0 [P, n, f]``) in one call, except a population with a :data:`Whole` entry,
    embedded through its whole source population ``[m, d]`` as prediction embeds it."""
    if whole is None:
        return embed(x0, f0)
    out: list[Tensor | None] = [None] * len(whole)
    sub = [i for i, w in enumerate(whole) if w is None]
    if sub:
        for i, e in zip(sub, embed(x0[sub], None if f0 is None else f0[sub])):
            out[i] = e
    for i, w in enumerate(whole):
        if w is not None:
            out[i] = embed(*w)
    return torch.stack(out)


def batch_loss(
    field: nn.Module,
    x0: Tensor,
    x1: Tensor,
    cond: Tensor | None,
    gen: torch.Generator,
    coupling: str,
    ctr: Tensor | None = None,
    types: Tensor | None = None,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """The CFM loss of ``field`` on a batch ``x0``, ``x1`` ``[P, n, d]`` with one condition row
    ``cond [P, c]`` per population: the pairs coupled by ``coupling``, one time per point drawn
    from ``gen`` (on ``device`` in ``dtype``), points relative to the centres ``ctr`` when
    given.

    With ``types`` (the type frame: one-hot types ``[P, n, f]`` and type centres ``ctr
    [P, n, d]`` of the source points) the pairs are coupled on the raw points first, then both
    points of a pair are shifted by its source point's centre and the field reads that
    point's type."""
    if types is not None:
        return type_frame_loss(field, x0, x1, cond, gen, coupling, ctr, types, device, dtype)
    if ctr is not None:  # centred field: a common shift leaves the velocity x1 - x0 intact
        x0, x1 = x0 - ctr, x1 - ctr
    p, n, d = x0.shape
    # ot_full batches are already paired (by the whole-population plans)
    x0c, x1c = couple(x0, x1, "index" if coupling == "ot_full" else coupling, gen)
    # drawn in float32 whatever the default dtype (under a float64 default the same seed
    # drew other times, and the fit went elsewhere), then cast to the model's dtype
    t = torch.rand(p, n, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
    xt, u = _interpolate(x0c, x1c, t)  # t in [0, 1): no value check, no sync
    # one condition row per population, broadcast over its n points
    v = field(t, xt, None if cond is None else cond[:, None, :])
    return cfm_loss(v.reshape(-1, d), u.reshape(-1, d))


def optimizers(
    net: nn.ModuleDict, config: MFMConfig
) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
    """Fresh Adam optimisers of a fit: the field's (learning rate ``lr``) and, for MFM, the
    GCN's (``gnn_lr``), which is a second optimiser under ``schedule="alternating"`` and a
    parameter group of the first under ``"joint"``."""
    cfg = config
    field_opt = torch.optim.Adam(net["field"].parameters(), lr=cfg.lr)
    gnn_opt = None
    if cfg.method == "MFM":
        if cfg.schedule == "joint":
            field_opt.add_param_group({"params": net["embed"].parameters(), "lr": cfg.gnn_lr})
        else:
            gnn_opt = torch.optim.Adam(net["embed"].parameters(), lr=cfg.gnn_lr)
    return field_opt, gnn_opt


class FlowSteps:
    r"""The optimiser steps of one fit of ``net`` (fresh :func:`optimizers`): each call takes
    one and returns its loss (that of the weights before the update; under ``torchrun``, with
    gradients averaged by ``sync``, the mean over ranks); :meth:`run` takes them all.

    ``batch()`` draws a minibatch (:data:`Batch`), ``condition(x0, emb, ids, treatment, P)``
    builds its condition rows from the embeddings ``emb`` (:func:`embed_batch`; ``None`` for
    FM and CGFM) and ``loss(x0, x1, cond, ctr, f0)`` scores it (``f0 [P, n, f]``: the
    batch's point features). ``stream``: the generator those draw from; its state at the
    start of the last two steps is kept (a copy of a few kB each), so that a divergence
    rewinds it with the weights (:meth:`run`). Without a GNN
    optimiser every step updates all weights together. With one (the reference's alternating
    schedule), the steps of odd index ``k`` (counted from 0 in this fit) update the GCN through
    the fixed field and cache each population's embedding, those of even ``k`` (the first
    among them) the field with the cached, detached embeddings. ``lr_schedule=
    "cosine"`` sets each learning rate to :math:`\tfrac12(1 + \cos(\pi k / K))` of its base
    rate at step ``k`` of ``n_steps = K``.
    """

    def __init__(
        self,
        net: nn.ModuleDict,
        config: MFMConfig,
        sync: GradientSync,
        n_steps: int,
        *,
        batch: Callable[[], Batch],
        condition: Callable[..., Tensor | None],
        loss: Callable[..., Tensor],
        stream: torch.Generator | None = None,
    ) -> None:
        self.net, self.config, self.sync, self.n_steps = net, config, sync, n_steps
        self.stream = stream
        self.starts: list[Tensor] = []  # its state as the last two steps began
        self.updated = True  # whether the last begun step applied its update
        field_opt, gnn_opt = optimizers(net, config)
        self.field_opt, self.gnn_opt = field_opt, gnn_opt
        self.opts = [o for o in (field_opt, gnn_opt) if o is not None]
        self.base_lrs = [[g["lr"] for g in o.param_groups] for o in self.opts]
        self.batch, self.condition, self.loss = batch, condition, loss
        self.cache: dict[int, Tensor] = {}
        self.count = 0

    def _set_lr(self, k: int) -> None:
        if self.config.lr_schedule == "cosine":  # 1/2 (1 + cos(pi k / K)) of each base rate
            f = 0.5 * (1.0 + math.cos(math.pi * k / self.n_steps))
            for o, lrs in zip(self.opts, self.base_lrs):
                for g, lr0 in zip(o.param_groups, lrs):
                    g["lr"] = lr0 * f

    def _reported(self, loss: Tensor) -> Tensor:
        if not self.sync.active:
            return loss.detach()
        # the rank mean in the loss's dtype (a bare torch.tensor rounded float64 to float32)
        return torch.tensor(self.sync.mean(loss), dtype=loss.dtype)

    def __call__(self) -> Tensor:
        k = self.count
        self.count += 1
        if self.stream is not None:  # where this step's draws begin (a divergence rewinds)
            self.starts = [*self.starts[-1:], self.stream.get_state()]
        self.updated = False  # set once this step's update is applied
        x0, x1, tr, sids, f0, ctr, whole = self.batch()
        self._set_lr(k)
        net, gnn_opt, sync, cache = self.net, self.gnn_opt, self.sync, self.cache
        if gnn_opt is not None and k % 2 == 1:  # GNN step through the fixed field
            emb = embed_batch(net["embed"], x0, f0, whole)
            for sid, e in zip(sids, emb):
                cache[sid] = e.detach()
            cond = self.condition(x0, emb, sids, tr, len(sids))
            loss = self.loss(x0, x1, cond, ctr, f0)
            gnn_opt.zero_grad()
            loss.backward()
            sync.average_gradients()
            gnn_opt.step()
            self.updated = True
            return self._reported(loss)
        emb = None
        if gnn_opt is not None:  # flow step with cached, detached embeddings
            with torch.no_grad():
                miss = [i for i, s in enumerate(sids) if s not in cache]
                if miss:
                    f0m = None if f0 is None else f0[miss]
                    wm = None if whole is None else [whole[i] for i in miss]
                    new = embed_batch(net["embed"], x0[miss], f0m, wm)
                    for i, e in zip(miss, new):
                        cache[sids[i]] = e
            emb = torch.stack([cache[s] for s in sids])
        elif self.config.method == "MFM":  # joint: the embedding trains with the field
            emb = embed_batch(net["embed"], x0, f0, whole)
        cond = self.condition(x0, emb, sids, tr, len(sids))
        loss = self.loss(x0, x1, cond, ctr, f0)
        self.field_opt.zero_grad()
        if gnn_opt is not None:
            gnn_opt.zero_grad()
        loss.backward()
        sync.average_gradients()
        self.field_opt.step()
        self.updated = True
        return self._reported(loss)

    def run(
        self,
        steps: int,
        max_seconds: float | None,
        *,
        progress: bool,
        desc: str,
        counted: Callable[[], None],
        callback: FitCallback | None = None,
    ) -> FitResult:
        """Take ``steps`` steps, or as many as ``max_seconds`` of wall time allow (every rank
        stops after the same step), calling ``counted()`` after each step that completes with
        a finite loss, then ``callback()`` when it is due after this call's number of such
        steps (in evaluation mode; its time is not counted in ``seconds`` nor in the budget);
        ``net`` is left in evaluation mode, also after an error or an interrupt. A non-finite
        loss, or an update that left the optimisers' state non-finite, stops the fit and
        restores the last good weights (:func:`optimize`), those the last recorded step
        started from, and ``stream`` to where that step's draws began (to the call's start
        after a divergence at its first step), so that the next fit draws what it would after
        a fit that stopped cleanly there; no callback runs after that step. An error or an
        interrupt raised in a step before its update puts ``stream`` back to where that step
        began, with the weights it started from, and propagates.
        The dense kNN graphs and OT plans of a step are those :func:`check_fit_memory` checked
        before the fit: their helpers refuse them as always but repeat none of its warnings
        (:func:`~bayesphys._checks.dense_memory_checked`; the callback is outside).
        """
        budget = TimeBudget(max_seconds, self.sync)  # every rank stops after the same step
        user = callback or FitCallback(None, None, 1, int)

        begun = [0]  # the steps this call has begun

        def step() -> Tensor:
            # asked from the second step on (as every rank does): a fit takes at least one
            # step, also when the budget was spent before its first (a 1e-9 s budget took none)
            if begun[0] and budget.over(time.perf_counter() - t0 - user.seconds):
                raise StopIteration
            begun[0] += 1
            # the fit checked the step's kNN graphs and OT plans (check_fit_memory), naming
            # the config's points: their helpers refuse them again but do not warn again
            with dense_memory_checked():
                out = self()
            # counted once the step is through: not on an exception, nor on a non-finite loss
            # (optimize then restores the weights of the last completed step and stops)
            if bool(torch.isfinite(out)):
                counted()
                # every rank: the ranks take the same steps. Not after an update that left the
                # optimisers' state non-finite (NaN weights, or frozen ones): optimize ends the
                # fit there and restores the weights, as after a non-finite loss
                if user.due(self.count) and optimizer_state_finite(self.opts):
                    self.net.eval()  # as a fit leaves it: ready to predict
                    user()
                    self.net.train()
            return out

        budget.start()
        t0 = time.perf_counter()
        try:
            with user.propagating():
                # the optimisers too: a finite loss with non-finite gradients poisons Adam
                res = optimize(
                    step,
                    steps=steps,
                    params=self.net,
                    optimizer=self.opts,
                    progress=progress,
                    desc=desc,
                )
        except BaseException:
            if not self.updated and self.starts:
                # an error or an interrupt before the step's update: the weights are those the
                # step started from, and so is the stream (its draws were not used)
                self.stream.set_state(self.starts[-1])
            raise
        finally:  # also after an interrupt (Ctrl-C): the model is left ready to predict
            self.net.eval()
            release_grads(self.net)  # the last step's gradients: read by no later step
        if res.message.startswith("diverged") and self.starts:
            # the diverged step k was the last begun: back to where step max(k - 1, 0) began
            self.stream.set_state(self.starts[0])
        res.seconds -= user.seconds  # the callback's time is not the fit's
        if budget.reached:
            res.message, res.converged = budget.message(res.steps), False
        # NaN for a call that took no step: the setup time over max(steps, 1) was no rate
        res.extra["seconds_per_1k_steps"] = (
            1000 * res.seconds / res.steps if res.steps else math.nan
        )
        res.extra["method"] = self.config.method
        res.extra["final_lr"] = float(self.field_opt.param_groups[0]["lr"])
        return res
