"""Review 76: the shared core's docstring equations and shapes used as oracles.

Each test computes what a docstring states, independently of the code (dense matrices,
loops, numpy / scipy), and compares it with the code.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys import GaussianPosterior
from bayesphys._linalg import _psd_cholesky_jitter
from bayesphys._structured_root import DRAW_JITTER


def _float32_needing_jitter(relative_eig: float, n: int = 6) -> torch.Tensor:
    """A float32 symmetric matrix whose smallest eigenvalue is ``relative_eig`` times its mean
    diagonal (negative: the Cholesky factor needs a jitter above ``-relative_eig``)."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    ev = torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0, 0.0], dtype=torch.float64)
    ev[-1] = relative_eig * ev.mean()  # trace / n = mean diagonal = mean eigenvalue
    return ((q * ev) @ q.T).float()


def test_float32_draws_through_a_factor_jittered_by_1e_4_warn():
    """``GaussianPosterior.rsample`` and ``DRAW_JITTER``: draws warn when the jitter is "at
    least 1e-4 of the mean variance"; float32's tries are 1e-6, 1e-5, 1e-4, ... and only "the
    first two, 1e-6 and 1e-5" are silent. The relative jitter was computed as ``1e-6 * 10**2``
    = 9.999999999999999e-05 < 1e-4, so a float32 covariance needing the third try drew without
    the warning."""
    a = _float32_needing_jitter(-5e-5)  # 1e-5 is not enough, 1e-4 is
    _, jitter, relative = _psd_cholesky_jitter(a)
    mean_diag = float(a.diagonal().mean())
    assert jitter == pytest.approx(1e-4 * mean_diag, rel=1e-5)
    assert relative == 1e-4 >= DRAW_JITTER
    post = GaussianPosterior(torch.zeros(6), a)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post.sample((3,), seed=0)
    assert any("jitter 1.0e-04" in str(w.message) for w in caught), [str(w.message) for w in caught]


@settings(deadline=None, max_examples=30)
@given(
    n=st.integers(1, 12),
    batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    log_cond=st.floats(0.0, 8.0),
    seed=st.integers(0, 10_000),
)
def test_smallest_eigenvalue_bound_lies_between_the_extreme_eigenvalues(n, batch, log_cond, seed):
    """``_smallest_eigenvalue_bound``: :math:`\\lVert v\\rVert / \\lVert (LL^\\top)^{-1} v\\rVert`
    is "at least :math:`\\lambda_{\\min}`" (an upper bound on it, ``[*batch]``), and, a
    Rayleigh-type ratio, at most :math:`\\lambda_{\\max}`; eigenvalues from numpy's ``eigvalsh``
    of the dense :math:`LL^\\top`, spread over ``10**log_cond``."""
    from bayesphys._structured_root import _smallest_eigenvalue_bound

    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(*batch, n, n)))
    ev = np.logspace(-log_cond, 0, n)
    a = (q * ev[..., None, :]) @ np.swapaxes(q, -1, -2)
    a = 0.5 * (a + np.swapaxes(a, -1, -2))
    chol = torch.linalg.cholesky(torch.as_tensor(a))
    got = _smallest_eigenvalue_bound(chol).numpy()
    assert got.shape == batch
    lam = np.linalg.eigvalsh(a)
    assert (got >= lam[..., 0] * (1 - 1e-6)).all()
    assert (got <= lam[..., -1] * (1 + 1e-6)).all()
