"""A random-grid neural process fed a user's own sensors: the domain box of check_points, and
observations read from read-only arrays (a pandas DataFrame's values)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys.neural_process import check_points
from bayesphys.problems.rgnp import poisson_sensor_data
from tests.tiny_models import tiny_rgnp


@pytest.mark.parametrize(
    ("lower", "upper", "match"),
    [
        ([float("nan")], [1.0], "finite bounds with lower < upper"),  # passed every point
        ([-1.0], [1.0, 2.0], "equal non-zero lengths"),  # compared as far as the shorter
        ([1.0], [-1.0], "finite bounds with lower < upper"),  # refused every point instead
    ],
)
def test_check_points_refuses_a_bad_box_naming_it(lower, upper, match):
    with pytest.raises(ValueError, match=rf"lower/upper: expected {match}"):
        check_points("x", torch.zeros(3, 1), lower, upper)


def test_check_points_refuses_boolean_coordinates():
    """True/False were compared as 1/0 with the box (and refused as 'outside' at [False])."""
    with pytest.raises(TypeError, match=r"x: expected real coordinates, received boolean"):
        check_points("x", torch.zeros(3, 1, dtype=torch.bool), [-1.0], [1.0])
    assert torch.equal(check_points("x", torch.zeros(3, 1), [-1.0], [1.0]), torch.zeros(3, 1))


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.setflags(write=False)
    return a


def test_read_only_arrays_are_taken_without_torch_s_warning():
    """np.asarray of a DataFrame is read-only under pandas' copy-on-write: torch warned, at the
    user's data, that writing to the tensor 'will result in undefined behavior'."""
    model = tiny_rgnp()
    data = {k: _read_only(v) for k, v in poisson_sensor_data(4, seed=1).items()}
    new = poisson_sensor_data(1, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(data, steps=1, progress=False)
        post = model.parameter_posterior(
            _read_only(new["x_obs"]), _read_only(new["y"][0]), w=_read_only(new["w"][0])
        )
    ref = model.parameter_posterior(new["x_obs"], new["y"][0], w=new["w"][0])
    assert torch.equal(post.mean, ref.mean)
    assert np.array_equal(data["y"], poisson_sensor_data(4, seed=1)["y"])  # left as it was
