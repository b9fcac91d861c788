"""Review 74: valid but extreme inputs of the population problems and the field's modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys.meta_fm import (
    FourierFeatures,
    VectorField,
    ideal_shift_prediction,
    shift_prediction,
)
from bayesphys.problems.populations import (
    PopulationPairs,
    interacting_particles,
    letters,
    linear_map_exact_field,
    particle_velocity,
)


def test_exact_field_of_integer_points_reads_the_time_as_given():
    """The time was cast to the points' integer dtype: t = 0.5 read as 0, a wrong field."""
    a, b = 0.5 * torch.eye(2), torch.zeros(2)
    want = linear_map_exact_field(torch.tensor([[3.0, 3.0]]), 0.5, a, b)  # -(2/3) x = -2
    got = linear_map_exact_field(torch.tensor([[3, 3]]), 0.5, a, b)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(want, torch.full((1, 2), -2.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_exact_field_of_half_precision_points_is_computed(dtype):
    """torch's solve has no half kernel: NotImplementedError ('lu_cpu' for 'Half')."""
    a, b = 0.5 * torch.eye(2), torch.zeros(2)
    x = torch.tensor([[3.0, 3.0]])
    got = linear_map_exact_field(x.to(dtype), 0.5, a.to(dtype), b.to(dtype))
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), torch.full((1, 2), -2.0))


def test_exact_field_at_a_singular_time_names_it():
    """A = 0 collapses every path onto b at t = 1: torch's raw _LinAlgError before."""
    with pytest.raises(ValueError, match=r"^t/a: M_t = \(1-t\)I \+ tA is singular"):
        linear_map_exact_field(torch.zeros(2, 2), 1.0, torch.zeros(2, 2), torch.zeros(2))


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        (dict(source_noise=1e300), "source_noise"),
        (dict(target_noise=1e39), "target_noise"),
        (dict(target_noise=1e6, dtype=torch.float16), "target_noise"),
    ],
)
def test_letters_whose_noise_overflows_the_dtype_are_refused(kw, name):
    """Returned as populations of Inf points, silently."""
    with pytest.raises(ValueError, match=rf"^{name}: .* overflow"):
        letters(rotations=1, train_letters="A", **kw)


def test_letters_of_a_large_noise_in_float64_are_kept():
    data = letters(rotations=1, train_letters="A", source_noise=1e300, dtype=None)
    assert all(bool(torch.isfinite(s).all()) for s in data.source)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ell", [1e-30, 1e-200, 1e160, 1e300])
def test_particle_velocity_of_an_extreme_length_scale_is_its_limit(ell, dtype):
    """A tiny ell gave NaN velocities (ell**2 underflowed: 0 / 0 on the kernel's diagonal),
    a huge one OverflowError (ell**2 in Python); both limits have no repulsion."""
    x = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(0), dtype=dtype)
    got = particle_velocity(x, ell=ell)
    torch.testing.assert_close(got, particle_velocity(x, b=0.0))


def test_particles_of_a_huge_length_scale_are_simulated():
    """OverflowError (34, 'Numerical result out of range') naming nothing."""
    kw = dict(n_train=1, n_cal=0, n_test=0, n_points=4)
    data = interacting_particles(ell=1e300, **kw)
    torch.testing.assert_close(data.target[0], interacting_particles(b=0.0, **kw).target[0])


def test_vector_field_names_points_that_are_no_tensor():
    """AttributeError: 'numpy.ndarray' object has no attribute 'is_floating_point'."""
    field = VectorField(2, width=8, layers=2, time_dim=4, fourier=2)
    with pytest.raises(TypeError, match=r"^x: expected a torch.Tensor of points \[\.\.\., 2\]"):
        field(0.5, np.ones((5, 2), dtype=np.float32))


def test_fourier_features_name_points_of_another_dimension():
    """torch's raw 'mat1 and mat2 shapes cannot be multiplied (4x3 and 2x3)'."""
    ff = FourierFeatures(2, 3, 1.0)
    with pytest.raises(ValueError, match=r"^x: expected points \[\.\.\., 2\], received \(4, 3\)"):
        ff(torch.ones(4, 3))
    with pytest.raises(TypeError, match=r"^x: expected a torch.Tensor"):
        ff(np.ones((4, 2)))


def _single_point_pairs() -> PopulationPairs:
    src, tgt = [torch.tensor([[1.0, 2.0]])], [torch.tensor([[3.0, 5.0]])]
    return PopulationPairs("one", src, tgt, torch.tensor([0]), {"train": [0]}, True)


def test_shift_baselines_of_single_point_populations():
    """Refused as 'single-point populations cannot be embedded': the baselines embed
    nothing, and one point has a mean."""
    data = _single_point_pairs()
    torch.testing.assert_close(ideal_shift_prediction(data)[0], torch.tensor([[3.0, 5.0]]))
    torch.testing.assert_close(shift_prediction(data, data)[0], torch.tensor([[3.0, 5.0]]))


def test_shift_baselines_still_refuse_empty_populations():
    src, tgt = [torch.zeros(0, 2)], [torch.zeros(0, 2)]
    data = PopulationPairs("none", src, tgt, torch.tensor([0]), {"train": [0]}, True)
    with pytest.raises(ValueError, match=r"^data\.source\[0\]: .* at least 1 point"):
        ideal_shift_prediction(data)
