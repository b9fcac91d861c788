"""Monotone inequality step: the projection onto {monotone (, >= 0), g.u = b}: properties
(hypothesis), an independent brute-force QP and the KKT conditions, shapes, bad input, and the
posterior wrapper on a ProbConserv update."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys.probconserv import (
    conserve_slices,
    monotone_posterior,
    project_monotone,
    trapezoid_weights,
)
from bayesphys.probconserv.monotone import _isotonic_nonincreasing

F64 = torch.float64
NAN = float("nan")


def _weights(gen, n):
    """Trapezoid weights of a random (non-uniform) grid of ``n`` points."""
    if n == 1:
        return torch.rand(1, generator=gen, dtype=F64) + 0.1
    x = (torch.rand(n, generator=gen, dtype=F64) + 0.05).cumsum(0)
    return trapezoid_weights(x)


def _is_monotone(u, decreasing):
    d = u[..., 1:] - u[..., :-1]
    return bool((d <= 0).all()) if decreasing else bool((d >= 0).all())


def _kkt_violation(u, v, g, nonnegative):
    """Largest violation (relative) of the KKT conditions of
    min |u - v|^2 s.t. u_1 >= ... >= u_N, g.u = b (, u_N >= 0): with
    mu_k = sum_{i <= k} (u_i - v_i + lam g_i), the multiplier of u_k >= u_{k+1} (k < N) or of
    u_N >= 0 (k = N, where it must be 0 without the bound): mu >= 0, and mu_k = 0 where that
    constraint is slack. lam follows from mu = 0 at the last entry (or, with the bound, at the
    last positive entry). ``u`` is exactly non-increasing and constant on its blocks, so
    "slack" is an exact comparison."""
    worst = 0.0
    for ui, vi in zip(u.reshape(-1, u.shape[-1]), v.reshape(-1, v.shape[-1])):
        pos = (ui > 0).nonzero()
        if nonnegative and pos.numel() == 0:
            continue  # u = 0, the only field of mass 0: any large lam works
        last = int(pos.max()) if nonnegative else ui.numel() - 1
        lam = (vi[: last + 1] - ui[: last + 1]).sum() / g[: last + 1].sum()
        mu = (ui - vi + lam * g).cumsum(0)
        scale = 1 + vi.abs().sum() + lam.abs() * g.sum()
        slack = torch.cat([ui[:-1] > ui[1:], (ui[-1:] > 0) | (not nonnegative)])
        worst = max(worst, float((-mu).clamp_min(0).max() / scale))
        if slack.any():
            worst = max(worst, float(mu[slack].abs().max() / scale))
    return worst


def _brute_force(v, g, b, nonnegative):
    """The projection by enumerating the faces of the feasible set (tiny N): each choice of
    active order constraints (blocks of equal values) and, with the bound, of a zero last
    block gives an equality-constrained least squares in closed form; the best feasible one is
    the projection (the optimum is the least-squares point of its own face)."""
    n = v.numel()
    best, best_u = float("inf"), None
    for cuts in itertools.product([False, True], repeat=n - 1):
        edges = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        blocks = [slice(a, e) for a, e in zip(edges[:-1], edges[1:])]
        for zero_last in (False, True) if nonnegative else (False,):
            free = blocks[:-1] if zero_last else blocks
            u = torch.zeros(n, dtype=F64)
            if free:
                gb = torch.stack([g[s].sum() for s in free])
                nb = torch.tensor([s.stop - s.start for s in free], dtype=F64)
                vb = torch.stack([v[s].mean() for s in free])
                lam = ((gb * vb).sum() - b) / (gb.square() / nb).sum()
                for s, c in zip(free, vb - lam * gb / nb):
                    u[s] = c
            elif abs(float(b)) > 0:
                continue
            tol = 1e-12 * (1 + v.abs().max())
            if bool((u[1:] - u[:-1] > tol).any()) or (nonnegative and bool((u < -tol).any())):
                continue
            obj = float((u - v).square().sum())
            if obj < best:
                best, best_u = obj, u
    return best_u


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 10_000),
    level=st.sampled_from([-1.0, 0.0, 0.5, 3.0]),
    scale=st.sampled_from([0.0, 0.01, 1.0, 100.0]),
    decreasing=st.booleans(),
    nonnegative=st.booleans(),
)
def test_projection_is_monotone_conserves_mass_and_meets_kkt(
    n, seed, level, scale, decreasing, nonnegative
):
    gen = torch.Generator().manual_seed(seed)
    g = _weights(gen, n)
    trend = torch.linspace(1, -1, n, dtype=F64) * (1 if decreasing else -1)
    v = level + trend + torch.randn(25, n, generator=gen, dtype=F64)
    b = scale * (torch.rand(25, generator=gen, dtype=F64) - (0 if nonnegative else 0.5))
    u = project_monotone(v, g, b, decreasing=decreasing, nonnegative=nonnegative)
    assert u.shape == v.shape and u.dtype == F64
    assert _is_monotone(u, decreasing)
    if nonnegative:
        assert bool((u >= 0).all())
    tol = 1e-12 * (1 + (u.abs() @ g))
    assert bool(((u @ g - b).abs() <= tol).all())
    # the Euclidean projection: KKT, read on the non-increasing orientation
    flip = (lambda t: t) if decreasing else (lambda t: t.flip(-1))
    assert _kkt_violation(flip(u), flip(v), flip(g), nonnegative) < 1e-10
    # idempotent: the result is feasible, so it is its own projection
    again = project_monotone(u, g, b, decreasing=decreasing, nonnegative=nonnegative)
    torch.testing.assert_close(again, u, rtol=1e-10, atol=1e-10 * (1 + float(u.abs().max())))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    nonnegative=st.booleans(),
    decreasing=st.booleans(),
)
def test_projection_equals_a_brute_force_qp(n, seed, nonnegative, decreasing):
    gen = torch.Generator().manual_seed(seed)
    g = _weights(gen, n)
    v = 2 * torch.randn(6, n, generator=gen, dtype=F64)
    b = torch.rand(6, generator=gen, dtype=F64) * g.sum()
    if not nonnegative:
        b = b - 0.5 * g.sum()
    u = project_monotone(v, g, b, decreasing=decreasing, nonnegative=nonnegative)
    for ui, vi, bi in zip(u, v, b):
        if decreasing:
            want = _brute_force(vi, g, bi, nonnegative)
        else:
            want = _brute_force(vi.flip(0), g.flip(0), bi, nonnegative).flip(0)
        torch.testing.assert_close(ui, want, rtol=1e-9, atol=1e-9)


def test_feasible_draws_are_unchanged():
    gen = torch.Generator().manual_seed(0)
    g = _weights(gen, 30)
    v = torch.rand(8, 30, generator=gen, dtype=F64).sort(-1, descending=True).values
    v[0, 10:20] = v[0, 10]  # ties are feasible too
    torch.testing.assert_close(project_monotone(v, g, v @ g), v, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        project_monotone(v, g, v @ g, nonnegative=True), v, rtol=1e-12, atol=1e-14
    )
    inc = v.flip(-1) - 0.5  # increasing, partly negative
    torch.testing.assert_close(
        project_monotone(inc, g, inc @ g, decreasing=False), inc, rtol=1e-12, atol=1e-14
    )


def test_known_cases():
    # constant weights: iso(v - lam g) = iso(v) - lam g, so the projection is iso(v) shifted
    v = torch.tensor([1.0, 3.0, 2.0, 0.0, 0.5], dtype=F64)
    u = project_monotone(v, torch.full((5,), 0.1, dtype=F64), torch.tensor(1.0, dtype=F64))
    iso = torch.tensor([2.0, 2.0, 2.0, 0.25, 0.25], dtype=F64)
    torch.testing.assert_close(u, iso + (10.0 - iso.sum()) / 5)
    # an increasing draw pooled into one block; N = 1 is the mass alone
    u = project_monotone(torch.arange(5.0, dtype=F64), torch.ones(5, dtype=F64), 10.0)
    torch.testing.assert_close(u, torch.full((5,), 2.0, dtype=F64))
    u = project_monotone(torch.tensor([[-4.0]], dtype=F64), torch.tensor([0.5], dtype=F64), 2.0)
    torch.testing.assert_close(u, torch.tensor([[4.0]], dtype=F64))
    # mass 0 with the bound: only u = 0
    g = trapezoid_weights(torch.linspace(0, 1, 11, dtype=F64))
    v = torch.randn(3, 11, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(project_monotone(v, g, 0.0, nonnegative=True), torch.zeros(3, 11, dtype=F64))


def test_isotonic_regression_matches_the_min_max_formula_and_scipy():
    """u_i = min_{j <= i} max_{k >= i} mean(w[j..k]) for the non-increasing fit; scipy's own
    isotonic regression (SciPy >= 1.12) as a second reference."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(40, 17, generator=gen, dtype=F64) + torch.linspace(-1, 1, 17, dtype=F64)
    # the worst case for pooling runs: one new violation per pass
    w[0] = torch.cat([torch.linspace(1, 0, 16, dtype=F64), torch.tensor([1e4], dtype=F64)])
    u, ids, level, size = _isotonic_nonincreasing(w)
    n = w.shape[-1]
    c = torch.cat([torch.zeros(w.shape[0], 1, dtype=F64), w.cumsum(-1)], -1)
    j, k = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    means = (c[:, k + 1] - c[:, j]) / (k - j + 1).to(F64)
    want = torch.stack([means[:, : i + 1, i:].amax(-1).amin(-1) for i in range(n)], -1)
    torch.testing.assert_close(u, want, rtol=1e-12, atol=1e-12)
    assert _is_monotone(u, True)
    torch.testing.assert_close(level.gather(-1, ids), u)
    assert bool((size.sum(-1) == n).all())
    scipy_opt = pytest.importorskip("scipy.optimize")
    if not hasattr(scipy_opt, "isotonic_regression"):
        pytest.skip("scipy.optimize.isotonic_regression needs SciPy >= 1.12")
    ref = torch.stack(
        [
            torch.as_tensor(scipy_opt.isotonic_regression(r.numpy(), increasing=False).x.copy())
            for r in w
        ]
    )
    torch.testing.assert_close(u, ref, rtol=1e-12, atol=1e-12)


def test_batch_shapes_broadcast_and_dtype():
    gen = torch.Generator().manual_seed(2)
    g = _weights(gen, 13)
    v = torch.randn(4, 2, 3, 13, generator=gen, dtype=F64)
    b = torch.rand(3, generator=gen, dtype=F64)  # broadcast over [4, 2]
    u = project_monotone(v, g, b, nonnegative=True)
    assert u.shape == (4, 2, 3, 13)
    torch.testing.assert_close(u @ g, b.expand(4, 2, 3), rtol=1e-12, atol=1e-14)
    flat = project_monotone(v.reshape(-1, 13), g, b.expand(4, 2, 3).reshape(-1), nonnegative=True)
    torch.testing.assert_close(u.reshape(-1, 13), flat, rtol=0, atol=0)
    single = project_monotone(v[1, 0, 2], g, b[2], nonnegative=True)  # one draw, event only
    torch.testing.assert_close(single, u[1, 0, 2], rtol=1e-13, atol=1e-15)
    # float32 in, float32 out: monotone and non-negative exactly, mass to float32 round-off
    u32 = project_monotone(v.float(), g.float(), b.float(), nonnegative=True)
    assert u32.dtype == torch.float32 and _is_monotone(u32, True) and bool((u32 >= 0).all())
    torch.testing.assert_close(u32.double() @ g, b.expand(4, 2, 3), rtol=1e-6, atol=1e-7)
    # decreasing=False is the decreasing projection read backwards
    inc = project_monotone(v, g, b, decreasing=False)
    dec = project_monotone(v.flip(-1), g.flip(-1), b)
    torch.testing.assert_close(inc, dec.flip(-1), rtol=0, atol=0)
    assert project_monotone(torch.zeros(0, 13, dtype=F64), g, 1.0).shape == (0, 13)


def test_bad_input_is_refused():
    v, g = torch.rand(2, 3, dtype=F64), torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match=r"draws: expected a floating tensor \[\*, N\]"):
        project_monotone(torch.ones(2, 3, dtype=torch.long), g, torch.ones(2))
    with pytest.raises(ValueError, match=r"draws: expected a floating tensor \[\*, N\]"):
        project_monotone(torch.tensor(1.0), g, 1.0)
    with pytest.raises(ValueError, match="draws: expected finite values"):
        project_monotone(v * NAN, g, torch.ones(2))
    with pytest.raises(ValueError, match=r"g: expected shape \(3,\)"):
        project_monotone(v, torch.ones(4), torch.ones(2))
    with pytest.raises(ValueError, match="g: expected strictly positive weights"):
        project_monotone(v, torch.tensor([1.0, 0.0, 1.0]), torch.ones(2))
    with pytest.raises(ValueError, match="g: expected finite values"):
        project_monotone(v, torch.tensor([1.0, NAN, 1.0]), torch.ones(2))
    with pytest.raises(ValueError, match=r"b: expected shape \(2,\)"):
        project_monotone(v, g, torch.ones(3))
    with pytest.raises(ValueError, match="b: expected finite values"):
        project_monotone(v, g, torch.tensor([1.0, NAN]))
    with pytest.raises(ValueError, match="b: expected a non-negative mass"):
        project_monotone(v, g, torch.tensor([1.0, -1.0]), nonnegative=True)
    project_monotone(v, g, torch.tensor([1.0, -1.0]))  # fine without the bound
    with pytest.raises(TypeError, match="decreasing: expected True or False"):
        project_monotone(v, g, torch.ones(2), decreasing="no")
    with pytest.raises(TypeError, match="nonnegative: expected True or False"):
        project_monotone(v, g, torch.ones(2), nonnegative=1)
    with pytest.raises(TypeError, match="iters: expected an int"):
        project_monotone(v, g, torch.ones(2), iters="3")


def _stefan_like_posterior(batch=(2, 3), nx=21):
    """A ProbConserv update of a non-increasing, front-like Step-1 mean (with a small
    negative tail) and noise that breaks the order."""
    x = torch.linspace(0, 1, nx, dtype=F64)
    shift = torch.linspace(-0.1, 0.1, batch[0] * batch[1], dtype=F64).reshape(*batch, 1)
    mu = torch.relu(0.5 + shift - x) - 0.02
    prior = GaussianPosterior(mu, DiagLinearOperator(torch.full_like(mu, 1e-3)), event_shape=(nx,))
    mass = (0.5 + shift[..., 0]) ** 2 / 2
    return conserve_slices(prior, x, mass), x, mass


@pytest.mark.parametrize("nonnegative", [False, True])
def test_monotone_posterior_from_update(nonnegative):
    post, x, mass = _stefan_like_posterior()
    raw = post.sample((200,), seed=0)
    assert not _is_monotone(raw, True)  # the step has something to do
    mp = monotone_posterior(post, x, mass, 200, nonnegative=nonnegative, seed=0)
    assert isinstance(mp, SamplePosterior)
    assert mp.draws.shape == (1, 200, 2, 3, 21)
    draws = mp.draws[0]
    assert _is_monotone(draws, True)
    if nonnegative:
        assert bool((draws >= 0).all())
    torch.testing.assert_close(draws @ trapezoid_weights(x), mass.expand(200, 2, 3))
    # the projection of the posterior's own draws (same seed, same sampler)
    want = project_monotone(raw, trapezoid_weights(x), mass, nonnegative=nonnegative)
    torch.testing.assert_close(draws, want, rtol=0, atol=0)
    # increasing fields: the mirrored problem
    flipped = GaussianPosterior(
        post.mean.flip(-1), DiagLinearOperator(post.variance.flip(-1)), event_shape=(21,)
    )
    inc = monotone_posterior(flipped, x, mass, 50, decreasing=False, nonnegative=nonnegative)
    assert _is_monotone(inc.draws, False)
    torch.testing.assert_close(inc.draws[0] @ trapezoid_weights(x), mass.expand(50, 2, 3))


def test_monotone_posterior_checks_its_inputs():
    post, x, mass = _stefan_like_posterior(batch=(2, 1), nx=11)
    with pytest.raises(ValueError, match="num_samples: expected an int >= 2"):
        monotone_posterior(post, x, mass, 1)
    with pytest.raises(ValueError, match=r"mass: expected shape \(2, 1\)"):
        monotone_posterior(post, x, torch.ones(3), 4)
    with pytest.raises(ValueError, match=r"x: expected shape \(11,\)"):
        monotone_posterior(post, x[:5], mass, 4)
    with pytest.raises(TypeError, match="post: expected a Posterior, received Tensor"):
        monotone_posterior(post.mean, x, mass, 4)
    with pytest.raises(ValueError, match="b: expected a non-negative mass"):
        monotone_posterior(post, x, -mass, 4, nonnegative=True)
    with pytest.raises(TypeError, match="decreasing: expected True or False"):
        monotone_posterior(post, x, mass, 4, decreasing=None)
    with pytest.raises(TypeError, match="seed: expected an int"):
        monotone_posterior(post, x, mass, 4, seed=1.5)


@pytest.mark.parametrize("decreasing", [True, False])
def test_a_tiny_mass_with_the_bound_is_kept(decreasing):
    """A mass ``b > 0`` far below the draws' size (``b ~ 1e-15 |v|``, below what lambda resolves)
    came back as ``u = 0`` (mass 0) in 7 % of draws. For small ``b`` the projection is ``b``
    times its limit direction (the prefix ``1..k`` of largest ``sum v / sum g``, constant
    ``1 / sum g`` there): the same direction as at a resolvable mass, 1e-7."""
    gen = torch.Generator().manual_seed(0)
    g = _weights(gen, 11)
    v = torch.randn(1000, 11, generator=gen, dtype=F64)
    if not decreasing:
        v = v.flip(-1)
    for b in (1e-15, 1e-17, 1e-20):
        u = project_monotone(v, g, b, nonnegative=True, decreasing=decreasing)
        torch.testing.assert_close(u @ g, torch.full((1000,), b, dtype=F64), rtol=1e-12, atol=0)
        assert bool((u >= 0).all()) and _is_monotone(u, decreasing)
        ref = project_monotone(v, g, 1e-7, nonnegative=True, decreasing=decreasing) / 1e-7
        torch.testing.assert_close(u / b, ref, rtol=1e-6, atol=1e-6)
    # every prefix tied (v = 0, constant g): the minimum-norm point, uniform
    u = project_monotone(torch.zeros(11, dtype=F64), torch.full((11,), 0.1, dtype=F64), 1e-300)
    torch.testing.assert_close(u, torch.full((11,), 1e-300 / 1.1, dtype=F64), rtol=1e-12, atol=0)


def test_the_iteration_cap_returns_a_feasible_field_short_of_the_projection():
    """``iters`` caps the Newton/bisection steps on the multiplier: a cap of 1 on draws that
    need more still returns fields in the set (monotone, mass ``b``: the last constant shift
    keeps the order), but farther from the draws than the projection the default reaches."""
    gen = torch.Generator().manual_seed(0)
    n = 40
    g = _weights(gen, n)
    v = 3 * torch.randn(50, n, generator=gen, dtype=F64)
    b = torch.rand(50, generator=gen, dtype=F64)
    one, full = project_monotone(v, g, b, iters=1), project_monotone(v, g, b)
    for u in (one, full):
        assert bool((u[:, 1:] <= u[:, :-1]).all())
        assert float((u @ g - b).abs().max()) < 1e-12
    d_one, d_full = (one - v).norm(dim=-1), (full - v).norm(dim=-1)
    assert bool((d_full <= d_one * (1 + 1e-12)).all()) and bool((d_full < d_one - 1e-6).any())
