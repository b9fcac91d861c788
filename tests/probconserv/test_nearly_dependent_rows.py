"""Constraint rows dependent under the prior, with a sigma_g below round-off."""

import itertools

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior
from bayesphys.probconserv import conservation_update

F64 = torch.float64


def test_dependent_rows_with_tiny_sigma_g_name_the_cause_and_the_remedy():
    # rows a, b and a + b: G Sigma G^T is singular, and its computed round-off (about 1e-16)
    # swamps sigma_g^2 = 1e-24 on roughly half of these inputs, whose Cholesky then fails;
    # that read only "G Sigma G^T + sigma_g^2 I: not positive definite", as for an indefinite
    # prior, without the cause (dependent rows) or what to do
    prior = GaussianPosterior(
        torch.zeros(3, dtype=F64), DiagLinearOperator(torch.ones(3, dtype=F64))
    )
    refused = 0
    for a1, a2, b1, b2 in itertools.product([0.1, 0.3, 0.7], [0.2, 0.6], [0.9, 0.45], [0.15, 0.35]):
        a = torch.tensor([a1, a2, 0.3], dtype=F64)
        b = torch.tensor([b1, b2, 0.7], dtype=F64)
        G = torch.stack([a, b, a + b])
        try:
            post = conservation_update(prior, G, torch.zeros(3, dtype=F64), 1e-12)
        except ValueError as err:
            refused += 1
            msg = str(err)
            assert "not positive definite to working precision" in msg
            assert "linearly dependent" in msg and "give a sigma_g above about" in msg
            assert "sigma_g = 1.000e-12" in msg
            continue
        assert torch.isfinite(post.sample((8,), seed=0)).all()
    assert refused > 0  # the round-off of some of them is negative (on every platform tried)


def test_an_indefinite_prior_is_still_refused_as_before():
    a = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    indefinite = GaussianPosterior(
        torch.zeros(4, dtype=F64), -(a @ a.T) - torch.eye(4, dtype=F64), validate=False
    )
    with pytest.raises(ValueError, match=r"^G Sigma G\^T \+ sigma_g\^2 I: not positive definite$"):
        conservation_update(indefinite, torch.ones(4, dtype=F64), 1.0, 0.1)
