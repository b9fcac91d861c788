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
