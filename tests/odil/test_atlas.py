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
    # inside the volume, above the brain: no tissue to crop to
    with pytest.raises(
        ValueError, match=r"^axial_mm: no brain tissue in the slice at z = 100\.0 mm$"
    ):
        gp.mni_atlas(4.0, axial_mm=100.0)
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


def _fdata_maps():
    """The 1 mm maps as nilearn's ``get_fdata()`` gives them (float64), read afresh."""
    from nilearn import datasets

    imgs = [
        datasets.load_mni152_wm_template(resolution=1),
        datasets.load_mni152_gm_template(resolution=1),
        datasets.load_mni152_brain_mask(resolution=1),
    ]
    return (*(img.get_fdata() for img in imgs), imgs[0].affine)


def test_mni_cache_is_one_byte_a_voxel_and_gives_the_float64_maps_bit_for_bit():
    """The cached 1 mm maps were three float64 volumes (208 MB in every process that read
    them); they are 8-bit maps, kept as uint8 codes and a 256-entry table of values."""
    pytest.importorskip("nilearn")
    import numpy as np

    gp._mni_arrays.cache_clear()
    ref = _fdata_maps()
    maps = gp._mni_maps()
    for a, b in zip(maps, ref):  # the same bits as get_fdata()
        assert a.dtype == np.float64 and a.shape == b.shape
        assert np.array_equal(a.view(np.uint64), np.ascontiguousarray(b).view(np.uint64))
    cached = gp._mni_arrays()[:3]
    nvox = ref[0].size
    assert all(codes.dtype == np.uint8 and table.shape == (256,) for codes, table in cached)
    nbytes = sum(codes.nbytes + table.nbytes for codes, table in cached)
    assert nbytes == 3 * nvox + 3 * 256 * 8
    if ref[0].shape == (197, 233, 189):  # the docstring's figures (nilearn 0.14)
        assert round(nbytes / 1e6) == 26 and round(3 * 8 * nvox / 1e6) == 208


def test_mni_atlas_from_the_compact_cache_equals_the_float64_path(monkeypatch):
    pytest.importorskip("nilearn")
    cases = [(2.0, None), (3.0, None), (1.5, None), (1.0, 8.0), (2.5, 20.0)]
    new = [gp.mni_atlas(r, axial_mm=z) for r, z in cases]
    ref_maps = _fdata_maps()
    monkeypatch.setattr(gp, "_mni_maps", lambda: ref_maps)
    for (r, z), a in zip(cases, new):
        b = gp.mni_atlas(r, axial_mm=z)
        assert a.keys() == b.keys()
        for k in ("wm", "gm", "csf", "brain", "mask"):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (r, z, k)
        assert a["spacing"] == b["spacing"] and a["origin_mm"] == b["origin_mm"], (r, z)


def test_compact_store_gives_back_any_map_bit_for_bit():
    """The compact store falls back to float32 or float64 whenever 8-bit codes would not
    give the map back exactly (signed zeros and NaN included)."""
    import numpy as np

    rng = np.random.default_rng(0)
    eight = (rng.integers(0, 256, (5, 6, 7)).astype(np.float32) / np.float32(255)).astype(float)
    single = rng.random((5, 6, 7)).astype(np.float32).astype(np.float64)
    double = rng.random((5, 6, 7))
    signed = eight.copy()
    signed[0, 0, 0] = -0.0
    nan = eight.copy()
    nan[1, 2, 3] = np.nan
    cases = {
        "8-bit": (eight, np.uint8),
        "8-bit, Fortran order": (np.asfortranarray(eight), np.uint8),
        "0 / 1": ((eight > 0.5).astype(float), np.uint8),
        "float32": (single, np.float32),
        "float64": (double, np.float64),
        "-0.0": (signed, np.float32),
        "NaN": (nan, np.float32),
        "zeros": (np.zeros((3, 4)), np.float32),
        "negative": (eight - 0.5, np.float64),
        "empty": (np.zeros((0, 3)), np.float32),
    }
    for name, (a, dtype) in cases.items():
        packed = gp._compact(a)
        back = gp._expand(packed)
        assert packed[0].dtype == dtype, name
        assert back.dtype == np.float64 and back.shape == a.shape, name
        assert np.array_equal(back.view(np.uint64), a.view(np.uint64)), name


def test_atlas_unavailable_reason_is_public_and_matches_what_mni_atlas_raises(monkeypatch):
    """benchmarks/odil.py asked a private function whether the atlas can be read; the public
    one gives ``None`` when nilearn is there, else the message ``mni_atlas`` raises."""
    from bayesphys import MissingPackage
    from bayesphys.problems import atlas_unavailable_reason

    assert gp.atlas_unavailable_reason is atlas_unavailable_reason
    monkeypatch.setattr(gp, "missing_module", lambda *names: None)
    assert atlas_unavailable_reason() is None
    monkeypatch.setattr(gp, "missing_module", lambda *names: names[0])
    reason = atlas_unavailable_reason()
    assert (
        reason.startswith("mni_atlas needs nilearn") and 'pip install "bayesphys[atlas]"' in reason
    )
    gp._mni_arrays.cache_clear()
    with pytest.raises(MissingPackage) as err:
        gp.mni_atlas(4.0, axial_mm=8.0)
    assert str(err.value) == reason
    gp._mni_arrays.cache_clear()


def test_the_odil_benchmark_imports_no_private_glioma_name():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "benchmarks" / "odil.py").read_text()
    assert "glioma import _" not in text and "glioma._" not in text
    assert "atlas_unavailable_reason" in text
