"""bayesphys.neural_process input gaps: the reading of a ``sigma_r`` tensor in
``physics_elbo`` (each test failed before its fix, except the guards of kept behaviour)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from bayesphys.neural_process import physics_elbo
from tests.neural_process.test_model import _elbo_inputs

F64 = torch.float64


def _loglik(sigma_r, n_points=2):
    """``parts["loglik"] [B]`` at ``B = 2`` instances of ``n_points`` points (same seed)."""
    p, fwd, inv, x, z, w = _elbo_inputs(n_points)
    wts = torch.ones(2, n_points, dtype=F64)
    gen = torch.Generator().manual_seed(1)
    return physics_elbo(p, fwd, inv, x, wts, z, w, sigma_r, gen)[1]


def test_a_one_dimensional_sigma_r_is_refused_when_batch_and_points_agree():
    # B == N == 2: a per-instance [B] scale was read per point ([1, N]) without a word
    with pytest.raises(
        ValueError, match=r"^sigma_r: expected shape \[B, 1\] .* received shape \(2,\)"
    ):
        _loglik(torch.tensor([0.1, 0.5], dtype=F64))


def test_a_one_dimensional_sigma_r_is_refused_by_the_same_rule_when_they_differ():
    with pytest.raises(ValueError, match=r"^sigma_r: expected shape \[B, 1\] .* \[2, 3\]"):
        _loglik(torch.tensor([0.1, 0.5, 0.2], dtype=F64), n_points=3)  # the [N] reading


def test_per_instance_and_per_point_sigma_r_are_read_as_their_shapes_say():
    s = torch.tensor([0.1, 0.5], dtype=F64)
    one = _loglik(torch.tensor(0.3, dtype=F64))["loglik"]
    r = _loglik(torch.tensor(0.3, dtype=F64))["res_sq"].sqrt()  # |residual| [B, N]
    per_instance = _loglik(s[:, None])["loglik"]
    per_point = _loglik(s[None, :])["loglik"]
    ref_instance = Normal(0.0, s[:, None]).log_prob(r).sum(-1)
    ref_point = Normal(0.0, s[None, :]).log_prob(r).sum(-1)
    torch.testing.assert_close(per_instance, ref_instance)
    torch.testing.assert_close(per_point, ref_point)
    assert not torch.allclose(per_instance, per_point)
    # one scale: (), [1] and [1, 1] agree
    torch.testing.assert_close(_loglik(torch.tensor([0.3], dtype=F64))["loglik"], one)
    torch.testing.assert_close(_loglik(torch.full((1, 1), 0.3, dtype=F64))["loglik"], one)


def test_the_one_dimensional_refusal_names_every_accepted_shape():
    # the message listed [B, 1], [1, N] and [B, N] only and called every 1-D tensor ambiguous,
    # while () and [1] (one scale) are read as such
    with pytest.raises(ValueError) as err:
        _loglik(torch.tensor([0.1, 0.5], dtype=F64))
    assert "() / [1] (one scale)" in str(err.value)
    assert "a 1-D tensor of more than one entry is ambiguous" in str(err.value)
    one = _loglik(torch.tensor([0.3], dtype=F64))["loglik"]
    torch.testing.assert_close(one, _loglik(torch.tensor(0.3, dtype=F64))["loglik"])
