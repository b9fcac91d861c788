"""RandomGridNP's posteriors are computed without gradient: inputs that require grad are warned
about (the mean came back detached from x, z, w or u without a word)."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.problems.rgnp import sample_prior
from tests.tiny_models import tiny_rgnp


@pytest.fixture(scope="module")
def model():
    m = tiny_rgnp()
    m.fit(steps=1, progress=False)
    return m


def _zw(m):
    return sample_prior(m.problem, 1, generator=torch.Generator().manual_seed(0))


def test_posterior_names_the_inputs_that_require_grad(model):
    x = torch.linspace(-0.9, 0.9, 5)
    z, w = _zw(model)
    with pytest.warns(UserWarning, match=r"^RandomGridNP\.posterior: x, z require grad, but"):
        post = model.posterior(x.clone().requires_grad_(), z=z.clone().requires_grad_(), w=w)
    assert not post.mean.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = model.posterior(x, z=z, w=w)
    torch.testing.assert_close(post.mean, plain.mean)


def test_parameter_posterior_names_u(model):
    x = torch.linspace(-0.9, 0.9, 5)
    z, w = _zw(model)
    u = model.posterior(x, z=z, w=w).mean
    with pytest.warns(UserWarning, match=r"^RandomGridNP\.parameter_posterior: u requires grad"):
        post = model.parameter_posterior(x, u.clone().requires_grad_(), w)
    assert not post.mean.requires_grad


def test_no_warning_inside_no_grad(model):
    x = torch.linspace(-0.9, 0.9, 5, requires_grad=True)
    z, w = _zw(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            model.posterior(x, z=z, w=w)
