r"""The RGNP training objective (physics ELBO + optional noisy-data marginal likelihood).

Per instance :math:`(z, w) \sim p(z)p(w)`, grid :math:`X \sim \pi` and a reparameterised draw
:math:`\tilde u \sim q_\alpha(\cdot \mid z, w, X)`:

.. math:: \mathrm{ELBO}(z, w, X) = \sum_i \omega_i \log\mathcal N\big(R(B + D\tilde u; z, w)(x_i);
          0, \sigma_r^2\big) + \log p_\beta(z \mid \tilde u, X, w) - \log q_\alpha(\tilde u \mid z, w, X)

(:math:`\omega_i = 1` except under the adaptive grid measure). Noisy data
:math:`y_j` at sensors :math:`X_{obs}` (any locations) enter through the closed-form GP marginal

.. math:: \log p(y_j \mid z_j, w_j) = \log\mathcal N\big(y_j; B + D\mu,\;
          \operatorname{diag}(D^2\sigma^2 + \sigma_y^2) + (DC)(DC)^\top\big),

and the loss is :math:`-[\overline{\mathrm{ELBO}} + \frac{N_{data}}{b}\sum_{j\in\text{batch}}
\log p(y_j \mid z_j, w_j)]`. Densities come from ``torch.distributions`` (``Normal``,
``LowRankMultivariateNormal``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import LowRankMultivariateNormal, Normal

from .forward import ForwardNet
from .gicnet import GICNet

__all__ = ["physics_elbo", "data_log_likelihood", "field_marginal"]


def physics_elbo(
    problem,
    forward: ForwardNet,
    inverse: GICNet,
    x: Tensor,
    weights: Tensor,
    z: Tensor,
    w: Tensor,
    sigma_r: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-instance ELBO ``[B]`` and its parts (``loglik``, ``log_p_beta``, ``log_q``, ``res_sq``).

    ``x`` ``[B, N, dim_x]``, ``weights`` ``[B, N]``, ``z`` ``[B, dim_z]``, ``w`` ``[B, dim_w]``.
    """
    derivs, q = forward.sample_with_derivatives(x, z, w, problem.derivatives, generator)
    r = problem.residual(x, derivs, z, w)
    loglik = (Normal(torch.zeros_like(sigma_r), sigma_r).log_prob(r) * weights).sum(-1)
    log_pb = inverse(x, derivs["v"], w).log_prob(z)
    log_q = q.log_prob(derivs["v"])
    parts = {"loglik": loglik, "log_p_beta": log_pb, "log_q": log_q, "res_sq": r.detach() ** 2}
    return loglik + log_pb - log_q, parts


def field_marginal(
    problem,
    forward: ForwardNet,
    x: Tensor,
    z: Tensor,
    w: Tensor,
    noise_var: float = 0.0,
    floor: float = 0.0,
) -> LowRankMultivariateNormal:
    r"""Law of :math:`u(X) = B + D\tilde u(X)` (+ white noise): batch ``[B]``, event ``[N]``."""
    h = forward.heads(x, z, w)
    b, d = problem.transform(x, w)
    loc = b + d * h["mu"]["v"]
    fac = d.unsqueeze(-1) * h["C"]["v"]
    diag = (d * h["sd"]["v"]) ** 2 + noise_var
    if floor:
        diag = diag.clamp_min(floor)
    return LowRankMultivariateNormal(loc, fac, diag)


def data_log_likelihood(
    problem, forward: ForwardNet, x_obs: Tensor, y: Tensor, z: Tensor, w: Tensor, sigma_y: float
) -> Tensor:
    """``log p(y_j | z_j, w_j)`` ``[B]`` for ``y`` ``[B, M]`` at ``x_obs`` ``[M, dim_x]``."""
    xb = x_obs.unsqueeze(0).expand(y.shape[0], -1, -1)
    return field_marginal(problem, forward, xb, z, w, noise_var=sigma_y**2).log_prob(y)
