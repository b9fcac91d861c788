"""Review 74 of the shared core's figures, HDI and command line."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bayesphys import SamplePosterior  # noqa: E402
from bayesphys.inference_data import build_inference_data, hdi_bounds  # noqa: E402
from bayesphys.plots import plot_bands, plot_field  # noqa: E402


@pytest.fixture
def figures():
    """The pyplot figures open before the test; those the test leaves open are closed."""
    before = set(plt.get_fignums())
    yield before
    for num in set(plt.get_fignums()) - before:
        plt.close(num)


def _line() -> SamplePosterior:
    return SamplePosterior(torch.randn(1, 10, 4, generator=torch.Generator().manual_seed(0)))


def test_plot_bands_refuses_a_bad_colour_by_name_and_opens_no_figure(figures):
    # matplotlib's "'notacolour' is not a valid color value." came from fill_between, with
    # the new figure left open
    with pytest.raises(ValueError, match="^color: .*'notacolour'"):
        plot_bands(_line(), color="notacolour")
    assert set(plt.get_fignums()) == figures
    ax = plot_bands(_line(), color=(0.1, 0.2, 0.3))  # an RGB tuple is still a colour
    assert ax.lines[0].get_color() == (0.1, 0.2, 0.3)


def test_plot_bands_takes_numpy_bools_for_legend(figures):
    # "legend: expected True or False, received bool" (numpy's bool_, named "bool")
    ax = plot_bands(_line(), legend=np.bool_(False))
    assert ax.get_legend() is None
    with pytest.raises(TypeError, match="^legend: "):
        plot_bands(_line(), legend="no")


def test_plot_field_refuses_a_cmap_that_is_no_colour_map_and_opens_no_figure(figures):
    post = SamplePosterior(torch.randn(1, 10, 2, 3, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(TypeError, match="^cmap: "):
        plot_field(post, cmap=3)
    assert set(plt.get_fignums()) == figures
    fig = plot_field(post, cmap=matplotlib.colormaps["magma"])  # a Colormap object still works
    assert fig.axes[0].images[0].get_cmap().name == "magma"


@pytest.mark.parametrize("prob", [0.5, 1.0])
def test_hdi_bounds_refuses_complex_draws_by_name(prob):
    # prob < 1: numpy's "Cannot cast ufunc 'subtract' ..." from inside az.hdi; prob = 1: the
    # lexicographic min / max of complex numbers, silently
    draws = np.arange(10.0).reshape(1, 10) + 1j
    idata = build_inference_data(posterior={"x": draws})
    with pytest.raises(TypeError, match="^var_name: .*'x'.*complex"):
        hdi_bounds(idata, "x", prob=prob)


def test_demo_leaves_the_thread_count_as_it_is_without_threads(monkeypatch, tmp_path):
    # `--threads` help: "default: the current number"; the demo capped it at 64
    from bayesphys import cli

    set_to: list[int] = []
    monkeypatch.setattr("bayesphys._process_state.seed_everything", lambda seed: None)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 128)
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    monkeypatch.setattr(cli, "_demo_component", lambda *args: True)
    args = argparse.Namespace(device="cpu", out=str(tmp_path), seed=0, threads=None, only=[])
    assert cli.cmd_demo(args) == 0
    assert all(n == 128 for n in set_to), set_to
    set_to.clear()
    args.threads = 2  # given: at most the current number
    assert cli.cmd_demo(args) == 0
    assert set_to == [2]


def test_demo_interrupted_in_its_first_component_ends_with_the_interrupt(
    monkeypatch, tmp_path, capsys
):
    # Ctrl-C before any component finished: the empty table raised "TypeError: 'int' object
    # is not iterable" in the interrupt's handler, in place of the interrupt
    from bayesphys import cli

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("bayesphys._process_state.seed_everything", lambda seed: None)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(cli, "_demo_component", interrupted)
    args = argparse.Namespace(device="cpu", out=str(tmp_path), seed=0, threads=None, only=[])
    with pytest.raises(KeyboardInterrupt):
        cli.cmd_demo(args)
    out = capsys.readouterr()
    assert "interrupted during core" in out.err
    assert out.out.splitlines()[0].split() == ["component", "problem", "metric", "value", "target"]
