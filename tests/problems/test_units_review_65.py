"""A synthetic patient's focus given as a tensor (one that requires grad, a float32 one) is
taken as the same coordinates as a list, without torch's copy-construct warning."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.problems.glioma import brain_phantom, synthetic_patient


@pytest.mark.parametrize(
    "focus",
    [
        torch.tensor([60.0, 60.0]),
        torch.tensor([60.0, 60.0], dtype=torch.float64, requires_grad=True),
        torch.tensor([[60.0], [60.0]]).T[0],  # a view with a stride
    ],
)
def test_a_tensor_focus_is_the_same_as_a_list(focus):
    ph = brain_phantom(16, 8.0)
    ref = synthetic_patient(0, phantom=ph, focus=[60.0, 60.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = synthetic_patient(0, phantom=ph, focus=focus)
    assert got["foci"] == ref["foci"]
    assert torch.equal(got["labels"], ref["labels"]) and torch.equal(got["c_true"], ref["c_true"])
