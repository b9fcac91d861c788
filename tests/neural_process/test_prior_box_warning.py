"""Parameters outside the problem's prior box (the training range of the networks) are
extrapolations: the forward and inverse posteriors say so, once per call, naming the box."""

import warnings

import pytest
import torch

from bayesphys.neural_process import RandomGridNP


@pytest.fixture(scope="module")
def model():
    m = RandomGridNP("poisson", "RGNP", size="smoke", seed=0)
    m.fit(steps=2, progress=False)
    return m


X = torch.linspace(-0.9, 0.9, 5)


def _messages(fn):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(r.message) for r in rec if "prior box" in str(r.message)]


def test_inside_box_is_silent(model):
    z = torch.tensor([[-1.0, 1.0, 0.0, 0.5, -0.5], [0.0] * 5])
    _, msgs = _messages(lambda: model.posterior(X, z=z, w=torch.tensor([[1.0], [2.0]])))
    assert msgs == []
    post = model.posterior(X, z=torch.zeros(5), w=torch.tensor([1.5]))
    _, msgs = _messages(lambda: model.parameter_posterior(X, post.mean[0], torch.tensor([1.5])))
    assert msgs == []


def test_forward_outside_box_warns_once_naming_it(model):
    z = torch.tensor([[0.0] * 5, [8.0] + [0.0] * 4, [9.0] + [0.0] * 4])
    with pytest.warns(UserWarning, match=r"z: 2 of 3 rows outside the prior box \[-1, 1\]"):
        model.posterior(X, z=z, w=torch.tensor([1.5]))
    _, msgs = _messages(lambda: model.posterior(X, z=torch.zeros(5), w=torch.tensor([20.0])))
    assert len(msgs) == 1
    assert "RandomGridNP.posterior: w: 1 of 1 rows outside the prior box [1, 2]" in msgs[0]


def test_inverse_outside_box_warns(model):
    post = model.posterior(X, z=torch.zeros(5), w=torch.tensor([1.5]))
    with pytest.warns(UserWarning, match=r"parameter_posterior: w: 1 of 1 rows outside"):
        model.parameter_posterior(X, post.mean[0], torch.tensor([0.2]))
