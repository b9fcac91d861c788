"""Property tests of ProbConserv's exact algebra at the edges not drawn elsewhere: priors in
float32 and with Kronecker covariances over a 2-D event, one grid point, constraint rows given
as strided views; the HardC projection (idempotent, orthogonal, exact); the quadrature weights
(exact on linear functions of any increasing grid)."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linear_operator.operators import DenseLinearOperator, KroneckerProductLinearOperator

from bayesphys import GaussianPosterior
from bayesphys.probconserv import conservation_update, hard_projection, trapezoid_weights

F64 = torch.float64
EPS = torch.finfo(F64).eps


def _spd(n: int, g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    a = (q * (0.5 + 1.5 * torch.rand(n, generator=g, dtype=F64))) @ q.T
    return 0.5 * (a + a.T)


def _prior(kind: str, shape: tuple[int, ...], dtype: torch.dtype, g: torch.Generator):
    n = math.prod(shape)
    mean = torch.randn(shape, generator=g, dtype=F64).to(dtype)
    if kind == "kron":
        cov = KroneckerProductLinearOperator(
            *[DenseLinearOperator(_spd(k, g).to(dtype)) for k in shape]
        )
    else:
        cov = _spd(n, g).to(dtype)
    return GaussianPosterior(mean, cov)


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(["kron", "dense"]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple),
    m=st.integers(1, 3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    strided=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_exact_update_of_any_prior_meets_the_constraint_and_dense_conditioning(
    kind, shape, m, dtype, strided, seed
):
    """sigma_g = 0 for a float32 or float64 prior, dense or Kronecker over a 1-D or 2-D event
    (one point included), G given as a transposed view: G mu~ = b and Sigma~ G^T = 0 to
    round-off, mean and covariance equal the dense float64 conditioning formulas of the
    prior's values, and the draws' root reproduces Sigma~ (L L^T)."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    m = min(m, n)
    prior = _prior(kind, shape, dtype, g)
    G = 0.5 + torch.rand(m, n, generator=g, dtype=F64)
    if strided:
        G = G.mT.contiguous().mT
    b = torch.randn(m, generator=g, dtype=F64)
    post = conservation_update(prior, G, b)
    assert post.dtype == F64 and post.mean.shape == shape
    # the prior's factors in float64 (a float32 Kronecker product densified in float32 rounds)
    cov = prior.covariance.to(F64).to_dense()
    mu = prior.mean.to(F64).reshape(n)
    s = G @ cov @ G.T
    k = torch.linalg.solve(s, G @ cov).T
    cond = float(torch.linalg.cond(s))
    tol = 100 * n * cond * EPS
    want_mean = mu - k @ (G @ mu - b)
    want_cov = cov - k @ G @ cov
    got_cov = post.covariance.to_dense()
    torch.testing.assert_close(post.mean.reshape(n), want_mean, rtol=0, atol=tol * 10)
    torch.testing.assert_close(got_cov, want_cov, rtol=0, atol=tol * float(cov.abs().max()))
    assert float((G @ post.mean.reshape(n) - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))
    assert float((got_cov @ G.T).abs().max()) <= tol * float(cov.abs().max()) * float(G.max())
    eye = torch.eye(post._base_dim(), dtype=F64)
    l_mat = (post.rsample(base_samples=eye) - post.mean).reshape(-1, n)  # rows: (L e_j)^T
    torch.testing.assert_close(l_mat.mT @ l_mat, got_cov, rtol=0, atol=tol * float(cov.abs().max()))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 8),
    m=st.integers(1, 4),
    batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 10_000),
)
def test_hard_projection_is_the_orthogonal_projection(n, m, batch, scale, seed):
    """HardC moves the mean by a vector in G's row space onto {G u = b}: G mu~ = b, the move
    is orthogonal to the constraint set's directions (the null space of G), projecting the
    result again leaves it unchanged, and m = n rows give the unique solution G^-1 b."""
    g = torch.Generator().manual_seed(seed)
    m = min(m, n)
    mu = torch.randn(*batch, n, generator=g, dtype=F64) * scale
    prior = GaussianPosterior(mu, torch.eye(n, dtype=F64).expand(*batch, n, n), event_shape=(n,))
    G = torch.randn(m, n, generator=g, dtype=F64) + 2 * torch.eye(m, n, dtype=F64)
    b = torch.randn(*batch, m, generator=g, dtype=F64) * scale
    post = hard_projection(prior, G, b)
    new = post.mean
    cond = float(torch.linalg.cond(G))
    tol = 100 * n * cond * EPS * max(scale, float(b.abs().max()))
    torch.testing.assert_close(new @ G.T, b, rtol=0, atol=tol)
    move = mu - new
    # the move lies in the row space of G: its residual after least squares on G^T is 0
    coef = torch.linalg.lstsq(G.T.expand(*batch, n, m), move.unsqueeze(-1)).solution
    torch.testing.assert_close((G.T @ coef).squeeze(-1), move, rtol=0, atol=tol * cond)
    again = hard_projection(post, G, b).mean
    torch.testing.assert_close(again, new, rtol=0, atol=tol)
    if m == n:
        want = torch.linalg.solve(G, b.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(new, want, rtol=0, atol=tol * cond)
    # the covariance is left as it was
    torch.testing.assert_close(post.variance, prior.variance, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 12),
    batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    a=st.floats(-5, 5),
    c=st.floats(-5, 5),
    x0=st.sampled_from([0.0, -3.0, 1e3]),
    seed=st.integers(0, 10_000),
)
def test_trapezoid_weights_integrate_linear_functions_exactly(n, batch, a, c, x0, seed):
    """On any strictly increasing grid (batched, non-uniform) the trapezoid weights integrate
    a + c x exactly over [x_0, x_{N-1}], and their sum is the span; the right-Riemann weights
    sum to the span and integrate constants exactly."""
    g = torch.Generator().manual_seed(seed)
    steps = 0.05 + torch.rand(*batch, n - 1, generator=g, dtype=F64)
    x = torch.cat([torch.full((*batch, 1), x0, dtype=F64), x0 + steps.cumsum(-1)], -1)
    w = trapezoid_weights(x)
    lo, hi = x[..., 0], x[..., -1]
    span = hi - lo
    tol = 100 * n * EPS * (abs(x0) + float(span.max())) ** 2 * (1 + abs(a) + abs(c))
    torch.testing.assert_close(w.sum(-1), span, rtol=0, atol=tol)
    got = (w * (a + c * x)).sum(-1)
    want = a * span + c * 0.5 * (hi - lo) * (hi + lo)
    torch.testing.assert_close(got, want, rtol=0, atol=tol)
    r = trapezoid_weights(x, "rhs")
    torch.testing.assert_close(r.sum(-1), span, rtol=0, atol=tol)
    torch.testing.assert_close((r * a).sum(-1), a * span, rtol=0, atol=tol)
    assert bool((w > 0).all()) and bool((r[..., 0] == 0).all())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    vscale=st.sampled_from([1e-6, 1.0, 1e6]),
    bscale=st.sampled_from([0.0, 1e-6, 1.0, 1e6]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 10_000),
)
def test_nonnegative_projection_meets_its_optimality_conditions(n, vscale, bscale, dtype, seed):
    """The projection of v onto {u >= 0, g.u = b} is u = max(v - lam g, 0) for one lam (the
    KKT conditions): on the support (v - u) / g is one value lam, off it v / g <= lam; u >= 0
    and g.u = b to the dtype's round-off, in float32 and float64, one grid point included,
    for draws and masses of very different scales."""
    from bayesphys.probconserv import project_nonnegative

    g = torch.Generator().manual_seed(seed)
    v = torch.randn(20, n, generator=g, dtype=F64) * vscale
    w = 0.1 + torch.rand(n, generator=g, dtype=F64)
    b = torch.rand(20, generator=g, dtype=F64) * bscale
    u = project_nonnegative(v.to(dtype), w.to(dtype), b.to(dtype))
    assert u.dtype == dtype and u.shape == v.shape
    eps = torch.finfo(dtype).eps
    vd, wd, bd = v.to(dtype).double(), w.to(dtype).double(), b.to(dtype).double()
    u = u.double()
    assert bool((u >= 0).all())
    torch.testing.assert_close(u @ wd, bd, rtol=50 * n * eps, atol=0)
    scale = (vd.abs() / wd).amax(-1) + bd / (wd @ wd)  # the size of lam
    for i in range(20):
        on = u[i] > 0
        if not bool(on.any()):
            assert float(bd[i]) == 0.0
            continue
        lam = (vd[i] - u[i]) / wd
        spread = float(lam[on].max() - lam[on].min())
        assert spread <= 1e3 * eps * float(scale[i])
        if bool((~on).any()):
            above = float(((vd[i] / wd)[~on] - lam[on].mean()).max())
            assert above <= 1e3 * eps * float(scale[i])
