"""The Fisher-Kolmogorov helpers as a user calls them: empty grids, lists, a bad ``shape``."""

from __future__ import annotations

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
