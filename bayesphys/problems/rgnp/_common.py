"""Helpers shared by the problems of Random Grid Neural Processes (Vadeboncoeur et al., ICML
2023): argument checks of the reference solvers and test sets, the batched tridiagonal solve
of both solvers' Newton steps, and the validation of a problem description's fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._checks import as_real_array, check_int, check_optional_seed, check_real, seed_or_draw
from ..._device import check_finite


def _seed(seed: Any) -> int:
    """``seed`` checked (an int ``>= 0``), or for ``None`` one drawn from torch's global stream:
    the package's ``seed=None`` (it was fresh OS entropy here, which ``torch.manual_seed``
    cannot repeat)."""
    seed = check_optional_seed("seed", seed, minimum=0)
    return seed_or_draw("seed", seed)


def _as_array(name: str, value: Any, *, ndim: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a finite float64 array (``ndim``: the allowed numbers of dimensions)."""
    arr = as_real_array(name, value)
    if ndim is not None and arr.ndim not in ndim:
        raise ValueError(
            f"{name}: expected {' or '.join(map(str, ndim))} dimensions, received shape {arr.shape}"
        )
    check_finite(name, arr)
    return arr


def _case_params(z: Any, w: Any, dim_z: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Solver inputs: ``z`` ``[dim_z]`` or ``[B, dim_z]``, ``w`` with ``B`` entries (``[B]``,
    ``[B, 1]``; a scalar for ``B = 1``), both finite."""
    z = np.atleast_2d(_as_array("z", z, ndim=(1, 2)))
    want = "dim_z" if dim_z is None else dim_z
    if z.shape[0] < 1 or z.shape[1] < 1 or (dim_z is not None and z.shape[1] != dim_z):
        raise ValueError(f"z: expected shape [{want}] or [B, {want}] (B >= 1), received {z.shape}")
    w = _as_array("w", w)
    if w.ndim > 2 or (w.ndim == 2 and w.shape[1] != 1):
        # a [2, 2] w was flattened into four cases' values
        raise ValueError(
            f"w: expected shape [B] or [B, 1] (one value per case), received {w.shape}"
        )
    w = w.reshape(-1)
    if w.shape[0] != z.shape[0]:
        raise ValueError(f"z/w: expected the same batch size, received {z.shape} and {w.shape}")
    return z, w


def _thomas(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Batched tridiagonal solve: sub ``a``, diag ``b``, super ``c``, rhs ``d``, all ``[B, n]``."""
    n = b.shape[1]
    cp = np.empty_like(b)
    dp = np.empty_like(b)
    cp[:, 0] = c[:, 0] / b[:, 0]
    dp[:, 0] = d[:, 0] / b[:, 0]
    for i in range(1, n):
        m = b[:, i] - a[:, i] * cp[:, i - 1]
        cp[:, i] = c[:, i] / m
        dp[:, i] = (d[:, i] - a[:, i] * dp[:, i - 1]) / m
    out = np.empty_like(b)
    out[:, -1] = dp[:, -1]
    for i in range(n - 2, -1, -1):
        out[:, i] = dp[:, i] - cp[:, i] * out[:, i + 1]
    return out


def _real_tuple(name: str, value: Any, n: int) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name}: expected {n} real numbers, received {value!r}")
    try:
        vals = tuple(value)
    except TypeError:
        raise TypeError(
            f"{name}: expected a sequence of {n} real numbers, received {type(value).__name__}"
        ) from None
    if len(vals) != n:
        raise ValueError(f"{name}: expected {n} values, received {len(vals)} ({value!r})")
    return tuple(check_real(name, v) for v in vals)


def _check_problem(p: Any, fixed: dict[str, Any]) -> None:
    """Validate and normalise (tuples of floats) the fields of a frozen problem dataclass.

    ``fixed``: the fields set by the equation and its exact boundary transform (name, domain,
    sizes, derivative streams); another value would describe a problem this class does not
    solve, so it is refused. Prior boxes need ``low <= high`` with the sizes ``dim_z``/``dim_w``,
    ``sigma_y > 0``, finite values throughout.
    """
    cls = type(p).__name__
    setf = object.__setattr__  # frozen dataclass
    for name in ("dim_x", "dim_z", "dim_w"):
        setf(p, name, check_int(name, getattr(p, name), minimum=1))
    for name in ("lower", "upper"):
        setf(p, name, _real_tuple(name, getattr(p, name), len(fixed[name])))
    if isinstance(p.coords, (str, bytes)) or not all(isinstance(c, str) for c in p.coords):
        raise TypeError(f"coords: expected a tuple of names, received {p.coords!r}")
    setf(p, "coords", tuple(p.coords))
    if isinstance(p.derivatives, (str, bytes)):
        raise TypeError(
            f"derivatives: expected a tuple of stream names, received {p.derivatives!r}"
        )
    setf(p, "derivatives", tuple(p.derivatives))
    for name, want in fixed.items():
        got = getattr(p, name)
        if got != want:
            raise ValueError(
                f"{name}: {cls} has {name} = {want!r} (fixed by its equation and boundary "
                f"transform), received {got!r}"
            )
    for box, dim in (("z", p.dim_z), ("w", p.dim_w)):
        lo = _real_tuple(f"{box}_low", getattr(p, f"{box}_low"), dim)
        hi = _real_tuple(f"{box}_high", getattr(p, f"{box}_high"), dim)
        if any(a > b for a, b in zip(lo, hi)):
            raise ValueError(
                f"{box}_low/{box}_high: expected {box}_low <= {box}_high in every entry, "
                f"received {lo}, {hi}"
            )
        setf(p, f"{box}_low", lo)
        setf(p, f"{box}_high", hi)
    setf(p, "sigma_y", check_real("sigma_y", p.sigma_y, minimum=0.0, strict=True))
