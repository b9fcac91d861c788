"""Gradients through ProbConserv: the conservation update is differentiable in the prior's
mean and covariance, G, b and sigma_g (float64 gradchecks); the model's posterior is computed
from a Step-1 prediction without gradient, so a grid that requires grad is warned about and
read detached (the quadrature weights alone gave x a partial, wrong gradient)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.autograd import gradcheck

from bayesphys import GaussianPosterior
from bayesphys.probconserv import ProbConserv, conservation_update, hard_projection
from bayesphys.problems.gpme import make_dataset

F64 = torch.float64


def _spd(a):
    return a @ a.mT + torch.eye(a.shape[-1], dtype=a.dtype)


@pytest.mark.parametrize("sigma_g", [0.0, 0.3])
def test_conservation_update_gradchecks(sigma_g):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, dtype=F64, generator=g, requires_grad=True)
    a = torch.randn(4, 4, dtype=F64, generator=g, requires_grad=True)
    G = torch.rand(1, 4, dtype=F64, generator=g).requires_grad_()
    b = torch.tensor([0.7], dtype=F64, requires_grad=True)
    z = torch.randn(2, 4 if sigma_g == 0 else 5, dtype=F64, generator=g)

    def post(m, a_, g_, b_):
        return conservation_update(GaussianPosterior(m, _spd(a_)), g_, b_, sigma_g)

    args = (mu, a, G, b)
    assert gradcheck(lambda *xs: post(*xs).mean, args)
    assert gradcheck(lambda *xs: post(*xs).variance, args)
    assert gradcheck(lambda *xs: post(*xs).rsample((2,), base_samples=z), args)
    assert gradcheck(
        lambda m, a_, g_, b_: hard_projection(GaussianPosterior(m, _spd(a_)), g_, b_).mean, args
    )


def test_conservation_update_gradcheck_in_sigma_g():
    prior = GaussianPosterior(torch.zeros(3, dtype=F64), _spd(torch.eye(3, dtype=F64)))
    s = torch.tensor(0.3, dtype=F64, requires_grad=True)
    G = torch.ones(1, 3, dtype=F64)
    assert gradcheck(lambda s_: conservation_update(prior, G, 1.0, s_).mean, (s,))


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    m = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0)
    m.fit(steps=2, progress=False)
    return m


def test_posterior_warns_for_a_grid_that_requires_grad_and_reads_it_detached(model):
    test = make_dataset("diffusion", params=[1.0], seed=3)
    t = torch.tensor([0.2, 0.5], dtype=F64)
    x = torch.linspace(0, 1, 11, dtype=F64)
    plain = model.posterior(test, t=t, x=x)
    with pytest.warns(UserWarning, match=r"^ProbConserv\.posterior: x requires grad, but"):
        post = model.posterior(test, t=t, x=x.clone().requires_grad_())
    assert not post.mean.requires_grad  # was attached through the quadrature weights only
    torch.testing.assert_close(post.mean, plain.mean)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model.step1(test, t=t, x=x.clone().requires_grad_())
    said = [str(w.message) for w in rec if "requires grad" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("ProbConserv.step1: x requires grad, but")


@pytest.mark.parametrize("field", ["x_context", "y_context"])
def test_a_context_that_requires_grad_is_named_as_the_caller_passed_it(model, field):
    """Context points that require grad were warned about by the Step-1 network, under its
    own names ("AttentiveNP.predict: yc requires grad"), which the caller never passed; now
    step1 and posterior name the context's field once, and read the points detached."""
    import dataclasses

    test = make_dataset("diffusion", params=[1.0], seed=3)
    live = dataclasses.replace(test, **{field: getattr(test, field).clone().requires_grad_()})
    for method in ("step1", "posterior"):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            post = getattr(model, method)(live)
        said = [str(w.message) for w in rec if "requires grad" in str(w.message)]
        assert len(said) == 1, said
        assert said[0].startswith(f"ProbConserv.{method}: context.{field} requires grad, but")
        torch.testing.assert_close(post.mean, getattr(model, method)(test).mean, rtol=0, atol=0)
        assert not post.mean.requires_grad
    assert getattr(live, field).requires_grad  # the caller's data is left as it was


def test_a_context_of_a_list_beside_points_that_require_grad_is_refused_by_name(model):
    import dataclasses

    test = make_dataset("diffusion", params=[1.0], seed=3)
    bad = dataclasses.replace(
        test, x_context=test.x_context.tolist(), y_context=test.y_context.clone().requires_grad_()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError, match=r"^context\.x_context: expected a torch\.Tensor"):
            model.posterior(bad)


def test_posterior_is_differentiable_in_the_mass(model):
    test = make_dataset("diffusion", params=[1.0], seed=3)
    t = torch.tensor([0.2, 0.5], dtype=F64)
    mass = model.mass(test, t).detach().clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        post = model.posterior(test, t=t, mass=mass)
    (g,) = torch.autograd.grad(post.mean.sum(), mass)
    assert bool(torch.isfinite(g).all()) and bool((g != 0).all())


def test_step1_networks_predict_warn_for_inputs_that_require_grad():
    from bayesphys.probconserv import AttentiveNP, MetaGP

    g = torch.Generator().manual_seed(0)
    xc = torch.rand(2, 6, 2, generator=g, dtype=F64)
    yc = torch.rand(2, 6, generator=g, dtype=F64)
    xt = torch.rand(2, 5, 2, generator=g, dtype=F64)
    torch.manual_seed(0)
    for net in (
        AttentiveNP((0.0, 0.0), (1.0, 1.0), hidden=8).double(),
        MetaGP((0.0, 0.0), (1.0, 1.0), width=4),
    ):
        name = type(net).__name__
        with pytest.warns(UserWarning, match=rf"^{name}\.predict: xt requires grad, but"):
            out = net.predict(xc, yc, xt.clone().requires_grad_())
        assert not out[0].requires_grad
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            net.predict(xc, yc, xt)


def test_project_nonnegative_gradcheck():
    """The multiplier came from a bisection whose brackets carried a wrong gradient (an affine
    mix of their ends): the projection's Jacobian in the draws and in b was silently wrong."""
    from bayesphys.probconserv import project_nonnegative

    v = torch.tensor([[0.5, -0.2, 0.8, 0.1], [0.3, 0.3, -0.1, 0.9]], dtype=F64)
    g = torch.tensor([0.5, 1.0, 1.0, 0.5], dtype=F64)
    b = torch.tensor([0.6, 0.4], dtype=F64)
    args = tuple(t.clone().requires_grad_() for t in (v, g, b))
    assert gradcheck(project_nonnegative, args, atol=1e-6)
    assert torch.equal(project_nonnegative(*args).detach(), project_nonnegative(v, g, b))
    # on its support the Jacobian is the projection I - g_S g_S^T / |g_S|^2
    x = v[:1].clone().requires_grad_()
    (jac,) = torch.autograd.functional.jacobian(lambda a: project_nonnegative(a, g, b[:1]), (x,))
    s = torch.tensor([0, 2])
    gs = g[s]
    want = torch.eye(2, dtype=F64) - torch.outer(gs, gs) / gs.square().sum()
    torch.testing.assert_close(jac[0][s][:, 0, s], want)


def test_project_monotone_is_read_detached_with_a_warning():
    """A backward through it failed with torch's "modified by an inplace operation"."""
    from bayesphys.probconserv import project_monotone

    v = torch.tensor([[0.5, 0.7, 0.2, 0.1]], dtype=F64)
    g = torch.tensor([0.5, 1.0, 1.0, 0.5], dtype=F64)
    with pytest.warns(UserWarning, match=r"^project_monotone: draws requires grad, but"):
        out = project_monotone(v.clone().requires_grad_(), g, 0.9)
    assert not out.requires_grad
    torch.testing.assert_close(out, project_monotone(v, g, 0.9))
