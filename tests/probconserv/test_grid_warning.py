"""The other-grid warning of a calibrated ProbConserv points at the user's line and says what
to do."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset


@pytest.fixture(scope="module")
def calibrated():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = ProbConserv("pme", step1="anp", hidden=16, n_samples=4, seed=0)
        m.fit(steps=3, progress=False)
        m.calibrate(make_dataset("pme", 8, seed=5), objective="hybrid")
        yield m
    finally:
        torch.set_num_threads(n)


def _grid_warnings(fn):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fn()
    return [w for w in rec if "another (t, x) grid" in str(w.message)]


@pytest.mark.parametrize("method", ["step1", "posterior"])
def test_other_time_warns_at_user_line_with_advice(calibrated, method):
    test = make_dataset("pme", params=[3.0], seed=1)
    got = _grid_warnings(lambda: getattr(calibrated, method)(test, t=0.3))
    assert len(got) == 1
    w = got[0]
    assert w.filename == __file__, w.filename
    msg = str(w.message)
    assert msg.startswith(f"{method}: ")
    assert "calibration: t=[0.5], x: 201 points" in msg
    assert "this query: t=[0.3]" in msg
    assert "calibrate(..., t=<these times>)" in msg


def test_other_x_grid_advises_default_grid(calibrated):
    test = make_dataset("pme", params=[3.0], seed=1)
    x = calibrated.problem.grid(101)
    got = _grid_warnings(lambda: calibrated.step1(test, x=x))
    assert len(got) == 1 and got[0].filename == __file__
    msg = str(got[0].message)
    assert "this query: t=[0.5], x: 101 points" in msg and "x=None" in msg


def test_calibration_grid_does_not_warn(calibrated):
    test = make_dataset("pme", params=[3.0], seed=1)
    assert _grid_warnings(lambda: calibrated.posterior(test)) == []
