r"""PIT-ECDF plots of SBC ranks with simultaneous bands (Säilynoja et al. 2022).

The plot shows :math:`\hat F(z) - z` at :math:`z_m = m/(L+1)`, where
:math:`\hat F(z_m) = \#\{i : r_i < m\}/N` for ranks :math:`r_i \in \{0..L\}`, inside a
simultaneous ``prob`` band: a band that a uniform ECDF leaves with probability ``1 - prob``
*anywhere*. ArviZ 0.x's ``ecdf_confidence_band(method="optimized")`` computes it; elsewhere
(ArviZ >= 1) we simulate uniform ECDFs and tune the pointwise binomial level ourselves (same
construction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats
from torch import Tensor

from .._checks import check_int
from .._plotting import TITLE_PT, legend_below, line_style
from .._posterior_args import _check_level
from .sbc import _check_names, check_ranks

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.axes

__all__ = ["ecdf_band", "pit_ecdf", "plot_pit_ecdf"]


def _simulated_band(
    n_sims: int, cdf: np.ndarray, prob: float, n_trials: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous band by simulation: tune the pointwise binomial level ``g`` so that a
    fraction ``prob`` of simulated uniform ECDFs lies entirely inside the pointwise band."""
    rng = np.random.default_rng(seed)
    sims = np.sort(rng.uniform(size=(n_trials, n_sims)), axis=1)
    ecdfs = np.stack([np.searchsorted(s, cdf, side="right") for s in sims])  # counts

    def inside(g: float) -> float:
        lo = stats.binom.ppf((1 - g) / 2, n_sims, cdf)
        hi = stats.binom.ppf((1 + g) / 2, n_sims, cdf)
        return float(((ecdfs >= lo) & (ecdfs <= hi)).all(1).mean())

    lo_g, hi_g = prob, 1 - 1e-9
    for _ in range(40):
        mid = 0.5 * (lo_g + hi_g)
        if inside(mid) < prob:
            lo_g = mid
        else:
            hi_g = mid
    g = hi_g
    return (
        stats.binom.ppf((1 - g) / 2, n_sims, cdf) / n_sims,
        stats.binom.ppf((1 + g) / 2, n_sims, cdf) / n_sims,
    )


def ecdf_band(
    n_sims: int, eval_points: np.ndarray, prob: float = 0.95, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """Simultaneous ``prob`` band ``(lower, upper)`` of a U(0,1) ECDF of ``N`` values at
    ``eval_points [M]``; the third value names the method used."""
    n_sims = check_int("n_sims", n_sims, minimum=1)
    prob = _check_level(prob, "prob")
    z = np.asarray(eval_points, dtype=float)
    if z.ndim != 1 or not (np.isfinite(z).all() and (z >= 0).all() and (z <= 1).all()):
        # the range alone hid a NaN: [nan, 0.5] was reported as "range [0.5, 0.5]"
        n_bad = int((~np.isfinite(z)).sum())
        finite = z[np.isfinite(z)]
        span = f"[{finite.min()}, {finite.max()}]" if finite.size else "n/a"
        bad = f" and {n_bad} NaN/Inf value(s)" if n_bad else ""
        raise ValueError(
            f"eval_points: expected a 1-D array of values in [0, 1], received shape {z.shape} "
            f"with range {span}{bad}"
        )
    from .._arviz_version import import_arviz

    import_arviz()  # an unwritable cache folder does not end the import (import_arviz)
    try:
        from arviz.stats.ecdf_utils import ecdf_confidence_band

        lo, hi = ecdf_confidence_band(n_sims, z, z, prob=prob, method="optimized")
        return np.asarray(lo), np.asarray(hi), "arviz ecdf_confidence_band (optimized)"
    except ImportError:  # pragma: no cover - ArviZ >= 1
        lo, hi = _simulated_band(n_sims, z, prob, seed=seed)
        return lo, hi, "bayesphys simulated simultaneous band"


def _eval_points(n_draws: int, max_points: int = 100) -> np.ndarray:
    """``z_m = m/(L+1)``, ``m = 1..L`` (a subset of at most ``max_points`` when ``L`` is big)."""
    m = np.arange(1, n_draws + 1)
    if len(m) > max_points:
        m = np.unique(np.linspace(1, n_draws, max_points).round().astype(int))
    return m / (n_draws + 1)


def pit_ecdf(ranks: Tensor, n_draws: int) -> tuple[np.ndarray, np.ndarray]:
    """``(z [M], F_hat [M, K])``: the rank ECDF :math:`\\#\\{r_i < m\\}/N` at ``z_m = m/(L+1)``."""
    n_draws = check_int("n_draws", n_draws, minimum=1)
    r = check_ranks(ranks, n_draws).cpu().numpy()
    z = _eval_points(n_draws)
    m = np.round(z * (n_draws + 1)).astype(int)
    f = (r[None, :, :] < m[:, None, None]).mean(1)
    return z, f


def plot_pit_ecdf(
    ranks: Tensor,
    n_draws: int,
    names: Sequence[str] | None = None,
    *,
    prob: float = 0.95,
    ax: matplotlib.axes.Axes | None = None,
    title: str | None = None,
) -> matplotlib.axes.Axes:
    """PIT-ECDF difference plot :math:`\\hat F(z) - z` of ranks ``[N, K]`` with the
    simultaneous ``prob`` band; one line per summary. Returns the matplotlib axes.

    With ``ax=None`` it draws on a new pyplot figure (shown inline in a notebook), which stays
    open as pyplot's figures do: in a loop, close each with ``plt.close(ax.figure)``. The new
    figure is opened under the lock the package's own figure-drawing blocks (demos, examples)
    hold, so such a block ending in another thread does not close it. Axes given with a
    label or title keep them (``title`` and the default labels fill only empty ones)."""
    import matplotlib.axes
    import matplotlib.pyplot as plt

    if ax is not None and not isinstance(ax, matplotlib.axes.Axes):
        # a Figure or the array of plt.subplots(1, 2) failed in fill_between, after the band
        raise TypeError(
            f"ax: expected a matplotlib Axes (None: a new figure), received {type(ax).__name__}"
        )
    n_draws = check_int("n_draws", n_draws, minimum=1)
    ranks = check_ranks(ranks, n_draws)
    n, k = ranks.shape
    names = _check_names(names, k) if names is not None else [f"s{j}" for j in range(k)]
    z, f = pit_ecdf(ranks, n_draws)
    lo, hi, method = ecdf_band(n, z, prob)
    if ax is None:  # pyplot's figure list is process-wide: opened under the package's lock
        from .._files import _PYPLOT

        with _PYPLOT:
            _, ax = plt.subplots(figsize=(4, 3.6), layout="constrained")
    # each z_m's band holds over a whole step around it: the ends padded by half a step (the
    # first and last steps were half as wide as the others, and with L = 1 the band had no
    # width at all)
    d_first = z[1] - z[0] if len(z) > 1 else 1.0 / (n_draws + 1)
    d_last = z[-1] - z[-2] if len(z) > 1 else 1.0 / (n_draws + 1)
    zb = np.concatenate([[z[0] - d_first / 2], z, [z[-1] + d_last / 2]])
    lob = np.concatenate([lo[:1] - z[:1], lo - z, lo[-1:] - z[-1:]])
    hib = np.concatenate([hi[:1] - z[:1], hi - z, hi[-1:] - z[-1:]])
    ax.fill_between(zb, lob, hib, color="0.85", step="mid", label=f"{prob:.0%} simult. band")
    # close the curves at z = 0 and z = 1, where every ECDF equals the uniform CDF
    zc = np.concatenate([[0.0], z, [1.0]])
    for j in range(k):
        fc = np.concatenate([[0.0], f[:, j], [1.0]])
        ax.plot(zc, fc - zc, lw=1, label=names[j], **line_style(j))
    ax.axhline(0, color="k", lw=0.5)
    # axes of the caller's keep the labels and title it gave them (they were overwritten)
    if not ax.get_xlabel():
        ax.set_xlabel("fractional rank z")
    if not ax.get_ylabel():
        ax.set_ylabel("ECDF(z) - z")
    if title and not ax.get_title():
        ax.set_title(title, fontsize=TITLE_PT)
    # under the axes, off the curves; the band's method titles it (a note in the corner ran
    # under the legend)
    legend_below(ax, ncol=3, title=f"band: {method}", title_fontsize=7)
    return ax
