r"""A posterior over a population (a point cloud ``[n, d]``) drawn as scatter plots.

Re-exported by :mod:`bayesphys.plots` (and ``bayesphys``) as :func:`plot_populations`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._checks import check_bool, check_int, check_real, check_seed
from ._device import as_tensor
from ._plot_args import _check_posterior, _member_index
from ._plotting import LEGEND_PT, TITLE_PT, line_colour
from ._renamed import renamed_kwargs

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.axes

__all__ = ["plot_populations"]

_SOURCE_GREY = "0.75"  # the source population, behind everything else
_MAX_CHAINS_LABELLED = 8  # more chains than colours in the palette: one label for all


def _cloud(name: str, value: Any, d: int, dims: tuple[int, int]) -> np.ndarray:
    """``value`` ``[m, d]`` (finite, real) as float64 numpy ``[m, 2]`` of the columns ``dims``."""
    t = as_tensor(name, value, ndim=2, real=True)
    if t.shape[1] != d:
        raise ValueError(
            f"{name}: expected points [m, {d}] (the posterior's dimension d = {d}), received "
            f"shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one point, received shape {tuple(t.shape)}")
    return t[:, list(dims)].detach().to("cpu", torch.float64).numpy()


def _checked_dims(dims: Any, d: int) -> tuple[int, int]:
    """Two distinct coordinate indices in ``[-d, d)``, as non-negative ints."""
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or len(dims) != 2:
        raise ValueError(f"dims: expected two coordinate indices, e.g. (0, 1), received {dims!r}")
    out = []
    for k, i in enumerate(dims):
        i = check_int(f"dims[{k}]", i)
        if not -d <= i < d:
            raise ValueError(f"dims[{k}]: expected an index in [{-d}, {d}), received {i}")
        out.append(i % d)
    if out[0] == out[1]:
        raise ValueError(f"dims: expected two different coordinates, received {dims!r}")
    return out[0], out[1]


def _chain_draws(post: Any, idx: tuple[int, ...], num_samples: int | None, seed: int) -> Any:
    """The draws of member ``idx`` as a tensor ``[C, S, n, d]``: a SamplePosterior's stored
    chains (at most ``num_samples`` per chain, the first ones), else ``num_samples`` fresh draws
    (default 8) as one chain."""
    from ._sample_posterior import SamplePosterior

    if isinstance(post, SamplePosterior):
        draws = post.draws[(slice(None), slice(None), *idx)]
        return draws if num_samples is None else draws[:, :num_samples]
    n = 8 if num_samples is None else num_samples
    # the protocol's sample(sample_shape, generator): a generator on the posterior's device
    device = getattr(post, "device", None) or post.mean.device
    gen = torch.Generator(device=device).manual_seed(seed)
    draws = post.sample((n,), gen)
    return draws[(slice(None), *idx)].unsqueeze(0)


@renamed_kwargs(num_draws="num_samples")
def plot_populations(
    post: Any,
    *,
    truth: Any = None,
    source: Any = None,
    batch_index: int | tuple[int, ...] | None = None,
    dims: Sequence[int] = (0, 1),
    num_samples: int | None = None,
    ax: matplotlib.axes.Axes | None = None,
    title: str | None = None,
    draw_label: str | None = None,
    truth_label: str = "truth",
    source_label: str = "source",
    point_size: float = 4.0,
    alpha: float | None = None,
    legend: bool = True,
    seed: int = 0,
) -> matplotlib.axes.Axes:
    r"""Draw a posterior over a population, a point cloud :math:`\{x_j\}_{j=1}^n \subset
    \mathbb R^d`, as a scatter plot of its draws (two coordinates), with the source and the
    true population.

    Each draw :math:`x^{(c,s)} \in \mathbb R^{n \times d}` (chain :math:`c`, draw :math:`s`)
    is one predicted population; the chains (e.g. the members of an
    :class:`~bayesphys.meta_fm.MFMEnsemble`) get one colour each, so their spread is the
    uncertainty in where the population goes. The source (grey) is drawn first, the truth
    (black) last, on top.

    Parameters
    ----------
    post
        a :class:`~bayesphys.Posterior` whose ``event_shape`` is ``[n, d]`` (``d >= 2``): a
        :class:`~bayesphys.SamplePosterior` of draws ``[C, S, *batch, n, d]`` is drawn from its
        stored draws; another posterior from ``num_samples`` fresh draws (one chain).
    truth, source
        the true and the source population, ``[m, d]`` each (any number of points ``m``).
    batch_index
        for a batched posterior (e.g. ``[P]`` populations), the member to draw, as in
        :func:`~bayesphys.plot_bands`.
    dims
        the two coordinates drawn (default ``(0, 1)``); negative indices count from the end.
    num_samples
        at most this many draws per chain (the first ones; default all stored draws, or 8
        fresh ones).
    ax
        the axes to draw on (default: a new pyplot figure, which stays open as pyplot's do:
        in a loop, close each with ``plt.close(ax.figure)``). Its aspect is set equal (its
        data limits adjusted), and an axis without a label is labelled with its coordinate
        (``x1``, ``x2``, ...); labels it has are kept.
    title
        the axes' title (default none).
    draw_label
        the legend label of each chain's draws, with ``{chain}`` for its index (default
        ``"chain {chain}"``; ``"posterior draws"`` for one chain). More than 8 chains
        (more than the palette tells apart) are drawn pooled, in one colour with one label
        formatted with ``chain="all"`` (a format spec such as ``{chain:d}`` is then a
        ``ValueError``).
    truth_label, source_label
        the legend labels of ``truth`` and ``source``.
    point_size, alpha
        marker area (pt², > 0) and opacity of the draws (default ``0.45`` for one draw per
        chain, lower for more); the source and truth are opaque.
    legend
        draw a legend.
    seed
        the seed of fresh draws (for a posterior that is not a SamplePosterior).

    Returns
    -------
    matplotlib.axes.Axes
        The matplotlib Axes drawn on.

    Raises
    ------
    TypeError
        ``post`` is not a posterior; ``ax`` is not matplotlib Axes; non-numeric
        ``truth`` / ``source``.
    ValueError
        the event is not ``[n, d]`` with ``d >= 2``; a batched posterior without
        ``batch_index``; ``truth`` / ``source`` not ``[m, d]`` or holding NaN/Inf; bad
        ``dims``, ``num_samples``, ``point_size`` or ``alpha``.
    """
    _check_posterior(post)
    event = tuple(post.event_shape)
    if len(event) != 2 or event[1] < 2:
        raise ValueError(
            f"post: plot_populations draws a posterior over a population [n, d] with d >= 2, "
            f"received event_shape {event}; for a 1-D field use plot_bands, for a 2-D "
            "field plot_field"
        )
    d = event[1]
    idx = _member_index(post, batch_index)
    dims = _checked_dims(dims, d)
    if num_samples is not None:
        num_samples = check_int("num_samples", num_samples, minimum=1)
    point_size = check_real("point_size", point_size, minimum=0.0, strict=True)
    if alpha is not None:
        alpha = check_real("alpha", alpha, minimum=0.0, maximum=1.0, strict=True)
    legend = check_bool("legend", legend)
    seed = check_seed("seed", seed)
    if draw_label is not None:
        if not isinstance(draw_label, str):
            raise TypeError(f"draw_label: expected a str, received {type(draw_label).__name__}")
        try:
            draw_label.format(chain=0)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"draw_label: expected a label with at most the field {{chain}}, received "
                f"{draw_label!r} ({type(err).__name__}: {err})"
            ) from None
    for name, text in (
        ("title", title),
        ("truth_label", truth_label),
        ("source_label", source_label),
    ):
        if text is not None and not isinstance(text, str):
            raise TypeError(f"{name}: expected a str, received {type(text).__name__}")
    truth_np = None if truth is None else _cloud("truth", truth, d, dims)
    source_np = None if source is None else _cloud("source", source, d, dims)
    draws = _chain_draws(post, idx, num_samples, seed)  # [C, S, n, d]
    pts = draws[..., list(dims)].detach().to("cpu", torch.float64).numpy()
    n_chains, n_draws = pts.shape[:2]
    if draw_label is not None and n_chains > _MAX_CHAINS_LABELLED:
        try:  # one shared label, {chain} = "all": "{chain:d}" passed the check above
            draw_label.format(chain="all")
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"draw_label: the {n_chains} chains (more than {_MAX_CHAINS_LABELLED}) share "
                f"one label, formatted with chain='all'; expected a label that takes a str "
                f"there, received {draw_label!r} ({type(err).__name__}: {err})"
            ) from None

    import matplotlib.axes
    import matplotlib.pyplot as plt

    if ax is None:
        from ._files import _PYPLOT

        with _PYPLOT:
            _, ax = plt.subplots(figsize=(4.0, 3.8), layout="constrained")
    elif not isinstance(ax, matplotlib.axes.Axes):
        raise TypeError(f"ax: expected a matplotlib Axes, received {type(ax).__name__}")

    if alpha is None:
        alpha = 0.45 if n_draws == 1 else max(0.08, 0.45 / np.sqrt(n_draws))
    if draw_label is None:
        draw_label = "posterior draws" if n_chains == 1 else "chain {chain}"
    if source_np is not None:
        ax.scatter(*source_np.T, s=point_size, c=_SOURCE_GREY, label=source_label)
    if n_chains > _MAX_CHAINS_LABELLED:  # more chains than the palette tells apart: pooled
        xy = pts.reshape(-1, 2)
        label = draw_label.format(chain="all")
        ax.scatter(*xy.T, s=point_size, alpha=alpha, color=line_colour(0), label=label)
    for c in range(n_chains if n_chains <= _MAX_CHAINS_LABELLED else 0):
        xy = pts[c].reshape(-1, 2)
        label = draw_label.format(chain=c)
        ax.scatter(*xy.T, s=point_size, alpha=alpha, color=line_colour(c), label=label)
    if truth_np is not None:
        ax.scatter(*truth_np.T, s=point_size, c="k", label=truth_label)
    ax.set_aspect("equal", adjustable="datalim")
    # the coordinates' names where the axes have none: a caller's labels (units) are kept
    if not ax.get_xlabel():
        ax.set_xlabel(f"x{dims[0] + 1}")
    if not ax.get_ylabel():
        ax.set_ylabel(f"x{dims[1] + 1}")
    if title is not None:
        ax.set_title(title, fontsize=TITLE_PT)
    if legend:
        ax.legend(fontsize=LEGEND_PT, markerscale=3, loc="best")
    return ax
