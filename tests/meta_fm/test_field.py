"""The time embedding and Fourier features of the Meta FM vector field, against their formulas."""

from __future__ import annotations

import math

import numpy as np
import torch

from bayesphys.meta_fm import FourierFeatures, time_embedding


def test_time_embedding_is_cos_and_sin_at_geometric_frequencies():
    """[cos(t w_j), sin(t w_j)] with w_j = max_positions^(-j / (h - 1)), j = 0..h-1, h = dim/2:
    frequencies from 1 down to 1 / max_positions (module docstring)."""
    t = torch.tensor([0.0, 0.3, 1.0, 7.5], dtype=torch.float64)
    for dim, top in ((8, 10000.0), (6, 100.0), (2, 50.0)):
        h = dim // 2
        w = np.array([top ** (-j / max(h - 1, 1)) for j in range(h)])
        arg = t.numpy()[:, None] * w
        want = np.concatenate([np.cos(arg), np.sin(arg)], -1)
        got = time_embedding(t, dim, max_positions=top)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-13, atol=1e-15)


def test_fourier_features_are_cos_and_sin_of_two_pi_x_b():
    """[cos(2 pi x B), sin(2 pi x B)] with B the registered buffer [d, m]."""
    ff = FourierFeatures(3, 5, 0.7, generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    b = ff.B.numpy()
    assert b.shape == (3, 5)
    proj = 2 * math.pi * np.einsum("...d,dm->...m", x.numpy(), b)
    want = np.concatenate([np.cos(proj), np.sin(proj)], -1)
    np.testing.assert_allclose(ff(x).numpy(), want, rtol=1e-12, atol=1e-13)
