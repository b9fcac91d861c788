r"""Deep ensembles of MFM models: a predictive distribution over populations.

MFM is a deterministic pushforward given :math:`(p_0, \theta)`; uncertainty over populations
comes from uncertainty over :math:`\theta`. We approximate :math:`p(\theta\mid\mathcal D)` by
``M`` independently seeded fits (a deep ensemble). Member :math:`m` predicts
:math:`\hat p^{(m)} = \Phi_{\theta_m}(p_0)`; draws ``[M, K, P, n, d]`` (chain = member, draw =
embedding subsample) form a :class:`~bayesphys.SamplePosterior`. Diagnostics:

* epistemic spread :math:`s^{ep}_i` = mean pairwise :math:`W_2(\hat p^{(m)}_i, \hat p^{(m')}_i)`;
* aleatoric spread :math:`s^{al}_i`: the sampling-noise :math:`W_2` of the pooled prediction at
  the test population's size (:func:`~bayesphys.meta_fm.evaluation.sampling_noise_w2`), since
  the true target is itself a finite sample (anchor 6.1, third source of uncertainty);
* predictive spread :math:`s_i = \sqrt{(s^{ep}_i)^2 + (s^{al}_i)^2}` (``aleatoric=False``:
  :math:`s_i = s^{ep}_i`, the previous definition);
* error :math:`e_i = W_2(\bar p_i, p_i)` of the pooled prediction (all members' points);
* Spearman :math:`\rho(s, e)` across test populations;
* split-conformal radius on calibration populations for the normalised score
  :math:`e_i / s_i` (or :math:`e_i`), coverage on the test populations.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checkpoint import load_checkpoint, save_checkpoint
from .._checkpoint_rebuild import rebuilding
from .._checks import check_bool, check_int, check_optional_seed, offset_seed, seed_or_draw
from .._detached import warn_detached
from .._device import model_device, same_device
from .._fit_callback import check_fit_callback
from .._model import FitResult, autograd_on, untrained_warned, warn_untrained
from .._precision import own_precision
from .._renamed import renamed_kwargs
from .._stack import user_stacklevel
from .._time_budget import check_max_seconds
from .._warning_types import BayesphysRuntimeWarning
from ..posterior import SamplePosterior
from ..problems.populations import PopulationPairs
from ._ensemble_fit import fit_members
from ._persist import check_ensemble_checkpoint
from ._predict import draws_array, fill_draw
from ._treatments import warn_untrained_treatments
from ._uncertainty import SplitScores, check_split, split_scores, uncertainty_summary
from ._validate import check_populations
from .config import MFMConfig
from .evaluation import _check_alpha, _check_max_points, pooled_prediction
from .idata import w2_inference_data
from .model import MetaFlowMatching

#: ``pooled_prediction`` and ``w2_inference_data`` live in :mod:`.evaluation` and
#: :mod:`.idata`; they are re-exported here, where they were first defined
__all__ = ["MFMEnsemble", "pooled_prediction", "w2_inference_data"]


def _member_seed(seed: int, member: int, num_samples: int, draw: int) -> int:
    """Subsample seed of draw ``draw`` of member ``member``: ``seed + member * num_samples +
    draw`` (:func:`~bayesphys._checks.offset_seed`: in torch's range, member 0's draw 0 reads
    as ``seed`` itself)."""
    return offset_seed(seed, member * num_samples + draw)


def _check_models(models: Any) -> list[MetaFlowMatching]:
    """At least 2 distinct models that can be asked the same questions (dimension,
    treatments, point features, dtype), on one device."""
    if not isinstance(models, (list, tuple)):
        raise TypeError(
            f"models: expected a list of MetaFlowMatching models, received {type(models).__name__}"
        )
    for i, m in enumerate(models):
        if not isinstance(m, MetaFlowMatching):
            raise TypeError(
                f"models[{i}]: expected a MetaFlowMatching, received {type(m).__name__}"
            )
    if len(models) < 2:
        raise ValueError(f"models: expected at least 2 members, received {len(models)}")
    for i, m in enumerate(models):
        first = next(k for k, other in enumerate(models) if other is m)
        if first != i:  # one model twice: fitted once, and no spread over weights
            raise ValueError(
                f"models[{i}]: the same model as models[{first}]; an ensemble's members are "
                "distinct models (it would be fitted once and add no spread over weights): build "
                "each member, or copy one with copy.deepcopy"
            )
    m0 = models[0]
    for i, m in enumerate(models[1:], 1):
        for what, a, b in (
            ("dim", m0.dim, m.dim),
            ("num_treatments", m0.num_treatments, m.num_treatments),
            ("node_features", m0.config.node_features, m.config.node_features),
            # the ensemble's dtype is its members' (stacked draws were promoted silently)
            ("dtype", m0.dtype, m.dtype),
        ):
            if a != b:
                raise ValueError(f"models[{i}]: expected {what} {a} (as models[0]), received {b}")
        # the ensemble's device is its members' (a member elsewhere failed mid-fit, after the
        # members before it had trained, with torch's error on mixed devices)
        if not same_device(m0.device, m.device):
            raise ValueError(
                f"models[{i}]: expected device {m0.device} (as models[0]), received "
                f"{m.device}; an ensemble's members live on one device (load or build them "
                "there)"
            )
    return list(models)


class MFMEnsemble:
    """``members`` (default 3, at least 2) independently seeded :class:`MetaFlowMatching`
    models (seeds ``seed + m``: ensembles of neighbouring seeds share members, e.g. member 1
    of ``seed=0`` is member 0 of ``seed=1``; space repeated ensembles at least ``members``
    seeds apart; ``seed=None``: unseeded members, each drawing its weights from the global
    streams), built from ``data``, ``config``, ``device`` (``None``: the
    CPU; ``"auto"``: CUDA when present), ``dtype`` and keyword settings as a single model is.

    ``models``: instead, at least 2 distinct models already built (and possibly fitted; one
    model listed twice is refused), of one dimension, number of treatments, number of
    point features and dtype, on one device; building arguments (``data``, ``config``,
    ``device``, ``dtype``, settings) are then refused, since they would be ignored, and
    ``members``, if given, must equal ``len(models)``.
    """

    kind = "meta_fm.MFMEnsemble"

    @autograd_on()  # built inside inference_mode / no_grad, it still trains
    def __init__(
        self,
        data: PopulationPairs | None = None,
        config: MFMConfig | None = None,
        *,
        members: int | None = None,
        seed: int | None = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        models: Sequence[MetaFlowMatching] | None = None,
        **overrides: Any,
    ) -> None:
        # None: unseeded members (each draws its weights from the global streams), as
        # MetaFlowMatching(seed=None); it was refused with a TypeError
        seed = check_optional_seed("seed", seed)
        if models is not None:
            given = [
                name
                for name, v in (
                    ("data", data),
                    ("config", config),
                    ("device", device),
                    ("dtype", dtype),
                )
                if v is not None
            ] + sorted(overrides)
            if given:
                raise ValueError(
                    f"models: the members are already built; {', '.join(given)} would be "
                    "ignored (pass them when building the models, or leave models out)"
                )
            self.models = _check_models(models)
            if members is not None and check_int("members", members) != len(self.models):
                raise ValueError(
                    f"members: {len(self.models)} models are given, received members={members}"
                )
        else:
            members = check_int("members", 3 if members is None else members, minimum=2)
            self.models = [
                MetaFlowMatching(
                    data,
                    config,
                    device=device,
                    dtype=dtype,
                    seed=None if seed is None else offset_seed(seed, m),
                    **overrides,
                )
                for m in range(members)
            ]
        self.seed = seed

    @property
    def members(self) -> int:
        """``M``, the number of member models."""
        return len(self.models)

    def _warn_uneven(self) -> None:
        """Warn when the members were trained for different numbers of steps (an interrupted
        :meth:`fit`): the ensemble's spread then mixes trained and untrained members."""
        done = [m.steps_done for m in self.models]
        if len(set(done)) > 1:
            warnings.warn(
                f"MFMEnsemble: the members were trained for different numbers of steps {done} "
                "(an interrupted fit?); their spread is not an ensemble's: fit again",
                BayesphysRuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    @property
    def device(self) -> torch.device:
        """The members' device (every member lives on one device)."""
        return self.models[0].device

    @property
    def dtype(self) -> torch.dtype:
        """The members' dtype."""
        return self.models[0].dtype

    @own_precision()
    def fit(
        self,
        data: PopulationPairs | None = None,
        *,
        steps: int = 1000,
        progress: bool = True,
        max_seconds: float | None = None,
        callback: Callable[[MetaFlowMatching, int], Any] | None = None,
        callback_every: int = 100,
    ) -> FitResult:
        """Fit every member; ``loss_history`` is the members' mean loss at each step all of
        them took in this call (a member catching up adds its last entries), ``extra["members"]``
        each member's result, ``extra["seconds_per_1k_steps"]`` the members' mean rate (over the
        members that took a step; NaN when none did).

        ``max_seconds`` (``None`` or ``> 0``) bounds the members' training time together: each
        member trains for at most ``max_seconds / members`` of wall time (set-up not counted;
        members a budget stopped may end with different numbers of steps, and the next ``fit``
        brings them level).

        Members are fitted one after another. An error or an interrupt in member ``j`` leaves
        members ``0..j-1`` fitted, member ``j`` with the weights of its last completed step
        (as a single model's interrupted fit) and the rest as they were; the exception gets a
        note naming the member, and :meth:`posterior` / :meth:`predict_members` then warn that
        the members were trained for different numbers of steps. The next ``fit`` first brings the
        members behind up to the others' steps (their ``steps`` are ``steps`` plus the gap).

        ``callback`` and ``callback_every`` are passed on to each member's
        :meth:`MetaFlowMatching.fit`: ``callback(member, step)`` runs during member ``j``'s
        fit with that member (``self.models[j]``, a :class:`MetaFlowMatching`, not the
        ensemble) and the member's own ``steps_done``, after every ``callback_every``-th step
        of that member's fit (a member catching up counts its steps from its own start).
        Members ``0..j-1`` are then fitted and the others not yet, so a checkpoint written
        from it is the member's (``member.save``), not the ensemble's. Its time is excluded
        from the members' ``seconds`` and from their shares of ``max_seconds``; an exception
        it raises propagates as an error of member ``j`` (with the note naming it). Checked
        before any member trains: ``steps >= 0`` and ``callback_every >= 1`` (ints),
        ``progress`` a bool, ``max_seconds`` ``None`` or ``> 0``, ``callback`` ``None`` or
        callable as ``callback(member, step)``."""
        steps = check_int("steps", steps, minimum=0)
        progress = check_bool("progress", progress)
        max_seconds = check_max_seconds(max_seconds)
        callback_every = check_fit_callback(self.models[0], callback, callback_every)
        return fit_members(
            self.models, data, steps, progress, max_seconds, callback, callback_every
        )

    @own_precision()
    def predict_members(
        self,
        sources: Tensor | Sequence[Tensor],
        treatment: Tensor | Sequence[int] | None = None,
        *,
        seed: int | None = 0,
        **kw: Any,
    ) -> list[list[Tensor]]:
        """``[M][P]`` predicted populations ``[n_i, d]`` (``kw``: as
        :meth:`MetaFlowMatching.predict`, e.g. ``features``).

        Member ``m`` embeds through the subsample of seed ``seed + m`` (member 0 through
        ``seed``, as a lone model would), so the members' predictions also differ by the
        points their embeddings see, as :meth:`posterior`'s draws do. ``seed=None`` draws
        ``seed`` from torch's global stream. An ensemble none of whose members has trained
        a step warns once (``UserWarning``), as :meth:`posterior` does. Computed without
        gradient (sources or features that require grad are one ``UserWarning``).
        """
        warn_detached("MFMEnsemble.predict_members", sources=sources, features=kw.get("features"))
        seed = seed_or_draw("seed", seed)
        m0 = self.models[0]
        pops = check_populations("sources", sources, m0.dim, m0._min_points, dtype=m0.dtype)
        # after the argument checks: a call they refuse does not also warn
        warn_untrained("MFMEnsemble.predict_members", max(m.steps_done for m in self.models))
        self._warn_uneven()
        trained = [m._treatments_trained() for m in self.models]
        warn_untrained_treatments("MFMEnsemble.predict_members", treatment, trained)
        m0._warn_far_sources("MFMEnsemble.predict_members", pops)
        # warned above, not once per member (the predictions are made without gradient)
        with untrained_warned(), torch.no_grad():
            return [
                m.predict(sources, treatment, seed=_member_seed(seed, j, 1, 0), **kw)
                for j, m in enumerate(self.models)
            ]

    @renamed_kwargs(num_draws="num_samples")
    @own_precision()
    def posterior(
        self,
        x: Tensor | Sequence[Tensor],
        treatment: Tensor | Sequence[int] | None = None,
        *,
        num_samples: int = 1,
        seed: int | None = 0,
        features: Sequence[Tensor] | None = None,
        batch: bool = False,
    ) -> SamplePosterior:
        """Draws ``[M, num_samples, P, n, d]``: chain = member, draw = embedding subsample
        (``features``: the sources' per-point features, for models trained with them).

        Draw ``k`` of member ``m`` embeds through the subsample of seed
        ``seed + m * num_samples + k``: no two draws of the ensemble share a subsample (until
        this release every member used seeds ``seed + k``, so the members' draws were
        correlated through the points their embeddings saw). ``seed=None`` draws ``seed`` from
        torch's global stream. ``batch``: as :meth:`MetaFlowMatching.predict`'s, passed to
        every member's predictions: ``False`` (default) integrates each population on its
        own; ``True`` integrates the ``P`` populations of a draw together as one batch
        ``[P, n, d]`` (faster for many small populations; a population's draws then move with
        the others in the call, within the solver's tolerance or the round-off of the batch's
        matrix products). The shapes are the same either way. Computed without gradient (an
        ``x`` or ``features`` that requires grad is one ``UserWarning``).
        """
        warn_detached("MFMEnsemble.posterior", x=x, features=features)
        num_samples = check_int("num_samples", num_samples, minimum=1)
        seed = seed_or_draw("seed", seed)
        batch = check_bool("batch", batch)
        pops = check_populations(
            "x", x, self.models[0].dim, self.models[0]._min_points, dtype=self.models[0].dtype
        )
        warn_untrained("MFMEnsemble.posterior", max(m.steps_done for m in self.models))
        self._warn_uneven()
        if len({q.shape[0] for q in pops}) != 1:
            raise ValueError(
                f"x: posterior needs equal population sizes, received {[q.shape[0] for q in pops]}"
            )
        trained = [m._treatments_trained() for m in self.models]
        warn_untrained_treatments("MFMEnsemble.posterior", treatment, trained)
        self.models[0]._warn_far_sources("MFMEnsemble.posterior", pops)
        out = None
        # warned above (none trained, inputs that require grad), not per member
        with untrained_warned(), torch.no_grad():
            for j, m in enumerate(self.models):
                for k in range(num_samples):
                    draw = m.predict(
                        pops,
                        treatment,
                        features=features,
                        seed=_member_seed(seed, j, num_samples, k),
                        batch=batch,
                    )
                    # each draw written into the one array [M, K, P, n, d] as it comes
                    # (stacked per member, then over members, the draws were held twice)
                    if out is None:
                        out = draws_array((self.members, num_samples), draw)
                    fill_draw(out[j, k], draw)
        # batch = the P populations, event = one population (n, d)
        return SamplePosterior(out, event_ndim=2)

    @own_precision()
    def uncertainty(
        self,
        cal: PopulationPairs,
        test: PopulationPairs,
        *,
        alpha: float = 0.1,
        max_points: int | None = 500,
        normalized: bool = True,
        aleatoric: bool = True,
        noise_splits: int = 5,
    ) -> dict[str, Any]:
        """Spread-vs-error Spearman and split-conformal coverage of per-population :math:`W_2`.

        The spread is the predictive one (epistemic and, with ``aleatoric``, sampling noise
        averaged over ``noise_splits`` random splits; module docstring). On B3 (seed 0, 1000
        steps) the Spearman of spread and error is 0.19 for the epistemic spread alone, and
        0.24 / 0.41 / 0.49 with 1 / 5 / 20 splits: a single-split noise estimate is itself too
        noisy to rank populations (``benchmarks/meta_fm_spread_ablation.py``; measured when the
        members still shared their embedding subsamples, which on B3 changes nothing: its
        populations are smaller than the subsample, and its benchmark rows reran identical).

        ``cal`` and ``test`` are checked before any prediction: each a :class:`PopulationPairs`
        of the members' dimension, with treatments (and point features) exactly when the
        members read them (of at most the members' ``num_treatments``), one-hot point
        features when they read types (``type_frame``), and (``aleatoric``) sources of at
        least 4 points.

        Returns ``{"spearman", "coverage", "radius"`` (for the score chosen by ``normalized``),
        ``"coverage_normalized", "coverage_raw", "radius_normalized", "radius_raw",
        "spearman_epistemic", "test_error", "test_spread", "test_spread_epistemic",
        "test_noise", "test_metrics"`` (pooled-prediction
        w1/w2/mmd per population)``}``. Radii are in score units (W2, or W2 / spread).
        """
        noise_splits = check_int("noise_splits", noise_splits, minimum=1)
        alpha = _check_alpha(alpha)  # before the (slow) predictions, not after them
        max_points = _check_max_points("max_points", max_points)
        normalized = check_bool("normalized", normalized)
        aleatoric = check_bool("aleatoric", aleatoric)
        for name, data in (("cal", cal), ("test", test)):
            check_split(name, data, self.models[0], aleatoric)

        def scores(data: PopulationPairs) -> SplitScores:
            preds = self.predict_members(data.source, data.treatment, features=data.source_features)
            return split_scores(
                preds, data, max_points=max_points, noise_splits=noise_splits, aleatoric=aleatoric
            )

        return uncertainty_summary(scores(cal), scores(test), alpha, normalized)

    def __repr__(self) -> str:
        m = self.models[0]
        return (
            f"MFMEnsemble(method={m.config.method!r}, members={self.members}, dim={m.dim}, "
            f"steps_done={[x.steps_done for x in self.models]}, device={self.device})"
        )

    def save(self, path: str | Path) -> Path:
        """Write every member (settings, weights, training streams) to one checkpoint."""
        cfgs = [m.checkpoint_config() for m in self.models]
        states = [m.state() for m in self.models]
        return save_checkpoint(
            path, kind=self.kind, config={"members": cfgs, "seed": self.seed}, state=states
        )

    @classmethod
    @autograd_on()
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> MFMEnsemble:
        """Rebuild an ensemble written by :meth:`save` exactly (on ``device``)."""
        device = model_device(device)  # the caller's argument, checked before the file's
        ck = load_checkpoint(path, kind=cls.kind, map_location="cpu")
        members, states = check_ensemble_checkpoint(ck, path)
        with rebuilding(path, cls.kind):
            models = [
                MetaFlowMatching.from_state(c, s, device=device) for c, s in zip(members, states)
            ]
            return cls(models=models, seed=ck["config"]["seed"])
