"""``plot_component`` draws outside pyplot: the caller's backend and figure registry stay as
they were (it switched the process to Agg and leaked its figure when saving failed)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from bayesphys.diagnostics.plots import component_figure, plot_component
from bayesphys.diagnostics.result import _p_text, analyse
from bayesphys.diagnostics.simulate import SimulationRecord


def _result():
    g = torch.Generator().manual_seed(0)
    record = SimulationRecord(
        names=["a", "b"],
        truth=torch.randn(20, 2, generator=g, dtype=torch.float64),
        draws=torch.randn(20, 30, 2, generator=g, dtype=torch.float64),
    )
    return analyse(record)


def test_the_figure_is_written_and_the_backend_kept(tmp_path):
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        path = plot_component("core", [], [_result()], tmp_path / "cal.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []


def test_a_failed_save_leaves_no_figure_open(tmp_path):
    import matplotlib.pyplot as plt

    (tmp_path / "notadir").write_text("x")
    with pytest.raises(OSError):
        plot_component("core", [], [_result()], tmp_path / "notadir" / "cal.png")
    assert plt.get_fignums() == []


def test_rows_without_results_get_a_bar_chart(tmp_path):
    rows = [{"problem": "p", "method": "m", "metrics": {"coverage90": 0.9}}]
    path = plot_component("hook", rows, [], tmp_path / "bars.png")
    assert path.stat().st_size > 0


def _method_lines(ax, methods):
    by_label = {ln.get_label(): ln for ln in ax.get_lines()}
    return [next(ln for lab, ln in by_label.items() if lab.startswith(m)) for m in methods]


def test_each_method_has_its_own_marker_and_the_first_is_widest_at_the_back():
    # three methods of identical results: every curve coincides, none may hide another
    results = [_result() for _ in range(3)]
    for j, res in enumerate(results):
        res.method = f"m{j}"
    fig = component_figure("core", [], results)
    axes = fig.axes
    for ax in (axes[3], axes[4]):  # coverage, TARP
        lines = _method_lines(ax, ["m0", "m1", "m2"])
        markers = [ln.get_marker() for ln in lines]
        assert len(set(markers)) == 3
        widths = [ln.get_linewidth() for ln in lines]
        assert widths[0] > widths[1] > widths[2]
        zorders = [ln.get_zorder() for ln in lines]
        assert zorders[0] < zorders[1] < zorders[2]
        assert all(ln.get_markerfacecolor() == "none" for ln in lines)


def test_pit_panels_share_one_symmetric_range_and_the_title_gives_the_sizes():
    results = [_result(), _result()]
    fig = component_figure("core", [], results)
    lims = {tuple(round(v, 12) for v in ax.get_ylim()) for ax in fig.axes[:2]}
    assert len(lims) == 1
    lo, hi = lims.pop()
    assert lo == -hi
    title = fig.get_suptitle()
    assert "20 simulations" in title and "30 posterior draws" in title


def test_the_coverage_target_box_is_in_data_coordinates():
    fig = component_figure("core", [], [_result()])
    (box,) = [c for c in fig.axes[1].collections if c.get_label() == "target at 90 %"]
    xy = box.get_paths()[0].vertices
    assert xy[:, 0].min() == pytest.approx(0.88) and xy[:, 0].max() == pytest.approx(0.92)
    assert xy[:, 1].min() == pytest.approx(0.85) and xy[:, 1].max() == pytest.approx(0.95)


def test_an_underflowed_sbc_pvalue_reads_p_below_1e300():
    assert _p_text(0.0) == "p<1e-300"
    assert _p_text(0.5) == "p=0.5"


def test_the_bar_chart_marks_missing_values_and_spans_0_to_1():
    rows = [
        {"problem": "p", "method": "m", "metrics": {"coverage90": 0.9}},
        {"problem": "p", "method": "broken", "metrics": {}},
    ]
    fig = component_figure("hook", rows, [])
    ax = fig.axes[0]
    assert ax.get_ylim() == (0, 1)
    assert [t.get_text() for t in ax.texts] == ["n/a"]
    tick = ax.get_xticklabels()[0]
    assert tick.get_rotation() == 30 and tick.get_ha() == "right"


def test_the_pit_ecdf_plot_refuses_what_is_no_axes_and_draws_on_the_one_given():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from bayesphys.diagnostics import plot_pit_ecdf

    res = _result()
    fig = Figure()
    for bad in (fig, fig.subplots(1, 2), "ax"):
        # a Figure or plt.subplots' array of axes failed deep in matplotlib, after the band
        with pytest.raises(TypeError, match="ax: expected a matplotlib Axes"):
            plot_pit_ecdf(res.ranks, res.record.n_draws, ax=bad)
        with pytest.raises(TypeError, match="ax: expected a matplotlib Axes"):
            res.plot(ax=bad)
    before = plt.get_fignums()
    ax = Figure().subplots()
    assert plot_pit_ecdf(res.ranks, res.record.n_draws, ax=ax) is ax
    assert res.plot(ax=ax) is ax
    assert ax.get_xlabel() == "fractional rank z" and ax.get_legend() is not None
    assert plt.get_fignums() == before  # no pyplot figure opened beside the given axes


def test_summaries_past_the_eighth_keep_their_own_line_style():
    # the eight colours cycled: summaries 0 and 8 were two solid lines of one colour
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    from bayesphys.diagnostics import plot_pit_ecdf

    k = 17
    ranks = torch.randint(0, 21, (30, k), generator=torch.Generator().manual_seed(0))
    ax = plot_pit_ecdf(ranks, 20, [f"s{j}" for j in range(k)], ax=Figure().subplots())
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("s")]
    assert len(lines) == k
    styles = {(to_hex(ln.get_color()), ln.get_linestyle()) for ln in lines}
    assert len(styles) == k


def test_methods_past_the_eighth_keep_their_own_colour_and_marker_pair():
    from bayesphys._plotting import method_style

    n = 20
    pairs = {(s["color"], s["marker"]) for s in (method_style(j, n) for j in range(n))}
    assert len(pairs) == n


@pytest.mark.parametrize("row", [{"method": "m", "metrics": {}}, {"problem": "p"}, ("p", "m")])
def test_a_row_without_problem_or_method_is_named(tmp_path, row):
    """A bare row (no results) without 'problem' or 'method' failed in the drawing with a
    bare KeyError; it is refused by name before anything is drawn or written."""
    good = {"problem": "p", "method": "m", "metrics": {"coverage90": 0.9}}
    with pytest.raises(ValueError, match="rows: expected dicts with 'problem' and 'method', row 1"):
        component_figure("x", [good, row], [])
    with pytest.raises(ValueError, match="row 1"):
        plot_component("x", [good, row], [], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("rows", [[], ()])
def test_no_rows_and_no_results_is_refused_by_name(tmp_path, rows):
    """No rows and no results drew an empty chart under the component's title (and saved it);
    it is refused, naming the argument, before anything is drawn or written."""
    with pytest.raises(ValueError, match=r"rows: expected at least one row .*'x'.*no results"):
        component_figure("x", rows, [])
    with pytest.raises(ValueError, match="rows: expected at least one row"):
        plot_component("x", rows, [], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("n_draws", [1, 2, 11])
def test_every_step_of_the_pit_ecdf_band_is_a_full_step_wide(n_draws):
    """The band of z_m = m / (L + 1) holds over [z_m - h/2, z_m + h/2], h = 1 / (L + 1): the
    first and last steps were half as wide, and with one draw (L = 1) the band had no width."""
    from matplotlib.figure import Figure

    from bayesphys.diagnostics import plot_pit_ecdf
    from bayesphys.diagnostics.pit_ecdf import ecdf_band

    ranks = torch.randint(0, n_draws + 1, (20, 1), generator=torch.Generator().manual_seed(0))
    ax = plot_pit_ecdf(ranks, n_draws, ax=Figure().subplots())
    (band,) = ax.collections
    xs = band.get_paths()[0].vertices[:, 0]
    h = 1.0 / (n_draws + 1)
    assert xs.min() == pytest.approx(h / 2) and xs.max() == pytest.approx(1 - h / 2)
    # the values are the band's own at each z_m: the lower edge at the first and last step
    z = np.arange(1, n_draws + 1) * h
    lo, _, _ = ecdf_band(20, z, 0.95)
    verts = band.get_paths()[0].vertices
    first = verts[np.isclose(verts[:, 0], h / 2)][:, 1]
    last = verts[np.isclose(verts[:, 0], 1 - h / 2)][:, 1]
    assert min(first) == pytest.approx(lo[0] - z[0])
    assert min(last) == pytest.approx(lo[-1] - z[-1])


def test_axes_of_the_caller_keep_their_labels_and_title():
    # plot_pit_ecdf and CalibrationResult.plot replaced what the caller had set on its axes
    from matplotlib.figure import Figure

    from bayesphys.diagnostics import plot_pit_ecdf

    res = _result()
    for draw in (
        lambda ax: plot_pit_ecdf(res.ranks, res.record.n_draws, ax=ax, title="default"),
        lambda ax: res.plot(ax=ax),
    ):
        ax = Figure().subplots()
        ax.set(xlabel="rank of D", ylabel="ECDF gap", title="patient 7")
        assert draw(ax) is ax
        assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
            "rank of D",
            "ECDF gap",
            "patient 7",
        )
        fresh = draw(Figure().subplots())  # empty axes get the defaults
        assert fresh.get_xlabel() == "fractional rank z" and fresh.get_title()
