"""Capture the figures an example or demo saves, to check what they show."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest


def capture_figures(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list:
    """The figures ``module`` passes to its ``save_figure`` (saved as before), in order."""
    seen: list = []
    save = module.save_figure

    def spy(fig, path, **kw):
        seen.append(fig)
        return save(fig, path, **kw)

    monkeypatch.setattr(module, "save_figure", spy)
    return seen


def assert_noisy_data_on_a_noise_free_band(ax, noise: float) -> None:
    """``ax`` draws its observations with bars of ±1.96 ``noise`` and names its band as the
    noise-free field's (observations outside a band of u are no sign of miscalibration)."""
    from matplotlib.container import ErrorbarContainer

    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = bars.lines[2][0].get_segments()
    assert segments
    for seg in segments:
        assert abs((seg[1][1] - seg[0][1]) / 2 - 1.96 * noise) < 1e-9
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "95% band of u (noise-free)" in labels
    assert any("1.96σ" in lab for lab in labels)


def capture_bands(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[dict]:
    """The calls ``module`` makes to its ``plot_bands`` (drawn as before), in order: each a
    dict of the posterior ``post``, the coordinates ``x``, the returned ``ax`` and the
    keyword arguments."""
    seen: list[dict] = []
    draw = module.plot_bands

    def spy(post, x=None, **kw):
        ax = draw(post, x, **kw)
        seen.append({"post": post, "x": x, "ax": ax, **kw})
        return ax

    monkeypatch.setattr(module, "plot_bands", spy)
    return seen


def band_edges(ax, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, lower, upper)`` read back from the band polygon labelled ``label`` on ``ax``."""
    (band,) = [c for c in ax.collections if c.get_label() == label]
    verts = band.get_paths()[0].vertices
    xs = np.unique(verts[:, 0])
    lo = np.array([verts[verts[:, 0] == v, 1].min() for v in xs])
    hi = np.array([verts[verts[:, 0] == v, 1].max() for v in xs])
    return xs, lo, hi
