"""Evaluation helpers given what is not what they compute on: refused by name, where they
returned a number (a silently wrong answer) or failed inside torch / numpy."""

import math

import pytest
import torch

from bayesphys.meta_fm import gaussian_w2

_I = torch.eye(2)
_Z = torch.zeros(2)


@pytest.mark.parametrize(
    "s1, msg",
    [
        (
            -_I,
            r"^s1: expected a positive semi-definite covariance, received one with eigenvalue -1",
        ),
        (torch.tensor([[1.0, 0.0], [2.0, 1.0]]), r"^s1: expected a symmetric covariance"),
    ],
)
def test_gaussian_w2_refuses_a_matrix_that_is_no_covariance(s1, msg):
    """-I was clamped to 0 (distance 0), a Cholesky factor symmetrised (a distance)."""
    with pytest.raises(ValueError, match=msg):
        gaussian_w2(_Z, s1, _Z, _I)
    with pytest.raises(ValueError, match=msg.replace("s1", "s2")):
        gaussian_w2(_Z, _I, _Z, s1)


def test_gaussian_w2_refuses_non_finite_values_and_batches_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"^m1: expected finite values"):
        gaussian_w2(torch.full((2,), math.nan), _I, _Z, _I)  # was a NaN distance
    with pytest.raises(ValueError, match=r"^m1/s1/m2/s2: expected batch shapes that broadcast"):
        gaussian_w2(torch.zeros(3, 2), _I.expand(4, 2, 2), _Z, _I)  # torch's size error


def test_gaussian_w2_keeps_covariances_at_their_round_off():
    """A float32 rank-1 covariance (an eigenvalue ~ -eps) and a float32 sample covariance
    (asymmetric in its last bits) are still read."""
    a = torch.randn(3, 1, generator=torch.Generator().manual_seed(0))
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(1))
    for s in (a @ a.T, torch.cov(x.T)):
        assert float(gaussian_w2(torch.zeros(3), s, torch.zeros(3), s)) < 1e-2
