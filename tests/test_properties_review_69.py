"""Property tests of the shared algebra that has an exact answer: structured roots of
Kronecker (plus constant diagonal) covariances against their dense matrix at the edges (size-1
and unequal factors, float32, views that are not contiguous), eigen roots of singular matrices,
batched Gaussian densities against ``torch.distributions``, and the sample scores and
quantiles (brute-force CRPS with ties, affine equivariance, quantiles monotone in the level).

Tolerances come from the dtype's epsilon, the size and the conditioning of the matrices drawn
(factor spectra in ``[0.5, 2]``)."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linear_operator.operators import (
    ConstantDiagLinearOperator,
    DenseLinearOperator,
    DiagLinearOperator,
    KroneckerProductAddedDiagLinearOperator,
    KroneckerProductLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

from bayesphys import GaussianPosterior
from bayesphys._linalg import psd_eigen_root
from bayesphys._quantile import draw_quantiles, quantile_of_all
from bayesphys._structured_root import diagonal, structured_root
from bayesphys.metrics import calibration_curve, crps_samples

F64 = torch.float64
DTYPES = st.sampled_from([torch.float32, torch.float64])


def _spd(n: int, g: torch.Generator, lo: float = 0.5, hi: float = 2.0) -> torch.Tensor:
    """A float64 symmetric matrix ``[n, n]`` with eigenvalues drawn in ``[lo, hi]``."""
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    e = lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)
    a = (q * e) @ q.T
    return 0.5 * (a + a.T)


def _tol(dtype: torch.dtype, n: int, cond: float) -> float:
    """Round-off of a factorisation and solve of an ``n x n`` matrix of condition ``cond``."""
    return 50 * n * cond * torch.finfo(dtype).eps


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    added=st.booleans(),
    dtype=DTYPES,
    transposed=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_kronecker_roots_are_those_of_the_dense_matrix(sizes, added, dtype, transposed, seed):
    """For K = K_1 x ... x K_m (+ d I), factors of unequal sizes including 1, in float32 and
    float64, given as transposed (non-contiguous) views: the root's L L^T = K, its solve is
    K^-1 v, its log determinant log|K|, and the structured diagonal diag(K)."""
    g = torch.Generator().manual_seed(seed)
    facs = [_spd(n, g).to(dtype) for n in sizes]
    if transposed:  # the same symmetric matrices as strided views
        facs = [f.mT for f in facs]
    kron = KroneckerProductLinearOperator(*[DenseLinearOperator(f) for f in facs])
    n = math.prod(sizes)
    cov = kron
    if added:
        d = torch.tensor([0.1 + float(torch.rand(1, generator=g))], dtype=dtype)
        cov = KroneckerProductAddedDiagLinearOperator(kron, ConstantDiagLinearOperator(d, n))
    dense = cov.to_dense().to(F64)
    cond = float(torch.linalg.cond(dense))
    tol = _tol(dtype, n, cond)
    root = structured_root(cov)
    l_mat = root.apply(torch.eye(root.base_dim, dtype=dtype)).mT.to(F64)  # columns L e_j
    scale = float(dense.abs().max())
    torch.testing.assert_close(l_mat @ l_mat.mT, dense, rtol=0, atol=tol * scale)
    v = torch.randn(3, n, generator=g, dtype=F64)
    want = torch.linalg.solve(dense, v.mT).mT
    got = root.solve(v.to(dtype)).to(F64)
    torch.testing.assert_close(got, want, rtol=0, atol=tol * float(want.abs().max()))
    logdet = float(root.logdet())
    assert abs(logdet - float(torch.linalg.slogdet(dense)[1])) <= tol * max(n, abs(logdet))
    torch.testing.assert_close(diagonal(cov).to(F64), dense.diagonal(), rtol=0, atol=tol * scale)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 7),
    rank=st.integers(0, 7),
    batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    scale=st.sampled_from([1e-6, 1.0, 1e6]),
    seed=st.integers(0, 10_000),
)
def test_eigen_root_reproduces_a_singular_matrix(n, rank, batch, scale, seed):
    """psd_eigen_root of A = B B^T of any rank (0 to n), batched, at any scale: L L^T = A to
    round-off, and L's columns lie in the range of A (A's null directions stay null: no
    jitter)."""
    g = torch.Generator().manual_seed(seed)
    rank = min(rank, n)
    b = torch.randn(*batch, n, rank, generator=g, dtype=F64) * math.sqrt(scale)
    a = b @ b.mT
    l = psd_eigen_root(a)
    assert l.shape == a.shape
    top = float(a.abs().amax()) if a.numel() else 0.0
    tol = 100 * n * torch.finfo(F64).eps * max(top, torch.finfo(F64).tiny)
    torch.testing.assert_close(l @ l.mT, a, rtol=0, atol=tol)
    if rank < n:  # a direction orthogonal to B's columns is annihilated by L^T
        null = torch.randn(*batch, n, 1, generator=g, dtype=F64)
        if rank:
            q, _ = torch.linalg.qr(b)
            null = null - q @ (q.mT @ null)
        null = null / null.norm(dim=-2, keepdim=True)
        assert float((l.mT @ null).abs().max()) <= math.sqrt(tol) + 1e-300


def _batched_cov(kind: str, batch: tuple[int, ...], n: int, g: torch.Generator):
    d = 0.2 + torch.rand(*batch, n, generator=g, dtype=F64)
    if kind == "diag":
        return DiagLinearOperator(d)
    if kind == "lowrank":
        r = torch.randn(*batch, n, 2, generator=g, dtype=F64)
        return LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(r), DiagLinearOperator(d)
        )
    a = torch.randn(*batch, n, n, generator=g, dtype=F64)
    return DenseLinearOperator(a @ a.mT / n + torch.diag_embed(d))


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(["diag", "lowrank", "dense"]),
    batch=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
    n=st.integers(1, 6),
    lead=st.integers(1, 3),
    dtype=DTYPES,
    seed=st.integers(0, 10_000),
)
def test_batched_log_prob_and_marginals_match_multivariate_normal(
    kind, batch, n, lead, dtype, seed
):
    """A batch of Gaussians [*batch, n] (size 1 included) in either dtype: log_prob of values
    [lead, *batch, n] equals torch.distributions.MultivariateNormal's (float64 reference),
    and the variance and the quantiles are those of the dense covariance's diagonal."""
    g = torch.Generator().manual_seed(seed)
    cov = _batched_cov(kind, batch, n, g)
    dense = cov.to_dense()
    mean = torch.randn(*batch, n, generator=g, dtype=F64)
    cov_t = cov.to(dtype) if kind != "dense" else dense.to(dtype)
    post = GaussianPosterior(mean.to(dtype), cov_t, event_shape=(n,))
    ref = torch.distributions.MultivariateNormal(mean, covariance_matrix=dense)
    x = mean + torch.randn(lead, *batch, n, generator=g, dtype=F64)
    got = post.log_prob(x.to(dtype))
    assert got.shape == (lead, *batch) and got.dtype == dtype
    cond = float(torch.linalg.cond(dense).max())
    tol = _tol(dtype, n, cond) * 10
    want = ref.log_prob(x)
    torch.testing.assert_close(got.to(F64), want, rtol=tol, atol=tol * max(1.0, n))
    assert post.log_prob(x[:0].to(dtype)).shape == (0, *batch)  # no values: no densities
    var = dense.diagonal(dim1=-2, dim2=-1)
    torch.testing.assert_close(post.variance.to(F64), var, rtol=tol, atol=0)
    lo, hi = post.interval(0.9)
    half = 1.6448536269514722 * var.sqrt()
    torch.testing.assert_close(lo.to(F64), mean - half, rtol=tol, atol=tol * float(half.max()))
    torch.testing.assert_close(hi.to(F64), mean + half, rtol=tol, atol=tol * float(half.max()))


@settings(max_examples=40, deadline=None)
@given(
    s=st.integers(1, 9),
    p=st.integers(1, 4),
    levels=st.integers(1, 4),
    fair=st.booleans(),
    a=st.sampled_from([-4.0, -1.0, 0.5, 2.0, 1024.0]),
    c=st.sampled_from([0.0, -3.0, 7.0]),
    seed=st.integers(0, 10_000),
)
def test_crps_samples_is_the_pairwise_form_and_affine_equivariant(s, p, levels, fair, a, c, seed):
    """The sorted-draw CRPS equals the O(S^2) definition E|X-y| - sum_ij |x_i-x_j| / (2 S^2)
    (S(S-1) when fair) for draws with ties (integer values from a few levels), truth on or
    between them; it is invariant to the order of the draws, and CRPS(aX + c, ay + c) =
    |a| CRPS(X, y)."""
    if fair and s < 2:
        s = 2
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, levels, (s, p), generator=g).to(F64)
    y = torch.randint(-1, levels + 1, (p,), generator=g).to(F64) * 0.5
    pair = (x[:, None] - x[None]).abs().sum((0, 1))
    brute = (x - y).abs().mean(0) - pair / (2 * s * ((s - 1) if fair else s))
    got = crps_samples(x, y, fair=fair)
    tol = 1e-12 * max(1.0, levels)
    torch.testing.assert_close(got, brute.mean(), rtol=0, atol=tol)
    perm = torch.randperm(s, generator=g)
    torch.testing.assert_close(crps_samples(x[perm], y, fair=fair), got, rtol=0, atol=tol)
    moved = crps_samples(a * x + c, a * y + c, fair=fair)
    torch.testing.assert_close(moved, abs(a) * got, rtol=0, atol=tol * abs(a) * 10 + 1e-12)
    assert float(got) >= -tol or fair  # the empirical law's CRPS is a proper score's value


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple),
    s=st.integers(1, 12),
    qs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
    dtype=DTYPES,
    ties=st.booleans(),
    permuted=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_draw_quantiles_are_torch_quantile_and_monotone_in_the_level(
    shape, s, qs, dtype, ties, permuted, seed
):
    """draw_quantiles of draws [S, *shape] (ties, one draw, a permuted non-contiguous view)
    equals torch.quantile along dim 0, is non-decreasing in q, lies within the draws' range,
    and scales with a power-of-two factor exactly; quantile_of_all is monotone in q too."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(s, *shape, generator=g, dtype=F64)
    if ties:
        base = base.round()
    draws = base.to(dtype)
    if permuted and len(shape) == 2:  # a [S, b, a] tensor read as [S, a, b] through movedim
        draws = draws.transpose(1, 2).contiguous().transpose(1, 2)
    q = torch.tensor(sorted(qs), dtype=dtype)
    got = draw_quantiles(draws, q)
    want = torch.quantile(draws, q, dim=0)
    assert got.shape == (len(qs), *shape)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert bool((got[1:] >= got[:-1]).all())
    assert bool((got >= draws.amin(0)).all()) and bool((got <= draws.amax(0)).all())
    torch.testing.assert_close(draw_quantiles(4.0 * draws, q), 4.0 * got, rtol=0, atol=0)
    flat = [float(quantile_of_all(draws, float(v))) for v in q]
    assert flat == sorted(flat)


@settings(max_examples=25, deadline=None)
@given(
    s=st.integers(2, 15),
    p=st.integers(1, 20),
    ties=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_calibration_curve_from_draws_is_monotone_and_scale_free(s, p, ties, seed):
    """Central intervals of the same draws are nested in the level, so the observed coverage
    never falls as the nominal level rises (ties and truths on a draw included); scaling draws
    and truths by a power of two (exact in floating point) leaves every coverage unchanged."""
    g = torch.Generator().manual_seed(seed)
    draws = torch.randn(s, p, generator=g, dtype=F64)
    y = torch.randn(p, generator=g, dtype=F64)
    if ties:
        draws, y = draws.round(), y.round()
    levels = (0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)
    nominal, observed = calibration_curve(draws, y, levels)
    assert torch.equal(nominal, torch.tensor(levels, dtype=F64))
    assert bool((observed[1:] >= observed[:-1]).all()), observed
    _, scaled = calibration_curve(8.0 * draws, 8.0 * y, levels)
    assert torch.equal(scaled, observed)
