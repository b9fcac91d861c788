"""Evaluation helpers given what is not what they compute on: refused by name, where they
returned a number (a silently wrong answer) or failed inside torch / numpy."""

import math

import pytest
import torch

from bayesphys.meta_fm import (
    conformal_coverage,
    conformal_radius,
    gaussian_w2,
    mmd_anchor,
    sampling_noise_w2,
    spearman,
)

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


def test_scores_given_as_strings_are_refused():
    """np.asarray("123", float) is the one score 123: a radius and a coverage, silently."""
    with pytest.raises(
        TypeError, match=r"^cal_scores: expected a sequence of numbers, received str"
    ):
        conformal_coverage("123", [1.0], 0.5)
    with pytest.raises(TypeError, match=r"^test_scores: expected a sequence of numbers"):
        conformal_coverage([1.0, 2.0, 3.0], "1", 0.5)
    with pytest.raises(TypeError, match=r"^scores: expected a sequence of numbers"):
        conformal_radius(["3", "1", "2"], 0.5)  # was the radius 2.0
    with pytest.raises(TypeError, match=r"^a: expected a sequence of numbers"):
        spearman("321", [1, 2, 3])
    with pytest.raises(TypeError, match=r"^scores: expected an array of real numbers"):
        conformal_radius([{1: 2}], 0.5)  # numpy's own TypeError
    with pytest.raises(
        ValueError, match=r"^scores: expected values, received a tensor on the 'meta'"
    ):
        conformal_radius(torch.arange(3.0, device="meta"), 0.5)  # torch's TypeError
    assert conformal_radius(torch.tensor([3.0, 1.0, 2.0]), 0.5) == 2.0


def test_spearman_pairs_values_of_one_shape_only():
    """[[1, 2], [3, 4]] was flattened and paired with [1, 2, 3, 4] (rho = 1)."""
    with pytest.raises(ValueError, match=r"^a/b: expected equal lengths .*\(2, 2\) and \(4,\)"):
        spearman([[1, 2], [3, 4]], [1, 2, 3, 4])
    assert spearman([[1, 2], [3, 4]], [[1, 2], [3, 5]]) == pytest.approx(1.0)


def test_mmd_and_sampling_noise_name_arguments_that_are_no_populations():
    y = torch.randn(10, 2)
    with pytest.raises(TypeError, match=r"^x: expected a torch\.Tensor \[n, d\], received list"):
        mmd_anchor([[0.0, 1.0]], y)  # AttributeError: 'list' object has no attribute 'detach'
    with pytest.raises(TypeError, match=r"^y: expected a torch\.Tensor \[n, d\], received list"):
        mmd_anchor(y, [[0.0, 1.0]])
    with pytest.raises(
        TypeError, match=r"^preds: expected a torch\.Tensor .* received list_iterator"
    ):
        sampling_noise_w2(iter([torch.randn(8, 2)]), 4)  # object of type ... has no len()
    with pytest.raises(ValueError, match=r"^preds: expected at least one predicted population"):
        sampling_noise_w2([], 4)
    assert sampling_noise_w2([torch.randn(8, 2)], 4) >= 0.0
