"""The meta-GP's dense-memory refusal names the arguments of the public method that sized
it: ``calibrate``'s ``n_functions`` (or its ``data``) and ``t``, its ``local_functions``,
and ``mass_discrepancy``'s ``context`` and ``t``; not ``t/x``, which calibrate never takes
(its grid is the problem's 201 points) and mass_discrepancy takes no ``x``."""

from __future__ import annotations

import warnings

import pytest

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset

# one function's dense covariances on 1 time x 201 points: 4 copies x 8 B x 201^2 = 1.3 MB
_LIMIT = 30_000_000  # 10 functions (12.9 MB, under half) pass silently, 40 (52 MB) do not


def _model():
    return ProbConserv("stefan", step1="gp", gp_width=8, seed=0)


@pytest.fixture
def untrained_ok():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model: its calibration is not the point
        yield


def test_calibrate_names_n_functions_or_its_data(memory_limit, no_dense_allocation, untrained_ok):
    m = _model()
    memory_limit(_LIMIT)
    no_dense_allocation("bayesphys.probconserv._predict._net_inputs")
    with pytest.raises(
        MemoryError, match=r"^n_functions/t: the meta-GP's dense covariances of 40 function\(s\)"
    ):
        m.calibrate(n_functions=40)
    with pytest.raises(
        MemoryError, match=r"^data/t: the meta-GP's dense covariances of 40 function\(s\)"
    ):
        m.calibrate(make_dataset("stefan", 40, seed=1))
    assert m.var_scale == 1.0  # nothing was fitted


@pytest.mark.slow
def test_local_functions_and_mass_discrepancy_name_their_arguments(memory_limit, untrained_ok):
    """About 7 s: two hybrid calibrations of a meta-GP on 10 validation functions."""
    m = _model()
    memory_limit(_LIMIT)
    with pytest.raises(
        MemoryError,
        match=r"^local_functions/t: the meta-GP's dense covariances of 40 function\(s\)",
    ):
        m.calibrate(n_functions=10, objective="hybrid", local_functions=40)
    m.calibrate(n_functions=10, objective="hybrid", local_functions=4)
    with pytest.raises(
        MemoryError, match=r"^context/t: the meta-GP's dense covariances of 40 function\(s\)"
    ):
        m.mass_discrepancy(make_dataset("stefan", 40, seed=1))
