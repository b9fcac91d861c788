"""Review 74 of the random-grid neural process: arguments of ``calibrate`` named as passed (a
scalar ``w``; ``x_inverse`` points on the Dirichlet boundary, with their set's index among all
``V``), a seed passed as ``generator`` to the grid measures and ``sample_prior``, and the
documented initial GICNet lengthscales of the RGNP presets."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesphys.neural_process import GICNet, make_grid, preset
from bayesphys.problems.rgnp import PoissonProblem, poisson_test_set, sample_prior
from tests.tiny_models import tiny_rgnp as tiny

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*has not been trained:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*outside the prior box:UserWarning"),
]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "neural_process.md"


def test_calibrate_names_a_scalar_w():
    # was IndexError: tuple index out of range (wt.shape[0] of a 0-d tensor)
    m = tiny()
    val = poisson_test_set(3, seed=3, n_nodes=11)
    with pytest.raises(ValueError, match=r"^z/w: expected shapes \[3, dim_z\] and \[3, dim_w\]"):
        m.calibrate(val["x"], val["u"], val["z"], 1.5)
    assert m.variance_scale == {"field": 1.0, "parameters": 1.0}


def test_calibrate_names_x_inverse_on_the_boundary_with_its_set_among_all():
    # GICNet's check named x (not an argument of calibrate) and, called per batch of sets,
    # gave no set index (batch=1) or one counted within the batch
    m = tiny()
    val = poisson_test_set(3, seed=3, n_nodes=11)
    xi = np.broadcast_to(val["x"][1:-1, None], (3, 9, 1)).copy()
    xi[2, 4, 0] = 1.0  # set 2 holds the Dirichlet node x = 1
    ui = val["u"][:, 1:-1].copy()
    with pytest.raises(ValueError, match=r"^x_inverse: 1 of the 9 points of set 2 lie on"):
        m.calibrate(val["x"], val["u"], val["z"], val["w"], x_inverse=xi, u_inverse=ui, batch=1)
    assert m.variance_scale == {"field": 1.0, "parameters": 1.0}
    xi[2, 4, 0] = 1.5  # outside the domain: named x_inverse too (was x)
    with pytest.raises(ValueError, match=r"^x_inverse: expected points inside the domain"):
        m.calibrate(val["x"], val["u"], val["z"], val["w"], x_inverse=xi, u_inverse=ui, batch=1)


@pytest.mark.parametrize("kind", ["uniform", "sobol", "adaptive", "layouts"])
def test_grid_sample_names_a_seed_given_as_generator(kind):
    # was torch.rand's TypeError listing its signatures, or "'int' object has no attribute
    # 'device'" (an AttributeError)
    grid = make_grid(kind, [-1.0], [1.0])
    with pytest.raises(TypeError, match=r"^generator: expected a torch.Generator or None, "):
        grid.sample(2, 3, generator=0)
    pts, _ = grid.sample(2, 3, generator=torch.Generator().manual_seed(0))  # still accepted
    assert pts.shape == (2, 3, 1)


def test_sample_prior_names_a_seed_given_as_generator():
    with pytest.raises(TypeError, match=r"^generator: expected a torch.Generator or None, "):
        sample_prior(PoissonProblem(), 2, generator=0)
    a = sample_prior(PoissonProblem(), 2, generator=torch.Generator().manual_seed(1))
    b = sample_prior(PoissonProblem(), 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_documented_initial_lengthscales_are_the_presets():
    # the docs gave 0.05 as the shortest initial lengthscale of every RGNP preset; the Burgers
    # preset keeps GICNet's default
    default = inspect.signature(GICNet.__init__).parameters["ell_min"].default
    assert preset("poisson", "RGNP").gic["ell_min"] == 0.05
    assert preset("burgers", "RGNP").gic.get("ell_min", default) == default == 1e-3
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    assert "down to 0.05 (`ell_min`, Poisson; Burgers keeps GICNet's default $10^{-3}$" in text
    import bayesphys.neural_process.model as model_module

    doc = " ".join(model_module.__doc__.split())
    assert "down to 0.05 (Poisson; Burgers keeps GICNet's default 1e-3;" in doc
