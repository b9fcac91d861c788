r"""Recalibration of a calibration run's summaries, fitted on held-out simulations.

A rejected posterior is reported with its recalibrated version beside it (issue 9). The map is
fitted **per summary** :math:`s_k` on a held-out :class:`~bayesphys.diagnostics.SimulationRecord`
(``truth [N_fit, K]``, ``draws [N_fit, L, K]``, seeds disjoint from the run it is applied to) with
a :class:`~bayesphys.diagnostics.Recalibrator` on the empirical posterior of each summary, and then
applied draw by draw to the run's own draws ``[N, L, K]``:

* ``"zscore"``: :math:`x' = \bar x + s_k (x - \bar x)`, :math:`s_k^2 = \overline{z^2}`,
  :math:`z = (s_k(\theta) - \bar x)/(c_L\,\mathrm{sd}(x))` over the held-out problems
  (:func:`standardised_residuals`; :math:`c_L = \sqrt{(L+1)(L-1)/(L(L-3))}` for ``L > 3``
  draws, else 1, makes :math:`E[z^2] = 1` for an exact Gaussian posterior);
* ``"affine"``: :math:`x' = \bar x + b_k\,\mathrm{sd}(x) + s_k (x - \bar x)`, with
  :math:`s_k` the sd of the held-out :math:`z` and
  :math:`b_k = \sum_i (s_k(\theta_i) - \bar x_i) / \sum_i \mathrm{sd}(x_i)` the held-out
  bias in units of the draws' sd (:class:`AffineMap`): bias too;
* ``"shape"``: the held-out :math:`z` fitted by :math:`b_k + s_k T_k`, :math:`T_k` a Student-t
  or a generalised normal of shape :math:`\beta \le 8` (whichever fits better, kept only if it
  beats the law of :math:`z` for a Gaussian posterior with ``L`` draws, a location-scale
  :math:`t_{L-1}`; a generalised-normal fit beyond :math:`\beta = 8` sits at the family's
  uniform limit, where that test does not hold, and is refused), each draw's
  standardised value mapped through :math:`F^{-1}\circ\Phi` (:class:`ShapeMap`; the location
  :math:`b_k` is the ``"affine"`` one): bias, width and heavy or light tails, with three
  fitted numbers per summary;
* ``"quantile"``: :math:`x' = F^{-1}(R_k^{-1}(F(x)))` with :math:`F` the CDF of the problem's
  ``L`` draws that puts the ``j``-th smallest at :math:`j/(L+1)` (Gaussian tails beyond the
  extreme draws; see :mod:`~bayesphys.diagnostics.recalibrate`) and :math:`R_k` the empirical
  CDF of the held-out PITs (Kuleshov et al. 2018): the truth's rank among the mapped draws is
  then uniform up to the error of :math:`R_k`. It corrects bias and shape as well as width, but
  an empirical map with one parameter per quantile, fitted on ``N_fit`` problems, shares its
  quantile errors across every test problem and makes a chi-square SBC test on
  ``N > N_fit`` problems reject, so the rows default to ``"affine"`` and ``"shape"``.

A summary whose held-out draws never vary (a pinned boundary value) gets the identity map of
each method; every method needs ``L >= 2`` draws per problem.

Mapping the draws themselves (rather than re-running inference) is exactly what wrapping each
posterior in :class:`~bayesphys.diagnostics.RecalibratedPosterior` would produce, and keeps the
dependence between summaries (each map is monotone), so TARP stays meaningful.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .._bench import bench_row
from .._checks import offset_seed
from .._posterior_args import _check_level
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..posterior import SamplePosterior
from .recalibrate import Recalibrator
from .record_maps import (  # noqa: F401  (re-exported: the maps' home until 2026-12-05)
    _LR_MARGIN,
    GENNORM_MAX_SHAPE,
    T_MAX_DF,
    AffineMap,
    ShapeMap,
    standardised_residuals,
)
from .result import CalibrationResult, analyse
from .sbc import check_truth_draws
from .simulate import SimulationRecord, Summary, simulate_and_infer

__all__ = [
    "RecordRecalibration",
    "fit_record_recalibration",
    "recalibrated_rows",
]


def _marginal(draws: torch.Tensor) -> SamplePosterior:
    """The empirical posterior of one scalar summary from its draws ``[L]``."""
    return SamplePosterior(draws.reshape(1, -1), event_ndim=0)


@dataclass
class RecordRecalibration:
    """Per-summary recalibration maps, applied in ``stages`` (each a list of ``K``
    :class:`Recalibrator`), e.g. ``"zscore+quantile"``: variance scaling, then an isotonic map
    fitted on the variance-scaled held-out draws."""

    method: str
    stages: list[list[Recalibrator | AffineMap | ShapeMap]]
    #: the ``K`` summary names the maps were fitted on, in order (``None``: not recorded)
    names: list[str] | None = None

    def apply(self, record: SimulationRecord) -> SimulationRecord:
        """``record`` with every problem's draws ``[L, K]`` mapped by every stage.

        The field calibration curve is dropped (only the summaries are recalibrated).
        ``record`` is checked as in :func:`fit_record_recalibration` (finite, same ``K``,
        ``L >= 2`` draws per problem: the affine and shape maps are in units of each problem's
        draws' sd, and one draw made every mapped draw NaN), and its summaries must be the
        ones the maps were fitted on, in the same order (summaries of the same count in
        another order had each other's maps applied without a word).

        Not idempotent: the returned record says ``meta["recalibrated"] = method``, and a
        record that already says so (a rerun cell ``record = recal.apply(record)``) has its
        mapped draws mapped again, the maps composed, with a ``UserWarning``: apply to the
        unrecalibrated record, or fit the stages together (``method="affine+quantile"``,
        each stage fitted on the draws of the stages before it). The composed record's
        ``meta["recalibrated"]`` names both (``"affine then affine"``). The returned
        record's tensors are its own (``record`` is left as it was).
        """
        _check_record(record)
        named = self.names is not None and len(record.names) == len(self.names)
        if named and list(record.names) != list(self.names):  # (another K: _apply_stage says)
            raise ValueError(
                f"record: summaries {list(record.names)} are not those the maps were fitted "
                f"on, {list(self.names)} (the same names in the same order)"
            )
        record = _checked(record)
        _check_two_draws(record)
        before = record.meta.get("recalibrated") if isinstance(record.meta, dict) else None
        if before is not None:
            warnings.warn(
                f"record: already recalibrated (meta['recalibrated'] = {before!r}); apply maps "
                f"its draws again with {self.method!r} on top (the maps compose). Apply to the "
                "unrecalibrated record, or fit the stages together with "
                "fit_record_recalibration(method='a+b')",
                BayesphysUserWarning,
                stacklevel=user_stacklevel(),
            )
        for stage in self.stages:
            record = _apply_stage(record, stage)
        return SimulationRecord(
            names=list(record.names),
            # a copy: the returned record held the given record's truth tensor, so an
            # in-place edit of one record's truth changed the other's (its ranks, coverage)
            truth=record.truth.clone(),
            draws=record.draws,
            levels=record.levels,
            field_coverage=None,
            seconds=record.seconds,
            meta={
                **record.meta,
                "recalibrated": self.method if before is None else f"{before} then {self.method}",
            },
        )

    def describe(self) -> str:
        """The fit in one line: each stage's method and its fitted maps, one per summary (e.g.
        ``"affine (shift, scale) [(0.1, 1.2), ...]"``), stages joined by ``" then "``."""
        parts = []
        # each stage by its method name (a summary without spread has an identity map of
        # another class, which may be the stage's first)
        for name, stage in zip(self.method.split("+"), self.stages):
            if name == "quantile":
                parts.append("isotonic PIT map")
            elif name == "shape":
                parts.append(
                    "(family, shape, shift, scale) "
                    + str(
                        [
                            (r.label, round(r.shape, 2), round(r.shift, 3), round(r.scale, 3))
                            for r in stage
                        ]
                    )
                )
            elif name == "affine":
                parts.append(
                    "affine (shift, scale) "
                    + str([(round(r.shift, 3), round(r.scale, 3)) for r in stage])
                )
            else:
                parts.append(f"{name} scales {[round(r.scale, 3) for r in stage]}")
        return " then ".join(parts)


def _check_record(record: Any) -> None:
    """A :class:`SimulationRecord` (a tuple ``(truth, draws)`` failed with an AttributeError)."""
    if not isinstance(record, SimulationRecord):
        raise TypeError(
            f"record: expected a SimulationRecord (from simulate_and_infer), received "
            f"{type(record).__name__}"
        )


def _checked(record: SimulationRecord) -> SimulationRecord:
    """``record`` with its ``truth`` and ``draws`` checked by :func:`check_truth_draws` and
    replaced by the pair it returns (the truth on the draws' device: a truth kept on the CPU
    beside draws on a GPU failed in the first difference with torch's device error)."""
    truth, draws = check_truth_draws(record.truth, record.draws)
    return dataclasses.replace(record, truth=truth, draws=draws)


def _check_two_draws(record: SimulationRecord) -> None:
    """``L >= 2`` draws per problem in ``record`` (``draws [N, L, K]``)."""
    if record.n_draws < 2:
        raise ValueError(
            f"record: expected L >= 2 draws per problem (their sd is the unit of every "
            f"recalibration map), received L = {record.n_draws}; draw more posterior samples"
        )


def _is_identity(rec: Recalibrator | AffineMap | ShapeMap) -> bool:
    """Whether ``rec`` is the identity map (as fitted for a summary whose draws never vary)."""
    if isinstance(rec, AffineMap):
        return rec.shift == 0 and rec.scale == 1
    if isinstance(rec, ShapeMap):
        return rec.family == "norm" and rec.shift == 0 and rec.scale == 1
    return rec.method != "quantile" and rec.scale == 1


def _apply_stage(
    record: SimulationRecord, stage: list[Recalibrator | AffineMap | ShapeMap]
) -> SimulationRecord:
    k_sum = record.truth.shape[1]
    if len(stage) != k_sum:
        raise ValueError(
            f"recalibrators: expected one per summary ({k_sum}), received {len(stage)}"
        )
    draws = torch.empty_like(record.draws)
    for k, rec in enumerate(stage):
        if _is_identity(rec):  # exactly: m + (x - m) moved pinned draws by an ulp
            draws[:, :, k] = record.draws[:, :, k]
        elif isinstance(rec, Recalibrator) and rec.method != "quantile":
            # variance scaling about each problem's mean, all problems at once
            x = record.draws[:, :, k]
            m = x.mean(1, keepdim=True)
            draws[:, :, k] = m + rec.scale * (x - m)
        elif isinstance(rec, AffineMap | ShapeMap):  # each problem's map, all at once
            draws[:, :, k] = rec._map_rows(record.draws[:, :, k])
    for i in range(record.n_sims):  # the quantile maps: each problem's own marginal
        for k, rec in enumerate(stage):
            if isinstance(rec, Recalibrator) and rec.method == "quantile":
                x = record.draws[i, :, k]
                draws[i, :, k] = rec.wrap(_marginal(x)).map_draws(x[:, None])[:, 0]
    return SimulationRecord(
        names=list(record.names),
        truth=record.truth,
        draws=draws,
        levels=record.levels,
        field_coverage=record.field_coverage,
        seconds=record.seconds,
        meta=dict(record.meta),
    )


RECAL_METHODS: tuple[str, ...] = ("zscore", "conformal", "affine", "shape", "quantile")


def _check_recal_method(method: Any, name: str = "method") -> str:
    """A recalibration method of :func:`fit_record_recalibration`: one of
    :data:`RECAL_METHODS` or stages of them joined by ``+`` (e.g. ``"zscore+quantile"``);
    ``name`` is the argument named in the error."""
    if not isinstance(method, str) or any(m not in RECAL_METHODS for m in method.split("+")):
        raise ValueError(
            f"{name}: expected one of {RECAL_METHODS} or stages of them joined by '+' (e.g. "
            f"'zscore+quantile'), received {method!r}"
        )
    return method


def _identity(method: str) -> Recalibrator | AffineMap | ShapeMap:
    """The identity map of one stage ``method`` (for a summary whose draws never vary)."""
    if method in ("zscore", "conformal"):
        return Recalibrator(method, scale=1.0)
    if method == "shape":
        return ShapeMap("norm", 0.0, 0.0, 1.0)
    return AffineMap(0.0, 1.0, method="affine" if method == "affine" else "identity")


def fit_record_recalibration(
    record: SimulationRecord, method: str = "affine", *, level: float = 0.9
) -> RecordRecalibration:
    """Fit per-summary maps on ``record`` (``truth [N, K]``, ``draws [N, L, K]``, ``N >= 2``,
    ``L >= 2``).

    ``method``: ``"zscore"``, ``"conformal"``, ``"affine"``, ``"shape"``, ``"quantile"`` or
    stages joined by ``+`` (each stage is fitted on the held-out draws already mapped by the
    stages before it). A summary whose draws have zero spread in every held-out problem (a
    pinned boundary value) gets the identity map of the stage; an error while fitting a
    summary names it. ``truth`` and ``draws`` must be finite and agree in ``N`` and ``K``
    (a NaN draw was dropped from its problem's spread, an infinite truth gave a NaN map); a
    ``truth`` on another device than the draws is used on theirs, in
    :meth:`RecordRecalibration.apply` too.
    ``level`` (the ``"conformal"`` stage's coverage level) must lie in ``(0, 1)`` whatever the
    method, as :meth:`Recalibrator.from_z` checks it for ``"zscore"``, which does not read it
    either (``level=2.0`` was refused for ``"zscore"`` and accepted for ``"affine"``).
    """
    _check_record(record)
    record = _checked(record)
    _check_recal_method(method)
    level = _check_level(level)
    if record.n_sims < 2:
        raise ValueError(f"record: expected at least 2 simulations, received {record.n_sims}")
    _check_two_draws(record)
    names = list(record.names)
    stages: list[list[Recalibrator | AffineMap | ShapeMap]] = []
    for m in method.split("+"):
        stage = []
        for k in range(record.truth.shape[1]):
            x, t = record.draws[:, :, k], record.truth[:, k]
            if not bool((x.std(1) > 0).any()):  # no spread anywhere: nothing to fit
                stage.append(_identity(m))
                continue
            try:
                stage.append(_fit_one(m, x, t, level))
            except ValueError as err:
                name = record.names[k] if k < len(record.names) else k
                raise ValueError(f"summary {name!r} ({m} stage): {err}") from err
        stages.append(stage)
        record = _apply_stage(record, stage)
    return RecordRecalibration(method, stages, names)


def _fit_one(
    method: str, x: torch.Tensor, t: torch.Tensor, level: float
) -> Recalibrator | AffineMap | ShapeMap:
    """One stage's map of one summary: ``x [N, L]`` draws, ``t [N]`` truths."""
    if method in ("zscore", "conformal"):  # vectorised: z over all problems at once
        return Recalibrator.from_z(standardised_residuals(x, t), method=method, level=level)
    if method in ("affine", "shape"):
        return (AffineMap if method == "affine" else ShapeMap).fit(x, t)
    posts = [_marginal(x[i]) for i in range(x.shape[0])]
    return Recalibrator.fit(posts, list(t), method=method, level=level)


def recalibrated_rows(
    base: CalibrationResult,
    simulate: Callable[..., tuple[Any, Any]],
    infer: Callable[[Any], Any],
    summaries: Mapping[str, Summary] | None,
    *,
    n_fit: int,
    seed: int,
    methods: tuple[str, ...] = ("affine", "shape"),
    setting: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Rows for ``base`` after each recalibration ``method``, fitted on ``n_fit`` simulations.

    The fit simulations use seed ``seed + 1000`` (disjoint from ``base``'s run at ``seed``);
    the maps are evaluated on ``base``'s own ``N`` simulations, so the two rows compare the same
    problems. Each row's ``seconds`` is the held-out simulation + fitting cost.
    """
    _check_recal_methods(methods, "methods")  # before any simulation
    # also before it: a dict in place of the result failed with "'dict' object has no
    # attribute 'record'", a setting that is not a mapping after all n_fit inferences
    if not isinstance(base, CalibrationResult):
        raise TypeError(
            f"base: expected the CalibrationResult of the run to recalibrate (run_sbc, or "
            f"row['result'] of calibration_rows), received {type(base).__name__}"
        )
    if setting is not None and not isinstance(setting, Mapping):
        raise TypeError(
            f"setting: expected a dict of the run's settings or None, received "
            f"{type(setting).__name__}"
        )
    fit = simulate_and_infer(
        simulate,
        infer,
        summaries,
        n_sims=n_fit,
        n_draws=base.record.n_draws,
        seed=offset_seed(seed, 1000),
        field_levels=None,
    )
    rows = []
    for method in methods:
        t1 = time.perf_counter()
        recal = fit_record_recalibration(fit, method)
        rec = recal.apply(base.record)
        rec.seconds = fit.seconds + time.perf_counter() - t1
        res = analyse(
            rec, problem=base.problem, method=f"{base.method} + {method} recal", seed=seed
        )
        extra = recal.describe()
        row = bench_row(
            base.problem,
            res.method,
            res.metrics(),
            setting={
                "n_sims": base.record.n_sims,
                "n_draws": base.record.n_draws,
                "recal": method,
                "n_fit": n_fit,
                **dict(setting or {}),
            },
            note=(
                f"{method} recalibration per summary ({extra}) fitted on {n_fit} held-out "
                f"simulations (seed {offset_seed(seed, 1000)}), evaluated on the "
                f"{base.record.n_sims} simulations of the row '{base.method}'"
            ),
        )
        row["result"] = res
        rows.append(row)
    return rows


def _check_recal_methods(methods: Any, name: str) -> tuple[str, ...]:
    """A tuple (or list) of recalibration methods (:func:`_check_recal_method`); a single
    string is refused (it would be read letter by letter)."""
    if isinstance(methods, (str, bytes)) or not isinstance(methods, (tuple, list)):
        raise TypeError(
            f"{name}: expected a tuple of recalibration methods, e.g. ('affine', 'shape'), "
            f"received {methods!r}"
        )
    for i, m in enumerate(methods):
        _check_recal_method(m, f"{name}[{i}]")
    return tuple(methods)
