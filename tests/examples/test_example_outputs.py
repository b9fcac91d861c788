"""Every example writes to ``bayesphys-out/<its name>`` by default (said in ``--help``), and a
figure whose save fails leaves the previous file at its path whole."""

from __future__ import annotations

import math
import warnings

import matplotlib.figure
import numpy as np
import pytest
import torch

from bayesphys._demo_core import demo
from bayesphys.examples import available, load
from bayesphys.examples.stefan_front import _front_bins, _u_star_from_front
from bayesphys.problems.gpme import stefan_front


@pytest.mark.parametrize("name", sorted(available()))
def test_default_out_is_bayesphys_out_and_the_examples_name(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # on one line (argparse wraps at a hyphen)
    with pytest.raises(SystemExit) as exc:
        load(name).main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"output folder; default: bayesphys-out/{name.replace('-', '_')}" in text


def test_load_refuses_an_unknown_example_and_available_marks_one_that_cannot_import(
    monkeypatch,
):
    import importlib

    assert load("gp-pde-inverse") is load("gp_pde_inverse")  # dashes or underscores
    with pytest.raises(ValueError, match=r"^EXAMPLE: unknown example 'gp-pde'; available: \["):
        load("gp-pde")
    real = importlib.import_module

    def import_module(name, *a):
        if name == "bayesphys.examples.glioma":  # e.g. a component's dependency missing
            raise ImportError("No module named 'a_missing_dependency'")
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", import_module)
    names = available()
    assert names["glioma"] == "(unavailable: No module named 'a_missing_dependency')"
    assert names["cohort"] and not names["cohort"].startswith("(unavailable")


def test_a_failing_figure_save_leaves_the_previous_figure(tmp_path, monkeypatch):
    png = tmp_path / "core.png"
    png.write_bytes(b"the previous figure")

    def broken(self, fname, **kw):  # writes part of the file, then fails (a full disk)
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(OSError, match="core.png"):
        demo(tmp_path, device=torch.device("cpu"))
    assert png.read_bytes() == b"the previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["core.nc", "core.png"]  # no temp file


def test_the_core_demo_figure_shows_noisy_data_with_noise_bars(tmp_path, monkeypatch):
    import bayesphys._demo_core
    from tests.examples.figures import assert_noisy_data_on_a_noise_free_band, capture_figures

    figures = capture_figures(monkeypatch, bayesphys._demo_core)
    demo(tmp_path, device=torch.device("cpu"))
    (ax,) = figures[0].axes
    assert_noisy_data_on_a_noise_free_band(ax, 0.1)
    assert {"posterior mean", "truth"} <= {line.get_label() for line in ax.lines}
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "u(x)")
    assert ax.get_title()


def test_stefan_front_bins_hold_every_draw_at_a_bin_centre():
    dx = 0.005
    values = np.array([0.12, 0.3, 0.45, 0.6, 0.2375])  # grid points past 0.4, and a true front
    edges = _front_bins(values, dx)
    assert np.histogram(values, edges)[0].sum() == len(values)
    assert np.allclose(np.diff(edges), dx)
    grid = values[:4]  # each grid point sits mid-bin, not on an edge
    k = np.searchsorted(edges, grid) - 1
    assert np.allclose(grid - edges[k], dx / 2)


@pytest.mark.parametrize("u_star", [0.05, 0.1, 0.15, 0.6, 0.97, 0.99])
def test_stefan_front_u_star_inverts_the_front_on_all_of_0_1(u_star):
    # --u-star takes (0, 1): a front outside the old table's [0.2, 0.95] came back clamped
    # to an end (a --u-star 0.1 run reported its u* draws piled at 0.2)
    t = 0.05
    front = float(stefan_front(t, u_star))
    back = _u_star_from_front(np.array([front, front]), t)
    assert back.shape == (2,)
    assert np.allclose(back, u_star, rtol=0, atol=1e-9)


def test_cohort_model_log_marginal_likelihood_is_a_float_as_annotated():
    import json

    from bayesphys.examples.cohort import LinearGaussianModel

    x = torch.linspace(0, 1, 21, dtype=torch.float64)
    idx = torch.tensor([2, 9, 15])
    model = LinearGaussianModel({"x": x, "idx": idx, "y": torch.sin(3 * x[idx])}, seed=0)
    lml = model.log_marginal_likelihood()
    assert type(lml) is float and math.isfinite(lml)
    json.dumps({"lml": lml})  # was a 0-d tensor: not JSON serialisable


def test_cohort_problems_and_model_refuse_what_they_cannot_build():
    from bayesphys.examples.cohort import LinearGaussianModel, make_cohort

    for m in (0, 102):
        with pytest.raises(ValueError, match=rf"^m: expected 1 <= m <= n = 101, received {m}"):
            make_cohort(2, m=m)
    (p,) = make_cohort(1, n=11, m=11).values()
    assert torch.equal(p["idx"], torch.arange(11))  # m = n: every point a sensor
    with pytest.raises(
        ValueError, match=r"^problem: expected key 'y', received keys \['x', 'idx'\]"
    ):
        LinearGaussianModel({"x": p["x"], "idx": p["idx"]})


def test_poisson_coefficient_bars_of_collapsed_importance_draws_are_drawable():
    import matplotlib.pyplot as plt

    from bayesphys.examples.poisson_coefficient import _mean_and_interval_bars

    # importance weights collapsed onto one proposal: 200 copies of one z, whose mean is
    # a rounding step off the value (0.9401060036131061 is such a value)
    values = torch.tensor([0.9401060036131061, -0.08123411374509826, 0.5], dtype=torch.float64)
    draws = values.expand(200, -1).clone()
    mean, bars = _mean_and_interval_bars(draws)
    assert bars.shape == (2, 3) and (bars >= 0).all()
    assert np.allclose(mean, values.numpy()) and np.allclose(bars, 0.0, atol=1e-12)
    fig, ax = plt.subplots()
    try:
        ax.errorbar(np.arange(3), mean, yerr=bars, fmt="o")  # refused a negative length
    finally:
        plt.close(fig)
    # ordinary draws: the distances from the mean to the 2.5 % and 97.5 % quantiles
    spread = torch.randn(400, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, bars = _mean_and_interval_bars(spread)
    lo, hi = np.quantile(spread.numpy(), [0.025, 0.975], 0)
    assert np.allclose(bars, [mean - lo, hi - mean])


def test_glioma_truth_line_lists_every_focus_of_a_multifocal_tumour(tmp_path, capsys):
    """With --foci 2 the summary listed x0[0], x0[1], ... but 'truth:' the first focus alone."""
    from bayesphys.examples import glioma

    res = glioma.main(["--smoke", "--foci", "2", "--out", str(tmp_path)])
    foci = res["true_foci"]
    assert len(foci) == 2 and foci[0] == [res["truth"]["x0"], res["truth"]["y0"]]
    truth = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("truth:"))
    for i, name in enumerate(("x0", "y0")):
        assert f"{name}=[{foci[0][i]:.4g}, {foci[1][i]:.4g}]" in truth
    # one focus: the plain value, as before
    one = glioma._truth_line({"dw": 0.2, "x0": 60.2249, "y0": 84.29}, [[60.2249, 84.29]])
    assert one == "dw=0.2, x0=60.22, y0=84.29"


def test_poisson_coefficient_warns_when_importance_sampling_collapses(tmp_path):
    """An ESS of ~2 made the z posterior a near point mass, reported only as importance_ess."""
    from bayesphys.examples import poisson_coefficient as pc

    argv = ["--smoke", "--steps", "1", "--proposals", "60", "--out", str(tmp_path)]
    with pytest.warns(RuntimeWarning, match=r"importance sampling collapsed.*--proposals"):
        res = pc.main(argv)
    assert res["importance_ess"] < pc.ESS_WARN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pc._warn_if_collapsed(pc.ESS_WARN, 400)  # at the threshold: no warning


def test_poisson_coefficient_names_proposals_all_outside_the_prior(tmp_path):
    """With every proposal outside [-1, 1]^5 the weights were all 0 and torch.multinomial
    raised 'invalid multinomial distribution'."""
    argv = ["--smoke", "--steps", "1", "--proposals", "1", "--out", str(tmp_path)]
    with pytest.raises(RuntimeError, match=r"none of the 1 proposals lies in the prior"):
        load("poisson-coefficient").main(argv)


def test_run_prints_an_actionable_failure_without_traceback(tmp_path, capsys):
    """`bayesphys run poisson-coefficient --proposals 1` (and the script) ended in a
    traceback for a failure whose message says what to change."""
    from bayesphys.cli import main as cli_main
    from bayesphys.examples._args import ExampleFailed, run_script

    argv = ["run", "poisson-coefficient", "--smoke", "--out", str(tmp_path)]
    assert cli_main([*argv, "--steps", "1", "--proposals", "1"]) == 1
    err = capsys.readouterr().err
    assert "run poisson-coefficient: importance sampling: none of the 1 proposals" in err
    assert "Traceback" not in err

    def fails():
        raise ExampleFailed("draw more proposals (--proposals)")

    with pytest.raises(SystemExit, match=r"^error: draw more proposals") as exc:
        run_script(fails)
    assert exc.value.code == "error: draw more proposals (--proposals)"  # exit status 1
    assert run_script(lambda: {"ok": 1}) == {"ok": 1}
