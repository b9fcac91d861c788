"""The couplings draw their pairs on the CPU (POT's plans are CPU arrays), whatever the points'
device: a CUDA generator used to fail inside ``torch.multinomial``/``torch.rand`` with "Expected
a 'cpu' device type for generator"; it is refused up front, naming ``generator``."""

from __future__ import annotations

import pytest
import torch

from bayesphys.meta_fm import couple, full_ot_plans, ot_pairing, sample_plan_partners
from tests.rng_checks import FakeDeviceGenerator


def _clouds(device="cpu"):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 12, 2, generator=g).to(device), torch.randn(2, 12, 2, generator=g).to(
        device
    )


def _calls(gen):
    x0, x1 = _clouds()
    plan = full_ot_plans([x0[0]], [x1[0]])[0]
    return [
        lambda: ot_pairing(x0[0], x1[0], gen),
        lambda: couple(x0, x1, "ot", gen),
        lambda: sample_plan_partners(plan, torch.arange(5), gen),
    ]


def test_a_generator_on_another_device_is_refused():
    for call in _calls(FakeDeviceGenerator("cuda:0")):
        with pytest.raises(ValueError, match=r"generator: expected a CPU torch.Generator"):
            call()


def test_a_non_generator_is_refused():
    for call in _calls(3):
        with pytest.raises(TypeError, match="generator: expected a torch.Generator or None"):
            call()


def test_a_cpu_generator_draws_reproducibly():
    x0, x1 = _clouds()
    a = couple(x0, x1, "ot", torch.Generator().manual_seed(4))
    b = couple(x0, x1, "ot", torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    plan = full_ot_plans([x0[0]], [x1[0]])[0]
    rows = torch.arange(12)
    assert torch.equal(
        sample_plan_partners(plan, rows, torch.Generator().manual_seed(1)),
        sample_plan_partners(plan, rows, torch.Generator().manual_seed(1)),
    )


@pytest.mark.gpu
def test_couplings_on_cuda(cuda_device):
    x0, x1 = _clouds(cuda_device)
    with pytest.raises(ValueError, match="generator: expected a CPU torch.Generator"):
        couple(x0, x1, "ot", torch.Generator(device=cuda_device))
    a, b = couple(x0, x1, "ot", torch.Generator().manual_seed(2))
    assert a.device.type == "cuda" and b.device.type == "cuda"
    ca, cb = couple(x0.cpu(), x1.cpu(), "ot", torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.cpu(), ca)
    torch.testing.assert_close(b.cpu(), cb)
