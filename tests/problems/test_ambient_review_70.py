"""A seeded synthetic patient does not depend on torch's default dtype (review of process-wide
torch settings): its parameters and focus were drawn in the default dtype, so under
``torch.set_default_dtype(torch.float64)`` the same seed gave another patient (another D_w,
rho and focus; its tumour map differed by up to 0.95)."""

from __future__ import annotations

import pytest
import torch

from bayesphys.problems.glioma import brain_phantom, synthetic_patient


def _patient():
    return synthetic_patient(0, phantom=brain_phantom(24, 4.0), extra_foci=1)


@pytest.mark.parametrize("default", [torch.float64, torch.float16])
def test_a_seeded_patient_is_the_same_under_another_default_dtype(default):
    ref = _patient()
    before = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        got = _patient()
    finally:
        torch.set_default_dtype(before)
    assert got["truth"] == ref["truth"]
    assert got["foci"] == ref["foci"]
    for key in ("labels", "c_true", "c_future", "pet"):
        want = torch.int64 if key == "labels" else torch.float64  # float64: the default
        assert got[key].dtype == ref[key].dtype == want
        assert torch.equal(got[key], ref[key]), key
