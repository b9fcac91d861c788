"""The shared linear algebra: conjugate gradients, Kronecker products, least squares."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys._linalg import (
    _lstsq_qr_gelsd,
    kron_matvec,
    lstsq_any_rank,
    pcg,
    psd_cholesky,
)
from bayesphys._structured_root import diagonal

F64 = torch.float64


def _spd(n: int, seed: int, cond: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return (
        q
        @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=F64))
        @ q.T
    )


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 30), k=st.integers(1, 4), seed=st.integers(0, 10_000), jacobi=st.booleans())
def test_pcg_matches_the_dense_solve(n, k, seed, jacobi):
    a = _spd(n, seed, 1e3)
    b = torch.randn(n, k, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    pre = (lambda r: r / a.diagonal()[:, None]) if jacobi else None
    x, it, rel = pcg(lambda v: a @ v, b, precond=pre, tol=1e-12, maxiter=10 * n, columns=True)
    assert rel <= 1e-12 and it <= 10 * n
    assert torch.allclose(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)
    # one system of any shape: the same answer as the flat solve
    xs, _, _ = pcg(
        lambda v: (a @ v.reshape(-1)).reshape(v.shape),
        b[:, 0].reshape(n, 1, 1),
        tol=1e-12,
        maxiter=10 * n,
    )
    assert torch.allclose(xs.reshape(-1), x[:, 0], rtol=1e-8, atol=1e-10)


def test_pcg_exact_preconditioner_takes_one_step_and_zero_rhs_none():
    a = _spd(12, 0, 50.0)
    b = torch.arange(12, dtype=F64)
    x, it, rel = pcg(lambda v: a @ v, b, precond=lambda r: torch.linalg.solve(a, r), tol=1e-12)
    assert it == 1 and torch.allclose(a @ x, b)
    x0, it0, rel0 = pcg(lambda v: a @ v, torch.zeros(12, dtype=F64))
    assert it0 == 0 and rel0 == 0.0 and x0.abs().max() == 0


def test_pcg_stops_on_negative_curvature_and_caps_iterations():
    a = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=F64))
    _, it, rel = pcg(lambda v: a @ v, torch.ones(3, dtype=F64), maxiter=50)
    assert it < 3 and rel > 1e-3  # stopped, not converged to a wrong "solution"
    a = _spd(40, 3, 1e6)
    _, it, rel = pcg(lambda v: a @ v, torch.ones(40, dtype=F64), tol=1e-14, maxiter=5)
    assert it == 5 and rel > 1e-14


def test_pcg_warm_start():
    a = _spd(10, 5, 10.0)
    b = torch.ones(10, dtype=F64)
    xs = torch.linalg.solve(a, b)
    x, it, _ = pcg(lambda v: a @ v, b, x0=xs, tol=1e-10)
    assert it == 0 and torch.equal(x, xs)


@pytest.mark.parametrize("columns", [False, True])
def test_pcg_columns_flag_changes_only_the_reduction(columns):
    a = _spd(6, 9, 5.0)
    b = torch.randn(6, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    x, _, rel = pcg(lambda v: a @ v, b, tol=1e-12, maxiter=60, columns=columns)
    assert rel <= 1e-12 and torch.allclose(a @ x, b, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pcg_zero_rhs_and_zero_column_in_any_float_dtype(dtype):
    a = torch.diag(torch.arange(1.0, 6.0, dtype=dtype))
    x, it, rel = pcg(lambda v: a @ v, torch.zeros(5, dtype=dtype), maxiter=50)
    assert it == 0 and rel == 0.0 and x.abs().max() == 0
    b = torch.stack([torch.ones(5, dtype=dtype), torch.zeros(5, dtype=dtype)], 1)
    x, it, rel = pcg(lambda v: a @ v, b, columns=True, tol=1e-5, maxiter=50)
    assert rel <= 1e-5 and it <= 5  # converged, not NaN after maxiter
    assert torch.allclose(a @ x, b, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_psd_cholesky_accepts_the_zero_matrix(dtype):
    l = psd_cholesky(torch.zeros(3, 3, dtype=dtype))
    assert bool(torch.isfinite(l).all()) and float((l @ l.mT).abs().max()) < 1e-30


def test_structured_diagonal_of_a_batched_kronecker_operator():
    from linear_operator import to_dense
    from linear_operator.operators import DenseLinearOperator, KroneckerProductLinearOperator

    g = torch.Generator().manual_seed(0)
    fs = []
    for n in (3, 4, 2):
        m = torch.randn(2, n, n, generator=g, dtype=F64)
        fs.append(DenseLinearOperator(m @ m.mT + n * torch.eye(n, dtype=F64)))
    cov = KroneckerProductLinearOperator(*fs)
    ref = to_dense(cov).diagonal(dim1=-2, dim2=-1)
    got = diagonal(cov)
    assert got.shape == ref.shape == (2, 24)
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("kind", ["dense", "lowrank"])
def test_roots_apply_and_solve_draw_by_draw_as_one_matrix_product(kind):
    """Sample dimensions become matrix columns (no copy of the covariance per draw): the same
    numbers as applying the factor to each draw on its own, for batched covariances."""
    from linear_operator.operators import (
        DenseLinearOperator,
        DiagLinearOperator,
        LowRankRootAddedDiagLinearOperator,
        LowRankRootLinearOperator,
    )

    from bayesphys._structured_root import structured_root

    g = torch.Generator().manual_seed(0)
    b, n = 2, 6
    if kind == "dense":
        a = torch.randn(b, n, n, generator=g, dtype=torch.float64)
        cov = DenseLinearOperator(a @ a.mT + n * torch.eye(n, dtype=torch.float64))
    else:
        r = torch.randn(b, n, 2, generator=g, dtype=torch.float64)
        d = 0.5 + torch.rand(b, n, generator=g, dtype=torch.float64)
        cov = LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(r), DiagLinearOperator(d)
        )
    root = structured_root(cov)
    z = torch.randn(3, 4, b, root.base_dim, generator=g, dtype=torch.float64)
    one_by_one = torch.stack(
        [torch.stack([root.apply(z[i, j]) for j in range(4)]) for i in range(3)]
    )
    torch.testing.assert_close(root.apply(z), one_by_one, rtol=1e-12, atol=1e-12)
    # contiguous like the broadcast product (strided draws summed in another order in numpy)
    assert root.apply(z).is_contiguous() and root.solve(z[..., :n]).is_contiguous()
    v = torch.randn(3, 4, b, n, generator=g, dtype=torch.float64)
    dense = cov.to_dense()
    torch.testing.assert_close(
        root.solve(v), torch.linalg.solve(dense, v.unsqueeze(-1)).squeeze(-1), rtol=1e-9, atol=1e-10
    )
    # a draw without sample dims, and a covariance without batch dims under batched draws
    torch.testing.assert_close(root.apply(z[0, 0]), one_by_one[0, 0], rtol=1e-12, atol=1e-12)
    single = structured_root(cov.to_dense()[0])
    zz = torch.randn(5, 3, single.base_dim, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        single.apply(zz),
        torch.stack([single.apply(zz[i, j]) for i in range(5) for j in range(3)]).reshape(5, 3, n),
        rtol=1e-12,
        atol=1e-12,
    )


def test_roots_take_empty_batches_of_draws():
    from bayesphys._structured_root import _dense_root

    root = _dense_root(torch.zeros(0, 4, 4, dtype=torch.float64), "c")
    assert root.apply(torch.zeros(5, 0, 4, dtype=torch.float64)).shape == (5, 0, 4)


# -- property tests: exact algebra against dense references ------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    dims=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=3),
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
    seed=st.integers(0, 10_000),
)
def test_kron_matvec_matches_the_dense_kronecker_product(dims, lead, seed):
    """(A_1 x ... x A_m) z for rectangular factors [p_i, q_i] and any leading dims of z equals
    the product with torch.kron's dense matrix (row-major: the last factor varies fastest)."""
    g = torch.Generator().manual_seed(seed)
    factors = [torch.randn(p, q, generator=g, dtype=F64) for p, q in dims]
    dense = factors[0]
    for f in factors[1:]:
        dense = torch.kron(dense, f)
    z = torch.randn(*lead, math.prod(q for _, q in dims), generator=g, dtype=F64)
    got = kron_matvec(factors, z)
    assert got.shape == (*lead, math.prod(p for p, _ in dims))
    torch.testing.assert_close(got, z @ dense.T, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 7),
    k=st.integers(1, 7),
    rank=st.integers(0, 7),
    r=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_lstsq_any_rank_is_the_minimum_norm_least_squares_solution(m, k, rank, r, seed, scale):
    """For a of any rank (0 to full, tall or wide) the solution is pinv(a) @ b, the
    minimum-norm least-squares solution, on the CPU driver and on the QR-then-gelsd path used
    off the CPU (run here on the CPU)."""
    g = torch.Generator().manual_seed(seed)
    rank = min(rank, m, k)
    a = scale * (
        torch.randn(m, rank, generator=g, dtype=F64) @ torch.randn(rank, k, generator=g, dtype=F64)
    )
    b = torch.randn(m, r, generator=g, dtype=F64)
    # the reference: an SVD cut at a relative 1e-10 (the drawn a has exactly `rank` nonzero
    # singular values, the rest are round-off)
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    keep = s > 1e-10 * max(float(s.max()) if s.numel() else 0.0, 1e-300)
    want = vh[keep].T @ ((u[:, keep].T @ b) / s[keep, None])
    for got in (lstsq_any_rank(a, b), _lstsq_qr_gelsd(a, b)):
        assert got.shape == (k, r)
        tol = 1e-8 * float(want.abs().max().clamp_min(1.0))
        torch.testing.assert_close(got, want, rtol=0, atol=tol)


def test_kronecker_solve_after_one_without_autograd_keeps_the_gradient():
    # the factors' inverses, cached at the first solve, were reused without their graph after
    # a solve under no_grad: log_prob's gradient was then that of its log-determinant alone
    from linear_operator.operators import DenseLinearOperator, KroneckerProductLinearOperator

    from bayesphys._structured_root import structured_root

    a, b = _spd(2, 0, 10.0), _spd(3, 1, 10.0)
    t = torch.tensor(0.3, dtype=F64, requires_grad=True)
    v = torch.randn(6, generator=torch.Generator().manual_seed(2), dtype=F64)

    def quad(warm: bool) -> torch.Tensor:
        root = structured_root(
            KroneckerProductLinearOperator(DenseLinearOperator(t.exp() * a), DenseLinearOperator(b))
        )
        if warm:
            with torch.no_grad():
                root.solve(v)
        return (v * root.solve(v)).sum()

    (g_warm,) = torch.autograd.grad(quad(True), t)
    (g_fresh,) = torch.autograd.grad(quad(False), t)
    # v^T (e^t A (x) B)^{-1} v = e^{-t} v^T (A (x) B)^{-1} v: its t-derivative is minus itself
    torch.testing.assert_close(g_fresh, -quad(False).detach())
    torch.testing.assert_close(g_warm, g_fresh)


def test_psd_cholesky_factors_the_symmetric_part():
    """An input that is symmetric only to round-off is factorised as 0.5 (a + a^T): Cholesky
    reads one triangle, which alone would drop the other triangle's half of the error."""
    a = _spd(6, 4, 10.0)
    a[0, 3] += 1e-3  # one upper entry off
    l = psd_cholesky(a)
    torch.testing.assert_close(l @ l.mT, 0.5 * (a + a.mT), rtol=0, atol=1e-13)


def test_psd_cholesky_jitter_is_relative_to_the_mean_diagonal():
    """A singular PSD matrix gets jitter 1e-10 (float64) times its mean |diagonal| on the first
    try, as documented (not a multiple of the trace)."""
    from bayesphys._linalg import _psd_cholesky_jitter

    v = torch.arange(1.0, 9.0, dtype=F64)
    a = torch.outer(v, v)  # rank 1, mean diagonal 25.5
    l, jitter, relative = _psd_cholesky_jitter(a)
    assert jitter == pytest.approx(1e-10 * float(a.diagonal().mean()), rel=1e-12)
    assert relative == 1e-10
    torch.testing.assert_close(l @ l.mT, a + jitter * torch.eye(8, dtype=F64))


def test_pcg_stops_at_zero_curvature_without_nan():
    """p^T H p = 0 (a zero operator) is a breakdown: the last iterate (x0 = 0) is kept, not a
    division by zero."""
    b = torch.ones(4, dtype=F64)
    x, it, rel = pcg(lambda v: 0.0 * v, b, maxiter=10)
    assert it == 0 and rel == 1.0 and torch.equal(x, torch.zeros(4, dtype=F64))


def test_pcg_breakdown_of_one_column_leaves_the_others_solving():
    """H = diag(1, 2, 3, 4, -1): column 0's b lies in the positive eigenspace, column 1's
    excites the negative direction and breaks down at its third iteration. That breakdown
    stopped the whole block (column 0 at relative residual 0.2); now column 0 is solved to tol
    and column 1 keeps the last iterate of its own solve."""
    d = torch.tensor([1.0, 2.0, 3.0, 4.0, -1.0], dtype=F64)
    b0 = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0], dtype=F64)
    b1 = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5], dtype=F64)
    x1, it1, rel1 = pcg(lambda v: d * v, b1, tol=1e-10, maxiter=50)
    assert it1 == 2 and rel1 > 1.0  # broke down after two updates
    b = torch.stack([b0, b1], 1)
    x, it, rel = pcg(lambda v: d[:, None] * v, b, tol=1e-10, maxiter=50, columns=True)
    assert float((b0 - d * x[:, 0]).norm() / b0.norm()) <= 1e-10
    torch.testing.assert_close(x[:, 0], 1 / d * b0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x[:, 1], x1, rtol=1e-12, atol=0)
    # the iterations the block took (column 0's four), the largest residual (column 1's)
    assert it == 4 and rel == pytest.approx(rel1, rel=1e-12)


def test_pcg_with_breakdown_says_which_column_broke_down():
    """pcg's result told a breakdown from the iteration cap by nothing (a caller advised "raise
    the iteration cap" for both): pcg_with_breakdown flags the column that stopped on a
    non-positive curvature, and nothing else changes (pcg's three values are its first three)."""
    from bayesphys._linalg import pcg_with_breakdown

    d = torch.tensor([1.0, 2.0, 3.0, 4.0, -1.0], dtype=F64)
    b = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0, 0.5]], dtype=F64).T
    kw = {"tol": 1e-10, "maxiter": 50, "columns": True}
    x, it, rel, broken = pcg_with_breakdown(lambda v: d[:, None] * v, b, **kw)
    assert broken.tolist() == [False, True]
    x3, it3, rel3 = pcg(lambda v: d[:, None] * v, b, **kw)
    assert torch.equal(x, x3) and (it, rel) == (it3, rel3)
    # one system: a 0-dim flag; the cap is no breakdown
    _, it, rel, broken = pcg_with_breakdown(lambda v: d * v, b[:, 1], tol=1e-10, maxiter=50)
    assert broken.shape == () and bool(broken) and it == 2
    _, it, rel, broken = pcg_with_breakdown(lambda v: d.abs() * v, b[:, 1], tol=0.0, maxiter=2)
    assert not bool(broken) and it == 2 and rel > 0
    # solved before the first iteration (b = 0): nothing broke down
    _, it, _, broken = pcg_with_breakdown(lambda v: d[:, None] * v, 0 * b, columns=True)
    assert it == 0 and broken.tolist() == [False, False]


@pytest.mark.parametrize("tol", [1e-2, 1e-5])
def test_pcg_stops_at_the_first_iterate_within_tol(tol):
    """The stopping rule is exact: the returned iterate meets ||b - Hx|| <= tol ||b||, and the
    one before it (a run capped one iteration earlier) does not."""
    a = _spd(30, 7, 1e3)
    b = torch.randn(30, generator=torch.Generator().manual_seed(1), dtype=F64)
    x, it, rel = pcg(lambda v: a @ v, b, tol=tol, maxiter=300)
    assert rel <= tol and it >= 2
    assert float((b - a @ x).norm() / b.norm()) <= 2 * tol  # recursive vs true residual
    _, it1, rel1 = pcg(lambda v: a @ v, b, tol=tol, maxiter=it - 1)
    assert it1 == it - 1 and rel1 > tol


def test_lstsq_any_rank_keeps_small_but_resolvable_singular_values():
    """Only singular values below eps * max(m, k) of the largest count as zero: a full-rank
    matrix of condition number 1e6 is solved exactly, not truncated."""
    g = torch.Generator().manual_seed(0)
    q1, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=F64))
    q2, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=F64))
    a = q1 @ torch.diag(torch.tensor([1.0, 0.5, 1e-2, 1e-4, 1e-6], dtype=F64)) @ q2.T
    b = torch.randn(5, 2, generator=g, dtype=F64)
    want = torch.linalg.solve(a, b)
    for got in (lstsq_any_rank(a, b), _lstsq_qr_gelsd(a, b)):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-7)


def test_psd_eigen_root_of_a_singular_matrix_keeps_its_null_direction():
    """The eigen root reproduces a positive semi-definite matrix, batched, and a vector in
    its null space stays exactly there (no jitter), unlike a jittered Cholesky."""
    from bayesphys._linalg import psd_eigen_root

    g = torch.Generator().manual_seed(0)
    b = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    a = b @ b.mT  # [3, 5, 5], rank 4
    root = psd_eigen_root(a)
    torch.testing.assert_close(root @ root.mT, a, atol=1e-12, rtol=0)
    null = torch.linalg.svd(b.mT).Vh[:, -1]  # [3, 5]: b^T n = 0
    assert float((null.unsqueeze(-2) @ root).abs().max()) < 1e-7


def test_structured_roots_refuse_a_diagonal_they_cannot_take_root_of():
    """A posterior built with validate=False is still refused at its first draw, by name,
    when its diagonal (alone or under a low-rank part) cannot give a real root."""
    from linear_operator.operators import (
        DiagLinearOperator,
        LowRankRootAddedDiagLinearOperator,
        LowRankRootLinearOperator,
    )

    from bayesphys import GaussianPosterior

    diag = DiagLinearOperator(torch.tensor([1.0, -0.5], dtype=F64))
    post = GaussianPosterior(torch.zeros(2, dtype=F64), diag, validate=False)
    with pytest.raises(
        ValueError,
        match=r"^covariance: diagonal covariance has negative entries \(min -5\.000e-01\)$",
    ):
        post.sample((3,))
    lowrank = LowRankRootAddedDiagLinearOperator(
        LowRankRootLinearOperator(torch.ones(2, 1, dtype=F64)),
        DiagLinearOperator(torch.tensor([1.0, 0.0], dtype=F64)),
    )
    for validate in (True, False):  # the construction takes the root when it validates
        with pytest.raises(
            ValueError,
            match=r"^covariance: low-rank-plus-diagonal covariance needs a positive diagonal, "
            r"received min 0\.000e\+00$",
        ):
            GaussianPosterior(torch.zeros(2, dtype=F64), lowrank, validate=validate).sample((3,))


def test_psd_cholesky_refuses_what_is_not_a_tensor():
    with pytest.raises(TypeError, match=r"^prior: expected a torch\.Tensor, received list$"):
        psd_cholesky([[1.0]], name="prior")
