"""A context whose values are an ``nn.Parameter`` (data being optimised, e.g. sensor readings
fitted upstream) conditions the GP step 1 as its plain values do: gpytorch's assignment of the
targets registered the Parameter on the module, a KeyError "attribute 'train_targets' already
exists" (the test failed before)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme.datasets import make_dataset


@pytest.fixture(scope="module")
def fitted():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = ProbConserv("stefan", step1="gp", seed=0)
        m.fit(steps=1, progress=False)
        yield m, make_dataset("stefan", params=[0.6, 0.55], seed=1)
    finally:
        torch.set_num_threads(n)


def test_a_parameter_context_gives_the_posterior_of_its_values(fitted):
    m, data = fitted
    ref = m.posterior(data)
    y = torch.nn.Parameter(data.y_context.clone())
    x = torch.nn.Parameter(data.x_context.clone())
    with pytest.warns(
        UserWarning,
        match=r"^ProbConserv\.posterior: context\.x_context, context\.y_context require grad, but",
    ):
        post = m.posterior(dataclasses.replace(data, x_context=x, y_context=y))
    assert torch.equal(post.mean, ref.mean)
    assert torch.equal(post.variance, ref.variance)
    assert torch.equal(y, data.y_context) and torch.equal(x, data.x_context)
    # and the model is as it was: a plain context gives the same posterior again
    assert torch.equal(m.posterior(data).mean, ref.mean)


def test_the_gp_loss_takes_a_parameter_context_and_passes_its_gradient(fitted):
    m, data = fitted
    ref = m.net.loss(data.x_context, data.y_context).detach()
    y = torch.nn.Parameter(data.y_context.clone())
    try:
        loss = m.net.loss(data.x_context, y)
        assert torch.equal(loss.detach(), ref)
        loss.backward()
        assert y.grad is not None and bool(torch.isfinite(y.grad).all())
    finally:
        m.net.zero_grad(set_to_none=True)
