r"""The RGNP training objective (physics ELBO + optional noisy-data marginal likelihood).

Per instance :math:`(z, w) \sim p(z)p(w)`, grid :math:`X \sim \pi` and a reparameterised draw
:math:`\tilde u \sim q_\alpha(\cdot \mid z, w, X)`:

.. math:: \mathrm{ELBO}(z, w, X) = \sum_i \omega_i \log\mathcal N\big(R(B + D\tilde u; z, w)(x_i);
          0, \sigma_r^2\big) + \log p_\beta(z \mid \tilde u, X, w) - \log q_\alpha(\tilde u \mid z,
          w, X)

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

from .._checks import as_scalar, check_real
from .._device import check_float_beside
from ..problems.rgnp import BurgersProblem, PoissonProblem
from .forward import ForwardNet
from .gicnet import GICNet, check_tensors

__all__ = ["physics_elbo", "data_log_likelihood", "field_marginal"]


def _check_nets(problem, **nets: ForwardNet | GICNet) -> None:
    """``ValueError`` naming the network whose sizes ``(dim_x, dim_z[, dim_w])`` are not the
    problem's (an inverse network of another ``dim_z`` failed inside ``log_prob`` with
    torch's event-shape error, naming neither; a forward network's refusal asked for the
    network's own ``z`` width, not the problem's)."""
    want = (problem.dim_x, problem.dim_z, problem.dim_w)
    for name, net in nets.items():
        if isinstance(net, ForwardNet):
            got = (net.dim_x, net.dim_z, net.dim_w)
        elif isinstance(net, GICNet):
            got = (net.dim_x, net.dim_z, net.trunk[0].in_features)
        else:  # another network with the same interface: its own checks apply
            continue
        if got != want:
            raise ValueError(
                f"{name}: expected a network of (dim_x, dim_z, dim_w) = {want} (the "
                f"{type(problem).__name__}'s), received one of {got}"
            )


def _check_batch(problem, x: Tensor, z: Tensor, w: Tensor, **extra: Tensor) -> None:
    """``x`` ``[B, N, dim_x]``, ``z`` ``[B, dim_z]``, ``w`` ``[B, dim_w]`` and ``extra``
    tensors ``[B, N]`` (``ValueError`` naming them and the shapes received); the ``extra``
    ones floating and on ``x``'s device (``x``, ``z``, ``w`` are checked against the
    network's dtype and device by the network). Structural checks only: no value is read."""
    names = ("x", "z", "w", *extra)
    tensors = (x, z, w, *extra.values())
    check_tensors(names, tensors)
    for name, t in extra.items():
        check_float_beside(name, t, x, "x")
    ok = x.ndim == 3 and x.shape[-1] == problem.dim_x
    if ok:
        b, n = x.shape[:2]
        ok = tuple(z.shape) == (b, problem.dim_z) and tuple(w.shape) == (b, problem.dim_w)
        ok = ok and all(tuple(t.shape) == (b, n) for t in extra.values())
    if not ok:
        want = [f"[B, N, {problem.dim_x}]", f"[B, {problem.dim_z}]", f"[B, {problem.dim_w}]"]
        want += ["[B, N]"] * len(extra)
        got = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise ValueError(f"{'/'.join(names)}: expected shapes {', '.join(want)}, received {got}")


def _check_sigma_r(sigma_r: Tensor | float, x: Tensor) -> Tensor:
    """``sigma_r`` as a tensor: a number is checked (``> 0``) and converted to ``x``'s dtype and
    device; a tensor must be floating, on ``x``'s device and of shape ``()``, ``[1]`` or a 2-D
    shape that broadcasts to ``[B, N]`` (its values are not read: no device synchronisation
    per training step). A 1-D tensor of ``k > 1`` entries is refused: torch broadcasting
    reads it as per point (``[1, N]``), so a per-instance ``[B]`` was refused when
    ``B != N`` and silently read per point when ``B == N``."""
    if not isinstance(sigma_r, Tensor):
        s = check_real("sigma_r", as_scalar(sigma_r), minimum=0.0, strict=True)
        return torch.tensor(s, dtype=x.dtype, device=x.device)
    check_float_beside("sigma_r", sigma_r, x, "x")
    want = tuple(x.shape[:2])
    if sigma_r.ndim == 1 and sigma_r.shape[0] != 1:
        raise ValueError(
            f"sigma_r: expected shape [B, 1] (one scale per instance), [1, N] / [B, N] (per "
            f"point) or () / [1] (one scale), with [B, N] = {list(want)}; a 1-D tensor of more "
            f"than one entry is ambiguous (per instance or per point when B == N), received "
            f"shape {tuple(sigma_r.shape)}"
        )
    try:
        fits = torch.broadcast_shapes(sigma_r.shape, want) == want
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"sigma_r: expected a number or a tensor of shape () or broadcasting to [B, N] = "
            f"{list(want)}, received shape {tuple(sigma_r.shape)}"
        )
    return sigma_r


def physics_elbo(
    problem: PoissonProblem | BurgersProblem,
    forward: ForwardNet,
    inverse: GICNet,
    x: Tensor,
    weights: Tensor,
    z: Tensor,
    w: Tensor,
    sigma_r: Tensor | float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-instance ELBO ``[B]`` and its parts (``loglik``, ``log_p_beta``, ``log_q``, ``res_sq``).

    ``x`` ``[B, N, dim_x]``, ``weights`` ``[B, N]``, ``z`` ``[B, dim_z]``, ``w`` ``[B, dim_w]``;
    ``sigma_r``: the residual scale, a number ``> 0`` or a floating tensor (e.g. a learned
    one, with its gradient) of shape ``()`` or ``[1]`` (one scale), ``[B, 1]`` (one per
    instance), ``[1, N]`` or ``[B, N]`` (per point); a 1-D tensor of more entries is refused
    (per instance or per point could not be told apart when ``B == N``). ``weights`` and
    a ``sigma_r`` tensor floating and on ``x``'s device; ``forward`` and ``inverse`` of the
    problem's sizes. Structural checks only (no value is read: no device synchronisation).
    """
    _check_nets(problem, forward=forward, inverse=inverse)
    _check_batch(problem, x, z, w, weights=weights)
    sigma_r = _check_sigma_r(sigma_r, x)
    derivs, q = forward.sample_with_derivatives(x, z, w, problem.derivatives, generator)
    r = problem.residual(x, derivs, z, w)
    loglik = (Normal(torch.zeros_like(sigma_r), sigma_r).log_prob(r) * weights).sum(-1)
    log_pb = inverse(x, derivs["v"], w).log_prob(z)
    log_q = q.log_prob(derivs["v"])
    parts = {"loglik": loglik, "log_p_beta": log_pb, "log_q": log_q, "res_sq": r.detach() ** 2}
    return loglik + log_pb - log_q, parts


def field_marginal(
    problem: PoissonProblem | BurgersProblem,
    forward: ForwardNet,
    x: Tensor,
    z: Tensor,
    w: Tensor,
    noise_var: float = 0.0,
    floor: float = 0.0,
) -> LowRankMultivariateNormal:
    r"""Law of :math:`u(X) = B + D\tilde u(X)` (+ white noise): batch ``[B]``, event ``[N]``.

    ``x`` ``[B, N, dim_x]``, ``z`` ``[B, dim_z]``, ``w`` ``[B, dim_w]``; ``noise_var >= 0``
    (white-noise variance), ``floor >= 0`` (lower bound of the diagonal, 0: none)."""
    _check_nets(problem, forward=forward)
    _check_batch(problem, x, z, w)
    noise_var = check_real("noise_var", as_scalar(noise_var), minimum=0.0)
    floor = check_real("floor", floor, minimum=0.0)
    h = forward.heads(x, z, w)
    b, d = problem.transform(x, w)
    loc = b + d * h["mu"]["v"]
    fac = d.unsqueeze(-1) * h["C"]["v"]
    diag = (d * h["sd"]["v"]) ** 2 + noise_var
    if floor:
        diag = diag.clamp_min(floor)
    return LowRankMultivariateNormal(loc, fac, diag)


def data_log_likelihood(
    problem: PoissonProblem | BurgersProblem,
    forward: ForwardNet,
    x_obs: Tensor,
    y: Tensor,
    z: Tensor,
    w: Tensor,
    sigma_y: float,
) -> Tensor:
    """``log p(y_j | z_j, w_j)`` ``[B]`` for ``y`` ``[B, M]`` at ``x_obs`` ``[M, dim_x]``
    (``z`` ``[B, dim_z]``, ``w`` ``[B, dim_w]``; noise ``sigma_y >= 0``); ``y`` floating and
    on ``x_obs``'s device (an integer ``y`` was promoted without a word)."""
    sigma_y = check_real("sigma_y", as_scalar(sigma_y), minimum=0.0)
    check_tensors(("x_obs", "y"), (x_obs, y))
    check_float_beside("y", y, x_obs, "x_obs")
    if x_obs.ndim != 2 or y.ndim != 2 or y.shape[1] != x_obs.shape[0]:
        raise ValueError(
            f"x_obs/y: expected shapes [M, {problem.dim_x}] and [B, M], received "
            f"{tuple(x_obs.shape)}, {tuple(y.shape)}"
        )
    xb = x_obs.unsqueeze(0).expand(y.shape[0], -1, -1)
    return field_marginal(problem, forward, xb, z, w, noise_var=sigma_y**2).log_prob(y)
