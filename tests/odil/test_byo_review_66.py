"""A user's own discrete-loss problems: mistakes in the residual function get errors that name
the problem, not a torch error from inside the solvers."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.odil import DiscreteProblem, cg, d2, field_posterior, minimize, theta_covariance

F64 = torch.float64


def _constant_problem() -> DiscreteProblem:
    y = torch.arange(4, dtype=F64)

    # the residual is cut from the unknowns (a detached copy of the field): no term depends
    # on them
    def res(f, p):
        return {"data": f["u"].detach() - y, "prior": p["a"].detach() - 1.0}

    return DiscreteProblem({"u": (4,)}, {"a": 0.5}, res)


_NO_DEP = "residuals: no term depends on the unknowns"


@pytest.mark.parametrize(
    ("method", "linear_solver"),
    [("lm", "cg"), ("gn", "cg"), ("lm", "sparse"), ("adam", "cg"), ("lbfgs", "cg")],
)
def test_a_residual_cut_from_the_unknowns_is_refused_by_name(method, linear_solver):
    """Every solver failed inside torch with "element 0 of tensors does not require grad and
    does not have a grad_fn", naming neither the residual function nor the mistake."""
    prob = _constant_problem()
    with pytest.raises(ValueError, match=_NO_DEP):
        minimize(prob, method=method, linear_solver=linear_solver, steps=3)


@pytest.mark.parametrize(
    "posterior",
    [
        lambda p, x: theta_covariance(p, x),
        lambda p, x: theta_covariance(p, x, dense=True),
        lambda p, x: theta_covariance(p, x, sparse=True),
        lambda p, x: field_posterior(p, x, "u"),
        lambda p, x: field_posterior(p, x, "u", dense_max=0),
    ],
    ids=["theta-cg", "theta-dense", "theta-sparse", "field-dense", "field-draws"],
)
def test_the_laplace_posterior_of_a_cut_residual_is_refused_by_name(posterior):
    prob = _constant_problem()
    with pytest.raises(ValueError, match=_NO_DEP):
        posterior(prob, prob.initial())


def test_a_constant_term_beside_dependent_ones_is_still_taken():
    """Only a residual with no dependent term at all is refused: a constant term (e.g. a
    known offset) next to others fits as before."""
    y = torch.arange(4, dtype=F64)

    def res(f, p):
        return {"data": f["u"] - p["a"] * y, "prior": p["a"] - 2.0, "const": torch.ones(2)}

    prob = DiscreteProblem({"u": (4,)}, {"a": 0.5}, res)
    x, fit = minimize(prob, method="lm", steps=20)
    assert fit.converged
    torch.testing.assert_close(prob.unpack(x)[1]["a"], torch.tensor(2.0, dtype=F64))
    cov, _ = theta_covariance(prob, x)
    # u absorbs the data term, so a's marginal is its prior's: variance 1
    torch.testing.assert_close(cov, torch.ones(1, 1, dtype=F64))
    # evaluating the loss without a graph is unaffected
    with torch.no_grad():
        assert float(prob.loss(x)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("product", "match"),
    [
        (lambda a: lambda v: (a @ v)[:1], r"matvec: expected a tensor of its argument's shape"),
        (lambda a: lambda v: (a @ v).tolist(), r"matvec: expected a tensor .* received list"),
        (lambda a: lambda v: a @ v * math.nan, r"matvec: returned non-finite values"),
    ],
    ids=["short", "list", "nan"],
)
def test_cg_refuses_a_user_product_of_the_wrong_shape_or_not_finite(product, match):
    """A matvec of another length was broadcast into the iterate: cg returned values of 1e15
    without a word; a list failed inside torch with "only integer tensors of a single element
    can be converted to an index"; a NaN product ran every iteration and returned NaN."""
    a = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=F64)
    b = torch.tensor([1.0, 2.0], dtype=F64)
    with pytest.raises(ValueError, match=match):
        cg(product(a), b, maxiter=20)
    with pytest.raises(ValueError, match=match.replace("matvec", "precond")):
        cg(lambda v: a @ v, b, precond=product(torch.eye(2, dtype=F64)), maxiter=20)
    # a right product, one system and two columns, solves as before
    x, _, rel = cg(lambda v: a @ v, b, precond=lambda v: v / 4.0, tol=1e-14)
    assert rel <= 1e-14
    torch.testing.assert_close(x, torch.linalg.solve(a, b))
    xb, _, _ = cg(lambda v: a @ v, torch.stack([b, 2 * b], 1), tol=1e-14)
    torch.testing.assert_close(xb, torch.linalg.solve(a, torch.stack([b, 2 * b], 1)))


def _consistent_poisson() -> DiscreteProblem:
    """A linear problem with an exact solution: u'' + a y = 0 (periodic), the mean of u
    pinned, u observed at every fourth cell with the values of that solution's scale."""
    n, h = 40, 1.0 / 40
    y = torch.sin(2 * math.pi * torch.arange(n, dtype=F64) * h)

    def res(f, p):
        u = f["u"]
        return {
            "pde": d2(u, 0, h) + p["a"] * y,
            "mass": (u.sum() * h) / 1e-3,
            "data": (u[::4] - y[::4] / (4 * math.pi**2)) / 0.01,
        }

    return DiscreteProblem({"u": (n,)}, {"a": 1.0}, res)


@pytest.mark.parametrize("method", ["gn", "lm"])
@pytest.mark.parametrize("linear_solver", ["dense", "sparse"])
def test_an_exactly_solved_linear_problem_ends_converged_at_round_off(method, linear_solver):
    """The loss fell to 1e-28 in two steps and then changed by noise: above m eps^2 L0
    (6.5e-29: the stencil's round-off scales with u / h^2, not with r0) and changing by far
    more than 8 eps of itself, so GN and LM ran all their steps and ended "max steps",
    converged=False."""
    prob = _consistent_poisson()
    x, fit = minimize(prob, method=method, linear_solver=linear_solver, steps=20)
    assert fit.converged, fit.message
    assert fit.steps <= 6, fit.message
    assert fit.final_loss < 1e-26
    # the same iterate as the full run, to round-off
    x_all, _ = minimize(prob, method=method, linear_solver=linear_solver, steps=20, tol=None)
    torch.testing.assert_close(x, x_all, rtol=0, atol=1e-13)


def test_a_fit_short_of_round_off_is_not_stopped_by_the_last_place_rule():
    """Only a loss below what one unit in the last place of x changes counts: a fit with a
    real loss left (noisy data) still ends on its relative-decrease test, at the optimum."""
    prob = _consistent_poisson()
    gen = torch.Generator().manual_seed(0)
    noise = 1e-3 * torch.randn(10, dtype=F64, generator=gen)
    base = prob.residual_fn

    def noisy(f, p):
        out = dict(base(f, p))
        out["data"] = out["data"] + noise / 0.01
        return out

    prob = DiscreteProblem({"u": (40,)}, {"a": 1.0}, noisy)
    x, fit = minimize(prob, method="lm", linear_solver="dense", steps=20)
    assert fit.converged and "round-off" not in fit.message, fit.message
    assert fit.final_loss > 1e-3
