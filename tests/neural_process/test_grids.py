"""Random collocation grids: domain, seeds, unbiasedness, validation."""

import math

import pytest
import torch

from bayesphys.neural_process import AdaptiveGrid, SobolGrid, UniformGrid, check_points, make_grid


@pytest.mark.parametrize("kind", ["uniform", "sobol", "adaptive"])
def test_grids_shapes_domain_seeds(kind):
    g = make_grid(kind, [0.0, -1.0], [1.0, 2.0])
    x, wts = g.sample(4, 33, generator=torch.Generator().manual_seed(1))
    assert x.shape == (4, 33, 2) and wts.shape == (4, 33)
    check_points("x", x, [0.0, -1.0], [1.0, 2.0], strict=True)
    x2, _ = make_grid(kind, [0.0, -1.0], [1.0, 2.0]).sample(
        4, 33, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(x, x2)
    assert not torch.equal(x[0], x[1])  # a fresh grid per instance


def _f(x):
    return torch.exp(-30 * (x[..., 0] - 0.3) ** 2)  # integral over [0, 1] ~ sqrt(pi/30)


def test_adaptive_grid_is_unbiased_after_adaptation():
    g = AdaptiveGrid([0.0], [1.0], bins=10, alpha=0.7)
    gen = torch.Generator().manual_seed(0)
    x, _ = g.sample(50, 64, generator=gen, dtype=torch.float64)
    g.update(x, _f(x) ** 2)  # concentrate the proposal near the bump
    assert g._probs().max() > 3 * g._probs().min()
    x, wts = g.sample(400, 64, generator=gen, dtype=torch.float64)
    est = (wts * _f(x)).mean(-1)  # one estimate of int f per grid (domain volume ~ 1)
    r30 = math.sqrt(30)
    exact = math.sqrt(math.pi / 30) / 2 * (math.erf(r30 * 0.7) + math.erf(r30 * 0.3))
    assert abs(float(est.mean()) - exact) < 4 * float(est.std()) / math.sqrt(400) + 1e-3
    ux, uw = UniformGrid([0.0], [1.0]).sample(400, 64, generator=gen, dtype=torch.float64)
    assert float(est.std()) < float((uw * _f(ux)).mean(-1).std())  # variance reduction


def test_sobol_grid_reduces_variance():
    gen = torch.Generator().manual_seed(2)
    xs, _ = SobolGrid([0.0], [1.0]).sample(300, 32, generator=gen, dtype=torch.float64)
    xu, _ = UniformGrid([0.0], [1.0]).sample(300, 32, generator=gen, dtype=torch.float64)
    es, eu = _f(xs).mean(-1), _f(xu).mean(-1)
    assert abs(float(es.mean() - eu.mean())) < 0.02  # both unbiased
    assert float(es.std()) < 0.5 * float(eu.std())


def test_point_validation_errors():
    with pytest.raises(ValueError, match="outside"):
        check_points("x", torch.tensor([[0.5], [1.5]]), [0.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        check_points("x", torch.zeros(0, 1), [0.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        check_points("x", torch.tensor([[float("nan")]]), [0.0], [1.0])
    with pytest.raises(ValueError, match=r"\[..., N, 2\]"):
        check_points("x", torch.zeros(3, 1), [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(TypeError):
        check_points("x", [[0.5]], [0.0], [1.0])
    with pytest.raises(
        TypeError, match=r"^x: expected real coordinates, received complex \(torch.complex64\)"
    ):
        check_points("x", torch.full((3, 1), 0.5, dtype=torch.complex64), [0.0], [1.0])
    with pytest.raises(ValueError, match="collocation"):
        UniformGrid([0.0], [1.0]).sample(2, 0)
    with pytest.raises(ValueError, match="grid"):
        make_grid("hexagonal", [0.0], [1.0])
    with pytest.raises(ValueError, match="lower < upper"):
        UniformGrid([1.0], [0.0])
    # a NaN bound passed the order check (NaN comparisons are False)
    with pytest.raises(ValueError, match="finite bounds"):
        make_grid("uniform", [0.0, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match="finite bounds"):
        SobolGrid([0.0], [float("inf")])


@pytest.mark.parametrize("grid", [UniformGrid([0.0], [1.0]), SobolGrid([0.0], [1.0])])
def test_dtype_none_is_the_default_float32(grid):
    """``sample(dtype=None)`` gave float64 points, though the signature's default is float32."""
    gen = torch.Generator().manual_seed(0)
    x, w = grid.sample(2, 8, generator=gen, dtype=None)
    assert x.dtype == w.dtype == torch.float32


@pytest.mark.parametrize("kind", ["uniform", "sobol", "adaptive", "layouts"])
def test_sample_names_an_unknown_device(kind):
    """``sample(device="bogus")`` failed inside ``torch.rand`` with torch's list of device
    types, naming no argument; ``None`` is the CPU, as for a model."""
    grid = make_grid(kind, [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"^device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        grid.sample(2, 4, device="bogus")
    with pytest.raises(ValueError, match=r"^device: 'meta' tensors hold no values"):
        grid.sample(2, 4, device="meta")
    x, w = grid.sample(2, 4, generator=torch.Generator().manual_seed(0), device=None)
    assert x.device.type == w.device.type == "cpu" and x.shape == (2, 4, 2)
    # the same draws on a device given as a string or a torch.device
    a = grid.sample(2, 4, generator=torch.Generator().manual_seed(1), device="cpu")[0]
    b = grid.sample(2, 4, generator=torch.Generator().manual_seed(1), device=torch.device("cpu"))
    assert torch.equal(a, b[0])
