"""plot_bands / plot_field read on their own: labelled axes and colorbars on a figure they
open, a caller's axes left as the caller set them, a point with sd 0 told apart from a
perfect fit, and a single point drawn visibly."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bayesphys import GaussianPosterior, plot_bands, plot_field  # noqa: E402
from tests.examples.figures import band_edges  # noqa: E402

pytestmark = pytest.mark.usefixtures("new_figures_closed")


def _field(mean: torch.Tensor, var: torch.Tensor, **kw) -> GaussianPosterior:
    mean = mean.double()
    return GaussianPosterior(
        mean, torch.diag(var.double().reshape(-1)), event_shape=mean.shape, **kw
    )


def _panels(fig) -> dict:
    """The image panels of ``fig`` by title."""
    return {ax.get_title(): ax for ax in fig.axes if ax.images and ax.get_title()}


def _colorbar_labels(fig) -> dict:
    """Each titled panel's colorbar label, by the panel's title."""
    return {t: ax.images[0].colorbar.ax.get_ylabel() for t, ax in _panels(fig).items()}


def test_a_point_with_sd_zero_is_grey_not_the_white_of_a_perfect_fit():
    mean = torch.arange(6.0).reshape(2, 3)
    var = torch.full((6,), 0.04)
    var[4] = 0.0  # the posterior is sure of point (1, 1) and wrong there
    fig = plot_field(_field(mean, var), truth=mean + 0.5)
    z = _panels(fig)["(mean - truth) / sd"].images[0]
    assert np.ma.getmaskarray(z.get_array())[1, 1] or np.isnan(z.get_array()[1, 1])
    bad = np.array(z.get_cmap().get_bad())
    centre = np.array(z.get_cmap()(0.5))
    assert bad[3] == 1.0  # opaque: not the axes' white background showing through
    assert np.abs(bad[:3] - centre[:3]).max() > 0.3  # apart from z = 0's near-white
    assert "grey: sd = 0" in _colorbar_labels(fig)["(mean - truth) / sd"]


def test_an_sd_of_zero_everywhere_has_no_negative_sd_on_its_colour_scale():
    fig = plot_field(_field(torch.ones(2, 3), torch.zeros(6)))
    sd = _panels(fig)["posterior sd"].images[0]
    assert sd.get_clim()[0] == 0.0 < sd.get_clim()[1]


def test_without_sd_zero_the_z_colorbar_has_no_grey_note():
    mean = torch.arange(6.0).reshape(2, 3)
    fig = plot_field(_field(mean, torch.full((6,), 0.04)), truth=mean)
    assert _colorbar_labels(fig)["(mean - truth) / sd"] == "z"


def test_every_colorbar_names_its_quantity():
    mean = torch.arange(6.0).reshape(2, 3)
    fig = plot_field(_field(mean, torch.full((6,), 0.04), export_name="c"), truth=mean)
    assert _colorbar_labels(fig) == {
        "posterior mean": "E[c]",
        "posterior sd": "sd[c]",
        "truth": "true c",
        "(mean - truth) / sd": "z",
    }
    # each label on its colorbar's image side, not beside the next panel's axis
    for ax in _panels(fig).values():
        assert ax.images[0].colorbar.ax.yaxis.get_label_position() == "left"


@pytest.mark.parametrize(
    ("extent", "xlabel", "ylabel"), [(None, "column j", "row i"), ((0, 2, 0, 1), "x", "y")]
)
def test_plot_field_labels_the_axes_of_its_own_figure(extent, xlabel, ylabel):
    fig = plot_field(_field(torch.zeros(3, 4), torch.ones(12)), extent=extent)
    first, second = _panels(fig).values()
    assert (first.get_xlabel(), first.get_ylabel()) == (xlabel, ylabel)
    assert second.get_xlabel() == xlabel


def test_plot_field_leaves_the_labels_of_given_axes():
    fig, axes = plt.subplots(1, 2)
    axes[0].set_xlabel("")
    axes[1].set_ylabel("depth [mm]")
    plot_field(_field(torch.zeros(3, 4), torch.ones(12)), axes=axes)
    assert (axes[0].get_xlabel(), axes[0].get_ylabel()) == ("", "")
    assert axes[1].get_ylabel() == "depth [mm]"


@pytest.mark.parametrize(("x", "xlabel"), [(None, "index i"), (np.linspace(0, 1, 5), "x")])
def test_plot_bands_labels_the_axes_of_its_own_figure(x, xlabel):
    post = GaussianPosterior(torch.zeros(5).double(), torch.eye(5).double(), export_name="T")
    ax = plot_bands(post, x)
    assert (ax.get_xlabel(), ax.get_ylabel()) == (xlabel, "T")


def test_plot_bands_leaves_a_given_axes_labels_limits_and_title():
    _, ax = plt.subplots()
    ax.set(xlabel="t [days]", ylabel="", title="mine", xlim=(-5.0, 20.0))
    plot_bands(GaussianPosterior(torch.zeros(5).double(), torch.eye(5).double()), ax=ax)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("t [days]", "", "mine")
    assert ax.get_xlim() == (-5.0, 20.0)


@pytest.mark.parametrize("x", [None, [1e8], [-3e-8]])
def test_a_single_point_is_drawn_as_boxes_with_the_mean_across(x):
    post = GaussianPosterior(torch.tensor([2.0], dtype=torch.float64), torch.eye(1).double())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib warning either
        ax = plot_bands(post, x, truth=[2.5])
    x0 = 0.0 if x is None else x[0]
    for level in (0.5, 0.9):
        xs, lo, hi = band_edges(ax, f"{100 * level:g}% band")
        assert xs.max() - xs.min() == pytest.approx(0.8)  # a box of some width, not a line
        assert xs.min() < x0 < xs.max()
        want_lo, want_hi = post.interval(level)
        np.testing.assert_allclose(lo, float(want_lo[0]))
        np.testing.assert_allclose(hi, float(want_hi[0]))
    lines = {ln.get_label(): ln for ln in ax.lines}
    for label, value in (("posterior mean", 2.0), ("truth", 2.5)):
        xs, ys = lines[label].get_xdata(), lines[label].get_ydata()
        assert len(xs) == 2 and xs[1] - xs[0] == pytest.approx(0.8)  # a visible segment
        np.testing.assert_allclose(ys, value)


def test_unsorted_coordinates_are_drawn_in_their_order():
    x = np.array([0.7, 0.1, 0.4, 0.9, 0.0])  # e.g. scattered sensor positions
    mean = torch.tensor(x**2, dtype=torch.float64)
    post = GaussianPosterior(mean, torch.diag(0.01 + mean))
    ax = plot_bands(post, x, truth=mean + 0.1, levels=(0.9,))
    order = np.argsort(x)
    lines = {ln.get_label(): ln for ln in ax.lines}
    for label, want in (("posterior mean", x**2), ("truth", x**2 + 0.1)):
        np.testing.assert_allclose(lines[label].get_xdata(), x[order])  # no zigzag
        np.testing.assert_allclose(lines[label].get_ydata(), want[order])
    lo, hi = post.interval(0.9)
    # the band's polygon runs along the lower edge in x's order, then back along the upper
    verts = ax.collections[0].get_paths()[0].vertices
    n = len(x)
    np.testing.assert_allclose(verts[1 : n + 1], np.c_[x[order], lo.numpy()[order]])
    np.testing.assert_allclose(verts[n + 2 : 2 * n + 2], np.c_[x[order], hi.numpy()[order]][::-1])


def test_a_loop_of_plots_on_given_axes_opens_no_figure():
    fig, axes = plt.subplots(1, 3)
    before = plt.get_fignums()
    line = GaussianPosterior(torch.zeros(4).double(), torch.eye(4).double())
    field = _field(torch.zeros(2, 3), torch.zeros(6))
    for _ in range(50):
        plot_bands(line, ax=axes[0], legend=False)
        plot_field(field, axes=axes[1:])
    assert plt.get_fignums() == before
    plt.close(fig)
