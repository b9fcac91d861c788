"""Laplace posteriors of degenerate problems: an error naming the cause, never a silently
wrong covariance (found by a numerics review)."""

from __future__ import annotations

import pytest
import torch

from bayesphys.odil import (
    DiscreteProblem,
    dense_gn_matrix,
    field_posterior,
    minimize,
    theta_covariance,
)


def _nonlinear(u, p):
    return {
        "pde": (0.7 * u[1:] - u[:-1] * 0.3) / 0.13 - p["a"] * torch.sin(u[1:]),
        "d": (u[:2] - 1) / 0.7,
        "pa": (p["a"] - 0.3) / 0.9,
    }


def test_a_multigrid_problems_dense_covariance_is_the_plain_grids():
    res = lambda f, p: _nonlinear(f["u"], p)  # noqa: E731
    mg = DiscreteProblem({"u": (7,)}, {"a": 0.5}, res, multigrid={"u": 2})
    x = torch.rand(mg.n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref = theta_covariance(mg.plain(), mg.to_plain(x), dense=True)[0]
    got = theta_covariance(mg, x, dense=True)[0]  # was -0.0
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(theta_covariance(mg, x)[0], ref, rtol=1e-6, atol=0)
    # a multigrid field's own marginal is over its fine-grid values on every path (CG indexed
    # the redundant coefficients and refused them as "not determined jointly")
    ref = theta_covariance(mg.plain(), mg.to_plain(x), ["u"], dense=True)[0]
    assert ref.shape == (7, 7)
    for kw in ({}, {"dense": True}, {"sparse": True}):
        got = theta_covariance(mg, x, ["u"], cg_tol=1e-12, **kw)[0]
        torch.testing.assert_close(got, ref, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kw", [{}, {"dense": True}, {"sparse": True}])
def test_a_parameter_the_field_absorbs_is_refused(kw):
    def res(f, p):
        return {"pde": f["u"][1:] - f["u"][:-1] - 0.3 * p["a"], "d": f["u"][:1]}

    prob = DiscreteProblem({"u": (6,)}, {"a": 0.5}, res)
    x = prob.initial() + 0.1
    with pytest.raises(ValueError, match="params: the Gauss-Newton matrix is singular"):
        theta_covariance(prob, x, **kw)  # variances of -9e15 or 1.8e16 before


def test_a_field_mode_no_residual_determines_is_refused_by_field_posterior():
    def res(f, p):
        return {"pde": f["u"][1:] - f["u"][:-1] - p["a"], "pa": p["a"] - 0.3}

    prob = DiscreteProblem({"u": (4,)}, {"a": 0.5}, res)
    with pytest.raises(ValueError, match="singular"):
        field_posterior(prob, prob.initial(), "u")  # a raw _LinAlgError before


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 0.37, 0.1])
def test_a_numerically_singular_gauss_newton_matrix_is_refused_by_field_posterior(scale, dtype):
    # a periodic Laplacian leaves the field's constant mode free; with these weights the LU of
    # H meets no exact zero pivot (variances of 9e14, or a negative one, came back before)
    w = 0.5 + torch.rand(5, 4, dtype=dtype, generator=torch.Generator().manual_seed(0))

    def res(f, p):
        u = f["u"]
        lap = sum(torch.roll(u, s, a) for s in (1, -1) for a in (0, 1)) - 4 * u
        return {"pde": (lap - p["a"]) * scale * w, "pa": p["a"] - 0.3}

    prob = DiscreteProblem({"u": (5, 4)}, {"a": 0.5}, res, dtype=dtype)
    with pytest.raises(ValueError, match="Gauss-Newton matrix at x is singular"):
        field_posterior(prob, prob.initial(), "u")
    if dtype == torch.float64:  # the parameter is determined (the constant mode does not
        # couple to it): still given, as the pseudo-inverse's Schur complement gives it
        h = dense_gn_matrix(prob, prob.initial())
        want = torch.linalg.pinv(h, hermitian=True)[-1:, -1:]
        torch.testing.assert_close(theta_covariance(prob, prob.initial())[0], want)


def test_a_nan_jacobian_behind_a_finite_residual_is_named():
    def res(f, p):
        u = f["u"]
        return {"d": u - 0.5, "odd": torch.sqrt(u[3:4]) * torch.sin(u[3:4])}

    prob = DiscreteProblem({"u": (5,)}, {}, res)
    x = prob.pack({"u": torch.tensor([0.5, 0.5, 0.5, 0.0, 0.5], dtype=torch.float64)})
    for kw in ({}, {"dense_max": 0, "num_samples": 4}):
        with pytest.raises(ValueError, match="not finite"):
            field_posterior(prob, x, "u", **kw)  # an all-NaN posterior before


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parameters_of_very_different_precision_are_not_refused(dtype):
    scale = 1e4 if dtype == torch.float32 else 1e8

    def res(f, p):
        return {"d": f["u"] - 1.0, "a": 2 * (p["a"] - 0.3), "b": (p["b"] - 1.0) * scale}

    prob = DiscreteProblem({"u": (3,)}, {"a": 0.5, "b": 0.5}, res, dtype=dtype)
    for kw in ({}, {"dense": True}):
        cov, _ = theta_covariance(prob, prob.initial(), **kw)
        want = torch.tensor([0.25, scale**-2], dtype=torch.float64)
        torch.testing.assert_close(cov.diagonal().double(), want, rtol=1e-4, atol=0)


def _periodic_float32():
    """A periodic Laplacian in float32: the field's constant mode is free, and CG on the field
    block meets a non-positive curvature (round-off) before the default cg_tol."""
    w = 0.5 + torch.rand(5, 4, generator=torch.Generator().manual_seed(0))

    def res(f, p):
        u = f["u"]
        lap = sum(torch.roll(u, s, a) for s in (1, -1) for a in (0, 1)) - 4 * u
        return {"pde": (lap - p["a"]) * 0.1 * w, "pa": p["a"] - 0.3}

    return DiscreteProblem({"u": (5, 4)}, {"a": 0.5}, res, dtype=torch.float32)


def test_a_cg_breakdown_is_not_answered_with_raise_cg_maxiter():
    """A CG column that stopped on a breakdown (87 of 2000 iterations here) was told to raise
    cg_maxiter, which does not help; the warning now says which columns broke down and which
    reached the cap, with the remedy of each."""
    prob = _periodic_float32()
    with pytest.warns(RuntimeWarning, match="theta_covariance: CG did not reach") as rec:
        _, info = theta_covariance(prob, prob.initial(), cg_tol=1e-10)  # float64's default
    text = str(rec[0].message)
    assert info["cg_iters"][0] < 2000 and info["cg_breakdown"] == [True]
    assert "column(s) [0] broke down" in text and "not positive definite" in text
    assert "raise cg_maxiter" not in text
    with pytest.warns(RuntimeWarning, match="theta_covariance: CG did not reach") as rec:
        theta_covariance(prob, prob.initial(), cg_maxiter=3)
    text = str(rec[0].message)
    assert "column(s) [0] reached cg_maxiter=3: raise cg_maxiter" in text
    assert "broke down" not in text
    with pytest.warns(RuntimeWarning, match="field_posterior: CG did not reach") as rec:
        # 5 draws: all break down (of 20, two ran on to cg_maxiter=1000, 8 s of this test)
        field_posterior(prob, prob.initial(), "u", dense_max=0, num_samples=5, cg_tol=1e-8)
    assert "broke down (a non-positive curvature" in str(rec[0].message)


def test_minimize_tells_an_inner_cg_breakdown_from_the_cap():
    """minimize's warning told every inner CG that stopped above cg_tol to raise cg_maxiter,
    also the undamped Gauss-Newton solves that broke down (41 and 80 of 500 iterations here),
    where more iterations do not help; it now names the reason of each step, and
    extra["cg_breakdown"] records it."""
    prob = _periodic_float32()
    with pytest.warns(RuntimeWarning, match="minimize: the inner CG stopped above") as rec:
        _, res = minimize(prob, method="gn", steps=3, linear_solver="cg", cg_tol=1e-8)
    text = str(rec[0].message)
    assert res.extra["cg_breakdown"] == [False, True, True]
    assert max(res.extra["cg_iters"]) < 500
    assert "2 of 3 steps" in text and "2 broke down (a non-positive curvature" in text
    assert "method='lm' damps it" in text and "raise cg_maxiter" not in text
    with pytest.warns(RuntimeWarning, match="minimize: the inner CG stopped above") as rec:
        _, res = minimize(prob, method="lm", steps=2, linear_solver="cg", cg_maxiter=3)
    text = str(rec[0].message)
    assert res.extra["cg_breakdown"] == [False, False] and res.extra["cg_iters"] == [3, 3]
    assert "2 of 2 steps" in text and "2 reached cg_maxiter=3: raise cg_maxiter" in text
    assert "broke down" not in text


def test_cg_shortfall_tells_each_reason_apart():
    from bayesphys.odil._cg_shortfall import _SHORT_WHY, _cg_shortfall

    resids = [1e-12, 0.5, 0.5, 0.5, float("nan"), 2e-9]
    broken = [True, True, False, False, False, False]
    capped = [True, False, True, False, True, False]
    assert _cg_shortfall(resids, broken, capped, 1e-9) == {
        "broke down": [1],  # a breakdown, whether or not the cap was reached too
        "capped": [2],
        "stalled": [3, 5],  # neither: the recursive residual met the tolerance
        "not finite": [4],
    }
    assert _cg_shortfall(resids[:1], broken[:1], capped[:1], 1e-9) == {}  # column 0 converged
    assert set(_SHORT_WHY) == {"broke down", "capped", "stalled", "not finite"}


def test_the_short_cg_reasons_are_worded_by_one_helper():
    """minimize, theta_covariance and field_posterior each joined the _SHORT_WHY reasons with
    their own code; one helper words them: a count per reason, or the column indices."""
    from bayesphys.odil._cg_shortfall import _SHORT_WHY, _short_reasons

    short = {"capped": [0, 2], "broke down": [1]}
    broke = _SHORT_WHY["broke down"].format(matrix="M")
    assert "A = M: not positive definite" in broke
    assert _short_reasons(short, 7, "M") == f"2 reached cg_maxiter=7: raise cg_maxiter; 1 {broke}"
    assert _short_reasons(short, 7, "M", columns=True) == (
        f"column(s) [0, 2] reached cg_maxiter=7: raise cg_maxiter; column(s) [1] {broke}"
    )
    assert _short_reasons({}, 7, "M") == ""


def _linear_gaussian(dtype: torch.dtype, n: int = 200) -> DiscreteProblem:
    """y_i = u_i + theta + e_i at every other cell, a smoothness prior on u, a prior on theta:
    well posed, linear, solved exactly by one Gauss-Newton step."""
    y = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    obs = torch.arange(0, n, 2)

    def res(f, p):
        u = f["u"]
        return {
            "data": (u[obs] + p["theta"] - y[obs].to(u.dtype)) / 0.3,
            "prior_u": torch.cat([u[:1], u[1:] - u[:-1]]) / 0.5,
            "prior_theta": p["theta"].reshape(1) / 2.0,
        }

    return DiscreteProblem({"u": (n,)}, {"theta": 0.0}, res, dtype=dtype)


def test_the_laplace_cg_tolerance_defaults_to_one_float32_reaches():
    """The defaults cg_tol=1e-10 (theta_covariance) and 1e-8 (field_posterior's draws) are below
    what a float32 CG's true residual reaches (1e-7 to 3e-6 here), so a float32 Laplace of
    this well-posed problem warned every time; None now means 1e-5 in float32, while float64
    keeps 1e-10 and 1e-8, bit for bit."""
    import warnings

    p64, p32 = _linear_gaussian(torch.float64), _linear_gaussian(torch.float32)
    x64 = minimize(p64, method="gn", steps=1, linear_solver="dense")[0]
    x32 = x64.float()
    ref, _ = theta_covariance(p64, x64, dense=True)
    with pytest.warns(RuntimeWarning, match="theta_covariance: CG did not reach cg_tol=1e-10"):
        theta_covariance(p32, x32, cg_tol=1e-10)  # the float64 default, out of reach here
    with pytest.warns(RuntimeWarning, match="field_posterior: CG did not reach cg_tol=1e-08"):
        field_posterior(p32, x32, "u", dense_max=0, num_samples=8, cg_tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov32, info = theta_covariance(p32, x32)
        post32 = field_posterior(p32, x32, "u", dense_max=0, num_samples=8)
    assert cov32.dtype == torch.float32 and max(info["cg_residuals"]) <= 1e-5
    torch.testing.assert_close(cov32.double(), ref, rtol=1e-3, atol=0)
    assert bool(torch.isfinite(post32.variance).all())
    # float64: the defaults are the old ones, and the results the same to the bit
    cov64, info64 = theta_covariance(p64, x64)
    old, old_info = theta_covariance(p64, x64, cg_tol=1e-10)
    assert torch.equal(cov64, old) and info64 == old_info
    new_post = field_posterior(p64, x64, "u", dense_max=0, num_samples=8)
    old_post = field_posterior(p64, x64, "u", dense_max=0, num_samples=8, cg_tol=1e-8)
    assert torch.equal(new_post.covariance.to_dense(), old_post.covariance.to_dense())
