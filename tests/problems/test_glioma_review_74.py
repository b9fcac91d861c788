"""Review 74 of the glioma problem modules (docstring claims against behaviour, extreme but
valid inputs)."""

from __future__ import annotations

import torch

from bayesphys.problems.glioma import brain_phantom, synthetic_patient


def test_a_seeded_patient_is_the_same_in_float32_and_float64():
    """``seed`` fixes the patient: its focus, extra foci and PET noise were drawn in the
    simulation's ``dtype``, so ``dtype=torch.float32`` gave another patient of the same seed (a
    focus 0.3 to 0.8 mm away on this phantom, other extra foci and PET noise)."""
    kw = {"phantom": brain_phantom(24, 4.0), "extra_foci": 2, "t_end": 30.0, "future_days": 5.0}
    for seed in (0, 3):
        ref = synthetic_patient(seed, **kw)
        got = synthetic_patient(seed, dtype=torch.float32, **kw)
        assert got["pet"].dtype == got["c_true"].dtype == torch.float32
        assert got["truth"]["dw"] == ref["truth"]["dw"]
        torch.testing.assert_close(
            torch.tensor(got["foci"], dtype=torch.float64),
            torch.tensor(ref["foci"], dtype=torch.float64),
            rtol=1e-6,
            atol=1e-5,
        )
        for key in ("c_true", "pet"):
            torch.testing.assert_close(got[key].double(), ref[key], rtol=0, atol=1e-5)
