"""Public type hints say what the functions accept: a type checker reads them as the contract.

Each case pairs a hint with a call the function documents and accepts at run time: a ``seed``
of ``None`` (drawn from torch's global stream), a ``dtype`` by name or ``None``, a
``sample_shape`` given as an int, numpy arrays and numbers for the metrics that convert them.
A hint narrower than the accepted input made a checker (mypy, an IDE) flag correct calls.
"""

from __future__ import annotations

import types
import typing

import numpy as np
import pytest
import torch

import bayesphys
from bayesphys import metrics
from bayesphys.neural_process import evaluate as np_evaluate
from bayesphys.neural_process.grids import GridMeasure
from bayesphys.problems import populations, rgnp


def _members(hint: object) -> set[object]:
    """The types a hint admits (a union's members, generics by their origin)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return {typing.get_origin(a) or a for a in args}
    return {typing.get_origin(hint) or hint}


def _hint(fn: object, name: str) -> set[object]:
    return _members(typing.get_type_hints(fn)[name])


@pytest.mark.parametrize(
    "fn",
    [
        rgnp.poisson_test_set,
        rgnp.poisson_sensor_data,
        rgnp.invariance_points,
        rgnp.burgers_test_set,
        np_evaluate.burgers_inverse_inputs,
    ],
    ids=lambda f: f.__name__,
)
def test_seeds_documented_as_optional_are_hinted_optional(fn):
    assert "``None``" in fn.__doc__
    assert type(None) in _hint(fn, "seed")


def test_an_optional_seed_is_accepted_at_run_time():
    assert rgnp.invariance_points(3, "uniform", seed=None).shape == (3,)


@pytest.mark.parametrize(
    "fn",
    [
        populations.letters,
        populations.linear_map,
        populations.interacting_particles,
        populations.patient_screen,
    ],
    ids=lambda f: f.__name__,
)
def test_population_dtypes_take_a_name_or_none(fn):
    assert {torch.dtype, str, type(None)} <= _hint(fn, "dtype")


def test_grid_sample_takes_a_dtype_name_or_none_and_a_device_none():
    assert {torch.dtype, str, type(None)} <= _hint(GridMeasure.sample, "dtype")
    assert type(None) in _hint(GridMeasure.sample, "device")


@pytest.mark.parametrize(
    "cls",
    [bayesphys.Posterior, bayesphys.GaussianPosterior, bayesphys.SamplePosterior],
    ids=lambda c: c.__name__,
)
def test_posterior_hints(cls):
    for meth in ("sample", "rsample"):
        assert int in _hint(getattr(cls, meth), "sample_shape")
    assert np.ndarray in _hint(cls.quantile, "q")
    assert type(None) in _hint(cls.to, "device")


def test_an_int_sample_shape_and_an_array_of_levels_are_accepted():
    post = bayesphys.GaussianPosterior(
        torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    )
    assert post.sample(4, seed=0).shape == (4, 3)
    assert post.quantile(np.array([0.1, 0.9])).shape == (2, 3)


def test_metric_hints_take_arrays_and_numbers():
    for name in ("mean", "std", "y"):
        assert {np.ndarray, float} <= _hint(metrics.crps_gaussian, name)
    assert float in _hint(metrics.gaussian_nll, "var")
    assert float in _hint(metrics.conservation_error, "target")
    for fn in (metrics.wasserstein, metrics.mmd):
        assert np.ndarray in _hint(fn, "x") and np.ndarray in _hint(fn, "y")
    assert float(metrics.crps_gaussian(0.0, 1.0, np.zeros(2))) == pytest.approx(0.2337, abs=1e-4)


def test_dtype_names_documented_as_accepted_are_hinted():
    from bayesphys.gp_pde.kernels import SpectralMixture1d
    from bayesphys.problems import glioma

    for fn in (bayesphys.as_tensor, glioma.brain_phantom, glioma.mni_atlas):
        assert str in _hint(fn, "dtype"), fn.__name__
    assert {str, type(None)} <= _hint(SpectralMixture1d.__init__, "dtype")
    assert bayesphys.as_tensor("x", [1, 2], dtype="float64").dtype == torch.float64
    assert glioma.brain_phantom(16, dtype="float32")["wm"].dtype == torch.float32


def test_inputs_documented_as_arrays_or_lists_are_hinted_so():
    from bayesphys.odil.glioma import GliomaModel
    from bayesphys.odil.problem import DiscreteProblem
    from bayesphys.probconserv.calibration import HybridCalibration
    from bayesphys.problems import fisher_kolmogorov, glioma, gpme

    cases = [
        (glioma.segment, ("c", "brain")),
        (GliomaModel.full, ("c",)),
        (DiscreteProblem.unpack, ("x",)),
        (HybridCalibration.matches, ("t", "x")),
        (fisher_kolmogorov.fk_forward, ("tissue",)),
        (fisher_kolmogorov.fk_forward_tangent, ("tissue",)),
    ]
    cases += [(cls.diffusivity, ("u", "param")) for cls in (gpme.Diffusion, gpme.Stefan)]
    for fn, names in cases:
        for name in names:
            assert {np.ndarray, float} <= _hint(fn, name), (fn.__qualname__, name)
    labels = glioma.segment([[0.1, 0.7]], 0.6, 0.25, np.ones((1, 2)))
    assert labels.tolist() == [[0, 2]]
