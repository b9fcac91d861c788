"""A user's own tissue maps for ``GliomaModel``: white- and grey-matter probabilities of one
voxel sum to at most 1 (CSF takes the rest). Maps that sum to more (the same map given twice,
a brain mask given as ``gm``) were fitted without a word, with the diffusivity of tissue that
does not exist; they are refused naming both maps, while the rounding of maps stored as bytes
(SPM's ``c1`` / ``c2`` in steps of 1/255) is still taken."""

from __future__ import annotations

import numpy as np
import pytest

from bayesphys.odil import GliomaModel
from bayesphys.problems.glioma import brain_phantom, synthetic_patient


@pytest.fixture(scope="module")
def patient():
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    return {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in p.items()}


def _model(p, wm, gm):
    return GliomaModel(wm, gm, p["labels"], spacing=8.0, th_up=p["th_up"], th_down=p["th_down"])


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
