"""GICNet's kernel interpolation holds dense weights [B, P, M, N] (sets x channels x latent
nodes x points): a million observation points on the 2-D Burgers net (20 channels, 100 latent
nodes) need 8 GB a set in float32. Beyond the device's memory it is refused before the
distances, naming the argument that sized it: GICNet's and parameter_posterior's x, a fit's
batch and n_points, calibrate's x_inverse and batch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys.neural_process import GICNet
from bayesphys.problems.rgnp import poisson_test_set
from tests.tiny_models import TINY_GIC, tiny_rgnp


def test_gicnet_refuses_kernel_weights_beyond_memory(memory_limit, no_dense_allocation):
    net = GICNet(1, 2, 1, [-1.0], [1.0], **TINY_GIC)  # 6 channels on 12 latent nodes
    x, v, w = torch.rand(2, 50, 1) * 2 - 1, torch.randn(2, 50), torch.ones(2, 1)
    memory_limit(40_000)  # [2, 6, 12, 50] float32 weights + distances: about 36 kB
    with torch.no_grad():
        assert net(x[:, :5], v[:, :5], w).loc.shape == (2, 2)  # 5 points: 3.6 kB, passes
        no_dense_allocation("torch.cdist")
        with pytest.raises(
            MemoryError,
            match=r"^x: the kernel interpolation of 2 set\(s\) of 50 points onto 12 latent nodes "
            r"in 6 channels \(dense \[2, 6, 12, 50\] kernel weights, torch\.float32\) .* more "
            r"than the 39\.1 KiB of the CPU; pass fewer sets \(B\) or fewer points",
        ):
            net(x, v, w)


def test_parameter_posterior_names_its_x(memory_limit, no_dense_allocation):
    m = tiny_rgnp()
    x = torch.linspace(-0.9, 0.9, 50)[:, None]
    memory_limit(20_000)
    no_dense_allocation("torch.cdist")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained
        with pytest.raises(MemoryError, match=r"^x: the kernel interpolation of 1 set\(s\) of 50"):
            m.parameter_posterior(x, torch.sin(x[:, 0]), torch.ones(1))


def test_fit_names_batch_and_n_points_before_the_first_step(memory_limit, no_dense_allocation):
    m = tiny_rgnp(aug_weight=0.0)  # batch 4, n_points 16: [4, 6, 12, 16] weights, twice
    memory_limit(40_000)  # about 45 kB with the backward's buffer
    no_dense_allocation("torch.cdist")
    with pytest.raises(
        MemoryError,
        match=r"^batch/n_points: the kernel interpolation of 4 set\(s\) of 16 points .* use a "
        r"smaller batch or fewer points a set \(n_points\)",
    ):
        m.fit(steps=2, progress=False)
    assert m.steps_done == 0


def test_calibrate_names_x_inverse_and_batch(memory_limit):
    m = tiny_rgnp(dtype=torch.float64)
    val = poisson_test_set(4, seed=5, n_nodes=41)
    xin = np.repeat(val["x"][None, 1:-1, None], 4, 0)  # 39 interior points for each instance
    uin = val["u"][:, 1:-1]
    # [2, 6, 12, 39] float64 weights and distances: about 52 kB; the field posteriors pass
    memory_limit(60_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained, and over half the memory
        with pytest.raises(
            MemoryError,
            match=r"^x_inverse/batch: the kernel interpolation of 2 set\(s\) of 39 points .* "
            r"use a smaller batch or fewer points in x_inverse",
        ):
            m.calibrate(
                val["x"], val["u"], val["z"], val["w"], x_inverse=xin, u_inverse=uin, batch=2
            )
