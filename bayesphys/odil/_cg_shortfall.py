"""Why a conjugate-gradient solve stopped above its tolerance, in words shared by the
warnings of :func:`~bayesphys.odil.minimize` (its inner GN/LM solves),
:func:`~bayesphys.odil.theta_covariance` and :func:`~bayesphys.odil.field_posterior`."""

from __future__ import annotations

import math
from collections.abc import Sequence

# why a CG column stopped above its tolerance (_cg_shortfall's keys), and the remedy for each;
# {maxiter} is the iteration cap, {matrix} the system's matrix in words
_SHORT_WHY = {
    "capped": "reached cg_maxiter={maxiter}: raise cg_maxiter",
    "broke down": (
        "broke down (a non-positive curvature p^T A p <= 0 before the tolerance, A = {matrix}: "
        "not positive definite to round-off, so more iterations do not help): add damping (a "
        "prior or smoothness residual on the field), check the problem for a mode no residual "
        "fixes, or use float64"
    ),
    "stalled": (
        "stopped with CG's updated residual below the tolerance but the true one above it "
        "(round-off): the tolerance is below what this dtype resolves for this system; raise "
        "cg_tol or use float64"
    ),
    "not finite": "is not finite (a NaN or infinite product)",
}


def _cg_shortfall(
    resids: Sequence[float], broken: Sequence[bool], capped: Sequence[bool], tol: float
) -> dict[str, list[int]]:
    """The columns whose true relative residual ``resids`` stayed above ``tol`` (NaN included),
    grouped by why CG stopped there (the keys of :data:`_SHORT_WHY`, those with columns only):
    a breakdown (``broken``), the iteration cap (``capped``: the column's solve took
    ``maxiter`` iterations), a non-finite residual, or else a stall (CG's recursively updated
    residual met ``tol``, the true one did not)."""
    short: dict[str, list[int]] = {}
    for j, (r, b, c) in enumerate(zip(resids, broken, capped)):
        if r <= tol:
            continue
        if not math.isfinite(r):
            why = "not finite"
        elif b:
            why = "broke down"
        elif c:
            why = "capped"
        else:
            why = "stalled"
        short.setdefault(why, []).append(j)
    return short


def _short_reasons(
    short: dict[str, list[int]], maxiter: int, matrix: str, *, columns: bool = False
) -> str:
    """The groups of :func:`_cg_shortfall` in words, joined by ``"; "``: each group's count
    (``columns=True``: ``"column(s) [j, ...]"``, its indices) and its :data:`_SHORT_WHY`
    reason and remedy, ``{maxiter}`` and ``{matrix}`` filled in; the one wording of the
    short-CG warnings of :func:`~bayesphys.odil.minimize`,
    :func:`~bayesphys.odil.theta_covariance` and :func:`~bayesphys.odil.field_posterior`."""
    return "; ".join(
        f"{f'column(s) {idx}' if columns else len(idx)} "
        f"{_SHORT_WHY[why].format(maxiter=maxiter, matrix=matrix)}"
        for why, idx in short.items()
    )
