"""Property tests of the multigrid decomposition's exact algebra for random shapes of 1 to 4
axes (size-1 axes, some axes not coarsened): the interpolation to the fine grid is a partition
of unity and reproduces functions linear in each axis (end points aligned), and the map from
coefficients to the field is linear."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.odil import Multigrid

F64 = torch.float64


def _linear_field(shape: tuple[int, ...], slopes: list[float], offset: float) -> torch.Tensor:
    """offset + sum_k slope_k * s_k on ``shape``, s_k in [0, 1] along axis k (end points at 0
    and 1; a size-1 axis has s = 0)."""
    out = torch.full(shape, offset, dtype=F64)
    for k, n in enumerate(shape):
        s = torch.linspace(0, 1, n, dtype=F64) if n > 1 else torch.zeros(1, dtype=F64)
        view = [1] * len(shape)
        view[k] = n
        out = out + slopes[k] * s.reshape(view)
    return out


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
    levels=st.integers(1, 4),
    data=st.data(),
)
def test_every_level_interpolates_constants_and_linear_functions_exactly(shape, levels, data):
    """A level whose coefficients sample a function linear in each axis (on its own coarse
    grid, the end points aligned with the fine grid's) gives that function on the fine grid,
    constants included; the other levels set to 0; and to_fine is linear in the
    coefficients."""
    nd = len(shape)
    axes = data.draw(st.lists(st.integers(0, nd - 1), unique=True, max_size=nd), label="axes")
    mg = Multigrid(shape, levels, axes or None)
    level = data.draw(st.integers(0, levels - 1), label="level")
    slopes = data.draw(st.lists(st.floats(-3, 3), min_size=nd, max_size=nd), label="slopes")
    offset = data.draw(st.floats(-3, 3), label="offset")
    coarse = mg.level_shapes[level]
    parts = [torch.zeros(m, dtype=F64) for m in mg.sizes]
    # a coarse axis of size 1 holds the value at s = 0 and copies it: only a constant along it
    slopes_here = [0.0 if (coarse[k] == 1 and shape[k] > 1) else v for k, v in enumerate(slopes)]
    parts[level] = _linear_field(coarse, slopes_here, offset).reshape(-1)
    got = mg.to_fine(torch.cat(parts))
    want = _linear_field(shape, slopes_here, offset)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12 * (1 + sum(map(abs, slopes))))
    g = torch.Generator().manual_seed(len(shape) * 31 + levels)
    c1 = torch.randn(mg.size, generator=g, dtype=F64)
    c2 = torch.randn(mg.size, generator=g, dtype=F64)
    torch.testing.assert_close(
        mg.to_fine(2.0 * c1 - 0.5 * c2),
        2.0 * mg.to_fine(c1) - 0.5 * mg.to_fine(c2),
        rtol=0,
        atol=1e-12 * levels,
    )
