"""The core's naming of torch's inference-tensor error (ODIL's ``minimize``,
``theta_covariance`` and ``field_posterior`` use it; tests/odil/test_ambient_review_70.py)."""

from __future__ import annotations

import pytest
import torch

from bayesphys._inference_tensors import inference_tensors_named


def test_torch_inference_tensor_error_is_named_and_other_errors_pass_unchanged():
    with torch.inference_mode():
        data = torch.ones(3)

    @inference_tensors_named("fit_this", "the loss's data")
    def fit(other: bool = False) -> torch.Tensor:
        if other:
            raise RuntimeError("something else")
        w = torch.zeros(3, requires_grad=True)
        (w * data).sum().backward()  # data is saved for w's gradient
        return w.grad

    with pytest.raises(RuntimeError, match=r"^fit_this: .*\(the loss's data\)") as info:
        fit()
    assert "Inference tensors cannot be saved" in str(info.value.__cause__)
    with pytest.raises(RuntimeError, match="^something else$") as info:
        fit(other=True)
    assert info.value.__cause__ is None
    assert fit.__name__ == "fit"
