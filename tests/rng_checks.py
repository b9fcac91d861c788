"""Random-stream helpers shared by the tests of several packages: building a seeded model must
leave the caller's global random streams (python, numpy, torch) as they were; a generator that
reports another device (for device checks on a machine with only a CPU)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def _draws() -> tuple:
    return torch.rand(4), np.random.rand(4), random.random()


def leaves_global_rng(build: Callable[[], Any]) -> Any:
    """Run ``build()`` between two identical seedings of the global streams and assert that the
    draws after it equal those without it; returns what ``build`` returned."""
    for seed in (123, 2024):  # two states: a build that reseeds would match at most one
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        want = _draws()
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        out = build()
        got = _draws()
        assert torch.equal(got[0], want[0]), "torch's global stream moved"
        assert np.array_equal(got[1], want[1]), "numpy's global stream moved"
        assert got[2] == want[2], "python's global stream moved"
    return out


class FakeDeviceGenerator(torch.Generator):
    """A CPU generator that reports another device (no second device exists on the CPU)."""

    def __new__(cls, device: str) -> FakeDeviceGenerator:
        return super().__new__(cls)  # torch.Generator(device) would need that device

    def __init__(self, device: str) -> None:
        super().__init__()
        self._dev = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._dev
