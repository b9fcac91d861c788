"""A user's own validation functions for ``ProbConserv.calibrate``: every objective scores
Step 1 against the problem's exact solution at each function's parameter (the data's targets
are not read), so a function of unknown parameter (NaN, which ``posterior`` takes with a
``mass``) is refused by the argument's name before any prediction; it failed after the Step-1
pass, in the exact solution, under the family's parameter name (``m``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    m = ProbConserv("pme", step1="anp", hidden=16, n_samples=4, seed=0)
    m.fit(steps=2, progress=False)
    return m, make_dataset("pme", params=[2.0, 3.0, 4.0, 5.0], seed=5)


def _no_step1(*args, **kwargs):
    raise AssertionError("Step 1 ran before the check of data.params")


@pytest.mark.parametrize("objective", ["ll", "coverage90", "hybrid"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_calibrate_refuses_unknown_parameters_by_name_before_step1(
    tiny, monkeypatch, objective, bad
):
    m, d = tiny
    params = d.params.clone()
    params[1] = bad
    own = dataclasses.replace(d, params=params)
    monkeypatch.setattr(m, "_step1", _no_step1)
    with pytest.raises(ValueError, match=r"data\.params: .*1 NaN/Inf of 4.*exact pme solution"):
        m.calibrate(data=own, objective=objective)


def test_calibrate_refuses_parameters_outside_the_family_by_name(tiny, monkeypatch):
    m, d = tiny
    own = dataclasses.replace(d, params=torch.tensor([2.0, -1.0, 3.0, 4.0], dtype=torch.float64))
    monkeypatch.setattr(m, "_step1", _no_step1)
    with pytest.raises(ValueError, match=r"data\.params: expected m in \(0, inf\)"):
        m.calibrate(data=own)


def test_calibrate_reads_the_parameters_not_the_targets_as_documented(tiny):
    m, d = tiny
    scaled = dataclasses.replace(d, y_target=100.0 * d.y_target)
    assert m.calibrate(data=d) == m.calibrate(data=scaled)
    assert "its targets are not" in " ".join(ProbConserv.calibrate.__doc__.split())
