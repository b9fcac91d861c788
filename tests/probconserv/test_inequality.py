"""Non-negative projection (bayesphys.probconserv.inequality) against a brute-force QP."""

from __future__ import annotations

import itertools

import pytest
import torch

from bayesphys.probconserv import project_nonnegative

F64 = torch.float64


def _brute_force(v: torch.Tensor, g: torch.Tensor, b: float) -> torch.Tensor:
    """argmin ||u - v||^2 over {u >= 0, g.u = b} by enumerating the supports S: on S the
    KKT point is u_S = v_S - lam g_S with lam = (g_S.v_S - b) / |g_S|^2, zero elsewhere."""
    n, best, out = v.numel(), None, None
    for k in range(1, n + 1):
        for s in map(list, itertools.combinations(range(n), k)):
            lam = (v[s] @ g[s] - b) / (g[s] @ g[s])
            u = torch.zeros_like(v)
            u[s] = v[s] - lam * g[s]
            if bool((u >= -1e-12).all()):
                d = float((u - v).pow(2).sum())
                if best is None or d < best:
                    best, out = d, u.clamp_min(0)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_projection_equals_a_brute_force_qp(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 2 + seed % 4
    v = torch.randn(8, n, generator=gen, dtype=F64) * 3
    g = torch.rand(n, generator=gen, dtype=F64) + 0.1
    b = torch.rand(8, generator=gen, dtype=F64) * 2
    u = project_nonnegative(v, g, b)
    for vi, bi, ui in zip(v, b, u):
        torch.testing.assert_close(ui, _brute_force(vi, g, float(bi)), rtol=0, atol=1e-10)
    assert bool((u >= 0).all())
    torch.testing.assert_close(u @ g, b, rtol=0, atol=1e-13)


def test_draws_without_values_are_refused_by_name():
    """N = 0 (nothing to project) is refused as ``project_monotone`` refuses it (it failed
    inside with torch's "amax(): Expected reduction dim -1 to have non-zero size")."""
    with pytest.raises(
        ValueError, match=r"draws: expected a floating tensor \[\*, N\] with N >= 1"
    ):
        project_nonnegative(torch.zeros(3, 0, dtype=F64), torch.zeros(0, dtype=F64), torch.zeros(3))
    # one value per draw is a valid projection: u = b / g
    u = project_nonnegative(torch.tensor([[-1.0], [2.0]], dtype=F64), torch.tensor([0.5]), 1.0)
    torch.testing.assert_close(u, torch.full((2, 1), 2.0, dtype=F64))


def test_posteriors_of_other_events_are_refused_and_seed_none_draws_the_global_stream():
    from linear_operator.operators import DiagLinearOperator

    from bayesphys import GaussianPosterior
    from bayesphys.probconserv import nonnegative_posterior, shock_posterior

    f64 = torch.float64
    x = torch.linspace(0, 1, 4, dtype=f64)
    field = GaussianPosterior(torch.zeros(2, 4, dtype=f64), torch.eye(8, dtype=f64))
    for fn, args in ((nonnegative_posterior, (field, x, 1.0)), (shock_posterior, (field, x))):
        with pytest.raises(
            ValueError, match=r"^post: expected event shape \(nx,\), received \(2, 4\)$"
        ):
            fn(*args)
    post = GaussianPosterior(
        torch.linspace(1, -1, 4, dtype=f64), DiagLinearOperator(torch.ones(4, dtype=f64))
    )

    def draws(fn, args, global_seed):
        torch.manual_seed(global_seed)
        out = fn(*args, num_samples=50, seed=None)
        return out.draws if hasattr(out, "draws") else out

    for fn, args in ((nonnegative_posterior, (post, x, 1.0)), (shock_posterior, (post, x))):
        assert torch.equal(draws(fn, args, 3), draws(fn, args, 3))
        assert not torch.equal(draws(fn, args, 3), draws(fn, args, 4))
