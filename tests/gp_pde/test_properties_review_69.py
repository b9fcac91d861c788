"""Property tests of the spectral-mixture kernels for random parameters: stationarity and
parity of the derivatives, the value at lag 0 (the log-domain weights summed), positive
semi-definiteness of the joint covariance of a field and its first two derivatives, the
Toeplitz fast path against the direct lags, and the closed-form derivatives against
autograd."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.gp_pde import SpectralMixture1d
from tests.gp_pde.test_solve import (  # the solve tests' kernels, operator and data
    assert_kron_solve_matches_dense,
)

F64 = torch.float64
EPS = torch.finfo(F64).eps


def _kernel(kind: str, q: int, seed: int, freq: float) -> SpectralMixture1d:
    g = torch.Generator().manual_seed(seed)
    return SpectralMixture1d(
        q,
        kind=kind,
        mu=torch.rand(q, generator=g, dtype=F64) * freq,
        log_w=torch.randn(q, generator=g, dtype=F64),
        log_a=torch.randn(q, generator=g, dtype=F64) * 0.7,
    )


def _scale(k: SpectralMixture1d, n: int) -> float:
    """A bound on |k^(n)(z)|: sum_q w_q (a_q-dependent envelope rate + 2 pi mu_q)^n, with
    envelope derivatives bounded by a few powers of the rate."""
    with torch.no_grad():
        a = k.log_a.exp()
        rate = (math.sqrt(5.0) * a if k.kind == "stm" else 2 * a.sqrt()) + 2 * math.pi * k.mu.abs()
        return float((k.weights * (1 + rate) ** n).sum()) * 10


kinds = st.sampled_from(["gm", "stm"])


@settings(max_examples=30, deadline=None)
@given(
    kind=kinds,
    q=st.integers(1, 5),
    n=st.integers(0, 4),
    freq=st.sampled_from([0.0, 1.0, 5.0]),
    seed=st.integers(0, 10_000),
)
@torch.no_grad()
def test_derivatives_have_the_parity_of_their_order_and_k0_is_the_weight_sum(
    kind, q, n, freq, seed
):
    """k is even in the lag, so k^(n)(-z) = (-1)^n k^(n)(z) (odd orders vanish at 0) and
    k(0) = sum_q w_q = sum_q exp(log_w_q) (envelope and cosine are 1 there)."""
    k = _kernel(kind, q, seed, freq)
    z = torch.randn(40, generator=torch.Generator().manual_seed(seed + 1), dtype=F64) * 2
    z = torch.cat([z, torch.zeros(1, dtype=F64)])
    tol = 1e-13 * _scale(k, n)
    torch.testing.assert_close(k.deriv(-z, n), (-1) ** n * k.deriv(z, n), rtol=0, atol=tol)
    zero = torch.zeros((), dtype=F64)
    want0 = float(k.log_w.exp().sum())
    assert abs(float(k(zero)) - want0) <= 4 * q * EPS * want0
    if n % 2:
        assert abs(float(k.deriv(zero, n))) <= tol


def _joint_cov(k: SpectralMixture1d, x: torch.Tensor, orders: int) -> torch.Tensor:
    """Covariance of (u(x), u'(x), ..., u^(orders-1)(x)): blocks (-1)^j k^(i+j)(x - x')."""
    rows = []
    for i in range(orders):
        rows.append(torch.cat([(-1) ** j * k.gram(x, x, i + j) for j in range(orders)], 1))
    return torch.cat(rows, 0)


@settings(max_examples=25, deadline=None)
@given(
    kind=kinds,
    q=st.integers(1, 4),
    nx=st.integers(1, 12),
    orders=st.integers(1, 3),
    freq=st.sampled_from([0.0, 1.0, 4.0]),
    seed=st.integers(0, 10_000),
)
@torch.no_grad()
def test_joint_covariance_of_the_field_and_its_derivatives_is_psd(kind, q, nx, orders, freq, seed):
    """For any points (unordered, repeated allowed) the joint covariance of the field and its
    first ``orders - 1`` derivatives, built from the closed-form derivatives with the sign
    (-1)^j of d/dx', is symmetric and positive semi-definite to round-off: a wrong sign or a
    wrong derivative makes it indefinite."""
    k = _kernel(kind, q, seed, freq)
    g = torch.Generator().manual_seed(seed + 2)
    x = torch.rand(nx, generator=g, dtype=F64) * 3
    c = _joint_cov(k, x, orders)
    scale = float(c.diagonal().abs().max())
    tol = 100 * c.shape[0] * EPS * scale
    torch.testing.assert_close(c, c.mT, rtol=0, atol=tol)
    assert float(torch.linalg.eigvalsh(0.5 * (c + c.mT)).min()) >= -tol


@settings(max_examples=30, deadline=None)
@given(
    kind=kinds,
    nx=st.integers(3, 25),
    n=st.integers(0, 4),
    x0=st.sampled_from([0.0, -2.5, 100.0]),
    step=st.sampled_from([0.01, 0.3, -0.2, 1.0]),
    seed=st.integers(0, 10_000),
)
@torch.no_grad()
def test_toeplitz_gram_equals_the_direct_lags(kind, nx, n, x0, step, seed):
    """On an evenly spaced grid (decreasing, offset) the Toeplitz path's matrix equals the
    kernel of the direct differences x_i - x_j, and gram(x1, x2, n) = (-1)^n gram(x2, x1, n)^T
    for two point sets."""
    k = _kernel(kind, 3, seed, 3.0)
    x = x0 + step * torch.arange(nx, dtype=F64)
    fast = k.gram(x, n=n)
    direct = k.deriv(x[:, None] - x[None, :], n)
    # the lags h * (i - j) and x_i - x_j differ by round-off of the grid's offset
    lag_err = 4 * EPS * (abs(x0) + abs(step) * nx)
    tol = 1e-12 * _scale(k, n) + _scale(k, n + 1) * lag_err
    torch.testing.assert_close(fast, direct, rtol=0, atol=tol)
    y = torch.rand(5, generator=torch.Generator().manual_seed(seed), dtype=F64) * 2
    torch.testing.assert_close(
        k.gram(x, y, n), (-1) ** n * k.gram(y, x, n).mT, rtol=0, atol=1e-12 * _scale(k, n)
    )


@settings(max_examples=20, deadline=None)
@given(
    kind=kinds,
    q=st.integers(1, 4),
    n=st.integers(1, 4),
    freq=st.sampled_from([0.0, 1.0, 3.0]),
    seed=st.integers(0, 10_000),
)
def test_closed_form_derivatives_match_autograd_for_random_parameters(kind, q, n, freq, seed):
    """k^(n) by the Leibniz rule equals n nested autograd derivatives of k, for random
    weights, frequencies and envelope rates (lags away from 0, where the Matern envelope's
    higher derivatives are one-sided)."""
    k = _kernel(kind, q, seed, freq)
    z = torch.rand(30, generator=torch.Generator().manual_seed(seed + 3), dtype=F64) * 4 - 2
    z = z[z.abs() > 1e-3]
    zz = z.clone().requires_grad_(True)
    out = k.deriv(zz, 0)
    for _ in range(n):
        (out,) = torch.autograd.grad(out.sum(), zz, create_graph=True)
    got = k.deriv(z, n).detach()
    torch.testing.assert_close(got, out.detach(), rtol=1e-9, atol=1e-11 * _scale(k, n))


@settings(max_examples=12, deadline=None)
@given(
    shape=st.one_of(st.tuples(st.integers(2, 4)), st.tuples(st.integers(2, 4), st.integers(2, 4))),
    tau=st.sampled_from([0.1, 3.0, 100.0]),
    gamma=st.sampled_from([1.0, 30.0, 1e3]),
    seed=st.integers(0, 10_000),
)
def test_kron_solve_matches_the_dense_solve_on_the_smallest_grids(shape, tau, gamma, seed):
    """The Kronecker solve's posterior mean and covariance equal the dense solve's on grids
    of 2 to 4 points per axis (unequal in 2-D), where every point is on or next to the
    boundary faces."""
    assert_kron_solve_matches_dense(shape, seed, tau, gamma)


@settings(max_examples=25, deadline=None)
@given(
    kind=kinds,
    n=st.integers(2, 14),
    order=st.integers(0, 4),
    jitter=st.sampled_from([1e-4, 1e-2]),
    seed=st.integers(0, 10_000),
)
def test_whitened_eigenbasis_diagonalises_the_differentiation_matrix(kind, n, order, jitter, seed):
    """For every derivative order (even: real symmetric B; odd: antisymmetric B, a complex
    unitary eigenbasis) R = L Q and Rinv = Q^H L^-1 are inverse to each other and
    R diag(lam) Rinv = D = Cop C^-1, the GP differentiation matrix; odd orders have imaginary
    eigenvalues, even ones real."""
    from bayesphys.gp_pde import LinearPDEOperator, build_factors

    k = _kernel(kind, 2, seed, 2.0)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=F64).sort().values * 2 + torch.arange(n) * 0.05
    (fac,) = build_factors([k], [x], LinearPDEOperator((order,), (1.0,)), jitter=jitter, eigen=True)
    cond = float(torch.linalg.cond(fac.C))
    eye = torch.eye(n, dtype=fac.R.dtype)
    torch.testing.assert_close(fac.Rinv @ fac.R, eye, rtol=0, atol=100 * n * cond * EPS)
    recon = (fac.R * fac.lam) @ fac.Rinv
    scale = float(fac.D.abs().max()) + float(fac.lam.abs().max())
    torch.testing.assert_close(
        recon, fac.D.to(recon.dtype), rtol=0, atol=100 * n * cond * EPS * scale
    )
    if order % 2:
        assert float(fac.lam.real.abs().max()) <= 100 * n * EPS * float(fac.lam.abs().max())
    else:
        assert not fac.lam.is_complex()
