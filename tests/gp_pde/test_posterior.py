"""Test-grid posterior of the dense solve: its variances without the whole test-to-grid map."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import bayesphys.gp_pde.posterior as gp_posterior
from bayesphys.gp_pde import GPPDESolver
from bayesphys.gp_pde._kron import kron_dense

F64 = torch.float64


def _reference(W: list[torch.Tensor], cov: torch.Tensor) -> torch.Tensor:
    wd = kron_dense(W)
    return ((wd @ cov) * wd).sum(-1)


@pytest.mark.parametrize("sizes", [[(7, 3)], [(5, 4), (6, 3)], [(3, 2), (4, 3), (5, 2)]])
def test_dense_test_variance_in_blocks_is_the_diagonal(sizes, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    W = [torch.randn(p, n, generator=gen, dtype=F64) for p, n in sizes]
    m = kron_dense(W).shape[1]
    a = torch.randn(m, m, generator=gen, dtype=F64)
    cov = a @ a.mT
    want = _reference(W, cov)
    # whole: the same operations as the reference, so the same numbers
    assert torch.equal(gp_posterior.dense_test_variance(W, cov), want)
    # two rows at a time, and blocks that do not divide the rows
    for rows in (1, 2, 5):
        monkeypatch.setattr(gp_posterior, "_BLOCK_BYTES", rows * m * 8)
        torch.testing.assert_close(
            gp_posterior.dense_test_variance(W, cov), want, rtol=1e-13, atol=0
        )


def test_dense_posterior_never_forms_the_whole_test_to_grid_map(monkeypatch):
    # method="ref" in 2-D solves densely; its variances formed the [P, M] map W three times
    # over (W, W Sigma_U, their product): 2.2 GB for the default 300 x 300 test grid of the
    # 32 x 32 test problem, about 12 GB on 77 x 77 collocation points
    torch.set_num_threads(1)
    model = GPPDESolver("poisson2d-low", method="ref", num_mixtures=2, n_col=16, seed=0)
    axes = [torch.linspace(0, 1, 60, dtype=F64)] * 2
    whole = model.posterior(axes).variance
    full = 60 * 60 * 16 * 16 * 8  # bytes of the [P, M] map
    monkeypatch.setattr(gp_posterior, "_BLOCK_BYTES", full // 8, raising=False)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        blocked = model.posterior(axes).variance
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert largest < full // 2, f"an allocation of {largest} bytes (the whole map: {full})"
    torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=1e-300)
    assert bool((blocked > 0).all())


@pytest.mark.parametrize(
    ("problem", "kw"),
    [("poisson1d-low", {"n_col": 20}), ("poisson2d-low", {"method": "ref", "n_col": 8})],
)
def test_dense_posterior_keeps_only_what_its_draws_need(monkeypatch, problem, kw):
    """The posterior of a dense solve kept the whole solver, with its [M, M] operator matrix
    (288 MB at the dense solve's 6000 points) that no draw reads; it keeps the two factors
    its draws use, and its mean, variances and draws are bit for bit those of the solver."""
    from bayesphys.gp_pde.dense_solve import DenseSolve

    torch.set_num_threads(1)
    model = GPPDESolver(problem, num_mixtures=2, seed=0, **kw)
    model.fit(steps=2, progress=False)
    post = model.posterior()
    kept = post._custom_root.solver
    assert not isinstance(kept, DenseSolve) and not hasattr(kept, "A")
    m = kept.m
    big = [v for v in vars(kept).values() if isinstance(v, torch.Tensor) and v.numel() >= m * m]
    assert len(big) == 2  # L and the precision's Cholesky factor
    z = torch.randn(3, post._custom_root_dim, dtype=F64, generator=torch.Generator().manual_seed(0))
    with monkeypatch.context() as mp:  # the whole solver as the sampler, as it was
        mp.delattr(DenseSolve, "sampler")
        whole = model.posterior()
    assert isinstance(whole._custom_root.solver, DenseSolve)
    assert torch.equal(post.mean, whole.mean) and torch.equal(post.variance, whole.variance)
    assert torch.equal(post.rsample(base_samples=z), whole.rsample(base_samples=z))
    assert torch.equal(kept.cov_u(), whole._custom_root.solver.cov_u())
    g1, g2 = (torch.Generator().manual_seed(1) for _ in range(2))
    assert torch.equal(post.sample((4,), generator=g1), whole.sample((4,), generator=g2))


def test_moving_a_posteriors_root_copies_every_container_of_tensors():
    """The root's ``to`` copies the solver objects and the lists, tuples and dicts they hold
    with every tensor on the device; the original stays where it was, an object held twice
    stays one object, and other values are shared."""
    from bayesphys.gp_pde.posterior import _moved

    t = torch.zeros(2)
    held = {"a": [t, (torch.ones(1), t)], "n": 3, "name": "x"}
    out = _moved(held, torch.device("meta"), {})
    assert out is not held and out["a"] is not held["a"] and out["n"] == 3
    assert out["a"][0].device.type == "meta" and out["a"][1][0].device.type == "meta"
    assert out["a"][0] is out["a"][1][1]  # one tensor, moved once
    assert t.device.type == "cpu" and held["a"][1][1] is t


def test_a_test_grid_beyond_memory_is_refused_by_name_before_any_work(
    memory_limit, no_dense_allocation
):
    """A test axis of 10^6 points made a joint [p + n, p + n] covariance (8 TB) and its eigen
    root: torch's allocation failure, or the process killed. It is refused naming ``x``."""
    model = GPPDESolver("poisson1d-low", num_mixtures=2, n_col=16, seed=0)
    x = [torch.linspace(0, 1, 50, dtype=F64)]
    memory_limit(10 * 8 * 4 * (50 + 16) ** 2)  # room for a 50-point axis
    assert model.posterior(x).mean.shape == (50,)
    no_dense_allocation("bayesphys.gp_pde.posterior.psd_eigen_root")
    big = [torch.linspace(0, 1, 2000, dtype=F64)]
    with pytest.raises(MemoryError, match=r"^x: the posterior on a \(2000,\) test grid"):
        model.posterior(big)
