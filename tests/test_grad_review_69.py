"""Differentiating through the shared core: GaussianPosterior's mean, variance, log_prob,
rsample and quantiles (dense, diagonal, low-rank, Kronecker), SamplePosterior's moments, and
the metrics a user trains on; gradchecks in float64 on tiny inputs."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from linear_operator.operators import (
    ConstantDiagLinearOperator,
    DenseLinearOperator,
    DiagLinearOperator,
    KroneckerProductAddedDiagLinearOperator,
    KroneckerProductLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)
from torch.autograd import gradcheck

from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys import metrics as M

F64 = torch.float64


def _spd(a):
    return a @ a.mT + torch.eye(a.shape[-1], dtype=a.dtype)


def _kron(b, c):
    return KroneckerProductLinearOperator(
        DenseLinearOperator(_spd(b)), DenseLinearOperator(_spd(c))
    )


COVARIANCES = {
    "dense": (lambda a: _spd(a), [(3, 3)]),
    "diag": (lambda d: DiagLinearOperator(d.square() + 0.5), [(3,)]),
    "lowrank": (
        lambda r, d: LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(r), DiagLinearOperator(d.square() + 0.5)
        ),
        [(3, 1), (3,)],
    ),
    "kron": (_kron, [(1, 1), (3, 3)]),
    "kron+diag": (
        lambda b, c, s: KroneckerProductAddedDiagLinearOperator(
            _kron(b, c), ConstantDiagLinearOperator(s.square() + 0.1, diag_shape=3)
        ),
        [(1, 1), (3, 3), (1,)],
    ),
}


@pytest.mark.parametrize("kind", sorted(COVARIANCES))
def test_gaussian_posterior_gradchecks(kind):
    g = torch.Generator().manual_seed(0)
    build, shapes = COVARIANCES[kind]
    mu = torch.randn(3, dtype=F64, generator=g, requires_grad=True)
    params = [torch.randn(s, dtype=F64, generator=g, requires_grad=True) for s in shapes]
    value = torch.randn(3, dtype=F64, generator=g, requires_grad=True)
    m = GaussianPosterior(mu.detach(), build(*[p.detach() for p in params]))._base_dim()
    z = torch.randn(2, m, dtype=F64, generator=g)

    def post(m_, *ps):
        return GaussianPosterior(m_, build(*ps))

    assert gradcheck(lambda v, m_, *ps: post(m_, *ps).log_prob(v), (value, mu, *params))
    assert gradcheck(lambda m_, *ps: post(m_, *ps).variance, (mu, *params))
    assert gradcheck(lambda m_, *ps: post(m_, *ps).rsample((2,), base_samples=z), (mu, *params))
    assert gradcheck(lambda m_, *ps: post(m_, *ps).quantile([0.1, 0.8]), (mu, *params))
    assert gradcheck(lambda m_, *ps: torch.stack(post(m_, *ps).interval(0.9)), (mu, *params))


def test_gaussian_quantile_gradcheck_in_q():
    q = torch.tensor([0.2, 0.6], dtype=F64, requires_grad=True)
    post = GaussianPosterior(torch.zeros(2, dtype=F64), 2 * torch.eye(2, dtype=F64))
    assert gradcheck(post.quantile, (q,))


def test_sample_posterior_moments_and_quantiles_gradcheck():
    draws = torch.randn(1, 5, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    draws.requires_grad_(True)
    assert gradcheck(lambda d: SamplePosterior(d).mean, (draws,))
    assert gradcheck(lambda d: SamplePosterior(d).variance, (draws,))
    assert gradcheck(lambda d: SamplePosterior(d).quantile([0.3, 0.8]), (draws,))


@pytest.mark.parametrize("kind", ["dense", "kron", "diag"])
def test_a_posterior_built_inside_inference_mode_differentiates_outside(kind):
    """A posterior built in an evaluation block (torch.inference_mode) from ordinary tensors
    cached a root of inference tensors: a later log_prob / rsample differentiated in the value
    failed with torch's "Inference tensors cannot be saved for backward", far from the cause."""
    cov = torch.eye(3, dtype=F64) + 0.1
    if kind == "kron":
        cov = KroneckerProductLinearOperator(
            DenseLinearOperator(torch.eye(1, dtype=F64)), DenseLinearOperator(cov)
        )
    elif kind == "diag":
        cov = DiagLinearOperator(torch.full((3,), 1.5, dtype=F64))
    mean = torch.zeros(3, dtype=F64)
    with torch.inference_mode():
        post = GaussianPosterior(mean, cov)
        inside = post.log_prob(torch.ones(3, dtype=F64))
    x = torch.ones(3, dtype=F64, requires_grad=True)
    out = post.log_prob(x)
    (g,) = torch.autograd.grad(out, x)
    assert torch.equal(out.detach(), inside)  # the same factor, the same density
    ref = torch.linalg.solve(post.covariance.to_dense(), x.detach())
    torch.testing.assert_close(g, -ref)
    z = torch.ones(1, 3, dtype=F64, requires_grad=True)
    (gz,) = torch.autograd.grad(post.rsample((1,), base_samples=z).sum(), z)
    assert bool(torch.isfinite(gz).all())


METRIC_CASES = {
    "relative_l2": (M.relative_l2, [(4,), (4,)]),
    "mse": (M.mse, [(4,), (4,)]),
    "gaussian_nll": (lambda m, v, y: M.gaussian_nll(m, v.square() + 0.5, y), [(4,), (4,), (4,)]),
    "crps_gaussian": (lambda m, s, y: M.crps_gaussian(m, s.square() + 0.5, y), [(4,)] * 3),
    "crps_samples": (M.crps_samples, [(5, 4), (4,)]),
    "crps_samples_fair": (lambda s, y: M.crps_samples(s, y, fair=True, dim=0), [(5, 4), (4,)]),
    "mmd": (M.mmd, [(5, 2), (4, 2)]),
    "conservation_error": (lambda f, w: M.conservation_error(f, w, 1.0), [(2, 4), (4,)]),
}


@pytest.mark.parametrize("name", sorted(METRIC_CASES))
def test_metrics_gradcheck(name):
    fn, shapes = METRIC_CASES[name]
    g = torch.Generator().manual_seed(2)
    args = [torch.randn(s, dtype=F64, generator=g, requires_grad=True) for s in shapes]
    assert gradcheck(fn, tuple(args))


@pytest.mark.parametrize("p", [1, 2])
def test_wasserstein_is_differentiable_in_the_clouds(p):
    """W came back detached from the clouds (a loss on it gave them no gradient); now the
    envelope-theorem gradient at the optimal plan, the value unchanged."""
    pytest.importorskip("ot")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 2, dtype=F64, generator=g, requires_grad=True)
    y = torch.randn(3, 2, dtype=F64, generator=g, requires_grad=True)
    out = M.wasserstein(x, y, p=p)
    assert out.requires_grad
    assert torch.equal(out.detach(), M.wasserstein(x.detach(), y.detach(), p=p))
    assert gradcheck(lambda a, b: M.wasserstein(a, b, p=p), (x, y))


def test_wasserstein_of_equal_clouds_has_a_zero_gradient():
    pytest.importorskip("ot")
    y = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    for p in (1, 2):
        x = y.clone().requires_grad_()
        (gx,) = torch.autograd.grad(M.wasserstein(x, y, p=p), x)
        assert torch.equal(gx, torch.zeros_like(gx))


def test_wasserstein_weights_that_require_grad_are_warned_about():
    pytest.importorskip("ot")
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    w = torch.ones(4, dtype=F64, requires_grad=True)
    with pytest.warns(UserWarning, match=r"^wasserstein: weights_x requires grad, but"):
        M.wasserstein(x, x + 1, weights_x=w)


@pytest.mark.parametrize("kind", ["dense", "diag", "kron"])
def test_log_prob_and_rsample_under_vmap(kind):
    """vmap(post.log_prob) failed at the finite-value check of the value with torch's
    "data-dependent control flow" error; per-value scores (vmap of grad) need it."""
    from torch.func import grad, vmap

    cov = 2 * torch.eye(3, dtype=F64) + 0.1
    if kind == "diag":
        cov = DiagLinearOperator(torch.full((3,), 2.0, dtype=F64))
    elif kind == "kron":
        cov = _kron(torch.zeros(1, 1, dtype=F64), torch.eye(3, dtype=F64))
    post = GaussianPosterior(torch.zeros(3, dtype=F64), cov)
    values = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(vmap(post.log_prob)(values), post.log_prob(values))
    score = vmap(grad(post.log_prob))(values)
    torch.testing.assert_close(score, -torch.linalg.solve(post.covariance.to_dense(), values.T).T)
    draws = vmap(lambda z: post.rsample(base_samples=z))(values)
    torch.testing.assert_close(draws, post.rsample(base_samples=values))
    with pytest.raises(ValueError, match=r"^value: expected finite values"):
        post.log_prob(torch.full((3,), float("nan"), dtype=F64))  # still refused outside


def test_crps_gaussian_gradient_where_std_is_tiny_against_the_error():
    """The score there is |y - mean| - std / sqrt(pi) (the closed form overflows), but its
    gradient was NaN in mean and std: the overflowing branch's inf * 0 leaked through."""
    mean = torch.tensor([0.0, 0.0], requires_grad=True)
    std = torch.tensor([1e-39, 1.0], requires_grad=True)
    y = torch.tensor([1.0, 1.0])
    out = M.crps_gaussian(mean, std, y)
    gm, gs = torch.autograd.grad(out, (mean, std))
    assert bool(torch.isfinite(gm).all()) and bool(torch.isfinite(gs).all())
    assert float(gm[0]) == -0.5 and float(gs[0]) == pytest.approx(-0.5 / math.sqrt(math.pi))
    ref = M.crps_gaussian(mean[1:].detach(), std[1:].detach(), y[1:])
    assert float(out.detach()) == pytest.approx((1.0 - 1e-39 / math.sqrt(math.pi) + float(ref)) / 2)


def test_kron_plus_diag_factor_with_repeated_eigenvalues_warns_of_nan_gradients():
    """A factor s * I (independent outputs with a learned scale) has repeated eigenvalues:
    the eigendecomposition's backward gave NaN gradients in s without a word."""
    b = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    s = torch.tensor(2.0, dtype=F64, requires_grad=True)
    x = torch.tensor([0.1, 0.2, -0.3, 0.4], dtype=F64)

    def cov(scale):
        k = KroneckerProductLinearOperator(
            DenseLinearOperator(scale * torch.eye(2, dtype=F64)), DenseLinearOperator(b)
        )
        return KroneckerProductAddedDiagLinearOperator(
            k, ConstantDiagLinearOperator(torch.tensor([0.3], dtype=F64), diag_shape=4)
        )

    with pytest.warns(UserWarning, match=r"^covariance: Kronecker factor 0 requires grad and has"):
        GaussianPosterior(torch.zeros(4, dtype=F64), cov(s)).log_prob(x)
    # the remedy it names: the dense covariance gives the exact gradient
    dense = GaussianPosterior(torch.zeros(4, dtype=F64), cov(s).to_dense()).log_prob(x)
    (g,) = torch.autograd.grad(dense, s)
    assert bool(torch.isfinite(g))
    # no warning without a graph
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GaussianPosterior(torch.zeros(4, dtype=F64), cov(s.detach())).log_prob(x)
        with torch.no_grad():
            GaussianPosterior(torch.zeros(4, dtype=F64), cov(s)).log_prob(x)


def test_a_posterior_built_under_vmap_needs_validate_false():
    """As the validate docstring says: the checks read values, which vmap cannot."""
    from torch.func import vmap

    cov = 2 * torch.eye(3, dtype=F64)
    means = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(7))
    x = torch.zeros(3, dtype=F64)
    got = vmap(lambda m: GaussianPosterior(m, cov, validate=False).log_prob(x))(means)
    torch.testing.assert_close(
        got, GaussianPosterior(means, cov.expand(4, 3, 3), event_shape=(3,)).log_prob(x)
    )
    with pytest.raises(RuntimeError, match="data-dependent control flow"):
        vmap(lambda m: GaussianPosterior(m, cov).mean)(means)


def test_a_second_backward_through_one_posterior_needs_a_new_posterior():
    """As the class notes say: the factor is cached with its graph."""
    a = torch.eye(2, dtype=F64, requires_grad=True)
    x = torch.ones(2, dtype=F64)
    post = GaussianPosterior(torch.zeros(2, dtype=F64), _spd(a))
    post.log_prob(x).backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        post.log_prob(x).backward()
    first = a.grad.clone()
    a.grad = None
    GaussianPosterior(torch.zeros(2, dtype=F64), _spd(a)).log_prob(x).backward()
    torch.testing.assert_close(a.grad, first)
