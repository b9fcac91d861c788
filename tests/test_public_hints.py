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


def _probconserv_array_cases():
    from bayesphys.probconserv import evaluate, inequality, mass_check, mixture_update, monotone
    from bayesphys.probconserv import update as pc_update

    return [
        (mass_check.mass_residual, ("g", "mass")),
        (mass_check.fit_mass_kappa, ("residual", "variance")),
        (mass_check.gated_discrepancy_variance, ("residual", "variance", "outside")),
        (mass_check.discrepancy_roots, ("x", "g")),
        (mass_check.add_discrepancy, ("sd2", "root")),
        (monotone.project_monotone, ("draws", "g", "b")),
        (inequality.project_nonnegative, ("draws", "g", "b")),
        (evaluate.shock_position, ("draws", "x")),
        (evaluate.slice_scores, ("truth", "x", "mass")),
        (mixture_update.conserve_latent_mixture, ("means", "variances", "x", "mass")),
        (pc_update.cov_times_gt, ("gt",)),
        (pc_update.trapezoid_weights, ("x",)),
    ]


def test_converted_probconserv_inputs_are_hinted_and_documented_as_arrays():
    from bayesphys.meta_fm.field import VectorField
    from bayesphys.odil.recalibration import fit_recalibration_map

    cases = [*_probconserv_array_cases(), (fit_recalibration_map, ("z",))]
    cases.append((VectorField.forward, ("t",)))
    for fn, names in cases:
        for name in names:
            assert {np.ndarray, float} <= _hint(fn, name), (fn.__qualname__, name)
        assert "array" in fn.__doc__, fn.__qualname__
    from bayesphys.diagnostics.simulate import front_position

    assert np.ndarray in _hint(front_position, "x") and "array" in front_position.__doc__


def test_converted_probconserv_inputs_work_as_arrays_and_lists():
    from bayesphys.meta_fm.field import VectorField
    from bayesphys.odil.recalibration import fit_recalibration_map
    from bayesphys.probconserv import evaluate, inequality, mass_check, monotone
    from bayesphys.probconserv import update as pc_update

    f64 = torch.float64
    cov = torch.eye(4, dtype=f64).expand(2, 3, 4, 4)
    r, v = mass_check.mass_residual(np.ones((2, 3, 4)), cov, [1, 1, 1, 1], [[1, 1, 1]] * 2)
    assert r.dtype == v.dtype == f64 and torch.equal(r, torch.full((2, 3), 3.0, dtype=f64))
    assert mass_check.fit_mass_kappa([1, 2, 3, 4], np.ones(4)) == pytest.approx(7.5)
    root, _, gkg = mass_check.discrepancy_roots([0, 1, 2, 3], [1, 1, 1, 1], 1.0)
    assert root.dtype == f64 and gkg > 0
    sd2 = mass_check.gated_discrepancy_variance([[3.0, 1.0]], [[1, 1]], 1.0, 1.0, [1], 0.0)
    assert sd2.tolist() == [[8.0, 0.0]]
    u = monotone.project_monotone([1.0, 3.0, 0.0, 0.5], [0.25] * 4, 1)
    assert u.dtype == f64 and u.tolist() == pytest.approx([1.875, 1.875, 0.125, 0.125])
    with pytest.raises(ValueError, match="draws: expected a floating tensor"):
        monotone.project_monotone([1, 3, 0, 0], [0.25] * 4, 1)  # integer draws: refused
    u = inequality.project_nonnegative(np.array([1.0, -3.0, 0.0, 0.5]), np.full(4, 0.25), 1)
    assert float(u @ torch.full((4,), 0.25, dtype=f64)) == pytest.approx(1.0) and u.min() >= 0
    assert evaluate.shock_position([[1.0, 0.5, -1.0]], [0, 1, 2]).tolist() == [2.0]
    g = pc_update.trapezoid_weights([0, 1, 3])
    assert g.dtype == f64 and g.tolist() == [0.5, 1.5, 1.0]
    gt = pc_update.cov_times_gt(torch.eye(4), [[1], [2], [3], [4]])
    assert gt.dtype == f64 and gt[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    b, s = fit_recalibration_map(np.random.default_rng(0).normal(size=(20, 2)))
    assert b.dtype == s.dtype == f64 and b.shape == s.shape == (2,)
    field = VectorField(2, layers=2, width=8).double()
    x = torch.zeros(2, 2, dtype=f64)
    assert torch.equal(field([0.1, 0.2], x), field(torch.tensor([0.1, 0.2], dtype=f64), x))


def test_slice_scores_and_latent_mixture_take_arrays():
    from linear_operator.operators import DiagLinearOperator

    from bayesphys.probconserv import evaluate, mixture_update

    f64 = torch.float64
    x = np.linspace(0.0, 1.0, 4)
    post = bayesphys.GaussianPosterior(
        torch.zeros(3, 4, dtype=f64),
        DiagLinearOperator(torch.ones(3, 4, dtype=f64)),
        event_shape=(4,),
    )
    scores = evaluate.slice_scores(post, np.zeros((3, 4)), x, [0, 0, 0])
    assert scores["mse"].tolist() == [0.0] * 3 and scores["ce"].dtype == f64
    mix = mixture_update.conserve_latent_mixture(
        np.ones((2, 3, 4)), np.ones((2, 3, 4)), [0, 1, 2, 3], [3, 3, 3]
    )
    assert mix.mean.dtype == f64 and torch.allclose(mix.mean, torch.ones(3, 4, dtype=f64))


def test_add_discrepancy_converts_arrays_to_the_covariance_dtype():
    from bayesphys.probconserv.mass_check import add_discrepancy

    # integer variances cast the root to integers (0.5 -> 0): no discrepancy was added
    cov = torch.eye(2, dtype=torch.float64).expand(1, 2, 2, 2)
    out = add_discrepancy(cov, [[1, 0]], np.full((2, 1), 0.5))
    assert torch.allclose(out.to_dense()[0, 0], torch.eye(2, dtype=torch.float64) + 0.25)
    assert torch.equal(out.to_dense()[0, 1], torch.eye(2, dtype=torch.float64))
    # float64 arrays turned a float32 covariance into float64
    cov32 = torch.eye(2, dtype=torch.float32).expand(1, 2, 2, 2)
    out = add_discrepancy(cov32, np.ones((1, 2)), np.full((2, 1), 0.5))
    assert out.dtype == torch.float32
    assert torch.allclose(out.to_dense()[0, 1], torch.eye(2) + 0.25)


def test_dtype_and_device_none_are_hinted_and_documented():
    from bayesphys.problems import glioma

    assert {torch.dtype, str, type(None)} <= _hint(rgnp.sample_prior, "dtype")
    assert "``None``" in rgnp.sample_prior.__doc__
    z, _ = rgnp.sample_prior(rgnp.PoissonProblem(), 2, dtype=None)
    assert z.dtype == torch.float64
    for fn in (glioma.brain_phantom, glioma.mni_atlas):
        assert type(None) in _hint(fn, "device"), fn.__name__
    assert "``None`` (the CPU)" in glioma.brain_phantom.__doc__
    assert glioma.brain_phantom(16, device=None)["wm"].device.type == "cpu"


def test_a_bad_sample_shape_says_what_is_accepted():
    post = bayesphys.GaussianPosterior(torch.zeros(2), torch.eye(2))
    with pytest.raises(TypeError, match=r"^sample_shape: expected an int, a torch.Size or a seq"):
        post.sample("3")
    with pytest.raises(TypeError, match=r"sequence \(tuple, list\) of ints >= 0"):
        post.sample([1.5])


def test_atomic_write_callback_may_return_a_value():
    from collections.abc import Callable
    from pathlib import Path

    from bayesphys._files import atomic_write

    assert typing.get_type_hints(atomic_write)["write"] == Callable[[Path], object]
