r"""Figures of any :class:`~bayesphys.Posterior`: credible bands of a 1-D field, panels of a
2-D one, scatter plots of a population (point cloud).

* :func:`plot_bands` draws a posterior over a 1-D event ``[N]``: the posterior mean
  :math:`E[u_i]` as a line and, per level :math:`p`, the central marginal band
  :math:`[q_{(1-p)/2}(u_i), q_{(1+p)/2}(u_i)]` (``post.interval(p)``: exact Gaussian quantiles
  for a :class:`~bayesphys.GaussianPosterior`, empirical ones for a
  :class:`~bayesphys.SamplePosterior`).
* :func:`plot_field` draws a posterior over a 2-D event ``[H, W]``: the mean, the marginal sd
  and, given the truth, the truth and the standardised error
  :math:`z = (E[u] - u^\star) / \operatorname{sd}[u]`.
* :func:`plot_populations` draws a posterior over a population, a point cloud ``[n, d]``:
  its draws (one colour per chain, e.g. per ensemble member) over two coordinates, with the
  source and the true population.

The bands are of the posterior over the field itself (noise-free): noisy observations drawn
over them may well fall outside. Matplotlib is imported when a function is called, not with
this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ._checks import check_bool, check_real
from ._device import as_tensor
from ._plot_args import _check_posterior, _member_index
from ._plotting import LEGEND_PT, OKABE_ITO, TITLE_PT, line_colour
from ._population_plot import plot_populations
from ._posterior_args import _check_levels
from ._posterior_base import central_intervals

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.axes
    import matplotlib.figure

__all__ = ["plot_bands", "plot_field", "plot_populations"]

# the band alphas: the widest band lightest (drawn first), the narrowest darkest
_ALPHA_WIDEST, _ALPHA_NARROWEST = 0.15, 0.4
_Z_CMAP = "RdBu_r"  # diverging, centred at 0 (blue: mean below the truth)
_Z_MIN_RANGE = 3.0  # the z panel's colour scale spans at least [-3, 3]
# the z panel's points with sd 0 (z undefined): grey, apart from the near-white of z = 0 (the
# axes' white background, shown through a blank point, read as a perfect fit)
_Z_BLANK = "0.55"
# one point (N = 1): its bands are boxes of this half-width in x's units (a band of zero
# width and a one-point line drew nothing)
_ONE_POINT_HALF_WIDTH = 0.4


def _checked_event(post: Any, fn: str, shape: str, more: str = "") -> tuple[int, ...]:
    """``post``'s event shape, checked to be a posterior over a ``len(shape)``-D event
    (``shape`` as written in the message, ``"[N]"`` or ``"[H, W]"``), else an error naming
    ``post`` and the other function for the other dimension (``more`` appended)."""
    _check_posterior(post)
    event = tuple(post.event_shape)
    want = shape.count(",") + 1
    if len(event) != want:
        other = {1: "plot_bands for a 1-D event", 2: "plot_field for a 2-D event"}
        hint = f"use {other[len(event)]}" if len(event) in other else f"select a {want}-D part"
        raise ValueError(
            f"post: {fn} draws a posterior over a {want}-D event {shape}, received "
            f"event_shape {event}; {hint}{more}"
        )
    return event


def _field_name(post: Any) -> str:
    """The posterior's field name for axis and colorbar labels: its ``export_name`` (``"u"``
    unless set otherwise), ``"u"`` for a posterior without one."""
    name = getattr(post, "export_name", None)
    return name if isinstance(name, str) and name else "u"


def _numpy(t: Tensor) -> np.ndarray:
    """``t`` ``[*]`` as a float64 numpy array on the CPU (a CUDA tensor is copied over)."""
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def _vector(name: str, value: Any, n: int, what: str) -> np.ndarray:
    """``value`` as a finite float64 array ``[n]``, or an error naming ``name``."""
    t = as_tensor(name, value, ndim=1, real=True)
    if t.shape[0] != n:
        raise ValueError(f"{name}: expected {n} values ({what}), received {t.shape[0]}")
    return _numpy(t)


def _band_template(band_label: Any, label: str | None, n_levels: int) -> str:
    """The bands' label with ``{pct}`` for the level in percent, checked."""
    if band_label is None:
        return "{pct}% band" if label is None else f"{label}: {{pct}}% band"
    if not isinstance(band_label, str):
        raise TypeError(
            f"band_label: expected a str (with {{pct}} for the level), received "
            f"{type(band_label).__name__}"
        )
    if n_levels > 1 and "{pct}" not in band_label:
        raise ValueError(
            f"band_label: with {n_levels} levels it needs {{pct}} (the level in percent) so "
            f"that the bands' labels differ, received {band_label!r}"
        )
    return band_label


# set by their own arguments of plot_bands, not through mean_kwargs / band_kwargs
_MEAN_OWN_ARGS = {"label": "label", "color": "color"}
_BAND_OWN_ARGS = {"label": "band_label", "color": "color"}


def _artist_options(
    name: str, kwargs: Any, artist: type, empty: tuple, own: dict[str, str], example: str
) -> dict[str, Any]:
    """``kwargs``, matplotlib options of ``artist`` (built empty from ``empty`` to try them),
    with aliases spelled out (``lw`` -> ``linewidth``), checked: a dict, none of ``own``
    (plot_bands' own arguments), each an option ``artist`` takes. An error names ``name``,
    before any figure is opened."""
    if not isinstance(kwargs, Mapping):
        raise TypeError(
            f"{name}: expected a dict of matplotlib {artist.__name__} options (e.g. "
            f"{example}), received {type(kwargs).__name__}"
        )
    from matplotlib import cbook

    try:  # "lw" and "linewidth" name one option: spelled out, so a default is overridden
        opts = dict(cbook.normalize_kwargs(dict(kwargs), artist))
    except TypeError as err:  # an option given twice, under two of its names
        raise TypeError(f"{name}: {err}; give each option once") from None
    for key in kwargs:
        canonical = next(iter(cbook.normalize_kwargs({key: None}, artist)))
        if canonical in own:
            raise ValueError(
                f"{name}: {key!r} is set by plot_bands' own argument {own[canonical]!r}; "
                f"pass it there"
            )
    try:  # an unknown option is refused here, before a figure is opened
        artist(*empty, **opts)
    except (AttributeError, TypeError, ValueError) as err:
        raise TypeError(
            f"{name}: expected matplotlib {artist.__name__} options, received "
            f"{dict(kwargs)!r} ({err})"
        ) from None
    return opts


def _mean_options(mean_kwargs: Any) -> dict[str, Any]:
    """The mean line's matplotlib options: ``linewidth=1.5`` updated by ``mean_kwargs``."""
    opts: dict[str, Any] = {"linewidth": 1.5}
    if mean_kwargs is not None:
        import matplotlib.lines

        opts.update(
            _artist_options(
                "mean_kwargs",
                mean_kwargs,
                matplotlib.lines.Line2D,
                ([], []),
                _MEAN_OWN_ARGS,
                "{'ls': '--'}",
            )
        )
    return opts


def _band_options(band_kwargs: Any) -> dict[str, Any]:
    """The bands' extra matplotlib ``fill_between`` options (aliases spelled out), checked."""
    if band_kwargs is None:
        return {}
    import matplotlib.collections

    return _artist_options(
        "band_kwargs",
        band_kwargs,
        matplotlib.collections.PolyCollection,
        ([],),
        _BAND_OWN_ARGS,
        "{'hatch': '///', 'facecolor': 'none'}",
    )


def plot_bands(
    post: Any,
    x: Tensor | np.ndarray | Sequence[float] | None = None,
    *,
    levels: Sequence[float] = (0.5, 0.9),
    truth: Tensor | np.ndarray | Sequence[float] | None = None,
    obs: tuple[Any, Any] | None = None,
    ax: matplotlib.axes.Axes | None = None,
    label: str | None = None,
    band_label: str | None = None,
    color: Any = None,
    batch_index: int | tuple[int, ...] | None = None,
    mean_kwargs: Mapping[str, Any] | None = None,
    band_kwargs: Mapping[str, Any] | None = None,
    legend: bool = True,
) -> matplotlib.axes.Axes:
    r"""Draw the posterior mean and central credible bands of a posterior over a 1-D field.

    For a posterior over ``[N]`` values :math:`u_i` at coordinates :math:`x_i`: the mean
    :math:`E[u_i]` as a line and, for each ``level`` :math:`p`, the shaded band between
    :math:`q_{(1-p)/2}(u_i)` and :math:`q_{(1+p)/2}(u_i)`, exactly ``post.interval(p)`` (exact
    Gaussian quantiles for a :class:`~bayesphys.GaussianPosterior`, empirical ones for a
    :class:`~bayesphys.SamplePosterior`). The wider the band, the lighter its shade. The bands
    are of the field itself (noise-free): noisy observations may fall outside them. A single
    point (``N = 1``), which a line and a band of zero width would not show, is drawn as boxes
    from :math:`x_0 - 0.4` to :math:`x_0 + 0.4` (in ``x``'s units), the mean and the truth as
    lines across them.

    Parameters
    ----------
    post
        a :class:`~bayesphys.Posterior` with a 1-D ``event_shape`` ``[N]`` (a 2-D event:
        :func:`plot_field`).
    x
        coordinates ``[N]`` (tensor, array or list; default ``0..N-1``), in any order: the
        mean, bands and truth are drawn sorted by ``x``.
    levels
        probabilities in (0, 1), one band each (default 50% and 90%).
    truth
        the true field ``[N]``, drawn as a dashed black line.
    obs
        observations ``(x_obs, y_obs)``, each ``[M]``, drawn as points.
    ax
        the axes to draw on (its axis labels, limits and title are left as they are);
        ``None``: a new pyplot figure, its axes labelled ``x`` (``index i`` without ``x``) and
        ``u`` (the posterior's ``export_name``); it stays open, as pyplot's do: close it with
        ``plt.close(ax.figure)``.
    label
        the legend label of the mean (default ``"posterior mean"``); given, it also prefixes
        the bands' labels (``"GP: 90% band"``), so that two posteriors on one axes stay apart.
    band_label
        the bands' legend label, ``{pct}`` standing for the level in percent (default
        ``"{pct}% band"``; e.g. ``"{pct}% band of u (noise-free)"``); with one level it may
        be any text.
    color
        a matplotlib colour for the mean and the bands (default: the first Okabe-Ito line
        colour).
    batch_index
        for a batched posterior (``batch_shape`` ``[*B]`` not empty), the index of the member
        to draw: an int for one batch dim, else a tuple of ``len(batch_shape)`` ints.
    mean_kwargs
        more matplotlib line options of the mean (default: solid, ``lw=1.5``), e.g.
        ``{"ls": "--", "lw": 0.8}`` for a dashed mean over a truth drawn as a solid line, or
        ``{"zorder": 3}``; its colour and label are ``color`` and ``label``.
    band_kwargs
        more matplotlib ``fill_between`` options of every band (default: filled in ``color``,
        no edge line, the alpha graded by level), e.g. ``{"facecolor": "none", "hatch":
        "///", "linewidth": 1, "alpha": None}`` for a hatched band with edge lines and no
        fill, which stays apart from another posterior's filled band on the same axes;
        ``edgecolor`` / ``facecolor`` override ``color`` for the edges / the fill, ``alpha``
        sets one alpha for all bands; their labels are ``band_label``.
    legend
        draw the axes' legend (default ``True``); ``False`` leaves it to the caller, e.g. one
        legend for several panels.

    Returns
    -------
    matplotlib.axes.Axes
        The matplotlib axes. Its collections are the bands (labelled ``"50% band"`` and so
        on), its lines the mean (then the truth and the observations, when given).

    Raises
    ------
    TypeError
        ``post`` is not a posterior; ``ax`` is not a matplotlib Axes; ``mean_kwargs``
        is not a dict of matplotlib line options, ``band_kwargs`` not one of
        ``fill_between`` (PolyCollection) options; ``legend`` is not a bool.
    ValueError
        ``color`` is not a matplotlib colour;
        ``mean_kwargs`` sets the colour or label (use ``color`` / ``label``),
        ``band_kwargs`` the colour or label (use ``color`` / ``band_label``);
        the event is not 1-D; a batched posterior without ``batch_index`` (or one out
        of range); ``x``, ``truth`` or ``obs`` not ``[N]`` / ``[M]`` or holding NaN/Inf;
        a level outside (0, 1).
    """
    (n,) = _checked_event(
        post,
        "plot_bands",
        "[N]",
        ", or index the posterior's mean and draws down to one dimension "
        # chains=False: the draws [S, N] of one chain (read as S chains of a scalar without it)
        "(SamplePosterior(post.sample((S,))[..., i, :], chains=False))",
    )
    idx = _member_index(post, batch_index)
    # widest band first: drawn underneath, lightest
    wanted = sorted(set(_check_levels(levels)), reverse=True)
    template = _band_template(band_label, label, len(wanted))
    xs = np.arange(n, dtype=np.float64) if x is None else _vector("x", x, n, "one per grid point")
    truth_np = None if truth is None else _vector("truth", truth, n, "one per grid point")
    obs_np = None
    if obs is not None:
        if not isinstance(obs, (tuple, list)) or len(obs) != 2:
            raise TypeError(
                f"obs: expected a pair (x_obs, y_obs), received {type(obs).__name__}"
                + (f" of length {len(obs)}" if isinstance(obs, (tuple, list)) else "")
            )
        x_obs = as_tensor("obs[0]", obs[0], ndim=1, real=True)
        y_obs = _vector("obs[1]", obs[1], x_obs.shape[0], "one per entry of obs[0]")
        obs_np = (_numpy(x_obs), y_obs)

    legend = check_bool("legend", legend)  # numpy's bool too, as plot_populations takes it
    import matplotlib.axes
    import matplotlib.pyplot as plt
    from matplotlib.colors import is_color_like

    if color is not None and not is_color_like(color):
        # refused here: matplotlib's error came from fill_between, with the figure left open
        raise ValueError(
            "color: expected a matplotlib colour (a name such as 'C1' or 'tab:blue', a hex "
            f"string, an RGB(A) tuple), received {color!r}"
        )

    if ax is not None and not isinstance(ax, matplotlib.axes.Axes):
        raise TypeError(
            f"ax: expected a matplotlib Axes (None: a new figure), received {type(ax).__name__}"
        )
    mean_opts = _mean_options(mean_kwargs)
    band_opts = _band_options(band_kwargs)
    mean = _numpy(post.mean[idx])
    bands = [
        (lv, _numpy(lo[idx]), _numpy(hi[idx]))
        for lv, (lo, hi) in zip(wanted, central_intervals(post, wanted))
    ]
    if ax is None:  # pyplot's figure list is process-wide: opened under the package's lock
        from ._files import _PYPLOT

        with _PYPLOT:
            _, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
        # a figure of its own is labelled (a caller's axes keep their labels)
        ax.set_xlabel("index i" if x is None else "x")
        ax.set_ylabel(_field_name(post))
    color = line_colour(0) if color is None else color
    if np.any(np.diff(xs) < 0):  # drawn in x's order: unsorted x drew zigzag lines and bands
        order = np.argsort(xs, kind="stable")
        xs, mean = xs[order], mean[order]
        bands = [(lv, lo[order], hi[order]) for lv, lo, hi in bands]
        truth_np = None if truth_np is None else truth_np[order]
    if n == 1:  # one point: boxes of width 2h, the mean and the truth as lines across them
        xs = xs[0] + np.array([-_ONE_POINT_HALF_WIDTH, _ONE_POINT_HALF_WIDTH])
        mean = np.repeat(mean, 2)
        bands = [(lv, np.repeat(lo, 2), np.repeat(hi, 2)) for lv, lo, hi in bands]
        truth_np = None if truth_np is None else np.repeat(truth_np, 2)
    k = len(bands)
    for j, (lv, lo, hi) in enumerate(bands):
        t = j / (k - 1) if k > 1 else 0.5
        alpha = _ALPHA_WIDEST + (_ALPHA_NARROWEST - _ALPHA_WIDEST) * t
        # facecolor + edgecolor (not color): band_kwargs may set either alone
        opts = {"facecolor": color, "edgecolor": color, "alpha": alpha, "linewidth": 0}
        opts.update(band_opts)
        ax.fill_between(xs, lo, hi, label=template.replace("{pct}", f"{100 * lv:g}"), **opts)
    ax.plot(xs, mean, color=color, label="posterior mean" if label is None else label, **mean_opts)
    if truth_np is not None:
        ax.plot(xs, truth_np, "k--", lw=1, label="truth")
    if obs_np is not None:
        ax.plot(*obs_np, "o", color=OKABE_ITO["vermillion"], ms=4, label="observations")
    if legend:
        ax.legend(fontsize=LEGEND_PT)
    return ax


def _check_extent(extent: Any) -> tuple[float, float, float, float] | None:
    if extent is None:
        return None
    if isinstance(extent, (str, bytes)) or not isinstance(extent, (Sequence, np.ndarray, Tensor)):
        raise TypeError(
            f"extent: expected (left, right, bottom, top), received {type(extent).__name__}"
        )
    values = list(extent)
    if len(values) != 4:
        raise ValueError(
            f"extent: expected 4 numbers (left, right, bottom, top), received {len(values)}"
        )
    left, right, bottom, top = (
        check_real(f"extent[{i}]", v.item() if isinstance(v, (Tensor, np.ndarray)) else v)
        for i, v in enumerate(values)
    )
    return left, right, bottom, top


def _check_axes(axes: Any, n: int) -> list:
    import matplotlib.axes

    flat = list(np.asarray(axes, dtype=object).ravel())
    bad = [type(a).__name__ for a in flat if not isinstance(a, matplotlib.axes.Axes)]
    if bad:
        raise TypeError(f"axes: expected matplotlib Axes, received {bad}")
    if len(flat) != n:
        raise ValueError(f"axes: expected {n} Axes (one per panel), received {len(flat)}")
    return flat


def plot_field(
    post: Any,
    *,
    extent: Sequence[float] | None = None,
    truth: Tensor | np.ndarray | None = None,
    axes: Any = None,
    batch_index: int | tuple[int, ...] | None = None,
    cmap: Any = None,
) -> matplotlib.figure.Figure:
    r"""Draw a posterior over a 2-D field as image panels, each with a colorbar and a title.

    For a posterior over ``[H, W]`` values :math:`u_{ij}`: the posterior mean
    :math:`E[u_{ij}]` and the marginal standard deviation :math:`\operatorname{sd}[u_{ij}]`;
    given ``truth`` :math:`u^\star` ``[H, W]``, also the truth (on the mean's colour scale)
    and the standardised error

    .. math:: z_{ij} = \frac{E[u_{ij}] - u^\star_{ij}}{\operatorname{sd}[u_{ij}]}

    on a diverging colour map centred at 0, spanning at least :math:`[-3, 3]` (a calibrated
    Gaussian posterior gives :math:`|z| < 2` at about 95% of the points, so strong colours
    mark points it misses; a point with sd 0, where :math:`z` is undefined, is grey, and the
    colorbar's label says so). Each colorbar is labelled with its quantity
    (:math:`E[u]`, :math:`\operatorname{sd}[u]`, the true :math:`u`, :math:`z`; ``u`` is the
    posterior's ``export_name``). An sd of 0 everywhere is drawn on the scale ``[0, 1]``.

    Parameters
    ----------
    post
        a :class:`~bayesphys.Posterior` with a 2-D ``event_shape`` ``[H, W]`` (a 1-D event:
        :func:`plot_bands`).
    extent
        ``(left, right, bottom, top)`` as in :func:`matplotlib.pyplot.imshow`; row 0 of the
        field is drawn at the bottom (``origin="lower"``), so ``field[i, j]`` sits at
        ``(x_j, y_i)``. Default: pixel indices.
    truth
        the true field ``[H, W]``.
    axes
        the axes to draw on, one per panel (2 without ``truth``, 4 with it; a list or an
        array of them; their axis labels are left as they are); ``None``: a new pyplot
        figure of one row, its axes labelled ``x`` / ``y`` with ``extent``, else
        ``column j`` / ``row i``; it stays open, as pyplot's do: in a loop, close each with
        ``plt.close(fig)``.
    batch_index
        for a batched posterior, the member to draw (as in :func:`plot_bands`).
    cmap
        the colour map of the mean, sd and truth panels (default ``"viridis"``).

    Returns
    -------
    matplotlib.figure.Figure
        The matplotlib figure of the panels.

    Raises
    ------
    TypeError
        ``post`` is not a posterior; ``axes`` are not matplotlib Axes; ``cmap`` is neither
        a colour map nor a name.
    ValueError
        the event is not 2-D; a batched posterior without ``batch_index``;
        ``truth`` not ``[H, W]`` or holding NaN/Inf; ``extent`` not 4 finite numbers; the
        wrong number of ``axes``; an unknown ``cmap`` name.
    """
    event = _checked_event(post, "plot_field", "[H, W]")
    idx = _member_index(post, batch_index)
    extent = _check_extent(extent)
    truth_np = None
    if truth is not None:
        t = as_tensor("truth", truth, real=True)
        if tuple(t.shape) != event:
            raise ValueError(
                f"truth: expected shape {event} (the posterior's event_shape), received "
                f"{tuple(t.shape)}"
            )
        truth_np = _numpy(t)

    import matplotlib
    import matplotlib.pyplot as plt

    if cmap is None:
        cmap = "viridis"
    elif isinstance(cmap, str) and cmap not in matplotlib.colormaps:
        raise ValueError(f"cmap: expected a matplotlib colour map name, received {cmap!r}")
    elif not isinstance(cmap, (str, matplotlib.colors.Colormap)):
        # refused here: imshow's error came with the new figure left open
        raise TypeError(
            "cmap: expected a matplotlib colour map or the name of one, received "
            f"{type(cmap).__name__} {cmap!r}"
        )
    n_panels = 2 if truth_np is None else 4
    flat = None if axes is None else _check_axes(axes, n_panels)
    mean = _numpy(post.mean[idx])
    sd = _numpy(post.variance[idx].clamp_min(0).sqrt())
    own_figure = flat is None
    if flat is None:
        from ._files import _PYPLOT

        with _PYPLOT:
            fig, arr = plt.subplots(
                1, n_panels, figsize=(3.6 * n_panels, 3.2), layout="constrained", squeeze=False
            )
        flat = list(arr.ravel())
    fig = flat[0].figure
    u = _field_name(post)
    shown = dict(extent=extent, origin="lower", aspect="auto", interpolation="nearest")
    panels = [
        ("posterior mean", f"E[{u}]", mean, {"cmap": cmap}),
        ("posterior sd", f"sd[{u}]", sd, {"cmap": cmap}),
    ]
    if not sd.max() > 0:  # sd 0 everywhere: matplotlib's scale [-0.1, 0.1] showed negative sds
        panels[1][3].update(vmin=0.0, vmax=1.0)
    if truth_np is not None:
        lo = float(min(mean.min(), truth_np.min()))
        hi = float(max(mean.max(), truth_np.max()))
        panels[0][3].update(vmin=lo, vmax=hi)  # mean and truth on one scale
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, (mean - truth_np) / np.where(sd > 0, sd, 1.0), np.nan)
        finite = np.abs(z[np.isfinite(z)])
        # symmetric about 0, at least +-3: a strong colour is a point the posterior misses
        m = max(_Z_MIN_RANGE, float(finite.max()) if finite.size else 0.0)
        z_label = "z (grey: sd = 0)" if np.isnan(z).any() else "z"
        z_cmap = matplotlib.colormaps[_Z_CMAP].with_extremes(bad=_Z_BLANK)
        panels += [
            ("truth", f"true {u}", truth_np, {"cmap": cmap, "vmin": lo, "vmax": hi}),
            ("(mean - truth) / sd", z_label, z, {"cmap": z_cmap, "vmin": -m, "vmax": m}),
        ]
    for k, (ax, (title, bar_label, values, opts)) in enumerate(zip(flat, panels)):
        im = ax.imshow(values, **shown, **opts)
        bar = ax.figure.colorbar(im, ax=ax)
        bar.set_label(bar_label, fontsize=LEGEND_PT)
        # on the colorbar's image side: on its far side it sat beside the next panel's axis,
        # where it read as that panel's y label
        bar.ax.yaxis.set_label_position("left")
        ax.set_title(title, fontsize=TITLE_PT)
        if own_figure:  # a figure of its own is labelled (a caller's axes keep their labels)
            ax.set_xlabel("column j" if extent is None else "x", fontsize=LEGEND_PT)
            if k == 0:
                ax.set_ylabel("row i" if extent is None else "y", fontsize=LEGEND_PT)
    return fig
