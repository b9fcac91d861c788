r"""Fisher-Kolmogorov geometry: GliODIL face diffusivities from tissue maps, Gaussian seed.

.. math:: D_{i+1/2} = D_w\big(\overline{W}_{i+1/2} + \overline{G}_{i+1/2}/r\big),\quad
          \overline{W}_{i+1/2} = \tfrac12(W_i + W_{i+1}),\ r = D_w/D_g,

set to 0 when either cell has :math:`W + G <` ``threshold`` (CSF, background), and the initial
state :math:`c_0(x) = a \exp(-|x - x_0|^2 / 2w^2)`. Tissue maps and states ``[*grid]``. The
public names are re-exported by :mod:`bayesphys.problems.fisher_kolmogorov`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_real
from .._device import as_tensor, check_finite, check_finite_input
from .stencil import _check_step, _square, _underflows, face_average, shift

__all__ = ["tissue_faces", "initial_condition"]


def tissue_faces(
    wm: Tensor, gm: Tensor, *, dg_ratio: float = 10.0, threshold: float = 0.1
) -> list[Tensor]:
    r"""Unit face diffusivities :math:`\overline W + \overline G/r` per axis (times :math:`D_w`).

    ``wm``, ``gm``: finite tissue probability maps ``[*grid]``. Returns ``d`` tensors
    ``[*grid]``; entry ``i`` of tensor ``k`` is the face between ``i`` and ``i+1`` along axis
    ``k`` (0 on the last layer and wherever a neighbour is not tissue). ``dg_ratio > 0`` (0
    gave inf/NaN faces), ``threshold`` finite.
    """
    dg_ratio = check_real("dg_ratio", dg_ratio, minimum=0.0, strict=True)
    threshold = check_real("threshold", threshold)
    # lists failed with AttributeError, complex maps inside torch's comparison
    wm = as_tensor("wm", wm, finite=False, real=True)
    gm = as_tensor("gm", gm, finite=False, real=True)
    if wm.shape != gm.shape:
        raise ValueError(
            f"gm: expected the shape of wm {tuple(wm.shape)}, received {tuple(gm.shape)}"
        )
    # a NaN voxel, even in the background, gave NaN faces (NaN * 0) and a NaN state after
    # the first step, reported only later and under another name (segment: "c")
    check_finite("wm", wm)
    check_finite("gm", gm)
    tissue = ((wm + gm) >= threshold).to(wm.dtype)
    out = []
    for k in range(wm.ndim):
        both = tissue * shift(tissue, k, 1, "zero")
        out.append((face_average(wm, k) + face_average(gm, k) / dg_ratio) * both)
    return out


def initial_condition(
    shape: Sequence[int],
    focus: Tensor,
    spacing: float,
    *,
    width: float = 3.0,
    amplitude: float = 0.5,
    origin: Sequence[float] | None = None,
) -> Tensor:
    r""":math:`c_0(x) = a \exp(-|x - x_0|^2 / 2w^2)` on the cell centres ``origin + (i + 1/2) h``.

    Lengths in mm. ``focus``: ``[d]`` real and finite (differentiable; a NaN or infinite
    coordinate is a ``ValueError``, except under a :mod:`torch.func` transform, whose values
    cannot be read), ``d = len(shape)``; ``origin``: ``d`` finite numbers (default zeros);
    ``spacing``, ``width > 0``, ``amplitude`` finite. Returns ``[*shape]``. A ``width`` whose
    square overflows or underflows float64 (e.g. 1e200, 1e-200) is divided into the distances
    instead: a flat state ``a`` for a huge width; for a tiny one, 0 off the focus (``a`` on it).
    """
    return _initial_condition(
        shape, focus, spacing, width=width, amplitude=amplitude, origin=origin, finite=True
    )


def _initial_condition(
    shape: Sequence[int],
    focus: Tensor,
    spacing: float,
    *,
    width: float,
    amplitude: float,
    origin: Sequence[float] | None,
    finite: bool,
) -> Tensor:
    """:func:`initial_condition`; with ``finite=False`` a non-finite tensor ``focus`` passes
    (a NaN state: the glioma model's loss at a NaN trial point stays NaN by design)."""
    _check_step("spacing", spacing)
    _check_step("width", width)
    if not isinstance(amplitude, (Tensor, np.ndarray)):
        check_real("amplitude", amplitude)
    # an int or None failed with "object is not iterable", () inside torch.meshgrid
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(
            "shape: expected a sequence of grid sizes, one per axis (e.g. (64, 64)), "
            f"received {shape!r}"
        )
    shape = tuple(check_int("shape", n, minimum=1) for n in shape)
    if not shape:
        raise ValueError("shape: expected at least one axis (e.g. (64, 64)), received ()")
    if not isinstance(focus, Tensor):  # numbers: finite (NaN gave a NaN state silently)
        focus = as_tensor("focus", focus)
    # complex and bool foci failed inside torch.arange ("arange_cpu" not implemented)
    if focus.is_complex() or focus.dtype == torch.bool:
        raise TypeError(f"focus: expected real coordinates (mm), received {focus.dtype}")
    if focus.shape != (len(shape),):
        raise ValueError(
            f"focus: expected {len(shape)} coordinates (one per axis of shape {shape}), "
            f"received shape {tuple(focus.shape)}"
        )
    if finite:  # a NaN focus gave a NaN state, an infinite one a zero state, silently
        check_finite_input("focus", focus)
    if isinstance(origin, (str, bytes)):  # a string was iterated into characters
        raise TypeError(f"origin: expected {len(shape)} numbers (mm), received {origin!r}")
    origin = [0.0] * len(shape) if origin is None else list(origin)
    if len(origin) != len(shape):
        raise ValueError(f"origin: expected {len(shape)} coordinates, received {len(origin)}")
    origin = [  # 0-d tensors / numpy scalars as numbers
        check_real(f"origin[{k}]", v.item() if getattr(v, "ndim", None) == 0 else v)
        for k, v in enumerate(origin)
    ]
    axes = [
        origin[k] + (torch.arange(n, dtype=focus.dtype, device=focus.device) + 0.5) * spacing
        for k, n in enumerate(shape)
    ]
    grids = torch.meshgrid(*axes, indexing="ij")
    w2 = _square(width)
    if isinstance(w2, float) and (_underflows(w2) or math.isinf(w2)):
        # width**2 raised an OverflowError naming no argument past about 1.3e154 (e.g. 1e200)
        # and underflowed to 0 below about 1.5e-154 (0/0 = NaN at a focus on a cell centre):
        # the distances in widths, squared (the same Gaussian, no square of the width)
        r2 = sum(((g - focus[k]) / width) ** 2 for k, g in enumerate(grids))
        return amplitude * torch.exp(-0.5 * r2)
    r2 = sum((g - focus[k]) ** 2 for k, g in enumerate(grids))
    return amplitude * torch.exp(-r2 / (2 * w2))
