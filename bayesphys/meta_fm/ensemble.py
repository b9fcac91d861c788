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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .._checks import (
    check_bool,
    check_int,
    check_optional_seed,
    check_seed,
    offset_seed,
    seed_or_draw,
    stream_seed,
)
from .._data_parallel import _active_group
from .._device import model_device
from .._model import (
    FitResult,
    load_checkpoint,
    rebuilding,
    refuse_unknown,
    require_entries,
    save_checkpoint,
    warn_untrained,
)
from .._progress import progress_bar
from .._stack import user_stacklevel
from .._time_budget import check_max_seconds
from ..inference_data import build_inference_data
from ..posterior import SamplePosterior
from ..problems.populations import PopulationPairs
from ._persist import check_checkpoint_config
from ._settings import points_warnings
from ._validate import check_features, check_pairs, check_populations, training_split
from .config import MFMConfig
from .evaluation import (
    _check_alpha,
    _check_max_points,
    conformal_coverage,
    ensemble_spread,
    population_metrics,
    sampling_noise_w2,
    spearman,
    subsample_points,
)
from .model import MetaFlowMatching

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

__all__ = ["MFMEnsemble", "pooled_prediction", "w2_inference_data"]


def _members_message(messages: Sequence[str]) -> str:
    """The members' fit messages, identical ones once: ``"max steps (30) (all 3 members)"``,
    else ``"max steps (30) (members 0, 2); diverged ... (member 1)"``."""
    groups: dict[str, list[int]] = {}
    for j, msg in enumerate(messages):
        groups.setdefault(msg, []).append(j)
    if len(groups) == 1:
        return f"{messages[0]} (all {len(messages)} members)"
    return "; ".join(
        f"{msg} (member{'s' if len(js) > 1 else ''} {', '.join(map(str, js))})"
        for msg, js in groups.items()
    )


def _member_seed(seed: int, member: int, num_draws: int, draw: int) -> int:
    """Subsample seed of draw ``draw`` of member ``member``: ``seed + member * num_draws +
    draw`` (:func:`~bayesphys._checks.offset_seed`: in torch's range, member 0's draw 0 reads
    as ``seed`` itself)."""
    return offset_seed(seed, member * num_draws + draw)


def pooled_prediction(member_preds: Sequence[Tensor], n: int, seed: int = 0) -> Tensor:
    """Mixture of the members' populations ``[n_m, d]``, subsampled to ``n >= 1`` points."""
    n = check_int("n", n, minimum=1)
    seed = check_seed("seed", seed)
    preds = check_populations("member_preds", member_preds, min_points=1, floating=False)
    return subsample_points(torch.cat(preds), n, seed)


def _check_models(models: Any) -> list[MetaFlowMatching]:
    """At least 2 models that can be asked the same questions (dimension, treatments,
    point features)."""
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
    m0 = models[0]
    for i, m in enumerate(models[1:], 1):
        for what, a, b in (
            ("dim", m0.dim, m.dim),
            ("num_treatments", m0.num_treatments, m.num_treatments),
            ("node_features", m0.config.node_features, m.config.node_features),
        ):
            if a != b:
                raise ValueError(f"models[{i}]: expected {what} {a} (as models[0]), received {b}")
    return list(models)


class MFMEnsemble:
    """``members`` (default 3, at least 2) independently seeded :class:`MetaFlowMatching`
    models (seeds ``seed + m``: ensembles of neighbouring seeds share members, e.g. member 1
    of ``seed=0`` is member 0 of ``seed=1``; space repeated ensembles at least ``members``
    seeds apart; ``seed=None``: unseeded members, each drawing its weights from the global
    streams), built from ``data``, ``config``, ``device`` (``None``: the
    CPU; ``"auto"``: CUDA when present), ``dtype`` and keyword settings as a single model is.

    ``models``: instead, at least 2 models already built (and possibly fitted), of one
    dimension, number of treatments and number of point features; building arguments
    (``data``, ``config``, ``device``, ``dtype``, settings) are then refused, since they would
    be ignored, and ``members``, if given, must equal ``len(models)``.
    """

    kind = "meta_fm.MFMEnsemble"

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
        return len(self.models)

    def _warn_uneven(self) -> None:
        """Warn when the members were trained for different numbers of steps (an interrupted
        :meth:`fit`): the ensemble's spread then mixes trained and untrained members."""
        done = [m.steps_done for m in self.models]
        if len(set(done)) > 1:
            warnings.warn(
                f"MFMEnsemble: the members were trained for different numbers of steps {done} "
                "(an interrupted fit?); their spread is not an ensemble's: fit again",
                RuntimeWarning,
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

    def fit(
        self,
        data: PopulationPairs | None = None,
        *,
        steps: int = 1000,
        progress: bool = True,
        max_seconds: float | None = None,
    ) -> FitResult:
        """Fit every member; ``loss_history`` is the member average, ``extra["members"]`` each.

        ``max_seconds`` (``None`` or ``> 0``) bounds the members' training time together: each
        member trains for at most ``max_seconds / members`` of wall time (set-up not counted;
        members a budget stopped may end with different numbers of steps, and the next ``fit``
        brings them level).

        Members are fitted one after another. An error or an interrupt in member ``j`` leaves
        members ``0..j-1`` fitted and the rest as they were; the exception gets a note naming
        the member, and :meth:`posterior` / :meth:`predict_members` then warn that the
        members were trained for different numbers of steps. The next ``fit`` first brings the
        members behind up to the others' steps (their ``steps`` are ``steps`` plus the gap)."""
        steps = check_int("steps", steps, minimum=0)
        progress = check_bool("progress", progress)
        max_seconds = check_max_seconds(max_seconds)
        self._warn_points(data)  # once, here: the members' copies are silenced below
        results = []
        # members behind the others (an interrupted fit) first catch up, so that every member
        # ends with the same number of steps
        top = max(m.steps_done for m in self.models)
        method = self.models[0].config.method
        grp = _active_group()
        # one bar over the members (rank 0 only), each member's step bar nested below it
        bar = progress_bar(
            total=self.members,
            desc=f"{method} member 1/{self.members}",
            unit="member",
            progress=progress and (grp is None or grp[0] == 0),
            leave=False,
        )
        try:
            for j, m in enumerate(self.models):
                bar.set_description(f"{method} member {j + 1}/{self.members}")
                results.append(self._fit_member(j, m, data, steps + top, progress, max_seconds))
                bar.update(1)
        finally:
            bar.close()
        n = min(len(r.loss_history) for r in results)
        hist = [float(np.mean([r.loss_history[k] for r in results])) for k in range(n)]
        secs = sum(r.seconds for r in results)
        return FitResult(
            loss_history=hist,
            seconds=secs,
            converged=all(r.converged for r in results),
            steps=n,
            message=_members_message([r.message for r in results]),
            extra={
                "members": results,
                "seconds_per_1k_steps": 1000 * secs / max(n, 1) / len(results),
            },
        )

    def _warn_points(self, data: PopulationPairs | None) -> None:
        """The members' ``config.points`` checks, each distinct one once for the ensemble (at
        the user's line); data a member would reject are left to it."""
        texts: list[str] = []
        for m in self.models:
            d = m.data if data is None else data
            if d is None:
                continue
            try:
                check_pairs(d, m.dim)
                d = training_split(d)
            except Exception:  # the member raises it, named
                continue
            cfg = m.config
            texts += points_warnings(
                d,
                cfg.points,
                cfg.method,
                m.coupling,
                "MFMEnsemble.fit",
                "build the ensemble with points",
            )
        for text in dict.fromkeys(texts):
            warnings.warn(text, UserWarning, stacklevel=user_stacklevel())

    def _fit_member(
        self,
        j: int,
        m: MetaFlowMatching,
        data: PopulationPairs | None,
        top: int,
        progress: bool,
        max_seconds: float | None,
    ) -> FitResult:
        """Fit member ``j`` up to ``top`` steps in all (its ``config.points`` warnings are
        :meth:`_warn_points`'s, given once); an error gets a note naming the member."""
        # the member skips its own config.points warnings (a flag on the member, not a global
        # warnings filter: filters are process-wide, and fits in other threads would share it)
        m._points_warned = True
        # its step bar names the member (every member's read "MFM fit", and logs keep them all)
        m._bar_label = f"{m.config.method} member {j + 1}/{self.members} steps"
        try:
            todo = top - m.steps_done
            share = None if max_seconds is None else max_seconds / self.members
            return m.fit(data, steps=todo, progress=progress, max_seconds=share)
        except BaseException as err:
            done = f"members 0..{j - 1} were fitted" if j else "no member was fitted"
            note = (
                f"MFMEnsemble.fit: member {j} of {self.members} failed; {done}, the others "
                "are as they were"
            )
            if hasattr(err, "add_note"):  # Python >= 3.11
                err.add_note(note)
            else:  # 3.10: the attribute add_note fills (tracebacks then do not print it)
                err.__notes__ = [*getattr(err, "__notes__", []), note]
            raise
        finally:
            m._points_warned = False
            m._bar_label = None

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
        ``seed`` from torch's global stream.
        """
        seed = seed_or_draw("seed", seed)
        self._warn_uneven()
        return [
            m.predict(sources, treatment, seed=_member_seed(seed, j, 1, 0), **kw)
            for j, m in enumerate(self.models)
        ]

    def posterior(
        self,
        x: Tensor | Sequence[Tensor],
        treatment: Tensor | Sequence[int] | None = None,
        *,
        num_draws: int = 1,
        seed: int | None = 0,
        features: Sequence[Tensor] | None = None,
    ) -> SamplePosterior:
        """Draws ``[M, num_draws, P, n, d]``: chain = member, draw = embedding subsample
        (``features``: the sources' per-point features, for models trained with them).

        Draw ``k`` of member ``m`` embeds through the subsample of seed
        ``seed + m * num_draws + k``: no two draws of the ensemble share a subsample (until
        this release every member used seeds ``seed + k``, so the members' draws were
        correlated through the points their embeddings saw). ``seed=None`` draws ``seed`` from
        torch's global stream.
        """
        warn_untrained("MFMEnsemble.posterior", max(m.steps_done for m in self.models))
        num_draws = check_int("num_draws", num_draws, minimum=1)
        seed = seed_or_draw("seed", seed)
        pops = check_populations("x", x, self.models[0].dim)
        self._warn_uneven()
        if len({q.shape[0] for q in pops}) != 1:
            raise ValueError(
                f"x: posterior needs equal population sizes, received {[q.shape[0] for q in pops]}"
            )
        chains = []
        for j, m in enumerate(self.models):
            chains.append(
                torch.stack(
                    [
                        torch.stack(
                            m.predict(
                                pops,
                                treatment,
                                features=features,
                                seed=_member_seed(seed, j, num_draws, k),
                            )
                        )
                        for k in range(num_draws)
                    ]
                )
            )
        # batch = the P populations, event = one population (n, d)
        return SamplePosterior(torch.stack(chains), event_ndim=2)

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
        members read them, and (``aleatoric``) sources of at least 4 points.

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
            self._check_split(name, data, aleatoric)

        def scores(data: PopulationPairs):
            preds = self.predict_members(data.source, data.treatment, features=data.source_features)
            err, epi, noise, mets = [], [], [], []
            for i, tgt in enumerate(data.target):
                members = [p[i] for p in preds]
                pooled = pooled_prediction(members, tgt.shape[0], seed=i)
                met = population_metrics(pooled, tgt, max_points=max_points, seed=i)
                mets.append(met)
                err.append(met["w2"])
                epi.append(ensemble_spread(members, max_points=max_points, seed=i))
                noise.append(
                    sampling_noise_w2(
                        members, tgt.shape[0], max_points=max_points, seed=i, splits=noise_splits
                    )
                    if aleatoric
                    else 0.0
                )
            epi, noise = np.asarray(epi), np.asarray(noise)
            return np.asarray(err), np.sqrt(epi**2 + noise**2), epi, noise, mets

        ce, cs, _, _, _ = scores(cal)
        te, ts, te_epi, te_noise, tm = scores(test)
        norm_cal, norm_test = ce / np.maximum(cs, 1e-12), te / np.maximum(ts, 1e-12)
        radius_n, cov_n = conformal_coverage(norm_cal, norm_test, alpha)
        radius_r, cov_r = conformal_coverage(ce, te, alpha)
        return {
            "spearman": spearman(ts, te),
            "spearman_epistemic": spearman(te_epi, te),
            "coverage": cov_n if normalized else cov_r,
            "radius": radius_n if normalized else radius_r,
            "coverage_normalized": cov_n,
            "coverage_raw": cov_r,
            "radius_normalized": radius_n,
            "radius_raw": radius_r,
            "test_error": te.tolist(),
            "test_spread": ts.tolist(),
            "test_spread_epistemic": te_epi.tolist(),
            "test_noise": te_noise.tolist(),
            "test_metrics": tm,
        }

    def _check_split(self, name: str, data: PopulationPairs, aleatoric: bool) -> None:
        m0 = self.models[0]
        check_pairs(data, m0.dim, name=name)
        if m0.num_treatments and data.treatment is None:
            raise ValueError(
                f"{name}.treatment: the members need one of {m0.num_treatments} treatments "
                "per population, received None"
            )
        if not m0.num_treatments and data.treatment is not None:
            raise ValueError(
                f"{name}.treatment: the members were built without treatments "
                "(num_treatments=0); they would be ignored"
            )
        if m0.num_treatments and int(torch.as_tensor(data.treatment).max()) >= m0.num_treatments:
            raise ValueError(
                f"{name}.treatment: expected indices in [0, {m0.num_treatments}) (the members' "
                f"num_treatments), received {torch.as_tensor(data.treatment).tolist()!r:.200}"
            )
        if m0.config.node_features:
            check_features(
                f"{name}.source_features",
                data.source_features,
                data.source,
                m0.config.node_features,
            )
        if aleatoric:
            for i, src in enumerate(data.source):
                if src.shape[0] < 4:
                    raise ValueError(
                        f"{name}.source[{i}]: the aleatoric spread splits each predicted "
                        f"population in halves and needs at least 4 points, received "
                        f"{src.shape[0]} (or pass aleatoric=False)"
                    )

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
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> MFMEnsemble:
        """Rebuild an ensemble written by :meth:`save` exactly (on ``device``)."""
        device = model_device(device)  # the caller's argument, checked before the file's
        ck = load_checkpoint(path, kind=cls.kind, map_location="cpu")
        cfg, states = ck["config"], ck["state"]
        require_entries(cfg, path, "settings", _CONFIG_KEYS)
        refuse_unknown(ck, path, "settings", cfg, _CONFIG_KEYS)
        members = cfg["members"]
        # one member's settings and one's weights each: a member short would load as a smaller
        # ensemble (another spread), silently
        lengths = [len(v) if isinstance(v, (list, tuple)) else None for v in (members, states)]
        if None in lengths or lengths[0] != lengths[1]:
            raise ValueError(
                f"path: {path} holds settings {_count(members)} and weights {_count(states)}; "
                "save() writes one of each per ensemble member (the file is damaged or was not "
                "written by save())"
            )
        for i, member in enumerate(members):
            check_checkpoint_config(ck, path, member, f"member {i} settings")
        with rebuilding(path, cls.kind):
            models = [
                MetaFlowMatching.from_state(c, s, device=device) for c, s in zip(members, states)
            ]
            return cls(models=models, seed=cfg["seed"])


#: the settings :meth:`MFMEnsemble.save` writes
_CONFIG_KEYS = ("members", "seed")


def _count(v: Any) -> str:
    """How many members a list or tuple read from a checkpoint is for, or what it is instead."""
    return f"for {len(v)} members" if isinstance(v, (list, tuple)) else f"as a {type(v).__name__}"


def _replicates(draws: Tensor, m: int, seed: int) -> Tensor:
    """Draws ``[chain, draw, P, n, d]`` subsampled to ``[chain, draw, P, m, d]`` (``m <= n``):
    each predicted population keeps ``m`` of its points, without replacement, a fresh subset per
    chain, draw and population from a CPU generator seeded by ``seed``."""
    draws = draws.detach().cpu()
    if draws.shape[3] == m:
        return draws
    # a stream of its own (the same seed also fixes member 0's embedding subsample)
    gen = torch.Generator().manual_seed(stream_seed(seed, "mfm-replicates"))
    keys = torch.rand(draws.shape[:4], generator=gen, dtype=torch.float64)
    idx = keys.argsort(-1)[..., :m, None].expand(-1, -1, -1, -1, draws.shape[-1])
    return draws.gather(3, idx)


def _observed_and_replicates(
    draws: Tensor, truth: list[Tensor], name: str, seed: int
) -> tuple[dict[str, Tensor] | None, dict[str, Tensor] | None]:
    """``observed_data`` ``{name: [P, m, d]}`` and ``posterior_predictive``
    ``{name: [chain, draw, P, m, d]}`` for :func:`w2_inference_data`. Both are ``None``, with a
    ``UserWarning``, when the true sizes differ; only the replicates are, when the true size
    ``m`` exceeds the predicted size ``n``."""
    sizes = sorted({t.shape[0] for t in truth})
    n = draws.shape[3]
    if len(sizes) > 1:
        obs = None
        why = (
            f"observed_data and posterior_predictive left out (the true populations have "
            f"different sizes {sizes})"
        )
    elif sizes[0] > n:
        obs = {name: torch.stack(truth)}
        why = (
            f"posterior_predictive left out (the true populations have m={sizes[0]} points, "
            f"more than the n={n} of each predicted population: no replicate of size m "
            "without repeated points)"
        )
    else:
        return {name: torch.stack(truth)}, {name: _replicates(draws, sizes[0], seed)}
    warnings.warn(
        f"w2_inference_data: {why}; the posterior group (populations and w2) is complete",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
    return obs, None


def w2_inference_data(
    post: SamplePosterior,
    truth: Tensor | Sequence[Tensor] | None = None,
    *,
    max_points: int | None = 500,
    name: str = "population",
    seed: int = 0,
) -> arviz.InferenceData | xr.DataTree:
    """ArviZ export of predicted populations ``[chain, draw, P, n, d]`` plus named ``w2`` draws.

    ``post``: a :class:`~bayesphys.SamplePosterior` of draws ``[chain, draw, P, n, d]`` (as
    :meth:`MFMEnsemble.posterior` and :meth:`MetaFlowMatching.posterior` return; chain =
    ensemble member, draw = embedding subsample). ``posterior`` holds ``name`` (dims
    ``population_id, cell, feature``) and, when ``truth`` (``P`` populations ``[m_i, d]``) is
    given, ``w2 [chain, draw, population_id]`` -- the distance of each draw to the true
    population.

    When the true populations share one size ``m``, ``observed_data`` holds them as ``name``
    ``[P, m, d]`` and ``posterior_predictive`` their replicates ``name [chain, draw, P, m, d]``
    (same dims, so ``az.plot_ppc(idata)`` works): the predicted populations themselves when
    ``n = m``; when ``n > m``, ``m`` points of each predicted population drawn without
    replacement (a random ``m``-subset of an ``n``-point sample is an ``m``-point sample of the
    same predicted distribution), a fresh subset per chain, draw and population, seeded by
    ``seed``. With a ``UserWarning`` saying why, both groups are left out when the true
    populations differ in size (ArviZ arrays need one size), and ``posterior_predictive``
    alone when ``n < m`` (no replicate without repeated points); the ``posterior`` group is
    unaffected. ``seed`` is used only for that subsampling (``w2`` does not depend on it).
    """
    if not isinstance(post, SamplePosterior):
        raise TypeError(f"post: expected a SamplePosterior, received {type(post).__name__}")
    if post.draws.ndim != 5:
        raise ValueError(
            f"post: expected draws [chain, draw, P, n, d], received shape {tuple(post.draws.shape)}"
        )
    max_points = _check_max_points("max_points", max_points)
    if not isinstance(name, str) or not name or name == "w2":
        raise ValueError(
            f"name: expected a non-empty variable name other than 'w2' (the distances), "
            f"received {name!r}"
        )
    seed = check_seed("seed", seed, minimum=0)
    draws = post.draws
    c, k, p = draws.shape[:3]
    vars_ = {name: draws}
    dims = {name: ["population_id", "cell", "feature"]}
    obs = ppc = None
    if truth is not None:
        tr = check_populations("truth", truth, draws.shape[-1])
        if len(tr) != p:
            raise ValueError(f"truth: expected {p} populations, received {len(tr)}")
        w2 = torch.empty(c, k, p, dtype=torch.float64)
        for a in range(c):
            for b in range(k):
                for i in range(p):
                    w2[a, b, i] = population_metrics(
                        draws[a, b, i], tr[i], max_points=max_points, seed=i
                    )["w2"]
        vars_["w2"] = w2
        dims["w2"] = ["population_id"]
        obs, ppc = _observed_and_replicates(draws, tr, name, seed)
    return build_inference_data(
        posterior=vars_,
        posterior_predictive=ppc,
        observed_data=obs,
        dims=dims,
        coords={"population_id": np.arange(p)},
    )
