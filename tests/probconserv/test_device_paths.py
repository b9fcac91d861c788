"""ProbConserv paths that failed on CUDA.

- ``fit_hybrid`` wrote the held-out errors of device tensors into a CPU buffer.
- ``HybridCalibration.state`` kept device tensors (a checkpoint then needed that device).
- The updated posteriors' samplers (``UpdatedRoot``, ``CovarianceRoot``, ``CastRoot``) stayed
  on the old device under ``GaussianPosterior.to``.

``meta`` tensors stand in for a second device on the CPU (``model_device`` refuses them, so
those tests patch it): every tensor the moved sampler holds must live there.
"""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import LinearOperator

import bayesphys._gaussian_posterior as gp_mod
from bayesphys.posterior import GaussianPosterior
from bayesphys.probconserv import trapezoid_weights
from bayesphys.probconserv.calibration import HybridCalibration, fit_hybrid
from bayesphys.probconserv.update import conservation_update, conserve_slices, hard_projection

from .test_calibration import error_direction_set

F64 = torch.float64
META = torch.device("meta")


class _MovableRoot:
    """A custom sampler ``z -> L z`` (``L [*batch, n, n]``) with a ``to(device)`` method."""

    def __init__(self, L: torch.Tensor) -> None:
        self.L = L

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return (self.L @ z.unsqueeze(-1)).squeeze(-1)

    def to(self, device: torch.device) -> _MovableRoot:
        return _MovableRoot(self.L.to(device))


def _tensor_devices(obj, seen=None) -> list[torch.device]:
    """Devices of every tensor (and linear operator) reachable from ``obj`` through lists,
    tuples, dicts and the attributes of bayesphys objects and of the test's root."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor | LinearOperator):
        return [obj.device]
    if isinstance(obj, list | tuple):
        return [d for v in obj for d in _tensor_devices(v, seen)]
    if isinstance(obj, dict):
        return [d for v in obj.values() for d in _tensor_devices(v, seen)]
    mod = type(obj).__module__
    if (mod.startswith("bayesphys") or mod == __name__) and hasattr(obj, "__dict__"):
        return [d for v in vars(obj).values() for d in _tensor_devices(v, seen)]
    return []


def _prior(dtype=F64, root=None, batch: int = 2, n: int = 7) -> GaussianPosterior:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(batch, n, n, generator=g, dtype=F64)
    L = torch.linalg.cholesky(a @ a.mT + 0.5 * torch.eye(n, dtype=F64))
    mean = torch.randn(batch, n, generator=g, dtype=F64)
    kw = {} if root is None else {"root": root(L.to(dtype)), "root_dim": n}
    return GaussianPosterior(
        mean.to(dtype), (L @ L.mT).to(dtype), event_shape=(n,), validate=False, **kw
    )


def _posteriors() -> dict[str, GaussianPosterior]:
    x = torch.linspace(0, 1, 7, dtype=F64)
    mass = torch.tensor([0.3, -0.1], dtype=F64)
    g = trapezoid_weights(x).unsqueeze(0)
    return {
        # UpdatedRoot over CovarianceRoot (the prior has no sampler of its own)
        "covariance": conserve_slices(_prior(), x, mass, sigma_g=0.05),
        "covariance-limit": conserve_slices(_prior(), x, mass),
        # UpdatedRoot over CastRoot over the prior's own (float32) sampler
        "cast": conservation_update(_prior(torch.float32, _MovableRoot), g, mass[:, None], 0.05),
        # CastRoot alone (the HardC projection keeps the prior's sampler)
        "hardc": hard_projection(_prior(torch.float32, _MovableRoot), g, mass[:, None]),
    }


@pytest.mark.parametrize("kind", ["covariance", "covariance-limit", "cast", "hardc"])
def test_sampler_moves_with_the_posterior(monkeypatch, kind):
    post = _posteriors()[kind]
    monkeypatch.setattr(gp_mod, "model_device", lambda device: META)
    moved = post.to("elsewhere")
    devices = set(_tensor_devices(moved._custom_root))
    assert devices == {META}, devices
    assert META not in set(_tensor_devices(post._custom_root))  # the original stays


@pytest.mark.parametrize("kind", ["covariance", "covariance-limit", "cast", "hardc"])
def test_moved_sampler_draws_the_same(kind):
    post = _posteriors()[kind]
    z = torch.randn(5, *post.batch_shape, post._custom_root_dim, dtype=F64)
    copy = post._custom_root.to(torch.device("cpu"))
    assert copy is not post._custom_root
    torch.testing.assert_close(copy(z), post._custom_root(z), rtol=0, atol=0)


def test_a_prior_sampler_that_cannot_move_is_refused(monkeypatch):
    x = torch.linspace(0, 1, 7, dtype=F64)
    post = conserve_slices(
        _prior(torch.float32, lambda L: lambda z: (L @ z.unsqueeze(-1)).squeeze(-1)),
        x,
        torch.zeros(2),
    )
    monkeypatch.setattr(gp_mod, "model_device", lambda device: META)
    with pytest.raises(ValueError, match=r"device: the posterior's custom root \(function\)"):
        post.to("elsewhere")


def _state_devices(state: dict) -> set[torch.device]:
    return set(_tensor_devices(state))


@pytest.mark.gpu
def test_fit_hybrid_on_cuda(cuda_device):
    want = fit_hybrid(*error_direction_set(), neighbours=(0, 2))
    cal = fit_hybrid(*error_direction_set(cuda_device), neighbours=(0, 2))
    assert (cal.neighbours, cal.beta) == (want.neighbours, want.beta)
    for c, m in want.cv_mse.items():
        assert cal.cv_mse[c] == pytest.approx(m, rel=1e-9)
    assert _state_devices(cal.state()) == {torch.device("cpu")}
    back = HybridCalibration.from_state(cal.state())
    torch.testing.assert_close(back.err_root, want.err_root)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["covariance", "covariance-limit", "cast", "hardc"])
def test_updated_posterior_round_trip_on_cuda(cuda_device, kind):
    post = _posteriors()[kind]
    z = torch.randn(5, *post.batch_shape, post._custom_root_dim, dtype=F64)
    want = post.rsample(base_samples=z)
    on = post.to(cuda_device)
    assert {d.type for d in _tensor_devices(on._custom_root)} == {"cuda"}
    got = on.rsample(base_samples=z.to(cuda_device))
    tol = {"rtol": 1e-5, "atol": 1e-6} if kind in ("cast", "hardc") else {}  # float32 root
    torch.testing.assert_close(got.cpu(), want, **tol)
    torch.testing.assert_close(on.to("cpu").rsample(base_samples=z), want, **tol)


def test_conditional_scales_make_every_tensor_on_their_inputs_device():
    """Tensors made inside the public conditional-coverage functions follow the inputs' device
    (a CUDA input met CPU weights, bins and ridge matrices). Checked without a GPU: under a
    ``meta`` default device a tensor made without ``device=`` is a meta tensor and fails."""
    from bayesphys.probconserv.conditional import (
        binned_coverage_error,
        fit_parameter_map,
        local_coverage_scale,
    )

    g = torch.Generator().manual_seed(0)
    f64 = torch.float64
    absz = torch.rand(8, 2, 5, generator=g, dtype=f64)
    u, q = torch.rand(8, generator=g, dtype=f64), torch.rand(3, generator=g, dtype=f64)
    mean = torch.rand(12, 2, 5, generator=g, dtype=f64)
    mass, theta = torch.rand(12, 2, generator=g, dtype=f64), torch.rand(12, generator=g, dtype=f64)
    expected = (
        local_coverage_scale(absz, u, q, 0.3),
        local_coverage_scale(absz, u, q, float("inf")),
        binned_coverage_error(absz, torch.ones(8, 2, dtype=f64), u, 0.0, 1.0),
        fit_parameter_map(mean, mass, theta, (0.0, 1.0), rank=2).coef,
    )
    with torch.device("meta"):
        got = (
            local_coverage_scale(absz, u, q, 0.3),
            local_coverage_scale(absz, u, q, float("inf")),
            binned_coverage_error(absz, torch.ones(8, 2, dtype=f64, device="cpu"), u, 0.0, 1.0),
            fit_parameter_map(mean, mass, theta, (0.0, 1.0), rank=2).coef,
        )
    for a, b in zip(expected[:2] + expected[3:], got[:2] + got[3:]):
        assert b.device.type == "cpu" and torch.equal(a, b)
    assert got[2] == expected[2]
