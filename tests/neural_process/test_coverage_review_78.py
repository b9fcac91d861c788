"""Coverage review (round 78): neural_process paths that no test of the default suite
executed: a ``sigma_r`` tensor that does not broadcast to ``[B, N]`` (two refusals: torch's
broadcast fails, or it broadcasts to a larger shape), and networks of another class with the
same interface, which the size check leaves to their own checks."""

from __future__ import annotations

import pytest
import torch

from bayesphys.neural_process import data_log_likelihood, field_marginal, physics_elbo
from tests.neural_process.test_model import _elbo_inputs

F64 = torch.float64


def re_shape(shape) -> str:
    """``shape`` as printed in a message, escaped for ``match``."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize(
    "shape",
    [
        (3, 1),  # B = 2: not broadcastable (torch raises)
        (2, 4),  # N = 3: not broadcastable
        (1, 2, 3),  # broadcasts, but to [1, 2, 3], not [B, N] = [2, 3]
        (2, 2, 1),  # broadcasts, to [2, 2, 3]
    ],
)
def test_physics_elbo_refuses_a_sigma_r_that_does_not_broadcast_to_b_n(shape):
    p, fwd, inv, x, z, w = _elbo_inputs(3)
    wts = torch.ones(2, 3, dtype=F64)
    s = torch.full(shape, 0.3, dtype=F64)
    with pytest.raises(
        ValueError,
        match=r"^sigma_r: expected a number or a tensor of shape \(\) or broadcasting to "
        rf"\[B, N\] = \[2, 3\], received shape {re_shape(shape)}$",
    ):
        physics_elbo(p, fwd, inv, x, wts, z, w, s)
    # the shapes it names are read: [B, 1] and [1, N] are taken
    for ok in ((2, 1), (1, 3)):
        physics_elbo(p, fwd, inv, x, wts, z, w, torch.full(ok, 0.3, dtype=F64))


class _Wrapped(torch.nn.Module):
    """A network of another class with the same interface (delegates to ``net``)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *a, **k):
        return self.net(*a, **k)

    def sample_with_derivatives(self, *a, **k):
        return self.net.sample_with_derivatives(*a, **k)

    def heads(self, *a, **k):
        return self.net.heads(*a, **k)


def test_networks_of_another_class_are_used_as_given():
    """The size check reads ``ForwardNet``/``GICNet`` sizes only; a network of another
    class with their interface is passed over by it and used: the ELBO, its parts, the field
    marginal and the data likelihood equal those of the networks it wraps."""
    p, fwd, inv, x, z, w = _elbo_inputs(4)
    wts = torch.ones(2, 4, dtype=F64)

    def elbo(f, i):
        return physics_elbo(p, f, i, x, wts, z, w, 0.3, torch.Generator().manual_seed(1))

    want, want_parts = elbo(fwd, inv)
    for f, i in ((_Wrapped(fwd), inv), (fwd, _Wrapped(inv)), (_Wrapped(fwd), _Wrapped(inv))):
        got, parts = elbo(f, i)
        assert torch.equal(got, want)
        assert all(torch.equal(parts[k], want_parts[k]) for k in want_parts)
    a, b = field_marginal(p, fwd, x, z, w), field_marginal(p, _Wrapped(fwd), x, z, w)
    assert torch.equal(a.loc, b.loc) and torch.equal(a.cov_diag, b.cov_diag)
    x_obs = x[0]
    y = torch.zeros(2, 4, dtype=F64)
    assert torch.equal(
        data_log_likelihood(p, _Wrapped(fwd), x_obs, y, z, w, 0.1),
        data_log_likelihood(p, fwd, x_obs, y, z, w, 0.1),
    )
