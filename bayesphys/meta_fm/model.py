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

:class:`MetaFlowMatching` holds the model's state and its public methods; the pieces they run
live in private modules: its settings and the training data it accepts (``_settings``), its
modules and condition rows (``_net``), a fit call (``_fit``) and its training steps
(``_train``), prediction (``_predict``) and its checkpoint format (``_persist``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._built_settings import check_built_settings, shape_settings
from .._checkpoint import load_checkpoint, save_checkpoint
from .._checkpoint_rebuild import rebuilding
from .._checks import (
    check_bool,
    check_int,
    check_optional_seed,
    dense_memory_checked,
    seed_or_draw,
)
from .._detached import no_grad_detached, warn_detached
from .._device import model_device
from .._model import FitResult, autograd_on, untrained_warned, warn_untrained
from .._precision import own_precision
from .._renamed import renamed_kwargs
from ..posterior import SamplePosterior
from ..problems.populations import PopulationPairs
from ._fit import fit_model
from ._net import build_net, cond_dim, net_dtype, population_onehots, treatment_onehot
from ._persist import (
    check_checkpoint_config,
    model_checkpoint_config,
    restore_model,
)
from ._predict import (
    check_draw_populations,
    check_solver,
    embed_populations,
    predictive_draws,
    push_populations,
)
from ._settings import check_training_data, model_config, model_settings
from ._sources import warn_far_sources
from ._train import batch_loss, draw_batch
from ._treatments import warn_untrained_treatments
from ._type_frame import check_type_onehots
from ._validate import check_features, check_populations, check_source_ids, training_rows
from .config import MFMConfig
from .coupling import FullPlan
from .embedding import check_knn_memory

__all__ = ["MetaFlowMatching"]

#: the settings the modules' weight shapes come from (build_net, cond_dim)
_SHAPE_SETTINGS = (
    "method",
    "width",
    "layers",
    "residual",
    "time_dim",
    "fourier",
    "conditioning",
    "type_frame",
)
#: and those of the embedding, which only MFM builds
_EMBEDDING_SETTINGS = ("gnn_hidden", "gnn_layers", "node_features")
#: and a setting read at construction only that fixes no shape: the Fourier matrix's sd
_BUILD_ONLY_SETTINGS = ("fourier_sigma",)


class MetaFlowMatching:
    """MFM / FM / CGFM flow between populations.

    Parameters
    ----------
    data
        training pairs (their ``train`` split, or all pairs if there is none); sets ``dim``,
        the number of treatments and (CGFM) the training population ids.
    config
        an :class:`MFMConfig`; keyword arguments override its fields.
    dim, num_treatments, condition_ids
        give these instead of ``data`` to build an empty model
        (given with ``data``, they must agree with it). ``condition_ids``: distinct ints.
    device, dtype, seed
        ``device`` (``None``: the CPU; ``"auto"``: CUDA when present), ``dtype`` (default
        float32), ``seed``: the initial weights are drawn as after ``seed_everything(seed)``,
        with the caller's global streams restored after (:func:`~bayesphys.seeded`), and
        ``seed`` seeds the model's own generators (Fourier matrix, training minibatches and
        times); ``seed=None``: the initial weights follow the global streams, and those
        generators are seeded from torch's global stream (so ``torch.manual_seed`` repeats an
        unseeded model; two unseeded models, or an unseeded ensemble's members, differ).

    Examples
    --------
    >>> from bayesphys.problems.populations import linear_map
    >>> data = linear_map(n_train=8, n_cal=0, n_test=2, n_points=64)
    >>> m = MetaFlowMatching(
    ...     data, width=32, layers=2, time_dim=8, fourier=8, knn_k=5, points=32, seed=0
    ... )
    >>> res = m.fit(steps=3, progress=False)
    >>> [p.shape for p in m.predict(data.subset("test").source)]
    [torch.Size([64, 2]), torch.Size([64, 2])]
    """

    kind = "meta_fm.MetaFlowMatching"

    @autograd_on()  # built inside inference_mode / no_grad, it still trains
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
        self.config = cfg = model_config(config, overrides)
        self.device = model_device(device)
        self.dtype = net_dtype(dtype)
        self.seed = check_optional_seed("seed", seed)
        # optimiser steps taken so far, and the training batches' stream (kept across fit calls)
        self.steps_done = 0
        self._train_gen: torch.Generator | None = None
        self._split_gen = False
        # the treatment indices the fitted steps trained on (None: not known, a checkpoint
        # written before they were recorded); predict warns for the others
        self._trained_treatments: frozenset[int] | None = frozenset()
        # the training source populations' means and spreads (None: not known, before a fit
        # or in a checkpoint written before they were recorded); predict warns far from them
        self._trained_sources: dict[str, Any] | None = None
        # built from dim alone with node_features left None: the embedding reads no point
        # features, and fit warns when its data bring some (an explicit 0 says so on purpose)
        self._features_unset = data is None and cfg.node_features is None
        settings = model_settings(
            data, cfg, dim=dim, num_treatments=num_treatments, condition_ids=condition_ids
        )
        cfg.node_features = settings.node_features
        self.data, self.paired, self.dim = settings.data, settings.paired, settings.dim
        self.num_treatments = settings.num_treatments
        self.condition_ids = settings.condition_ids
        # the index in the given data of each stored training pair (self.data is their
        # train split), for the refusals of fit() that name the user's data.source[i]
        self._train_rows = None if data is None else training_rows(data)
        self._build()
        if self.data is not None:
            check_training_data(self.data, cfg, rows=self._train_rows, **self._built_for())

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        cond = cond_dim(self.config, self.num_treatments, len(self.condition_ids))
        self.net = build_net(self.config, self.dim, cond, self.seed, self.device, self.dtype)
        # the settings the modules' shapes come from (save refuses them changed)
        names = _SHAPE_SETTINGS + (_EMBEDDING_SETTINGS if self.config.method == "MFM" else ())
        if self.config.type_frame and "node_features" not in names:  # the field reads them
            names += ("node_features",)
        self._shape_settings = shape_settings(self.config, names)
        # everything the modules were built from (fit, embed, predict and save refuse changes)
        self._built_settings = shape_settings(self.config, names + _BUILD_ONLY_SETTINGS)
        self._cg_index = {sid: k for k, sid in enumerate(self.condition_ids)}
        self.fit_result: FitResult | None = None

    def _check_built(self, where: str) -> None:
        """Refuse (``ValueError`` naming ``where`` and the setting) a config setting the
        modules were built from (their shapes, ``fourier_sigma``) assigned after
        construction: the model went on with the modules of the old value, silently (an
        assigned ``fourier_sigma`` never changed the Fourier matrix; an assigned ``method``
        failed later on the condition's width)."""
        built = getattr(self, "_built_settings", {})
        check_built_settings(self.config, built, type(self).__name__, where)

    def _sync_embedding(self) -> None:
        """Give the MFM embedding the config's current ``knn_k``, a setting read at each use
        like ``points`` (assigned after construction it was ignored, while a checkpoint
        rebuilt the embedding with it: the loaded model predicted otherwise)."""
        if self.config.method == "MFM":
            self.net["embed"].k = self.config.knn_k

    @property
    def coupling(self) -> str:
        """The coupling trained with: ``config.coupling``, with ``"auto"`` resolved to
        ``"index"`` for paired data and ``"ot"`` otherwise."""
        c = self.config.coupling
        return ("index" if self.paired else "ot") if c == "auto" else c

    def _built_for(self) -> dict[str, Any]:
        """The settings besides ``config`` that training data must agree with."""
        return {
            "paired": self.paired,
            "coupling": self.coupling,
            "num_treatments": self.num_treatments,
            "condition_ids": self.condition_ids,
        }

    # ------------------------------------------------------------------ conditions
    def _norm(self, x: Tensor) -> Tensor:
        return (x.to(device=self.device, dtype=self.dtype) - self.net.shift) / self.net.scale

    @property
    def _min_points(self) -> int:
        """Fewest points a population to predict may hold: 2 for MFM (the kNN graph of its
        embedding needs a neighbour), 1 for FM and CGFM (their flow moves each point alone)."""
        return 2 if self.config.method == "MFM" else 1

    def _treatments_trained(self) -> frozenset[int] | None:
        """The treatments trained on, for the warning of a prediction under another one
        (``None``, no such warning, before the first step: the untrained warning covers it)."""
        # getattr: a model pickled by an earlier release has no record (not known)
        trained = getattr(self, "_trained_treatments", None)
        return trained if self.steps_done else None

    def _warn_far_sources(self, where: str, pops: Sequence[Tensor]) -> None:
        """Warn (once, at the user's line) for a source population far from every training
        source (:mod:`._sources`); a centred or type-frame FM / CGFM flow does not read a
        population's position, so only its spread is compared there."""
        cfg = self.config
        invariant = (cfg.centered or cfg.type_frame) and cfg.method != "MFM"
        rec = getattr(self, "_trained_sources", None) if self.steps_done else None
        warn_far_sources(where, pops, [rec], shift_invariant=invariant)

    def _cgfm_cond(self, source_ids: Sequence[int] | None, p: int) -> Tensor:
        index = self._cg_index
        return population_onehots(source_ids, p, index, device=self.device, dtype=self.dtype)

    def _condition(
        self, x0: Tensor | None, emb: Tensor | None, source_ids, treatment, p: int, f0=None
    ):
        parts = []
        if self.config.method == "MFM":
            parts.append(emb if emb is not None else self.net["embed"](x0, f0))
        elif self.config.method == "CGFM":
            parts.append(self._cgfm_cond(source_ids, p))
        n, device, dtype = self.num_treatments, self.device, self.dtype
        tr = treatment_onehot(treatment, p, n, device=device, dtype=dtype)
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
        return draw_batch(data, gen, self.config, self.coupling, self._norm, plans)

    def _loss(self, x0, x1, cond, gen, ctr: Tensor | None = None, f0=None) -> Tensor:
        field = self.net["field"]
        types = f0 if self.config.type_frame else None  # the field reads the point types
        return batch_loss(
            field,
            x0,
            x1,
            cond,
            gen,
            self.coupling,
            ctr,
            types,
            device=self.device,
            dtype=self.dtype,
        )

    @autograd_on()
    @own_precision()
    def fit(
        self,
        data: PopulationPairs | None = None,
        *,
        steps: int = 1000,
        progress: bool = True,
        seed: int | None = None,
        max_seconds: float | None = None,
        callback: Callable[[MetaFlowMatching, int], Any] | None = None,
        callback_every: int = 100,
    ) -> FitResult:
        """Train for ``steps`` optimiser steps on ``data`` (default: the data given at build),
        or until ``max_seconds`` of wall time (``None`` or ``> 0``; asked after each step, so
        at least one step is taken; the result then has ``converged=False`` and says so in
        ``message``).

        Under ``torchrun`` (a process group of ``W > 1`` ranks) the fit is data-parallel: each
        rank samples its own ``pops_per_step`` populations and the gradients are averaged
        (:class:`~bayesphys.distributed.GradientSync`).

        A second call continues: the training batches come from the same stream, which goes
        on where the last call stopped (and is saved with the model; ``seed`` restarts it from
        ``seed + 1``), and the normalisation (``normalize``) estimated before the first step is
        kept. Each call builds fresh Adam optimisers, and ``lr_schedule="cosine"`` runs over
        that call's ``steps``; so ``fit(500)`` twice is not ``fit(1000)``. The batches' draws
        do not depend on torch's default dtype (the flow times are drawn in float32, then
        cast to the model's ``dtype``): a fit under ``torch.set_default_dtype(torch.float64)``
        is the fit under float32, bit for bit.

        Returns a :class:`~bayesphys.FitResult` (``extra["seconds_per_1k_steps"]``, NaN for a
        call of no step). A
        non-finite loss, or an update that leaves the optimisers' state non-finite (a NaN
        gradient, or one whose square overflows Adam's second moment), stops the fit as a
        divergence and restores the last good weights: those before the last recorded step's
        update, which ``steps_done`` then no longer counts; the training batches' stream goes
        back with them, to where that step's draws began, so a later fit draws what it would
        after a fit that stopped cleanly there. An error raised inside a step (or
        an interrupt) propagates and leaves the weights of the last completed step, not those
        the call started from, and (raised before the step's update) the batches' stream where
        that step began; ``steps_done`` counts completed steps only.

        ``callback(model, step)`` runs after the update of every ``callback_every``-th step
        of this call (its steps ``c, 2c, ...`` up to ``steps``, ``c = callback_every``; not
        after a step that ends the fit as a divergence, as above), on every rank under
        ``torchrun``. ``model`` is this model holding the weights of that update, in
        evaluation mode (ready to :meth:`predict` or :meth:`save`; training mode is set again
        after it), and ``step`` is the model's total number of optimiser steps,
        ``model.steps_done`` at that moment (a second call counts on from the first). Under
        ``schedule="alternating"`` the 1st, 3rd, ... steps of each call update the field and
        its 2nd, 4th, ... the GNN (so after a call of an odd number of steps, the next call's
        first field step has an even ``step``), and a step is one of these half-updates. Its time is
        excluded from the result's ``seconds`` and from ``max_seconds``. An exception it raises
        (``KeyboardInterrupt`` and ``StopIteration`` included) propagates as one raised inside a
        step, leaving the weights of that last completed step.

        Checked before the first step: ``steps >= 0`` and ``callback_every >= 1`` (ints),
        ``progress`` a bool, ``seed`` ``None`` or a seed, ``max_seconds`` ``None`` or ``> 0``,
        ``callback`` ``None`` or callable as ``callback(model, step)``, and that no setting
        the modules were built from was assigned since (see :class:`MFMConfig`).
        """
        return fit_model(
            self,
            data,
            steps=steps,
            progress=progress,
            seed=seed,
            max_seconds=max_seconds,
            callback=callback,
            callback_every=callback_every,
        )

    def _count_step(self) -> None:
        self.steps_done += 1

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    @own_precision()
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
        the call (until this release one stream ran through the call's populations), and it is
        drawn from the population's points in a canonical (lexicographic) order, so it is the
        same set of points, and the embedding the same to round-off, for any order of the
        population's rows (a permutation of them changed the subsample before).
        ``features``: per-point features ``[n_i, node_features]`` of each population, required
        when the model was trained with them.
        """
        self._check_built("embed")
        if self.config.method != "MFM":
            raise ValueError(
                f"embed: only MFM models have a population embedding (this is {self.config.method})"
            )
        seed = seed_or_draw("seed", seed)
        # the kNN graph of the embedding needs at least 2 points
        n = self.config.points if points is None else check_int("points", points, minimum=2)
        pops = check_populations("sources", sources, self.dim, dtype=self.dtype)
        feats = check_features("features", features, pops, self.config.node_features or 0)
        # each population's graph is of at most n points (its subsample): named by points,
        # not by the embedding's internal argument
        largest = max(min(p.shape[0], n) for p in pops)
        check_knn_memory("points", 1, largest, self.dtype, self.device)
        self._sync_embedding()
        embed, device, dtype = self.net["embed"], self.device, self.dtype
        with dense_memory_checked():  # the graphs' helper refuses them again, without warning
            return embed_populations(
                embed, pops, feats, n, seed, self._norm, device=device, dtype=dtype
            )

    @no_grad_detached("sources", "features")
    @own_precision()
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
        batch: bool = False,
    ) -> list[Tensor]:
        """Push each source population ``[n_i, d]`` through the flow -> list of ``[n_i, d]``
        (``n_i >= 2`` for MFM, whose embedding builds a kNN graph; ``n_i >= 1`` for FM and
        CGFM, whose flow moves each point on its own).

        Each population is integrated on its own, so its prediction is the one it gives alone,
        bit for bit, whichever populations share the call and in whichever order (on one
        device, dtype and thread count). ``batch=True`` integrates populations of equal size
        together as one batch ``[G, n, d]``, each reading its own condition row, at most
        ``chunk`` points at a time (a larger population whole): fewer, larger solves, faster
        for many small populations (1.2-1.5x on 30 populations of 256 points on one CPU
        thread; no faster on 10 of 1244 or 50 of 512, docs/meta_fm.md), but a population's
        prediction then moves with the other populations of its size in the call: with
        dopri5 within the config's ``atol``/``rtol`` (one adaptive step size for the batch,
        set by its error norm), with rk4 by the round-off of the batch's matrix products (a
        BLAS may round a row by its place in the batch, as MKL's kernels do). ``seed`` fixes
        the embedding subsample; the same seed gives the same output bit for bit. A population
        is a set: permuting its rows permutes its prediction's rows (to round-off), the
        subsample being drawn from its points in a canonical order (:meth:`embed`).
        ``source_ids`` lets CGFM use a training population's one-hot (unknown ids, or
        ``None`` entries, get the average one-hot; other methods refuse them). ``features``:
        the sources' per-point features (MFM models trained with ``source_features``; ignored
        by FM and CGFM and by an MFM trained without them, ``node_features=0``, so one
        pipeline may pass ``data.source_features`` to every model; required by every method
        with ``config.type_frame``, one-hot ``[n_i, f]``: each point is integrated relative to
        its type's source mean and shifted back). ``solver``: ``"rk4"`` or
        ``"dopri5"`` (default the config's); ``steps``: rk4 steps (default ``solver_steps``; refused
        for dopri5, which adapts its steps to the config's ``atol``/``rtol``). ``treatment``:
        integer indices, one per population (refused for a model without treatments; an
        index that no training pair carried warns, ``UserWarning``: its one-hot's weights
        were never trained). A model that has trained no step warns (``UserWarning``): its
        flow is the initial weights'. So does a source population far from every training
        source (mean more than 3 pooled training sds beyond the box of their means, or spread
        more than 2x outside theirs, recorded at fit and saved): its flow is an
        extrapolation, and the posterior's spread does not widen for it. Computed without
        gradient (under ``torch.no_grad``): the predictions are detached from ``sources``,
        ``features`` and the weights; inputs that require grad are a ``UserWarning`` saying so.
        """
        self._check_built("predict")
        seed = seed_or_draw("seed", seed)
        method, steps = check_solver(solver, steps, self.config.solver)
        chunk = check_int("chunk", chunk, minimum=1)
        batch = check_bool("batch", batch)
        pops = check_populations("sources", sources, self.dim, self._min_points, dtype=self.dtype)
        p = len(pops)
        source_ids = check_source_ids(source_ids, p, self.config.method)
        # after the argument checks: a call they refuse does not also warn
        warn_untrained(f"{type(self).__name__}.predict", self.steps_done)
        emb = None
        if self.config.method == "MFM":
            emb = self.embed(pops, features=features, seed=seed)
        cond = self._condition(None, emb, source_ids, treatment, p)
        where = f"{type(self).__name__}.predict"
        warn_untrained_treatments(where, treatment, [self._treatments_trained()])
        self._warn_far_sources(where, pops)
        cfg = self.config
        net = self.net
        frame = (self._norm, net.shift, net.scale)
        types = None
        if cfg.type_frame:  # every method's field reads the one-hot types
            types = check_features("features", features, pops, cfg.node_features or 0)
            check_type_onehots("features", types)
        return push_populations(
            net["field"], pops, cond, frame, cfg, method, steps, chunk, batch, types
        )

    @renamed_kwargs(num_draws="num_samples")
    @own_precision()
    def posterior(
        self,
        x: Tensor | Sequence[Tensor],
        treatment: Tensor | Sequence[int] | None = None,
        *,
        num_samples: int = 8,
        seed: int | None = 0,
        features: Sequence[Tensor] | None = None,
        batch: bool = False,
    ) -> SamplePosterior:
        """Predictive draws over populations ``[1, num_samples, P, n, d]`` (one chain;
        ``batch_shape`` ``(P,)``, ``event_shape`` ``(n, d)``).

        Draws differ by the seeded subsample the embedding sees (an embedding/finite-sample
        bootstrap, anchor 6.2); FM and CGFM draws are identical. Populations of at most
        ``config.points`` points are embedded whole, so their MFM draws are identical too (zero
        spread; a ``UserWarning`` says so). Use
        :class:`~bayesphys.meta_fm.ensemble.MFMEnsemble` for epistemic spread over weights.
        All populations must have the same size ``n``. ``seed``: the base seed of the draws'
        subsamples (``None``: drawn from torch's global stream, advancing it). ``batch``: as
        :meth:`predict`'s, passed to each draw's prediction: ``False`` (default) integrates
        each population on its own, so its draws are those it gives alone; ``True``
        integrates the ``P`` populations of a draw together as one batch ``[P, n, d]``
        (faster for many small populations; each population's draws then move with the
        others in the call, within the solver's tolerance or the round-off of the batch's
        matrix products). The shapes are the same either way. Computed without gradient, as
        :meth:`predict` (inputs that require grad are a ``UserWarning``).
        """
        warn_detached(f"{type(self).__name__}.posterior", x=x, features=features)
        self._check_built("posterior")
        num_samples = check_int("num_samples", num_samples, minimum=2)
        seed = seed_or_draw("seed", seed)
        batch = check_bool("batch", batch)
        pops = check_populations("x", x, self.dim, self._min_points, dtype=self.dtype)
        check_draw_populations(pops, self.config.method, self.config.points)
        warn_untrained(f"{type(self).__name__}.posterior", self.steps_done)
        # no subsample to vary (FM / CGFM, or populations embedded whole): every draw is
        # the same prediction, integrated once instead of num_samples times
        same = self.config.method != "MFM" or pops[0].shape[0] <= self.config.points
        where = f"{type(self).__name__}.posterior"
        warn_untrained_treatments(where, treatment, [self._treatments_trained()])
        self._warn_far_sources(where, pops)
        # warned above, not once more per draw (the predictions are made without gradient)
        with untrained_warned(), torch.no_grad():
            return predictive_draws(
                lambda s: self.predict(pops, treatment, features=features, seed=s, batch=batch),
                num_samples,
                seed,
                same,
            )

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """All weights and buffers (Fourier features, normalisation) as CPU tensors."""
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}

    def save(self, path: str | Path) -> Path:
        """Write config, dimensions, condition ids and all weights/buffers (Fourier ``B`` too).
        A setting that fixed the modules' shapes (``method``, ``width``, ``layers``,
        ``residual``, ``time_dim``, ``fourier``, ``conditioning``; for MFM also ``gnn_hidden``,
        ``gnn_layers``, ``node_features``) assigned after construction is refused before
        anything is written (a load could not rebuild the modules), and so is an assigned
        ``fourier_sigma`` (the saved ``B`` was drawn with the old one)."""
        return save_checkpoint(
            path, kind=self.kind, config=self.checkpoint_config(), state=self.state()
        )

    def checkpoint_config(self) -> dict[str, Any]:
        """Everything but the weights that :meth:`from_state` needs: settings, dimensions,
        condition ids, seed, dtype, the steps taken and the training batches' stream."""
        return model_checkpoint_config(self)

    @classmethod
    def from_state(
        cls,
        cfg: dict[str, Any],
        state: dict[str, Tensor],
        device: str | torch.device | None = None,
    ) -> MetaFlowMatching:
        """Rebuild a model from :meth:`checkpoint_config` ``cfg`` and :meth:`state` ``state``
        exactly (on ``device``); the caller's random streams are left as they were. ``state``
        maps each network weight's name to a tensor of that weight's own shape ``[*]`` (as
        ``state_dict`` gives). A ``cfg`` that is no such dict, or a ``state`` that is no dict of
        exactly those weights and shapes, is refused naming it (``TypeError``/``ValueError``)."""
        return restore_model(cls, cfg, state, device)

    @classmethod
    @autograd_on()
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
        return (
            f"MetaFlowMatching(method={c.method!r}, dim={self.dim}, coupling={self.coupling!r}, "
            f"steps_done={self.steps_done}, device={self.device})"
        )
