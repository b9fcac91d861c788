"""Reference solvers and residuals of the RGNP problems (Poisson, Burgers)."""

import math
import warnings

import numpy as np
import pytest
import torch

from bayesphys.problems.rgnp import (
    POISSON_SENSOR_INDEX,
    BurgersProblem,
    PoissonProblem,
    burgers_residual,
    burgers_test_set,
    chebyshev,
    invariance_points,
    poisson_residual,
    poisson_sensor_data,
    poisson_test_set,
    sample_prior,
    solve_burgers,
    solve_poisson,
)


def _derivs(f, x):
    """Value, first and second derivative of a pointwise function by autograd ([B, N])."""
    x = x.clone().requires_grad_(True)
    u = f(x)
    ux = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    uxx = torch.autograd.grad(ux.sum(), x, create_graph=True)[0]
    return u, ux, uxx


def test_chebyshev_matches_trig_definition():
    x = torch.linspace(-0.99, 0.99, 50, dtype=torch.float64)
    t, d = chebyshev(x, 5)
    th = torch.arccos(x)
    for n in range(5):
        assert torch.allclose(t[:, n], torch.cos(n * th), atol=1e-12)
        assert torch.allclose(d[:, n], n * torch.sin(n * th) / torch.sin(th), atol=1e-10)
    _, d1 = chebyshev(torch.tensor([1.0, -1.0], dtype=torch.float64), 5)
    assert torch.isfinite(d1).all()  # smooth at the ends (the arccos form is singular)


def test_poisson_exact_solution_has_zero_residual():
    # z = 0 gives kappa = log 2 + 0.1, so u = w (1 - x^2) / (2 kappa) is exact
    w = torch.tensor([[1.7]], dtype=torch.float64)
    z = torch.zeros(1, 5, dtype=torch.float64)
    kap = math.log(2) + 0.1
    x = torch.linspace(-1, 1, 41, dtype=torch.float64).unsqueeze(0)
    u, ux, uxx = _derivs(lambda s: w * (1 - s**2) / (2 * kap), x)
    r = poisson_residual(x, u, ux, uxx, z, w)
    assert r.abs().max() < 1e-12
    # the solver reproduces it
    xs, us = solve_poisson(np.zeros((1, 5)), np.array([1.7]))
    assert np.abs(us[0] - 1.7 * (1 - xs**2) / (2 * kap)).max() < 1e-10
    # the problem's boundary-transformed residual: u~ = u / cos(pi x / 2) away from the ends
    xi = torch.linspace(-0.95, 0.95, 30, dtype=torch.float64).reshape(1, -1, 1)
    v, vx, vxx = _derivs(
        lambda s: w * (1 - s**2) / (2 * kap) / torch.cos(math.pi * s / 2), xi[..., 0]
    )
    res = PoissonProblem().residual(xi, {"v": v, "x": vx, "xx": vxx}, z, w)
    assert res.abs().max() < 1e-10


def test_poisson_reference_solution_fd_residual_and_refinement():
    ts = poisson_test_set(8, seed=3)
    x, u = ts["x"], ts["u"]
    h = x[1] - x[0]
    xt = torch.as_tensor(x[1:-1]).expand(8, -1)
    ut = torch.as_tensor(u)
    ux = (ut[:, 2:] - ut[:, :-2]) / (2 * h)
    uxx = (ut[:, 2:] - 2 * ut[:, 1:-1] + ut[:, :-2]) / h**2
    r = poisson_residual(
        xt, ut[:, 1:-1], ux, uxx, torch.as_tensor(ts["z"]), torch.as_tensor(ts["w"])
    )
    assert r.abs().max() < 2e-2 * float(np.min(ts["w"]))  # O(h^2) truncation only
    xf, uf = solve_poisson(ts["z"], ts["w"][:, 0], n_nodes=801)
    assert np.abs(uf[:, ::4] - u).max() < 1e-4 * np.abs(u).max()


def test_burgers_cole_hopf_exact_solution():
    nu, a = 0.05, 2.0
    z = torch.tensor([[nu, 1.0]], dtype=torch.float64)

    def exact(x, t):
        e = torch.exp(-(math.pi**2) * nu * t)
        return 2 * nu * math.pi * e * torch.sin(math.pi * x) / (a + e * torch.cos(math.pi * x))

    x = torch.rand(1, 40, dtype=torch.float64).requires_grad_(True)
    t = torch.rand(1, 40, dtype=torch.float64).requires_grad_(True)
    u = exact(x, t)
    ux = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    uxx = torch.autograd.grad(ux.sum(), x, create_graph=True)[0]
    ut = torch.autograd.grad(u.sum(), t, create_graph=True)[0]
    assert burgers_residual(u, ut, ux, uxx, z).abs().max() < 1e-12
    # the reference solver converges to it (second order in h and dt)
    xs = np.linspace(0, 1, 201)
    u0 = exact(torch.as_tensor(xs), torch.zeros(1, dtype=torch.float64)).numpy()
    _, _, us = solve_burgers(np.array([[nu, 1.0]]), np.array([1.0]), n_nodes=201, n_steps=50, u0=u0)
    ue = exact(torch.as_tensor(xs), torch.ones(1, dtype=torch.float64)).numpy()
    assert np.abs(us[0, -1] - ue).max() < 2e-4


def test_burgers_transformed_residual_matches_direct():
    prob = BurgersProblem()
    torch.manual_seed(0)
    z = torch.tensor([[0.05, 0.8]], dtype=torch.float64)
    w = torch.tensor([[1.3]], dtype=torch.float64)
    xt = torch.rand(1, 25, 2, dtype=torch.float64).requires_grad_(True)

    def vfun(p):
        return torch.sin(3 * p[..., 0]) * torch.exp(-p[..., 1]) + p[..., 0] * p[..., 1]

    v = vfun(xt)
    g = torch.autograd.grad(v.sum(), xt, create_graph=True)[0]
    vxx = torch.autograd.grad(g[..., 0].sum(), xt, create_graph=True)[0][..., 0]
    r1 = prob.residual(xt, {"v": v, "x": g[..., 0], "xx": vxx, "t": g[..., 1]}, z, w)
    b, d = prob.transform(xt, w)
    u = b + d * v
    gu = torch.autograd.grad(u.sum(), xt, create_graph=True)[0]
    uxx = torch.autograd.grad(gu[..., 0].sum(), xt, create_graph=True)[0][..., 0]
    r2 = burgers_residual(u, gu[..., 1], gu[..., 0], uxx, z)
    assert torch.allclose(r1, r2, atol=1e-10)
    # boundary and initial conditions hold exactly
    edge = torch.tensor([[[0.0, 0.4], [1.0, 0.7], [0.3, 0.0]]], dtype=torch.float64)
    b, d = prob.transform(edge, w)
    assert torch.allclose((b + d * 5.0)[0, :2], torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(d[0, 2], torch.zeros((), dtype=torch.float64))


def test_burgers_reference_solution_refinement():
    ts = burgers_test_set(2, seed=5, n_nodes=201, n_steps=50)
    assert ts["u"].shape == (2, 51, 201)
    _, _, uf = solve_burgers(ts["z"], ts["w"][:, 0], n_nodes=401, n_steps=100)
    assert np.abs(uf[:, ::2, ::2] - ts["u"]).max() < 2e-2


def test_test_sets_are_seeded_and_sensor_layout():
    a, b, c = poisson_test_set(5, seed=0), poisson_test_set(5, seed=0), poisson_test_set(5, seed=1)
    assert np.array_equal(a["u"], b["u"]) and not np.array_equal(a["z"], c["z"])
    assert a["u"].shape == (5, 201) and a["z"].shape == (5, 5) and a["w"].shape == (5, 1)
    assert np.all((a["z"] >= -1) & (a["z"] <= 1)) and np.all((a["w"] >= 1) & (a["w"] <= 2))
    d = poisson_sensor_data(4, seed=1)
    assert POISSON_SENSOR_INDEX.size == 54 and d["y"].shape == (4, 54)
    assert np.isclose(d["x_obs"][0], -0.8) and np.isclose(d["x_obs"][-1], 0.79)
    resid = d["y"] - d["u_obs"]
    assert 0.02 < resid.std() < 0.08  # sigma_y = 0.05


def test_prior_draws_and_invariance_points():
    z, w = sample_prior(BurgersProblem(), 100, generator=torch.Generator().manual_seed(0))
    assert z.shape == (100, 2) and bool(((z[:, 0] >= 0.01) & (z[:, 0] <= 0.1)).all())
    for lay in ("uniform", "random", "clustered"):
        p = invariance_points(30, lay, seed=0)
        assert p.shape == (30,) and np.all(np.abs(p) < 1)
    with pytest.raises(ValueError, match="layout"):
        invariance_points(10, "spiral")
    with pytest.raises(ValueError, match=r"^n: expected an int >= 1"):
        poisson_test_set(0)


@pytest.mark.parametrize("fn", [poisson_test_set, burgers_test_set])
@pytest.mark.parametrize("bad,err", [(0, ValueError), (2.5, TypeError), (True, TypeError)])
def test_test_set_sizes_are_checked(fn, bad, err):
    with pytest.raises(err, match="n: expected an int"):
        fn(bad)


def test_invariance_points_size_is_checked():
    with pytest.raises(ValueError, match="n: expected an int >= 1"):
        invariance_points(0, "uniform")
    assert invariance_points(4.0, "uniform").shape == (4,)


def test_layouts_and_inverse_nodes_are_not_the_test_sets_parameters():
    # invariance_points(seed=0) drew from default_rng(0), the stream of poisson_test_set(seed=0)'s
    # parameters: the random layout was the sorted affine image of the test cases' z
    from bayesphys.neural_process import burgers_inverse_inputs

    test = poisson_test_set(40, seed=0, n_nodes=11)
    z01 = (test["z"].reshape(-1)[:199] + 1) / 2  # U(-1, 1) draws back on (0, 1)
    p = invariance_points(199, "random", seed=0)
    assert not np.allclose(p, np.sort(-0.99 + 1.98 * z01), rtol=0, atol=1e-12)
    # the Burgers inverse nodes likewise drew from the Burgers test set's parameter stream
    bt = burgers_test_set(2, seed=0, n_nodes=21, n_steps=10)
    x, _ = burgers_inverse_inputs(bt, 5, seed=0)
    first = np.random.default_rng(0).integers(1, 20, size=(2, 5))
    assert not np.array_equal(np.searchsorted(bt["x"], x[..., 0]), first)


def test_poisson_solver_raises_no_overflow_warning_for_large_coefficients():
    # the Newton Jacobian's sigmoid 1 / (1 + exp(-a)) overflowed exp for a < -709 (|z| ~ 1e4):
    # a burst of numpy "overflow encountered in exp" RuntimeWarnings, on a solve whose value
    # (the sigmoid's limit 0) and convergence are fine
    z = np.array([[1e4, -1e4, 1e4, -1e4, 1e4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, u = solve_poisson(z, [1.5], n_nodes=41)
    assert np.isfinite(u).all() and u[0, [0, -1]].tolist() == [0.0, 0.0]
    assert (u[0, 1:-1] > 0).all()  # w > 0 and kappa > 0: a positive interior (max principle)
