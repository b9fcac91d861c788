"""Arguments of the population generators that gave silently wrong data sets or raw torch
errors: refused, naming them."""

import dataclasses

import pytest
import torch

from bayesphys.problems.populations import (
    PopulationPairs,
    interacting_particles,
    linear_map_exact_field,
    particle_velocity,
    patient_screen,
    redraw_targets,
)


def _particles(**kw):
    return interacting_particles(n_train=2, n_cal=0, n_test=0, n_points=8, **kw)


@pytest.mark.parametrize(
    "kw", [dict(a=1e5), dict(a=-1e3), dict(a=-12.0, dtype=torch.float16)]
)  # ell=1e-30 was here: its NaN was ell**2 underflowing float32, not a divergence (review 74)
def test_particles_whose_simulation_diverges_are_refused(kw):
    """The targets were all NaN (or Inf past float16), returned as a data set."""
    with pytest.raises(ValueError, match=r"^a, b, ell, steps: \d of 2 simulated target"):
        _particles(**kw)


def test_particles_of_stiff_but_stable_settings_are_kept():
    for data in (_particles(b=1e3), _particles(a=-12.0)):  # the latter past float16's range
        assert all(bool(torch.isfinite(t).all()) for t in data.target)


def test_redraw_targets_of_a_screen_without_its_treatments_is_refused():
    scr = patient_screen(n_patients=4, n_treatments=2, n_replicates=1, n_cells=8, dim=3)
    for tr, got in ((None, "None"), (scr.treatment[:3], "3 entries")):
        with pytest.raises(
            ValueError, match=rf"^data: 'B4-screen-fold0' has 8 targets but treatment is {got}"
        ):
            redraw_targets(dataclasses.replace(scr, treatment=tr))  # was "'NoneType' object ..."
    assert len(redraw_targets(scr)) == 8


def test_particle_velocity_names_integer_points():
    with pytest.raises(TypeError, match=r"^x: expected floating points, received torch\.int64"):
        particle_velocity(torch.zeros(1, 3, 2, dtype=torch.long))  # torch's scalar-type error


def test_linear_map_exact_field_names_a_time_torch_cannot_read():
    with pytest.raises(TypeError, match=r"^t: expected a time"):
        linear_map_exact_field(torch.zeros(3, 2), "0.5", torch.eye(2), torch.zeros(2))
    got = linear_map_exact_field(torch.zeros(3, 2), [0.1, 0.2, 0.3], torch.eye(2), torch.zeros(2))
    assert got.shape == (3, 2)


def test_the_dimension_of_pairs_whose_source_is_no_population_is_refused_by_name():
    def pairs(src):
        return PopulationPairs("toy", src, src, torch.arange(1), {"train": [0]}, paired=True)

    for src, got in (([torch.zeros(4)], r"\(4,\)"), ([[[0.0, 1.0]]], "list")):
        with pytest.raises(
            ValueError, match=rf"^data\.source\[0\]: expected .* \[n, d\], received {got}"
        ):
            _ = pairs(src).dim  # IndexError: tuple index out of range / AttributeError
    assert pairs([torch.zeros(4, 3)]).dim == 3
