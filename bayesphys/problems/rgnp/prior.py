"""Draws from the uniform prior boxes of the Random Grid Neural Processes problems
(Vadeboncoeur et al., ICML 2023): :func:`sample_prior` (torch, for training) and the numpy draw
behind the seeded test sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..._checks import check_int
from ..._device import resolve_dtype

__all__ = ["sample_prior"]


def sample_prior(
    problem: Any,
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | str | None = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """``n`` draws ``(z [n, dim_z], w [n, dim_w])`` from the uniform prior boxes (torch).

    ``problem``: a :class:`PoissonProblem` / :class:`BurgersProblem` (or any object with the
    prior boxes ``z_low, z_high, w_low, w_high``); ``n >= 0`` (int); ``dtype`` a floating
    dtype, its name (``"float64"``) or ``None`` (float64, the package default; the default
    argument is float32); ``generator`` a ``torch.Generator`` or ``None`` (torch's global
    stream; another is a ``TypeError``)."""
    missing = [a for a in ("z_low", "z_high", "w_low", "w_high") if not hasattr(problem, a)]
    if missing:
        raise TypeError(
            f"problem: expected a problem with prior boxes (e.g. PoissonProblem()), received "
            f"{type(problem).__name__} {problem!r} without {missing}"
        )
    n = check_int("n", n, minimum=0)
    dtype = resolve_dtype(dtype)
    if generator is not None and not isinstance(generator, torch.Generator):
        # a seed passed here failed inside torch.rand with its list of signatures
        raise TypeError(
            f"generator: expected a torch.Generator or None, received "
            f"{type(generator).__name__} (for a seed, pass torch.Generator().manual_seed(seed))"
        )

    def box(lo, hi):
        lo_t = torch.as_tensor(lo, dtype=dtype, device=device)
        hi_t = torch.as_tensor(hi, dtype=dtype, device=device)
        u = torch.rand((n, len(lo)), generator=generator, dtype=dtype, device=device)
        return lo_t + (hi_t - lo_t) * u

    return box(problem.z_low, problem.z_high), box(problem.w_low, problem.w_high)


def _prior_draw(problem, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    z = rng.uniform(problem.z_low, problem.z_high, size=(n, problem.dim_z))
    w = rng.uniform(problem.w_low, problem.w_high, size=(n, problem.dim_w))
    return z, w
