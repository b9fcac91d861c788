"""The glioma model's Laplace covariance under process-wide torch settings (review of
2026-12-07; each test failed before):

* inside ``torch.inference_mode()`` the exact Hessian came back zero, so ``fit`` and
  ``laplace_covariance`` fell back to the Gauss-Newton matrix (sds about 1.5 times wider)
  with a ``RuntimeWarning`` that theta is no local minimum;
* under ``torch.autograd.set_detect_anomaly(True)`` the vectorised Hessian failed with
  "Batching rule not implemented for aten::item" (the anomaly check reads each gradient);
* a residual function capturing data made inside ``torch.inference_mode()`` failed in
  ``minimize``, ``theta_covariance`` and ``field_posterior`` with torch's error raised from
  the user's line, which named neither the call recording the graph nor the tensor's origin.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.odil import GliomaModel
from bayesphys.problems.glioma import brain_phantom, synthetic_patient


@pytest.fixture(scope="module")
def fitted():
    patient = synthetic_patient(0, phantom=brain_phantom(24, 4.0))
    model = GliomaModel.from_patient(patient, seed=0)
    model.fit(progress=False)
    return patient, model, model.laplace_covariance()


STATES = {
    "inference_mode": torch.inference_mode,
    "no_grad": torch.no_grad,
    "detect_anomaly": lambda: torch.autograd.set_detect_anomaly(True),
}


@pytest.mark.parametrize("state", list(STATES))
def test_the_laplace_covariance_is_the_exact_hessians_under_the_callers_mode(state, fitted):
    _, model, ref = fitted
    anomaly = torch.is_anomaly_enabled()
    try:
        with STATES[state](), warnings.catch_warnings():
            warnings.simplefilter("error")  # the fallback's RuntimeWarning fails the test
            cov = model.laplace_covariance()
            # the caller's settings are in force again after the call
            assert torch.is_inference_mode_enabled() == (state == "inference_mode")
            assert torch.is_anomaly_enabled() == (state == "detect_anomaly")
    finally:
        torch.autograd.set_detect_anomaly(anomaly)
    torch.testing.assert_close(cov, ref, rtol=1e-12, atol=0)


@pytest.mark.slow  # the laplace_covariance test above covers the same call, fast
def test_a_fit_inside_inference_mode_sets_the_exact_hessians_posterior(fitted):
    patient, ref_model, ref = fitted
    model = GliomaModel.from_patient(patient, seed=0)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(progress=False)
    torch.testing.assert_close(model.theta_cov, ref_model.theta_cov, rtol=1e-12, atol=0)
    torch.testing.assert_close(model.theta_cov, ref, rtol=1e-12, atol=0)


def _problem_with_inference_data():
    from bayesphys.odil import DiscreteProblem

    with torch.inference_mode():  # the caller's data, made in an evaluation block
        y = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)

    def residuals(fields, params):
        return {"data": (fields["u"] - params["c"]) * y, "prior": fields["u"] / 10}

    return DiscreteProblem({"u": (6,)}, {"c": 0.5}, residuals)


@pytest.mark.parametrize("call", ["minimize-adam", "minimize-lm", "theta_covariance", "field"])
def test_residual_data_made_inside_inference_mode_is_named_with_the_remedy(call):
    from bayesphys.odil import field_posterior, minimize, theta_covariance

    prob = _problem_with_inference_data()
    x0 = torch.zeros(7, dtype=torch.float64)
    run = {
        "minimize-adam": lambda: minimize(prob, method="adam", steps=2),
        "minimize-lm": lambda: minimize(prob, method="lm", steps=2),
        "theta_covariance": lambda: theta_covariance(prob, x0),
        "field": lambda: field_posterior(prob, x0, "u"),
    }[call]
    owner = {"field": "field_posterior"}.get(call, call.split("-")[0])
    with pytest.raises(
        RuntimeError, match=rf"^{owner}: a tensor created inside torch\.inference_mode\(\)"
    ) as info:
        run()
    assert "outside the block" in str(info.value) and "torch.no_grad()" in str(info.value)
    assert "Inference tensors cannot be saved" in str(info.value.__cause__)
