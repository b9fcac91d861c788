r"""The source populations a :class:`~bayesphys.meta_fm.MetaFlowMatching` has trained on, and the
warning for a prediction from a source far from all of them.

The model standardises points with one pooled mean and scale; the field and the embedding are
fitted to the training pairs' source populations only. A source population whose mean lies
many pooled standard deviations beyond those of every training source, or whose spread is
several times smaller or larger than any of theirs, is pushed by an extrapolated flow, and the
posterior's draws (the embedding's subsamples) do not widen there. The record kept per model:
the box of the training sources' means ``[d]`` (``mean_lo``, ``mean_hi``), the range of their
spreads (mean over dimensions of the per-dimension sd; ``spread``) and the pooled sd of all
training points (``unit``), in data coordinates.

The thresholds leave the package's own held-out populations silent: over the test splits of
B1-B4 (quick and full presets, seeds 0-3), the demo and the population-response example the
largest mean excess is 1.44 pooled sds (B4 full, seed 2) and the largest spread ratio 1.32
(B2 full, seed 1): ``python benchmarks/meta_fm_far_sources.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._model import in_untrained_warned
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning

__all__ = [
    "FAR_MEAN",
    "FAR_SPREAD",
    "source_distance",
    "source_record",
    "merged_record",
    "saved_sources",
    "warn_far_sources",
]

#: a source mean this many pooled training sds beyond the box of the training sources' means
FAR_MEAN = 3.0
#: a source spread this many times below the smallest or above the largest training spread
FAR_SPREAD = 2.0

_KEYS = ("mean_lo", "mean_hi", "spread", "unit")


def _spread(p: Tensor) -> float:
    return float(p.std(0).mean()) if p.shape[0] > 1 else 0.0


def source_record(sources: Sequence[Tensor], targets: Sequence[Tensor]) -> dict[str, Any]:
    """The record of training sources ``[n_i, d]`` (``targets`` enter the pooled sd only)."""
    means = torch.stack([p.detach().to("cpu", torch.float64).mean(0) for p in sources])
    spreads = [_spread(p.detach().to("cpu", torch.float64)) for p in sources]
    allx = torch.cat([p.detach().to("cpu", torch.float64) for p in [*sources, *targets]])
    unit = float((allx - allx.mean(0)).std(0).mean()) if allx.shape[0] > 1 else 0.0
    return {
        "mean_lo": means.min(0).values.tolist(),
        "mean_hi": means.max(0).values.tolist(),
        "spread": [min(spreads), max(spreads)],
        "unit": unit if unit > 0 and math.isfinite(unit) else 1.0,
    }


def merged_record(prev: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``prev`` widened by ``new`` (a later fit's sources); the first fit's ``unit`` is kept."""
    if prev is None:
        return new
    return {
        "mean_lo": [min(a, b) for a, b in zip(prev["mean_lo"], new["mean_lo"])],
        "mean_hi": [max(a, b) for a, b in zip(prev["mean_hi"], new["mean_hi"])],
        "spread": [
            min(prev["spread"][0], new["spread"][0]),
            max(prev["spread"][1], new["spread"][1]),
        ],
        "unit": prev["unit"],
    }


def saved_sources(value: Any, dim: int) -> dict[str, Any] | None:
    """The record read from a checkpoint (``None``: not recorded, as in files written before
    it was), checked: the keys above, boxes of ``dim`` values, spreads ``lo <= hi``, ``unit >
    0``."""
    if value is None:
        return None

    def numbers(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
        )

    if (
        not isinstance(value, dict)
        or set(value) != set(_KEYS)
        or not all(numbers(value[k]) for k in ("mean_lo", "mean_hi", "spread"))
        or not numbers([value["unit"]])
    ):
        raise ValueError(
            f"trained_sources: expected None or a dict of numbers with keys {list(_KEYS)}, "
            f"received {value!r:.200}"
        )
    lo = [float(v) for v in value["mean_lo"]]
    hi = [float(v) for v in value["mean_hi"]]
    sp = [float(v) for v in value["spread"]]
    unit = float(value["unit"])
    if len(lo) != dim or len(hi) != dim or len(sp) != 2 or not sp[0] <= sp[1] or not unit > 0:
        raise ValueError(
            f"trained_sources: expected boxes of {dim} values, spreads [lo, hi] with lo <= hi "
            f"and unit > 0, received {value!r:.200}"
        )
    return {"mean_lo": lo, "mean_hi": hi, "spread": sp, "unit": unit}


def source_distance(rec: dict[str, Any], p: Tensor) -> tuple[float, float]:
    """How far population ``p [n, d]`` lies from the record: its mean's excess beyond the box
    of the training sources' means, in pooled training sds (0 inside the box), and its
    spread's ratio to the training spreads' range, ``max(lo / s, s / hi)`` (at most 1 inside
    the range)."""
    p = p.detach().to("cpu", torch.float64)
    m = p.mean(0)
    lo = torch.tensor(rec["mean_lo"], dtype=torch.float64)
    hi = torch.tensor(rec["mean_hi"], dtype=torch.float64)
    excess = float(torch.maximum(lo - m, m - hi).clamp_min(0).max()) / rec["unit"]
    s, (slo, shi) = _spread(p), rec["spread"]
    return excess, max(_ratio(slo, s), _ratio(s, shi))


def _ratio(a: float, b: float) -> float:
    """``a / b`` with ``0 / 0 = 0`` and ``a / 0 = inf`` for ``a > 0``."""
    return a / b if b > 0 else (math.inf if a > 0 else 0.0)


def _far(rec: dict[str, Any], p: Tensor, shift_invariant: bool) -> str | None:
    """Why population ``p [n, d]`` is far from the record, or ``None``."""
    excess, ratio = source_distance(rec, p)
    why = []
    if not shift_invariant and excess > FAR_MEAN:
        why.append(f"its mean lies {excess:.3g} pooled training sds beyond every training source's")
    if ratio > FAR_SPREAD:
        slo, shi = rec["spread"]
        why.append(
            f"its spread {_spread(p.detach().to('cpu', torch.float64)):.3g} is outside "
            f"{FAR_SPREAD:g}x the training sources' [{slo:.3g}, {shi:.3g}]"
        )
    return " and ".join(why) or None


def warn_far_sources(
    where: str,
    pops: Sequence[Tensor],
    records: Iterable[dict[str, Any] | None],
    shift_invariant: bool = False,
) -> None:
    """One ``UserWarning`` at the user's line when a population of ``pops`` is far (module
    docstring) from the training sources of a model of ``records`` (``None``: not known).
    ``shift_invariant``: the model's flow does not read a population's position (a centred
    or type-frame FM / CGFM field), so only the spread is compared. Silent within
    :func:`~bayesphys._model.untrained_warned` (the caller warned once)."""
    if in_untrained_warned():
        return
    for rec in records:
        if rec is None:
            continue
        far = [(i, w) for i, p in enumerate(pops) if (w := _far(rec, p, shift_invariant))]
        if far:
            i, why = far[0]
            warnings.warn(
                f"{where}: {len(far)} of {len(pops)} source populations are far from every "
                f"training source (e.g. population {i}: {why}). The flow there is an "
                "extrapolation of the trained field, and the posterior's spread (the "
                "embedding's subsamples) does not widen for it",
                BayesphysUserWarning,
                stacklevel=user_stacklevel(),
            )
            return
