"""The inverse example (--smoke) and the demo hook."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb, to_rgba

from bayesphys import GaussianPosterior
from bayesphys.inference_data import group_dataset, load_netcdf
from tests.arviz_compat import plot_ppc
from tests.examples.figures import band_edges, capture_bands, capture_figures


def _pair(n: int = 9) -> tuple:
    """Two GaussianPosteriors ``batch_shape (3, 1)``, event ``[n]``: Step 1 wide, the update
    narrower and shifted."""
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(3, 1, n, generator=g, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64)
    before = GaussianPosterior(mean, 0.2 * eye.expand(3, 1, n, n), event_shape=(n,))
    after = GaussianPosterior(mean + 0.1, 0.05 * eye.expand(3, 1, n, n), event_shape=(n,))
    return before, after


def test_band_pair_draws_both_90_bands_with_plot_bands_and_keeps_them_apart(monkeypatch):
    import bayesphys.plots
    from bayesphys.probconserv._demo import STEP1_COLOUR, UPDATE_COLOUR, band_pair

    before, after = _pair()
    x = np.linspace(0.0, 1.0, 9)
    calls = capture_bands(monkeypatch, bayesphys.plots)
    fig, ax = plt.subplots()
    try:
        band_pair(ax, x, before, after, ("Step 1 (GP)", "ProbConserv"), (1, 0))
        assert [c["post"] for c in calls] == [before, after]
        assert all(c["batch_index"] == (1, 0) and c["levels"] == [0.9] for c in calls)
        for post, name in ((before, "Step 1 (GP)"), (after, "ProbConserv")):
            xs, lo, hi = band_edges(ax, f"{name} 90%")  # the member (1, 0)'s 90% interval
            want_lo, want_hi = post.interval(0.9)
            np.testing.assert_allclose(xs, x)
            np.testing.assert_allclose(lo, want_lo[1, 0].numpy(), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(hi, want_hi[1, 0].numpy(), rtol=1e-12, atol=1e-12)
            (mean,) = [ln for ln in ax.lines if ln.get_label() == f"{name} mean"]
            np.testing.assert_allclose(mean.get_ydata(), post.mean[1, 0].numpy())
        bands = {c.get_label(): c for c in ax.collections}
        step1, update = bands["Step 1 (GP) 90%"], bands["ProbConserv 90%"]
        # Step 1: a light fill, no edge line; ProbConserv: hatched edge lines, no fill
        np.testing.assert_allclose(step1.get_facecolor()[0][:3], to_rgb(STEP1_COLOUR))
        assert step1.get_alpha() == 0.35 and step1.get_hatch() is None
        assert step1.get_linewidth()[0] == 0
        assert update.get_hatch() == "///" and update.get_alpha() is None
        assert not np.any(np.atleast_2d(update.get_facecolor())[:, 3] > 0)
        np.testing.assert_allclose(update.get_edgecolor()[0], to_rgba(UPDATE_COLOUR))
        assert update.get_linewidth()[0] == 1
        # both means over both bands, the Step-1 one wider
        means = {ln.get_label(): ln for ln in ax.lines}
        top_band = max(c.get_zorder() for c in ax.collections)
        assert (
            top_band
            < means["Step 1 (GP) mean"].get_zorder()
            < means["ProbConserv mean"].get_zorder()
        )
        assert means["Step 1 (GP) mean"].get_linewidth() == 2.2
        assert means["ProbConserv mean"].get_linewidth() == 1.5
        assert ax.get_legend() is None  # the caller's, with its own entries
    finally:
        plt.close(fig)


def test_stefan_front_example_smoke(tmp_path, capsys, monkeypatch, one_torch_thread):
    import bayesphys.plots
    from bayesphys.examples import stefan_front
    from bayesphys.examples.stefan_front import main

    figures = capture_figures(monkeypatch, stefan_front)
    bands = capture_bands(monkeypatch, bayesphys.plots)
    res = main(["--smoke", "--out", str(tmp_path), "--seed", "0"])
    assert (tmp_path / "stefan_front.png").exists()
    idata = load_netcdf(tmp_path / "stefan_front.nc")
    post = group_dataset(idata, "posterior")
    assert set(post.data_vars) >= {"u", "front", "u_star"}
    assert post["u"].shape[-1] == 201
    # the update pulls the mass to b(t) within the stated tolerance (sd 1e-4)
    assert abs(res["ce_after"]) < 1e-3
    assert abs(res["ce_after"]) < abs(res["ce_before"])
    assert 0.0 < res["front_after"][0] < 1.0
    # posterior predictive of the sensors, beside observed_data, so az.plot_ppc works
    obs = group_dataset(idata, "observed_data")
    for group in ("posterior_predictive", "log_likelihood"):
        ds = group_dataset(idata, group)
        assert set(ds.data_vars) == {"y_sensors"} <= set(obs.data_vars)
        assert ds["y_sensors"].dims == ("chain", "draw", *obs["y_sensors"].dims)
        assert ds["y_sensors"].shape == (1, 100, 100)
        assert bool(np.isfinite(ds["y_sensors"].values).all())
    # the observed readings lie inside the replicates' central 90 % for most sensors (the
    # smoke model's field is wide at the sensors; tests/examples/test_stefan_front_ppc.py
    # checks the sensor noise and the sensor positions on a known field)
    rep = group_dataset(idata, "posterior_predictive")["y_sensors"].values[0]
    lo, hi = np.quantile(rep, [0.05, 0.95], axis=0)
    y = obs["y_sensors"].values
    assert ((lo <= y) & (y <= hi)).mean() > 0.75
    # the pointwise log-likelihood is the Gaussian sensor density (sd 0.01) of the readings
    ll = group_dataset(idata, "log_likelihood")["y_sensors"].values
    assert ll.max() <= -np.log(0.01 * np.sqrt(2 * np.pi))
    assert np.median(ll) > -np.log(0.01 * np.sqrt(2 * np.pi)) - 2.0
    # the front histograms count every draw (fixed bins on [0.1, 0.4] dropped the rest)
    hist = figures[0].axes[1]
    (step1,) = hist.containers  # the Step-1 bars; the ProbConserv histogram is an outline
    before = group_dataset(idata, "prior")["front"].values.ravel()
    assert sum(bar.get_height() for bar in step1) == before.size == 100
    lo, hi = hist.get_xlim()
    fronts = np.concatenate([before, post["front"].values.ravel(), [res["true_front"]]])
    assert lo < fronts.min() and fronts.max() < hi
    assert hist.get_ylabel() == "draws"
    assert hist.get_xlabel() == "front position" and "front-position" in hist.get_title()
    # both posterior means drawn over the bands and named; Step 1 one name in both keys
    field = figures[0].axes[0]
    means = {ln.get_label(): ln for ln in field.get_lines() if ln.get_label().endswith(" mean")}
    assert set(means) == {"Step 1 (GP) mean", "ProbConserv mean"}
    top_band = max(c.get_zorder() for c in field.collections)
    assert all(ln.get_zorder() > top_band and ln.get_linewidth() >= 1.5 for ln in means.values())
    keys = [{t.get_text() for t in a.get_legend().get_texts()} for a in (field, hist)]
    assert "Step 1 (GP)" in keys[1] and "Step 1 (GP) 90%" in keys[0]
    # the two 90% bands are the posteriors' own (batch member (0, 0)), on the field's axes
    assert [c["ax"] for c in bands] == [field, field]
    for call, name in zip(bands, ("Step 1 (GP)", "ProbConserv")):
        _, lo, hi = band_edges(field, f"{name} 90%")
        want_lo, want_hi = (
            b[call["batch_index"]].cpu().numpy() for b in call["post"].interval(0.9)
        )
        np.testing.assert_allclose(lo, want_lo, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hi, want_hi, rtol=1e-10, atol=1e-12)
    matplotlib.use("Agg")
    plot_ppc(idata, num_pp_samples=20)
    plt.close("all")
    with pytest.raises(SystemExit) as err:  # a usage error, before any work
        main(["--smoke", "--out", str(tmp_path), "--front-level", "0.7"])
    assert err.value.code == 2 and "argument --front-level" in capsys.readouterr().err


def test_stefan_front_level_reads_the_jump(tmp_path, one_torch_thread):
    """A level inside the jump is never behind the level-0 front, draw by draw (same seed)."""
    from bayesphys.examples.stefan_front import main

    lvl0 = main(["--smoke", "--out", str(tmp_path / "a"), "--seed", "0"])
    lvl = main(["--smoke", "--out", str(tmp_path / "b"), "--seed", "0", "--front-level", "0.25"])
    assert lvl["front_level"] == 0.25 and lvl0["front_level"] == 0.0
    f0 = group_dataset(load_netcdf(tmp_path / "a" / "stefan_front.nc"), "posterior")["front"]
    f1 = group_dataset(load_netcdf(tmp_path / "b" / "stefan_front.nc"), "posterior")["front"]
    assert bool((f1.values <= f0.values).all())  # first point <= 0.25 comes no later
    assert bool((f1.values < f0.values).any())  # and the level is used: some come earlier
    assert lvl["front_after"][0] <= lvl0["front_after"][0]


@pytest.mark.slow
def test_demo_hook(tmp_path):
    from bayesphys.probconserv._demo import demo

    rows = demo(tmp_path, device=torch.device("cpu"), seed=0)
    assert (tmp_path / "probconserv.nc").exists() and (tmp_path / "probconserv.png").exists()
    ce = {r["metric"]: r["value"] for r in rows}
    assert ce["|CE| ProbConserv"] < 1e-10
    assert all(set(r) == {"component", "problem", "metric", "value", "target"} for r in rows)
