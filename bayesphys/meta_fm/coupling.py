r"""Couplings, the straight interpolant and the conditional flow-matching loss.

With a coupling :math:`(x_0, x_1) \sim \pi` between a source population and its target,
:math:`t \sim U[0, 1]` per point and :math:`\sigma = 0`,

.. math:: x_t = (1-t)x_0 + t x_1,\qquad u_t = x_1 - x_0,\qquad
          \mathcal L(\theta) = \mathbb E\,\lVert v_\theta(t, x_t) - u_t\rVert^2 .

The reference code minimises :math:`\lVert v\rVert^2 - 2\langle v, u\rangle`, which differs
from :math:`\mathcal L` by :math:`\lVert u\rVert^2` (no dependence on :math:`\theta`); we use the
mean-squared form so that the exact field has loss 0. Couplings: ``"index"`` (the populations
are paired point by point) or ``"ot"`` (exact minibatch OT with POT's ``emd`` on the squared
Euclidean cost, then pairs drawn from the plan with replacement, as ``torchcfm``'s
``OTPlanSampler``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ot_pairing", "couple", "interpolate", "cfm_loss"]


def ot_pairing(
    x0: Tensor, x1: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Exact-OT re-pairing of ``x0 [n, d]`` and ``x1 [m, d]`` -> two ``[n, d]`` tensors."""
    import ot

    a = x0.detach().to("cpu", torch.float64).numpy()
    b = x1.detach().to("cpu", torch.float64).numpy()
    cost = ot.dist(a, b)  # squared Euclidean
    cost = cost / max(cost.max(), 1e-12)
    plan = ot.emd(ot.unif(len(a)), ot.unif(len(b)), cost, numItermax=1_000_000)
    p = torch.from_numpy(plan.reshape(-1)).clamp_min(0)
    idx = torch.multinomial(p / p.sum(), len(a), replacement=True, generator=generator)
    i, j = idx // len(b), idx % len(b)
    return x0[i.to(x0.device)], x1[j.to(x1.device)]


def couple(
    x0: Tensor, x1: Tensor, coupling: str, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Pair batched populations ``x0 [P, n, d]``, ``x1 [P, n, d]`` by ``"index"`` or ``"ot"``."""
    if coupling == "index":
        return x0, x1
    if coupling == "ot":
        pairs = [ot_pairing(a, b, generator) for a, b in zip(x0, x1)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    raise ValueError(f"coupling: expected 'index' or 'ot', received {coupling!r}")


def interpolate(x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``x_t = (1-t) x0 + t x1`` and ``u = x1 - x0``; ``t`` broadcasts against ``x0 [..., d]``."""
    tt = t[..., None]
    return (1 - tt) * x0 + tt * x1, x1 - x0


def cfm_loss(v: Tensor, u: Tensor) -> Tensor:
    """Mean over points of ``||v - u||^2`` (summed over the last dim)."""
    return (v - u).pow(2).sum(-1).mean()
