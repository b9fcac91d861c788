"""bayesphys.plot_bands / plot_field: what is drawn is the posterior's own numbers, and bad
input is refused by name before anything is drawn."""

from __future__ import annotations

import matplotlib
import matplotlib.colors

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bayesphys import GaussianPosterior, SamplePosterior, plot_bands, plot_field  # noqa: E402
from tests.examples.figures import band_edges as _edges  # noqa: E402

pytestmark = pytest.mark.usefixtures("new_figures_closed")


def _gaussian(n: int = 7) -> GaussianPosterior:
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    return GaussianPosterior(torch.sin(3 * x), torch.diag(0.05 + x**2))


def _samples(n: int = 7, batch: tuple[int, ...] = ()) -> SamplePosterior:
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(2, 40, *batch, n, generator=g, dtype=torch.float64)
    return SamplePosterior(draws + torch.arange(n, dtype=torch.float64), event_ndim=1)


@pytest.mark.parametrize("make", [_gaussian, _samples])
def test_the_band_edges_are_the_posterior_intervals(make):
    post = make()
    x = np.linspace(2.0, 5.0, 7)
    ax = plot_bands(post, x, levels=(0.5, 0.9))
    for level, label in [(0.5, "50% band"), (0.9, "90% band")]:
        xs, lo, hi = _edges(ax, label)
        want_lo, want_hi = post.interval(level)
        np.testing.assert_allclose(xs, x)
        np.testing.assert_allclose(lo, want_lo.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(hi, want_hi.numpy(), rtol=1e-12, atol=1e-12)
    (mean,) = [ln for ln in ax.lines if ln.get_label() == "posterior mean"]
    np.testing.assert_allclose(mean.get_ydata(), post.mean.numpy())


def test_the_wider_band_is_lighter_and_underneath():
    ax = plot_bands(_gaussian(), levels=(0.9, 0.5, 0.95))
    labels = [c.get_label() for c in ax.collections]
    assert labels == ["95% band", "90% band", "50% band"]  # drawn widest first
    alphas = [c.get_alpha() for c in ax.collections]
    assert alphas[0] < alphas[1] < alphas[2]


def test_defaults_truth_obs_label_and_a_given_axes():
    post = _gaussian(5)
    fig, ax = plt.subplots()
    out = plot_bands(
        post,
        truth=[0.0, 1, 2, 3, 4],
        obs=(np.array([1.0, 3.0]), torch.tensor([0.5, 0.7])),
        ax=ax,
        label="GP",
    )
    assert out is ax
    by_label = {ln.get_label(): ln for ln in ax.lines}
    np.testing.assert_allclose(by_label["GP"].get_xdata(), np.arange(5))  # default x
    np.testing.assert_allclose(by_label["truth"].get_ydata(), [0, 1, 2, 3, 4])
    assert by_label["truth"].get_linestyle() == "--"
    np.testing.assert_allclose(by_label["observations"].get_xdata(), [1.0, 3.0])
    np.testing.assert_allclose(by_label["observations"].get_ydata(), [0.5, 0.7])
    assert {c.get_label() for c in ax.collections} == {"GP: 50% band", "GP: 90% band"}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "GP: 90% band" in legend and "GP" in legend


def test_band_label_names_the_bands():
    ax = plot_bands(_gaussian(), levels=(0.5, 0.95), band_label="{pct}% band of u (noise-free)")
    assert [c.get_label() for c in ax.collections] == [
        "95% band of u (noise-free)",
        "50% band of u (noise-free)",
    ]
    ax = plot_bands(_gaussian(), levels=[0.9], band_label="the band", label="GP")
    assert [c.get_label() for c in ax.collections] == ["the band"]


def test_mean_kwargs_style_the_mean_and_legend_false_leaves_no_legend():
    ax = plot_bands(
        _gaussian(),
        levels=[0.9],
        mean_kwargs={"ls": "--", "lw": 0.8, "zorder": 5},
        legend=False,
    )
    (mean,) = [ln for ln in ax.lines if ln.get_label() == "posterior mean"]
    assert mean.get_linestyle() == "--"
    assert mean.get_linewidth() == 0.8
    assert mean.get_zorder() == 5
    assert ax.get_legend() is None
    # the default: a solid mean of width 1.5 and a legend
    ax = plot_bands(_gaussian(), levels=[0.9])
    (mean,) = [ln for ln in ax.lines if ln.get_label() == "posterior mean"]
    assert (mean.get_linestyle(), mean.get_linewidth()) == ("-", 1.5)
    assert ax.get_legend() is not None


def test_mean_kwargs_linewidth_by_its_full_name_overrides_the_default():
    # "linewidth" and the default's "lw" are one option: not refused as given twice
    ax = plot_bands(_gaussian(), levels=[0.9], mean_kwargs={"linewidth": 2.5})
    (mean,) = [ln for ln in ax.lines if ln.get_label() == "posterior mean"]
    assert mean.get_linewidth() == 2.5


def test_band_kwargs_draw_hatched_bands_with_edge_lines_and_no_fill():
    post = _gaussian()
    hatched = {"facecolor": "none", "hatch": "///", "lw": 1.2, "alpha": None, "zorder": 2}
    ax = plot_bands(post, levels=(0.5, 0.9), color="tab:blue", band_kwargs=hatched)
    blue = matplotlib.colors.to_rgba("tab:blue")
    for level, label in [(0.5, "50% band"), (0.9, "90% band")]:
        (band,) = [c for c in ax.collections if c.get_label() == label]
        assert band.get_hatch() == "///"
        assert not np.any(np.atleast_2d(band.get_facecolor())[:, 3] > 0)  # no fill
        np.testing.assert_allclose(band.get_edgecolor()[0], blue)  # the edges in `color`
        assert band.get_linewidth()[0] == 1.2
        assert band.get_alpha() is None and band.get_zorder() == 2
        _, lo, hi = _edges(ax, label)  # still the posterior's intervals
        want_lo, want_hi = post.interval(level)
        np.testing.assert_allclose(lo, want_lo.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(hi, want_hi.numpy(), rtol=1e-12, atol=1e-12)


def test_band_kwargs_alpha_is_one_for_all_bands_and_the_default_is_a_plain_fill():
    ax = plot_bands(_gaussian(), levels=(0.5, 0.9), band_kwargs={"alpha": 0.35})
    assert [c.get_alpha() for c in ax.collections] == [0.35, 0.35]
    ax = plot_bands(_gaussian(), levels=[0.9], color="tab:orange")
    (band,) = ax.collections
    assert band.get_hatch() is None and band.get_linewidth()[0] == 0
    np.testing.assert_allclose(band.get_facecolor()[0][:3], matplotlib.colors.to_rgb("tab:orange"))


@pytest.mark.parametrize("index", [1, (1,), -2])
def test_batch_index_picks_one_member(index):
    post = _samples(batch=(3,))
    ax = plot_bands(post, batch_index=index, levels=[0.8])
    _, lo, hi = _edges(ax, "80% band")
    want_lo, want_hi = post.interval(0.8)
    np.testing.assert_allclose(lo, want_lo[1].numpy())
    np.testing.assert_allclose(hi, want_hi[1].numpy())
    assert not np.allclose(lo, want_lo[0].numpy())


def test_batch_index_with_two_batch_dims():
    post = _samples(batch=(2, 3))
    ax = plot_bands(post, batch_index=(1, 2))
    (mean,) = [ln for ln in ax.lines if ln.get_label() == "posterior mean"]
    np.testing.assert_allclose(mean.get_ydata(), post.mean[1, 2].numpy())


@pytest.mark.parametrize(
    ("post", "kwargs", "error", "match"),
    [
        ("not a posterior", {}, TypeError, "post: expected a bayesphys Posterior"),
        (torch.zeros(3), {}, TypeError, "received Tensor"),
        ("2d", {}, ValueError, r"event_shape \(3, 4\); use plot_field"),
        ("batched", {}, ValueError, r"batch_index: .*batch_shape \(3,\)"),
        ("batched", {"batch_index": 3}, ValueError, r"out of range for batch_shape \(3,\)"),
        ("batched", {"batch_index": (0, 1)}, ValueError, r"expected 1 index"),
        ("batched", {"batch_index": 0.5}, TypeError, "batch_index: expected an int"),
        ("one", {"batch_index": 0}, ValueError, "batch_index: the posterior is not batched"),
        ("one", {"x": [0.0, 1.0]}, ValueError, r"x: expected 7 values.*received 2"),
        ("one", {"x": np.ones((7, 1))}, ValueError, "x: expected 1 dimensions"),
        ("one", {"x": [0, 1, 2, float("nan"), 4, 5, 6]}, ValueError, "x: expected finite"),
        ("one", {"truth": torch.zeros(6)}, ValueError, r"truth: expected 7 values.*received 6"),
        ("one", {"levels": (0.5, 1.0)}, ValueError, r"levels\[1\]: expected a probability"),
        ("one", {"levels": (0.0,)}, ValueError, r"levels\[0\]: expected a probability"),
        ("one", {"levels": 0.9}, TypeError, "levels: expected a sequence"),
        ("one", {"obs": ([1.0, 2.0], [1.0])}, ValueError, r"obs\[1\]: expected 2 values"),
        ("one", {"obs": [1.0, 2.0, 3.0]}, TypeError, "obs: expected a pair"),
        ("one", {"ax": "axes"}, TypeError, "ax: expected a matplotlib Axes"),
        ("one", {"band_label": "band"}, ValueError, r"band_label: with 2 levels it needs \{pct\}"),
        ("one", {"band_label": 3}, TypeError, "band_label: expected a str"),
        ("one", {"mean_kwargs": "--"}, TypeError, "mean_kwargs: expected a dict"),
        ("one", {"mean_kwargs": {"no_such": 1}}, TypeError, "mean_kwargs: expected matplotlib"),
        ("one", {"mean_kwargs": {"color": "r"}}, ValueError, "mean_kwargs: 'color' is set by"),
        ("one", {"mean_kwargs": {"label": "m"}}, ValueError, "own argument 'label'"),
        ("one", {"mean_kwargs": {"c": "r"}}, ValueError, "mean_kwargs: 'c' is set by"),
        ("one", {"mean_kwargs": {"lw": 1, "linewidth": 2}}, TypeError, "give each option once"),
        ("one", {"band_kwargs": "///"}, TypeError, "band_kwargs: expected a dict"),
        ("one", {"band_kwargs": {"no_such": 1}}, TypeError, "band_kwargs: expected matplotlib"),
        ("one", {"band_kwargs": {"y1": 0.0}}, TypeError, "band_kwargs: expected matplotlib"),
        ("one", {"band_kwargs": {"hatch": 3}}, TypeError, "band_kwargs: expected matplotlib"),
        ("one", {"band_kwargs": {"color": "r"}}, ValueError, "band_kwargs: 'color' is set by"),
        ("one", {"band_kwargs": {"label": "b"}}, ValueError, "own argument 'band_label'"),
        ("one", {"band_kwargs": {"lw": 1, "linewidths": 2}}, TypeError, "band_kwargs: Got both"),
        ("one", {"legend": "no"}, TypeError, "legend: expected True or False"),
    ],
)
def test_plot_bands_refuses_bad_input(post, kwargs, error, match):
    post = {
        "2d": GaussianPosterior(torch.zeros(3, 4), torch.eye(12)) if post == "2d" else None,
        "batched": _samples(batch=(3,)),
        "one": _gaussian(),
    }.get(post, post)
    n_before = len(plt.get_fignums())
    with pytest.raises(error, match=match):
        plot_bands(post, **kwargs)
    assert len(plt.get_fignums()) == n_before  # refused before a figure was opened


def test_a_partial_posterior_is_named_by_its_missing_members():
    class Half:
        event_shape = torch.Size([3])
        batch_shape = torch.Size([])
        mean = torch.zeros(3)

    with pytest.raises(TypeError, match=r"missing the Posterior member\(s\) device"):
        plot_bands(Half())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_posterior_is_drawn_from_the_cpu():
    post = _gaussian().to("cuda")
    ax = plot_bands(post, torch.linspace(0, 1, 7, device="cuda"), truth=post.mean)
    _, lo, _ = _edges(ax, "50% band")
    np.testing.assert_allclose(lo, post.interval(0.5)[0].cpu().numpy())


def _field_post(h: int = 4, w: int = 5, batch: tuple[int, ...] = ()) -> SamplePosterior:
    g = torch.Generator().manual_seed(1)
    draws = torch.randn(1, 30, *batch, h, w, generator=g, dtype=torch.float64)
    return SamplePosterior(draws * torch.linspace(0.5, 2, w, dtype=torch.float64), event_ndim=2)


def test_plot_field_panels_without_truth():
    post = _field_post()
    fig = plot_field(post, extent=(0, 1, 0, 2))
    images = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert [ax.get_title() for ax in images] == ["posterior mean", "posterior sd"]
    assert len(fig.axes) == 4  # two panels, two colorbars
    np.testing.assert_allclose(images[0].images[0].get_array(), post.mean.numpy())
    np.testing.assert_allclose(images[1].images[0].get_array(), post.stddev.numpy())
    assert images[0].images[0].get_extent() == [0, 1, 0, 2]


def test_plot_field_with_truth_draws_the_standardised_error():
    post = _field_post(batch=(2,))
    truth = torch.full((4, 5), 0.1, dtype=torch.float64)
    fig = plot_field(post, truth=truth, batch_index=1, cmap="magma")
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    titles = [ax.get_title() for ax in panels]
    assert titles == ["posterior mean", "posterior sd", "truth", "(mean - truth) / sd"]
    assert len(fig.axes) == 8  # four panels, four colorbars
    z = panels[3].images[0]
    want = (post.mean[1] - truth) / post.stddev[1]
    np.testing.assert_allclose(np.asarray(z.get_array()), want.numpy(), rtol=1e-12)
    lo, hi = z.get_clim()
    assert lo == -hi and hi >= 3  # centred at 0
    assert z.get_cmap().name == "RdBu_r"
    assert panels[0].images[0].get_cmap().name == "magma"
    # the mean and the truth share one colour scale
    assert panels[0].images[0].get_clim() == panels[2].images[0].get_clim()


def test_plot_field_z_scale_follows_a_large_error_and_blanks_sd_zero():
    draws = torch.randn(1, 200, 2, 3, generator=torch.Generator().manual_seed(2))
    draws[..., 1, 2] = 0.5  # one point the draws agree on: sd 0
    post_2d = SamplePosterior(draws.double())
    truth = torch.tensor([[10.0, 0, 0], [0, 0, 0]], dtype=torch.float64)
    fig = plot_field(post_2d, truth=truth)
    z = [ax for ax in fig.axes if ax.get_title() == "(mean - truth) / sd"][0].images[0]
    arr = np.ma.getdata(z.get_array())
    assert np.isnan(arr[1, 2])  # sd 0: blank
    assert z.get_clim()[1] == pytest.approx(np.nanmax(np.abs(arr)))
    assert z.get_clim()[1] > 3


def test_plot_field_draws_on_given_axes():
    fig, axes = plt.subplots(2, 2)
    out = plot_field(_field_post(), truth=torch.zeros(4, 5), axes=axes)
    assert out is fig
    assert [ax.get_title() for ax in axes.ravel()] == [
        "posterior mean",
        "posterior sd",
        "truth",
        "(mean - truth) / sd",
    ]


@pytest.mark.parametrize(
    ("post", "kwargs", "error", "match"),
    [
        (object(), {}, TypeError, "post: expected a bayesphys Posterior"),
        ("1d", {}, ValueError, r"event_shape \(7,\); use plot_bands"),
        ("batched", {}, ValueError, r"batch_index: .*batch_shape \(2,\)"),
        ("one", {"truth": torch.zeros(5, 4)}, ValueError, r"truth: expected shape \(4, 5\)"),
        ("one", {"truth": torch.full((4, 5), float("nan"))}, ValueError, "truth: expected finite"),
        ("one", {"extent": (0, 1, 0)}, ValueError, "extent: expected 4 numbers"),
        ("one", {"extent": (0, 1, 0, float("inf"))}, ValueError, r"extent\[3\]"),
        ("one", {"extent": "0 1 0 1"}, TypeError, "extent: expected"),
        ("one", {"axes": [None, None]}, TypeError, "axes: expected matplotlib Axes"),
        ("one", {"cmap": "no-such-map"}, ValueError, "cmap: expected a matplotlib colour map"),
    ],
)
def test_plot_field_refuses_bad_input(post, kwargs, error, match):
    post = (
        {"1d": _gaussian(), "batched": _field_post(batch=(2,)), "one": _field_post()}.get(
            post, post
        )
        if isinstance(post, str)
        else post
    )
    n_before = len(plt.get_fignums())
    with pytest.raises(error, match=match):
        plot_field(post, **kwargs)
    assert len(plt.get_fignums()) == n_before


def test_plot_field_refuses_the_wrong_number_of_axes():
    _, axes = plt.subplots(1, 3)
    with pytest.raises(ValueError, match=r"axes: expected 4 Axes .*received 3"):
        plot_field(_field_post(), truth=torch.zeros(4, 5), axes=axes)


def test_observations_with_noise_bars_are_drawn_in_the_palettes_vermillion():
    """The examples' observations (with their noise bars) were matplotlib's "C3" red, outside
    the Okabe-Ito palette of every other figure; plot_bands draws its observations in
    vermillion."""
    from bayesphys._plotting import OKABE_ITO, plot_observations

    fig, ax = plt.subplots()
    bars = plot_observations(ax, np.arange(3.0), np.ones(3), 0.1)
    want = matplotlib.colors.to_rgba(OKABE_ITO["vermillion"])
    assert OKABE_ITO["vermillion"] == "#D55E00"
    assert matplotlib.colors.to_rgba(bars.lines[0].get_color()) == want
    assert tuple(bars.lines[2][0].get_colors()[0]) == want  # the noise bars
    plt.close(fig)
