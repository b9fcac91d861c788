"""The ``ddp-training`` example's data and network do not depend on torch's default dtype:
under ``torch.set_default_dtype(torch.float64)`` the same seed drew other data, in float64,
and the network documented as float32 was built in float64 (failed before)."""

from __future__ import annotations

import torch

from bayesphys.examples.ddp_training import heat_data, make_model


def _build():
    torch.manual_seed(0)
    return heat_data(16, seed=0), make_model(width=8)


def test_data_and_network_are_float32_under_a_float64_default():
    (x_ref, y_ref), net_ref = _build()
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        (x, y), net = _build()
    finally:
        torch.set_default_dtype(before)
    assert x.dtype == y.dtype == torch.float32
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    for p, q in zip(net.parameters(), net_ref.parameters(), strict=True):
        assert p.dtype == torch.float32 and torch.equal(p, q)
