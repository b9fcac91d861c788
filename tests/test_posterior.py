"""Tests of the shared posterior interface (bayesphys/posterior.py and the private modules it
re-exports)."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linear_operator import to_dense
from linear_operator.operators import (
    ConstantDiagLinearOperator,
    DenseLinearOperator,
    DiagLinearOperator,
    KroneckerProductAddedDiagLinearOperator,
    KroneckerProductLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

from bayesphys import GaussianPosterior, Posterior, SamplePosterior

D = torch.float64


def _spd(n: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(n, n, generator=gen, dtype=D)
    return a @ a.T / n + 0.1 * torch.eye(n, dtype=D)


def _structured(kind: str, sizes: tuple[int, ...], gen: torch.Generator):
    if kind == "dense":
        return DenseLinearOperator(_spd(math.prod(sizes), gen))
    if kind == "diag":
        return DiagLinearOperator(torch.rand(math.prod(sizes), generator=gen, dtype=D) + 0.1)
    if kind == "lowrank":
        n = math.prod(sizes)
        root = torch.randn(n, 2, generator=gen, dtype=D)
        return LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(root),
            DiagLinearOperator(torch.rand(n, generator=gen, dtype=D) + 0.1),
        )
    kron = KroneckerProductLinearOperator(*[DenseLinearOperator(_spd(s, gen)) for s in sizes])
    if kind == "kron_diag":  # a GP grid prior plus iid noise: its own eigen-root
        noise = 0.05 + torch.rand(1, generator=gen, dtype=D)
        return KroneckerProductAddedDiagLinearOperator(
            kron, ConstantDiagLinearOperator(noise, diag_shape=math.prod(sizes))
        )
    return kron


KINDS = ["dense", "diag", "lowrank", "kron", "kron_diag"]


def test_protocol_membership():
    g = GaussianPosterior(torch.zeros(3, dtype=D), torch.eye(3, dtype=D))
    s = SamplePosterior(torch.randn(2, 10, 3))
    assert isinstance(g, Posterior) and isinstance(s, Posterior)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes(kind, device):
    gen = torch.Generator().manual_seed(0)
    cov = _structured(kind, (3, 4), gen).to(device)
    post = GaussianPosterior(torch.zeros(3, 4, dtype=D, device=device), cov)
    assert post.sample((7, 2)).shape == (7, 2, 3, 4)
    assert post.sample((7, 2)).device.type == device.type
    assert post.quantile([0.1, 0.5, 0.9]).shape == (3, 3, 4)
    assert post.variance.shape == (3, 4)
    assert post.log_prob(torch.zeros(5, 3, 4, dtype=D, device=device)).shape == (5,)
    lo, hi = post.interval(0.9)
    assert bool((lo < hi).all())


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    sizes=st.lists(st.integers(2, 3), min_size=2, max_size=4).map(tuple),
    seed=st.integers(0, 10_000),
)
def test_structured_matches_dense(kind, sizes, seed):
    """log_prob and variance agree with the densified covariance, and the root reproduces it,
    for 2 to 4 Kronecker factors (a two-factor test let a logdet wrong for three pass)."""
    gen = torch.Generator().manual_seed(seed)
    cov = _structured(kind, sizes, gen)
    dense = to_dense(cov)
    n = math.prod(sizes)
    mean = torch.randn(n, generator=gen, dtype=D)
    post = GaussianPosterior(mean.reshape(sizes), cov)
    ref = torch.distributions.MultivariateNormal(mean, covariance_matrix=dense)
    x = torch.randn(4, n, generator=gen, dtype=D)
    torch.testing.assert_close(
        post.log_prob(x.reshape(4, *sizes)), ref.log_prob(x), rtol=1e-8, atol=1e-8
    )
    torch.testing.assert_close(post.variance.reshape(-1), dense.diagonal(), rtol=1e-10, atol=1e-12)
    # the root reproduces the covariance exactly: L L^T = Sigma
    root = post._get_root()
    eye = torch.eye(root.base_dim, dtype=D)
    l_mat = root.apply(eye).mT  # columns L e_j
    torch.testing.assert_close(l_mat @ l_mat.mT, dense, rtol=1e-8, atol=1e-8)
    # and its solve is the inverse
    torch.testing.assert_close(
        root.solve(x), torch.linalg.solve(dense, x.mT).mT, rtol=1e-7, atol=1e-8
    )


@settings(max_examples=8, deadline=None)
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 1000))
def test_sample_moments_match(kind, seed):
    gen = torch.Generator().manual_seed(seed)
    cov = _structured(kind, (2, 3), gen)
    mean = torch.randn(2, 3, generator=gen, dtype=D)
    post = GaussianPosterior(mean, cov)
    s = post.sample((20000,), generator=gen)
    se = post.stddev / math.sqrt(20000)
    assert bool(((s.mean(0) - mean).abs() < 5 * se).all())
    torch.testing.assert_close(s.var(0), post.variance, rtol=0.08, atol=1e-3)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), q=st.lists(st.floats(0.01, 0.99), min_size=2, max_size=6))
def test_quantiles_monotone(seed, q):
    gen = torch.Generator().manual_seed(seed)
    q = sorted(set(q))
    g = GaussianPosterior(torch.randn(5, generator=gen, dtype=D), _spd(5, gen))
    s = SamplePosterior(torch.randn(2, 200, 5, generator=gen, dtype=D))
    for post in (g, s):
        qs = post.quantile(q)
        assert bool((qs[1:] >= qs[:-1]).all())


@settings(max_examples=15, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 10_000),
    q=st.lists(st.floats(1e-6, 1 - 1e-6), min_size=1, max_size=4),
)
def test_gaussian_quantile_matches_scipy(kind, seed, q):
    """mean + sd Phi^{-1}(q) with sd from the densified covariance's diagonal and scipy's ppf."""
    import numpy as np
    import scipy.stats

    gen = torch.Generator().manual_seed(seed)
    cov = _structured(kind, (2, 3), gen)
    mean = torch.randn(2, 3, generator=gen, dtype=D)
    got = GaussianPosterior(mean, cov).quantile(q)
    sd = np.sqrt(to_dense(cov).diagonal().numpy()).reshape(2, 3)
    z = scipy.stats.norm.ppf(np.asarray(q))
    want = mean.numpy()[None] + sd[None] * z[:, None, None]
    assert got.dtype == D and tuple(got.shape) == (len(q), 2, 3)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(
    chains=st.integers(1, 3),
    draws=st.integers(2, 30),
    batch=st.lists(st.integers(1, 3), max_size=2),
    event=st.lists(st.integers(1, 3), max_size=2),
    q=st.lists(st.floats(1e-6, 1 - 1e-6), min_size=1, max_size=4),
    level=st.floats(1e-6, 1 - 1e-6),
    seed=st.integers(0, 10_000),
)
def test_sample_posterior_matches_numpy(chains, draws, batch, event, q, level, seed):
    """Empirical moments and quantiles over all chains and draws, as numpy computes them:
    mean, variance with ddof=1, linear-interpolation quantiles ``[*q.shape, *batch, *event]``
    and the central interval at the quantiles ``(1 -+ level) / 2``."""
    import numpy as np

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(chains, draws, *batch, *event, generator=gen, dtype=D)
    post = SamplePosterior(x, event_ndim=len(event))
    assert post.batch_shape == tuple(batch) and post.event_shape == tuple(event)
    flat = x.reshape(chains * draws, *batch, *event).numpy()
    np.testing.assert_allclose(post.mean.numpy(), flat.mean(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(post.variance.numpy(), flat.var(0, ddof=1), rtol=1e-12, atol=1e-14)
    got = post.quantile(q)
    assert got.dtype == D and tuple(got.shape) == (len(q), *batch, *event)
    np.testing.assert_allclose(got.numpy(), np.quantile(flat, q, axis=0), rtol=1e-12, atol=1e-14)
    lo, hi = post.interval(level)
    want = np.quantile(flat, [(1 - level) / 2, (1 + level) / 2], axis=0)
    np.testing.assert_allclose(lo.numpy(), want[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hi.numpy(), want[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("q", [0.025, 0.5, 0.8413447460685429, 0.975])
def test_gaussian_quantile_known_values(q):
    # N(1, 4) marginals: the median is the mean and Phi(1) = 0.8413... is one sd (2) above it
    post = GaussianPosterior(torch.ones(3, dtype=D), 4 * torch.eye(3, dtype=D))
    known = {0.025: 1 - 2 * 1.959963984540054, 0.5: 1.0, 0.8413447460685429: 3.0}
    want = known.get(q, 1 + 2 * 1.959963984540054)
    torch.testing.assert_close(
        post.quantile(q), torch.full((3,), want, dtype=D), rtol=1e-12, atol=1e-12
    )


def test_interval_covers_draws():
    gen = torch.Generator().manual_seed(1)
    post = GaussianPosterior(torch.zeros(50, dtype=D), _spd(50, gen))
    s = post.sample((4000,), generator=gen)
    lo, hi = post.interval(0.95)
    frac = ((s >= lo) & (s <= hi)).double().mean()
    assert abs(float(frac) - 0.95) < 0.01


def test_rsample_has_gradient_and_base_samples():
    mean = torch.zeros(3, dtype=D, requires_grad=True)
    post = GaussianPosterior(mean, torch.eye(3, dtype=D))
    post.rsample((4,)).sum().backward()
    assert mean.grad is not None and torch.allclose(mean.grad, torch.full((3,), 4.0, dtype=D))
    z = torch.randn(2, 3, dtype=D)
    torch.testing.assert_close(post.rsample(base_samples=z), z)
    with pytest.raises(ValueError, match="base_samples"):
        post.rsample(base_samples=torch.randn(2, 4, dtype=D))


def _scaled(kind: str, sizes: tuple[int, ...], t: torch.Tensor) -> object:
    """The ``kind`` covariance of ``_structured`` with its pieces scaled by ``exp(t)`` (and
    ``exp(t / 2)`` for a low-rank root), so that it depends differentiably on ``t``."""
    gen = torch.Generator().manual_seed(3)
    cov, e = _structured(kind, sizes, gen), t.exp()
    if kind == "dense":
        return DenseLinearOperator(e * cov.to_dense())
    if kind == "diag":
        return DiagLinearOperator(e * cov.diagonal())
    if kind == "lowrank":
        return LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(e.sqrt() * cov._linear_op.root.to_dense()),
            DiagLinearOperator(e * cov._diag_tensor.diagonal()),
        )
    kron = cov._linear_op if kind == "kron_diag" else cov
    first, *rest = [f.to_dense() for f in kron.linear_ops]
    kron = KroneckerProductLinearOperator(
        DenseLinearOperator(e * first), *[DenseLinearOperator(f) for f in rest]
    )
    if kind == "kron_diag":
        noise = cov._diag_tensor.diag_values
        return KroneckerProductAddedDiagLinearOperator(
            kron, ConstantDiagLinearOperator(e * noise, diag_shape=math.prod(sizes))
        )
    return kron


@pytest.mark.parametrize("kind", KINDS)
def test_rsample_and_log_prob_gradients_match_finite_differences(kind):
    sizes = (2, 3)
    mean = torch.randn(6, dtype=D, requires_grad=True)
    t = torch.tensor(0.2, dtype=D, requires_grad=True)
    value = torch.randn(2, 6, dtype=D, requires_grad=True)
    m = GaussianPosterior(mean.detach(), _scaled(kind, sizes, t.detach()))._base_dim()
    z = torch.randn(3, m, dtype=D)

    def draws(mu, t):
        return GaussianPosterior(mu, _scaled(kind, sizes, t)).rsample((3,), base_samples=z)

    def log_prob(mu, t, v):
        return GaussianPosterior(mu, _scaled(kind, sizes, t)).log_prob(v)

    assert torch.autograd.gradcheck(draws, (mean, t))
    assert torch.autograd.gradcheck(log_prob, (mean, t, value))


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_the_covariance_after_a_draw_without_them(kind):
    # a root factorised by sample() (under no_grad) was cached and reused: later rsample and
    # log_prob were silently constant in the covariance (validate=False, or a large dense one)
    t = torch.tensor(0.2, dtype=D, requires_grad=True)
    post = GaussianPosterior(torch.zeros(6, dtype=D), _scaled(kind, (2, 3), t), validate=False)
    post.sample((2,))
    with torch.no_grad():
        post.log_prob(torch.ones(6, dtype=D))
    draws = post.rsample((4,), generator=torch.Generator().manual_seed(0))
    lp = post.log_prob(torch.ones(6, dtype=D))
    assert draws.requires_grad and lp.requires_grad
    (g_draw,) = torch.autograd.grad(draws.pow(2).sum(), t, retain_graph=True)
    (g_lp,) = torch.autograd.grad(lp, t)

    def fresh() -> GaussianPosterior:
        return GaussianPosterior(torch.zeros(6, dtype=D), _scaled(kind, (2, 3), t))

    ref = fresh().rsample((4,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(g_draw, torch.autograd.grad(ref.pow(2).sum(), t)[0])
    ref_lp = fresh().log_prob(torch.ones(6, dtype=D))
    torch.testing.assert_close(g_lp, torch.autograd.grad(ref_lp, t)[0])


def test_batch_shape():
    cov = torch.eye(4, dtype=D).expand(3, 4, 4)
    post = GaussianPosterior(torch.zeros(3, 4, dtype=D), cov, event_shape=(4,))
    assert post.batch_shape == (3,) and post.event_shape == (4,)
    assert post.sample((2,)).shape == (2, 3, 4)
    assert post.log_prob(torch.zeros(3, 4, dtype=D)).shape == (3,)


def test_seeded_sampling_reproduces():
    post = GaussianPosterior(torch.zeros(6, dtype=D), torch.eye(6, dtype=D))
    a = post.sample((3,), generator=torch.Generator().manual_seed(5))
    b = post.sample((3,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_custom_root():
    # rank-one covariance v v^T sampled via a custom pathwise root
    v = torch.tensor([1.0, 2.0, 3.0], dtype=D)
    post = GaussianPosterior(
        torch.zeros(3, dtype=D),
        torch.outer(v, v),
        validate=False,
        root=lambda z: z * v,
        root_dim=1,
    )
    s = post.sample((5,))
    torch.testing.assert_close(s[:, 1], 2 * s[:, 0])
    with pytest.raises(NotImplementedError):
        post.log_prob(torch.zeros(3, dtype=D))


def test_custom_root_log_prob_refusal_says_why_and_what_to_use():
    # the GP PDE solver's and ProbConserv's posteriors draw through a custom root: a user
    # calling log_prob on them got "not available with a custom root", naming a constructor
    # argument they never passed
    v = torch.tensor([1.0, 2.0, 3.0], dtype=D)
    post = GaussianPosterior(
        torch.zeros(3, dtype=D), torch.diag(v * v), root=lambda z: z * v, root_dim=3
    )
    with pytest.raises(NotImplementedError) as info:
        post.log_prob(torch.zeros(3, dtype=D))
    msg = str(info.value)
    assert "custom sampler" in msg and "GP PDE solver" in msg
    assert "gaussian_nll(post.mean, post.variance, y)" in msg
    # the call it suggests runs on such a posterior
    from bayesphys.metrics import gaussian_nll

    y = torch.tensor([0.5, -1.0, 2.0], dtype=D)
    expected = 0.5 * (math.log(2 * math.pi) + torch.log(v * v) + y * y / (v * v)).mean()
    torch.testing.assert_close(gaussian_nll(post.mean, post.variance, y), expected)


def test_sample_posterior_moments_and_errors():
    draws = torch.randn(4, 500, 3, 2, dtype=D)
    post = SamplePosterior(draws, event_ndim=1)
    assert post.batch_shape == (3,) and post.event_shape == (2,)
    torch.testing.assert_close(post.mean, draws.reshape(-1, 3, 2).mean(0))
    assert post.sample((10,)).shape == (10, 3, 2)
    with pytest.raises(NotImplementedError):
        post.rsample()
    with pytest.raises(NotImplementedError):
        post.log_prob(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="draws"):
        SamplePosterior(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="event_ndim"):
        SamplePosterior(draws, event_ndim=5)


def test_sample_gives_draws_without_gradient_for_every_posterior():
    # the protocol's sample() has no gradient; an empirical posterior of draws that required
    # grad gave resampled draws carrying (and holding alive) the draws' whole graph
    w = torch.ones((), dtype=D, requires_grad=True)
    draws = w * torch.randn(2, 10, 3, dtype=D)
    mean = w * torch.zeros(3, dtype=D)
    for post in (SamplePosterior(draws), GaussianPosterior(mean, torch.eye(3, dtype=D))):
        out = post.sample((4,), seed=0)
        assert out.shape == (4, 3)
        assert not out.requires_grad and out.grad_fn is None
    out = SamplePosterior(draws).sample((4,), seed=0)
    assert all(any(torch.equal(row, d) for d in draws.detach().reshape(20, 3)) for row in out)


def test_sample_posterior_refuses_integer_draws_and_fractional_event_ndim():
    # integer draws were accepted; quantile(0.5) then said "q: expected probabilities strictly
    # inside (0, 1), received 0.5" (q cast to int64) and variance failed inside torch
    with pytest.raises(TypeError, match="draws: expected a floating tensor"):
        SamplePosterior(torch.randint(0, 10, (2, 50, 3)))
    with pytest.raises(TypeError, match="event_ndim"):
        SamplePosterior(torch.randn(2, 5, 3, 4, dtype=D), event_ndim=1.5)
    post = SamplePosterior(torch.randint(0, 10, (2, 50, 3)).double())
    assert post.quantile(0.5).shape == (3,)


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"covariance: expected shape \(3, 3\)"):
        GaussianPosterior(torch.zeros(3, dtype=D), torch.eye(4, dtype=D))
    with pytest.raises(ValueError, match="covariance: expected a positive semi-definite"):
        GaussianPosterior(torch.zeros(2, dtype=D), torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=D))
    with pytest.raises(ValueError, match="mean: expected finite"):
        GaussianPosterior(torch.tensor([0.0, float("nan")], dtype=D), torch.eye(2, dtype=D))
    with pytest.raises(ValueError, match="covariance: expected finite"):
        GaussianPosterior(
            torch.zeros(2, dtype=D), torch.tensor([[1.0, 0.0], [0.0, float("inf")]], dtype=D)
        )
    with pytest.raises(TypeError, match="mean"):
        GaussianPosterior([0.0, 1.0], torch.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        GaussianPosterior(torch.zeros(2, dtype=D), torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=D))
    with pytest.raises(ValueError, match="non-negative"):
        GaussianPosterior(
            torch.zeros(2, dtype=D), DiagLinearOperator(torch.tensor([1.0, -1.0], dtype=D))
        )
    post = GaussianPosterior(torch.zeros(2, dtype=D), torch.eye(2, dtype=D))
    with pytest.raises(ValueError, match="q: expected probabilities"):
        post.quantile(1.5)
    with pytest.raises(ValueError, match="level"):
        post.interval(95)
    with pytest.raises(ValueError, match="value: expected trailing shape"):
        post.log_prob(torch.zeros(3, dtype=D))
    with pytest.raises(ValueError, match="device"):
        post.to("tpu")
    with pytest.raises(
        ValueError, match=r"sample_shape: expected non-negative sizes, received \(-1,\)"
    ):
        post.sample(-1)
    with pytest.raises(ValueError, match="non-negative sizes"):
        post.rsample((2, -3))
    assert post.sample(0).shape == (0, 2)  # an empty draw is allowed


@pytest.mark.parametrize("kind", KINDS)
def test_to_cpu_roundtrip(kind):
    gen = torch.Generator().manual_seed(4)
    mean = torch.randn(5, 6, generator=gen, dtype=D)
    post = GaussianPosterior(mean, _structured(kind, (5, 6), gen))
    moved = post.to("cpu")
    assert moved.device.type == "cpu"
    assert moved.event_shape == post.event_shape and moved.batch_shape == post.batch_shape
    assert torch.equal(moved.mean, post.mean) and torch.equal(moved.variance, post.variance)
    a = post.sample((4,), generator=torch.Generator().manual_seed(1))
    b = moved.sample((4,), generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, 5, 6) and torch.equal(a, b)
    sp = SamplePosterior(a.unsqueeze(0))
    sp_moved = sp.to("cpu")
    assert sp_moved.device.type == "cpu" and torch.equal(sp_moved.draws, sp.draws)
    assert sp_moved.event_shape == sp.event_shape


@pytest.mark.gpu
def test_cuda_gaussian_and_sample(cuda_device):
    gen = torch.Generator().manual_seed(0)
    cov = _structured("kron", (5, 6), gen).to(cuda_device)
    post = GaussianPosterior(torch.zeros(5, 6, dtype=D, device=cuda_device), cov)
    s = post.sample((100,))
    assert s.device.type == "cuda" and post.variance.device.type == "cuda"
    assert post.log_prob(s).device.type == "cuda"
    sp = SamplePosterior(s.unsqueeze(0))
    assert sp.quantile(0.5).device.type == "cuda"


def test_sample_posterior_scalar_quantile_of_a_scalar_event():
    draws = torch.arange(11, dtype=torch.float64).reshape(1, 11)  # one chain, 11 scalar draws
    post = SamplePosterior(draws, chains=True)
    q = post.quantile(0.5)
    assert q.shape == () and float(q) == 5.0


@pytest.mark.parametrize("kind", KINDS)
def test_posteriors_pickle_and_sample_alike(kind):
    # the cached root of a GaussianPosterior holds closures: pickling a posterior that had
    # been validated or sampled raised "Can't pickle local object" (e.g. torch.save, or
    # sending it to a process pool)
    import pickle

    gen = torch.Generator().manual_seed(0)
    cov = _structured(kind, (3, 2), gen)
    post = GaussianPosterior(torch.randn(6, generator=gen, dtype=D), cov)
    post.sample((2,))  # builds the root
    back = pickle.loads(pickle.dumps(post))
    a = post.sample((4,), generator=torch.Generator().manual_seed(1))
    b = back.sample((4,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    v = torch.randn(6, dtype=D)
    assert torch.equal(post.log_prob(v), back.log_prob(v))
    s = SamplePosterior(torch.randn(2, 5, 3, generator=gen))
    assert torch.equal(pickle.loads(pickle.dumps(s)).draws, s.draws)


def test_symmetry_check_is_relative_to_the_matrix_and_its_dtype():
    """Float32 GP covariances (rounding asymmetry ~1e-6) were refused, and any asymmetry was
    accepted in a matrix whose entries were all below 1e-10."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 2, generator=g) * 3
    k = torch.exp(-(torch.cdist(x, x) ** 2) / 0.1) + 1e-3 * torch.eye(200)
    a = k + 0.1 * torch.eye(200)
    c = k - k @ torch.linalg.solve(a, k)  # float32 rounding makes it slightly asymmetric
    assert not torch.equal(c, c.mT)
    GaussianPosterior(torch.zeros(200), c)
    tiny = 1e-12 * torch.tensor([[1.0, 0.9], [-0.5, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"covariance: expected a symmetric matrix .* received"):
        GaussianPosterior(torch.zeros(2, dtype=torch.float64), tiny)
    with pytest.raises(ValueError, match="symmetric"):  # one bad element of a batch
        GaussianPosterior(
            torch.zeros(2, 2, dtype=torch.float64),
            torch.stack([torch.eye(2, dtype=torch.float64), tiny / 1e-12]),
            event_shape=(2,),
        )
    GaussianPosterior(
        torch.zeros(2, 2), torch.zeros(2, 2, 2), event_shape=(2,)
    )  # zero covariance: symmetric


def test_rsample_base_samples_must_carry_the_batch_dims():
    """A base without the batch dims gave draws of the wrong shape silently, or a raw reshape /
    broadcast RuntimeError."""
    pb = GaussianPosterior(
        torch.zeros(3, 4, dtype=D), torch.eye(4, dtype=D).expand(3, 4, 4).clone(), event_shape=(4,)
    )
    for shape, base in (
        ((3,), torch.randn(3, 4, dtype=D)),
        ((5,), torch.randn(5, 4, dtype=D)),
        ((), torch.randn(4, dtype=D)),
        ((2,), torch.randn(2, 3, 1, 4, dtype=D)),
    ):
        with pytest.raises(
            ValueError, match=r"^base_samples: expected \[\*sample_shape, \*batch, M\]"
        ):
            pb.rsample(shape, base_samples=base)
    z = torch.randn(2, 3, 4, dtype=D)
    torch.testing.assert_close(pb.rsample((2,), base_samples=z), z)
    torch.testing.assert_close(pb.rsample(base_samples=z), z)  # sample shape read from base
    assert pb.rsample(base_samples=z[0]).shape == (3, 4)


def test_interval_level_too_close_to_one_for_the_dtype_names_level():
    post = GaussianPosterior(torch.zeros(3), torch.eye(3))  # float32
    with pytest.raises(
        ValueError, match=r"^level: 0.99999999 is too close to 1 for a torch.float32"
    ):
        post.interval(0.99999999)
    lo, hi = GaussianPosterior(torch.zeros(3, dtype=D), torch.eye(3, dtype=D)).interval(0.99999999)
    assert bool(torch.isfinite(hi).all()) and bool((hi > 5).all())
    assert bool(torch.isfinite(post.interval(0.999)[1]).all())


def test_float32_interval_is_symmetric_at_extreme_levels():
    # the upper probability (1 + level) / 2 was rounded to float32 before the inverse normal
    # CDF: the upper end of interval(0.999999) lay 0.2% further out than the lower one
    post = GaussianPosterior(
        torch.tensor([1.0, -2.0]), DiagLinearOperator(torch.tensor([4.0, 0.25]))
    )
    for level in (0.95, 0.999, 0.9999, 0.99999, 0.999999):
        lo, hi = post.interval(level)
        assert lo.dtype == hi.dtype == torch.float32
        z = float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=torch.float64)))
        want = torch.tensor([2.0, 0.5]) * z
        torch.testing.assert_close(hi - post.mean, want, rtol=1e-6, atol=0)
        torch.testing.assert_close(post.mean - lo, want, rtol=1e-6, atol=0)
    q = post.quantile(torch.tensor([1e-3, 1 - 1e-3], dtype=torch.float64))
    assert q.dtype == torch.float32
    torch.testing.assert_close(q[1] - post.mean, post.mean - q[0], rtol=1e-6, atol=0)


def test_variance_clamps_round_off_negatives_to_zero():
    """A covariance built without validation may carry negative round-off on its diagonal (an
    exact-limit conservation update does): the variance is clamped at 0, not reflected."""
    cov = DiagLinearOperator(torch.tensor([2.0, -1e-15, -0.25], dtype=torch.float64))
    post = GaussianPosterior(torch.zeros(3, dtype=torch.float64), cov, validate=False)
    assert post.variance.tolist() == [2.0, 0.0, 0.0]
    # torch's float64 sqrt is not correctly rounded everywhere (torch 2.13 on one Xeon gives
    # sqrt(2) one ulp below math.sqrt): a relative 1e-15; the clamped entries exactly 0
    assert post.stddev.tolist() == pytest.approx([math.sqrt(2.0), 0.0, 0.0], rel=1e-15, abs=0.0)


def test_symmetry_tolerance_is_one_in_a_million_for_float64():
    """float64: relative asymmetry above 1e-6 is refused (1e-5 is no rounding); float32:
    the tolerance is 1000 eps (about 1.2e-4), so 1e-5 is accepted."""
    base = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    off = base.clone()
    off[0, 1] += 2e-5  # max |C - C^T| / max |C| = 1e-5
    with pytest.raises(ValueError, match="symmetric"):
        GaussianPosterior(torch.zeros(2, dtype=torch.float64), off)
    near = base.clone()
    near[0, 1] += 1e-6  # 5e-7 relative: accepted
    GaussianPosterior(torch.zeros(2, dtype=torch.float64), near)
    GaussianPosterior(torch.zeros(2), off.float())


def test_one_cell_field_covariance_of_the_means_shape_is_accepted():
    # a 1 x 1 field's covariance [1, 1] has the mean's shape: it was refused as a variance
    # passed in place of a covariance
    post = GaussianPosterior(torch.full((1, 1), 0.5, dtype=D), torch.full((1, 1), 4.0, dtype=D))
    assert post.event_shape == (1, 1) and post.variance.item() == 4.0
    ref = torch.distributions.Normal(0.5, 2.0).log_prob(torch.tensor(1.5, dtype=D))
    torch.testing.assert_close(post.log_prob(torch.full((1, 1), 1.5, dtype=D)), ref)
    # variances of the mean's shape are still refused with the hint
    with pytest.raises(ValueError, match="DiagLinearOperator"):
        GaussianPosterior(torch.zeros(2, 2, dtype=D), torch.ones(2, 2, dtype=D))
    with pytest.raises(ValueError, match="DiagLinearOperator"):
        GaussianPosterior(torch.zeros(1, dtype=D), torch.ones(1, dtype=D))


def test_sample_posterior_sample_shape_chains_flag_and_two_draw_minimum():
    gen = torch.Generator().manual_seed(0)
    post = SamplePosterior(torch.randn(2, 5, 4, 3, generator=gen, dtype=D), event_ndim=1)
    assert post.batch_shape == (4,) and post.event_shape == (3,)
    # sample_shape leads the draws as given: () for one draw, (2, 3) kept as two dims
    assert post.sample((), seed=0).shape == (4, 3)
    assert post.sample((2, 3), seed=0).shape == (2, 3, 4, 3)
    assert post.sample(7, seed=0).shape == (7, 4, 3)
    flat = post.draws.reshape(10, 4, 3)
    one = post.sample((), seed=1)
    assert any(torch.equal(one, d) for d in flat)  # a stored draw, resampled as it is
    # chains=False: one chain of S draws, not S chains of one draw
    single = SamplePosterior(flat[:, 0], chains=False)
    assert (single.num_chains, single.num_draws, tuple(single.event_shape)) == (1, 10, (3,))
    torch.testing.assert_close(single.mean, flat[:, 0].mean(0), rtol=0, atol=0)
    with pytest.raises(ValueError, match="need at least two draws"):
        SamplePosterior(torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="need at least two draws"):
        SamplePosterior(torch.zeros(1, 3), chains=False)
    assert SamplePosterior(torch.zeros(2, 1, 3)).num_draws == 1  # two chains of one draw


def test_to_keeps_the_batch_event_split_the_export_name_and_a_root_without_to():
    g = torch.Generator().manual_seed(1)
    sp = SamplePosterior(
        torch.randn(2, 5, 4, 3, generator=g, dtype=D), event_ndim=1, export_name="v"
    )
    moved = sp.to("cpu")
    assert (moved.batch_shape, moved.event_shape, moved.export_name) == ((4,), (3,), "v")
    assert torch.equal(moved.quantile(0.3), sp.quantile(0.3))
    cov = torch.eye(3, dtype=D).expand(2, 3, 3)
    gp = GaussianPosterior(torch.zeros(2, 3, dtype=D), cov, event_shape=(3,), export_name="z")
    gm = gp.to(None)  # None: the CPU
    assert (gm.batch_shape, gm.event_shape, gm.export_name) == ((2,), (3,), "z")
    assert torch.equal(gm.sample((4,), seed=3), gp.sample((4,), seed=3))

    def root(z):  # a plain function: no to(device) method, fine on the same device
        return z[..., :3] * 2.0

    custom = GaussianPosterior(
        torch.zeros(3, dtype=D), 4.0 * torch.eye(3, dtype=D), root=root, root_dim=3
    )
    same = custom.to("cpu")
    assert torch.equal(same.sample((5,), seed=2), custom.sample((5,), seed=2))


def test_draws_and_densities_take_the_posteriors_dtype_whatever_the_inputs():
    g = torch.Generator().manual_seed(2)
    p32 = GaussianPosterior(torch.zeros(3), torch.diag(torch.tensor([1.0, 4.0, 9.0])))
    z = torch.randn(5, 3, generator=g, dtype=torch.float64)
    draws = p32.rsample((5,), base_samples=z)
    assert draws.dtype == torch.float32
    torch.testing.assert_close(draws, (z * torch.tensor([1.0, 2.0, 3.0], dtype=D)).float())
    lp = p32.log_prob(z)  # a float64 value: the density in float32
    assert lp.dtype == torch.float32 and lp.shape == (5,)
    with pytest.raises(ValueError, match=r"base_samples: expected a tensor on cpu .* on meta"):
        p32.rsample((2,), base_samples=torch.zeros(2, 3, device="meta"))


@pytest.mark.parametrize("q", [0.0, 1.0, [0.5, 1.0], -0.1])
def test_a_level_outside_the_open_unit_interval_is_named_as_such(q):
    # not "rounds to 0 or 1 in the posterior's dtype": that message is for levels inside (0, 1)
    post = GaussianPosterior(torch.zeros(2, dtype=D), torch.eye(2, dtype=D))
    for p in (post, SamplePosterior(torch.randn(1, 6, 2, dtype=D))):
        with pytest.raises(ValueError, match=r"^q: expected probabilities strictly inside"):
            p.quantile(q)


def test_interval_levels_are_checked_by_name_and_numpy_sample_sizes_are_taken():
    import numpy as np

    post = GaussianPosterior(torch.zeros(2, dtype=D), torch.eye(2, dtype=D))
    for level in (1.0, 0.0, 1.5):
        with pytest.raises(ValueError, match=r"^level: expected a probability in \(0, 1\)"):
            post.interval(level)
    lo, hi = post.interval(np.float64(0.5))
    torch.testing.assert_close(hi, -lo)
    assert post.sample(np.int64(3), seed=0).shape == (3, 2)
    assert SamplePosterior(torch.randn(1, 4, 2)).sample(np.int32(5), seed=0).shape == (5, 2)


def test_constructor_refusals_name_the_argument_and_what_it_takes():
    with pytest.raises(
        TypeError, match=r"^mean: expected a floating tensor, received dtype torch\.int64$"
    ):
        GaussianPosterior(torch.zeros(3, dtype=torch.int64), torch.eye(3, dtype=D))
    for mean, event in ((torch.zeros(2, 3, dtype=D), (4,)), (torch.zeros(3, dtype=D), (1, 3))):
        with pytest.raises(
            ValueError,
            match=rf"^mean: expected trailing shape \({event[0]},.*\), received "
            rf"{re.escape(str(tuple(mean.shape)))}$",
        ):
            GaussianPosterior(mean, torch.eye(3, dtype=D), event_shape=event)
    with pytest.raises(
        TypeError,
        match=r"^covariance: expected a LinearOperator or a torch\.Tensor, received ndarray$",
    ):
        GaussianPosterior(torch.zeros(2, dtype=D), torch.eye(2, dtype=D).numpy())
    with pytest.raises(ValueError, match=r"^root_dim: required when a custom root is given$"):
        GaussianPosterior(torch.zeros(2, dtype=D), torch.eye(2, dtype=D), root=lambda z: z)
    with pytest.raises(TypeError, match=r"^draws: expected a torch\.Tensor, received list$"):
        SamplePosterior([[0.0, 1.0], [1.0, 2.0]])
    for draws, chains in ((torch.zeros(5, dtype=D), True), (torch.tensor(1.0, dtype=D), False)):
        with pytest.raises(
            ValueError, match=r"^draws: expected shape \[chain, draw, \*event\], received"
        ):
            SamplePosterior(draws, chains=chains)


def test_quantile_and_interval_take_numpy_scalars_and_refuse_ragged_probabilities():
    import numpy as np

    post = GaussianPosterior(torch.zeros(2, dtype=D), torch.eye(2, dtype=D))
    lo, hi = post.interval(np.array(0.9))
    want_lo, want_hi = post.interval(0.9)
    assert torch.equal(lo, want_lo) and torch.equal(hi, want_hi)
    with pytest.raises(
        TypeError, match=r"^q: expected a probability or an array of probabilities, received"
    ):
        post.quantile([[0.1], [0.2, 0.3]])  # no array: rows of two lengths
