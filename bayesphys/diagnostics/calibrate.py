r"""One calibration run = simulations + SBC + coverage + TARP + scores, and its table row.

:func:`run_sbc` simulates ``N`` problems, draws ``L`` posterior samples of ``K`` summaries for
each, and computes every diagnostic of :mod:`~bayesphys.diagnostics.sbc` and
:mod:`~bayesphys.diagnostics.coverage` into a :class:`CalibrationResult`.
:func:`calibration_rows` wraps it into the ``benchmarks/results/calibration.json`` row that
components return from their ``_calibration.calibrate_rows`` hook::

    {"problem", "method", "setting", "anchor": None,
     "metrics": {"coverage50", "coverage90", "coverage95", "hdi90", "field_coverage90",
                 "sbc_pvalue", "sbc_pvalue_ks", "tarp_atc", "tarp_pvalue", "crps", "nll",
                 "seconds"},
     "result": CalibrationResult}   # stripped before JSON, used for the figure
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._bench import bench_row
from .coverage import expected_coverage, score_summary, tarp
from .sbc import ranks_inference_data, sbc_ranks, sbc_uniformity
from .simulate import DEFAULT_LEVELS, SimulationRecord, Summary, simulate_and_infer

__all__ = ["CalibrationResult", "analyse", "run_sbc", "calibration_rows", "is_calibrated"]


@dataclass
class CalibrationResult:
    """Every diagnostic of one (problem, method) run.

    ``record`` holds ``truth [N, K]`` and ``draws [N, L, K]``; ``ranks [N, K]``;
    ``uniformity`` the chi-square/KS tests; ``coverage_central``/``coverage_hdi`` are
    ``[M, K]`` at ``levels [M]``; ``tarp`` the TARP curve and ATC; ``scores`` CRPS and NLL.
    """

    problem: str
    method: str
    record: SimulationRecord
    ranks: Tensor
    uniformity: dict
    levels: Tensor
    coverage_central: Tensor
    coverage_hdi: Tensor
    tarp: dict
    scores: dict
    extra: dict[str, Any] = field(default_factory=dict)

    def _cov(self, lv: float, kind: str = "central") -> float:
        cov = self.coverage_central if kind == "central" else self.coverage_hdi
        j = int(torch.argmin((self.levels - lv).abs()))
        if abs(float(self.levels[j]) - lv) > 1e-9:
            raise ValueError(f"level: {lv} not among {self.levels.tolist()}")
        return float(cov[j].mean())

    def metrics(self) -> dict[str, float | None]:
        """The row metrics (coverage averaged over summaries; see the module docstring)."""
        fc = None
        rec = self.record
        if rec.field_coverage is not None and 0.9 in rec.levels:
            fc = float(rec.field_coverage[:, list(rec.levels).index(0.9)].mean())
        return {
            "coverage50": self._cov(0.5),
            "coverage90": self._cov(0.9),
            "coverage95": self._cov(0.95),
            "hdi90": self._cov(0.9, "hdi"),
            "field_coverage90": fc,
            "sbc_pvalue": self.uniformity["pvalue"],
            "sbc_pvalue_ks": self.uniformity["pvalue_ks"],
            "tarp_atc": self.tarp["atc"],
            "tarp_pvalue": self.tarp["pvalue"],
            "crps": self.scores["crps"],
            "nll": self.scores["nll"],
            "seconds": rec.seconds,
        }

    def to_inference_data(self, group: str = "prior_sbc", idata=None):
        """Ranks as an InferenceData group (dim ``sbc_simulation``), see
        :func:`~bayesphys.diagnostics.sbc.ranks_inference_data`."""
        return ranks_inference_data(
            self.ranks,
            self.record.names,
            self.record.n_draws,
            group=group,
            idata=idata,
            attrs={"problem": self.problem, "method": self.method},
        )

    def plot(self, ax=None, prob: float = 0.95):
        """PIT-ECDF difference plot of the ranks with the simultaneous band."""
        from .sbc import plot_pit_ecdf

        p = self.uniformity["pvalue"]
        return plot_pit_ecdf(
            self.ranks,
            self.record.n_draws,
            self.record.names,
            prob=prob,
            ax=ax,
            title=f"{self.problem} / {self.method}: SBC p={p:.3g}",
        )


def analyse(
    record: SimulationRecord,
    *,
    problem: str = "problem",
    method: str = "method",
    levels: Sequence[float] = DEFAULT_LEVELS,
    seed: int = 0,
) -> CalibrationResult:
    """All diagnostics of a :class:`SimulationRecord` (ranks, tests, coverage, TARP, scores)."""
    ranks = sbc_ranks(record.truth, record.draws, seed=seed)
    nominal, cen = expected_coverage(record.truth, record.draws, levels, "central", seed=seed)
    _, hdi = expected_coverage(record.truth, record.draws, levels, "hdi")
    return CalibrationResult(
        problem=problem,
        method=method,
        record=record,
        ranks=ranks,
        uniformity=sbc_uniformity(ranks, record.n_draws, seed=seed),
        levels=nominal,
        coverage_central=cen,
        coverage_hdi=hdi,
        tarp=tarp(record.truth, record.draws, seed=seed),
        scores=score_summary(record.truth, record.draws),
    )


def run_sbc(
    simulate: Callable[..., tuple[Any, Any]],
    infer: Callable[[Any], Any],
    summaries: Mapping[str, Summary] | None = None,
    *,
    n_sims: int = 200,
    n_draws: int = 99,
    seed: int = 0,
    problem: str = "problem",
    method: str = "method",
    levels: Sequence[float] = DEFAULT_LEVELS,
    field_levels: Sequence[float] | None = DEFAULT_LEVELS,
) -> CalibrationResult:
    """Simulate, infer and diagnose (see :func:`simulate_and_infer` for the callables).

    ``simulate(n, seed=) -> (theta [n, *event], data)``, ``infer(data[i]) -> Posterior |
    draws [L', *event]``, ``summaries {name: [*S, *event] -> [*S]}``. Returns a
    :class:`CalibrationResult`; ``result.metrics()`` gives the row metrics.
    """
    rec = simulate_and_infer(
        simulate,
        infer,
        summaries,
        n_sims=n_sims,
        n_draws=n_draws,
        seed=seed,
        field_levels=field_levels,
    )
    return analyse(rec, problem=problem, method=method, levels=levels, seed=seed)


def calibration_rows(
    simulate: Callable[..., tuple[Any, Any]],
    infer: Callable[[Any], Any],
    summaries: Mapping[str, Summary] | None = None,
    *,
    n_sims: int = 200,
    n_draws: int = 99,
    problem: str,
    method: str,
    seed: int = 0,
    setting: Mapping[str, Any] | None = None,
    note: str | None = None,
    recalibrate: int | None = None,
    recal_methods: tuple[str, ...] = ("affine", "shape"),
) -> list[dict]:
    """The calibration-table row(s) of one (problem, method): ``[row]`` with ``row["result"]``
    the :class:`CalibrationResult` (the suite strips it before writing JSON and draws it).

    ``recalibrate=n_fit``: when the posterior is not calibrated (:func:`is_calibrated`), one
    more row per ``recal_methods`` entry follows, fitted on ``n_fit`` held-out simulations and
    evaluated on the same ``N`` (:func:`~bayesphys.diagnostics.recalibrated_rows`).
    Components call this from ``bayesphys/<component>/_calibration.py::calibrate_rows``.
    """
    res = run_sbc(
        simulate,
        infer,
        summaries,
        n_sims=n_sims,
        n_draws=n_draws,
        seed=seed,
        problem=problem,
        method=method,
    )
    st = {"n_sims": n_sims, "n_draws": n_draws, **dict(setting or {})}
    row = bench_row(problem, method, res.metrics(), setting=st, note=note)
    row["result"] = res
    rows = [row]
    if recalibrate and not is_calibrated(row["metrics"]):
        from .record_recal import recalibrated_rows

        rows += recalibrated_rows(
            res,
            simulate,
            infer,
            summaries,
            n_fit=recalibrate,
            seed=seed,
            methods=recal_methods,
            setting=setting,
        )
    return rows


def is_calibrated(metrics: Mapping[str, Any], *, alpha: float = 0.01) -> bool:
    """The issue-9 target: ``sbc_pvalue >= alpha`` and ``coverage90`` in ``[0.85, 0.95]``."""
    p, c = metrics.get("sbc_pvalue"), metrics.get("coverage90")
    if p is None or c is None:
        return False
    return p >= alpha and 0.85 <= c <= 0.95
