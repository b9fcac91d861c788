import pathlib

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

from bayesphys.inference_data import group_dataset, load_netcdf
from tests.examples.figures import (
    assert_noisy_data_on_a_noise_free_band,
    band_edges,
    capture_bands,
    capture_figures,
)


def test_inverse_example_smoke(tmp_path, monkeypatch):
    from bayesphys.examples import gp_pde_inverse

    figures = capture_figures(monkeypatch, gp_pde_inverse)
    calls = capture_bands(monkeypatch, gp_pde_inverse)
    out = gp_pde_inverse.main(["--smoke", "--out", str(tmp_path), "--seed", "0"])
    assert out["D_covered"]
    assert abs(out["D_mean"] - out["D_true"]) < 0.05
    idata = load_netcdf(out["netcdf"])
    post = group_dataset(idata, "posterior")
    assert "D" in post and "u" in post
    assert "y" in group_dataset(idata, "observed_data")
    assert pathlib.Path(out["png"]).stat().st_size > 0
    # the noisy observations with their noise bars, against the band of the noise-free field
    for ax in figures[0].axes[:2]:
        assert_noisy_data_on_a_noise_free_band(ax, 0.05)
    # the bands drawn by plot_bands: the 95% quantile band of the saved draws of u, and the
    # same band less the exact field
    u_draws = post["u"].values.reshape(-1, post["u"].shape[-1])
    xs = post["u"]["x"].values
    want_lo, want_hi = np.quantile(u_draws, [0.025, 0.975], axis=0)
    exact = gp_pde_inverse._exact(torch.tensor(xs)).numpy()
    assert [c["ax"] for c in calls] == figures[0].axes[:2]
    for ax, shift in zip(figures[0].axes[:2], (0.0, exact)):
        got_x, lo, hi = band_edges(ax, "95% band of u (noise-free)")
        np.testing.assert_allclose(got_x, xs, rtol=1e-12)
        np.testing.assert_allclose(lo, want_lo - shift, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(hi, want_hi - shift, rtol=1e-9, atol=1e-12)
    # the posterior of D is the grid density itself (normalised), not a histogram of draws
    d_ax = figures[0].axes[-1]
    assert not d_ax.patches
    (line,) = [li for li in d_ax.get_lines() if li.get_label() == "posterior density"]
    d, dens = line.get_data()
    assert np.sum((dens[1:] + dens[:-1]) / 2 * np.diff(d)) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_demo_hook(tmp_path, monkeypatch):
    import bayesphys._files
    from bayesphys.gp_pde._demo import demo

    figures = capture_figures(monkeypatch, bayesphys._files)
    rows = demo(tmp_path, device=torch.device("cpu"), seed=0)
    err = next(r for r in rows if r["metric"] == "rel_l2")["value"]
    assert err < 1e-5
    assert (tmp_path / "gp_pde.nc").exists() and (tmp_path / "gp_pde.png").exists()
    # sin(100x) drawn at >= 20 points a period (the test grid's 3 a period drew a moire)
    (exact,) = [li for li in figures[0].axes[0].get_lines() if "exact" in li.get_label()]
    assert np.diff(exact.get_xdata()).max() <= 2 * np.pi / 100 / 20
    # the band, thinner than the line, says so in the key; the lower panel names both curves
    keys = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert any(k.startswith("95% band") and "narrower than the line" in k for k in keys)
    assert figures[0].axes[1].get_ylabel() == "|error|, 95% half-width"


def test_demo_exact_solution_shares_the_posteriors_dim(tmp_path, monkeypatch):
    # observed_data.u_exact had a dim of its own (u_exact_dim_0): u - u_exact broadcast to
    # [x, u_exact_dim_0] instead of the pointwise error
    from bayesphys.gp_pde import GPPDESolver
    from bayesphys.gp_pde._demo import demo

    fit = GPPDESolver.fit
    monkeypatch.setattr(GPPDESolver, "fit", lambda self, **kw: fit(self, **{**kw, "steps": 2}))
    demo(tmp_path, device=torch.device("cpu"), seed=0)
    idata = load_netcdf(tmp_path / "gp_pde.nc")
    u = group_dataset(idata, "posterior")["u"]
    exact = group_dataset(idata, "observed_data")["u_exact"]
    assert exact.dims == ("x",) and u.dims == ("chain", "draw", "x")
    np.testing.assert_array_equal(exact["x"].values, u["x"].values)
    np.testing.assert_allclose(exact.values, np.sin(100 * u["x"].values), atol=1e-12)
    assert (u.mean(("chain", "draw")) - exact).dims == ("x",)


def test_demo_band_is_the_zoomed_posteriors_95_interval(tmp_path, monkeypatch):
    # the band and the mean come from plot_bands of the posterior on the zoom grid: the band
    # its 95% interval, the mean dashed over the solid exact line
    import bayesphys._files
    import bayesphys.plots
    from bayesphys.gp_pde import GPPDESolver
    from bayesphys.gp_pde._demo import demo

    fit = GPPDESolver.fit
    monkeypatch.setattr(GPPDESolver, "fit", lambda self, **kw: fit(self, **{**kw, "steps": 2}))
    figures = capture_figures(monkeypatch, bayesphys._files)
    calls = capture_bands(monkeypatch, bayesphys.plots)
    demo(tmp_path, device=torch.device("cpu"), seed=0)
    (call,) = calls
    ax = figures[0].axes[0]
    assert call["ax"] is ax and call["levels"] == (0.95,)
    (label,) = [c.get_label() for c in ax.collections]
    assert label.startswith("95% band") and "narrower than the line" in label
    xs, lo, hi = band_edges(ax, label)
    want_lo, want_hi = call["post"].interval(0.95)
    np.testing.assert_allclose(xs, np.linspace(0.0, 0.5, 401), atol=1e-12)
    np.testing.assert_allclose(lo, want_lo.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hi, want_hi.numpy(), rtol=1e-12, atol=1e-12)
    lines = {li.get_label(): li for li in ax.get_lines()}
    assert lines["GP-HM mean"].get_linestyle() == "--"
    assert lines["exact sin(100x)"].get_linestyle() == "-"
    np.testing.assert_allclose(lines["GP-HM mean"].get_ydata(), call["post"].mean.numpy())


def test_demo_lower_panel_uses_the_package_palette(tmp_path, monkeypatch):
    # the lower panel drew its curves in matplotlib's default C0 / C1, not the Okabe-Ito
    # colours of the upper panel and of the other demos; the half-width takes the band's colour
    import bayesphys._files
    from bayesphys._plotting import OKABE_ITO, line_colour
    from bayesphys.gp_pde import GPPDESolver
    from bayesphys.gp_pde._demo import demo

    fit = GPPDESolver.fit
    monkeypatch.setattr(GPPDESolver, "fit", lambda self, **kw: fit(self, **{**kw, "steps": 2}))
    figures = capture_figures(monkeypatch, bayesphys._files)
    demo(tmp_path, device=torch.device("cpu"), seed=0)
    top, bottom = figures[0].axes[:2]
    lines = {li.get_label(): li for li in bottom.get_lines()}
    assert set(lines) == {"|error|", "95% half-width"}
    palette = {to_hex(c) for c in OKABE_ITO.values()}
    assert {to_hex(li.get_color()) for li in lines.values()} <= palette
    assert to_hex(lines["|error|"].get_color()) == to_hex(line_colour(1))
    (band,) = top.collections
    assert to_hex(lines["95% half-width"].get_color()) == to_hex(band.get_facecolor()[0])
    assert to_hex(band.get_facecolor()[0]) == to_hex(line_colour(0))
