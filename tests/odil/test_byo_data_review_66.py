"""A user's own tissue maps for ``GliomaModel``: white- and grey-matter probabilities of one
voxel sum to at most 1 (CSF takes the rest). Maps that sum to more (the same map given twice,
a brain mask given as ``gm``) were fitted without a word, with the diffusivity of tissue that
does not exist; they are refused naming both maps, while the rounding of maps stored as bytes
(SPM's ``c1`` / ``c2`` in steps of 1/255) is still taken.

``standard_margin_plan`` on a scan's own anisotropic grid (1 x 1 x 3 mm voxels): the margin in
mm along each axis.

A lesion on the edge of the scan (a volume cropped through the tumour) is warned of: the
model's boundary is closed there."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys.odil import GliomaModel, standard_margin_plan
from bayesphys.problems.glioma import brain_phantom, synthetic_patient


@pytest.fixture(scope="module")
def patient():
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    return {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in p.items()}


def _model(p, wm, gm, labels=None):
    labels = p["labels"] if labels is None else labels
    return GliomaModel(wm, gm, labels, spacing=8.0, th_up=p["th_up"], th_down=p["th_down"])


@pytest.mark.parametrize(
    "case",
    ["wm given twice", "brain mask as gm", "one voxel over"],
)
def test_tissue_maps_summing_above_one_are_refused_by_name(patient, case):
    wm, gm = patient["wm"].astype(np.float32), patient["gm"].astype(np.float32)
    if case == "wm given twice":
        gm = wm.copy()
    elif case == "brain mask as gm":
        gm = ((wm + gm) >= 0.1).astype(np.float32)
    else:
        i, j = np.argwhere(wm > 0.5)[0]
        gm = gm.copy()
        gm[i, j] = 1.0
    with pytest.raises(ValueError, match=r"wm, gm: expected .*wm \+ gm <= 1.*received wm \+ gm ="):
        _model(patient, wm, gm)


def test_maps_rounded_to_bytes_are_taken(patient):
    # SPM-like uint8 maps: each rounded up to the next 1/255, so the sum exceeds 1 slightly
    wm = np.ceil(patient["wm"] * 255).astype(np.uint8)
    gm = np.ceil(patient["gm"] * 255).astype(np.uint8)
    wm_p, gm_p = wm.astype(np.float32) / 255, gm.astype(np.float32) / 255
    assert float((wm_p + gm_p).max()) > 1.0
    m = _model(patient, wm_p, gm_p)
    assert m.wm.shape == patient["wm"].shape


def test_the_voxel_named_is_where_the_sum_is_largest(patient):
    wm, gm = patient["wm"].copy(), patient["gm"].copy()
    i, j = np.argwhere(wm > 0.5)[0]
    wm[i, j], gm[i, j] = 1.0, 0.9
    with pytest.raises(ValueError, match=rf"wm \+ gm = 1\.9 at voxel \[{i}, {j}\]"):
        _model(patient, wm, gm)


def test_standard_margin_plan_honours_anisotropic_voxels():
    """A scan of 1 x 1 x 3 mm voxels on its own grid: the 6 mm margin reaches 6 voxels
    in-plane and 2 slices across (it was refused: "spacing: expected a real number")."""
    lab = torch.zeros(21, 21, 11, dtype=torch.long)
    lab[10, 10, 5] = 2
    brain = torch.ones_like(lab, dtype=torch.bool)
    plan = standard_margin_plan(lab, brain, (1.0, 1.0, 3.0), margin_mm=6.0)
    assert bool(plan[16, 10, 5]) and not bool(plan[17, 10, 5])
    assert bool(plan[10, 16, 5]) and not bool(plan[10, 17, 5])
    assert bool(plan[10, 10, 7]) and not bool(plan[10, 10, 8])
    # the same grid resampled to 1 mm slices: the same extent in mm
    fine = torch.zeros(21, 21, 31, dtype=torch.long)
    fine[10, 10, 15] = 2
    iso = standard_margin_plan(fine, torch.ones_like(fine, dtype=torch.bool), 1.0, margin_mm=6.0)
    assert torch.equal(plan[:, :, 5], iso[:, :, 15])
    assert torch.equal(plan[:, :, 7], iso[:, :, 21])
    # as an array or tensor, and equal sizes as the single number
    for sp in (np.array([1.0, 1.0, 3.0]), torch.tensor([1.0, 1.0, 3.0])):
        assert torch.equal(standard_margin_plan(lab, brain, sp, margin_mm=6.0), plan)
    assert torch.equal(
        standard_margin_plan(lab, brain, (2.0, 2.0, 2.0), 6.0),
        standard_margin_plan(lab, brain, 2.0, 6.0),
    )


@pytest.mark.parametrize(
    ("spacing", "match"),
    [
        ((1.0, 3.0), r"spacing: expected one voxel size, or one per axis of the 3-D grid"),
        ((1.0, 0.0, 3.0), r"spacing\[1\]: expected"),
        ((1.0, float("nan"), 3.0), r"spacing\[1\]: expected"),
        (torch.ones(3, 1), r"spacing: expected a voxel size or one per axis, received shape"),
    ],
)
def test_standard_margin_plan_refuses_bad_per_axis_sizes_by_name(spacing, match):
    lab = torch.zeros(5, 5, 5, dtype=torch.long)
    lab[2, 2, 2] = 2
    with pytest.raises(ValueError, match=match):
        standard_margin_plan(lab, torch.ones_like(lab, dtype=torch.bool), spacing)


def test_a_lesion_on_the_scan_edge_is_warned_of(patient):
    """A volume cropped through the tumour: the model's boundary is closed there, so the fit
    holds the tumour back at the crop; it was fitted without a word."""
    idx = np.argwhere(patient["labels"] > 0)
    lo, hi = idx.min(0), idx.max(0) + 1
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    with pytest.warns(
        UserWarning, match=r"labels: the lesion reaches the edge of the scan \(axis 0 start"
    ):
        _model(patient, patient["wm"][sl], patient["gm"][sl], patient["labels"][sl])
    # not where the scan has a margin around the lesion (the phantom as it is)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model(patient, patient["wm"], patient["gm"])


def test_the_edge_warning_is_at_the_users_line_once_not_on_load_or_recrop(patient, tmp_path):
    """The warning pointed five frames up whatever the path (into the loader on load), and a
    load or a recrop of a model warned of its data again."""
    idx = np.argwhere(patient["labels"] > 0)
    lo, hi = idx.min(0), idx.max(0) + 1
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model = _model(patient, patient["wm"][sl], patient["gm"][sl], patient["labels"][sl])
    (w,) = [r for r in rec if "edge of the scan" in str(r.message)]
    assert w.filename == __file__
    model.save(tmp_path / "edge.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = GliomaModel.load(tmp_path / "edge.pt")
        back.recrop(crop_margin_mm=8.0)
    assert torch.equal(back.labels, model.labels)
