"""Discrete-loss engine: stencil orders, Gauss-Newton, multigrid, Laplace."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.odil import (
    DiscreteProblem,
    Multigrid,
    d1,
    dense_gn_matrix,
    div_flux,
    face_average,
    field_posterior,
    laplacian,
    minimize,
    theta_covariance,
)


def _grid(n, nd):
    h = 1.0 / n
    x1 = (torch.arange(n, dtype=torch.float64) + 0.5) * h
    xs = torch.meshgrid(*([x1] * nd), indexing="ij")
    return xs, h


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_laplacian_manufactured_second_order(nd):
    errs = []
    for n in [16, 32] if nd == 3 else [32, 64]:
        xs, h = _grid(n, nd)
        u = math.prod(torch.sin(2 * math.pi * x) for x in xs)
        exact = -nd * (2 * math.pi) ** 2 * u
        errs.append(float((laplacian(u, [h] * nd) - exact).abs().max()))
    order = math.log2(errs[0] / errs[1])
    assert 1.9 < order < 2.1, (errs, order)


@pytest.mark.parametrize("scheme,expected", [("central", 2.0), ("backward", 1.0)])
def test_first_derivative_order(scheme, expected):
    errs = []
    for n in [64, 128]:
        (x,), h = _grid(n, 1)
        u = torch.sin(2 * math.pi * x)
        errs.append(
            float((d1(u, 0, h, scheme) - 2 * math.pi * torch.cos(2 * math.pi * x)).abs().max())
        )
    order = math.log2(errs[0] / errs[1])
    assert abs(order - expected) < 0.1, (errs, order)


def test_div_flux_conserves_and_is_second_order():
    errs = []
    for n in [32, 64]:
        (x, y), h = _grid(n, 2)
        dcoef = 1.0 + 0.5 * torch.sin(2 * math.pi * x)
        # u with zero normal derivative at the walls
        u = torch.cos(math.pi * x) * torch.cos(math.pi * y)
        faces = [face_average(dcoef, 0), face_average(dcoef, 1)]
        out = div_flux(u, faces, [h, h])
        assert abs(float(out.sum())) < 1e-9  # telescoping: no mass created
        ux = -math.pi * torch.sin(math.pi * x) * torch.cos(math.pi * y)
        dd = 0.5 * 2 * math.pi * torch.cos(2 * math.pi * x)
        exact = dd * ux - dcoef * 2 * math.pi**2 * u
        inner = (slice(2, -2), slice(2, -2))
        errs.append(float((out - exact)[inner].abs().max()))
    order = math.log2(errs[0] / errs[1])
    assert order > 1.8, (errs, order)


def _poisson_problem(n=24, multigrid=None, device="cpu"):
    (x, y), h = _grid(n, 2)
    f = torch.sin(2 * math.pi * x) * torch.cos(2 * math.pi * y)
    f = f.to(device)

    def res(fields, params):
        u = fields["u"]
        return {
            "pde": laplacian(u, [h, h]) - f,
            "gauge": (u.mean() - params["c"]).reshape(1) * 10.0,
            "prior_c": params["c"].reshape(1) - 0.3,
        }

    return DiscreteProblem({"u": (n, n)}, {"c": 0.0}, res, multigrid=multigrid, device=device), f, h


@pytest.mark.parametrize("solver", ["dense", "cg"])
def test_gauss_newton_one_step_linear(solver):
    prob, f, h = _poisson_problem(12 if solver == "dense" else 24)
    x0 = prob.initial()
    x1, res = minimize(
        prob, x0, method="gn", steps=1, linear_solver=solver, cg_tol=1e-12, cg_maxiter=5000
    )
    # the gradient vanishes after one step: x1 is the least-squares minimiser
    xg = x1.clone().requires_grad_(True)
    prob.loss(xg).backward()
    g0 = x0.clone().requires_grad_(True)
    prob.loss(g0).backward()
    assert float(xg.grad.norm()) < 1e-6 * float(g0.grad.norm())
    fields, params = prob.unpack(x1)
    exact = -f / (8 * math.pi**2)
    assert abs(float(params["c"]) - 0.3) < 1e-8
    # discrete solution is O(h^2) close to the continuous one (+ gauge 0.3)
    assert float((fields["u"] - 0.3 - exact).abs().max()) < 0.05 * float(exact.abs().max())


@pytest.mark.parametrize("method", ["lbfgs", "lm"])
def test_optimisers_with_multigrid(method):
    prob, f, h = _poisson_problem(16, multigrid={"u": 3})
    steps = {"lbfgs": 60, "lm": 20}[method]
    x, res = minimize(prob, method=method, steps=steps, tol=1e-14)
    fields, params = prob.unpack(x)
    ref_prob, _, _ = _poisson_problem(16)
    xr, _ = minimize(ref_prob, method="gn", steps=1, linear_solver="dense")
    ur = ref_prob.unpack(xr)[0]["u"]
    assert float((fields["u"] - ur).abs().max()) < 1e-4 * float(ur.abs().max())


def test_adam_reduces_loss():
    prob, f, h = _poisson_problem(16)
    x, res = minimize(prob, method="adam", steps=1500, lr=0.05, tol=None)
    # constant-rate Adam on this stiff problem oscillates (spikes up to ~3000x the initial
    # loss) before it settles near 1.4e-3 x the initial loss; where it stands at the last step
    # depends on round-off (it differs between CPUs), the lowest loss it reaches does not
    # (1.39e-3 from initial states perturbed by 1e-12 ... 1e-6)
    assert min(res.loss_history) < 2e-3 * res.loss_history[0]
    assert bool(torch.isfinite(x).all()) and len(res.loss_history) == 1500


def test_multigrid_roundtrip_and_levels():
    mg = Multigrid((9, 16), levels=3)
    assert mg.level_shapes == [(9, 16), (5, 8), (3, 4)]
    u = torch.randn(9, 16, dtype=torch.float64)
    assert torch.equal(mg.to_fine(mg.from_fine(u)), u)
    c = torch.zeros(mg.size, dtype=torch.float64)
    c[-1] = 1.0  # a coarse basis function interpolates to a smooth bump
    v = mg.to_fine(c)
    assert v.shape == (9, 16) and float(v.max()) == pytest.approx(1.0) and float(v.min()) >= 0


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    levels=st.integers(2, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_separable_interpolation_equals_torch_interpolate(shape, levels, seed):
    """The one-axis-at-a-time map used for 4-axis fields is torch's multilinear interpolation."""
    import torch.nn.functional as F

    from bayesphys.odil.multigrid import _interp_separable

    mg = Multigrid(shape, levels)
    g = torch.Generator().manual_seed(seed)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(shape)]
    for s in mg.level_shapes[1:]:
        c = torch.randn(s, generator=g, dtype=torch.float64)
        ref = F.interpolate(c[None, None], size=tuple(shape), mode=mode, align_corners=True)[0, 0]
        assert torch.allclose(_interp_separable(c, tuple(shape)), ref, rtol=0, atol=1e-13)


def test_multigrid_on_a_3d_field_in_time():
    """A (t, x, y, z) field: the coarse levels interpolate multilinear functions exactly, and a
    data-smoothing problem held in the multigrid decomposition solves to the plain solution."""
    shape = (5, 9, 7, 6)
    mg = Multigrid(shape, levels=3)
    assert mg.level_shapes == [shape, (3, 5, 4, 3), (2, 3, 2, 2)]
    for lvl, s in enumerate(mg.level_shapes):
        axes = [torch.linspace(0, 1, n, dtype=torch.float64) for n in s]
        grids = torch.meshgrid(*axes, indexing="ij")
        coarse = 1 + 2 * grids[0] - grids[1] + 0.5 * grids[2] * grids[3] + grids[0] * grids[1]
        fine_axes = [torch.linspace(0, 1, n, dtype=torch.float64) for n in shape]
        fg = torch.meshgrid(*fine_axes, indexing="ij")
        exact = 1 + 2 * fg[0] - fg[1] + 0.5 * fg[2] * fg[3] + fg[0] * fg[1]
        c = torch.zeros(mg.size, dtype=torch.float64)
        off = sum(mg.sizes[:lvl])
        c[off : off + mg.sizes[lvl]] = coarse.reshape(-1)
        assert torch.allclose(mg.to_fine(c), exact, rtol=0, atol=1e-12)

    data = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def res(f, p):  # smoothing of noisy data: data misfit + interior second differences
        u = f["u"]
        inner = [slice(1, -1)] * 4
        curv = [
            torch.diff(u, n=2, dim=k)[tuple(inner[:k] + [slice(None)] + inner[k + 1 :])]
            for k in range(4)
        ]
        return {"data": u - data, "smooth": 3.0 * sum(curv)}

    plain = DiscreteProblem({"u": shape}, {}, res)
    held = DiscreteProblem({"u": shape}, {}, res, multigrid={"u": 3})
    xp, _ = minimize(plain, method="gn", steps=1, linear_solver="dense")
    xm, fit = minimize(held, method="lm", steps=30, tol=1e-14)
    up, um = plain.unpack(xp)[0]["u"], held.unpack(xm)[0]["u"]
    assert fit.converged
    assert um.shape == shape and float((um - up).abs().max()) < 1e-8 * float(up.abs().max())


def _linear_gaussian(n=20, seed=0, scale=1.0):
    """y_i = u_i + theta + e_i; smoothness prior on u; Gaussian prior on theta (data and sds
    in units ``scale`` times the default ones)."""
    g = torch.Generator().manual_seed(seed)
    sig, tau, s_theta = 0.3 * scale, 0.5 * scale, 2.0 * scale
    y = scale * torch.randn(n, generator=g, dtype=torch.float64)
    obs = torch.arange(0, n, 2)

    def res(fields, params):
        u = fields["u"]
        return {
            "data": (u[obs] + params["theta"] - y[obs]) / sig,
            "prior_u": torch.cat([u[:1], u[1:] - u[:-1]]) / tau,
            "prior_theta": params["theta"].reshape(1) / s_theta,
        }

    prob = DiscreteProblem({"u": (n,)}, {"theta": 0.0}, res)
    # exact joint posterior precision of (u, theta)
    m = len(obs)
    a = torch.zeros(m, n + 1, dtype=torch.float64)
    a[torch.arange(m), obs] = 1
    a[:, -1] = 1
    dmat = torch.eye(n, dtype=torch.float64) - torch.diag(
        torch.ones(n - 1, dtype=torch.float64), -1
    )
    prec = a.T @ a / sig**2
    prec[:n, :n] += dmat.T @ dmat / tau**2
    prec[n, n] += 1 / s_theta**2
    mean = torch.linalg.solve(prec, a.T @ y[obs] / sig**2)
    return prob, torch.linalg.inv(prec), mean


def test_minimize_warns_when_the_inner_cg_is_capped():
    """A GN/LM step whose CG stopped at ``cg_maxiter`` above ``cg_tol`` is inexact; the fit
    used to say nothing (a docs example ran 30 LM steps all capped at 500 iterations)."""
    import warnings

    prob, _, mean = _linear_gaussian()
    with pytest.warns(RuntimeWarning, match=r"inner CG stopped above cg_tol=1e-13 .* 1 of 1 steps"):
        x, res = minimize(
            prob, method="gn", steps=1, linear_solver="cg", cg_tol=1e-13, cg_maxiter=2
        )
    assert res.extra["cg_iters"] == [2] and res.extra["cg_rel"][0] > 1e-13
    assert not torch.allclose(x, mean, atol=1e-8)  # the capped step is not the GN step
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged inner solve: no warning
        _, res = minimize(prob, method="gn", steps=1, linear_solver="cg", cg_tol=1e-13)
    assert res.extra["cg_rel"][0] <= 1e-13


def test_laplace_equals_exact_posterior_linear_gaussian():
    prob, cov, mean = _linear_gaussian()
    x, _ = minimize(prob, method="gn", steps=1, linear_solver="cg", cg_tol=1e-13)
    assert torch.allclose(x, mean, atol=1e-8)
    ct, info = theta_covariance(prob, x, ["theta"], cg_tol=1e-13)
    assert torch.allclose(ct, cov[-1:, -1:], rtol=1e-7)
    assert max(info["cg_residuals"]) <= 1e-13
    # a CG capped before convergence says so instead of returning a silently inexact covariance
    with pytest.warns(RuntimeWarning, match="raise cg_maxiter"):
        _, capped = theta_covariance(prob, x, ["theta"], cg_tol=1e-13, cg_maxiter=1)
    assert capped["cg_residuals"][0] > 1e-13
    post = field_posterior(prob, x, "u")
    assert torch.allclose(post.covariance.to_dense(), cov[:-1, :-1], rtol=1e-8, atol=1e-12)
    assert torch.allclose(post.mean, mean[:-1], atol=1e-8)
    # the pathwise sampler reproduces the same covariance
    post_mc = field_posterior(prob, x, "u", dense_max=0, num_samples=200, cg_tol=1e-10)
    assert torch.allclose(post_mc.variance, cov.diagonal()[:-1], rtol=0.35)
    assert torch.allclose(dense_gn_matrix(prob, x), torch.linalg.inv(cov), atol=1e-8)
    # the sparse Schur complement (coloured Jacobian + sparse LU) gives the same marginal
    cs, sinfo = theta_covariance(prob, x, ["theta"], sparse=True)
    assert torch.allclose(cs, cov[-1:, -1:], rtol=1e-9)
    assert sinfo["jacobian_nnz"] > 0
    with pytest.raises(ValueError, match="dense, sparse: choose one"):
        theta_covariance(prob, x, ["theta"], dense=True, sparse=True)


def test_problem_bad_input():
    with pytest.raises(TypeError, match="residuals"):
        DiscreteProblem({"u": (3,)}, {}, None)
    with pytest.raises(ValueError, match="multigrid"):
        DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"r": f["u"]}, multigrid={"v": 2})
    prob = DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"r": f["u"]})
    with pytest.raises(ValueError, match="x0"):
        minimize(prob, torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="method"):
        minimize(prob, method="sgd")


@pytest.mark.parametrize(
    "params", [{}, {"a": torch.zeros(0, dtype=torch.float64)}], ids=["none", "empty"]
)
def test_a_problem_without_unknowns_is_refused_by_name(params):
    """A problem with no unknowns was built, and every solver then failed inside torch
    ("element 0 of tensors does not require grad", "max(): Expected reduction dim")."""
    with pytest.raises(ValueError, match="fields, params: expected at least one unknown"):
        DiscreteProblem({}, params, lambda f, p: {"r": torch.ones(3, dtype=torch.float64)})
    # one unknown is enough
    prob = DiscreteProblem({}, {"a": 1.0}, lambda f, p: {"r": p["a"] - 2.0})
    x, fit = minimize(prob, method="gn", linear_solver="dense")
    assert fit.converged and float(x[0]) == 2.0


@pytest.mark.gpu
def test_engine_cuda(cuda_device):
    prob, f, h = _poisson_problem(32, device=cuda_device)
    x, res = minimize(prob, method="lm", steps=5)
    assert x.device.type == "cuda"
    ct, _ = theta_covariance(prob, x, ["c"])
    assert ct.device.type == "cuda"
    # the same numbers as on the CPU (float64 throughout; a linear problem, so LM lands on
    # the same minimiser)
    prob_cpu, _, _ = _poisson_problem(32)
    x_cpu, _ = minimize(prob_cpu, method="lm", steps=5)
    ct_cpu, _ = theta_covariance(prob_cpu, x_cpu, ["c"])
    torch.testing.assert_close(x.cpu(), x_cpu, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(ct.cpu(), ct_cpu, rtol=1e-6, atol=0)


def _pack_problem():
    return DiscreteProblem(
        {"u": (3, 4)}, {"k": torch.zeros(2)}, lambda f, p: {"a": f["u"] - 1, "b": p["k"] - 2}
    )


def test_pack_refuses_unknown_names():
    prob = _pack_problem()
    with pytest.raises(ValueError, match="fields: unknown names"):
        prob.pack(fields={"U": torch.ones(3, 4)})
    with pytest.raises(ValueError, match="params: unknown names"):
        prob.pack(params={"K": torch.ones(2)})


def test_pack_refuses_misshaped_params_and_round_trips():
    prob = _pack_problem()
    with pytest.raises(ValueError, match=r"params\['k'\]: expected shape \(2,\)"):
        prob.pack(params={"k": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"params\['k'\]"):
        prob.pack(params={"k": torch.zeros(2, 1)})
    u, k = torch.arange(12.0).reshape(3, 4), torch.tensor([5.0, 6.0])
    f, p = prob.unpack(prob.pack({"u": u}, {"k": k}))
    assert torch.equal(f["u"], u.double()) and torch.equal(p["k"], k.double())


def test_pack_refuses_complex_and_non_numeric_values_by_name():
    """A complex field was cast with only a warning (its imaginary part dropped); a complex
    or text value failed in torch without naming the entry."""
    prob = DiscreteProblem({"u": (3,)}, {"a": 0.0}, lambda f, p: {"r": f["u"] - p["a"]})
    with pytest.raises(TypeError, match=r"^fields\['u'\]: expected real values"):
        prob.pack({"u": torch.full((3,), 1 + 2j)})
    with pytest.raises(TypeError, match=r"^params\['a'\]: expected real values"):
        prob.pack(params={"a": 1 + 2j})
    with pytest.raises(TypeError, match=r"^fields\['u'\]: expected a tensor or array"):
        prob.pack({"u": object()})
    x = prob.pack({"u": [1, 2, 3.5]}, {"a": 2})  # lists and ints as before
    assert torch.equal(x, torch.tensor([1.0, 2.0, 3.5, 2.0], dtype=torch.float64))


def test_pack_takes_a_plain_number_for_a_one_element_parameter():
    prob = DiscreteProblem({"u": (3,)}, {"k": torch.zeros(1)}, lambda f, p: {"a": p["k"] - 2})
    _, p = prob.unpack(prob.pack(params={"k": 2.5}))
    assert p["k"].tolist() == [2.5]


def test_gauss_newton_keeps_the_last_finite_iterate_when_a_step_overflows():
    # r(c) = exp(c) - 1 from c = -30: the undamped step is ~1e13, whose residual overflows;
    # before, minimize returned that point (loss inf) with "diverged"
    def res(fields, params):
        return {"r": torch.exp(params["c"]).reshape(1) - 1.0}

    prob = DiscreteProblem({}, {"c": -30.0}, res)
    x0 = prob.initial()
    x, out = minimize(prob, x0, method="gn", steps=5, linear_solver="dense")
    assert "diverged at step 0" in out.message
    assert torch.equal(x, x0) and out.loss_history == [pytest.approx(0.5)]
    # LM rejects the step instead and stays finite
    x, out = minimize(prob, x0, method="lm", steps=5, linear_solver="dense")
    assert torch.isfinite(x).all() and all(math.isfinite(v) for v in out.loss_history)


def test_laplace_helpers_read_a_list_in_the_problem_dtype():
    prob = DiscreteProblem(
        {"u": (3,)}, {}, lambda f, p: {"r": 2.0 * f["u"] - 1.0}, dtype=torch.float32
    )
    h = dense_gn_matrix(prob, [0.0, 0.5, 1.0])
    assert h.dtype == torch.float32
    assert torch.allclose(h, 4.0 * torch.eye(3))


def _observed_order(hs: list[float], errs: list[float]) -> float:
    """Least-squares slope of log(error) against log(h)."""
    lh, le = torch.tensor(hs).log(), torch.tensor(errs).log()
    lh = lh - lh.mean()
    return float((lh * (le - le.mean())).sum() / (lh * lh).sum())


def _heat_crank_nicolson(nx: int, **solve) -> tuple[float, object]:
    """u_t = u_xx on (0, 1), u = 0 at x = 0, 1, u(0, x) = sin(pi x), to t = 0.1, solved as one
    discrete loss over all time levels (Crank-Nicolson in time, vertex grid, dt = 0.1 / nx);
    returns the max error at t = 0.1 against exp(-pi^2 t) sin(pi x) and the fit result.
    ``solve``: :func:`minimize` settings (default: 3 sparse Gauss-Newton steps)."""
    nt, h, t_end = nx, 1.0 / nx, 0.1
    dt = t_end / nt
    x = torch.arange(1, nx, dtype=torch.float64) * h  # interior nodes; boundary nodes are 0

    def res(f, p):
        u = f["u"]  # [nt + 1, nx - 1]
        lap = laplacian(u, [h], bc="zero")  # Dirichlet 0 at the boundary nodes
        pde = (u[1:] - u[:-1]) / dt - 0.5 * (lap[1:] + lap[:-1])
        return {"pde": pde, "ic": 1e3 * (u[0] - torch.sin(math.pi * x))}

    prob = DiscreteProblem({"u": (nt + 1, nx - 1)}, {}, res)
    solve = {"method": "gn", "steps": 3, "linear_solver": "sparse", **solve}
    xs, fit = minimize(prob, **solve)
    u_end = prob.unpack(xs)[0]["u"][-1]
    exact = math.exp(-(math.pi**2) * t_end) * torch.sin(math.pi * x)
    return float((u_end - exact).abs().max()), fit


def test_engine_solves_heat_crank_nicolson_at_second_order():
    """The discrete loss of a CN heat equation, minimised by Gauss-Newton, converges at
    order 2 in h (dt ~ h): the engine (pack/unpack, residual, GN solve) adds no error."""
    hs, errs = [], []
    for nx in (8, 16, 32):
        err, fit = _heat_crank_nicolson(nx)
        assert fit.converged, fit.message
        hs.append(1.0 / nx)
        errs.append(err)
    assert errs[-1] < 5e-4
    assert abs(_observed_order(hs, errs) - 2.0) < 0.2, errs


def test_engine_solves_manufactured_poisson_2d_at_second_order():
    """-lap u = f on the unit square, u = 0 on the boundary, manufactured u = sin(pi x)
    sin(2 pi y) (f = 5 pi^2 u), five-point stencil on a vertex grid, sparse Gauss-Newton."""
    hs, errs = [], []
    for n in (8, 16, 32):
        h = 1.0 / n
        x1 = torch.arange(1, n, dtype=torch.float64) * h
        x, y = torch.meshgrid(x1, x1, indexing="ij")
        exact = torch.sin(math.pi * x) * torch.sin(2 * math.pi * y)
        src = 5 * math.pi**2 * exact

        def res(f, p, h=h, src=src):
            return {"pde": laplacian(f["u"], [h, h], bc="zero") + src}

        prob = DiscreteProblem({"u": (n - 1, n - 1)}, {}, res)
        xs, fit = minimize(prob, method="gn", steps=3, linear_solver="sparse")
        assert fit.converged, fit.message
        hs.append(h)
        errs.append(float((prob.unpack(xs)[0]["u"] - exact).abs().max()))
    assert errs[-1] < 5e-3
    assert abs(_observed_order(hs, errs) - 2.0) < 0.2, errs


@pytest.mark.parametrize("nx", [8, 16])
@pytest.mark.parametrize("method", ["gn", "lm"])
def test_an_exactly_solved_linear_problem_reports_convergence(method, nx):
    """A linear least-squares problem is solved by the first Gauss-Newton step down to
    round-off (loss 2e6 -> 2e-26); the relative decrease of a round-off loss is noise, and the
    fit used to end at max steps with converged=False. The first step's solve errs by about
    cond(J) eps (2 to 12 eps of max|x| at nx = 8 with AVX-512, AVX2 and SSE kernels;
    20 to 50 at nx = 16): a second step refines it, and the next moves the iterate only at
    round-off, which ends the fit, converged. LM rejected that round-off step whenever it
    raised the loss (nx = 16 on every kernel set, nx = 8 with AVX2 / SSE ones) and ended
    "max steps", not converged."""
    m = (nx + 1) * (nx - 1)  # residuals: nx time levels and the initial one, nx - 1 nodes
    eps = torch.finfo(torch.float64).eps
    for solver in ("dense", "sparse"):
        _, fit = _heat_crank_nicolson(nx, method=method, linear_solver=solver, damping=0.0, steps=4)
        # 2 steps when the first solve's error is already below 8 eps max|x|, else 3
        assert fit.converged and fit.steps in (2, 3), (solver, fit.message)
        assert "round-off" in fit.message, fit.message
        # the first step's loss is at round-off of the start: |r_1| <= sqrt(m) eps |r_0|
        assert fit.loss_history[1] <= m * eps**2 * fit.loss_history[0]
    # a fit that stops short of round-off keeps the relative-decrease rule and its steps
    _, fit = _heat_crank_nicolson(8, method=method, linear_solver="cg", cg_tol=1e-2, steps=3)
    assert not fit.converged and fit.steps == 3, fit.message


@pytest.mark.parametrize("method", ["gn", "lm"])
def test_the_roundoff_rule_does_not_stop_a_float32_fit_that_is_still_moving(method):
    """A large, exactly solvable penalty dominates the starting loss of a float32 fit; the
    nonlinear rest (s (u^2 - 2), root sqrt 2) is far from solved when the loss has fallen by
    m eps^2 (a rule on the loss against its start stopped here, converged, 0.41 from the
    root). The round-off rule, which also needs a round-off step, no longer stops it early."""
    n, w, s = 1000, 1e5, 1e-2

    def res(f, p):
        u = f["u"]
        return {"ic": w * (u[:1] - 1.0), "nl": s * (u[1:] ** 2 - 2.0)}

    prob = DiscreteProblem({"u": (n + 1,)}, {}, res, dtype=torch.float32)
    x0 = torch.ones(n + 1, dtype=torch.float32)
    x0[0] = 0.0
    x, fit = minimize(prob, x0, method=method, linear_solver="cg", steps=30, tol=1e-12)
    assert fit.converged, fit.message
    assert float((x[1:] - 2**0.5).abs().max()) < 1e-5
    assert float((x[0] - 1.0).abs()) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["gn", "lm"])
def test_the_roundoff_rule_does_not_stop_a_small_field_beside_a_large_parameter(method, dtype):
    """A parameter ~1e3 (solved at once) beside a field ~1e-3 (root of u^2 = 1e-6, Newton
    from 2e-3): the field's steps fall below eps * max|x| while it is still a few % from its
    root; a step-size test alone stopped there, converged."""

    def res(f, p):
        return {"p": (p["P"] - 1000.0).reshape(1), "nl": 1e6 * (f["u"] ** 2 - 1e-6)}

    prob = DiscreteProblem({"u": (4,)}, {"P": torch.tensor([999.0])}, res, dtype=dtype)
    x0 = prob.initial().clone()
    x0[prob.slices["u"]] = 2e-3
    x, fit = minimize(prob, x0, method=method, linear_solver="dense", steps=50, tol=1e-9)
    u = x[prob.slices["u"]]
    assert fit.converged, fit.message
    assert float((u / 1e-3 - 1).abs().max()) < 1e-4, (fit.message, u)


@pytest.mark.parametrize("method", ["gn", "lm"])
def test_the_roundoff_rule_does_not_stop_a_float32_step_that_still_decreases_the_loss(method):
    """m = 10^4 float32 residuals whose optimum loss is 1 (a data misfit), a parameter ~1e3
    (so 8 eps max|x| ~ 1e-3) and a term s v^2 with a double root at 0, 1e-3 of the loss at
    v = 1e-3, that Gauss-Newton halves v against. Its steps are below 8 eps max|x| and its
    second changes the loss by 6e-5 of it, a real decrease (~500 eps) but below
    8 sqrt(m) eps ~ 1e-4: an accepted-step rule on 8 sqrt(m) eps (the bound of steps that
    run out) stopped Gauss-Newton there, converged, with 4e-6 of the loss (~30 eps) still to
    shed. The rule's 8 eps lets both methods on until the term is at round-off of the loss."""
    n, c, s = 5000, 2e-3 * math.sqrt(200), math.sqrt(2e9)  # misfit loss n c^2 / 4 = 1

    def res(f, p):
        u, v = f["u"], f["v"]
        return {"a": u - c / 2, "b": u + c / 2, "P": (p["P"] - 1e3).reshape(1), "nl": s * v**2}

    prob = DiscreteProblem(
        {"u": (n,), "v": (1,)}, {"P": torch.tensor([999.0])}, res, dtype=torch.float32
    )
    x0 = prob.initial().clone()
    x0[prob.slices["v"]] = 1e-3
    x, fit = minimize(prob, x0, method=method, linear_solver="cg", steps=40, tol=1e-10)
    assert fit.converged, fit.message
    v = float(x[prob.slices["v"]].abs())
    eps = torch.finfo(torch.float32).eps
    assert 0.5 * s**2 * v**4 <= 8 * eps * fit.loss_history[-1], (v, fit.message)


def test_the_roundoff_rule_does_not_stop_a_heavily_damped_lm_fit():
    """A heavily damped LM step is tiny because of the damping, not a fixed point; a
    step-size test alone stopped it after one step with the loss down 0.7 %."""
    prob = DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"a": f["u"] - 5.0}, dtype=torch.float32)
    x0 = torch.full((3,), 4.999, dtype=torch.float32)
    x, fit = minimize(
        prob, x0, method="lm", linear_solver="dense", steps=100, damping=1e3, tol=1e-9
    )
    assert fit.steps > 1 and float((x - 5).abs().max()) < 1e-5, fit.message


def test_dense_gauss_newton_on_a_float32_problem_with_a_scalar_parameter():
    """jacfwd gives float64 rows for a 0-dim float32 parameter minus a Python number; the
    dense float32 solve used to fail with a dtype error."""

    def res(f, p):
        return {"p": p["P"] - 1000.0, "u": f["u"] - 1.0}

    prob = DiscreteProblem({"u": (3,)}, {"P": torch.tensor(999.0)}, res, dtype=torch.float32)
    x, fit = minimize(prob, method="gn", linear_solver="dense", steps=5, tol=1e-9)
    assert x.dtype == torch.float32 and fit.converged, fit.message
    assert prob.unpack(x)[1]["P"].item() == pytest.approx(1000.0)
    assert torch.allclose(prob.unpack(x)[0]["u"], torch.ones(3))


@pytest.mark.parametrize("jac_dtype", [torch.float64, "mixed"])
def test_a_float64_user_jacobian_of_a_float32_problem_keeps_its_dtype(jac_dtype):
    """A hand-written Jacobian in float64 for a float32 problem turned the iterate float64;
    a float64 J beside a float32 r failed with a raw dtype error in the matmul."""
    y = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    prob = DiscreteProblem(
        {"u": (3,)}, {}, lambda f, p: {"r": f["u"] ** 2 - y.float()}, dtype=torch.float32
    )

    def jacobian(x):
        xd = x.double()
        r = xd**2 - y if jac_dtype == torch.float64 else x**2 - y.float()
        return r, torch.diag(2 * xd)

    x, fit = minimize(prob, torch.ones(3), method="lm", linear_solver="dense", jacobian=jacobian)
    assert x.dtype == torch.float32 and fit.converged, fit.message
    torch.testing.assert_close(x, y.float().sqrt())


def test_a_damping_stall_on_a_wrong_jacobian_is_not_convergence():
    """A Jacobian of the wrong sign promises a decrease that no step gives: LM rejected every
    step until its damping passed 1e16 and reported a "local minimum" at the start,
    converged. The least damped rejected step predicted a decrease far above the loss's
    round-off, so the stall now says it is not a minimum."""
    from bayesphys.odil import DiscreteProblem, minimize

    target = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    prob = DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"r": f["u"] - target})

    def wrong_jacobian(x):
        return x - target, -torch.eye(3, dtype=x.dtype)

    x0 = torch.zeros(3, dtype=torch.float64)
    x, fit = minimize(
        prob, x0, method="lm", steps=200, linear_solver="dense", jacobian=wrong_jacobian, tol=1e-9
    )
    assert fit.message.startswith("stalled"), fit.message
    assert not fit.converged and "NOT a minimum" in fit.message, fit.message
    assert torch.equal(x, x0)
    # the right Jacobian: solved, and a stall at the solution is a minimum
    x, fit = minimize(prob, x0, method="lm", steps=200, linear_solver="dense", tol=1e-9)
    assert fit.converged and torch.allclose(x, target), fit.message


def test_a_damping_stall_at_a_nonzero_residual_minimum_is_convergence():
    """Residuals that cannot all vanish (two contradicting targets for one unknown): the
    minimum has a loss of order one; once there, every step's predicted decrease is at the
    loss's round-off, so a stall there is a minimum (tol=None: no other stop)."""
    from bayesphys.odil import DiscreteProblem, minimize

    prob = DiscreteProblem({"u": (1,)}, {}, lambda f, p: {"a": f["u"] - 1.0, "b": f["u"] + 1.0})
    x, fit = minimize(
        prob, torch.full((1,), 0.3, dtype=torch.float64), method="lm", steps=400, tol=None
    )
    assert fit.message.startswith("stalled"), fit.message
    assert fit.converged and "local minimum" in fit.message, fit.message
    assert abs(float(x[0])) < 1e-12


def test_field_posterior_draws_are_the_per_draw_cg_solutions():
    """The K pathwise draws are solved as the columns of one CG (a loop of K solves paid the
    graph overhead K times): each column is the solution of its own system J^T J d = J^T z."""
    from bayesphys.odil.solvers import cg, jvp_vjp

    prob, _, _ = _linear_gaussian()
    x, _ = minimize(prob, method="gn", steps=1, linear_solver="cg", cg_tol=1e-13)
    k_draws = 20  # more than one block of 16 columns
    post = field_posterior(prob, x, "u", dense_max=0, num_samples=k_draws, cg_tol=1e-12, seed=3)
    r, jv, jtw = jvp_vjp(prob.residual, x)
    w = torch.randn(4, r.numel(), dtype=r.dtype, generator=torch.Generator().manual_seed(0))
    batched = jtw(w)  # [k, m] -> [k, n] in one pass
    torch.testing.assert_close(batched, torch.stack([jtw(v) for v in w]), rtol=1e-12, atol=0)
    gen = torch.Generator().manual_seed(3)
    sl = prob.slices["u"]
    root = post.covariance._linear_op.root.to_dense() * k_draws**0.5  # [n_u, K]
    for k in range(k_draws):
        z = torch.randn(r.shape, dtype=x.dtype, generator=gen)
        d, _, _ = cg(lambda v: jtw(jv(v)), jtw(z), tol=1e-13, maxiter=2000)
        torch.testing.assert_close(root[:, k], d[sl], rtol=1e-8, atol=1e-10)


def _trend_problem(n: int = 16):
    """A field ``u [n]`` plus a quadratic trend of three parameters, Gaussian throughout."""
    g = torch.Generator().manual_seed(3)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    t = torch.linspace(0, 1, n, dtype=torch.float64)

    def res(fields, params):
        u = fields["u"]
        trend = params["a"] + params["b"] * t + params["c"] * t**2
        return {
            "data": (u + trend - y) / 0.3,
            "prior_u": torch.cat([u[:1], u[1:] - u[:-1]]) / 0.5,
            "prior_p": torch.stack([params["a"], params["b"], params["c"]]).reshape(-1) / 2.0,
        }

    prob = DiscreteProblem({"u": (n,)}, {"a": 0.0, "b": 0.0, "c": 0.0}, res)
    x, _ = minimize(prob, method="gn", steps=1, linear_solver="cg", cg_tol=1e-13)
    return prob, x


def test_theta_covariance_solves_every_parameter_in_one_cg(monkeypatch):
    """The ``p`` Schur solves are the columns of one CG (a loop of ``p`` solves paid the graph
    overhead ``p`` times: 39 s of a 90 s joint glioma fit); the marginal is the exact one."""
    import bayesphys.odil.laplace as laplace

    prob, x = _trend_problem()
    n = 16
    calls = []
    real_cg = laplace.cg_with_breakdown
    monkeypatch.setattr(
        laplace, "cg_with_breakdown", lambda *a, **k: calls.append(a[1].shape) or real_cg(*a, **k)
    )
    cov, info = theta_covariance(prob, x, ["a", "b", "c"], cg_tol=1e-12)
    assert calls == [(n, 3)]  # one solve of three columns
    exact = torch.linalg.inv(dense_gn_matrix(prob, x))[n:, n:]
    assert torch.allclose(cov, exact, rtol=1e-8)
    assert len(info["cg_iters"]) == 3 and max(info["cg_residuals"]) <= 1e-12


@pytest.mark.parametrize("block", [1, 2])
def test_theta_covariance_in_blocks_of_columns_equals_one_solve(monkeypatch, block):
    """The Schur columns are solved ``_DRAW_BLOCK`` at a time (the other tests' three
    parameters fit one block of 16): blocks of 1 and of 2 (a last partial block) give the
    one-solve marginal and the exact one, and a residual per column."""
    import bayesphys.odil.laplace as laplace

    prob, x = _trend_problem()
    whole, _ = theta_covariance(prob, x, ["a", "b", "c"], cg_tol=1e-13)
    calls = []
    real_cg = laplace.cg_with_breakdown
    monkeypatch.setattr(
        laplace, "cg_with_breakdown", lambda *a, **k: calls.append(a[1].shape) or real_cg(*a, **k)
    )
    monkeypatch.setattr(laplace, "_DRAW_BLOCK", block)
    cov, info = theta_covariance(prob, x, ["a", "b", "c"], cg_tol=1e-13)
    assert calls == [(16, block)] * (3 // block) + [(16, 3 % block)] * (3 % block > 0)
    torch.testing.assert_close(cov, whole, rtol=1e-10, atol=0)
    exact = torch.linalg.inv(dense_gn_matrix(prob, x))[16:, 16:]
    torch.testing.assert_close(cov, exact, rtol=1e-9, atol=0)
    assert len(info["cg_residuals"]) == 3 and max(info["cg_residuals"]) <= 1e-13


@pytest.mark.parametrize("block", [1, 3, 7, 8])
def test_field_posterior_draws_do_not_depend_on_the_block_of_columns(monkeypatch, block):
    """The K = 8 pathwise draws are solved ``_DRAW_BLOCK`` columns at a time: their noise is
    drawn before the blocks, so blocks of 1, 3, 7 (last partial blocks) and 8 give the
    draws of one block (default 16) to the CG tolerance, in the same order."""
    import bayesphys.odil.laplace as laplace

    prob, x = _trend_problem()
    kw = dict(dense_max=0, num_samples=8, cg_tol=1e-13, seed=5)
    whole = field_posterior(prob, x, "u", **kw).covariance._linear_op.root.to_dense()
    monkeypatch.setattr(laplace, "_DRAW_BLOCK", block)
    got = field_posterior(prob, x, "u", **kw).covariance._linear_op.root.to_dense()
    assert got.shape == whole.shape == (16, 8)
    torch.testing.assert_close(got, whole, rtol=1e-9, atol=1e-11 * float(whole.abs().max()))


def test_batched_products_rowwise_on_cpu_equal_the_batched_pass(monkeypatch):
    """On the CPU jvp_vjp takes a batch of tangents one row at a time: bit for bit the values
    of the batched (vmap) pass it replaces there."""
    from bayesphys.odil import _jacobian, solvers

    prob, _, _ = _linear_gaussian()
    x = torch.linspace(-1, 1, prob.n, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    r, jv, jtw = solvers.jvp_vjp(prob.residual, x)
    v = torch.randn(5, prob.n, dtype=torch.float64, generator=g)
    w = torch.randn(5, r.numel(), dtype=torch.float64, generator=g)
    rows = (jv(v), jtw(w))
    monkeypatch.setattr(_jacobian, "_rowwise", lambda t: False)
    _, jv, jtw = solvers.jvp_vjp(prob.residual, x)
    assert torch.equal(rows[0], jv(v)) and torch.equal(rows[1], jtw(w))
    assert torch.equal(rows[0][2], jv(v[2])) and torch.equal(rows[1][4], jtw(w[4]))


def test_a_stall_at_the_dtype_resolution_says_so():
    """LM run to its damping limit at a correctly rounded sqrt(2) stalls with a predicted
    decrease above the loss floor: it is reported not converged (as documented), but the
    message blamed the Jacobian; it now names the dtype's resolution."""
    from bayesphys.odil import DiscreteProblem, minimize

    prob = DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"r": f["u"] ** 2 - 2.0})
    x0 = torch.ones(3, dtype=torch.float64)
    x, fit = minimize(prob, x0, method="lm", linear_solver="dense", steps=200, tol=None)
    assert torch.equal(x, torch.full((3,), math.sqrt(2.0), dtype=torch.float64))
    assert fit.message.startswith("stalled") and not fit.converged
    assert "below the spacing of x in float64" in fit.message, fit.message
    assert "Jacobian" not in fit.message


@pytest.mark.parametrize("solver", ["cg", "dense", "sparse"])
def test_levenberg_marquardt_from_an_exact_root_reports_convergence(solver):
    """``tol``: the fit stops, converged, at a zero loss. From an exact root every LM step
    predicts no decrease and was rejected: with a few steps the fit ended at max steps with
    converged=False (with more, at a damping stall)."""
    prob = DiscreteProblem(
        {"u": (3,)}, {"a": 1.0}, lambda f, p: {"r": f["u"] * p["a"], "q": p["a"] - 1.0}
    )
    x, fit = minimize(prob, method="lm", linear_solver=solver, steps=5)
    assert fit.converged and fit.steps == 1, fit.message
    assert fit.loss_history == [0.0] and torch.equal(x, prob.initial())
    _, fit = minimize(prob, method="lm", linear_solver=solver, steps=5, tol=None)
    assert fit.steps == 5 and fit.message == "max steps (5)"  # tol=None: every step
