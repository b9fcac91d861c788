"""The jittered Cholesky of a differentiable matrix reads its jitter without torch's
"Converting a tensor with requires_grad=True to a scalar" warning (it was raised by the
package's own ``float(jit.max())`` for a singular covariance that carries gradients)."""

from __future__ import annotations

import warnings

import torch

from bayesphys._linalg import _psd_cholesky_jitter


def test_jitter_of_a_differentiable_singular_matrix_is_read_without_a_torch_warning():
    var = torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        l, jitter, _ = _psd_cholesky_jitter(torch.diag(var))
    assert jitter > 0  # the jittered path ran
    assert not [w for w in caught if "requires_grad" in str(w.message)], [
        str(w.message) for w in caught
    ]
    l.sum().backward()  # the factor still carries the gradient
    assert var.grad is not None and torch.isfinite(var.grad).all()
