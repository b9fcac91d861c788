"""A Laplace covariance at a point that is no minimum of the loss (an indefinite exact Hessian)
fell back to the Gauss-Newton matrix without a word, whose sds then read as a confident
posterior: it now warns, naming the smallest eigenvalue."""

import warnings

import pytest
import torch


def test_fitted_minimum_is_silent(tiny_pet_model):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        tiny_pet_model.laplace_covariance("exact")
    assert [str(r.message) for r in rec if "exact Hessian" in str(r.message)] == []


def test_indefinite_hessian_warns_and_falls_back(tiny_pet_model):
    m = tiny_pet_model
    theta = m.theta.clone()
    try:
        # the focus 12 mm off the fitted one: the loss curves down across it there
        m.theta = theta + torch.tensor([0.0, 0.0, 12.0, 0.0], dtype=theta.dtype)
        with pytest.warns(RuntimeWarning, match=r"exact Hessian .* not positive definite"):
            cov = m.laplace_covariance("exact")
        gn = m.laplace_covariance("gn")
        assert torch.allclose(cov, gn)
    finally:
        m.theta = theta
