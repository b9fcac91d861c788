"""The per-component calibration figure: PIT-ECDF panels, coverage curves and TARP curves.

Panels: one PIT-ECDF difference plot (simultaneous 95% band) per (problem, method) run; the
expected-coverage curve (observed vs nominal; solid: summaries, dashed: field pointwise);
the TARP curve :math:`\\mathrm{ECP}(\\alpha)` vs :math:`\\alpha`. Rows without a
:class:`~bayesphys.diagnostics.calibrate.CalibrationResult` (a component hook that returns bare
rows) get a bar chart of their ``coverage90`` against the [0.85, 0.95] target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .._files import save_figure
from .result import CalibrationResult

__all__ = ["plot_component"]


def plot_component(
    component: str, rows: Sequence[dict], results: Sequence[CalibrationResult], path: str | Path
) -> Path:
    """Draw the calibration figure of ``component`` to ``path`` (PNG); returns the path."""
    bad = [type(r).__name__ for r in results if not isinstance(r, CalibrationResult)]
    if bad:
        raise TypeError(f"results: expected CalibrationResult objects, received {bad}")
    # a Figure of its own, outside pyplot: the caller's backend stays as it is and no figure
    # is left registered with pyplot, even when saving fails
    from matplotlib.figure import Figure

    n_panels = len(results) + (2 if results else 1)
    ncols = min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    # constrained layout keeps the legends placed under the curve panels inside the figure
    fig = Figure(figsize=(4.4 * ncols, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = list(axes.flat)
    for ax, res in zip(flat, results):
        res.plot(ax=ax)
    if results:
        ax = flat[len(results)]
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        for j, res in enumerate(results):
            color = f"C{j}"
            ax.plot(
                res.levels,
                res.coverage_central.mean(1),
                "o-",
                color=color,
                ms=3,
                label=res.method,
            )
            rec = res.record
            if rec.field_coverage is not None:
                ax.plot(rec.levels, rec.field_coverage.mean(0), "--", color=color, lw=1)
        ax.axhspan(0.85, 0.95, xmin=0.8, color="g", alpha=0.1, label="target at 90 %")
        ax.set_xlabel("nominal level")
        ax.set_ylabel("observed coverage")
        ax.set_title("expected coverage\n(solid: summaries, dashed: field)", fontsize=8)
        legend_below(ax)
        ax = flat[len(results) + 1]
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        for j, res in enumerate(results):
            t = res.tarp
            ax.plot(
                t["alpha"], t["ecp"], color=f"C{j}", label=f"{res.method} (ATC {t['atc']:+.3f})"
            )
        ax.set_xlabel("credibility level")
        ax.set_ylabel("expected coverage (TARP)")
        ax.set_title("TARP", fontsize=8)
        legend_below(ax)
    else:
        ax = flat[0]
        labels = [f"{r['problem']}\n{r['method']}" for r in rows]
        vals = [(r.get("metrics") or {}).get("coverage90") for r in rows]
        vals = [float("nan") if v is None else v for v in vals]
        ax.bar(range(len(vals)), vals)
        ax.axhspan(0.85, 0.95, color="g", alpha=0.15, label="target [0.85, 0.95]")
        ax.set_xticks(range(len(vals)), labels, fontsize=6, rotation=30)
        ax.set_ylabel("coverage90")
        ax.legend(fontsize=6)
    for ax in flat[n_panels:]:
        ax.axis("off")
    fig.suptitle(f"bayesphys calibrate {component}", fontsize=10)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    return path


def legend_below(ax, **kwargs) -> None:
    """The legend under the axes, off the curves (``kwargs``: more ``ax.legend`` options)."""
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, **kwargs)
