"""Multigrid decomposition (:class:`bayesphys.odil.Multigrid`) against an independent
interpolation, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys.odil import Multigrid


def _interp_reference(c: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation with the end points aligned, one axis at a time (np.interp)."""
    for k, (n_out, n_in) in enumerate(zip(shape, c.shape)):
        if n_out != n_in:
            xo = np.linspace(0, n_in - 1, n_out)
            c = np.apply_along_axis(lambda v, xo=xo, n=n_in: np.interp(xo, np.arange(n), v), k, c)
    return c


@pytest.mark.parametrize(
    "shape, levels, axes",
    [((17,), 3, None), ((5, 7), 3, None), ((9, 6, 5), 3, None), ((4, 9, 6, 5), 3, None),
     ((4, 9, 6, 5), 2, (1, 2, 3)), ((9, 6), 3, (1,)), ((2,), 4, None)],
)  # fmt: skip
def test_to_fine_is_the_sum_of_the_interpolated_levels(shape, levels, axes):
    mg = Multigrid(shape, levels, axes)
    gen = np.random.default_rng(0)
    coeffs = gen.normal(size=mg.size)
    ref, off = np.zeros(shape), 0
    for s, m in zip(mg.level_shapes, mg.sizes):
        ref += _interp_reference(coeffs[off : off + m].reshape(s), shape)
        off += m
    np.testing.assert_allclose(mg.to_fine(torch.tensor(coeffs)).numpy(), ref, atol=1e-12)
    u = torch.tensor(gen.normal(size=shape))
    assert torch.equal(mg.to_fine(mg.from_fine(u)), u)


def test_non_float_input_is_refused_by_name():
    """An array failed with "'numpy.ndarray' object has no attribute 'dim'" and an integer
    tensor in torch's interpolation kernel, neither naming the argument."""
    mg = Multigrid((8, 8), 2)
    with pytest.raises(TypeError, match="coeffs: expected a torch.Tensor"):
        mg.to_fine(np.zeros(mg.size))
    with pytest.raises(TypeError, match="coeffs: expected a floating-point tensor"):
        mg.to_fine(torch.zeros(mg.size, dtype=torch.long))
    with pytest.raises(TypeError, match="u: expected a floating-point tensor"):
        mg.from_fine(torch.ones(8, 8, dtype=torch.long))
    assert mg.to_fine(torch.zeros(mg.size, dtype=torch.float32)).dtype == torch.float32
