"""Property tests of the exact Gaussian W2 (Bures) distance against independent references."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.meta_fm import gaussian_w2

F64 = torch.float64


def _psd(d: int, rank: int, g: torch.Generator, batch=()) -> torch.Tensor:
    a = torch.randn(*batch, d, rank, generator=g, dtype=F64)
    return a @ a.mT


def _w2_sq_by_eigenvalues(m1, s1, m2, s2) -> float:
    """|m1 - m2|^2 + tr S1 + tr S2 - 2 sum_i sqrt(lambda_i(S1 S2)): S1 S2 is similar to the
    PSD S1^{1/2} S2 S1^{1/2}, so its eigenvalues are real and non-negative (no matrix root)."""
    lam = np.linalg.eigvals(s1.numpy() @ s2.numpy()).real.clip(min=0)
    cross = np.sqrt(lam).sum()
    return float((m1 - m2).pow(2).sum() + s1.trace() + s2.trace()) - 2 * cross


@settings(max_examples=40, deadline=None)
@given(
    d=st.integers(1, 5),
    rank1=st.integers(1, 6),
    rank2=st.integers(1, 6),
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
    seed=st.integers(0, 10_000),
)
def test_gaussian_w2_matches_the_eigenvalue_formula_and_is_symmetric(d, rank1, rank2, batch, seed):
    """W2^2 equals the trace formula computed from the eigenvalues of S1 S2 for any PSD
    covariances (singular ones included), batched; W2 is symmetric in its two Gaussians.

    Tolerance: at the traces' round-off for non-singular covariances; a singular one's zero
    eigenvalues are known only to ~eps * |S|, whose square roots (~sqrt(eps * |S|) each, in
    any method and in the reference alike) bound the agreement there."""
    g = torch.Generator().manual_seed(seed)
    m1 = torch.randn(*batch, d, generator=g, dtype=F64)
    m2 = torch.randn(*batch, d, generator=g, dtype=F64)
    s1, s2 = _psd(d, rank1, g, batch), _psd(d, rank2, g, batch)
    got = gaussian_w2(m1, s1, m2, s2)
    assert got.shape == batch
    flat = [v.reshape(-1, *v.shape[len(batch) :]) for v in (m1, s1, m2, s2)]
    want = torch.tensor([_w2_sq_by_eigenvalues(*p) for p in zip(*flat)], dtype=F64)
    scale = (
        1 + flat[1].diagonal(dim1=-2, dim2=-1).sum(-1) + flat[3].diagonal(dim1=-2, dim2=-1).sum(-1)
    )
    singular = min(rank1, rank2) < d
    tol = (1e-7 * d if singular else 1e-9) * float(scale.max())
    torch.testing.assert_close(got.reshape(-1).pow(2), want, rtol=0, atol=tol)
    torch.testing.assert_close(gaussian_w2(m2, s2, m1, s1), got, rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    d=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    zeros=st.integers(0, 2),
)
def test_gaussian_w2_of_commuting_covariances_is_the_closed_form(d, seed, zeros):
    """Covariances sharing eigenvectors, S_k = Q diag(a_k) Q^T (zero eigenvalues allowed):
    W2^2 = |m1 - m2|^2 + sum_i (sqrt(a_1i) - sqrt(a_2i))^2; equal Gaussians are at 0."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    a1 = torch.rand(d, generator=g, dtype=F64) * 4
    a2 = torch.rand(d, generator=g, dtype=F64) * 4
    a1[: min(zeros, d)] = 0.0
    s1, s2 = q @ torch.diag(a1) @ q.T, q @ torch.diag(a2) @ q.T
    m1, m2 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    want = (m1 - m2).pow(2).sum() + (a1.sqrt() - a2.sqrt()).pow(2).sum()
    got = gaussian_w2(m1, s1, m2, s2)
    scale = float(1 + a1.sum() + a2.sum())
    # zero eigenvalues of S1 are ~eps * |S1| after rounding: their roots ~sqrt(eps * |S1|)
    tol = (1e-7 * d if zeros else 1e-10) * scale
    torch.testing.assert_close(got.pow(2), want, rtol=0, atol=tol)
    # one Gaussian against itself: 0 up to the square root of the traces' round-off
    assert float(gaussian_w2(m2, s2, m2, s2)) < 1e-6
