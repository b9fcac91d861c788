"""A demo or example whose figure save fails closes the figure it drew: it stayed registered
with pyplot (closed only after a successful save), holding its memory for the rest of the
session. The save is made to fail by a folder standing at the figure's path; the caller's own
figure stays open."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

CPU = torch.device("cpu")


@pytest.fixture
def callers_figure() -> Iterator[None]:
    """A figure the caller has open before the call: it must survive the call."""
    fig = plt.figure()
    yield
    plt.close(fig)


def _few_steps(monkeypatch: pytest.MonkeyPatch, cls: type, steps: int = 2) -> None:
    """``cls.fit`` run for ``steps`` steps whatever the demo asks (the figure is what is tested,
    not the fit)."""
    fit = cls.fit

    def short(self, *args, **kwargs):
        kwargs["steps"] = steps
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(cls, "fit", short)


def _save_fails_and_figures_stay(run: Callable[[], object], png: Path) -> None:
    png.mkdir(parents=True)  # a folder where the figure goes: its save fails (IsADirectoryError)
    before = plt.get_fignums()
    assert before, "the caller's figure should be open"
    with pytest.raises(OSError, match=png.name):
        run()
    assert plt.get_fignums() == before


def test_core_demo_closes_its_figure_when_the_save_fails(tmp_path, callers_figure):
    from bayesphys._demo_core import demo

    _save_fails_and_figures_stay(lambda: demo(tmp_path, device=CPU), tmp_path / "core.png")


def test_component_demo_closes_its_figure_when_the_save_fails(
    tmp_path, callers_figure, monkeypatch
):
    from bayesphys.probconserv import ProbConserv
    from bayesphys.probconserv._demo import demo

    _few_steps(monkeypatch, ProbConserv)
    _save_fails_and_figures_stay(lambda: demo(tmp_path, device=CPU), tmp_path / "probconserv.png")


def test_example_closes_its_figure_when_the_save_fails(tmp_path, callers_figure):
    from bayesphys.examples import gp_pde_inverse

    _save_fails_and_figures_stay(
        lambda: gp_pde_inverse.main(["--smoke", "--out", str(tmp_path)]),
        tmp_path / "gp_pde_inverse.png",
    )


def test_closing_figures_closes_only_the_blocks_figures(callers_figure):
    from bayesphys._files import closing_figures

    before = plt.get_fignums()
    with pytest.raises(KeyboardInterrupt), closing_figures():
        plt.subplots()
        plt.figure()
        raise KeyboardInterrupt
    assert plt.get_fignums() == before
