r"""B2 of the Meta Flow Matching benchmarks (Atanackovic et al., ICLR 2025, section 8): a
population-dependent affine map with exact answers.

:math:`p_0 = \mathcal N(\mu_i, \Sigma_i)`, target map
:math:`T_i(x) = \mu_i + 0.5 R(\mu_i)(x-\mu_i) + 0.5\tanh(\mu_i)`; the exact target law
:math:`\mathcal N(\mu_i + s_i, 0.25 R \Sigma_i R^\top)` is returned in ``extra``
(:func:`linear_map`), and :func:`linear_map_exact_field` gives the exact velocity field of the
straight, index-paired interpolant.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..._checks import check_int, check_seed
from ._common import _check_dtype, _check_sizes, _rotation
from .pairs import PopulationPairs

__all__ = ["linear_map", "linear_map_exact_field"]


def _map_params(mu: Tensor) -> tuple[Tensor, Tensor]:
    """``A [P, d, d]`` and ``b [P, d]`` with ``T(x) = A x + b`` for centres ``mu [P, d]``."""
    p, d = mu.shape
    ang = mu.norm(dim=-1)
    rot = torch.eye(d, dtype=mu.dtype).expand(p, d, d).clone()
    rot[:, :2, :2] = _rotation(ang)
    a = 0.5 * rot
    b = mu - (a @ mu[..., None]).squeeze(-1) + 0.5 * torch.tanh(mu)
    return a, b


def linear_map(
    *,
    dim: int = 2,
    n_train: int = 200,
    n_cal: int = 50,
    n_test: int = 50,
    n_points: int = 512,
    seed: int = 0,
    dtype: torch.dtype | str | None = torch.float32,
) -> PopulationPairs:
    r"""B2: population-dependent affine map with exact answers.

    :math:`\mu_i \sim \mathcal N(0, 4I)`, :math:`\Sigma_i = LL^\top + 0.1I`,
    :math:`L_{jk} \sim \mathcal N(0, 0.5^2)`; :math:`x_0 \sim \mathcal N(\mu_i, \Sigma_i)`
    ``[n_points, dim]``; :math:`x_1 = T_i(x_0) = A_i x_0 + b_i` with :math:`A_i = 0.5 R(\mu_i)`
    (rotation by :math:`\lVert\mu_i\rVert` in the first two coordinates) and
    :math:`b_i = \mu_i - A_i\mu_i + 0.5\tanh\mu_i`. ``extra`` holds ``A [P,d,d]``, ``b [P,d]``
    and the exact target law ``target_mean [P,d]``, ``target_cov [P,d,d]``. ``dim >= 2``,
    ``n_points >= 2``.
    The ``P = n_train + n_cal + n_test`` populations are drawn from one seeded stream in a
    batch, so another split size changes every population, the test ones included: to vary
    ``n_train`` against one test set, draw once with the largest sizes and shorten
    ``splits["train"]``. ``dtype`` a floating dtype or its name; ``None`` keeps the
    generator's float64 values.
    """
    dim = check_int("dim", dim, minimum=2)
    n_points = check_int("n_points", n_points, minimum=2)
    seed = check_seed("seed", seed)
    dtype = _check_dtype(dtype)
    p = _check_sizes(n_train=n_train, n_cal=n_cal, n_test=n_test)
    gen = torch.Generator().manual_seed(seed)
    mu = 2.0 * torch.randn(p, dim, generator=gen, dtype=torch.float64)
    lmat = 0.5 * torch.randn(p, dim, dim, generator=gen, dtype=torch.float64)
    cov = lmat @ lmat.mT + 0.1 * torch.eye(dim, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    z = torch.randn(p, n_points, dim, generator=gen, dtype=torch.float64)
    x0 = mu[:, None, :] + z @ chol.mT
    a, b = _map_params(mu)
    x1 = x0 @ a.mT + b[:, None, :]
    splits = {
        "train": list(range(n_train)),
        "cal": list(range(n_train, n_train + n_cal)),
        "test": list(range(n_train + n_cal, p)),
    }
    return PopulationPairs(
        name=f"B2-linear-d{dim}",
        source=list(x0.to(dtype)),
        target=list(x1.to(dtype)),
        source_id=torch.arange(p),
        splits=splits,
        paired=True,
        extra={
            "A": a,
            "b": b,
            "source_mean": mu,
            "source_cov": cov,
            "target_mean": mu + 0.5 * torch.tanh(mu),
            "target_cov": a @ cov @ a.mT,
        },
    )


def linear_map_exact_field(x: Tensor, t: Tensor, a: Tensor, b: Tensor) -> Tensor:
    r"""Exact marginal velocity of the straight, index-paired interpolant for ``x1 = A x0 + b``.

    With :math:`M_t = (1-t)I + tA`, :math:`x_t = M_t x_0 + t b` and
    :math:`u = (A - I)x_0 + b`, so :math:`v_t(x) = (A-I)M_t^{-1}(x - tb) + b`.
    Shapes: ``x [N, d]``, ``t`` scalar or ``[N]``, ``a [d, d]``, ``b [d]`` -> ``[N, d]``; other
    shapes are refused (``ValueError``; a non-tensor ``x``, ``a`` or ``b``: ``TypeError``).
    Returned in the dtype of ``x``, ``a`` and ``b`` promoted (the default float dtype for
    integer ones; float16 / bfloat16 are solved in float32).

    Where :math:`M_t` is (nearly) singular the straight paths cross at one point and the field
    is unbounded: for :func:`linear_map`'s :math:`A = 0.5 R(\mu)`, :math:`\det M_t` comes near
    0 at :math:`t \approx 2/3` when :math:`\lVert\mu\rVert` is near :math:`\pi` (mod
    :math:`2\pi`), a half turn (48 of 300 default pairs have :math:`\min_t \det M_t < 10^{-2}`).
    A time at which :math:`M_t` is exactly singular is a ``ValueError``.
    """
    for name, v in (("x", x), ("a", a), ("b", b)):
        if not isinstance(v, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, received {type(v).__name__}")
    if x.ndim != 2:
        raise ValueError(f"x: expected points [N, d], received shape {tuple(x.shape)}")
    n, d = x.shape
    # other shapes broadcast silently: x [d] gave [d, d], b [1] added b[0] to every coordinate
    if tuple(a.shape) != (d, d):
        raise ValueError(f"a: expected [{d}, {d}] for x [N, {d}], received {tuple(a.shape)}")
    if tuple(b.shape) != (d,):
        raise ValueError(f"b: expected [{d}] for x [N, {d}], received {tuple(b.shape)}")
    # the dtype of the result: x's, a's and b's promoted, and floating (the time of integer
    # points was cast to x's integer dtype: t = 0.5 read as 0, a wrong field silently)
    out = torch.promote_types(torch.promote_types(x.dtype, a.dtype), b.dtype)
    if not out.is_floating_point:
        out = torch.get_default_dtype()
    # solved in float32 at least (torch's solve has no float16 / bfloat16 kernel)
    work = torch.promote_types(out, torch.float32)
    try:  # a str raised torch's "new(): invalid data type 'str'"
        t = torch.as_tensor(t, dtype=work, device=x.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"t: expected a time: a number, or a tensor [{n}], received {type(t).__name__}"
        ) from err
    if t.ndim > 1 or t.numel() not in (1, n):
        raise ValueError(
            f"t: expected a scalar or [{n}] (one per point), received {tuple(t.shape)}"
        )
    t = t.reshape(-1, 1, 1)
    x, a, b = (v.to(work) for v in (x, a, b))
    eye = torch.eye(d, dtype=work, device=x.device)
    m = (1 - t) * eye + t * a
    rhs = (x - t[:, :, 0] * b)[..., None]
    try:
        x0 = torch.linalg.solve(m.expand(x.shape[0], d, d), rhs)[..., 0]
    except torch.linalg.LinAlgError as err:  # was torch's raw "input matrix is singular"
        raise ValueError(
            "t/a: M_t = (1-t)I + tA is singular at a given time t: straight paths of the "
            "map x1 = A x0 + b from different x0 meet there, where the field is not defined "
            "(no velocity to return); pass other times"
        ) from err
    return (x0 @ (a - eye).mT + b).to(out)
