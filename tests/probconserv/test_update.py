"""Step-2 update: closed form, properties (hypothesis), structure, baselines, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linear_operator.operators import (
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

from bayesphys import GaussianPosterior
from bayesphys.probconserv import (
    conservation_update,
    conserve_slices,
    hard_projection,
    trapezoid_weights,
)

F64 = torch.float64


def _closed_form_prior():
    mu = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    return GaussianPosterior(mu, DiagLinearOperator(torch.tensor([1.0, 2.0, 3.0], dtype=F64)))


def test_closed_form_limit():
    post = conservation_update(_closed_form_prior(), torch.ones(1, 3), torch.tensor([3.0]))
    torch.testing.assert_close(post.mean, torch.tensor([0.5, 1.0, 1.5], dtype=F64))
    expected = torch.tensor(
        [[5 / 6, -1 / 3, -1 / 2], [-1 / 3, 4 / 3, -1.0], [-1 / 2, -1.0, 3 / 2]], dtype=F64
    )
    dense = post.covariance.to_dense()
    torch.testing.assert_close(dense, expected, rtol=0, atol=1e-12)
    assert float((dense @ torch.ones(3, dtype=F64)).abs().max()) < 1e-12
    draws = post.sample((200,), generator=torch.Generator().manual_seed(0))
    assert float((draws.sum(-1) - 3.0).abs().max()) < 1e-12
    # the empirical covariance of the pathwise draws matches Sigma~
    big = post.sample((40000,), generator=torch.Generator().manual_seed(1))
    emp = torch.cov(big.T)
    torch.testing.assert_close(emp, expected, rtol=0, atol=0.05)


def test_hardc_closed_form():
    post = hard_projection(_closed_form_prior(), torch.ones(3), 3.0)
    torch.testing.assert_close(post.mean, torch.tensor([0.0, 1.0, 2.0], dtype=F64))
    torch.testing.assert_close(post.variance, torch.tensor([1.0, 2.0, 3.0], dtype=F64))


@pytest.mark.parametrize("gap", [1e-4, 1e-8, 1e-12])
def test_hardc_meets_nearly_parallel_constraints_to_round_off(gap):
    # solving with G G^T (condition number squared) left a mass defect of 2e-7 at gap 1e-8
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(2, 20, dtype=F64, generator=g)
    prior = GaussianPosterior(
        mu, DiagLinearOperator(torch.ones(2, 20, dtype=F64)), event_shape=(20,)
    )
    rows = torch.randn(2, 20, dtype=F64, generator=g)
    G = torch.stack([rows[0], rows[0] + gap * rows[1]])
    b = torch.tensor([[1.0, 1.0 + 0.3 * gap], [-2.0, -2.0 + 0.5 * gap]], dtype=F64)
    post = hard_projection(prior, G, b)
    defect = (post.mean @ G.mT - b).abs().max()
    assert float(defect) < 1e-13
    # the Euclidean projection: the minimum-norm correction, as a dense least-squares solve
    # (both within the problem's own sensitivity, round-off times the condition number 1/gap)
    for k in range(2):
        step = np.linalg.lstsq(G.numpy(), (G @ mu[k] - b[k]).numpy(), rcond=None)[0]
        want = mu[k].numpy() - step
        np.testing.assert_allclose(post.mean[k].numpy(), want, rtol=0, atol=1e-14 / gap)
    with pytest.raises(ValueError, match="linearly independent constraint rows"):
        hard_projection(prior, torch.stack([rows[0], rows[0] * (1 + 1e-17)]), b)


def _random_prior(n, kind, seed, batch=()):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(*batch, n, dtype=F64, generator=g)
    d = 0.1 + torch.rand(*batch, n, dtype=F64, generator=g)
    if kind == "diag":
        cov = DiagLinearOperator(d)
    elif kind == "lowrank":
        r = torch.randn(*batch, n, 3, dtype=F64, generator=g)
        cov = LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(r), DiagLinearOperator(d)
        )
    else:
        a = torch.randn(*batch, n, n, dtype=F64, generator=g)
        cov = a @ a.mT / n + torch.diag_embed(d)
    return GaussianPosterior(mu, cov, event_shape=(n,))


kinds = st.sampled_from(["diag", "lowrank", "dense"])


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 40),
    m=st.integers(1, 2),
    kind=kinds,
    seed=st.integers(0, 10_000),
    scale=st.floats(1e-3, 1e3),
)
def test_limit_properties(n, m, kind, seed, scale):
    prior = _random_prior(n, kind, seed, batch=(2,))
    g = torch.Generator().manual_seed(seed + 1)
    G = scale * torch.rand(m, n, dtype=F64, generator=g)
    b = torch.randn(2, m, dtype=F64, generator=g)
    post = conservation_update(prior, G, b)
    resid = (G @ post.mean.unsqueeze(-1)).squeeze(-1) - b
    assert float(resid.abs().max()) <= 1e-10 * max(1.0, float(b.abs().max()))
    dense = post.covariance.to_dense()
    sgt = dense @ G.mT
    assert float(sgt.abs().max()) <= 1e-9 * float(dense.abs().max()) * max(1.0, scale)
    draws = post.sample((50,), generator=torch.Generator().manual_seed(seed))
    dres = (draws @ G.mT) - b
    assert float(dres.abs().max()) <= 1e-9 * max(1.0, float(draws.abs().max()) * scale * n)
    # the update never increases a marginal variance
    assert bool((post.variance <= prior.variance + 1e-12).all())


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 30), kind=kinds, seed=st.integers(0, 10_000))
def test_sigma_to_infinity_returns_prior(n, kind, seed):
    prior = _random_prior(n, kind, seed)
    G = torch.rand(1, n, dtype=F64, generator=torch.Generator().manual_seed(seed))
    far = conservation_update(prior, G, 1.0, sigma_g=1e8, relative=True)
    torch.testing.assert_close(far.mean, prior.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(far.variance, prior.variance, rtol=0, atol=1e-12)
    inf = conservation_update(prior, G, 1.0, sigma_g=math.inf)
    torch.testing.assert_close(inf.mean, prior.mean)


def test_finite_sigma_relative_scale():
    prior = _random_prior(20, "diag", 3)
    G = torch.rand(1, 20, dtype=F64)
    defect0 = float(G @ prior.mean - 2.0)
    for rel in (1.0, 0.1):
        frac = rel**2 / (1 + rel**2)
        post = conservation_update(prior, G, 2.0, sigma_g=rel, relative=True)
        defect = float(G @ post.mean - 2.0)
        assert defect == pytest.approx(frac * defect0, rel=1e-8)
    # the finite-sigma posterior equals brute-force dense conditioning
    post = conservation_update(prior, G, 2.0, sigma_g=0.3)
    s = prior.covariance.to_dense()
    k = s @ G.mT / (G @ s @ G.mT + 0.09)
    torch.testing.assert_close(
        post.mean, prior.mean - (k @ (G @ prior.mean - 2.0)), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(post.covariance.to_dense(), s - k @ G @ s, rtol=0, atol=1e-12)
    emp = torch.cov(post.sample((40000,), generator=torch.Generator().manual_seed(0)).T)
    torch.testing.assert_close(emp, s - k @ G @ s, rtol=0, atol=0.05)


@pytest.mark.parametrize("kind", ["diag", "lowrank", "dense"])
def test_structures_agree(kind):
    prior = _random_prior(15, kind, 11)
    dense_prior = GaussianPosterior(prior.mean, prior.covariance.to_dense())
    G = torch.rand(2, 15, dtype=F64)
    b = torch.tensor([0.3, -0.2], dtype=F64)
    a, c = conservation_update(prior, G, b), conservation_update(dense_prior, G, b)
    torch.testing.assert_close(a.mean, c.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.covariance.to_dense(), c.covariance.to_dense(), rtol=0, atol=1e-12)


def test_trapezoid_nonuniform_and_slices():
    x = torch.tensor([0.0, 0.1, 0.4, 0.5, 1.0], dtype=F64)
    g = trapezoid_weights(x)
    u = x**2 + 1
    assert float(g @ u) == pytest.approx(float(torch.trapezoid(u, x)), rel=1e-14)
    assert float(trapezoid_weights(x, "rhs")[0]) == 0.0
    # batch of (functions=2, times=3) slices updated in one call
    mu = torch.rand(2, 3, 5, dtype=F64)
    prior = GaussianPosterior(
        mu, DiagLinearOperator(0.1 + torch.rand(2, 3, 5, dtype=F64)), event_shape=(5,)
    )
    mass = torch.rand(2, 3, dtype=F64)
    post = conserve_slices(prior, x, mass)
    torch.testing.assert_close(post.mean @ g, mass, rtol=0, atol=1e-12)
    assert post.sample((4,)).shape == (4, 2, 3, 5)
    hard = conserve_slices(prior, x, mass, method="hardc")
    torch.testing.assert_close(hard.mean @ g, mass, rtol=0, atol=1e-12)


def test_float32_prior_returns_float64():
    prior = GaussianPosterior(torch.ones(4), DiagLinearOperator(torch.ones(4)))
    post = conservation_update(prior, torch.ones(4), 1.0)
    assert post.dtype == F64
    assert float((post.mean.sum() - 1.0).abs()) < 1e-14


def test_float32_prior_with_custom_root_samples():
    """A float32 prior with its own sampler (``root=``): the float64 update, the HardC mean and
    sigma_g = inf all draw (they used to fail with a float32/float64 matmul)."""
    n = 6
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    cov = a @ a.T + n * torch.eye(n)
    chol = torch.linalg.cholesky(cov)
    prior = GaussianPosterior(torch.zeros(n), cov, root=lambda z: z @ chol.T, root_dim=n)
    g = torch.full((n,), 0.5)
    for post in (
        conservation_update(prior, g, 1.0),
        conservation_update(prior, g, 1.0, sigma_g=0.1),
        conservation_update(prior, g, 1.0, sigma_g=math.inf),
        hard_projection(prior, g, 1.0),
    ):
        draws = post.sample((3,), generator=torch.Generator().manual_seed(1))
        assert draws.shape == (3, n) and draws.dtype == F64
    exact = conservation_update(prior, g, 1.0).sample((50,))
    assert float((exact @ g.double() - 1.0).abs().max()) < 1e-12


def test_bad_input():
    prior = _closed_form_prior()
    with pytest.raises(ValueError, match="G: expected last dimension 3"):
        conservation_update(prior, torch.ones(1, 4), 3.0)
    with pytest.raises(ValueError, match="singular"):
        p0 = GaussianPosterior(
            torch.zeros(3, dtype=F64), DiagLinearOperator(torch.tensor([1.0, 0, 0], dtype=F64))
        )
        conservation_update(p0, torch.tensor([[0.0, 1.0, 1.0]]), 1.0)
    with pytest.raises(ValueError, match="b: expected finite"):
        conservation_update(prior, torch.ones(1, 3), float("nan"))
    with pytest.raises(ValueError, match="G: expected finite"):
        conservation_update(prior, torch.tensor([[1.0, float("nan"), 1.0]]), 1.0)
    with pytest.raises(ValueError, match="sigma_g"):
        conservation_update(prior, torch.ones(1, 3), 1.0, sigma_g=-1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        trapezoid_weights(torch.tensor([0.0, 0.2, 0.1]))
    with pytest.raises(ValueError, match="x: expected 3 grid points"):
        conserve_slices(prior, torch.linspace(0, 1, 4), torch.tensor(1.0))
    with pytest.raises(TypeError, match="prior"):
        conservation_update(torch.zeros(3), torch.ones(1, 3), 1.0)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(3, 40), seed=st.integers(0, 10_000))
def test_nonnegative_projection_keeps_mass(n, seed):
    from bayesphys.probconserv import project_nonnegative

    g = torch.Generator().manual_seed(seed)
    x = torch.cat(
        [torch.zeros(1, dtype=F64), torch.rand(n - 1, dtype=F64, generator=g).sort().values + 0.01]
    )
    w = trapezoid_weights(x.cumsum(0))
    draws = torch.randn(30, n, dtype=F64, generator=g)
    b = torch.rand(30, dtype=F64, generator=g)
    u = project_nonnegative(draws, w, b)
    assert bool((u >= 0).all())
    torch.testing.assert_close(u @ w, b, rtol=1e-12, atol=1e-12)
    # already feasible draws are unchanged
    feas = torch.rand(5, n, dtype=F64, generator=g) + 0.1
    torch.testing.assert_close(project_nonnegative(feas, w, feas @ w), feas, rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(3, 40),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([0.01, 1.0, 100.0]),
    level=st.sampled_from([-1.0, 0.0, 0.5, 3.0]),
)
def test_nonnegative_projection_is_the_euclidean_projection(n, seed, scale, level):
    """KKT of min |u - v|^2 s.t. u >= 0, g.u = b: u = max(v - lam g, 0) for ONE lam, i.e.
    (v_i - u_i) / g_i = lam where u_i > 0 and v_i / g_i <= lam where u_i = 0; masses both far
    above and below the draws' own (a draw whose mass is below b used to end at the bracket's
    end, rescaled: feasible but not the projection)."""
    from bayesphys.probconserv import project_nonnegative

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dtype=F64, generator=g).sort().values.cumsum(0)
    w = trapezoid_weights(x)
    draws = level + torch.randn(20, n, dtype=F64, generator=g)
    b = scale * torch.rand(20, dtype=F64, generator=g) * w.sum()
    u = project_nonnegative(draws, w, b)
    assert bool((u >= 0).all())
    torch.testing.assert_close(u @ w, b, rtol=1e-10, atol=1e-12)
    lam = (draws - u) / w
    pos = u > 1e-12 * (1 + u.abs().amax(-1, keepdim=True))
    lam_star = torch.where(pos, lam, torch.nan).nanmean(-1, keepdim=True)
    tol = 1e-7 * (1 + lam_star.abs())
    assert bool(((lam - lam_star).abs()[pos] <= tol.expand_as(lam)[pos]).all())
    assert bool(((draws / w)[~pos] <= (lam_star + tol).expand_as(lam)[~pos]).all())


def test_nonnegative_projection_below_the_draws_mass_reviewer_case():
    from bayesphys.probconserv import project_nonnegative

    x = torch.linspace(0, 1, 11, dtype=F64)
    w = trapezoid_weights(x)
    v = torch.full((11,), 0.5, dtype=F64)
    v[3] = -0.2
    u = project_nonnegative(v, w, torch.tensor(5.0, dtype=F64))
    exact = v + (5 - w @ v) * w / (w @ w)  # the affine projection; all of it is >= 0 here
    assert bool((exact >= 0).all())
    torch.testing.assert_close(u, exact, rtol=1e-9, atol=1e-10)


def test_nonnegative_posterior_from_update():
    from bayesphys.probconserv import nonnegative_posterior

    x = torch.linspace(0, 1, 21, dtype=F64)
    mu = torch.relu(0.5 - x) - 0.02
    prior = GaussianPosterior(mu, DiagLinearOperator(torch.full_like(mu, 1e-3)))
    post = conserve_slices(prior, x, torch.tensor(0.125, dtype=F64))
    nn = nonnegative_posterior(post, x, torch.tensor(0.125, dtype=F64), 200, seed=0)
    draws = nn.draws.reshape(-1, 21)
    assert bool((draws >= 0).all())
    torch.testing.assert_close(draws @ trapezoid_weights(x), torch.full((200,), 0.125, dtype=F64))
    with pytest.raises(ValueError, match="b: expected a non-negative"):
        from bayesphys.probconserv import project_nonnegative

        project_nonnegative(draws, trapezoid_weights(x), -1.0)


def test_update_errors_name_their_cause():
    """A NaN prior variance read "not positive definite"; a relative sigma_g on a prior with
    no variance in the constrained direction read "use a finite sigma_g" although it was
    finite; an exact row mixed with noisy ones skipped the singularity check."""
    from bayesphys.posterior import GaussianPosterior
    from bayesphys.probconserv import conservation_update

    g = torch.ones(1, 4, dtype=torch.float64)
    mean = torch.zeros(4, dtype=torch.float64)
    nan_var = torch.tensor([1.0, float("nan"), 1.0, 1.0], dtype=torch.float64)
    p = GaussianPosterior(mean, torch.diag(nan_var), validate=False)
    with pytest.raises(ValueError, match="G Sigma G\\^T: non-finite entries"):
        conservation_update(p, g, 1.0, 0.1)
    zero = GaussianPosterior(mean, torch.zeros(4, 4, dtype=torch.float64), validate=False)
    with pytest.raises(ValueError, match="relative sigma_g is in units of sqrt"):
        conservation_update(zero, g, 1.0, 0.1, relative=True)
    with pytest.raises(ValueError, match="use a finite sigma_g"):
        conservation_update(zero, g, 1.0, 0.0)
    # two constraints, one exact and one noisy: the exact row sees no prior variance
    g2 = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    var = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    p2 = GaussianPosterior(mean, torch.diag(var), validate=False)
    sig = torch.tensor([0.0, 0.5], dtype=torch.float64)
    with pytest.raises(ValueError, match="singular in the limit"):
        conservation_update(p2, g2, torch.tensor([1.0, 1.0], dtype=torch.float64), sig)


def test_an_exact_row_beside_a_very_noisy_one_is_judged_on_its_own():
    """The singularity check of exact rows ran on the whole G Sigma G^T + diag(sigma_g^2): a
    large but finite sigma_g on another row inflated its largest eigenvalue and a well
    conditioned exact row was refused as "singular"."""
    from bayesphys.posterior import GaussianPosterior
    from bayesphys.probconserv import conservation_update

    g = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    p = GaussianPosterior(torch.zeros(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
    b = torch.tensor([1.0, 1.0], dtype=torch.float64)
    for s2 in (1e3, 1e7, 1e8):
        post = conservation_update(p, g, b, torch.tensor([0.0, s2], dtype=torch.float64))
        gm = g @ post.mean
        assert abs(float(gm[0]) - 1.0) < 1e-12  # the exact row holds
        assert 0.0 < float(gm[1]) < 1e-5  # the noisy row barely moves the prior mean 0


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(3, 20),
    kind=kinds,
    m=st.integers(1, 2),
    sigma_g=st.sampled_from([0.0, 0.05, 0.3, 2.0]),
    seed=st.integers(0, 10_000),
)
def test_the_updated_draws_have_exactly_the_updated_covariance(n, kind, m, sigma_g, seed):
    """The sampling root L of the updated posterior gives L L^T = Sigma_tilde to round-off,
    the constraint noise included (dropping sigma_G * eps from the draws passed the 40k-draw
    empirical check above, whose tolerance is 10x that term)."""
    prior = _random_prior(n, kind, seed)
    g = torch.Generator().manual_seed(seed + 1)
    G = torch.rand(m, n, dtype=F64, generator=g)
    post = conservation_update(prior, G, torch.zeros(m, dtype=F64), sigma_g=sigma_g)
    k = post._base_dim()
    draws = post.rsample(base_samples=torch.eye(k, dtype=F64)) - post.mean  # rows: L e_j
    torch.testing.assert_close(draws.mT @ draws, post.covariance.to_dense(), rtol=1e-9, atol=1e-11)


def test_relative_infinite_sigma_returns_the_prior_without_variance_in_the_constraint():
    """sigma_g = inf means no update, also with ``relative=True`` where the prior has no
    variance in the constrained direction: inf * sqrt(0) was NaN and the call failed with
    "not positive definite"."""
    var = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    prior = GaussianPosterior(torch.tensor([0.5, 1.0, 2.0], dtype=F64), DiagLinearOperator(var))
    G = torch.tensor([[0.0, 1.0, 1.0]], dtype=F64)
    post = conservation_update(prior, G, 1.0, math.inf, relative=True)
    torch.testing.assert_close(post.mean, prior.mean, rtol=0, atol=0)
    torch.testing.assert_close(post.variance, var, rtol=0, atol=0)
    # one row without prior variance beside one with it, both infinite: the prior again
    G2 = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=F64)
    post = conservation_update(
        prior, G2, torch.tensor([1.0, 2.0], dtype=F64), math.inf, relative=True
    )
    torch.testing.assert_close(post.mean, prior.mean, rtol=0, atol=0)


@pytest.mark.parametrize("project", [conservation_update, hard_projection])
def test_b_broadcasts_like_sigma_g(project):
    """``b [*batch, 1]`` broadcasts over the ``m`` rows as documented (and as ``sigma_g`` of
    that shape does); it was refused as not broadcastable when ``m > 1``."""
    batch, n = 3, 5
    g = torch.Generator().manual_seed(0)
    prior = GaussianPosterior(
        torch.randn(batch, n, dtype=F64, generator=g),
        DiagLinearOperator(0.5 + torch.rand(batch, n, dtype=F64, generator=g)),
        event_shape=(n,),
    )
    G = torch.rand(2, n, dtype=F64, generator=g)
    per_entry = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    full = per_entry[:, None].expand(batch, 2)
    want = project(prior, G, full)
    for b in (per_entry[:, None], per_entry):  # [*batch, 1] and the [*batch] shorthand
        got = project(prior, G, b)
        torch.testing.assert_close(got.mean, want.mean, rtol=0, atol=0)
    torch.testing.assert_close(want.mean @ G.mT, full, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"b: expected shape \(3, 2\)"):
        project(prior, G, torch.ones(4, 1, dtype=F64))


def test_a_huge_finite_sigma_g_draws_the_prior():
    """A finite sigma_g so large that sigma_g * xi overflows gives the prior's draws: the
    noise term reached 0 * inf and NaN draws."""
    prior = _random_prior(4, "diag", 0, batch=(3,))
    G = torch.ones(1, 4, dtype=F64)
    for s in (1e200, 1e308, 1.7e308):
        post = conservation_update(prior, G, 1.0, s)
        z = torch.randn(
            500, 3, post._base_dim(), dtype=F64, generator=torch.Generator().manual_seed(0)
        )
        draws = post.rsample(base_samples=z)
        want = prior.rsample(base_samples=z[..., :4])
        torch.testing.assert_close(draws, want, rtol=0, atol=0)


@pytest.mark.parametrize("b", [1e-17, 1e-30, 1e-3])
def test_nonnegative_projection_of_a_mass_below_the_draws_round_off(b):
    """A mass ``b > 0`` far below the draws' scale: the projection is ``t g_i`` on the largest
    ``v_i / g_i`` (here a tie of two entries) with ``t = b / sum g_i^2`` there. The bisection
    cannot resolve ``lam`` that finely and returned ``u = 0``, of mass 0, not ``b``."""
    from bayesphys.probconserv import project_nonnegative

    v = torch.tensor([0.5, -0.2, 1.0, 0.3], dtype=F64)
    g = torch.tensor([0.25, 0.5, 0.5, 0.25], dtype=F64)  # v / g = 2, -0.4, 2, 1.2
    t = b / (0.25**2 + 0.5**2)
    want = torch.tensor([0.25 * t, 0.0, 0.5 * t, 0.0], dtype=F64)
    u = project_nonnegative(v.expand(3, 4), g, torch.tensor(b, dtype=F64))
    torch.testing.assert_close(u, want.expand(3, 4), rtol=1e-12, atol=0)
    torch.testing.assert_close(u @ g, torch.full((3,), b, dtype=F64), rtol=1e-14, atol=0)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(3, 12),
    m=st.integers(1, 3),
    kind=kinds,
    batched_g=st.booleans(),
    sigmas=st.lists(st.sampled_from([0.0, 0.01, 0.5, 3.0]), min_size=3, max_size=3),
    seed=st.integers(0, 10_000),
)
def test_update_equals_dense_conditioning(n, m, kind, batched_g, sigmas, seed):
    """Mean and covariance against the dense float64 formulas, entry by entry of a batch of
    2, with a per-batch G and per-row sigma_g (exact rows beside noisy ones):
    S = G Sigma G^T + diag(sigma^2), K = Sigma G^T S^-1, mu - K (G mu - b), Sigma - K G Sigma."""
    import numpy as np

    prior = _random_prior(n, kind, seed, batch=(2,))
    g = torch.Generator().manual_seed(seed + 1)
    G = 0.5 + torch.rand(*((2,) if batched_g else ()), m, n, dtype=F64, generator=g)
    b = torch.randn(2, m, dtype=F64, generator=g)
    sig = torch.tensor(sigmas[:m], dtype=F64)
    post = conservation_update(prior, G, b, sig)
    cov = prior.covariance.to_dense().numpy()
    mu, Gs = prior.mean.numpy(), G.expand(2, m, n).numpy()
    for i in range(2):
        s = Gs[i] @ cov[i] @ Gs[i].T + np.diag(sig.numpy() ** 2)
        k = np.linalg.solve(s, Gs[i] @ cov[i]).T
        mean = mu[i] - k @ (Gs[i] @ mu[i] - b[i].numpy())
        np.testing.assert_allclose(post.mean[i].numpy(), mean, rtol=0, atol=1e-10)
        dense = post.covariance.to_dense()[i].numpy()
        np.testing.assert_allclose(dense, cov[i] - k @ Gs[i] @ cov[i], rtol=0, atol=1e-10)


def test_a_repeated_grid_point_is_refused():
    """The composite trapezoid rule needs a strictly increasing grid: a repeated point (a zero
    spacing) is no grid, and its weights would count that point's cell twice or not at all."""
    with pytest.raises(ValueError, match="strictly increasing"):
        trapezoid_weights(torch.tensor([0.0, 0.5, 0.5, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="strictly increasing"):
        trapezoid_weights(torch.tensor([0.0, 0.0, 1.0], dtype=F64), "rhs")


def test_a_grid_out_of_order_is_named_where_it_fails():
    """The refusal said only "expected a strictly increasing grid": it now names the first
    pair out of order (with its batch row for a batch of grids)."""
    with pytest.raises(ValueError, match=r"received x\[1\] = 0.5 then x\[2\] = 0.25"):
        trapezoid_weights(torch.tensor([0.0, 0.5, 0.25, 1.0], dtype=F64))
    grids = torch.tensor([[0.0, 0.5, 1.0], [0.0, 1.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match=r"received x\[1, 1\] = 1 then x\[1, 2\] = 1"):
        trapezoid_weights(grids)


@pytest.mark.parametrize("gap", [1e-3, 1e-5])
def test_the_limit_mean_meets_ill_conditioned_constraints_to_round_off(gap):
    """Two rows ``gap`` apart make G Sigma G^T ill conditioned (ratio ~gap^2); one Kalman step
    leaves a defect of round-off times the condition number (3e-10 at gap 1e-3, 2e-8 at 1e-5
    for a mean of size 100); the refined mean meets G mu~ = b to round-off."""
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        mu = 100 * torch.randn(30, dtype=F64, generator=g)
        var = 0.1 + torch.rand(30, dtype=F64, generator=g)
        prior = GaussianPosterior(mu, DiagLinearOperator(var))
        rows = torch.randn(2, 30, dtype=F64, generator=g)
        G = torch.stack([rows[0], rows[0] + gap * rows[1]])
        b = torch.tensor([1.0, 1.0 + 0.3 * gap], dtype=F64)
        post = conservation_update(prior, G, b, rcond=0.0)
        assert float((G @ post.mean - b).abs().max()) < 2e-12


def test_an_exact_row_with_a_parallel_noisy_row_is_the_exact_condition_alone():
    """Mixed sigma_g: only the exact rows' block of G Sigma G^T must be non-singular. A noisy
    row parallel to an exact one makes the whole matrix singular, yet the update is well
    defined: once G_0 u = b_0 holds exactly, a noisy reading of the same mass tells nothing
    more, so the result is conditioning on the exact row alone (dense formula)."""
    g = torch.Generator().manual_seed(3)
    n = 6
    a = torch.randn(n, n, dtype=F64, generator=g)
    cov = a @ a.T + 0.5 * torch.eye(n, dtype=F64)
    mu = torch.randn(n, dtype=F64, generator=g)
    row = 0.5 + torch.rand(n, dtype=F64, generator=g)
    G = torch.stack([row, row])
    b = torch.tensor([1.0, 1.7], dtype=F64)
    post = conservation_update(
        GaussianPosterior(mu, cov), G, b, torch.tensor([0.0, 0.5], dtype=F64)
    )
    k = cov @ row / (row @ cov @ row)  # gain of the exact row alone
    torch.testing.assert_close(post.mean, mu - k * (row @ mu - 1.0), rtol=0, atol=1e-12)
    want = cov - torch.outer(k, row @ cov)
    torch.testing.assert_close(post.covariance.to_dense(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [5, 51, 201])
def test_a_prior_already_conditioned_on_the_row_is_refused_whatever_its_round_off(n):
    """One exact row on a prior with no variance in its direction: g^T Sigma g is round-off,
    and one row was refused only when that round-off was <= 0 (n = 5, 51 here); when it was
    positive (n = 201) the update went through with a gain of round-off over round-off and a
    mass defect spread by it. It is refused in every case, against the row's variance
    without correlations; a well-conditioned dense prior is still updated."""
    from linear_operator import to_linear_operator

    from bayesphys.posterior import GaussianPosterior
    from bayesphys.probconserv import conservation_update, trapezoid_weights

    g = trapezoid_weights(torch.linspace(0, 1, n, dtype=F64))
    a = torch.randn(n, n, dtype=F64, generator=torch.Generator().manual_seed(0))
    prior = GaussianPosterior(torch.zeros(n, dtype=F64), to_linear_operator(a @ a.T / n))
    once = conservation_update(prior, g, 1.0)
    assert abs(float(once.mean @ g) - 1.0) < 1e-12
    cov = once.covariance.to_dense()
    again = GaussianPosterior(once.mean, 0.5 * (cov + cov.T), validate=False)
    for b in (1.0, 2.0):
        with pytest.raises(ValueError, match="singular in the limit"):
            conservation_update(again, g, b)
    # a finite sigma_g is still a valid (uninformative) update
    post = conservation_update(again, g, 2.0, 0.1)
    assert float(post.mean @ g) == pytest.approx(1.0, abs=1e-10)


def test_grid_mass_of_a_backward_or_single_point_window():
    """A window running backwards (``x[0] > x[-1]``) integrates downwards, minus the forward
    window's mass; a window of zero width holds none (the problem refuses either as its
    domain, so they are not built as one)."""
    from types import SimpleNamespace

    from bayesphys.probconserv._predict import grid_mass
    from bayesphys.problems.gpme import Diffusion

    f64 = torch.float64
    model = SimpleNamespace(problem=Diffusion(), device="cpu", mass=lambda c, t: None)
    ctx = SimpleNamespace(params=torch.tensor([1.0, 3.0], dtype=f64))
    tt = torch.tensor([0.1, 0.5], dtype=f64)
    fwd = grid_mass(model, ctx, tt, torch.tensor([0.5, 1.0, 2.0], dtype=f64))
    want = Diffusion(x_range=(0.5, 2.0)).mass(tt[None, :], ctx.params[:, None])
    torch.testing.assert_close(fwd, want, rtol=1e-12, atol=0)
    back = grid_mass(model, ctx, tt, torch.tensor([2.0, 1.0, 0.5], dtype=f64))
    torch.testing.assert_close(back, -want, rtol=1e-12, atol=0)
    flat = grid_mass(model, ctx, tt, torch.tensor([1.0, 1.0], dtype=f64))
    assert torch.equal(flat, torch.zeros(2, 2, dtype=f64))


def test_trapezoid_weights_need_two_points_and_a_known_rule():
    with pytest.raises(
        ValueError, match=r"^x: expected a grid with at least 2 points, received shape \(1,\)$"
    ):
        trapezoid_weights(torch.zeros(1))
    with pytest.raises(ValueError, match=r"^rule: expected 'trapezoid' or 'rhs', received 'mid'$"):
        trapezoid_weights(torch.linspace(0, 1, 3), rule="mid")
    x = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    assert trapezoid_weights(x, rule="rhs").tolist() == [0.0, 0.5, 1.5]


def test_update_refuses_batched_rows_noise_and_priors_it_cannot_use():
    gen = torch.Generator().manual_seed(0)
    prior = GaussianPosterior(
        torch.zeros(3, 4, dtype=F64),
        DiagLinearOperator(torch.ones(3, 4, dtype=F64)),
        event_shape=(4,),
    )
    g = torch.ones(4, dtype=F64)
    with pytest.raises(ValueError, match=r"^G: expected shape \[m, 4\] or \[\*batch, m, 4\] with"):
        conservation_update(prior, g.expand(5, 1, 4), 1.0)  # a batch of 5 rows for 3 entries
    with pytest.raises(
        ValueError, match=r"^sigma_g: mixing infinite and finite values is not supported$"
    ):
        conservation_update(prior, g, 1.0, torch.tensor([0.1, math.inf, 0.1], dtype=F64)[:, None])
    a = torch.randn(4, 4, generator=gen, dtype=F64)
    indefinite = GaussianPosterior(
        torch.zeros(4, dtype=F64), -(a @ a.T) - torch.eye(4, dtype=F64), validate=False
    )
    with pytest.raises(ValueError, match=r"^G Sigma G\^T \+ sigma_g\^2 I: not positive definite$"):
        conservation_update(indefinite, g, 1.0, 0.1)
    with pytest.raises(
        ValueError,
        match=r"^G: expected linearly independent constraint rows \(G G\^T is singular\)",
    ):
        hard_projection(prior, torch.zeros(4, dtype=F64), 1.0)  # a zero row: G G^T = 0
    field = GaussianPosterior(torch.zeros(2, 3, dtype=F64), torch.eye(6, dtype=F64))
    with pytest.raises(
        ValueError, match=r"^prior: expected event shape \(nx,\), received \(2, 3\)$"
    ):
        conserve_slices(field, torch.linspace(0, 1, 3, dtype=F64), torch.zeros(()))


def test_sigma_g_of_any_real_dtype_is_taken_and_a_complex_one_refused():
    """An int8 / int16 / uint8 sigma_g tensor was refused as "expected real values"; integer
    tensors of every width are real values (int32 / int64 were taken)."""
    prior = _closed_form_prior()
    g = torch.ones(3, dtype=F64)
    want = conservation_update(prior, g, 6.0, torch.tensor(1.0, dtype=F64))
    for dtype in (torch.int8, torch.int16, torch.uint8, torch.int32, torch.float16):
        got = conservation_update(prior, g, 6.0, torch.tensor(1, dtype=dtype))
        assert torch.equal(got.mean, want.mean) and torch.equal(got.variance, want.variance)
    with pytest.raises(
        TypeError, match=r"^sigma_g: expected real values, received dtype torch\.complex64$"
    ):
        conservation_update(prior, g, 6.0, torch.tensor(1 + 0j))
