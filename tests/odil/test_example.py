"""The glioma example (--smoke) and the demo hook."""

from __future__ import annotations

import pytest
import scipy.ndimage
import torch
from matplotlib.colors import BoundaryNorm, to_rgb

import bayesphys.odil._demo as demo_mod
from bayesphys.examples.glioma import main
from bayesphys.inference_data import load_netcdf
from bayesphys.odil._demo import RT_CLASSES, demo
from tests.examples.figures import capture_figures


def _spy_rt(monkeypatch) -> dict:
    """Record the simulated patient and the posterior plan of ``glioma_case``."""
    seen = {}
    patient, plan = demo_mod.synthetic_patient, demo_mod.model_plan

    def spy_patient(*a, **k):
        seen["patient"] = patient(*a, **k)
        return seen["patient"]

    def spy_plan(score, brain, volume):
        seen["brain"], seen["volume"] = brain, volume
        seen["plan"] = plan(score, brain, volume)
        return seen["plan"]

    monkeypatch.setattr(demo_mod, "synthetic_patient", spy_patient)
    monkeypatch.setattr(demo_mod, "model_plan", spy_plan)
    return seen


def _check_rt_coverage(out: dict, seen: dict, spacing: float = 4.0) -> None:
    """Both reported recurrence coverages recomputed from the patient and the plans: the
    recurrence is the future tumour (c >= th_down) outside the visible core; the standard plan
    the core (label 2) dilated by 15 mm (Euclidean) within the planning mask; the posterior
    plan is iso-volumetric with it."""
    p = seen["patient"]
    labels, brain = p["labels"].cpu().numpy(), seen["brain"].cpu().numpy() > 0
    rec = (p["c_future"].cpu().numpy() >= float(p["th_down"])) & (labels < 2)
    assert rec.sum() > 0  # else both coverages are 1 by convention
    core = labels == 2
    std = (scipy.ndimage.distance_transform_edt(~core, sampling=spacing) <= 15.0) & brain
    plan = seen["plan"].cpu().numpy()
    assert seen["volume"] == plan.sum() == std.sum() and not (plan & ~brain).any()
    assert out["rt_coverage_standard"] == pytest.approx((rec & std).sum() / rec.sum())
    assert out["rt_coverage_model"] == pytest.approx((rec & plan).sum() / rec.sum())


def _is_core(contour) -> bool:
    """A contour drawn in the core-outline colour (the brain / white-matter ones are grey)."""
    return contour.get_edgecolor()[0][:3] == pytest.approx(to_rgb(demo_mod.CORE_OUTLINE))


def test_example_smoke(tmp_path, capsys, monkeypatch):
    seen = _spy_rt(monkeypatch)
    figures = capture_figures(monkeypatch, demo_mod)
    out = main(["--smoke", "--out", str(tmp_path), "--seed", "1"])
    text = capsys.readouterr().out
    assert "D_w" in text and "rho" in text and "15 mm margin" in text
    assert (tmp_path / "glioma.png").exists()
    idata = load_netcdf(tmp_path / "glioma.nc")
    assert "c" in idata.posterior.data_vars
    assert out["rel_err_v"] < 0.15 and out["focus_err_mm"] < 4.0
    _check_rt_coverage(out, seen)
    assert (
        f"{out['rt_coverage_model']:.3f} vs 15 mm margin {out['rt_coverage_standard']:.3f}" in text
    )
    # the radiotherapy panels: four classes, a discrete colour each, named in the key
    (fig,) = figures
    rt = [a for a in fig.axes if a.get_title().startswith(("15 mm margin", "posterior plan"))]
    assert len(rt) == 2
    for ax in rt:
        (im,) = ax.get_images()
        assert isinstance(im.norm, BoundaryNorm) and im.cmap.N == im.norm.Ncmap == 4
        assert set(im.get_array().compressed()) <= {0, 1, 2, 3}
        # the visible core (recurrence is counted outside it) outlined and named in a key
        (outline,) = [c for c in ax.collections if tuple(c.levels) == (0.5,) and _is_core(c)]
        assert any(len(path.vertices) for path in outline.get_paths())
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["visible core"]
    # one key for the two plans (same colours), on the last: a key beside each widened the
    # third column, so the fourth sat further right than the others
    margin_im, plan_im = (ax.get_images()[0] for ax in rt)
    assert margin_im.colorbar is None and list(margin_im.cmap.colors) == list(plan_im.cmap.colors)
    labels = [t.get_text() for t in plan_im.colorbar.ax.get_yticklabels()]
    assert tuple(labels) == RT_CLASSES
    columns = [round(a.get_position().x0, 3) for a in fig.axes if a.get_images()]
    top, bottom = sorted(columns[:4]), sorted(columns[4:8])
    assert all(abs(t - b) < 0.02 for t, b in zip(top, bottom))  # the rows' maps align
    gaps = [b - a for a, b in zip(top, top[1:])]
    assert max(gaps) - min(gaps) < 0.03  # the columns evenly spaced
    # the c(T) maps meant to be compared share one colour scale
    ct = [
        a
        for a in fig.axes
        if a.get_title() in ("true c(T)", "posterior median c(T)")
        or a.get_title().endswith("quantile c(T)")
    ]
    assert len(ct) == 4
    assert {a.get_images()[0].get_clim() for a in ct} == {(0.0, 1.0)}
    # the segmentation in three named discrete colours
    (seg,) = [a for a in fig.axes if a.get_title() == "segmentation"]
    (im,) = seg.get_images()
    assert isinstance(im.norm, BoundaryNorm) and im.cmap.N == 3
    assert [t.get_text() for t in im.colorbar.ax.get_yticklabels()] == ["none", "edema", "core"]


@pytest.mark.slow
def test_demo_rows(tmp_path):
    rows = demo(tmp_path, device=torch.device("cpu"), seed=0)
    assert (tmp_path / "odil.nc").exists() and (tmp_path / "odil.png").exists()
    names = {r["metric"] for r in rows}
    assert {"rel_err_l", "rel_err_v", "focus_err_mm", "seconds"} <= names
    assert all(r["component"] == "odil" for r in rows)


def test_example_smoke_atlas(tmp_path, monkeypatch):
    pytest.importorskip("nilearn")
    seen = _spy_rt(monkeypatch)
    out = main(["--smoke", "--atlas", "--out", str(tmp_path), "--seed", "2"])
    assert (tmp_path / "glioma.png").exists()
    assert out["focus_err_mm"] < 4.0
    _check_rt_coverage(out, seen)


def test_example_smoke_three_foci(tmp_path, capsys):
    out = main(["--smoke", "--foci", "3", "--out", str(tmp_path), "--seed", "2"])
    text = capsys.readouterr().out
    assert "foci chosen by Laplace evidence" in text
    assert set(out["log_evidence"]) == {1, 2, 3}
    best = max(out["log_evidence"], key=out["log_evidence"].get)
    assert out["n_foci"] == best
    assert out["focus_err_mm"] < 8.0  # two voxels at 4 mm
    idata = load_netcdf(tmp_path / "glioma.nc")
    if out["n_foci"] > 1:
        assert idata.posterior["x0"].dims == ("chain", "draw", "focus")
