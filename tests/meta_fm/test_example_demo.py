import math
import re

import numpy as np
import pytest
import scipy.stats
import torch

from bayesphys.inference_data import group_dataset, load_netcdf
from tests.examples.figures import capture_figures


def test_example_smoke(tmp_path, monkeypatch):
    from bayesphys.examples import population_response
    from bayesphys.examples.population_response import DESCRIPTION, main
    from bayesphys.meta_fm import MFMEnsemble

    # record the ensemble's uncertainty call, to recompute the reported summaries from it
    calls = []
    original = MFMEnsemble.uncertainty

    def spy(self, cal, test, **kw):
        out = original(self, cal, test, **kw)
        calls.append((self, cal, test, kw, out))
        return out

    monkeypatch.setattr(MFMEnsemble, "uncertainty", spy)
    figures = capture_figures(monkeypatch, population_response)
    assert DESCRIPTION
    res = main(["--smoke", "--out", str(tmp_path), "--seed", "0"])
    assert (tmp_path / "population_response.png").exists()
    # equal axes, named; the true target drawn last (on top); one legend, off the panels
    (fig,) = figures
    assert fig.legends and len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_aspect() == 1.0 and (ax.get_xlabel(), ax.get_ylabel()) == ("x1", "x2")
        assert ax.collections[-1].get_label() == "true T=1" and ax.get_legend() is None
        assert re.fullmatch(
            r"W2 to true T=1: prediction \d+\.\d\d,\n"
            r"identity \d+\.\d\d; ensemble spread \d+\.\d\d",
            ax.get_title(),
        )
        assert ax.collections[0].get_label() == "source (T=0)"
        # drawn by bayesphys.plot_populations from the ensemble posterior: a colour per member
        labels = [c.get_label() for c in ax.collections]
        assert labels == ["source (T=0)", "member 0", "member 1", "true T=1"]
    # the identity baseline in each title is the W2 of the source to the true target
    ident = [float(ax.get_title().split("identity ")[1].split(";")[0]) for ax in fig.axes]
    assert np.mean(ident) == pytest.approx(res["w2_identity_mean"], abs=0.01)
    idata = load_netcdf(tmp_path / "population_response.nc")
    w2 = group_dataset(idata, "posterior")["w2"]
    assert w2.shape[0] == 2 and bool((w2 > 0).all())
    assert math.isfinite(res["w2_test_mean"]) and res["w2_test_mean"] > 0
    assert len(calls) == 1
    ens, cal, test, kw, unc = calls[0]
    err, spread = np.asarray(unc["test_error"]), np.asarray(unc["test_spread"])
    assert len(err) == len(test) == 4 and len(cal) == 10
    assert res["w2_test_mean"] == pytest.approx(err.mean(), rel=1e-12)
    assert res["spearman_spread_error"] == pytest.approx(
        scipy.stats.spearmanr(spread, err).statistic
    )
    # the 90 % split-conformal radius of 10 calibration scores is their ceil(11 * 0.9) = 10th
    # smallest (the largest); the calibration scores are those of the split scored as a test
    # split (the scores are seeded, so the same)
    cal_unc = original(ens, cal, cal, **kw)
    cal_scores = np.asarray(cal_unc["test_error"]) / np.asarray(cal_unc["test_spread"])
    assert res["conformal_radius_score"] == cal_scores.max()
    assert res["coverage90"] == np.mean(err / spread <= cal_scores.max())


def test_demo_hook(tmp_path, monkeypatch):
    import bayesphys.meta_fm._demo as demo_mod
    from bayesphys.meta_fm._demo import demo

    figures = capture_figures(monkeypatch, demo_mod)
    rows = demo(tmp_path, device=torch.device("cpu"), seed=0)
    # each panel names what its W2 is between and the identity baseline; the source is T=0
    for ax in figures[0].axes:
        assert re.search(r"W2 to target: member 0 \d+\.\d\d, identity \d+\.\d\d", ax.get_title())
        assert ax.collections[0].get_label() == "source (T=0)"
        labels = [c.get_label() for c in ax.collections]
        assert labels == ["source (T=0)", "member 0", "member 1", "true target"]
        assert len(ax.collections[1].get_offsets()) == 128  # one draw per member: n points
    # every title lies inside the figure (the last one ran past its right edge)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures[0]
    renderer = FigureCanvasAgg(fig).get_renderer()  # the figure was closed after saving
    for ax in fig.axes:
        box = ax.title.get_window_extent(renderer)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, ax.get_title()
    assert (tmp_path / "meta_fm.nc").exists() and (tmp_path / "meta_fm.png").exists()
    assert {"component", "problem", "metric", "value", "target"} <= set(rows[0])
    assert all(math.isfinite(r["value"]) for r in rows)
