"""bayesphys.plot_populations: the points drawn are the posterior's own draws (per chain, the
chosen coordinates), and bad input is refused by name before anything is drawn."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bayesphys import GaussianPosterior, SamplePosterior, plot_populations  # noqa: E402

pytestmark = pytest.mark.usefixtures("new_figures_closed")


def _draws(chains: int = 3, draws: int = 2, batch: tuple[int, ...] = (4,), n: int = 10, d: int = 3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(chains, draws, *batch, n, d, generator=g, dtype=torch.float64)


def _post(**kw) -> SamplePosterior:
    draws = _draws(**kw)
    return SamplePosterior(draws, event_ndim=2)


def _by_label(ax) -> dict[str, np.ndarray]:
    return {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections}


def test_each_chain_is_drawn_from_its_own_stored_draws_on_the_chosen_coordinates():
    draws = _draws()
    post = SamplePosterior(draws, event_ndim=2)
    truth = torch.randn(7, 3, dtype=torch.float64)
    source = torch.randn(10, 3, dtype=torch.float64)
    ax = plot_populations(post, truth=truth, source=source, batch_index=2, dims=(2, 0))
    got = _by_label(ax)
    assert list(got) == ["source", "chain 0", "chain 1", "chain 2", "truth"]  # truth on top
    for c in range(3):
        want = draws[c, :, 2][..., [2, 0]].reshape(-1, 2).numpy()
        np.testing.assert_array_equal(got[f"chain {c}"], want)
    np.testing.assert_array_equal(got["truth"], truth[:, [2, 0]].numpy())
    np.testing.assert_array_equal(got["source"], source[:, [2, 0]].numpy())
    assert ax.get_xlabel() == "x3" and ax.get_ylabel() == "x1"
    colours = {matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in ax.collections[1:4]}
    assert len(colours) == 3  # one colour per chain


def test_num_samples_keeps_the_first_draws_of_each_chain():
    draws = _draws(draws=5, batch=())
    ax = plot_populations(SamplePosterior(draws, event_ndim=2), num_samples=2)
    got = _by_label(ax)
    np.testing.assert_array_equal(got["chain 1"], draws[1, :2, :, :2].reshape(-1, 2).numpy())


def test_one_chain_is_labelled_as_the_posterior_draws_and_many_chains_share_a_label():
    ax = plot_populations(_post(chains=1, batch=()))
    assert [c.get_label() for c in ax.collections] == ["posterior draws"]
    draws = _draws(chains=10, draws=1, batch=())
    ax = plot_populations(SamplePosterior(draws, event_ndim=2), draw_label="member {chain}")
    # more chains than the palette's 8 colours: pooled, one colour, one label
    assert [c.get_label() for c in ax.collections] == ["member all"]
    np.testing.assert_array_equal(
        ax.collections[0].get_offsets(), draws[..., :2].reshape(-1, 2).numpy()
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["member all"]


def test_another_posterior_is_drawn_from_fresh_draws_that_the_seed_fixes():
    mean = torch.randn(6, 2, dtype=torch.float64)
    post = GaussianPosterior(mean.reshape(-1), 0.01 * torch.eye(12, dtype=torch.float64))
    # a GaussianPosterior over [12] is not a population; one over [6, 2] would be
    with pytest.raises(ValueError, match=r"^post: plot_populations .* event_shape \(12,\)"):
        plot_populations(post)

    class Cloud:  # a posterior over [6, 2] through the protocol's members
        def __init__(self):
            self.inner = post
            self.event_shape = torch.Size([6, 2])
            self.batch_shape = torch.Size([])
            self.device = torch.device("cpu")
            self.mean = mean
            self.variance = torch.full((6, 2), 0.01, dtype=torch.float64)

        def sample(self, shape=(), generator=None):
            return self.inner.sample(shape, generator).reshape(*shape, 6, 2)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    a = _by_label(plot_populations(Cloud(), num_samples=4, seed=3))["posterior draws"]
    b = _by_label(plot_populations(Cloud(), num_samples=4, seed=3))["posterior draws"]
    c = _by_label(plot_populations(Cloud(), num_samples=4, seed=4))["posterior draws"]
    assert a.shape == (24, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.reshape(4, 6, 2).mean(0) - mean.numpy()).max() < 0.3


def test_the_labels_of_given_axes_are_kept_and_a_missing_one_is_filled_in():
    _, ax = plt.subplots()
    ax.set_xlabel("position [mm]")
    plot_populations(_post(batch=()), ax=ax, dims=(0, 2))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("position [mm]", "x3")


def test_it_draws_on_given_axes_with_a_title_and_no_legend():
    fig, (left, right) = plt.subplots(1, 2)
    out = plot_populations(_post(batch=()), ax=right, title="unseen", legend=False)
    assert out is right and not left.collections
    assert right.get_title() == "unseen" and right.get_legend() is None


@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"batch_index": None}, ValueError, r"^batch_index: the posterior is batched"),
        ({"batch_index": 4}, ValueError, r"^batch_index: 4 is out of range"),
        ({"dims": (0, 0)}, ValueError, r"^dims: expected two different coordinates"),
        ({"dims": (0, 3)}, ValueError, r"^dims\[1\]: expected an index in \[-3, 3\)"),
        ({"dims": "01"}, ValueError, r"^dims: expected two coordinate indices"),
        ({"dims": (0, 1.5)}, TypeError, r"^dims\[1\]"),
        ({"num_samples": 0}, ValueError, r"^num_samples"),
        ({"point_size": 0}, ValueError, r"^point_size"),
        ({"alpha": 1.5}, ValueError, r"^alpha"),
        ({"legend": 1}, TypeError, r"^legend: expected True or False"),
        ({"legend": np.bool_(True), "truth": "x"}, TypeError, r"^truth"),
        ({"draw_label": "m {k}"}, ValueError, r"^draw_label: expected a label .*\{chain\}"),
        ({"draw_label": 3}, TypeError, r"^draw_label: expected a str"),
        ({"title": 3}, TypeError, r"^title: expected a str"),
        ({"ax": "left"}, TypeError, r"^ax: expected a matplotlib Axes"),
        ({"truth": torch.zeros(5, 2)}, ValueError, r"^truth: expected points \[m, 3\]"),
        ({"truth": torch.zeros(0, 3)}, ValueError, r"^truth: expected at least one point"),
        ({"source": torch.full((4, 3), float("nan"))}, ValueError, r"^source: expected finite"),
        ({"source": torch.zeros(3)}, ValueError, r"^source: expected 2 dimensions"),
    ],
)
def test_bad_input_is_refused_by_name_before_drawing(kw, err, match):
    kw = {"batch_index": 0, **kw}
    before = plt.get_fignums()
    with pytest.raises(err, match=match):
        plot_populations(_post(), **kw)
    assert plt.get_fignums() == before  # nothing drawn


@pytest.mark.parametrize(
    "post, match",
    [
        (SamplePosterior(torch.randn(1, 4, 10, dtype=torch.float64), event_ndim=1), r"\(10,\)"),
        (SamplePosterior(torch.randn(1, 4, 10, 1, dtype=torch.float64)), r"\(10, 1\)"),
        ("draws", None),
    ],
)
def test_only_posteriors_over_populations_of_two_or_more_coordinates(post, match):
    if match is None:
        with pytest.raises(TypeError, match=r"^post: expected a bayesphys Posterior"):
            plot_populations(post)
    else:
        with pytest.raises(ValueError, match=rf"^post: .*d >= 2, received event_shape {match}"):
            plot_populations(post)


def test_a_numeric_chain_format_is_refused_by_name_when_many_chains_share_a_label():
    # "{chain:d}" passed the label check (formatted with chain=0) and then failed with
    # Python's bare "Unknown format code 'd'" once more than 8 chains share one label, after
    # a figure was opened; with few chains it is a valid label
    before = set(plt.get_fignums())
    with pytest.raises(ValueError, match=r"^draw_label: the 10 chains .* 'member \{chain:d\}'"):
        plot_populations(_post(chains=10, draws=1, batch=()), draw_label="member {chain:d}")
    assert set(plt.get_fignums()) == before  # no figure left open
    ax = plot_populations(_post(chains=3, draws=1, batch=()), draw_label="member {chain:d}")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"member {c}" for c in range(3)]
