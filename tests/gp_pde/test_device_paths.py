"""GP-PDE paths that failed on CUDA or in float32.

- ``periodogram_peaks`` built its frequency grid on the CPU (and in float32): indexing it with
  the peaks found on the model's device failed, so every ``GPPDESolver`` built on CUDA failed.
- The test-grid posterior's sampler (``_GridRoot``: the solver, its factors and the per-axis
  roots) stayed on the old device under ``GaussianPosterior.to``.
- The Anderson and GMRES least-squares steps used ``torch.linalg.lstsq``, whose CUDA driver
  assumes full rank.
- ``dtype=float32`` was accepted and ``fit()`` then failed (``NumericalFailure``, the Gram
  factors are not positive definite in float32 with the default nugget).

``meta`` tensors stand in for a second device on the CPU (``model_device`` refuses them, so
those tests patch it): every tensor the moved sampler holds must live there.
"""

from __future__ import annotations

import pytest
import torch

import bayesphys._gaussian_posterior as gp_mod
from bayesphys.gp_pde import GPPDESolver
from bayesphys.gp_pde._inputs import periodogram_peaks

F64 = torch.float64
META = torch.device("meta")


def _tensor_devices(obj, seen=None) -> list[torch.device]:
    """Devices of every tensor reachable from ``obj`` through lists, tuples, dicts and the
    attributes of bayesphys objects."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj.device]
    if isinstance(obj, list | tuple):
        return [d for v in obj for d in _tensor_devices(v, seen)]
    if isinstance(obj, dict):
        return [d for v in obj.values() for d in _tensor_devices(v, seen)]
    if type(obj).__module__.startswith("bayesphys") and hasattr(obj, "__dict__"):
        return [d for v in vars(obj).values() for d in _tensor_devices(v, seen)]
    return []


def _fitted(problem: str, **kw) -> GPPDESolver:
    m = GPPDESolver(problem, n_col=kw.pop("n_col", 8), num_mixtures=2, seed=0, **kw)
    m.fit(steps=1, progress=False)
    return m


SOLVERS = [
    ("poisson1d-low", {"n_col": 20}, "DenseSampler", True),  # DenseSolve, solving parts dropped
    ("poisson2d-low", {}, "KronSolve", True),
    ("allencahn2d-low", {}, "PicardKronSolve", True),
    # Gauss-Newton draws by PCG, which reads residual norms: no draws on meta tensors
    ("allencahn2d-low", {"nonlinear_solver": "gauss-newton"}, "GaussNewtonKronSolve", False),
]


def test_periodogram_frequencies_in_the_input_dtype():
    """The grid was float32 (then cast): frequencies k / (pad n h) off by float32 rounding."""
    n, pad = 50, 8
    x = torch.linspace(0, 1, n, dtype=F64)
    f = torch.sin(2 * torch.pi * 3.3 * x) + 0.5 * torch.sin(2 * torch.pi * 7.9 * x)
    got = periodogram_peaks(f, x, 0, 2, pad=pad)
    assert got.dtype == F64
    grid = torch.fft.rfftfreq(pad * n, d=float(x[1] - x[0]), dtype=F64)
    k = torch.round(got * pad * n * float(x[1] - x[0])).long()
    assert torch.equal(got, grid[k])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, "float32"])
def test_lower_precision_is_refused(dtype):
    with pytest.raises(ValueError, match=r"dtype: GPPDESolver runs in torch.float64, received"):
        GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2, dtype=dtype)


@pytest.mark.parametrize(("problem", "kw", "solver", "draws"), SOLVERS)
def test_posterior_sampler_moves_with_the_posterior(monkeypatch, problem, kw, solver, draws):
    post = _fitted(problem, **kw).posterior()
    root = post._custom_root
    assert type(root.solver).__name__ == solver
    monkeypatch.setattr(gp_mod, "model_device", lambda device: META)
    moved = post.to("elsewhere")
    devices = set(_tensor_devices(moved._custom_root))
    assert devices == {META}, devices
    assert set(_tensor_devices(root)) == {torch.device("cpu")}  # the original stays
    if draws:
        assert moved.sample((2,)).device == META


@pytest.mark.parametrize(("problem", "kw", "solver", "draws"), SOLVERS)
def test_moved_sampler_draws_the_same_fields(problem, kw, solver, draws):
    post = _fitted(problem, **kw).posterior()
    root = post._custom_root
    z = torch.randn(2, post._custom_root_dim, dtype=F64, generator=torch.Generator().manual_seed(0))
    copy = root.to(torch.device("cpu"))
    assert copy is not root and copy.solver is not root.solver
    assert torch.equal(copy(z), root(z))


@pytest.mark.gpu
@pytest.mark.parametrize(("problem", "kw", "solver", "draws"), SOLVERS)
def test_fit_and_draw_on_cuda(cuda_device, problem, kw, solver, draws):
    m = _fitted(problem, device=cuda_device, **kw)
    post = m.posterior()
    s = post.sample((2,), generator=torch.Generator(device=post.device).manual_seed(0))
    assert s.device.type == "cuda" and bool(torch.isfinite(s).all())
    # to the CPU and back: the same fields from the same base noise
    z = torch.randn(2, post._custom_root_dim, dtype=F64, generator=torch.Generator().manual_seed(1))
    on_gpu = post.rsample(base_samples=z.to(cuda_device))
    cpu = post.to("cpu")
    assert set(_tensor_devices(cpu._custom_root)) == {torch.device("cpu")}
    tol = {"rtol": 1e-6, "atol": 1e-8} if solver == "GaussNewtonKronSolve" else {}
    torch.testing.assert_close(cpu.rsample(base_samples=z), on_gpu.cpu(), **tol)
    back = cpu.to(cuda_device)
    torch.testing.assert_close(back.rsample(base_samples=z.to(cuda_device)), on_gpu, **tol)


@pytest.mark.gpu
def test_picard_on_cuda_matches_cpu(cuda_device):
    """The Anderson step's least squares (rank-deficient near convergence) on CUDA."""
    cpu = _fitted("allencahn2d-low")
    gpu = _fitted("allencahn2d-low", device=cuda_device)
    assert gpu.u.device.type == "cuda" and bool(torch.isfinite(gpu.u).all())
    # same iteration up to round-off (a stall test may stop it one iterate apart)
    assert float((gpu.u.cpu() - cpu.u).norm() / cpu.u.norm()) < 1e-4
