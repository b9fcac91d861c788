r"""Memory the spectral-mixture kernels of a :class:`~.model.GPPDESolver` need, checked before
any work so that a huge ``num_mixtures`` is refused by name (it failed with torch's "can't
allocate memory", at construction from :math:`Q \approx 10^{11}` on, at the first fit step
from :math:`Q \approx 10^{7}` on a 400-point axis).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_dense_memory
from .kernels import uniform_step

__all__ = ["check_kernel_memory"]

#: ``[Q]`` arrays per axis at construction: the parameters mu, log w, log a and the
#: temporaries they are made from
_PARAM_ARRAYS = 6
#: ``[lags, Q]`` arrays a fit step keeps per kernel evaluation for its backward pass
#: (measured 35-55 on a 400-point axis with the identity metric; the lower end is used so
#: that only a fit that cannot fit is refused)
_FIT_ARRAYS = 32


def _lags(axis: Tensor) -> int:
    """Lags a Gram matrix of ``axis`` ``[n]`` evaluates: ``2n - 1`` evenly spaced (Toeplitz),
    else ``n^2``."""
    n = int(axis.numel())
    return 2 * n - 1 if uniform_step(axis) is not None else n * n


def check_kernel_memory(
    axes: list[Tensor], num_mixtures: int, dtype: torch.dtype, device, *, fit: bool
) -> None:
    r"""Refuse (``MemoryError`` naming ``num_mixtures``, a warning above half the memory) a
    mixture size whose kernels cannot fit on ``device``: their parameters, ``3 Q`` numbers per
    axis and as many temporaries (``fit=False``, construction), or a fit step's kernel
    evaluations, about ``32 Q \sum_j L_j`` numbers with ``L_j`` the lags of axis ``j``
    (``fit=True``)."""
    es = torch.empty((), dtype=dtype).element_size()
    d = len(axes)
    if fit:
        lags = [_lags(a) for a in axes]
        nbytes = _FIT_ARRAYS * num_mixtures * sum(lags) * es
        what = (
            f"a fit step's kernel evaluations ({num_mixtures} mixture components x "
            f"{lags} lags per axis, with their gradients)"
        )
    else:
        nbytes = _PARAM_ARRAYS * num_mixtures * d * es
        what = f"the kernels' parameters (3 x {num_mixtures} numbers per axis, {d} axes)"
    check_dense_memory(
        "num_mixtures",
        nbytes,
        what=what,
        alternative="use fewer mixture components (the default is 30 per axis)",
        device=device,
    )
