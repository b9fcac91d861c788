r"""Input checks of a :class:`~bayesphys.neural_process.RandomGridNP` (Vadeboncoeur et al.,
ICML 2023): point sets ``[N, dim_x]`` inside the problem's domain, batches of parameters
``[B, dim]``, the noisy labelled sets of ``fit(data=...)`` and the inputs of the forward and
inverse posteriors, each returned as tensors of the model's dtype on its device (errors name the
argument).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._checks import as_scalar, check_keys, check_real
from .._device import ArrayLike, as_tensor
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from .grids import check_points

__all__ = [
    "DATA_KEYS",
    "DATA_OPTIONAL",
    "as_points",
    "as_batch",
    "check_data",
    "parameter_batches",
    "inverse_inputs",
    "check_off_boundary",
    "check_outputs",
    "warn_outside_prior",
    "BOUNDARY_D",
]

#: keys of ``fit(data=...)``: the required sets, the optional noise level, and the noise-free
#: values that :func:`~bayesphys.problems.rgnp.poisson_sensor_data` also returns (not used)
DATA_KEYS: tuple[str, ...] = ("x_obs", "y", "z", "w")
DATA_OPTIONAL: tuple[str, ...] = ("sigma_y", "u_obs")

#: points whose boundary factor ``|D(x)|`` is below this are refused by the inverse model's
#: inputs: the transformed value :math:`(u - B)/D` is undefined or dominated by rounding there
BOUNDARY_D = 1e-6


def as_points(name: str, x: Any, problem: Any, dtype: torch.dtype, device: Any) -> Tensor:
    """Points ``[N, dim_x]`` (``[N]`` in 1-D) inside the domain of ``problem``."""
    t = as_tensor(name, x, dtype=dtype, device=device)
    if t.ndim == 1 and problem.dim_x == 1:
        t = t.unsqueeze(-1)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected shape [N, {problem.dim_x}], received {tuple(t.shape)}")
    return check_points(name, t, problem.lower, problem.upper)


def as_batch(name: str, v: Any, dim: int, dtype: torch.dtype, device: Any) -> Tensor:
    """A batch ``[B >= 1, dim]`` (a single ``[dim]`` as a batch of one)."""
    t = as_tensor(name, v, dtype=dtype, device=device)
    given = tuple(t.shape)  # named in the error as passed, not as reshaped
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[-1] != dim or t.shape[0] == 0:
        raise ValueError(f"{name}: expected shape [{dim}] or [B, {dim}], received {given}")
    return t


def check_data(
    data: Mapping[str, Any], problem: Any, dtype: torch.dtype, device: Any
) -> dict[str, Tensor]:
    """The noisy labelled sets of ``fit(data=...)`` as tensors: ``x_obs [M, dim_x]``,
    ``y [n, M]``, ``z [n, dim_z]``, ``w [n, dim_w]`` and ``sigma_y > 0`` (default the
    problem's)."""
    check_keys("data", data, DATA_KEYS, DATA_OPTIONAL, hint="u_obs is accepted and not used")
    p, dt, dev = problem, dtype, device
    x_obs = as_points("data['x_obs']", data["x_obs"], p, dt, dev)
    y = as_tensor("data['y']", data["y"], dtype=dt, device=dev, ndim=2)
    z = as_batch("data['z']", data["z"], p.dim_z, dt, dev)
    w = as_batch("data['w']", data["w"], p.dim_w, dt, dev)
    if y.shape[1] != x_obs.shape[0] or not (y.shape[0] == z.shape[0] == w.shape[0] >= 1):
        raise ValueError(
            f"data: expected y [n, {x_obs.shape[0]}], z [n, {p.dim_z}], w [n, {p.dim_w}], "
            f"received {tuple(y.shape)}, {tuple(z.shape)}, {tuple(w.shape)}"
        )
    sy = as_scalar(data.get("sigma_y", p.sigma_y))
    sy = check_real("data['sigma_y']", sy, minimum=0.0, strict=True)
    return {"x_obs": x_obs, "y": y, "z": z, "w": w, "sigma_y": sy}


def parameter_batches(
    z: ArrayLike, w: ArrayLike, problem: Any, dtype: torch.dtype, device: Any
) -> tuple[Tensor, Tensor]:
    """``z [B, dim_z]`` and ``w [B, dim_w]`` (each also ``[dim]``); a single ``z`` or ``w``
    (or a batch of one) is shared by the other's ``B`` rows."""
    p = problem
    zt = as_batch("z", z, p.dim_z, dtype, device)
    wt = as_batch("w", w, p.dim_w, dtype, device)
    if zt.shape[0] == 1 and wt.shape[0] > 1:
        zt = zt.expand(wt.shape[0], -1)
    elif wt.shape[0] == 1 and zt.shape[0] > 1:
        wt = wt.expand(zt.shape[0], -1)
    if zt.shape[0] != wt.shape[0]:
        raise ValueError(f"z/w: expected equal batch sizes, received {zt.shape[0]}, {wt.shape[0]}")
    return zt, wt


def warn_outside_prior(where: str, problem: Any, values: tuple[tuple[str, Tensor], ...]) -> None:
    """One ``UserWarning`` at the user's line when any row of the given parameters
    (``("z", [B, dim_z])`` / ``("w", [B, dim_w])``) lies outside the problem's prior box
    ``[z_low, z_high]`` / ``[w_low, w_high]`` (beyond 1e-6 of the box's width): the networks
    were trained on draws from that box only, and outside it their means and variances are
    extrapolations: nothing makes their variances widen, and no calibration holds there."""
    parts = []
    for name, t in values:
        lo = torch.tensor(getattr(problem, f"{name}_low"), dtype=t.dtype, device=t.device)
        hi = torch.tensor(getattr(problem, f"{name}_high"), dtype=t.dtype, device=t.device)
        tol = 1e-6 * (hi - lo) + 1e-12 * (hi.abs() + lo.abs())
        out = ((t < lo - tol) | (t > hi + tol)).any(-1)
        n = int(out.sum())
        if n:
            i = int(out.nonzero()[0, 0])
            row = [round(float(v), 6) for v in t[i].reshape(-1)[:6]]
            box = ", ".join(f"[{a:.6g}, {b:.6g}]" for a, b in zip(lo.tolist(), hi.tolist()))
            parts.append(
                f"{name}: {n} of {t.shape[0]} rows outside the prior box {box} "
                f"(e.g. row {i}: {row})"
            )
    if parts:
        warnings.warn(
            f"{where}: {'; '.join(parts)}. The model was trained on parameters drawn from that "
            "box only: outside it the posterior is an extrapolation of the networks, its "
            "uncertainty neither widens nor is calibrated there",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


def inverse_inputs(
    x: ArrayLike,
    u: ArrayLike,
    w: ArrayLike,
    transformed: bool,
    problem: Any,
    dtype: torch.dtype,
    device: Any,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The inputs of the inverse model as ``x [B, N, dim_x]``, ``u [B, N]`` (the transformed
    field :math:`\tilde u = (u - B)/D`; ``transformed``: given so) and ``w [B, dim_w]``, from
    ``x`` ``[N, dim_x]``/``[B, N, dim_x]``, ``u`` ``[N]``/``[B, N]`` and ``w``
    ``[dim_w]``/``[B, dim_w]`` (a batch of one is broadcast). Points on or next to the
    Dirichlet boundary (:math:`|D(x)| <` :data:`BOUNDARY_D`) are refused unless
    ``transformed`` (``ValueError`` naming how many, the first and its :math:`D`)."""
    p = problem
    xt = as_tensor("x", x, dtype=dtype, device=device)
    given = tuple(xt.shape)  # named in the error as passed, not as reshaped
    if xt.ndim == 1 and p.dim_x == 1:
        xt = xt.unsqueeze(-1)
    if xt.ndim == 2:
        xt = xt.unsqueeze(0)
    if xt.ndim != 3 or xt.shape[-1] != p.dim_x:
        raise ValueError(f"x: expected shape [N, {p.dim_x}] or [B, N, {p.dim_x}], received {given}")
    check_points("x", xt, p.lower, p.upper)
    ut = as_tensor("u", u, dtype=dtype, device=device)
    if ut.ndim == 1:
        ut = ut.unsqueeze(0)
    if ut.ndim != 2:
        raise ValueError(f"u: expected shape [N] or [B, N], received {tuple(ut.shape)}")
    wt = as_batch("w", w, p.dim_w, dtype, device)
    sizes = (xt.shape[0], ut.shape[0], wt.shape[0])
    if len(set(sizes) - {1}) > 1 or 0 in sizes:
        raise ValueError(
            f"x/u/w: expected equal batch sizes B >= 1 (or 1, broadcast), received {sizes}"
        )
    bsz = max(sizes)
    xt, ut, wt = xt.expand(bsz, -1, -1), ut.expand(bsz, -1), wt.expand(bsz, -1)
    if ut.shape[1] != xt.shape[1]:
        raise ValueError(
            f"u: expected {xt.shape[1]} values per set (one per point), "
            f"received shape {tuple(ut.shape)}"
        )
    if not transformed:
        b, d = p.transform(xt, wt)
        check_off_boundary("x", xt, d)
        ut = (ut - b) / d
    return xt, ut, wt


def check_off_boundary(name: str, x: Tensor, d: Tensor) -> None:
    """``ValueError`` naming ``name`` when a point of ``x`` ``[B, N, dim_x]`` has a boundary
    factor ``|d|`` ``[B, N]`` below :data:`BOUNDARY_D` (how many, the first set holding one,
    counted from 0 over all ``B`` sets, and the point with its :math:`D`)."""
    near = d.abs() < BOUNDARY_D  # [B, N]
    if bool(near.any()):
        # which points and how close: "on the boundary" alone read as a wrong claim for a
        # point at t = 3e-4 next to a Burgers wall (D = t sin(pi x) ~ 9e-7 there)
        i = int(near.any(-1).nonzero()[0, 0])  # the first set holding one
        j = int(near[i].nonzero()[0, 0])
        where = f" of set {i}" if near.shape[0] > 1 else ""
        raise ValueError(
            f"{name}: {int(near[i].sum())} of the {near.shape[1]} points{where} lie on or next "
            f"to the Dirichlet boundary, where |D(x)| < {BOUNDARY_D:g} (u = B + D u~ is "
            f"fixed there: the value carries no information on z), e.g. "
            f"{x[i, j].tolist()} with D = {float(d[i, j]):.3g}; drop them"
        )


def check_outputs(
    post: Any,
    names: str,
    network: str,
    dtype: torch.dtype,
    inputs: tuple[tuple[str, Tensor], ...],
    problem: Any,
) -> None:
    """``ValueError`` naming ``names`` when a posterior could not be formed (``post`` ``None``:
    a Cholesky factor of the network's overflowing outputs failed) or its mean or variances
    are not finite (an overflow in ``dtype``: a NaN or infinite variance was returned without
    a word). ``inputs``: ``(name, tensor)`` pairs whose largest magnitudes the message gives;
    ``problem``: its prior boxes are named when given."""
    if post is not None and bool(torch.isfinite(post.mean).all()):
        if bool(torch.isfinite(post.variance).all()):
            return
    sizes = ", ".join(f"|{n}| up to {float(t.abs().max()):.3g}" for n, t in inputs)
    box = ""
    if problem is not None:
        box = (
            f"; the prior box is z in [{min(problem.z_low):g}, {max(problem.z_high):g}], "
            f"w in [{min(problem.w_low):g}, {max(problem.w_high):g}]"
        )
    raise ValueError(
        f"{names}: the {network} network's mean or variances are not finite in {dtype} for "
        f"these inputs ({sizes}{box}): no Gaussian can be formed. Give values of the order the "
        "model was trained on" + (", or use a float64 model" if dtype != torch.float64 else "")
    )
