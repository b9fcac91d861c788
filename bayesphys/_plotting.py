"""Shared figure styling: the Okabe-Ito colour-blind-safe palette and per-line styles.

Kept in the shared core so that the diagnostics and every component can use it without
importing one another.
"""

from __future__ import annotations

__all__ = [
    "OKABE_ITO",
    "LINE_COLOURS",
    "MARKERS",
    "NOISE_FREE_BAND",
    "line_colour",
    "line_style",
    "method_style",
    "plot_observations",
    "LEGEND_PT",
    "TITLE_PT",
    "legend_below",
]

# Okabe & Ito (2008), "Color Universal Design": the eight colours by name
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
# the order for lines on a white background (yellow, hard to see on white, last)
LINE_COLOURS = tuple(
    OKABE_ITO[n]
    for n in (
        "blue",
        "orange",
        "bluish green",
        "vermillion",
        "reddish purple",
        "sky blue",
        "black",
        "yellow",
    )
)
# open markers, one per method, so that coinciding curves stay distinguishable
MARKERS = "osD^vx<>"


# the dash pattern of each further round of the colours
LINE_STYLES = ("-", "--", ":", "-.")


def line_colour(j: int) -> str:
    """The ``j``-th line colour (cycling)."""
    return LINE_COLOURS[j % len(LINE_COLOURS)]


def line_style(j: int) -> dict:
    """Colour and dash pattern of the ``j``-th line: the colours in order, solid, then again
    dashed, dotted, dash-dotted, so that lines ``j`` and ``j + 8`` (one colour) stay apart."""
    return {
        "color": line_colour(j),
        "ls": LINE_STYLES[(j // len(LINE_COLOURS)) % len(LINE_STYLES)],
    }


def method_style(j: int, n: int) -> dict:
    """Line options of the ``j``-th of ``n`` methods: its own colour and open marker, the
    first widest and at the back, so a later method drawn on top of an identical earlier one
    leaves the earlier one visible around it."""
    back = (n - 1 - j) / (n - 1) if n > 1 else 0.5  # 1 for the first method, 0 for the last
    return {
        "color": line_colour(j),
        # shifted by one each round of the colours: method j + 8 has j's colour, not its marker
        "marker": MARKERS[(j + j // len(LINE_COLOURS)) % len(MARKERS)],
        "mfc": "none",
        "lw": 1.0 + 1.6 * back,
        "ms": 4.0 + 3.0 * back,
        "zorder": 2 + j,
    }


# the band of the latent (noise-free) field: noisy observations may well fall outside it
NOISE_FREE_BAND = "95% band of u (noise-free)"


def plot_observations(
    ax, x, y, noise: float, *, color: str = OKABE_ITO["vermillion"], ms: float = 4, **kwargs
):
    """Noisy observations ``y`` at ``x`` with bars of ±1.96 ``noise`` (their own 95% noise
    interval), so that one outside the noise-free band of the field does not read as a
    miscalibration. Returns the errorbar container. The default colour is the Okabe-Ito
    vermillion, that of the observations of :func:`bayesphys.plot_bands` (matplotlib's
    ``"C3"`` red before, outside the palette of the other figures)."""
    kwargs.setdefault("label", f"observations ±1.96σ (σ={noise:g})")
    return ax.errorbar(
        x, y, yerr=1.96 * noise, fmt="o", color=color, ms=ms, elinewidth=0.8, capsize=2, **kwargs
    )


LEGEND_PT = 8  # legend and tick-label text
TITLE_PT = 9  # panel titles


def legend_below(ax, **kwargs) -> None:
    """The legend under the axes, off the curves (``kwargs``: more ``ax.legend`` options)."""
    ax.legend(
        fontsize=LEGEND_PT, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, **kwargs
    )
