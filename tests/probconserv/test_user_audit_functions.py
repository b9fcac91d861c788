"""The less used functions of ``bayesphys.probconserv.__all__`` given what a user may pass.

Each case here used to give a silently wrong answer (a NaN, a scaled or negative variance,
an order-dependent choice) or fail deep inside torch with a message that named nothing.
"""

from __future__ import annotations

import pytest
import torch

from bayesphys.probconserv import gated_discrepancy_variance

F64 = torch.float64


@pytest.mark.parametrize("flags", [[0.5, 2.0], [-1.0, 1.0], [1, 3]])
def test_gate_flags_that_are_not_zero_or_one_are_refused(flags):
    # a weight scaled the variance (2 doubled it), -1 made it negative, without a word
    r, v = torch.ones(2, 1, dtype=F64) * 3, torch.ones(2, 1, dtype=F64)
    with pytest.raises(ValueError, match=r"^outside: expected flags \(True/False or 0/1"):
        gated_discrepancy_variance(r, v, 1.0, 1.0, torch.tensor(flags), 1.0)


def test_gate_flags_as_bools_or_zero_one_give_the_same_variance():
    r, v = torch.tensor([[3.0], [2.0]], dtype=F64), torch.ones(2, 1, dtype=F64)
    want = gated_discrepancy_variance(r, v, 1.0, 0.5, torch.tensor([True, False]), 1.0)
    for flags in ([1, 0], [1.0, 0.0], torch.tensor([1, 0])):
        got = gated_discrepancy_variance(r, v, 1.0, 0.5, flags, 1.0)
        assert torch.equal(got, want)
    assert want[0, 0] == pytest.approx((9.0 - 1.0) / 0.5) and want[1, 0] == 0.0
