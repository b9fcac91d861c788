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
from torch import Tensor, nn

from .coupling import _interpolate, cfm_loss, ot_pairing_rows

__all__ = ["check_type_onehots", "type_centres", "type_frame_loss"]


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


def type_frame_loss(
    field: nn.Module,
    x0: Tensor,
    x1: Tensor,
    cond: Tensor | None,
    gen: torch.Generator,
    coupling: str,
    ctr: Tensor,
    types: Tensor,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """The CFM loss of ``field`` in the type frame (``_train.batch_loss`` with ``types``):
    ``x0``, ``x1`` ``[P, n, d]`` are coupled by ``coupling`` on the raw points first (the rows
    of the minibatch OT pairs for ``"ot"``; row by row for ``"index"`` and ``"ot_full"``),
    then both ends of a pair are shifted by its source point's type centre (``ctr [P, n, d]``)
    and the field reads that point's one-hot type (``types [P, n, f]``) beside the condition
    row ``cond [P, c]``; one time per point from ``gen`` (on ``device`` in ``dtype``)."""
    p, n, d = x0.shape
    if coupling == "ot":  # the rows of the minibatch OT pairs, drawn as couple draws them
        rows = [ot_pairing_rows(a, b, gen) for a, b in zip(x0, x1)]
        i = torch.stack([r[0] for r in rows]).to(x0.device)
        j = torch.stack([r[1] for r in rows]).to(x0.device)
    else:  # index and ot_full batches are paired row by row
        i = j = torch.arange(n, device=x0.device).expand(p, n)
    pop = torch.arange(p, device=x0.device)[:, None]
    c = ctr[pop, i]  # the source point's type centre: the same shift for both ends
    x0c, x1c = x0[pop, i] - c, x1[pop, j] - c
    # drawn in float32 whatever the default dtype (under a float64 default the same seed
    # drew other times, and the fit went elsewhere), then cast to the model's dtype
    t = torch.rand(p, n, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
    xt, u = _interpolate(x0c, x1c, t)  # t in [0, 1): no value check, no sync
    v = field(t, xt, None if cond is None else cond[:, None, :], types[pop, i])
    return cfm_loss(v.reshape(-1, d), u.reshape(-1, d))
