r"""The per-cell-type frame of a Meta FM field (``MFMConfig.type_frame``).

Each source point :math:`x` of type :math:`k` (the one-hot row :math:`e_k` of its
``source_features``) is read relative to the mean of the source points of its own type in its
population,

.. math:: c_k = \frac{1}{|\{j: \tau_j = k\}|} \sum_{j: \tau_j = k} x_j ,

so the field sees :math:`(t, x - c_{\tau(x)}, e_{\tau(x)}, \text{cond})`: translating every
point of one type translates that type's prediction and leaves the other types' unchanged.
:func:`check_type_onehots` refuses features that are not one-hot rows; :func:`type_centres`
gives each point its type's centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_type_onehots", "type_centres"]


def check_type_onehots(name: str, features: Sequence[Tensor]) -> None:
    """Refuse (``ValueError`` naming ``name[i]``) per-point features ``[n_i, f]`` whose rows
    are not one-hot (exactly one entry 1, the others 0): the type frame reads each point's
    type from them."""
    for i, f in enumerate(features):
        ones, zeros = f == 1, f == 0
        bad = ~((ones | zeros).all(-1) & (ones.sum(-1) == 1))
        if bool(bad.any()):
            r = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{name}[{i}]: type_frame reads each point's type from one-hot rows (one 1, "
                f"the other entries 0), received row {r} = {f[r].tolist()!r:.200}"
            )


def type_centres(x: Tensor, types: Tensor) -> Tensor:
    r"""Each point's type centre ``[m, d]``: for points ``x [m, d]`` of one population with
    one-hot types ``types [m, f]``, row ``j`` is the mean :math:`c_{\tau_j}` of the points of
    ``j``'s type (computed on all ``m`` points given)."""
    k = types.argmax(-1).to(x.device)
    f = types.shape[-1]
    sums = torch.zeros(f, x.shape[-1], dtype=x.dtype, device=x.device).index_add_(0, k, x)
    counts = torch.bincount(k, minlength=f).clamp_min(1).to(x.dtype)
    return (sums / counts[:, None])[k]
