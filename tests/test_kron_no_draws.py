"""No draws of a Kronecker-structured posterior: an empty batch of vectors, not torch's "cannot
reshape tensor of 0 elements into shape [0, -1]"."""

from __future__ import annotations

import torch
from linear_operator.operators import (
    ConstantDiagLinearOperator,
    KroneckerProductAddedDiagLinearOperator,
    KroneckerProductLinearOperator,
)

from bayesphys import GaussianPosterior
from bayesphys._linalg import kron_matvec

F64 = torch.float64


def test_kron_matvec_of_no_vectors():
    a, b = torch.ones(2, 3, dtype=F64), torch.ones(4, 5, dtype=F64)
    assert kron_matvec([a, b], torch.zeros(0, 15, dtype=F64)).shape == (0, 8)
    assert kron_matvec([a, b], torch.zeros(3, 0, 15, dtype=F64)).shape == (3, 0, 8)
    torch.testing.assert_close(
        kron_matvec([a, b], torch.ones(2, 15, dtype=F64)), torch.full((2, 8), 15.0, dtype=F64)
    )


def test_no_draws_of_kronecker_posteriors():
    f1 = torch.eye(3, dtype=F64) * 2
    f2 = torch.eye(4, dtype=F64) + 0.5
    kron = KroneckerProductLinearOperator(f1, f2)
    added = KroneckerProductAddedDiagLinearOperator(
        kron, ConstantDiagLinearOperator(torch.tensor([0.1], dtype=F64), 12)
    )
    for cov in (kron, added):
        post = GaussianPosterior(torch.zeros(3, 4, dtype=F64), cov, event_shape=(3, 4))
        assert post.sample((0,)).shape == (0, 3, 4)
        assert post.sample((2, 0)).shape == (2, 0, 3, 4)
        assert post.sample((5,)).shape == (5, 3, 4)
