"""The glioma model's Laplace covariance under process-wide torch settings (review of
2026-12-07; each test failed before):

* inside ``torch.inference_mode()`` the exact Hessian came back zero, so ``fit`` and
  ``laplace_covariance`` fell back to the Gauss-Newton matrix (sds about 1.5 times wider)
  with a ``RuntimeWarning`` that theta is no local minimum;
* under ``torch.autograd.set_detect_anomaly(True)`` the vectorised Hessian failed with
  "Batching rule not implemented for aten::item" (the anomaly check reads each gradient).
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
