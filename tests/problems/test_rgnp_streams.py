"""The documented relations between the Poisson test and sensor sets' random streams."""

from __future__ import annotations

import numpy as np

from bayesphys.problems.rgnp import poisson_sensor_data, poisson_test_set


def test_sensor_and_test_set_streams_are_as_documented():
    # the functions of poisson_sensor_data(seed=s) are poisson_test_set(seed=s)'s
    ts, sd = poisson_test_set(3, seed=1), poisson_sensor_data(3, seed=1)
    assert np.array_equal(ts["z"], sd["z"]) and np.array_equal(ts["w"], sd["w"])
    # its noise is default_rng(s + 10_000), the parameter stream of poisson_test_set(s + 10_000)
    noise = (sd["y"] - sd["u_obs"]) / 0.05
    np.testing.assert_allclose(noise, np.random.default_rng(10_001).standard_normal((3, 54)))
    # the benchmarks' seeds (test 0, sensors 1) share neither stream
    assert not np.array_equal(poisson_test_set(3, seed=0)["z"], sd["z"])
