"""The conjugate core family used by ``bayesphys calibrate core`` (diagnostics.core_problem)."""

import math

import pytest
import torch

from bayesphys.diagnostics import CoreFamily


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"inflate": -0.5}, "inflate"),
        ({"inflate": 0.0}, "inflate"),
        ({"inflate": math.nan}, "inflate"),
        ({"lengthscale": -0.08}, "lengthscale"),
        ({"noise": 0.0}, "noise"),
        ({"shift": math.inf}, "shift"),
    ],
)
def test_core_family_refuses_bad_settings(kw, name):
    """A negative ``inflate`` or ``lengthscale`` was taken as its absolute value (both enter
    squared), ``inflate = 0`` gave a posterior of zero spread, and ``noise = 0`` passed the
    constructor and the simulator and was refused only by ``infer``."""
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        CoreFamily(**kw)


def test_core_family_simulate_checks_the_seed():
    """A float seed was truncated (1.7 gave the fields of seed 1)."""
    fam = CoreFamily()
    with pytest.raises(TypeError, match="^seed: expected an int"):
        fam.simulate(2, seed=1.7)
    with pytest.raises(ValueError, match="^n: expected"):
        fam.simulate(-1, seed=1)
    u, y = fam.simulate(3, seed=1)
    assert u.shape == (3, 101) and y.shape == (3, 30)
    assert torch.equal(u, fam.simulate(3, seed=1)[0])


def test_core_family_deliberate_errors():
    """``inflate`` scales the exact posterior's sd and ``shift`` moves its mean by ``shift``
    exact posterior sds."""
    exact, wrong = CoreFamily(), CoreFamily(inflate=0.5, shift=1.0)
    _, y = exact.simulate(1, seed=0)
    p, q = exact.infer(y[0]), wrong.infer(y[0])
    assert torch.allclose(q.stddev, 0.5 * p.stddev)
    assert torch.allclose(q.mean, p.mean + p.stddev)
