r"""Argument checks of ProbConserv's Step-2 update (:mod:`~bayesphys.probconserv.update`):
covariances, per-slice masses, the constraint noise ``sigma_g``, and the error for a
constraint covariance :math:`G\Sigma G^\top + \sigma_G^2 I` without a Cholesky factor."""

from __future__ import annotations

import math
import numbers

import torch
from linear_operator.operators import LinearOperator
from torch import Tensor

from .._checks import check_broadcasts
from .._device import as_tensor

__all__ = [
    "check_covariance",
    "check_sigma_g",
    "check_sigma_g_shape",
    "check_slice_mass",
    "refuse_not_pd",
]


def check_covariance(name: str, cov) -> None:
    """Refuse a ``cov`` that is no ``LinearOperator`` or real tensor of square matrices
    ``[*batch, N, N]`` (a list failed on a missing attribute; a non-square tensor was
    multiplied as if it were a covariance)."""
    if not isinstance(cov, LinearOperator | Tensor):
        raise TypeError(
            f"{name}: expected a LinearOperator or a tensor [*batch, N, N], received "
            f"{type(cov).__name__}"
        )
    if isinstance(cov, Tensor) and (cov.is_complex() or cov.dtype == torch.bool):
        raise TypeError(f"{name}: expected real values, received dtype {cov.dtype}")
    if cov.dim() < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(
            f"{name}: expected square matrices [*batch, N, N], received shape {tuple(cov.shape)}"
        )


def check_slice_mass(mass, batch: torch.Size, dtype: torch.dtype, device) -> Tensor:
    """``mass`` as a tensor of ``dtype`` on ``device`` that broadcasts to the posterior's
    ``batch`` shape ``[B, nt]`` (one value per function and time slice), or a clear error."""
    mass = as_tensor("mass", mass, dtype=dtype, device=device)
    check_broadcasts(
        "mass",
        mass.shape,
        batch,
        f"shape {tuple(batch)} (one value per function and time slice) or broadcastable to it",
    )
    return mass


def check_sigma_g(sigma_g) -> None:
    """Refuse a ``sigma_g`` that is no number or real tensor, or holds NaN or negative values
    (``inf`` is allowed: no update)."""
    if isinstance(sigma_g, bool) or (isinstance(sigma_g, Tensor) and sigma_g.dtype == torch.bool):
        raise TypeError(f"sigma_g: expected a number >= 0 or a tensor, received {sigma_g!r}")
    if not isinstance(sigma_g, numbers.Real):
        t = as_tensor("sigma_g", sigma_g, finite=False)
        if t.is_complex():  # bool was refused above: every other dtype holds real values
            raise TypeError(f"sigma_g: expected real values, received dtype {t.dtype}")
        bad = bool((torch.isnan(t) | (t < 0)).any())
    else:
        bad = not float(sigma_g) >= 0
    if bad:
        raise ValueError(f"sigma_g: expected non-negative values (or inf), received {sigma_g!r}")


def check_sigma_g_shape(sigma_g, shape: tuple[int, ...]) -> None:
    """Refuse a tensor ``sigma_g`` that does not broadcast to ``shape`` (batch x constraints)."""
    check_broadcasts(
        "sigma_g",
        torch.as_tensor(sigma_g).shape,
        shape,
        f"a number or values broadcastable to {tuple(shape)} (batch x constraints)",
    )


def refuse_not_pd(s_prior: Tensor, sig: Tensor, info: Tensor) -> None:
    """The ``ValueError`` for a ``G Sigma G^T + sigma_g^2 I`` without a Cholesky factor: an
    indefinite prior's, or (nearly dependent rows, e.g. two sensors' almost equal mass rows,
    with a ``sigma_g`` below round-off) one whose ``G Sigma G^T`` is singular to working
    precision and whose round-off negatives ``sigma_g^2`` does not lift."""
    failed = info.reshape(-1) > 0
    ev = torch.linalg.eigvalsh(s_prior.reshape(-1, *s_prior.shape[-2:])[failed])
    lo, hi = float(ev[:, 0].min()), float(ev[:, -1].max())
    round_off = 1e3 * torch.finfo(s_prior.dtype).eps * max(hi, 0.0)
    if lo < -round_off or hi <= 0:  # beyond round-off: the prior covariance is not PSD
        raise ValueError("G Sigma G^T + sigma_g^2 I: not positive definite")
    smallest = float(sig.reshape(-1, sig.shape[-1])[failed].min())
    raise ValueError(
        "G Sigma G^T + sigma_g^2 I: not positive definite to working precision for "
        f"{int(failed.sum())} batch entries: G Sigma G^T is singular there (eigenvalues from "
        f"{lo:.3e} to {hi:.3e}: its constraint rows are linearly dependent, or nearly so, under "
        f"the prior, e.g. two rows almost equal), and sigma_g = {smallest:.3e} is below its "
        f"round-off; give a sigma_g above about {math.sqrt(round_off):.1e}, "
        "or merge the dependent rows into one"
    )
