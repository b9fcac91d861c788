"""synthetic_patient refuses a diffusivity whose explicit solve would take hours."""

from __future__ import annotations

import pytest

from bayesphys.problems.glioma import MAX_PATIENT_STEPS, brain_phantom, synthetic_patient


def test_synthetic_patient_refuses_a_huge_step_count():
    ph = brain_phantom(32, 4.0)
    with pytest.raises(ValueError, match=r"^dw: 1e\+06 \(step_d=1.0\) needs 200000000 explicit"):
        synthetic_patient(0, phantom=ph, dw=1e6)  # needed ~1e8 steps: effectively hung
    assert MAX_PATIENT_STEPS >= 100_000
    p = synthetic_patient(0, phantom=ph, dw=0.3)  # the prior range runs as before
    assert p["truth"]["dw"] == 0.3 and float(p["c_true"].max()) > 0


def test_a_phantom_of_numpy_maps_gives_the_same_patient():
    """Numpy tissue maps (e.g. read from a file) failed inside ``.nonzero()``."""
    import torch

    ph = brain_phantom(24, 4.0)
    as_numpy = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in ph.items()}
    a, b = synthetic_patient(0, phantom=ph), synthetic_patient(0, phantom=as_numpy)
    assert torch.equal(a["c_true"], b["c_true"]) and a["truth"] == b["truth"]
