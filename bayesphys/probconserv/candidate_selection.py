r"""How :func:`~bayesphys.probconserv.fit_hybrid` picks its analog size ``K`` and weight
``beta`` from the 2-fold held-out MSEs of the candidates ``(K, beta)``: ``"min"`` takes the
smallest mean MSE; ``"one_se"`` the largest ``beta`` (then all errors, ``K = 0``, then the
smallest ``K``) whose MSE lies within one paired standard error
:math:`\operatorname{sd}_v(e_{c,v} - e_{c^*,v})/\sqrt V` of the smallest."""

from __future__ import annotations

import math

from torch import Tensor

from .._checks import check_real, did_you_mean
from .._device import as_tensor

__all__ = ["SELECTIONS", "check_selection", "select_candidate", "paired_se"]

SELECTIONS = ("min", "one_se")


def check_selection(selection: str) -> None:
    """Raise a ``ValueError`` naming ``selection`` unless it is one of :data:`SELECTIONS`."""
    if selection not in SELECTIONS:
        raise ValueError(
            f"selection: expected one of {SELECTIONS}, received "
            f"{selection!r}{did_you_mean(selection, SELECTIONS)}"
        )


def select_candidate(
    cv: dict[tuple[int, float], float],
    per_function: dict[tuple[int, float], Tensor],
    selection: str = "min",
) -> tuple[int, float]:
    r"""The ``(K, beta)`` of :func:`fit_hybrid` from held-out MSEs ``cv[c]`` and the
    per-function held-out MSEs ``per_function[c] [V]`` (``cv[c]`` is their mean; see
    :func:`fit_hybrid`'s ``selection``)."""
    check_selection(selection)
    cv, per_function = _check_candidates(cv, per_function)
    best = min(cv, key=cv.get)
    if selection == "min":
        return best
    se = paired_se(per_function, best)
    near = [c for c, m in cv.items() if m <= cv[best] + se[c]]
    return min(near, key=lambda c: (-c[1], c[0] != 0, c[0]))


def _check_candidates(
    cv, per_function
) -> tuple[dict[tuple[int, float], float], dict[tuple[int, float], Tensor]]:
    """``cv`` and ``per_function`` of :func:`select_candidate` checked: dicts keyed by
    ``(K, beta)`` pairs, finite held-out MSEs, and per-function MSEs ``[V]`` of one length for
    every candidate. (A NaN MSE made the choice depend on the dict's order; per-function MSEs
    of different lengths, or not tensors, failed inside torch.)"""
    for name, d in (("cv", cv), ("per_function", per_function)):
        if not isinstance(d, dict):
            raise TypeError(
                f"{name}: expected a dict keyed by (K, beta) candidates, received "
                f"{type(d).__name__}"
            )
    if not cv:
        raise ValueError("cv: expected at least one (K, beta) candidate")
    bad = [c for c in cv if not (isinstance(c, tuple) and len(c) == 2)]
    if bad:
        raise ValueError(f"cv: expected (K, beta) pairs as keys, received {bad[0]!r}")
    missing = [c for c in cv if c not in per_function]
    if missing:
        raise ValueError(
            f"per_function: expected the per-function MSEs of every candidate in cv, missing "
            f"{missing}"
        )
    cv = {c: check_real(f"cv[{c!r}]", m) for c, m in cv.items()}
    per = {c: as_tensor(f"per_function[{c!r}]", per_function[c], real=True) for c in cv}
    sizes = {tuple(p.shape) for p in per.values()}
    if len(sizes) > 1 or next(iter(sizes)) == () or len(next(iter(sizes))) != 1:
        raise ValueError(
            "per_function: expected one MSE per validation function, shape [V] with the same "
            f"V for every candidate, received shapes {sorted(sizes)}"
        )
    return cv, per


def paired_se(
    per_function: dict[tuple[int, float], Tensor], best: tuple[int, float]
) -> dict[tuple[int, float], float]:
    r"""Paired standard error of each candidate's held-out MSE against ``best``:
    :math:`\operatorname{sd}_v(e_{c,v} - e_{c^*,v})/\sqrt V` from ``per_function[c] [V]``,
    with the sample sd (:math:`1/(V-1)`; 0 with one function)."""
    v = per_function[best].numel()
    return {
        c: float((p - per_function[best]).std()) / math.sqrt(v) if v > 1 else 0.0
        for c, p in per_function.items()
    }
