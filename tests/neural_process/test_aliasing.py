"""A neural-process module's buffers are its own: two modules built from one caller tensor do
not share it (review of aliasing; each test failed before its mend)."""

from __future__ import annotations

import torch

from bayesphys.neural_process import KernelInterpolation


def test_kernel_interpolation_copies_its_grid():
    """KernelInterpolation registered the caller's grid itself as its buffer: loading a state
    into one module (load_state_dict copies into buffers in place) rewrote the caller's grid
    and the grid of every other module built on it."""
    grid = torch.linspace(0.0, 1.0, 5).unsqueeze(-1)
    a, b = KernelInterpolation(grid, 2), KernelInterpolation(grid, 2)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    state["grid"] = state["grid"] + 3.0
    b.load_state_dict(state)
    torch.testing.assert_close(b.grid, grid + 3.0, rtol=0, atol=0)
    assert torch.equal(grid, torch.linspace(0.0, 1.0, 5).unsqueeze(-1))
    assert torch.equal(a.grid, grid)
    grid.add_(1.0)  # nor does a later edit of the caller's tensor reach the modules
    assert torch.equal(a.grid, torch.linspace(0.0, 1.0, 5).unsqueeze(-1))
