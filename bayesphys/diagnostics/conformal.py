r"""Split-conformal order statistics in exact rational arithmetic: which of ``n`` calibration
scores bounds a new exchangeable score with probability at least ``level``
(:func:`conformal_rank`), and how many scores a finite bound needs
(:func:`conformal_min_scores`). Used by the ``"conformal"`` recalibration
(:class:`~bayesphys.diagnostics.Recalibrator`) and Meta FM's conformal spread scales.
"""

from __future__ import annotations

import math
from fractions import Fraction

from .._checks import check_int
from .._posterior_args import _check_level

__all__ = ["conformal_rank", "conformal_min_scores"]


def _exact_level(level: float | Fraction) -> Fraction:
    """``level`` in ``(0, 1)`` as an exact rational: a float by its shortest decimal form, a
    :class:`~fractions.Fraction` as given (``1 - Fraction("1e-17")``, which no float holds)."""
    if isinstance(level, Fraction):
        if not 0 < level < 1:
            raise ValueError(f"level: expected a probability in (0, 1), received {level}")
        return level
    return Fraction(repr(_check_level(level)))


def conformal_rank(n: int, level: float | Fraction) -> int | None:
    r"""Split-conformal order statistic :math:`k = \lceil (n+1)\,\mathrm{level}\rceil` of ``n``
    calibration scores, or ``None`` when :math:`k > n` (no finite quantile has the guarantee).

    Exact rational arithmetic on the level's shortest decimal form (or on a
    :class:`~fractions.Fraction` level as given, e.g. ``1 - Fraction(repr(alpha))`` for a
    miscoverage ``alpha`` whose ``1 - alpha`` rounds to 1 in floats): in floats,
    ``(n + 1) * level`` can land just above an integer (``n = 99``, ``level = 0.55``:
    ``55.00000000000001``) and take the next order statistic.

    >>> conformal_rank(99, 0.55), conformal_rank(8, 0.9)
    (55, None)
    """
    n = check_int("n", n, minimum=0)
    k = math.ceil((n + 1) * _exact_level(level))
    return k if k <= n else None


def conformal_min_scores(level: float | Fraction) -> int:
    r"""The fewest calibration scores whose :func:`conformal_rank` at ``level`` is finite:
    :math:`\lceil (n+1)\ell\rceil \le n \iff n \ge \ell/(1-\ell)`, so
    :math:`\lceil \ell/(1-\ell)\rceil` (exact, as :func:`conformal_rank`; in floats
    ``0.9 / 0.1`` is ``9.000000000000002`` and read 10 where 9 suffice).

    >>> conformal_min_scores(0.9), conformal_min_scores(0.5)
    (9, 1)
    """
    lv = _exact_level(level)
    return math.ceil(lv / (1 - lv))
