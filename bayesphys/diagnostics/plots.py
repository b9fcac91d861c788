"""The per-component calibration figure: PIT-ECDF panels, coverage curves and TARP curves.

Panels: one PIT-ECDF difference plot (simultaneous 95% band) per (problem, method) run; the
expected-coverage curve (observed vs nominal; solid: summaries, dashed: field pointwise);
the TARP curve :math:`\\mathrm{ECP}(\\alpha)` vs :math:`\\alpha`. Rows without a
:class:`~bayesphys.diagnostics.calibrate.CalibrationResult` (a component hook that returns bare
rows) get a bar chart of their ``coverage90`` against the [0.85, 0.95] target ("n/a" over a
missing value). Each method has its own colour (Okabe-Ito) and open marker, the first drawn
widest and at the back, so that a method whose curve matches another's stays visible; the
PIT-ECDF panels share one symmetric y-range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._files import save_figure
from .._plotting import LEGEND_PT, TITLE_PT, legend_below, line_colour, method_style
from .result import CalibrationResult

if TYPE_CHECKING:
    import matplotlib.figure

__all__ = ["plot_component", "component_figure"]


def plot_component(
    component: str, rows: Sequence[dict], results: Sequence[CalibrationResult], path: str | Path
) -> Path:
    """Draw the calibration figure of ``component`` to ``path`` (PNG); returns the path. No
    rows and no results is a ``ValueError`` (:func:`component_figure`), before anything is
    written."""
    fig = component_figure(component, rows, results)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    return path


def component_figure(
    component: str, rows: Sequence[dict], results: Sequence[CalibrationResult]
) -> matplotlib.figure.Figure:
    """The calibration figure of ``component`` (a :class:`~matplotlib.figure.Figure` outside
    pyplot), as :func:`plot_component` saves it. With no ``results`` the ``rows`` are drawn
    as a bar chart; no rows either is a ``ValueError`` (there is nothing to draw)."""
    bad = [type(r).__name__ for r in results if not isinstance(r, CalibrationResult)]
    if bad:
        raise TypeError(f"results: expected CalibrationResult objects, received {bad}")
    if not results and not rows:  # an empty chart under the component's title said nothing
        raise ValueError(
            f"rows: expected at least one row (or a CalibrationResult in results) to draw "
            f"the figure of {component!r}, received no rows and no results"
        )
    if not results:  # the rows are drawn (their labels): checked before any drawing
        for i, r in enumerate(rows):
            if not isinstance(r, dict) or "problem" not in r or "method" not in r:
                got = sorted(r) if isinstance(r, dict) else type(r).__name__
                raise ValueError(
                    f"rows: expected dicts with 'problem' and 'method', row {i} is {got}"
                )
    # a Figure of its own, outside pyplot: the caller's backend stays as it is and no figure
    # is left registered with pyplot, even when saving fails
    from matplotlib.figure import Figure

    n_panels = len(results) + (2 if results else 1)
    ncols = min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    # constrained layout keeps the legends placed under the curve panels inside the figure
    fig = Figure(figsize=(4.6 * ncols, 4.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = list(axes.flat)
    for ax, res in zip(flat, results):
        res.plot(ax=ax)
    if results:
        _common_symmetric_ylim(flat[: len(results)])
        n = len(results)
        ax = flat[n]
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        for j, res in enumerate(results):
            style = method_style(j, n)
            ax.plot(res.levels, res.coverage_central.mean(1), "-", label=res.method, **style)
            rec = res.record
            if rec.field_coverage is not None:
                ax.plot(
                    rec.levels,
                    rec.field_coverage.mean(0),
                    "--",
                    color=style["color"],
                    lw=max(style["lw"] - 0.5, 0.8),
                    zorder=style["zorder"],
                )
        # the target: coverage in [0.85, 0.95] at the nominal 90 % level (data coordinates)
        ax.fill_between(
            [0.88, 0.92], 0.85, 0.95, color="g", alpha=0.2, lw=0, label="target at 90 %"
        )
        ax.set_xlabel("nominal level")
        ax.set_ylabel("observed coverage")
        ax.set_title("expected coverage\n(solid: summaries, dashed: field)", fontsize=TITLE_PT)
        legend_below(ax)
        ax = flat[n + 1]
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        for j, res in enumerate(results):
            t = res.tarp
            style = method_style(j, n)
            # a marker every tenth of the curve, shifted per method so they do not coincide
            ax.plot(
                t["alpha"],
                t["ecp"],
                markevery=(0.02 * j, 0.1),
                label=f"{res.method} (ATC {t['atc']:+.3f})",
                **style,
            )
        ax.set_xlabel("credibility level")
        ax.set_ylabel("expected coverage (TARP)")
        ax.set_title("TARP", fontsize=TITLE_PT)
        legend_below(ax)
    else:
        ax = flat[0]
        labels = [f"{r['problem']}\n{r['method']}" for r in rows]
        vals = [(r.get("metrics") or {}).get("coverage90") for r in rows]
        vals = [float("nan") if v is None else float(v) for v in vals]
        ax.bar(range(len(vals)), vals, color=line_colour(0))
        for i, v in enumerate(vals):
            if math.isnan(v):
                ax.text(i, 0.02, "n/a", ha="center", va="bottom", fontsize=LEGEND_PT)
        ax.axhspan(0.85, 0.95, color="g", alpha=0.15, label="target [0.85, 0.95]")
        ax.set_xticks(
            range(len(vals)),
            labels,
            fontsize=LEGEND_PT,
            rotation=30,
            ha="right",
            rotation_mode="anchor",
        )
        ax.set_ylim(0, 1)
        ax.set_ylabel("coverage of the 90 % interval (coverage90)")
        ax.legend(fontsize=LEGEND_PT)
    for ax in flat[n_panels:]:
        ax.axis("off")
    fig.suptitle(f"bayesphys calibrate {component}{_sizes(results)}", fontsize=11)
    return fig


def _sizes(results: Sequence[CalibrationResult]) -> str:
    """``": N simulations x L posterior draws"`` of the runs (each distinct value listed)."""
    if not results:
        return ""

    def distinct(values) -> str:
        return "/".join(str(v) for v in dict.fromkeys(values))

    sims = distinct(int(r.record.truth.shape[0]) for r in results)
    draws = distinct(int(r.record.n_draws) for r in results)
    return f": {sims} simulations x {draws} posterior draws each"


def _common_symmetric_ylim(axes) -> None:
    """One symmetric y-range for the PIT-ECDF panels, so that their deviations compare."""
    m = max(max(abs(lo), abs(hi)) for lo, hi in (ax.get_ylim() for ax in axes))
    for ax in axes:
        ax.set_ylim(-m, m)
