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


def test_blocks_in_two_threads_do_not_close_each_others_figures():
    """A block ending in one thread closed the figure another thread's block was still drawing
    (``plt.gcf()`` there then gave a new, empty figure). The long block waits up to 1 s for the
    short one to start inside it (before the lock it did, and closed the long one's figure)."""
    import threading
    import time

    from bayesphys._files import closing_figures

    long_in, short_in = threading.Event(), threading.Event()
    kept: dict[str, bool] = {}

    def long_block() -> None:
        with closing_figures():
            long_in.set()
            short_in.wait(1.0)  # times out where the blocks run one after the other
            fig = plt.figure()
            time.sleep(0.5)  # the short block ends meanwhile
            kept["long"] = fig.number in plt.get_fignums() and plt.gcf() is fig

    def short_block() -> None:
        long_in.wait(10)
        with closing_figures():
            short_in.set()
            fig = plt.figure()
            time.sleep(0.1)
            kept["short"] = fig.number in plt.get_fignums() and plt.gcf() is fig

    threads = [threading.Thread(target=long_block), threading.Thread(target=short_block)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert kept == {"short": True, "long": True}


def test_a_pit_ecdf_figure_opened_during_another_threads_block_stays_open():
    """``plot_pit_ecdf(ax=None)`` opened its figure without the figure lock: a demo's block
    running in another thread closed it when the block ended. The block waits up to 1 s for
    the plot (before the lock the figure was opened inside the block, then closed)."""
    import threading

    import torch

    from bayesphys._files import closing_figures
    from bayesphys.diagnostics import plot_pit_ecdf

    block_in, release = threading.Event(), threading.Event()
    axes = []

    def block() -> None:
        with closing_figures():
            block_in.set()
            release.wait(1.0)  # times out where the plot waits for the block

    def plot() -> None:
        block_in.wait(10)
        ranks = torch.randint(0, 11, (20, 2), generator=torch.Generator().manual_seed(0))
        axes.append(plot_pit_ecdf(ranks, 10))
        release.set()

    threads = [threading.Thread(target=block), threading.Thread(target=plot)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert len(axes) == 1 and plt.fignum_exists(axes[0].figure.number)
    finally:
        if axes:
            plt.close(axes[0].figure)
