"""Property tests of the finite-difference stencils: on each boundary rule's eigenvectors
the stencils act as the closed-form symbols (exact to round-off)."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.problems.stencil import d1, d2, laplacian

F64 = torch.float64


def _mode(bc: str, n: int, m: int) -> tuple[torch.Tensor, float]:
    """An eigenvector ``[n]`` of the 3-point second difference (h = 1) under ``bc`` and its
    eigenvalue: Fourier modes (periodic), DCT-II cosines (neumann: the ghost cell copies the
    edge value, a mirror about the outer face), DST-I sines (zero: the ghost cell is 0)."""
    j = torch.arange(n, dtype=F64)
    if bc == "periodic":
        th = 2 * math.pi * m / n
        return torch.cos(th * j + 0.3), -4 * math.sin(th / 2) ** 2
    if bc == "neumann":
        th = math.pi * m / n
        return torch.cos(th * (j + 0.5)), -4 * math.sin(th / 2) ** 2
    th = math.pi * (m + 1) / (n + 1)
    return torch.sin(th * (j + 1)), -4 * math.sin(th / 2) ** 2


@settings(max_examples=40, deadline=None)
@given(
    bc=st.sampled_from(["periodic", "neumann", "zero"]),
    grid=st.lists(st.integers(2, 7), min_size=1, max_size=3),
    data=st.data(),
    lead=st.integers(0, 2),
)
def test_laplacian_acts_on_separable_eigenvectors_as_the_sum_of_the_symbols(bc, grid, data, lead):
    """u = prod_a v_a(j_a) with v_a an eigenvector of the second difference along axis a
    (eigenvalue lambda_a at h = 1): laplacian(u) = (sum_a lambda_a / h_a^2) u, and d2 along
    one axis gives that axis' term alone, for any steps and leading batch dims."""
    modes = [data.draw(st.integers(0, n - 1)) for n in grid]
    steps = [data.draw(st.floats(0.05, 2.0)) for _ in grid]
    u = torch.ones((), dtype=F64)
    lam = []
    for n, m, h in zip(grid, modes, steps):
        v, ev = _mode(bc, n, m)
        u = u[..., None] * v
        lam.append(ev / h**2)
    u = u.expand(*([2] * lead), *grid)
    scale = 1 + sum(abs(v) for v in lam)
    torch.testing.assert_close(laplacian(u, steps, bc=bc), sum(lam) * u, rtol=0, atol=1e-12 * scale)
    for a, h in enumerate(steps):
        torch.testing.assert_close(
            d2(u, lead + a, h, bc=bc), lam[a] * u, rtol=0, atol=1e-12 * scale
        )


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 12), data=st.data(), h=st.floats(0.05, 2.0))
def test_periodic_first_differences_have_the_fourier_symbols(n, data, h):
    """On e^{i theta j} (theta = 2 pi m / n) the periodic differences multiply by their symbols:
    central i sin(theta) / h, forward (e^{i theta} - 1) / h, backward (1 - e^{-i theta}) / h."""
    m = data.draw(st.integers(0, n - 1))
    th = 2 * math.pi * m / n
    z = torch.exp(1j * th * torch.arange(n, dtype=F64))
    symbols = {
        "central": 1j * math.sin(th) / h,
        "forward": (complex(math.cos(th), math.sin(th)) - 1) / h,
        "backward": (1 - complex(math.cos(th), -math.sin(th))) / h,
    }
    for scheme, s in symbols.items():
        torch.testing.assert_close(d1(z, 0, h, scheme=scheme), s * z, rtol=0, atol=1e-12 / h)
