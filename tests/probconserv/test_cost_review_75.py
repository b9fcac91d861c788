"""Cost review 75: work and memory of ProbConserv at the benchmark's sizes.

- ``conservation_update`` factorised the prior covariance at once (a dense Cholesky per
  function and slice, or a low-rank one's Woodbury capacitance), also for posteriors only
  scored by their mean and variances: the hybrid calibration's 2 x 16 held-out updates and
  its ``local_functions`` update (0.95 GB at the peak for 600 functions, now 0.22 GB). The
  root is factorised at the first draw, the same factor to the bit.
- ``fit_hybrid`` copied half the validation covariances for every candidate ``(K, beta)``:
  the folds' covariances are views.
- ``hybrid_covariance`` of a dense covariance held four arrays of its size at once (three
  temporaries and the result): the products are scaled and summed in place.
- The meta-GP's Step 1 kept the list of its slices' covariances beside their stack, a scaled
  copy and a jittered one (four ``[B, nt, nx, nx]`` arrays): it fills one array.
- ``conserve_latent_mixture`` densified each latent draw's update through linear_operator's
  sum (the diagonal and the sum as two more ``[*batch, nx, nx]`` arrays per draw).
"""

from __future__ import annotations

import gc
import pickle
import warnings

import pytest
import torch
from linear_operator.operators import (
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
    SumLinearOperator,
)

import bayesphys._gaussian_posterior as gp_mod
import bayesphys.probconserv._update_roots as roots_mod
import bayesphys.probconserv.mixture_update as mixture_mod
from bayesphys.posterior import GaussianPosterior
from bayesphys.probconserv.calibration import fit_hybrid, hybrid_covariance
from bayesphys.probconserv.mixture_update import conserve_latent_mixture
from bayesphys.probconserv.update import conserve_slices

from ..memory_checks import linux_only, peak_rise_mb

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _covariances(b: int = 3, nt: int = 2, n: int = 30) -> dict:
    g = _gen()
    a = torch.randn(b, nt, n, n, generator=g, dtype=F64)
    r = torch.randn(b, nt, n, 4, generator=g, dtype=F64)
    d = torch.rand(b, nt, n, generator=g, dtype=F64) + 0.1
    return {
        "dense": a @ a.mT / n + 0.1 * torch.eye(n, dtype=F64),
        "lowrank": LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(r), DiagLinearOperator(d)
        ),
        "diag": DiagLinearOperator(d),
    }


def _inputs(b: int = 3, nt: int = 2, n: int = 30):
    g = _gen(1)
    x = torch.linspace(0.0, 1.0, n, dtype=F64)
    return x, torch.randn(b, nt, n, generator=g, dtype=F64), torch.randn(b, nt, generator=g)


@pytest.fixture
def count_roots(monkeypatch):
    """Counts the prior factorisations (``structured_root`` of the posterior or of the
    update's sampler)."""
    calls = []
    for mod in (gp_mod, roots_mod):
        real = mod.structured_root

        def counted(*args, _real=real, **kwargs):
            calls.append(1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(mod, "structured_root", counted)
    return calls


@pytest.mark.parametrize("kind", ["dense", "lowrank", "diag"])
@pytest.mark.parametrize("sigma_g", [0.0, 0.3])
def test_update_scored_without_factorising(count_roots, kind, sigma_g):
    x, mean, mass = _inputs()
    prior = GaussianPosterior(mean, _covariances()[kind], event_shape=(30,), validate=False)
    post = conserve_slices(prior, x, mass, sigma_g)
    assert post.mean.shape == post.variance.shape == (3, 2, 30)
    assert not count_roots  # the eager update factorised the prior here
    draws = post.sample((4,), generator=_gen(2))
    prior.sample((2,))  # the prior's own draws reuse the factor its update's draws made
    assert len(count_roots) == 1
    assert draws.shape == (4, 3, 2, 30)


@pytest.mark.parametrize("kind", ["dense", "lowrank", "diag"])
@pytest.mark.parametrize("sigma_g", [0.0, 0.3])
def test_lazy_draws_equal_eagerly_factorised_ones(kind, sigma_g):
    """The draws are those of the factor the update took at once before (a validated prior's
    own root, factorised at construction), bit for bit, also once the prior is gone and after
    a pickle round trip."""
    x, mean, mass = _inputs()
    cov = _covariances()[kind]
    eager = conserve_slices(GaussianPosterior(mean, cov, event_shape=(30,)), x, mass, sigma_g)
    ref = eager.sample((5,), generator=_gen(3))
    lazy = conserve_slices(
        GaussianPosterior(mean, cov, event_shape=(30,), validate=False), x, mass, sigma_g
    )
    gc.collect()  # the prior is gone: the sampler factorises the covariance it holds
    assert lazy._base_dim() == eager._base_dim()
    assert torch.equal(lazy.sample((5,), generator=_gen(3)), ref)
    assert torch.equal(pickle.loads(pickle.dumps(lazy)).sample((5,), generator=_gen(3)), ref)


def test_lazy_root_keeps_the_gradient_after_a_draw_without_one():
    """A first draw under ``no_grad`` factorises without autograd: a later ``rsample`` with
    gradients rebuilds the factor (as the eager update's factor carried the graph)."""
    x, mean, mass = _inputs(2, 1, 12)
    g = _gen(4)
    r0 = torch.randn(2, 1, 12, 3, generator=g, dtype=F64)
    d = torch.rand(2, 1, 12, generator=g, dtype=F64) + 0.1
    z = torch.randn(4, 2, 1, 15, generator=g, dtype=F64)
    grads = []
    for validate in (True, False):
        r = r0.clone().requires_grad_()
        cov = LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(r), DiagLinearOperator(d)
        )
        post = conserve_slices(
            GaussianPosterior(mean, cov, event_shape=(12,), validate=validate), x, mass
        )
        with torch.no_grad():
            post.sample((2,))
        post.rsample(base_samples=z).pow(2).sum().backward()
        grads.append(r.grad)
    assert grads[1] is not None and bool(grads[1].abs().sum() > 0)
    assert torch.equal(grads[0], grads[1])


def test_fit_hybrid_folds_are_views_and_factorise_nothing(monkeypatch, count_roots):
    v, n = 12, 20
    g = _gen(5)
    a = torch.randn(v, 1, n, n, generator=g, dtype=F64)
    cov = a @ a.mT / n + 1e-3 * torch.eye(n, dtype=F64)
    mean = torch.randn(v, 1, n, generator=g, dtype=F64)
    truth = mean + 0.1 * torch.randn(v, 1, n, generator=g, dtype=F64)
    mass = torch.randn(v, 1, generator=g, dtype=F64)
    x, t = torch.linspace(0, 1, n, dtype=F64), torch.tensor([0.5], dtype=F64)
    seen = []
    real = hybrid_covariance

    def spy(c, *args):
        seen.append(c)
        return real(c, *args)

    monkeypatch.setattr("bayesphys.probconserv.calibration.hybrid_covariance", spy)
    fit_hybrid(
        mean,
        cov,
        truth,
        lambda p, idx: conserve_slices(p, x, mass[idx]),
        t,
        x,
        neighbours=(0, 2),
    )
    assert seen and not count_roots
    storage = cov.untyped_storage().data_ptr()
    # every fold's covariance is a view of the validation covariances, not a copy
    assert all(c.untyped_storage().data_ptr() == storage for c in seen)


def _old_hybrid(cov, e, beta, a, scale):
    w = torch.as_tensor(scale, dtype=cov.dtype)
    wm, we = (w * beta * a)[..., None, None], (w * (1.0 - beta))[..., None, None]
    return wm * cov + we * (e @ e.mT)


@pytest.mark.parametrize(
    "cshape, eshape, sshape",
    [
        ((4, 3, 25, 25), (3, 25, 7), None),
        ((4, 3, 25, 25), (3, 25, 7), (4, 3)),
        ((4, 3, 25, 25), (4, 3, 25, 5), (4, 3)),
        ((3, 25, 25), (3, 25, 7), (4, 3)),  # the result outgrows the covariance
        ((3, 25, 25), (4, 3, 25, 5), None),
        ((4, 3, 25, 25), (4, 3, 25, 5), (1, 3)),
    ],
)
def test_dense_hybrid_equals_the_formula(cshape, eshape, sshape):
    g = _gen(6)
    a = torch.randn(*cshape, generator=g, dtype=F64)
    cov = a @ a.mT
    e = torch.randn(*eshape, generator=g, dtype=F64)
    scale = 1.3 if sshape is None else torch.rand(*sshape, generator=g, dtype=F64) + 0.5
    for beta in (0.0, 0.3, 1.0):
        new, old = (
            hybrid_covariance(cov, e, beta, 0.7, scale),
            _old_hybrid(cov, e, beta, 0.7, scale),
        )
        assert new.shape == old.shape and torch.equal(new, old)
    c1, e1 = cov.clone().requires_grad_(), e.clone().requires_grad_()
    hybrid_covariance(c1, e1, 0.4, 0.7, scale).sum().backward()
    c2, e2 = cov.clone().requires_grad_(), e.clone().requires_grad_()
    _old_hybrid(c2, e2, 0.4, 0.7, scale).sum().backward()
    assert torch.equal(c1.grad, c2.grad) and torch.equal(e1.grad, e2.grad)


def _large_allocations(fn, nbytes: int) -> int:
    """How many top-level torch ops of ``fn()`` allocated at least ``nbytes`` (profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(1 for ev in prof.events() if ev.cpu_parent is None and ev.cpu_memory_usage >= nbytes)


def test_dense_hybrid_allocates_two_covariance_sized_arrays():
    """``[20, 1, 200, 200]`` with per-function analog roots: the scaled covariance and
    :math:`EE^T`, summed in place, not four arrays of that size (the formula's three
    temporaries and its result; measured beside it)."""
    g = _gen(9)
    cov = torch.rand(20, 1, 200, 200, generator=g, dtype=F64)
    e = torch.rand(20, 1, 200, 10, generator=g, dtype=F64)
    w = torch.rand(20, 1, generator=g, dtype=F64)
    size = cov.numel() * 8
    new = _large_allocations(lambda: hybrid_covariance(cov, e, 0.3, 0.7, w), size)
    old = _large_allocations(lambda: _old_hybrid(cov, e, 0.3, 0.7, w), size)
    assert (new, old) == (2, 4)


@linux_only
@pytest.mark.slow
def test_dense_hybrid_peak_memory():
    """The peak of a fresh process: one array of the covariance's size fewer than the
    formula's (``[40, 1, 400, 400]``, 49 MB; about 8 s: two processes)."""
    body = """
from bayesphys.probconserv.calibration import hybrid_covariance
cov = torch.rand(40, 1, 400, 400, dtype=torch.float64)
e = torch.rand(40, 1, 400, 20, dtype=torch.float64)
w = torch.rand(40, 1, dtype=torch.float64)
hybrid_covariance(cov[:2], e[:2], 0.3, 0.7, w[:2])  # its first call's imports, in both
{call}
"""
    new = peak_rise_mb(body.format(call="out = hybrid_covariance(cov, e, 0.3, 0.7, w)"))
    formula = "out = (w * 0.21)[..., None, None] * cov + (w * 0.7)[..., None, None] * (e @ e.mT)"
    old = peak_rise_mb(body.format(call=formula))
    assert new < old - 0.7 * (40 * 400 * 400 * 8 / 2**20), (new, old)


def _stub_gp(b: int):
    from bayesphys.probconserv import ProbConserv
    from bayesphys.problems.gpme import make_dataset

    m = ProbConserv("stefan", step1="gp", seed=0)

    def predict(xc, yc, xt):  # the prediction stubbed: only what Step 1 does around it
        n = xt.shape[1]
        return torch.zeros(b, n, dtype=F64), torch.ones(b, n, n, dtype=F64)

    m.net.predict = predict
    return m, make_dataset("stefan", b, seed=3)


def test_meta_gp_step1_allocates_its_covariances_once():
    """Step 1 over 6 slices allocates one ``[B, nt, nx, nx]`` array (filled slice by slice,
    scaled and jittered in place), not three (the stack, the scaled and the jittered copy)."""
    m, data = _stub_gp(8)
    tt = torch.linspace(0.01, 0.1, 6, dtype=F64)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return m._step1(data, tt, None, seed=0, stage="raw")

    assert _large_allocations(run, 8 * 6 * 201 * 201 * 8) == 1


@linux_only
@pytest.mark.slow
def test_meta_gp_step1_peak_memory():
    """The peak of a fresh process over 10 slices: the covariances once (and a slice), not
    four times (about 6 s)."""
    rise = peak_rise_mb(
        """
import warnings
from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset
m = ProbConserv("stefan", step1="gp", seed=0)
data = make_dataset("stefan", 40, seed=3)
def predict(xc, yc, xt):
    n, f64 = xt.shape[1], torch.float64
    return torch.zeros(40, n, dtype=f64), torch.ones(40, n, n, dtype=f64)
m.net.predict = predict
tt = torch.linspace(0.01, 0.1, 10, dtype=torch.float64)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    p = m._step1(data, tt, None, seed=0, stage="raw")
assert p.covariance.shape == (40, 10, 201, 201)
"""
    )
    size = 40 * 10 * 201 * 201 * 8 / 2**20  # 123 MB
    assert rise < 2 * size, rise


def test_meta_gp_step1_values():
    """The covariances filled slice by slice, scaled and jittered in place: the stacked
    formula's numbers."""
    from bayesphys.probconserv import ProbConserv
    from bayesphys.problems.gpme import make_dataset

    m = ProbConserv("stefan", step1="gp", seed=0)
    m.var_scale = 1.7
    data = make_dataset("stefan", 3, seed=3)
    tt = torch.tensor([0.02, 0.05, 0.08], dtype=F64)
    nx = 21
    xx = torch.linspace(0.0, 1.0, nx, dtype=F64)
    with warnings.catch_warnings():  # an untrained model's warnings are not the point
        warnings.simplefilter("ignore")
        post = m._step1(data, tt, xx, seed=0, stage="prior")
    xc, yc = data.x_context, data.y_context
    grid = torch.stack(torch.broadcast_tensors(tt[:, None], xx[None, :]), -1).reshape(-1, 2)
    xt = grid.expand(3, -1, -1)
    parts = [m.net.predict(xc, yc, xt[:, j * nx : (j + 1) * nx]) for j in range(3)]
    mean = torch.stack([p[0] for p in parts], 1)
    cov = 1.7 * torch.stack([p[1] for p in parts], 1) + 1e-10 * torch.eye(nx, dtype=F64)
    assert torch.equal(post.mean, mean)
    assert torch.equal(post.covariance.to_dense(), cov)


def test_mixture_densifies_without_linear_operator_sum(monkeypatch):
    g = _gen(7)
    s, b, nt, nx = 6, 3, 2, 25
    mu = torch.randn(s, b, nt, nx, generator=g, dtype=F64)
    var = torch.rand(s, b, nt, nx, generator=g, dtype=F64) + 0.01
    x = torch.linspace(0.0, 1.0, nx, dtype=F64)
    mass = torch.randn(b, nt, generator=g, dtype=F64)
    sums = []
    real = SumLinearOperator.to_dense

    def counted(self):
        sums.append(1)
        return real(self)

    monkeypatch.setattr(SumLinearOperator, "to_dense", counted)
    for sigma_g in (0.0, 0.2):
        sums.clear()
        new = conserve_latent_mixture(mu, var, x, mass, sigma_g)
        assert not sums  # one per latent draw before
        monkeypatch.setattr(mixture_mod, "_dense_update", lambda c: c.to_dense())
        old = conserve_latent_mixture(mu, var, x, mass, sigma_g)
        monkeypatch.undo()
        monkeypatch.setattr(SumLinearOperator, "to_dense", counted)
        assert sums
        assert torch.equal(new.mean, old.mean)
        assert torch.equal(new.covariance.to_dense(), old.covariance.to_dense())
        assert torch.equal(new.sample((3,), generator=_gen(8)), old.sample((3,), generator=_gen(8)))
