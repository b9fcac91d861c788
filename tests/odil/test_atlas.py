"""MNI atlas loader (nilearn package data), 3-D / multi-focal patients, GliODIL crop, plans."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bayesphys.odil import GliomaModel
from bayesphys.odil.radiotherapy import model_plan
from bayesphys.problems import glioma as gp


def _no_network(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", boom)
    monkeypatch.setattr(socket, "create_connection", boom)


def test_mni_atlas_missing_nilearn_names_the_package(monkeypatch):
    gp._mni_arrays.cache_clear()
    monkeypatch.setitem(sys.modules, "nilearn", None)
    with pytest.raises(ImportError, match="nilearn"):
        gp.mni_atlas(4.0, axial_mm=8.0)
    gp._mni_arrays.cache_clear()


def test_mni_atlas_slice_and_volume_offline(monkeypatch):
    pytest.importorskip("nilearn")
    _no_network(monkeypatch)
    gp._mni_arrays.cache_clear()
    sl = gp.mni_atlas(2.0, axial_mm=8.0)
    assert sl["wm"].ndim == 2 and sl["spacing"] == 2.0
    for k in ("wm", "gm", "csf"):
        assert float(sl[k].min()) >= 0.0 and float(sl[k].max()) <= 1.0 + 1e-12
    assert bool(((sl["brain"] > 0) <= (sl["mask"] > 0)).all())
    # a real axial slice: ~70 x 90 voxels at 2 mm, WM and GM both present, ventricles (CSF)
    assert 60 <= sl["wm"].shape[0] <= 90 and 80 <= sl["wm"].shape[1] <= 110
    assert float(sl["wm"].sum()) > 500 and float(sl["gm"].sum()) > 500
    assert float(((sl["csf"] > 0.5) & (sl["mask"] > 0)).sum()) > 20
    vol = gp.mni_atlas(4.0)
    assert vol["wm"].ndim == 3 and vol["spacing"] == 4.0
    assert vol["wm"].shape == vol["mask"].shape
    with pytest.raises(ValueError, match="axial_mm"):
        gp.mni_atlas(4.0, axial_mm=500.0)
    with pytest.raises(ValueError, match="resolution_mm"):
        gp.mni_atlas(0.1)


def test_atlas_slice_fit_recovers_patient():
    pytest.importorskip("nilearn")
    atlas = gp.mni_atlas(2.0, axial_mm=8.0)
    p = gp.synthetic_patient(2001, phantom=atlas)
    m = GliomaModel(
        p["wm"],
        p["gm"],
        p["labels"],
        spacing=2.0,
        th_up=p["th_up"],
        th_down=p["th_down"],
        crop_scale=1.5,
    )
    res = m.fit(progress=False)
    assert res.converged, res.message
    e, tr = m.estimates(), p["truth"]
    assert math.hypot(e["x0"] - tr["x0"], e["y0"] - tr["y0"]) < 2.0
    assert abs(e["v"] / tr["v"] - 1) < 0.15
    wide = m.recrop(crop_margin_mm=30.0)
    assert wide.shape[0] > m.shape[0] and torch.equal(wide.theta, m.theta)
    c = wide.full(wide.forward(wide.theta))
    a, b = c >= 0.1, p["c_true"] >= 0.1
    dice = 2 * float((a & b).sum()) / float(a.sum() + b.sum())
    assert dice > 0.85


def test_crop_scale_is_gliodil_trim():
    lab = torch.zeros(40, 40, dtype=torch.long)
    lab[10:20, 16:20] = 1  # bbox 10 x 4 voxels
    wm = torch.ones(40, 40, dtype=torch.float64)
    m = GliomaModel(wm, 0 * wm, lab, spacing=1.0, crop_scale=1.5)
    assert m.shape == (16, 6)  # 1.5 x (10, 4), rounded outwards
    with pytest.raises(ValueError, match="crop_scale"):
        GliomaModel(wm, 0 * wm, lab, spacing=1.0, crop_scale=0.5)


def test_three_d_multifocal_patient():
    n, h = 16, 4.0
    ax = (torch.arange(n, dtype=torch.float64) + 0.5) * h - n * h / 2
    x, y, z = torch.meshgrid(ax, ax, ax, indexing="ij")
    brain = ((x / 30) ** 2 + (y / 30) ** 2 + (z / 30) ** 2 <= 1).double()
    ph = {"wm": brain, "gm": 0 * brain, "brain": brain, "spacing": h}
    p = gp.synthetic_patient(4, phantom=ph, extra_foci=2, refine=1, dw=0.3, rho=0.05)
    assert p["labels"].shape == (n, n, n) and len(p["foci"]) == 3
    assert {"x0", "y0", "z0"} <= set(p["truth"])
    for f in p["foci"][1:]:  # within +-5 % of each axis extent of the first focus
        assert max(abs(a - b) for a, b in zip(f, p["foci"][0])) <= 0.05 * n * h + 1e-9
    assert int((p["labels"] > 0).sum()) > 0


def test_model_plan_fallback_beyond_support():
    brain = torch.ones(30, 30)
    score = torch.zeros(30, 30, dtype=torch.float64)
    score[14:16, 14:16] = torch.tensor([[0.9, 0.8], [0.7, 0.6]], dtype=torch.float64)
    plan = model_plan(score, brain, 12)
    assert int(plan.sum()) == 12 and bool(plan[14:16, 14:16].all())
    # the extra voxels hug the predicted support (distance fade), not an arbitrary corner
    assert not bool(plan[0, 0]) and bool(plan[13, 14]) and bool(plan[16, 15])


def test_no_committed_file_is_over_a_few_megabytes():
    """Brain geometry comes from code (the phantom) or a package's own data (nilearn's MNI
    templates), never from a large file in the repository: every tracked file is under 4 MiB."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    files = [root / name for name in out.decode().split("\0") if name]
    assert files, "git ls-files listed nothing"
    big = {str(f.relative_to(root)): f.stat().st_size for f in files if f.is_file()}
    big = {name: size for name, size in big.items() if size > 4 * 2**20}
    assert not big, big
