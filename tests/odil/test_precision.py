"""Silent precision loss in ODIL's public sparse solves: a float32 SciPy Jacobian was used
as it was, so the Schur covariance documented as float64 was formed and factorised in float32
(1e-7 relative error), and the normal solve failed inside SciPy."""

import numpy as np
import pytest
import torch

from bayesphys.odil import sparse_normal_solve, sparse_schur_covariance

sp = pytest.importorskip("scipy.sparse")


def _jacobians():
    """A well-posed sparse ``J [40, 12]`` in float32, and the same entries in float64."""
    j = sp.random(40, 12, density=0.4, random_state=1, format="csr") + 3 * sp.eye(
        40, 12, format="csr"
    )
    narrow = j.astype(np.float32)
    return narrow, narrow.astype(np.float64)


def test_sparse_schur_covariance_of_a_float32_jacobian_is_computed_in_float64():
    narrow, wide = _jacobians()
    t_idx = torch.tensor([0, 5])
    got = sparse_schur_covariance(narrow, t_idx)
    assert got.dtype == torch.float64
    assert torch.equal(got, sparse_schur_covariance(wide, t_idx))


def test_sparse_normal_solve_of_a_float32_jacobian_is_computed_in_float64():
    narrow, wide = _jacobians()
    r = torch.tensor(np.random.default_rng(0).normal(size=40))
    for lam in (0.0, 0.5):
        got = sparse_normal_solve(narrow, r, lam)
        ref = sparse_normal_solve(wide, r, lam)
        assert all(torch.equal(a, b) for a, b in zip(got, ref))
