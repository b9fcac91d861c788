r"""The result of one calibration run: :class:`CalibrationResult` and :func:`analyse`.

``analyse`` turns a :class:`~bayesphys.diagnostics.SimulationRecord` (truth ``[N, K]``, draws
``[N, L, K]``) into SBC ranks and uniformity tests, central and HDI expected coverage, TARP and
scores; :mod:`.calibrate` (runs) and :mod:`.record_recal` (recalibrated runs) both build on it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._repr import fields_repr
from ._record_checks import check_record_fields
from .coverage import expected_coverage, score_summary, tarp
from .pit_ecdf import plot_pit_ecdf
from .sbc import ranks_inference_data, sbc_ranks, sbc_uniformity
from .sbc_joint import sbc_joint_crossfit, sbc_joint_ranks
from .simulate import DEFAULT_LEVELS, SimulationRecord

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import matplotlib.axes
    import xarray as xr

__all__ = ["CalibrationResult", "analyse"]


@dataclass
class CalibrationResult:
    """Every diagnostic of one (problem, method) run.

    ``record`` holds ``truth [N, K]`` and ``draws [N, L, K]``; ``ranks [N, K]``;
    ``uniformity`` the chi-square/KS tests; ``coverage_central``/``coverage_hdi`` are
    ``[M, K]`` at ``levels [M]``; ``tarp`` the TARP curve and ATC; ``scores`` CRPS and NLL;
    ``joint`` (``K >= 2`` only, else ``None``) the pooled Mahalanobis ranks ``"ranks" [N]``
    (:func:`~bayesphys.diagnostics.sbc_joint_ranks`) with their :func:`sbc_uniformity` tests;
    ``crossfit`` (``K >= 2`` and ``N >= 4`` only, else ``None``) the cross-fitted joint test
    (:func:`~bayesphys.diagnostics.sbc_joint_crossfit`).
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
    joint: dict | None = None
    crossfit: dict | None = None

    def __repr__(self) -> str:
        try:
            n, draws, k = self.record.draws.shape
            m = self.metrics()
            shown = {"N": n, "L": draws, "K": k}
            shown.update({key: m.get(key) for key in ("coverage90", "sbc_pvalue")})
        except Exception:  # a repr never fails on a partial result
            shown = {}
        return fields_repr(self, ("problem", "method"), **shown)

    def _cov_if_run(self, lv: float, kind: str = "central") -> float | None:
        """Coverage at ``lv`` averaged over the summaries, or ``None`` if the run did not ask
        for that level."""
        near = (self.levels - lv).abs()
        if not bool((near <= 1e-9).any()):
            return None
        cov = self.coverage_central if kind == "central" else self.coverage_hdi
        return float(cov[int(torch.argmin(near))].mean())

    def metrics(self) -> dict[str, float | None]:
        """The row metrics (coverage averaged over summaries; see the module docstring);
        ``coverage50/90/95`` and ``hdi90`` are ``None`` when the run's ``levels`` leave that
        level out; ``sbc_pvalue_joint`` / ``sbc_pvalue_joint_ks`` (the chi-square / KS p-value
        of the pooled Mahalanobis ranks of the ``K``-vector of summaries) are ``None`` when
        ``K = 1``; ``sbc_pvalue_crossfit`` / ``sbc_pvalue_crossfit_ks`` (the cross-fitted joint
        test's Bonferroni p-values) are ``None`` when ``K = 1`` or ``N < 4``. None of the joint
        p-values enters :func:`~bayesphys.diagnostics.is_calibrated`."""
        fc = None
        rec = self.record
        # 0.9 up to rounding, as _cov_if_run reads the levels: field levels such as
        # np.linspace(0.5, 0.95, 10) hold 0.8999999999999999, and the exact test left
        # field_coverage90 None while coverage90 was read
        near = [j for j, lv in enumerate(rec.levels) if abs(lv - 0.9) <= 1e-9]
        if rec.field_coverage is not None and near:
            fc = float(rec.field_coverage[:, near[0]].mean())
        return {
            "coverage50": self._cov_if_run(0.5),
            "coverage90": self._cov_if_run(0.9),
            "coverage95": self._cov_if_run(0.95),
            "hdi90": self._cov_if_run(0.9, "hdi"),
            "field_coverage90": fc,
            "sbc_pvalue": self.uniformity["pvalue"],
            "sbc_pvalue_ks": self.uniformity["pvalue_ks"],
            "sbc_pvalue_joint": None if self.joint is None else self.joint["pvalue"],
            "sbc_pvalue_joint_ks": None if self.joint is None else self.joint["pvalue_ks"],
            "sbc_pvalue_crossfit": None if self.crossfit is None else self.crossfit["pvalue"],
            "sbc_pvalue_crossfit_ks": (
                None if self.crossfit is None else self.crossfit["pvalue_ks"]
            ),
            "tarp_atc": self.tarp["atc"],
            "tarp_pvalue": self.tarp["pvalue"],
            "crps": self.scores["crps"],
            "nll": self.scores["nll"],
            "seconds": rec.seconds,
        }

    def to_inference_data(
        self, group: str = "prior_sbc", idata: arviz.InferenceData | xr.DataTree | None = None
    ) -> arviz.InferenceData | xr.DataTree:
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

    def plot(
        self, ax: matplotlib.axes.Axes | None = None, prob: float = 0.95
    ) -> matplotlib.axes.Axes:
        """PIT-ECDF difference plot of the ranks with the simultaneous band (a new pyplot
        figure with ``ax=None``, left open: see :func:`plot_pit_ecdf`)."""
        p = self.uniformity["pvalue"]
        return plot_pit_ecdf(
            self.ranks,
            self.record.n_draws,
            self.record.names,
            prob=prob,
            ax=ax,
            # wrapped: one-line titles of long method names ran into the next panel
            title=textwrap.fill(f"{self.problem} / {self.method}: SBC {_p_text(p)}", 48),
        )


def _p_text(p: float) -> str:
    """``"p=0.617"``; ``"p<1e-300"`` for a p-value that underflowed to 0 (not "p=0")."""
    return "p<1e-300" if p < 1e-300 else f"p={p:.3g}"


def analyse(
    record: SimulationRecord,
    *,
    problem: str = "problem",
    method: str = "method",
    levels: Sequence[float] = DEFAULT_LEVELS,
    seed: int = 0,
) -> CalibrationResult:
    """All diagnostics of a :class:`SimulationRecord` (ranks, tests, coverage, TARP, scores;
    for ``K >= 2`` summaries also the joint pooled Mahalanobis ranks and their tests, and for
    ``N >= 4`` problems the cross-fitted joint test). The record's fields are checked first,
    as when it was built (a field may have been assigned since: ``names`` one per summary,
    ``field_coverage [N, len(levels)]`` finite, ...; see :class:`SimulationRecord`), and
    ``N >= 2`` problems are required (:func:`~bayesphys.diagnostics.sbc_uniformity`)."""
    if not isinstance(record, SimulationRecord):
        raise TypeError(
            f"record: expected a SimulationRecord (from simulate_and_infer), received "
            f"{type(record).__name__}"
        )
    check_record_fields(record)  # again: a field may have been assigned since
    truth = record.truth
    if isinstance(truth, Tensor) and truth.ndim == 2 and truth.shape[0] < 2:
        # one problem: every test returned a p-value of that single rank without a word
        raise ValueError(
            f"record: expected N >= 2 simulated problems (truth [N, K]), received N = "
            f"{truth.shape[0]} (truth {tuple(truth.shape)}); the rank tests "
            "need several problems (simulate_and_infer takes n_sims >= 2)"
        )
    ranks = sbc_ranks(record.truth, record.draws, seed=seed)
    nominal, cen = expected_coverage(record.truth, record.draws, levels, "central", seed=seed)
    _, hdi = expected_coverage(record.truth, record.draws, levels, "hdi", seed=seed)
    joint = None
    if record.truth.shape[1] >= 2:
        jr = sbc_joint_ranks(record.truth, record.draws, seed=seed)
        joint = {"ranks": jr, **sbc_uniformity(jr, record.n_draws, seed=seed)}
    crossfit = None
    if record.truth.shape[1] >= 2 and record.truth.shape[0] >= 4:
        crossfit = sbc_joint_crossfit(record.truth, record.draws, seed=seed)
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
        joint=joint,
        crossfit=crossfit,
    )
