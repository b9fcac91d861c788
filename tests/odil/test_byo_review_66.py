"""A user's own discrete-loss problems: mistakes in the residual function get errors that name
the problem, not a torch error from inside the solvers."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.odil import DiscreteProblem, cg, field_posterior, minimize, theta_covariance

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
