"""The Fisher-Kolmogorov helpers as a user calls them: empty grids, lists, a bad ``shape``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys.problems.fisher_kolmogorov import (
    fk_forward,
    fk_forward_tangent,
    initial_condition,
    logistic_step,
    max_step,
    tissue_faces,
)

KW = dict(t_end=1.0, steps=4, spacing=1.0)


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_an_empty_grid_gives_an_empty_state(scheme):
    """tissue_faces, the stability bound and fk_forward raised IndexError ("index -1 is out
    of bounds", "start out of range") on a grid with an axis of length 0."""
    faces = tissue_faces(torch.zeros(0, 4), torch.zeros(0, 4))
    assert [tuple(f.shape) for f in faces] == [(0, 4), (0, 4)]
    # no diffusion on no cells: the bound is the reaction's alone, 2 / rho (euler)
    assert max_step(faces, 0.1, 0.1, 1.0, "euler") == pytest.approx(20.0)
    c0 = torch.zeros(0, 4)
    assert fk_forward(c0, faces, 0.1, 0.1, scheme=scheme, **KW).shape == (0, 4)
    c, traj = fk_forward(c0, faces, 0.1, 0.1, scheme=scheme, save_every=2, **KW)
    assert c.shape == (0, 4) and traj.shape == (3, 0, 4)
    _, dc = fk_forward_tangent(
        c0, torch.zeros(2, 0, 4), faces, 0.1, 0.1, torch.zeros(2), torch.zeros(2),
        scheme=scheme, **KW,
    )  # fmt: skip
    assert dc.shape == (2, 0, 4)


@pytest.mark.parametrize("shape", [8, None, "88", 2.5])
def test_initial_condition_refuses_a_shape_that_is_not_a_sequence(shape):
    """An int or None failed with "'int' object is not iterable"."""
    with pytest.raises(TypeError, match=r"^shape: expected a sequence of grid sizes"):
        initial_condition(shape, torch.tensor([1.0]), 1.0)


def test_initial_condition_refuses_no_axes_and_takes_any_sequence():
    """An empty shape failed inside torch.meshgrid ("expects a non-empty TensorList")."""
    with pytest.raises(ValueError, match=r"^shape: expected at least one axis"):
        initial_condition((), torch.zeros(0), 1.0)
    ref = initial_condition((4, 5), torch.tensor([1.0, 2.0]), 1.0)
    for shape in ([4, 5], torch.Size([4, 5]), np.array([4, 5])):
        assert torch.equal(initial_condition(shape, torch.tensor([1.0, 2.0]), 1.0), ref)


def test_logistic_step_takes_a_list_and_refuses_a_non_finite_one():
    """A list failed with "'list' object has no attribute 'is_floating_point'"."""
    ref = logistic_step(torch.tensor([0.1, 0.5], dtype=torch.float64), 0.3, 2.0)
    assert torch.equal(logistic_step([0.1, 0.5], 0.3, 2.0), ref)
    with pytest.raises(ValueError, match=r"^c: expected finite values"):
        logistic_step([float("nan")], 0.3, 2.0)
    with pytest.raises(TypeError, match=r"^c: expected a real state"):
        logistic_step(torch.tensor([0.5j]), 0.3, 2.0)
    # an integer state is computed in the default floating dtype, as before
    assert logistic_step(torch.tensor([0, 1]), 0.5, 1.0).dtype == torch.get_default_dtype()


def _faces_and_state(n: int = 6):
    wm = torch.full((n, n), 0.9, dtype=torch.float64)
    faces = tissue_faces(wm, 0.1 * torch.ones_like(wm))
    return faces, initial_condition((n, n), torch.tensor([3.0, 3.0], dtype=torch.float64), 1.0)


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_the_solvers_take_the_faces_stacked_in_one_tensor(scheme):
    """A ``[d, *grid]`` tensor of faces (a sequence of ``d`` maps, as max_step and fk_residual
    take it) failed in fk_forward and fk_forward_tangent with "Boolean value of Tensor with
    more than one value is ambiguous"."""
    faces, c0 = _faces_and_state()
    stacked = torch.stack(faces)
    want = fk_forward(c0, faces, 0.1, 0.1, scheme=scheme, **KW)
    torch.testing.assert_close(fk_forward(c0, stacked, 0.1, 0.1, scheme=scheme, **KW), want)
    dc0, e = torch.zeros(1, 6, 6, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    args = (0.1, 0.1, e, e)
    c, dc = fk_forward_tangent(c0, dc0, stacked, *args, scheme=scheme, **KW)
    c_ref, dc_ref = fk_forward_tangent(c0, dc0, faces, *args, scheme=scheme, **KW)
    torch.testing.assert_close(c, want)
    torch.testing.assert_close(dc, dc_ref)
    torch.testing.assert_close(c_ref, want)


def test_the_solvers_take_a_tissue_mask_given_as_a_list_or_an_array():
    """A nested list mask failed with "'list' object has no attribute 'shape'" (the state,
    the directions and the rates are converted from lists); an array mask multiplied the
    state with numpy's DeprecationWarning ("__array_wrap__ must accept context")."""
    faces, c0 = _faces_and_state()
    mask = np.ones((6, 6))
    mask[0] = 0.0
    want = fk_forward(c0, faces, 0.1, 0.1, tissue=torch.as_tensor(mask), **KW)
    got = fk_forward(c0, faces, 0.1, 0.1, tissue=mask.tolist(), **KW)
    torch.testing.assert_close(got, want)
    # the mask was applied (it zeroes c0's first row; these faces let the state diffuse back)
    assert not torch.allclose(got, fk_forward(c0, faces, 0.1, 0.1, **KW))
    dc0, e = torch.ones(1, 6, 6, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    c, dc = fk_forward_tangent(c0, dc0, faces, 0.1, 0.1, e, e, tissue=mask.tolist(), **KW)
    mask_t = torch.as_tensor(mask)
    c_ref, dc_ref = fk_forward_tangent(c0, dc0, faces, 0.1, 0.1, e, e, tissue=mask_t, **KW)
    torch.testing.assert_close(c, want)
    torch.testing.assert_close(dc, dc_ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        torch.testing.assert_close(fk_forward(c0, faces, 0.1, 0.1, tissue=mask, **KW), want)
        _, dc = fk_forward_tangent(c0, dc0, faces, 0.1, 0.1, e, e, tissue=mask, **KW)
    torch.testing.assert_close(dc, dc_ref)
    with pytest.raises(ValueError, match=r"^tissue: expected the grid's shape \(6, 6\)"):
        fk_forward(c0, faces, 0.1, 0.1, tissue=mask[:3].tolist(), **KW)
