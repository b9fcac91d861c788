"""Review 74 of the ODIL glioma model (docstring claims against behaviour, extreme but valid
inputs)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from bayesphys.odil import GliomaModel, focus_error_mm


def test_laplace_covariance_after_recalibrate_is_taken_at_the_fitted_mode(tiny_pet_model):
    """``laplace_covariance`` is documented at the fitted mode; after ``recalibrate`` it took
    the Hessian at the shifted ``theta`` (2 sds off here): another covariance (sds 5 to 30 %
    off on this model), or a fallback warning of a fit that had not stopped at a minimum."""
    m = copy.deepcopy(tiny_pet_model)  # the fixture is shared: recalibrate a copy
    want = {h: m.laplace_covariance(h) for h in ("exact", "gn")}
    m.recalibrate(torch.tensor([2.0, -2.0, 2.0, 2.0]), 1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Gauss-Newton fallback at the fitted minimum
        for h, cov in want.items():
            torch.testing.assert_close(m.laplace_covariance(h), cov, rtol=1e-10, atol=0)
    # the recalibrated posterior itself is untouched by the call
    torch.testing.assert_close(m.theta_cov.diagonal(), 2.25 * want["exact"].diagonal())


def test_a_refit_of_a_recalibrated_model_sets_the_fresh_fits_posterior(tiny_pet_model):
    """A second ``fit`` of a recalibrated model drops the map and sets the new fit's Laplace
    posterior: the covariance at the new estimate, as a fresh model's fit gives it (the map
    in force meanwhile is not applied to it)."""
    m = copy.deepcopy(tiny_pet_model)
    m.recalibrate(1.0, 2.0)
    with pytest.warns(UserWarning, match="recalibrate"):
        m.fit(progress=False)
    assert m.recalibration is None
    torch.testing.assert_close(m.theta, tiny_pet_model.theta, rtol=1e-12, atol=0)
    torch.testing.assert_close(m.theta_cov, tiny_pet_model.theta_cov, rtol=1e-10, atol=0)


def test_a_failed_refit_keeps_the_recalibration_map(tiny_pet_model, monkeypatch):
    """The map is set aside while the new fit's covariance is taken; a failure there restores
    it with the rest of the last fit."""
    m = copy.deepcopy(tiny_pet_model)
    m.recalibrate(0.5, 1.5)
    theta, cov, recal = m.theta.clone(), m.theta_cov.clone(), m.recalibration

    def singular(self, hessian="exact"):
        raise torch.linalg.LinAlgError("singular Hessian")

    monkeypatch.setattr(GliomaModel, "laplace_covariance", singular)
    with pytest.raises(torch.linalg.LinAlgError):
        m.fit(steps=2, progress=False)
    assert torch.equal(m.theta, theta) and torch.equal(m.theta_cov, cov)
    assert m.recalibration is recal


def test_focus_error_of_foci_that_require_grad_warns_nothing():
    """Estimated foci that require grad (e.g. a theta being differentiated) gave torch's
    ``UserWarning`` "Converting a tensor with requires_grad=True to a scalar"."""
    est = torch.tensor([[1.0, 2.0]], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert focus_error_mm(est, [[1.0, 5.0]]) == pytest.approx(3.0)
