r"""Meta Flow Matching model (and the FM / CGFM baselines in the same code).

A vector field :math:`v_\theta(t, x \mid c)` transports each source population
:math:`p_0^{(i)}` to its target :math:`p_1^{(i)}` along straight conditional paths. The
condition :math:`c` is

* ``MFM``: :math:`\varphi(p_0^{(i)})`, a GCN embedding of the whole source population
  (:class:`~bayesphys.meta_fm.embedding.PopulationEmbedding`), so the field generalises to unseen
  populations;
* ``FM``: nothing (one field for all populations);
* ``CGFM``: the one-hot id of the training population; an unseen population gets the uniform
  average of the training one-hots, as in the reference code;

each optionally concatenated with a treatment one-hot. Per-point features of the source
(``PopulationPairs.source_features``, e.g. the cell-type one-hot of the reference's organoid
model) enter the GCN beside the coordinates (``node_features``). Training minimises the CFM loss
(:mod:`~bayesphys.meta_fm.coupling`) over minibatches of ``pops_per_step`` populations with
``points`` points each. Prediction integrates the ODE from the full source population
(:mod:`~bayesphys.meta_fm.sampling`). Points are standardised with the training mean and a
single scale (stored with the model).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import (
    check_bool,
    check_int,
    check_optional_seed,
    offset_seed,
    require,
    seed_or_draw,
)
from .._data_parallel import GradientSync, rank_generator_seed
from .._device import _GLOBAL_STATE, model_device, resolve_dtype, seeded_build
from .._model import (
    FitResult,
    autograd_on,
    load_checkpoint,
    optimize,
    rebuilding,
    refuse_unknown,
    require_entries,
    save_checkpoint,
    warn_untrained,
)
from .._stack import user_stacklevel
from .._time_budget import TimeBudget, check_max_seconds
from ..posterior import SamplePosterior
from ..problems.populations import PopulationPairs
from ._validate import (
    as_list,
    check_condition_ids,
    check_features,
    check_pairs,
    check_populations,
    check_source_ids,
    check_training_data,
    points_warnings,
    training_split,
)
from .config import MFMConfig
from .coupling import (
    FullPlan,
    cfm_loss,
    couple,
    full_ot_plans,
    interpolate,
    sample_plan_partners,
)
from .embedding import PopulationEmbedding
from .field import VectorField
from .sampling import SOLVERS, integrate

__all__ = ["MetaFlowMatching"]


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
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _same_size_groups(sizes: Sequence[int]) -> list[list[int]]:
    """Indices of ``sizes`` grouped by value, groups in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(sizes):
        groups.setdefault(int(n), []).append(i)
    return list(groups.values())


def _subsample(x: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """Row indices: ``n`` without replacement when possible, else with replacement."""
    m = x.shape[0]
    if m >= n:
        return torch.randperm(m, generator=gen)[:n]
    return torch.randint(m, (n,), generator=gen)


class MetaFlowMatching:
    """MFM / FM / CGFM flow between populations.

    Parameters
    ----------
    data: training pairs (their ``train`` split, or all pairs if there is none); sets ``dim``,
        the number of treatments and (CGFM) the training population ids.
    config: an :class:`MFMConfig`; keyword arguments override its fields.
    dim, num_treatments, condition_ids: give these instead of ``data`` to build an empty model
        (given with ``data``, they must agree with it). ``condition_ids``: distinct ints.
    device (``None``: the CPU; ``"auto"``: CUDA when present), dtype (default float32),
    seed: the initial weights are drawn as after ``seed_everything(seed)``, with the
        caller's global streams restored after (:func:`~bayesphys.seeded`), and ``seed`` seeds
        the model's own generators (Fourier matrix, training minibatches and
        times); ``seed=None``: the initial weights follow the global streams, and those
        generators are seeded from torch's global stream (so ``torch.manual_seed`` repeats an
        unseeded model; two unseeded models, or an unseeded ensemble's members, differ).

    Examples
    --------
    >>> from bayesphys.problems.populations import linear_map
    >>> data = linear_map(n_train=8, n_cal=0, n_test=2, n_points=64)
    >>> m = MetaFlowMatching(data, width=32, layers=2, time_dim=8, fourier=8, knn_k=5, points=32, seed=0)
    >>> res = m.fit(steps=3, progress=False)
    >>> [p.shape for p in m.predict(data.subset("test").source)]
    [torch.Size([64, 2]), torch.Size([64, 2])]
    """

    kind = "meta_fm.MetaFlowMatching"

    def __init__(
        self,
        data: PopulationPairs | None = None,
        config: MFMConfig | None = None,
        *,
        dim: int | None = None,
        num_treatments: int | None = None,
        condition_ids: Sequence[int] | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        seed: int | None = 0,
        **overrides: Any,
    ) -> None:
        if config is not None and not isinstance(config, MFMConfig):
            raise TypeError(
                f"config: expected an MFMConfig or None, received {type(config).__name__} "
                "(build one with MFMConfig(**settings), or pass the settings as keywords)"
            )
        cfg = copy.deepcopy(config) if config is not None else MFMConfig()
        if overrides:
            cfg = MFMConfig.from_dict({**cfg.to_dict(), **overrides})
        self.config = cfg
        self.device = model_device(device)
        self.dtype = resolve_dtype(dtype, default=torch.float32)
        if self.dtype not in (torch.float32, torch.float64):
            # half precision failed deep inside torch (cdist of the kNN graph has no Half kernel)
            raise ValueError(
                f"dtype: expected torch.float32 or torch.float64, received {self.dtype}"
            )
        self.seed = check_optional_seed("seed", seed)
        # optimiser steps taken so far, and the training batches' stream (kept across fit calls)
        self.steps_done = 0
        self._train_gen: torch.Generator | None = None
        self._split_gen = False
        self.data = None
        if data is not None:
            check_pairs(data)
            train = training_split(data)
            self.data = train
            ids = sorted({int(i) for i in train.source_id})
            for name, given, want in (
                ("dim", dim, train.dim),
                ("num_treatments", num_treatments, train.num_treatments),
                (
                    "condition_ids",
                    None if condition_ids is None else sorted(check_condition_ids(condition_ids)),
                    ids,
                ),
            ):
                if given is not None and as_list(given) != as_list(want):
                    raise ValueError(
                        f"{name}: the data set it to {want!r:.200}, received {given!r:.200} "
                        "(leave it out when passing data)"
                    )
            dim, num_treatments, condition_ids = train.dim, train.num_treatments, ids
            self.paired = bool(data.paired)
            nf = 0 if train.source_features is None else int(train.source_features[0].shape[-1])
            if cfg.method != "MFM":
                nf = 0  # only the embedding reads point features
            if cfg.node_features is not None and int(cfg.node_features) not in (0, nf):
                raise ValueError(
                    f"node_features: the data give {nf} features per point (used by MFM only), "
                    f"config says {cfg.node_features} (0 ignores them)"
                )
            cfg.node_features = nf if cfg.node_features is None else int(cfg.node_features)
        else:
            self.paired = cfg.coupling not in ("ot", "ot_full")
            cfg.node_features = int(cfg.node_features or 0)
        if dim is None:
            raise ValueError("dim: required when no data is given")
        self.dim = check_int("dim", dim, minimum=1)
        self.num_treatments = (
            0 if num_treatments is None else check_int("num_treatments", num_treatments, minimum=0)
        )
        self.condition_ids = check_condition_ids(condition_ids)
        if cfg.method == "CGFM" and not self.condition_ids:
            raise ValueError("condition_ids: CGFM needs the training population ids (pass data)")
        self._build()
        if self.data is not None:
            check_training_data(self, self.data)

    # ------------------------------------------------------------------ construction
    def _cond_dim(self) -> int:
        c = self.num_treatments
        if self.config.method == "MFM":
            c += self.config.gnn_hidden
        elif self.config.method == "CGFM":
            c += len(self.condition_ids)
        return c

    def _build(self) -> None:
        cfg = self.config
        # initial weights from ``seed``, without reseeding the caller's global streams
        with seeded_build(self.seed, self.device):
            # seed=None: the Fourier features' stream too from torch's global stream (every
            # unseeded model, and every member of an unseeded ensemble, shared seed 0's)
            gen = torch.Generator().manual_seed(
                seed_or_draw("seed", None) if self.seed is None else int(self.seed)
            )
            field = VectorField(
                self.dim,
                self._cond_dim(),
                width=cfg.width,
                layers=cfg.layers,
                time_dim=cfg.time_dim,
                fourier=cfg.fourier,
                fourier_sigma=cfg.fourier_sigma,
                residual=cfg.residual,
                conditioning=cfg.conditioning,
                generator=gen,
            )
            mods: dict[str, nn.Module] = {"field": field}
            if cfg.method == "MFM":
                mods["embed"] = PopulationEmbedding(
                    self.dim, cfg.gnn_hidden, cfg.gnn_layers, cfg.knn_k, features=cfg.node_features
                )
            self.net = nn.ModuleDict(mods).to(device=self.device, dtype=self.dtype)
            self.net.register_buffer(
                "shift", torch.zeros(self.dim, device=self.device, dtype=self.dtype)
            )
            self.net.register_buffer("scale", torch.ones((), device=self.device, dtype=self.dtype))
        self._cg_index = {sid: k for k, sid in enumerate(self.condition_ids)}
        self.fit_result: FitResult | None = None

    @property
    def coupling(self) -> str:
        c = self.config.coupling
        return ("index" if self.paired else "ot") if c == "auto" else c

    # ------------------------------------------------------------------ conditions
    def _norm(self, x: Tensor) -> Tensor:
        return (x.to(device=self.device, dtype=self.dtype) - self.net.shift) / self.net.scale

    def _treat(self, treatment: Tensor | None, p: int) -> Tensor | None:
        if not self.num_treatments:
            if treatment is not None:
                raise ValueError(
                    "treatment: this model was built without treatments (num_treatments=0), "
                    f"received {as_list(treatment)!r:.200}"
                )
            return None
        if treatment is None:
            raise ValueError(
                f"treatment: this model needs one of {self.num_treatments} treatments per population"
            )
        tr = torch.as_tensor(treatment, device=self.device)
        if tr.is_floating_point() or tr.is_complex() or tr.dtype == torch.bool:
            raise ValueError(
                f"treatment: expected integer indices in [0, {self.num_treatments}), received "
                f"{tr.dtype} values {tr.reshape(-1).tolist()!r:.200}"
            )
        tr = tr.reshape(-1).long()
        if tr.numel() != p or bool(((tr < 0) | (tr >= self.num_treatments)).any()):
            raise ValueError(
                f"treatment: expected {p} indices in [0, {self.num_treatments}), received {tr.tolist()}"
            )
        return torch.nn.functional.one_hot(tr, self.num_treatments).to(self.dtype)

    def _cgfm_cond(self, source_ids: Sequence[int] | None, p: int) -> Tensor:
        c = len(self.condition_ids)
        out = torch.full((p, c), 1.0 / c, device=self.device, dtype=self.dtype)
        for i, sid in enumerate(source_ids or []):
            k = self._cg_index.get(int(sid)) if sid is not None else None
            if k is not None:
                out[i] = 0
                out[i, k] = 1
        return out

    def _condition(
        self, x0: Tensor | None, emb: Tensor | None, source_ids, treatment, p: int, f0=None
    ):
        parts = []
        if self.config.method == "MFM":
            parts.append(emb if emb is not None else self.net["embed"](x0, f0))
        elif self.config.method == "CGFM":
            parts.append(self._cgfm_cond(source_ids, p))
        tr = self._treat(treatment, p)
        if tr is not None:
            parts.append(tr)
        return torch.cat(parts, -1) if parts else None

    # ------------------------------------------------------------------ training
    def _batch(
        self,
        data: PopulationPairs,
        gen: torch.Generator,
        plans: list[FullPlan] | None = None,
    ):
        cfg = self.config
        idx = torch.randint(len(data), (cfg.pops_per_step,), generator=gen).tolist()
        x0s, x1s, f0s, ctrs = [], [], [], []
        feats = data.source_features if cfg.node_features else None
        for i in idx:
            s, t = data.source[i], data.target[i]
            r0 = _subsample(s, cfg.points, gen)
            if plans is not None:  # ot_full: each point's partner from the whole-population plan
                r1 = sample_plan_partners(plans[i], r0, gen)
            else:
                r1 = r0 if self.coupling == "index" else _subsample(t, cfg.points, gen)
            x0s.append(s[r0])
            x1s.append(t[r1])
            if cfg.centered:
                ctrs.append(s.mean(0))
            if feats is not None:
                f0s.append(feats[i][r0])
        x0 = self._norm(torch.stack(x0s))
        x1 = self._norm(torch.stack(x1s))
        f0 = torch.stack(f0s).to(x0) if f0s else None
        tr = None if data.treatment is None else data.treatment[idx]
        sids = [int(data.source_id[i]) for i in idx]
        ctr = self._norm(torch.stack(ctrs))[:, None, :] if ctrs else None
        return x0, x1, tr, sids, f0, ctr

    def _loss(self, x0, x1, cond, gen, ctr: Tensor | None = None) -> Tensor:
        if ctr is not None:  # centred field: a common shift leaves the velocity x1 - x0 intact
            x0, x1 = x0 - ctr, x1 - ctr
        p, n, d = x0.shape
        # ot_full batches are already paired (by the whole-population plans)
        x0c, x1c = couple(x0, x1, "index" if self.coupling == "ot_full" else self.coupling, gen)
        t = torch.rand(p, n, generator=gen).to(device=self.device, dtype=self.dtype)
        xt, u = interpolate(x0c, x1c, t)
        # one condition row per population, broadcast over its n points
        v = self.net["field"](t, xt, None if cond is None else cond[:, None, :])
        return cfm_loss(v.reshape(-1, d), u.reshape(-1, d))

    @autograd_on()
    def fit(
        self,
        data: PopulationPairs | None = None,
        *,
        steps: int = 1000,
        progress: bool = True,
        seed: int | None = None,
        max_seconds: float | None = None,
    ) -> FitResult:
        """Train for ``steps`` optimiser steps on ``data`` (default: the data given at build),
        or until ``max_seconds`` of wall time (``None`` or ``> 0``; the result then has
        ``converged=False`` and says so in ``message``).

        Under ``torchrun`` (a process group of ``W > 1`` ranks) the fit is data-parallel: each
        rank samples its own ``pops_per_step`` populations and the gradients are averaged
        (:class:`~bayesphys.distributed.GradientSync`).

        A second call continues: the training batches come from the same stream, which goes
        on where the last call stopped (and is saved with the model; ``seed`` restarts it from
        ``seed + 1``), and the normalisation (``normalize``) estimated before the first step is
        kept. Each call builds fresh Adam optimisers, and ``lr_schedule="cosine"`` runs over
        that call's ``steps``; so ``fit(500)`` twice is not ``fit(1000)``.

        Returns a :class:`~bayesphys.FitResult` (``extra["seconds_per_1k_steps"]``). A
        non-finite loss stops the fit and restores the last good weights. An error raised
        inside a step (or an interrupt) propagates and leaves the weights of the last
        completed step, not those the call started from; ``steps_done`` counts completed
        steps only.
        """
        steps = check_int("steps", steps, minimum=0)
        progress = check_bool("progress", progress)
        seed = check_optional_seed("seed", seed)
        max_seconds = check_max_seconds(max_seconds)
        if self.config.solver == "dopri5":  # before training, not at the first predict
            # after it (a saved dopri5 model still loads without it, and predicts with rk4)
            require("torchdiffeq", "torchdiffeq", "config.solver='dopri5' (or use 'rk4')")
        if data is None:
            data = self.data
        if data is None:
            raise ValueError("data: no training data given here or at construction")
        check_pairs(data, self.dim)
        data = training_split(data)
        check_training_data(self, data)
        cfg = self.config
        if cfg.node_features:
            check_features(
                "data.source_features", data.source_features, data.source, cfg.node_features
            )
        # an MFMEnsemble gives these warnings once for all its members (_points_warned)
        if not getattr(self, "_points_warned", False):
            for text in points_warnings(
                data, cfg.points, cfg.method, self.coupling, "fit", "set points to"
            ):
                warnings.warn(text, UserWarning, stacklevel=user_stacklevel())
        if cfg.normalize and self.steps_done == 0:
            # the frame the weights learn in: estimated before the first step only (a later fit,
            # e.g. fine-tuning on other pairs, keeps it)
            allx = torch.cat([*data.source, *data.target]).to(torch.float64)
            mean = allx.mean(0)
            warn_unequal_spreads(allx.std(0))
            self.net.shift.copy_(mean.to(self.dtype))
            self.net.scale.copy_(((allx - mean).std(0).mean()).clamp_min(1e-8).to(self.dtype))
        if seed is not None or self._train_gen is None:
            gseed = self.seed if seed is None else seed
            self._train_gen = torch.Generator().manual_seed(  # None: from the global stream
                seed_or_draw("seed", None) if gseed is None else offset_seed(gseed, 1)
            )
            self._split_gen = True
        gen = self._train_gen
        field_opt = torch.optim.Adam(self.net["field"].parameters(), lr=cfg.lr)
        gnn_opt = None
        if cfg.method == "MFM":
            if cfg.schedule == "joint":
                field_opt.add_param_group(
                    {"params": self.net["embed"].parameters(), "lr": cfg.gnn_lr}
                )
            else:
                gnn_opt = torch.optim.Adam(self.net["embed"].parameters(), lr=cfg.gnn_lr)
        opts = [o for o in (field_opt, gnn_opt) if o is not None]
        base_lrs = [[g["lr"] for g in o.param_groups] for o in opts]
        n_steps = max(steps, 1)
        plans = full_ot_plans(data.source, data.target) if self.coupling == "ot_full" else None
        cache: dict[int, Tensor] = {}
        counter = [0]
        self.net.train()
        # data-parallel under torchrun: identical replicas, per-rank batches, mean gradients
        sync = GradientSync(self.net)
        if self._split_gen:  # a new or restored stream: split it by rank once
            rank_generator_seed(gen)
            self._split_gen = False
        progress = progress and sync.is_main
        budget = TimeBudget(max_seconds, sync)  # every rank stops after the same step

        def step() -> Tensor:
            if budget.over():
                raise StopIteration
            out = one_step()
            # counted once the step is through: not on an exception, nor on a non-finite loss
            # (optimize then restores the weights of the last completed step and stops)
            if bool(torch.isfinite(out)):
                self.steps_done += 1
            return out

        def one_step() -> Tensor:
            k = counter[0]
            counter[0] += 1
            x0, x1, tr, sids, f0, ctr = self._batch(data, gen, plans)
            if cfg.lr_schedule == "cosine":  # 1/2 (1 + cos(pi k / K)) of each base rate
                f = 0.5 * (1.0 + math.cos(math.pi * k / n_steps))
                for o, lrs in zip(opts, base_lrs):
                    for g, lr0 in zip(o.param_groups, lrs):
                        g["lr"] = lr0 * f
            if gnn_opt is not None and k % 2 == 1:  # GNN step through the fixed field
                emb = self.net["embed"](x0, f0)
                for sid, e in zip(sids, emb):
                    cache[sid] = e.detach()
                cond = self._condition(x0, emb, sids, tr, len(sids))
                loss = self._loss(x0, x1, cond, gen, ctr)
                gnn_opt.zero_grad()
                loss.backward()
                sync.average_gradients()
                gnn_opt.step()
                return torch.tensor(sync.mean(loss)) if sync.active else loss.detach()
            emb = None
            if gnn_opt is not None:  # flow step with cached, detached embeddings
                with torch.no_grad():
                    miss = [i for i, s in enumerate(sids) if s not in cache]
                    if miss:
                        new = self.net["embed"](x0[miss], None if f0 is None else f0[miss])
                        for i, e in zip(miss, new):
                            cache[sids[i]] = e
                emb = torch.stack([cache[s] for s in sids])
            cond = self._condition(x0, emb, sids, tr, len(sids), f0)
            loss = self._loss(x0, x1, cond, gen, ctr)
            field_opt.zero_grad()
            if gnn_opt is not None:
                gnn_opt.zero_grad()
            loss.backward()
            sync.average_gradients()
            field_opt.step()
            return torch.tensor(sync.mean(loss)) if sync.active else loss.detach()

        budget.start()
        try:
            res = optimize(
                step,
                steps=steps,
                params=self.net,
                progress=progress,
                desc=getattr(self, "_bar_label", None) or f"{cfg.method} fit",
            )
        finally:  # also after an interrupt (Ctrl-C): the model is left ready to predict
            self.net.eval()
        if budget.reached:
            res.message, res.converged = budget.message(res.steps), False
        if res.message.startswith("diverged") and res.steps:
            # optimize restored the weights before the last finite step's update (the loss a
            # step returns is that of the weights before its update): not one of those counted
            self.steps_done -= 1
        res.extra["seconds_per_1k_steps"] = 1000 * res.seconds / max(res.steps, 1)
        res.extra["method"] = cfg.method
        res.extra["final_lr"] = float(field_opt.param_groups[0]["lr"])
        self.net.eval()
        self.fit_result = res
        return res

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def embed(
        self,
        sources: Tensor | Sequence[Tensor],
        *,
        features: Sequence[Tensor] | None = None,
        seed: int | None = 0,
        points: int | None = None,
    ) -> Tensor:
        """Embeddings ``[P, gnn_hidden]`` of source populations (MFM only).

        Each population is embedded through a seeded subsample of ``points`` points (default
        the training ``points``), so training and test graphs have the same density. The
        subsample of each population is drawn from its own generator seeded with ``seed``, so a
        population's embedding depends only on it and ``seed``, not on the other populations of
        the call (until this release one stream ran through the call's populations).
        ``features``: per-point features ``[n_i, node_features]`` of each population, required
        when the model was trained with them.
        """
        if self.config.method != "MFM":
            raise ValueError(
                f"embed: only MFM models have a population embedding (this is {self.config.method})"
            )
        seed = seed_or_draw("seed", seed)
        # the kNN graph of the embedding needs at least 2 points
        n = self.config.points if points is None else check_int("points", points, minimum=2)
        pops = check_populations("sources", sources, self.dim)
        feats = check_features("features", features, pops, self.config.node_features or 0)
        out = []
        for i, p in enumerate(pops):
            gen = torch.Generator().manual_seed(seed)
            rows = slice(None) if p.shape[0] <= n else _subsample(p, n, gen)
            f = None if feats is None else feats[i][rows].to(device=self.device, dtype=self.dtype)
            out.append(self.net["embed"](self._norm(p[rows]), f))
        return torch.stack(out)

    @torch.no_grad()
    def predict(
        self,
        sources: Tensor | Sequence[Tensor],
        treatment: Tensor | Sequence[int] | None = None,
        *,
        source_ids: Sequence[int] | None = None,
        features: Sequence[Tensor] | None = None,
        seed: int | None = 0,
        solver: str | None = None,
        steps: int | None = None,
        chunk: int = 65536,
    ) -> list[Tensor]:
        """Push each source population ``[n_i, d]`` through the flow -> list of ``[n_i, d]``.

        Populations of equal size are integrated together as one batch ``[G, n, d]``, each
        reading its own condition row, at most ``chunk`` points at a time (a larger
        population whole). ``seed`` fixes the embedding subsample; the same seed gives the
        same output bit for bit. ``source_ids`` lets CGFM use a training population's
        one-hot (unknown ids, or ``None`` entries, get the average one-hot; other methods
        refuse them). ``features``: the sources' per-point features (MFM models trained with
        ``source_features``; ignored by FM and CGFM and by an MFM trained without them,
        ``node_features=0``, so one pipeline may pass ``data.source_features`` to every model). ``solver``: ``"rk4"`` or ``"dopri5"``
        (default the config's); ``steps``: rk4 steps (default ``solver_steps``; refused for
        dopri5, which adapts its steps to the config's ``atol``/``rtol``). ``treatment``:
        integer indices, one per population (refused for a model without treatments).
        """
        seed = seed_or_draw("seed", seed)
        if solver is not None and solver not in SOLVERS:
            raise ValueError(f"solver: expected None or one of {SOLVERS}, received {solver!r}")
        method = self.config.solver if solver is None else solver
        if steps is not None:
            steps = check_int("steps", steps, minimum=1)
            if method != "rk4":
                raise ValueError(
                    f"steps: only the fixed-step 'rk4' solver takes steps; {method!r} is "
                    f"adaptive (config atol/rtol), received steps={steps}"
                )
        chunk = check_int("chunk", chunk, minimum=1)
        pops = check_populations("sources", sources, self.dim)
        p = len(pops)
        source_ids = check_source_ids(source_ids, p, self.config.method)
        emb = None
        if self.config.method == "MFM":
            emb = self.embed(pops, features=features, seed=seed)
        cond = self._condition(None, emb, source_ids, treatment, p)
        field, cfg = self.net["field"], self.config
        out: list[Tensor | None] = [None] * p
        # populations of equal size are integrated together as [G, n, d], each reading its
        # own condition row [G, 1, c]; at most ``chunk`` points at a time
        for ids in _same_size_groups([q.shape[0] for q in pops]):
            n = pops[ids[0]].shape[0]
            per = max(1, chunk // n)
            for lo in range(0, len(ids), per):
                sel = ids[lo : lo + per]
                x = torch.stack([self._norm(pops[i]) for i in sel])  # [g, n, d]
                c = None if cond is None else cond[sel][:, None, :]
                ctr = None
                if self.config.centered:  # integrate in each population's source-centred frame
                    ctr = torch.stack([self._norm(pops[i].mean(0)) for i in sel])[:, None, :]
                    x = x - ctr
                f = lambda t, z, c=c: field(t, z, c)  # noqa: E731
                if method == "rk4":
                    y = integrate(f, x, steps=cfg.solver_steps if steps is None else steps)
                else:
                    y = integrate(f, x, method=method, atol=cfg.atol, rtol=cfg.rtol)
                if ctr is not None:
                    y = y + ctr
                y = y * self.net.scale + self.net.shift
                for i, yi in zip(sel, y):
                    # its own storage: a view kept the whole batch alive, and pickled it whole
                    out[i] = yi.clone() if len(sel) > 1 else yi
        return out

    def posterior(
        self,
        x: Tensor | Sequence[Tensor],
        treatment: Tensor | Sequence[int] | None = None,
        *,
        num_draws: int = 8,
        seed: int | None = 0,
        features: Sequence[Tensor] | None = None,
    ) -> SamplePosterior:
        """Predictive draws over populations ``[1, num_draws, P, n, d]`` (one chain;
        ``batch_shape`` ``(P,)``, ``event_shape`` ``(n, d)``).

        Draws differ by the seeded subsample the embedding sees (an embedding/finite-sample
        bootstrap, anchor 6.2); FM and CGFM draws are identical. Populations of at most
        ``config.points`` points are embedded whole, so their MFM draws are identical too (zero
        spread; a ``UserWarning`` says so). Use
        :class:`~bayesphys.meta_fm.ensemble.MFMEnsemble` for epistemic spread over weights.
        All populations must have the same size ``n``. ``seed``: the base seed of the draws'
        subsamples (``None``: drawn from torch's global stream, advancing it).
        """
        warn_untrained(f"{type(self).__name__}.posterior", self.steps_done)
        num_draws = check_int("num_draws", num_draws, minimum=2)
        seed = seed_or_draw("seed", seed)
        pops = check_populations("x", x, self.dim)
        if len({q.shape[0] for q in pops}) != 1:
            raise ValueError(
                f"x: posterior needs equal population sizes, received {[q.shape[0] for q in pops]}"
            )
        if self.config.method == "MFM" and pops[0].shape[0] <= self.config.points:
            warnings.warn(
                f"posterior: populations of {pops[0].shape[0]} points are no larger than the "
                f"embedding's subsample (config.points={self.config.points}), so they are "
                "embedded whole and every draw is identical (zero spread); use MFMEnsemble for "
                "a spread over weights",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        if self.config.method != "MFM" or pops[0].shape[0] <= self.config.points:
            # no subsample to vary (FM / CGFM, or populations embedded whole): every draw is
            # the same prediction, integrated once instead of num_draws times
            one = torch.stack(self.predict(pops, treatment, features=features, seed=seed))
            draws = [one] * num_draws
        else:
            draws = [
                torch.stack(
                    self.predict(pops, treatment, features=features, seed=offset_seed(seed, k))
                )
                for k in range(num_draws)
            ]
        # batch = the P populations, event = one population (n, d)
        return SamplePosterior(torch.stack(draws)[None], event_ndim=2)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """All weights and buffers (Fourier features, normalisation) as CPU tensors."""
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}

    def save(self, path: str | Path) -> Path:
        """Write config, dimensions, condition ids and all weights/buffers (Fourier ``B`` too)."""
        return save_checkpoint(
            path, kind=self.kind, config=self.checkpoint_config(), state=self.state()
        )

    def checkpoint_config(self) -> dict[str, Any]:
        """Everything but the weights that :meth:`from_state` needs: settings, dimensions,
        condition ids, seed, dtype, the steps taken and the training batches' stream."""
        # load rebuilds the modules from the settings: a module swapped in by hand (an
        # embedding of one's own) was saved, and its checkpoint failed to load with a raw
        # state-dict error
        built = {"field": VectorField}
        if self.config.method == "MFM":
            built["embed"] = PopulationEmbedding
        swapped = [
            f"net[{k!r}] is a {type(mod).__name__}"
            for k, mod in self.net.items()
            if k not in built or type(mod) is not built[k]
        ] + [f"net[{k!r}] is missing" for k in built if k not in self.net]
        if swapped:
            raise ValueError(
                f"save: {', '.join(swapped)}, not the module the settings build "
                f"({', '.join(f'{k}: {c.__name__}' for k, c in built.items())}); a checkpoint "
                f"could not rebuild it: keep its weights with model.state() instead"
            )
        return {
            "config": self.config.to_dict(),
            "dim": self.dim,
            "num_treatments": self.num_treatments,
            "condition_ids": self.condition_ids,
            "paired": self.paired,
            "seed": self.seed,
            "dtype": str(self.dtype).removeprefix("torch."),
            "steps_done": self.steps_done,
            "train_rng": None if self._train_gen is None else self._train_gen.get_state(),
        }

    @classmethod
    def from_state(
        cls,
        cfg: dict[str, Any],
        state: dict[str, Tensor],
        device: str | torch.device | None = None,
    ) -> MetaFlowMatching:
        """Rebuild a model from :meth:`checkpoint_config` ``cfg`` and :meth:`state` ``state``
        exactly (on ``device``); the caller's random streams are left as they were."""
        # built unseeded (every weight is then loaded) in a forked RNG: an unseeded build draws
        # its initial weights from the global streams, which loading must leave as they were
        with _GLOBAL_STATE, torch.random.fork_rng(devices=[]):  # process-wide: see seeded
            m = cls(
                config=MFMConfig.from_dict(cfg["config"]),
                dim=cfg["dim"],
                num_treatments=cfg["num_treatments"],
                condition_ids=cfg["condition_ids"],
                device=device,
                dtype=cfg["dtype"],
                seed=None,
            )
        m.seed = check_optional_seed("seed", cfg["seed"])
        m.paired = check_bool("paired", cfg["paired"])  # "no" is truthy: it paired
        # older checkpoints: trained (keep their normalisation), stream restarted from the seed
        m.steps_done = check_int("steps_done", cfg.get("steps_done", 1), minimum=0)
        if cfg.get("train_rng") is not None:
            m._train_gen = torch.Generator()
            m._train_gen.set_state(cfg["train_rng"])
            m._split_gen = True
        m.net.load_state_dict(state)
        m.net.eval()
        return m

    @classmethod
    def load(
        cls, path: str | Path, *, device: str | torch.device | None = None
    ) -> MetaFlowMatching:
        """Rebuild a saved model exactly (same weights, Fourier features and normalisation)."""
        device = model_device(device)  # the caller's argument, checked before the file's
        ck = load_checkpoint(path, kind=cls.kind, map_location="cpu")
        check_checkpoint_config(ck, path, ck["config"])
        with rebuilding(path, cls.kind):
            return cls.from_state(ck["config"], ck["state"], device=device)

    def __repr__(self) -> str:
        c = self.config
        return f"MetaFlowMatching(method={c.method}, dim={self.dim}, coupling={self.coupling}, device={self.device})"


#: the settings :meth:`MetaFlowMatching.checkpoint_config` writes, and those a load reads
#: without a default (``steps_done`` and ``train_rng`` are absent from older files)
_CONFIG_KEYS = frozenset(
    {
        "config",
        "dim",
        "num_treatments",
        "condition_ids",
        "paired",
        "seed",
        "dtype",
        "steps_done",
        "train_rng",
    }
)
_REQUIRED_CONFIG = ("config", "dim", "num_treatments", "condition_ids", "paired", "seed", "dtype")


def check_checkpoint_config(
    ck: dict[str, Any], path: Any, cfg: Any, what: str = "settings"
) -> None:
    """Refuse a model's checkpoint settings ``cfg`` (``what``, as named in the message) that
    lack an entry a load reads or hold one this release does not know, naming ``path``."""
    require_entries(cfg, path, what, _REQUIRED_CONFIG)
    refuse_unknown(ck, path, what, cfg, _CONFIG_KEYS)
