"""Property tests of the discrete schemes with an exact answer: finite-difference stencils
exact on low-degree polynomials away from the boundary, shifts that compose, the
Fisher-Kolmogorov solver's mass conservation without growth, its bounds (Strang splitting at
any step up to max_step, Euler at stable_steps' step sized with rho), and the exact logistic
flow's semigroup property."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.problems.fisher_kolmogorov import fk_forward, logistic_step, max_step, stable_steps
from bayesphys.problems.stencil import d1, d2, div_flux, face_average, laplacian, shift

F64 = torch.float64
EPS = torch.finfo(F64).eps


def _poly(x: torch.Tensor, coef: list[float]) -> torch.Tensor:
    return sum(c * x**k for k, c in enumerate(coef))


def _dpoly(coef: list[float], order: int) -> list[float]:
    for _ in range(order):
        coef = [k * c for k, c in enumerate(coef)][1:] or [0.0]
    return coef


coefs = st.lists(st.floats(-3, 3), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 12),
    h=st.sampled_from([0.05, 0.5, 1.0, 3.0]),
    x0=st.sampled_from([0.0, -1.0, 2.0]),
    coef=coefs,
    bc=st.sampled_from(["periodic", "neumann", "zero"]),
    batch=st.integers(1, 3),
)
def test_stencils_are_exact_on_low_degree_polynomials_inside(n, h, x0, coef, bc, batch):
    """Away from the boundary (whatever its rule): central d1 and d2 are exact for degree <= 2
    and <= 3 (d2's error term is h^2 u''''/12), forward and backward d1 for degree 1, and the
    second-order scheme's error on a cubic is exactly h^2 u'''/6 for d1; on any axis of a
    batched tensor."""
    x = x0 + h * torch.arange(n, dtype=F64)
    coef3 = (coef + [0.0] * 4)[:4]
    u = _poly(x, coef3).expand(batch, n).mT  # [n, batch]: the stencil axis first
    inner = slice(1, n - 1)
    size = max(1.0, max(abs(c) for c in coef3)) * (1 + abs(x0) + h * n) ** 3
    tol = 1e3 * EPS * size / h**2
    du = _poly(x, _dpoly(coef3, 1))[:, None]
    d3 = 6 * coef3[3]
    want1 = du + (h * h / 6) * d3  # central difference of a cubic: u' + h^2 u'''/6
    torch.testing.assert_close(
        d1(u, 0, h, "central", bc)[inner], want1[inner].expand(n - 2, batch), rtol=0, atol=tol
    )
    ddu = _poly(x, _dpoly(coef3, 2))[:, None]
    torch.testing.assert_close(
        d2(u, 0, h, bc)[inner], ddu[inner].expand(n - 2, batch), rtol=0, atol=tol
    )
    lin = (coef3[0] + coef3[1] * x)[:, None].expand(n, batch)
    slope = torch.full((n - 2, batch), coef3[1], dtype=F64)
    for scheme in ("forward", "backward"):
        torch.testing.assert_close(d1(lin, 0, h, scheme, bc)[inner], slope, rtol=0, atol=tol)
    # the laplacian on the trailing axes of the transposed layout is the same second difference
    torch.testing.assert_close(
        laplacian(u.mT, [h], bc)[:, inner], ddu[inner].mT.expand(batch, n - 2), rtol=0, atol=tol
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 7),
    k1=st.integers(-8, 8),
    k2=st.integers(-8, 8),
    bc=st.sampled_from(["periodic", "neumann", "zero"]),
    seed=st.integers(0, 10_000),
)
def test_shifts_compose(n, k1, k2, bc, seed):
    """shift(shift(u, k1), k2) = shift(u, k1 + k2) for periodic shifts of any size (beyond
    the axis length too) and for same-sign shifts under the other rules (the edge rule then
    applies to the same cells); shifting by n periodically is the identity."""
    u = torch.randn(2, n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    if bc != "periodic" and k1 * k2 < 0:
        k2 = -k2
    twice = shift(shift(u, 1, k1, bc), 1, k2, bc)
    assert torch.equal(twice, shift(u, 1, k1 + k2, bc))
    if bc == "periodic":
        assert torch.equal(shift(u, 1, n, bc), u)


def _faces(grid: tuple[int, ...], g: torch.Generator) -> list[torch.Tensor]:
    """Random non-negative face maps of a grid, some faces closed (0), the outer ones too."""
    d = torch.rand(grid, generator=g, dtype=F64)
    d = d * (torch.rand(grid, generator=g, dtype=F64) > 0.2)
    return [face_average(d, k) for k in range(len(grid))]


grids = st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)


@settings(max_examples=30, deadline=None)
@given(
    grid=grids,
    scheme=st.sampled_from(["euler", "strang"]),
    dw=st.sampled_from([0.01, 0.3, 2.0]),
    spacing=st.sampled_from([0.5, 1.0, 4.0]),
    frac=st.floats(0.1, 1.0),
    seed=st.integers(0, 10_000),
)
def test_without_growth_the_solver_conserves_mass(grid, scheme, dw, spacing, frac, seed):
    """rho = 0: every step only moves mass between cells through the faces (div_flux sums to
    0 cell by cell), so the total of c is conserved to round-off over many steps, with either
    scheme, for any non-negative faces (closed ones included) at any stable step."""
    g = torch.Generator().manual_seed(seed)
    faces = _faces(grid, g)
    c0 = torch.rand(grid, generator=g, dtype=F64)
    bound = max_step(faces, dw, 0.0, spacing, scheme)
    t_end = 1.0
    steps = 20
    if math.isfinite(bound):
        t_end = frac * bound * steps
    c = fk_forward(c0, faces, dw, 0.0, t_end=t_end, steps=steps, spacing=spacing, scheme=scheme)
    total = float(c0.sum())
    assert abs(float(c.sum()) - total) <= 100 * steps * EPS * max(1.0, total)
    assert float(div_flux(c0, [f * dw for f in faces], [spacing] * len(grid)).sum()) == (
        __import__("pytest").approx(0.0, abs=100 * EPS * float(c0.abs().sum()) * dw / spacing**2)
    )


@settings(max_examples=30, deadline=None)
@given(
    grid=grids,
    dw=st.sampled_from([0.01, 0.3, 2.0]),
    rho=st.sampled_from([-2.0, 0.0, 0.3, 5.0, 50.0]),
    frac=st.floats(0.05, 0.9),
    steps=st.integers(1, 15),
    seed=st.integers(0, 10_000),
)
def test_strang_keeps_the_state_in_the_unit_interval(grid, dw, rho, frac, steps, seed):
    """Strang splitting R_{dt/2} E_dt R_{dt/2}: the exact logistic flow maps [0, 1] into itself
    for any rho, and the Euler diffusion step below max_step is a convex combination of
    neighbours, so every state stays in [0, 1], whatever the growth rate and faces. (At
    max_step itself dt a may round to 1 + eps: the diffusion step can then undershoot 0 by
    round-off, which the growth's exact flow amplifies by exp(rho dt / 2).)"""
    g = torch.Generator().manual_seed(seed)
    faces = _faces(grid, g)
    c0 = torch.rand(grid, generator=g, dtype=F64)
    c0 = torch.where(c0 > 0.8, torch.ones_like(c0), torch.where(c0 < 0.2, 0 * c0, c0))
    bound = max_step(faces, dw, rho, 1.0, "strang")
    dt = frac * bound if math.isfinite(bound) else frac
    c, traj = fk_forward(
        c0,
        faces,
        dw,
        rho,
        t_end=dt * steps,
        steps=steps,
        spacing=1.0,
        scheme="strang",
        save_every=1,
    )
    assert float(traj.min()) >= 0 and float(traj.max()) <= 1


@settings(max_examples=30, deadline=None)
@given(
    grid=grids,
    dw=st.sampled_from([0.01, 0.3, 2.0]),
    rho=st.sampled_from([0.0, 0.3, 5.0, 50.0]),
    t_end=st.sampled_from([0.5, 3.0]),
    seed=st.integers(0, 10_000),
)
def test_euler_at_stable_steps_with_rho_keeps_the_unit_interval(grid, dw, rho, t_end, seed):
    """stable_steps(..., rho=rho) promises dt (A + rho) <= 1 (A the diffusion rate for faces
    <= 1), the condition for an explicit Euler step of diffusion plus logistic growth to keep
    c in [0, 1]: the whole trajectory stays there."""
    g = torch.Generator().manual_seed(seed)
    faces = _faces(grid, g)  # face averages of values in [0, 1]: faces <= 1
    c0 = torch.rand(grid, generator=g, dtype=F64)
    steps = stable_steps(t_end, dw, 1.0, len(grid), rho=rho)
    c, traj = fk_forward(
        c0, faces, dw, rho, t_end=t_end, steps=steps, spacing=1.0, scheme="euler", save_every=1
    )
    tol = 10 * EPS
    assert float(traj.min()) >= -tol and float(traj.max()) <= 1 + tol


@settings(max_examples=40, deadline=None)
@given(
    rho=st.floats(-5, 5),
    s=st.floats(0, 2),
    t=st.floats(0, 2),
    c=st.lists(st.floats(0, 1), min_size=1, max_size=6),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_logistic_flow_is_a_semigroup(rho, s, t, c, dtype):
    """The exact flow R_t of dc/dt = rho c (1 - c): R_s(R_t(c)) = R_{s+t}(c), R_0 = id, and
    [0, 1] (with its fixed points 0 and 1) is mapped into itself."""
    c = torch.tensor(c, dtype=dtype)
    eps = torch.finfo(dtype).eps
    twice = logistic_step(logistic_step(c, rho, t), rho, s)
    once = logistic_step(c, rho, s + t)
    # the flow's sensitivity to c is at most exp(|rho| (s + t))
    tol = 20 * eps * math.exp(abs(rho) * (s + t))
    torch.testing.assert_close(twice, once, rtol=0, atol=tol)
    assert torch.equal(logistic_step(c, rho, 0.0), c)
    assert float(once.min()) >= 0 and float(once.max()) <= 1 + 2 * eps
    ends = torch.tensor([0.0, 1.0], dtype=dtype)
    torch.testing.assert_close(logistic_step(ends, rho, s), ends, rtol=0, atol=2 * eps)


@settings(max_examples=40, deadline=None)
@given(
    p=st.sampled_from([-1e4, -800.0, -60.0, -40.0, -1.0, 0.0, 1.0, 40.0, 60.0, 800.0, 1e4]),
    c=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=6),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_logistic_flow_is_the_shifted_sigmoid_at_any_growth_exponent(p, c, dtype):
    """R_tau(c) = sigmoid(logit(c) + rho tau) exactly; at large |rho tau| the flow stays in
    [0, 1] with its fixed points 0 and 1. The form c e / (1 + c (e - 1)) gave NaN at every
    state once e = exp(rho tau) overflowed (rho tau > 709 in float64, 89 in float32) and inf
    at c = 1 once 1 + (e - 1) rounded to 0 (rho tau < -37 in float64, -17 in float32): a
    Strang step of a fast decay or of fast growth over a long step."""
    ct = torch.tensor(c, dtype=dtype)
    rho, tau = (p / 2, 2.0) if p else (3.0, 0.0)
    got = logistic_step(ct, rho, tau)
    want = torch.sigmoid(torch.logit(ct.double()) + rho * tau).to(dtype)
    eps = torch.finfo(dtype).eps
    # logit(c) carries c's rounding times 1 / (c (1 - c)) <= 1 / 0.0099; the sigmoid damps it
    torch.testing.assert_close(got, want, rtol=0, atol=300 * eps)
    ends = torch.tensor([0.0, 1.0], dtype=dtype)
    assert torch.equal(logistic_step(ends, rho, tau), ends)
    # a Strang solve with that exponent on each half step: finite, in [0, 1]
    faces = [torch.zeros(3, dtype=dtype)]
    c0 = torch.tensor([0.0, 0.5, 1.0], dtype=dtype)
    out = fk_forward(c0, faces, 0.0, rho, t_end=2 * tau, steps=1, spacing=1.0, scheme="strang")
    assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert float(out[0]) == 0.0 and float(out[2]) == 1.0


@settings(max_examples=25, deadline=None)
@given(
    p=st.sampled_from([-1e4, -2000.0, -40.0, -2.0, 0.5, 40.0, 2000.0, 1e4]),
    c=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=5),
)
def test_strang_tangent_is_the_derivative_of_the_flow_at_any_growth_exponent(p, c):
    """fk_forward_tangent's logistic half steps (no diffusion) against the derivatives of the
    exact flow R = sigmoid(y), y = logit(c) + rho T: dR/dc = R (1 - R) / (c (1 - c)) and
    dR/drho = T R (1 - R), finite for states inside (0, 1) at any rho T, also where
    exp(rho tau) of a half step overflows (NaN before). The tolerance is the half step's own
    round-off: its intermediate state near 1 carries 1 - c to about eps / (1 - c)."""
    from bayesphys.problems.fisher_kolmogorov import fk_forward_tangent

    c0 = torch.tensor(c, dtype=F64)
    n = len(c)
    rho = torch.tensor(p / 2, dtype=F64)
    faces = [torch.zeros(n, dtype=F64)]
    dc0 = torch.eye(n, dtype=F64)
    ddw, drho = torch.zeros(n, dtype=F64), torch.ones(n, dtype=F64)
    kw = dict(t_end=2.0, steps=1, spacing=1.0, scheme="strang")
    c_t, dc = fk_forward_tangent(c0, dc0, faces, 0.0, rho, ddw, drho, **kw)
    torch.testing.assert_close(c_t, fk_forward(c0, faces, 0.0, rho, **kw), rtol=0, atol=0)
    y = torch.logit(c0) + p
    slope = torch.exp(-y.abs()) / (1 + torch.exp(-y.abs())) ** 2  # R (1 - R), no overflow
    # each row k of dc: direction e_k in c0 plus a unit change of rho
    want = torch.diag(slope / (c0 * (1 - c0))) + (2.0 * slope)[None, :]
    assert bool(torch.isfinite(dc).all())
    # the half step's state c1 carries min(c1, 1 - c1) to a relative eps
    half = torch.logit(c0) + p / 2
    room = float(torch.minimum(torch.sigmoid(half), torch.sigmoid(-half)).min())
    rtol = min(1e-3, max(1e-9, 20 * torch.finfo(F64).eps / max(room, 1e-300)))
    torch.testing.assert_close(dc, want, rtol=rtol, atol=1e-290)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 20),
    m=st.integers(1, 5),
    noise=st.sampled_from([1e-2, 0.1, 1.0]),
    lengthscale=st.sampled_from([0.05, 0.2, 1.0]),
    seed=st.integers(0, 10_000),
)
def test_conjugate_posterior_reads_its_data_as_a_set_and_pools_repeated_sensors(
    n, m, noise, lengthscale, seed
):
    """The exact GP posterior is a function of the (sensor, value) pairs as a set: permuting
    them changes nothing; and two readings y1, y2 of one sensor with noise s are one reading
    (y1 + y2) / 2 with noise s / sqrt(2) (the same likelihood up to a constant)."""
    from bayesphys.problems.linear_gaussian import posterior_for

    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, n, dtype=F64)
    idx = torch.randint(0, n, (m,), generator=g)
    y = torch.randn(m, generator=g, dtype=F64)
    post = posterior_for(x, idx, y, noise, lengthscale)
    perm = torch.randperm(m, generator=g)
    again = posterior_for(x, idx[perm], y[perm], noise, lengthscale)
    # the sensors' covariance K_oo + s^2 I has condition number at most 1 + m / s^2
    tol = 100 * (1 + m / noise**2) * EPS
    torch.testing.assert_close(again.mean, post.mean, rtol=0, atol=tol * (1 + float(y.abs().max())))
    cov = post.covariance.to_dense()
    torch.testing.assert_close(again.covariance.to_dense(), cov, rtol=0, atol=tol)
    j = int(idx[0])
    y2 = torch.randn(2, generator=g, dtype=F64)
    twice = posterior_for(x, [j, j], y2, noise, lengthscale)
    pooled = posterior_for(x, [j], y2.mean()[None], noise / math.sqrt(2), lengthscale)
    tol2 = 100 * (1 + 2 / noise**2) * EPS
    torch.testing.assert_close(twice.mean, pooled.mean, rtol=0, atol=tol2 * 3)
    torch.testing.assert_close(
        twice.covariance.to_dense(), pooled.covariance.to_dense(), rtol=0, atol=tol2
    )


@settings(max_examples=25, deadline=None)
@given(
    grid=grids,
    dw=st.sampled_from([0.0, 0.05, 0.5]),
    rho_field=st.booleans(),
    spacing=st.sampled_from([0.5, 1.0, 3.0]),
    steps=st.integers(1, 8),
    seed=st.integers(0, 10_000),
)
def test_the_euler_trajectory_is_a_root_of_the_euler_residual(
    grid, dw, rho_field, spacing, steps, seed
):
    """fk_residual(scheme="euler") is the forward solver's own step written as an equation:
    the trajectory fk_forward(scheme="euler") saves at every step zeroes it to round-off,
    for a growth rate per cell or one number, with or without diffusion."""
    from bayesphys.problems.fisher_kolmogorov import fk_residual

    g = torch.Generator().manual_seed(seed)
    faces = _faces(grid, g)
    c0 = torch.rand(grid, generator=g, dtype=F64)
    rho = torch.rand(grid, generator=g, dtype=F64) if rho_field else 0.4
    bound = max_step(faces, dw, rho, spacing, "euler")
    dt = 0.5 * bound if math.isfinite(bound) else 0.3
    _, traj = fk_forward(
        c0, faces, dw, rho, t_end=dt * steps, steps=steps, spacing=spacing, save_every=1
    )
    r = fk_residual(traj, faces, dw, rho, dt=dt, spacing=spacing, scheme="euler")
    assert r.shape == (steps, *grid)
    # each level carries round-off of its size (<= 1 here) divided by dt
    assert float(r.abs().max()) <= 20 * EPS / dt * (1 + dt * (1 + dw * 4 * len(grid) / spacing**2))


@settings(max_examples=30, deadline=None)
@given(
    p=st.sampled_from([-2000.0, -40.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 40.0, 2000.0]),
    c=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=5),
)
def test_logistic_flow_gradients_are_its_derivatives(p, c):
    """Autograd through logistic_step gives the flow's derivatives at every exponent rho tau,
    0 included: dR/dc = R (1 - R) / (c (1 - c)) and dR/drho = tau R (1 - R), R = sigmoid(y),
    y = logit(c) + rho tau (a gradient taken through both sides of the exponent at
    rho tau = 0 counted it twice; an overflowing exponent gave NaN)."""
    tau = 2.0
    ct = torch.tensor(c, dtype=F64, requires_grad=True)
    rho = torch.tensor(p / tau, dtype=F64, requires_grad=True)
    out = logistic_step(ct, rho, tau)
    gc, grho = torch.autograd.grad(out.sum(), (ct, rho))
    c0 = ct.detach()
    y = torch.logit(c0) + p
    slope = torch.exp(-y.abs()) / (1 + torch.exp(-y.abs())) ** 2  # R (1 - R), no overflow
    # autograd differentiates c a / (c a + (1 - c) b) term by term: its terms of size
    # 1 / min(c, 1 - c) cancel to the derivative, which is tiny at large |rho tau|
    atol = 10 * EPS / float(torch.minimum(c0, 1 - c0).min())
    torch.testing.assert_close(gc, slope / (c0 * (1 - c0)), rtol=1e-9, atol=atol)
    torch.testing.assert_close(grho, tau * slope.sum(), rtol=1e-9, atol=tau * len(c) * atol)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 24),
    h=st.sampled_from([1e-3, 0.05, 1.0]),
    scale=st.sampled_from([1e-6, 1.0, 1e6]),
    seed=st.integers(0, 10_000),
)
def test_cavity_streamfunction_solve_inverts_the_five_point_laplacian(m, h, scale, seed):
    """The cavity solver's sine-transform Poisson solve is exact: psi (zero on the boundary)
    satisfies -(psi_{i+1,j} + psi_{i-1,j} + psi_{i,j+1} + psi_{i,j-1} - 4 psi_ij) / h^2 = f on
    every interior node, to the round-off of the transform (one interior node included)."""
    import numpy as np

    from bayesphys.problems.cavity import _poisson_dirichlet

    rng = np.random.default_rng(seed)
    f = rng.normal(size=(m, m)) * scale
    psi = np.pad(_poisson_dirichlet(f, h), 1)
    lap = psi[2:, 1:-1] + psi[:-2, 1:-1] + psi[1:-1, 2:] + psi[1:-1, :-2] - 4 * psi[1:-1, 1:-1]
    # the transforms' round-off: a few eps of |f| per node along a line (measured 0.5 m eps)
    tol = 10 * (m + 1) * EPS * np.abs(f).max()
    np.testing.assert_allclose(-lap / h**2, f, rtol=0, atol=tol)
