"""``shift`` (and ``d1``/``d2`` through it) names a bad ``axis`` or a non-tensor ``u``; torch
answered ``roll(): argument 'dims' must be tuple of ints`` or ``tuple index out of range``."""

import pytest
import torch

from bayesphys.problems.stencil import d1, d2, div_flux, face_average, laplacian, shift

BCS = ("periodic", "neumann", "zero")


@pytest.mark.parametrize("bc", BCS)
@pytest.mark.parametrize("axis", [2, -3, 7])
def test_shift_refuses_an_axis_out_of_range(bc, axis):
    u = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=rf"^axis: expected an axis of a 2-D tensor u .*{axis}$"):
        shift(u, axis, 1, bc)


@pytest.mark.parametrize("bc", BCS)
@pytest.mark.parametrize("axis", [True, 0.5, "0", None])
def test_shift_refuses_an_axis_that_is_not_an_int(bc, axis):
    with pytest.raises(TypeError, match=r"^axis: expected an int"):
        shift(torch.zeros(3, 4), axis, 1, bc)


@pytest.mark.parametrize("bc", BCS)
def test_shift_refuses_a_list(bc):
    with pytest.raises(TypeError, match=r"^u: expected a torch.Tensor, received list"):
        shift([1.0, 2.0, 3.0], 0, 1, bc)


def test_derivatives_name_a_bad_axis():
    u = torch.zeros(5)
    with pytest.raises(ValueError, match=r"^axis: expected an axis of a 1-D tensor"):
        d1(u, 1, 0.1)
    with pytest.raises(ValueError, match=r"^axis: expected an axis of a 1-D tensor"):
        d2(u, -2, 0.1)


@pytest.mark.parametrize("bc", BCS)
def test_shift_of_an_empty_axis_is_empty(bc):
    """A zero-length axis has nothing to shift (neumann/zero raised ``start out of range``)."""
    u = torch.zeros(3, 0)
    for k in (1, -2):
        assert shift(u, 1, k, bc).shape == (3, 0)


@pytest.mark.parametrize("bc", BCS)
def test_negative_axis_matches_positive(bc):
    u = torch.arange(12.0).reshape(3, 4)
    for k in (1, -1, 2):
        assert torch.equal(shift(u, -1, k, bc), shift(u, 1, k, bc))
        assert torch.equal(shift(u, -2, k, bc), shift(u, 0, k, bc))


def test_laplacian_and_div_flux_refuse_a_list():
    """A list failed with ``AttributeError: 'list' object has no attribute 'ndim'``."""
    with pytest.raises(TypeError, match=r"^u: expected a torch.Tensor, received list"):
        laplacian([1.0, 2.0, 3.0], [1.0])
    with pytest.raises(TypeError, match=r"^u: expected a torch.Tensor, received list"):
        div_flux([1.0, 2.0, 3.0], [torch.ones(3)], [1.0])


def test_face_average_of_an_empty_axis_is_empty():
    """``last[-1] = 0`` raised IndexError on an axis of length 0 (tissue_faces of an empty
    grid with it)."""
    assert face_average(torch.zeros(3, 0), 1).shape == (3, 0)
    assert face_average(torch.zeros(0, 3), 0).shape == (0, 3)
