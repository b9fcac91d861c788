"""Capture the figures an example or demo saves, to check what they show."""

from __future__ import annotations

from types import ModuleType

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
