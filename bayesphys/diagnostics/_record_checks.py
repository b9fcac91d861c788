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

__all__ = ["check_record_fields"]


def _check_values(name: str, t: Any, shape: str) -> None:
    """``t`` a real tensor of values that can be read (``shape`` for the message)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor {shape}, received {type(t).__name__}")
    if t.is_complex():  # complex values have no order: a raw torch error followed
        raise TypeError(f"{name}: expected real values, received dtype {t.dtype}")


def _check_truth_draws(truth: Any, draws: Any) -> None:
    """``truth [N, K]`` and ``draws [N, L, K]`` (``N, L, K >= 1``), real and finite."""
    _check_values("record.truth", truth, "[N, K]")
    _check_values("record.draws", draws, "[N, L, K]")
    if truth.ndim != 2 or draws.ndim != 3 or draws.shape[0] != truth.shape[0]:
        raise ValueError(
            f"record.truth/record.draws: expected [N, K] and [N, L, K], received "
            f"{tuple(truth.shape)} and {tuple(draws.shape)}"
        )
    if draws.shape[2] != truth.shape[1]:
        raise ValueError(
            f"record.draws: expected K = {truth.shape[1]} summaries in the last dim, "
            f"received {tuple(draws.shape)}"
        )
    if 0 in (*truth.shape, draws.shape[1]):
        raise ValueError(
            f"record.truth/record.draws: expected N >= 1 problems, L >= 1 draws and K >= 1 "
            f"summaries, received truth {tuple(truth.shape)} and draws {tuple(draws.shape)}"
        )
    check_finite("record.truth", truth)
    check_finite("record.draws", draws)


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
    _check_truth_draws(record.truth, record.draws)
    _check_names(record.names, record.truth)
    _check_field_coverage(record.field_coverage, record.levels, record.truth)
    check_real("record.seconds", record.seconds, minimum=0.0)
    if not isinstance(record.meta, Mapping):
        raise TypeError(f"record.meta: expected a dict, received {type(record.meta).__name__}")
