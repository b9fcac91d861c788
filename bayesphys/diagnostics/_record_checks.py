"""The checks of a :class:`~bayesphys.diagnostics.SimulationRecord`'s fields, run when one is
built and again by :func:`~bayesphys.diagnostics.analyse` (a field assigned afterwards).

Each field was checked only where it was read: a list truth failed in ``n_sims`` with an
AttributeError, more names than summaries went through a recalibration and came out in its
record, and a NaN ``seconds`` or a ``meta`` of ``None`` were kept without a word."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from .._checks import check_real
from .._device import check_finite
from .._posterior_args import _check_levels
from .sbc import check_truth_draws

__all__ = ["check_record_fields"]


def _check_names(names: Any, truth: Any) -> None:
    """One name per summary (``truth [N, K]``: ``K`` names)."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(
            f"record.names: expected a list of summary names, received {type(names).__name__}"
        )
    k = truth.shape[1] if isinstance(truth, Tensor) and truth.ndim == 2 else None
    if k is not None and len(names) != k:
        raise ValueError(
            f"record.names: expected {k} names (one per summary, truth {tuple(truth.shape)}), "
            f"received {len(names)}"
        )


def _check_field_coverage(fc: Any, levels: Any, truth: Any) -> None:
    """``levels`` probabilities in ``(0, 1)`` (or empty without a field coverage) and
    ``field_coverage`` ``None`` or a finite ``[N, len(levels)]``."""
    if fc is None:
        if not (isinstance(levels, Sequence) and not isinstance(levels, str) and not levels):
            _check_levels(levels, "record.levels")
        return
    levels = _check_levels(levels, "record.levels")
    n = truth.shape[0] if isinstance(truth, Tensor) and truth.ndim >= 1 else None
    if not (
        isinstance(fc, Tensor)
        and fc.ndim == 2
        and fc.shape[1] == len(levels)
        and (n is None or fc.shape[0] == n)
    ):
        got = tuple(fc.shape) if isinstance(fc, Tensor) else type(fc).__name__
        raise ValueError(
            f"record.field_coverage: expected a tensor [N, len(levels)] = [{n}, {len(levels)}], "
            f"received {got}"
        )
    check_finite("record.field_coverage", fc)


def check_record_fields(record: Any) -> None:
    """Refuse a record whose fields are not as :class:`SimulationRecord` states them:
    ``truth [N, K]`` and ``draws [N, L, K]`` real, finite tensors (``N, L, K >= 1``);
    ``names`` a sequence of ``K`` names; ``levels`` probabilities in ``(0, 1)`` (may be
    empty without a field coverage); ``field_coverage`` ``None`` or a finite tensor
    ``[N, len(levels)]``; ``seconds`` a finite number ``>= 0``; ``meta`` a mapping. Errors
    name the field (``record.truth``, ...) and what was received."""
    # truth [N, K], draws [N, L, K], real and finite: the diagnostics' own check
    check_truth_draws(record.truth, record.draws, prefix="record.")
    _check_names(record.names, record.truth)
    _check_field_coverage(record.field_coverage, record.levels, record.truth)
    check_real("record.seconds", record.seconds, minimum=0.0)
    if not isinstance(record.meta, Mapping):
        raise TypeError(f"record.meta: expected a dict, received {type(record.meta).__name__}")
