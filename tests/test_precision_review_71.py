"""Silent precision loss in the shared core: numbers given as Python floats or lists (float64
in Python and numpy) were read with ``torch.as_tensor``, which rounds them to float32, so a
float64 user's metric, weights, truths or held-out PITs were computed from float32 values."""

import numpy as np
import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.diagnostics import Recalibrator, field_calibration_curve, simulate_and_infer
from bayesphys.metrics import crps_gaussian, wasserstein

F64 = torch.float64


@pytest.mark.parametrize(
    ("mean", "std", "y"),
    [
        (0.1, 0.3, 0.2),  # Python numbers only
        ([0.1, 1.7], [0.3, 0.9], [0.2, 2.4]),  # lists only
        (0, [0.3], [0.2]),  # an integer mean beside lists of floats
    ],
)
def test_crps_gaussian_of_python_floats_is_float64(mean, std, y):
    got = crps_gaussian(mean, std, y)
    ref = crps_gaussian(
        torch.tensor(mean, dtype=F64), torch.tensor(std, dtype=F64), torch.tensor(y, dtype=F64)
    )
    assert got.dtype == F64
    assert torch.equal(got, ref)


def test_wasserstein_list_weights_are_not_rounded():
    pytest.importorskip("ot")
    g = np.random.default_rng(0)
    x = torch.tensor(g.normal(size=(5, 2)))
    y = torch.tensor(g.normal(size=(6, 2)))
    w = g.random(5) + 0.1
    as_list = wasserstein(x, y, weights_x=[float(v) for v in w])
    as_array = wasserstein(x, y, weights_x=w)
    assert torch.equal(as_list, as_array)


def _near_ties(s: int = 4, n: int = 3):
    """Float64 draws at float32's rounding of 0.1, and the truth 0.1 just below them: rounded
    to float32, the truth ties every draw, and its randomised PIT changes."""
    rounded = float(np.float32(0.1))
    draws = torch.full((s, n), rounded, dtype=F64)
    return draws, [0.1] * n


def test_field_calibration_curve_list_truth_is_not_rounded():
    draws, truth = _near_ties()
    from_list = field_calibration_curve([draws], [truth], seed=3)[1]
    from_tensor = field_calibration_curve([draws], [torch.tensor(truth, dtype=F64)], seed=3)[1]
    assert torch.equal(from_list, from_tensor)


def test_recalibrator_list_pits_are_not_rounded():
    pits = [0.1, 0.3, 0.7]
    rec = Recalibrator("quantile", pits=pits)
    assert torch.equal(rec.pits, torch.tensor(pits, dtype=F64))


def test_recalibrator_fit_list_truths_are_not_rounded():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(7, generator=g, dtype=F64)
    post = GaussianPosterior(mean, torch.diag(torch.rand(7, generator=g, dtype=F64) + 0.5))
    truth = (mean + torch.randn(7, generator=g, dtype=F64) / 3).tolist()
    from_list = Recalibrator.fit([post], [truth], method="zscore")
    from_tensor = Recalibrator.fit([post], [torch.tensor(truth, dtype=F64)], method="zscore")
    assert from_list.scale == from_tensor.scale


@pytest.mark.parametrize(
    "make",
    [list, lambda t: [np.array(t[0]), *t[1:]]],  # floats; an array among floats
    ids=["floats", "array-and-floats"],
)
def test_simulate_and_infer_list_theta_is_not_rounded(make):
    theta = [0.1, 1 / 3, 2.7]

    def infer(i):
        return torch.linspace(-1, 1, 9, dtype=F64) + theta[i]

    def run(as_theta):
        return simulate_and_infer(
            lambda n, seed: (as_theta(theta[:n]), list(range(n))),
            infer,
            n_sims=3,
            n_draws=9,
            field_levels=None,
            progress=False,
        )

    from_list = run(make)
    from_tensor = run(lambda t: torch.tensor(t, dtype=F64))
    assert torch.equal(from_list.truth, from_tensor.truth)
    assert torch.equal(from_list.truth.flatten(), torch.tensor(theta, dtype=F64))


@pytest.mark.parametrize(
    ("dw", "rho"), [(0.1, 0.3), ([0.1, 0.2], [0.3, 0.3]), (np.array([0.1, 0.2]), 0.3)]
)
def test_fk_max_steps_of_python_numbers_is_float64(dw, rho):
    from bayesphys.problems.fisher_kolmogorov import max_step, max_steps

    faces = [torch.ones(8, dtype=F64)]
    got = max_steps(faces, dw, rho, 0.7, "euler")
    ref = max_steps(faces, torch.tensor(dw, dtype=F64), torch.tensor(rho, dtype=F64), 0.7, "euler")
    assert torch.equal(got, ref)
    # max_step (one pair, read as float64 already) gives the same bound
    assert max_step(faces, 0.1, 0.3, 0.7, "euler") == float(got.reshape(-1)[0])
