r"""Fisher-Kolmogorov tumour growth on tissue maps: face diffusivities, forward solver, residual.

.. math:: \partial_t c = \nabla\cdot(D(x)\nabla c) + \rho\, c(1-c), \qquad t\in[0, T],

with the GliODIL face-based diffusivity (Balcerak et al.; the ``D_minus_z`` bug of their
``get_D`` is not reproduced: every axis uses its own face maps): for a face between cells
:math:`i, i+1` along axis :math:`k`,

.. math:: D_{i+1/2} = D_w\big(\overline{W}_{i+1/2} + \overline{G}_{i+1/2}/r\big),\quad
          \overline{W}_{i+1/2} = \tfrac12(W_i + W_{i+1}),\ r = D_w/D_g,

set to 0 when either cell has :math:`W + G < 0.1` (CSF, background). Zero faces carry no flux:
the no-flux condition into CSF and through the skull, and the discrete operator conserves mass
exactly apart from the reaction term. Tensors: tissue maps ``[*grid]`` (``d`` = 1..3 axes),
states ``[*grid]`` (the forward solvers take one state, no batch dimension).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_real, did_you_mean
from .._device import as_tensor, check_finite, check_finite_input, check_on_device
from .._stack import user_stacklevel
from .stencil import (
    _check_div_flux,
    _check_on_device,
    _check_step,
    _div_flux,
    face_average,
    shift,
)

__all__ = [
    "tissue_faces",
    "initial_condition",
    "fk_forward",
    "fk_residual",
    "stable_steps",
    "max_step",
    "max_steps",
    "fk_forward_tangent",
    "logistic_step",
    "SCHEMES",
]


def tissue_faces(
    wm: Tensor, gm: Tensor, *, dg_ratio: float = 10.0, threshold: float = 0.1
) -> list[Tensor]:
    r"""Unit face diffusivities :math:`\overline W + \overline G/r` per axis (multiply by :math:`D_w`).

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
    r""":math:`c_0(x) = a \exp(-|x - x_0|^2 / 2w^2)` on the cell centres ``origin + (i + 1/2) h`` (mm).

    ``focus``: ``[d]`` real, in mm (differentiable; finite when not a tensor), ``d =
    len(shape)``; ``origin``: ``d`` finite numbers (default zeros); ``spacing``, ``width > 0``, ``amplitude`` finite. Returns ``[*shape]``.
    """
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
    r2 = sum((g - focus[k]) ** 2 for k, g in enumerate(grids))
    return amplitude * torch.exp(-r2 / (2 * width**2))


#: step counts above this are impractical: fk_forward's refusal names them (to 3 digits) rather
#: than as a bound to use, and stable_steps refuses them
_IMPRACTICAL_STEPS = 10**9


def stable_steps(
    t_end: float,
    d_max: float,
    spacing: float,
    ndim: int,
    safety: float = 0.8,
    *,
    rho: float = 0.0,
) -> int:
    r"""Number of explicit steps with :math:`\Delta t \le` safety :math:`\cdot h^2/(2 d D_{max})`
    (``t_end >= 0``, ``d_max``, ``spacing``, ``safety > 0``, ``ndim >= 1``; ``rho = 0``).

    That is the diffusion bound of :func:`max_step` for faces :math:`\le 1` (both schemes);
    it ignores the reaction, which ``"strang"`` integrates exactly. ``rho`` (default 0: the
    diffusion bound alone, the counts of every earlier call) sizes the steps for
    ``scheme="euler"``'s reaction too: :math:`\Delta t \le` safety :math:`/(A + |\rho|)`,
    :math:`A = 2 d D_{max}/h^2`, within :func:`max_step`'s Euler bound
    :math:`2/(2A + |\rho|)` and small enough for an Euler step to keep :math:`c` in
    :math:`[0, 1]` (:math:`\Delta t(A + \rho) \le 1`). With :math:`D_{max} = 0.001`,
    :math:`\rho = 10`, :math:`h = 1`, :math:`T = 1`, ``d = 1`` the diffusion bound alone gives 1
    step, which :func:`fk_forward` refuses (it needs 6), and ``rho=10`` gives 13.
    ``t_end = 0`` gives 1 step.

    Raises
    ------
    ValueError
        A count above ``1e9`` (a huge ``t_end`` or ``rho``, a tiny ``spacing``, or a bound
        that underflows to 0), which :func:`fk_forward`'s refusal also calls impractical: its
        size to three digits (``above 1.8e+308`` past the float maximum), naming ``t_end``,
        ``d_max``, ``rho`` and ``spacing``.
    """
    t_end = check_real("t_end", t_end, minimum=0.0)
    d_max = check_real("d_max", d_max, minimum=0.0, strict=True)
    spacing = check_real("spacing", spacing, minimum=0.0, strict=True)
    ndim = check_int("ndim", ndim, minimum=1)
    safety = check_real("safety", safety, minimum=0.0, strict=True)
    rho = abs(check_real("rho", rho))
    try:
        h2 = spacing**2
    except OverflowError:  # a float power raises where a product would give inf
        h2 = math.inf
    dt_max = safety * h2 / (2 * ndim * max(d_max, 1e-12))
    if rho > 0:  # the Euler reaction's share (rho = 0: the expression above, unchanged)
        rate = 2 * ndim * max(d_max, 1e-12) / h2 if h2 > 0 else math.inf  # h2 underflowed
        dt_max = safety / (rate + rho)
    if t_end == 0:
        return 1
    # a bound that underflows to 0 divided by zero; a count above the float maximum is inf,
    # which math.ceil refused with an OverflowError naming no argument; a finite count above
    # _IMPRACTICAL_STEPS (e.g. 2.5e20) was returned, where fk_forward calls it impractical
    need = t_end / dt_max if dt_max > 0 else math.inf
    if need > _IMPRACTICAL_STEPS:
        count = f"about {need:.3g}" if math.isfinite(need) else "above 1.8e+308"
        raise ValueError(
            f"t_end, d_max, spacing, rho: a stable run needs {count} steps "
            f"(t_end={t_end:g} over a stable step of {dt_max:.4g} for d_max={d_max:g}, "
            f"|rho|={rho:g}, spacing={spacing:g}, ndim={ndim}), which these parameters make "
            f"impractical (more than {_IMPRACTICAL_STEPS:.0e}): check t_end, d_max, rho and "
            "spacing and their units"
        )
    return max(1, math.ceil(need))


SCHEMES = ("euler", "strang")


def _real_state(name: str, c: Tensor) -> Tensor:
    """A state ``c`` as a real tensor: tensors pass unchanged (differentiable), arrays and
    lists are converted (finite); a complex or bool one is a ``TypeError`` naming ``name`` (a
    list failed with ``AttributeError``, a complex state ran in complex arithmetic)."""
    if not isinstance(c, Tensor):
        c = as_tensor(name, c)
        if not c.is_floating_point():
            c = c.to(torch.get_default_dtype())
    if c.is_complex() or c.dtype == torch.bool:
        raise TypeError(f"{name}: expected a real state, received {c.dtype}")
    return c


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(
            f"scheme: expected one of {SCHEMES}, received {scheme!r}{did_you_mean(scheme, SCHEMES)}"
        )


def _check_time(t_end: float, steps: int) -> tuple[float, int]:
    # steps = 0 divided by zero, steps < 0 silently returned c0 (range(-3) is empty); a count
    # above _IMPRACTICAL_STEPS ran for hours or days without a word (t_end=0, steps=10**12
    # passed the stability check with dt = 0), where stable_steps refuses such a count
    t_end, steps = check_real("t_end", t_end, minimum=0.0), check_int("steps", steps, minimum=1)
    if steps > _IMPRACTICAL_STEPS:
        raise ValueError(
            f"steps: expected at most {_IMPRACTICAL_STEPS:.0e} explicit steps (more are "
            f"impractical: hours to days of solving), received {steps}; size them with "
            "stable_steps"
        )
    return t_end, steps


def _check_grid(c0: Tensor, faces: Sequence[Tensor], tissue: Tensor | None, spacing) -> float:
    """One face map per axis of ``c0``'s grid and a tissue mask of that grid; ``spacing > 0``
    (too few faces failed with an IndexError, a mask of another shape broadcast silently),
    both on ``c0``'s device (torch's error named neither)."""
    _check_step("spacing", spacing)
    grid = tuple(c0.shape[-len(faces) :]) if faces else ()
    if len(faces) == 0 or any(tuple(f.shape) != grid for f in faces):
        raise ValueError(
            "faces: expected one face map per grid axis, each of the grid's shape (as "
            f"tissue_faces returns), received {[tuple(f.shape) for f in faces]} for c0 of "
            f"shape {tuple(c0.shape)}"
        )
    if tissue is not None and tuple(tissue.shape) != grid:
        raise ValueError(
            f"tissue: expected the grid's shape {grid}, received {tuple(tissue.shape)}"
        )
    _check_on_device("faces", faces, c0.device, "c0")
    check_on_device("tissue", tissue, c0.device, "c0's")
    return spacing


def _check_rates_on_device(device: torch.device, of: str, **rates: Tensor | float) -> None:
    """``ValueError`` naming the first of ``rates`` (``dw``, ``rho``, ...) that is a tensor on
    another device than ``device`` (that of the argument ``of``), before the first product with
    it: torch's own error named neither the argument nor the devices. A 0-dim CPU tensor
    passes, as torch moves one itself; numbers and arrays pass."""
    for name, rate in rates.items():
        if not (isinstance(rate, Tensor) and rate.ndim == 0 and rate.device.type == "cpu"):
            check_on_device(name, rate, device, f"{of}'s")


def _as_float(v: Tensor | float) -> float:
    """The largest ``|v|`` of a number or tensor (a tensor is detached: the check below only
    sizes the time step)."""
    if isinstance(v, (Tensor, np.ndarray)):
        v = torch.as_tensor(v).detach()
        return float(v.abs().max()) if v.numel() else 0.0
    return abs(float(v))


def _lowest(v: Tensor | float) -> float:
    """The smallest entry of a number or tensor (NaN entries ignored; 0 for an empty one)."""
    if isinstance(v, (Tensor, np.ndarray)):
        v = torch.as_tensor(v).detach()
        v = v[~torch.isnan(v)] if v.is_floating_point() else v
        return float(v.min()) if v.numel() else 0.0
    return float(v)


def max_step(
    faces: Sequence[Tensor], dw: Tensor | float, rho: Tensor | float, spacing: float, scheme: str
) -> float:
    r"""A step size :math:`\Delta t` up to which :func:`fk_forward`'s ``scheme`` is stable
    (``inf``: no bound; NaN for a NaN ``dw`` or ``rho``).

    Diffusion (both schemes: an explicit Euler step
    :math:`c \leftarrow c + \Delta t\,\nabla\cdot(D\nabla c)`, rate
    :math:`a = D_w \max_i \sum_k (f_{k,i+1/2} + f_{k,i-1/2}) / h^2`, the sum over the ``2d``
    faces of cell ``i``): :math:`\Delta t \le 1/a` keeps the step's diagonal :math:`\ge 0`
    (monotone: no new extrema) and, by Gershgorin, every eigenvalue of the step in
    :math:`[-1, 1]`; it is sufficient, not necessary (a grid whose largest face sum is
    isolated is stable up to twice that). :math:`1/a \ge h^2/(2 d D_w \max f)`, the bound
    :func:`stable_steps` keeps ``safety`` = 0.8 of for :math:`D_w \le` ``d_max`` and faces
    :math:`\le 1`. ``"euler"`` also takes the reaction :math:`\Delta t\rho c(1-c)` in the same
    step: linearised at :math:`c = 1` it adds :math:`-\rho` to the eigenvalues, so
    :math:`\Delta t \le 2/(2a + |\rho|)` (the grid-scale mode at :math:`\Delta t = 1/a`
    grew by :math:`1 + \Delta t\rho` per step). That bound is stability, not the range
    :math:`[0, 1]`: an Euler step keeps :math:`c \le 1` only for :math:`\Delta t(a + \rho)
    \le 1`, so up to twice that step ``"euler"`` may overshoot 1 (``D_w = 0``,
    :math:`\Delta t\rho = 2`: 0.75 -> 1.125); :func:`stable_steps`' step keeps it on the
    benchmarks' settings (:math:`\Delta t\rho \le 0.31`). ``"strang"`` uses the exact flow
    :func:`logistic_step` and keeps :math:`1/a`. ``faces``: the face maps ``[*grid]`` per axis
    (as :func:`tissue_faces`); ``dw``, ``rho``: numbers or tensors (their largest magnitude is
    used); ``spacing > 0``; ``scheme`` one of :data:`SCHEMES` (anything else, e.g.
    ``"Euler"``, was given the larger ``"strang"`` bound).
    """
    bound = max_steps(
        faces,
        torch.tensor(_as_float(dw), dtype=torch.float64),
        torch.tensor(_as_float(rho), dtype=torch.float64),
        spacing,
        scheme,
    )
    return float(bound)


def max_steps(
    faces: Sequence[Tensor], dw: Tensor, rho: Tensor, spacing: float, scheme: str
) -> Tensor:
    r""":func:`max_step`'s bound for each pair of ``dw [n]`` and ``rho [n]`` (broadcast;
    float64 on the CPU, ``inf`` where there is no bound, NaN for a NaN ``dw`` or ``rho``), from
    one pass over the faces: the diffusion rate is linear in :math:`D_w` (e.g. every posterior
    draw of a fit at once)."""
    _check_scheme(scheme)
    _check_step("spacing", spacing)
    diag = None
    for k, f in enumerate(faces):
        fp = f.detach().abs().clone()
        if fp.shape[k]:  # div_flux never uses the last layer's face (an empty grid has none)
            fp.narrow(k, fp.shape[k] - 1, 1).zero_()
        term = fp + shift(fp, k, -1, "zero")
        diag = term if diag is None else diag + term
    face_sum = float(diag.max()) if diag is not None and diag.numel() else 0.0
    dw = torch.as_tensor(dw).detach().to("cpu", torch.float64).abs()
    rho = torch.as_tensor(rho).detach().to("cpu", torch.float64).abs()
    rate = dw * face_sum / spacing**2
    total, num = (2.0 * rate + rho, 2.0) if scheme == "euler" else (rate + 0 * rho, 1.0)
    bound = torch.where(total > 0, num / total.clamp_min(1e-300), math.inf)
    # a NaN rate has no bound: NaN, not inf (NaN > 0 is false, which read as "no bound")
    return torch.where(torch.isnan(total), math.nan, bound)


def _check_stable(
    faces: Sequence[Tensor],
    dw: Tensor | float,
    rho: Tensor | float,
    *,
    t_end: float,
    steps: int,
    spacing: float,
    scheme: str,
) -> None:
    """Refuse (numbers ``dw``, ``rho``: ``ValueError``) or flag (tensors: ``RuntimeWarning``,
    e.g. a fit or a sampler visiting an unstable :math:`D_w`, whose blown-up state its
    likelihood rejects) a step ``t_end / steps`` above :func:`max_step`."""
    limit = max_step(faces, dw, rho, spacing, scheme)
    tensors = isinstance(dw, (Tensor, np.ndarray)) or isinstance(rho, (Tensor, np.ndarray))
    # a negative D_w anti-diffuses, unstable at every step size; the bound reads |dw|, so a
    # tensor dw = -0.2 passed and blew up to ~1e46 without a word (numbers are refused on entry)
    low = _lowest(dw)
    if low < 0:
        msg = (
            f"dw: expected diffusivities >= 0, received a value of {low:g} (a negative D_w "
            "anti-diffuses: the state blows up at any step size)"
        )
        if tensors:
            warnings.warn(msg, RuntimeWarning, stacklevel=user_stacklevel())
            return
        raise ValueError(msg)
    # NaN: a NaN face, dw or rho (a NaN tensor rate passed as stable and gave a NaN state);
    # 0: an infinite one (the step count below divided by it)
    if math.isnan(limit) or limit == 0:
        bad = [k for k, f in enumerate(faces) if not bool(torch.isfinite(f).all())]
        if bad:  # read only here: a finite bound needs finite faces
            raise ValueError(
                "faces: expected finite face maps (as tissue_faces returns), received NaN/Inf "
                f"in faces{bad}"
            )
        a, r = _as_float(dw), _as_float(rho)
        if math.isfinite(a) and math.isfinite(r):  # finite rates and faces: an overflow
            msg = (
                f"dw, rho: the stability bound of these rates on this grid is 0 (dw={a:g}, "
                f"rho={r:g}, spacing={spacing:g}: the rate overflows float64), so no step "
                "count is stable"
            )
        else:
            msg = f"dw, rho: expected finite rates, received dw={a:g}, rho={r:g} (the state would be NaN)"
        if tensors:
            warnings.warn(msg, RuntimeWarning, stacklevel=user_stacklevel())
            return
        raise ValueError(msg)
    dt = t_end / steps
    if dt <= limit * (1 + 1e-12):
        return
    need = t_end / limit  # the fewest steps the check accepts, once rounded up
    # stable_steps sizes for diffusion only unless given the Euler scheme's reaction rate (its
    # diffusion-only count was too small where rho dominates, e.g. dw=0.001, rho=10, h=1)
    hint = (
        f"stable_steps(t_end, d_max, spacing, ndim, rho={_as_float(rho):g})"
        if scheme == "euler" and _as_float(rho) > 0
        else "stable_steps"
    )
    if need <= _IMPRACTICAL_STEPS:
        advice = f"use steps >= {math.ceil(need)} (e.g. {hint})"
    else:  # rho near the float maximum printed a 300-digit count (or overflowed: inf)
        count = f"about {need:.3g}" if math.isfinite(need) else "above 1.8e+308"
        advice = (
            f"a stable run needs {count} steps, which these parameters make impractical (more "
            f"than {_IMPRACTICAL_STEPS:.0e}): check dw, rho and spacing and their units"
        )
    msg = (
        f"steps: {steps} steps over t_end={t_end:g} give dt={dt:.4g}, above the {scheme} "
        f"scheme's stability bound {limit:.4g} for dw={_as_float(dw):g}, "
        f"rho={_as_float(rho):g}, spacing={spacing:g} (the state may oscillate or blow up); "
        f"{advice}"
    )
    if tensors:
        warnings.warn(msg, RuntimeWarning, stacklevel=user_stacklevel())
    else:
        raise ValueError(msg)


def logistic_step(c: Tensor, rho: Tensor | float, tau: float) -> Tensor:
    r"""Exact flow of :math:`\dot c = \rho c(1-c)` over :math:`\tau`:
    :math:`c\,e^{\rho\tau} / (1 + c(e^{\rho\tau} - 1))` (elementwise, any shape; differentiable).

    An integer ``c`` is computed in the default floating dtype (``rho`` was cast to its integer
    dtype: 0.5 became 0 and the state did not move); a list or array is converted (finite),
    a complex or bool ``c`` refused, as :func:`fk_forward`'s state."""
    c = _real_state("c", c)
    if not c.is_floating_point():
        c = c.to(torch.get_default_dtype())
    e = torch.exp(torch.as_tensor(rho, dtype=c.dtype, device=c.device) * tau)
    return c * e / (1 + c * (e - 1))


def fk_forward(
    c0: Tensor,
    faces: Sequence[Tensor],
    dw: Tensor | float,
    rho: Tensor | float,
    *,
    t_end: float,
    steps: int,
    spacing: float,
    tissue: Tensor | None = None,
    save_every: int | None = None,
    scheme: str = "euler",
    check_stability: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Time-stepping of the FK equation; returns :math:`c(T)` ``[*grid]`` (or the trajectory).

    ``dt = t_end / steps`` (choose ``steps`` with :func:`stable_steps`; ``1 <= steps <= 1e9``,
    the bound :func:`stable_steps` keeps). Schemes:

    * ``"euler"``: explicit Euler, :math:`c \leftarrow c + \Delta t\,[\nabla\cdot(D\nabla c)
      + \rho c(1-c)]` (first order in time);
    * ``"strang"``: Strang splitting :math:`R_{\Delta t/2}\,E_{\Delta t}\,R_{\Delta t/2}` of the
      exact logistic flow :math:`R_\tau` (:func:`logistic_step`) and an explicit Euler diffusion
      step :math:`E_{\Delta t}` (same stability limit, same cost; the reaction carries no
      time-step error and the splitting error is second order, but the Euler diffusion step
      keeps the scheme first order overall: measured order about 1.1, with an error constant
      about 25 times smaller than ``"euler"``'s).

    ``tissue`` (0/1 mask) zeroes the state outside the brain. Differentiable in ``c0``, ``dw``,
    ``rho``. With ``save_every`` (an int ``>= 1``) returns ``(c(T), traj [n_saved, *grid])``.
    ``faces``: ``c0.ndim`` maps of ``c0``'s shape, finite (the stability check refuses a NaN
    or infinite face by name); ``spacing > 0``; ``dw >= 0`` and ``rho`` finite when given as
    numbers; ``faces``, ``tissue``, and ``dw`` and ``rho`` when tensors
    (other than 0-dim CPU ones), on ``c0``'s device.

    ``dt`` must not exceed :func:`max_step` (diffusion: :math:`\Delta t \le h^2 / (D_w
    \max_i \sum_{\text{faces of } i} f)`, at least :math:`h^2/(2 d D_w \max f)`; ``"euler"``
    also :math:`\Delta t|\rho| \le 2`): with ``dw`` and ``rho`` given as numbers a larger step
    is a ``ValueError`` naming the smallest stable ``steps`` (it blew up silently, e.g. to
    51.8); with tensors (fits and samplers that may visit an unstable :math:`D_w`) a
    ``RuntimeWarning``, as is a tensor ``dw`` with a negative entry (anti-diffusion, unstable
    at any step). ``check_stability=False`` skips the check, for callers that size
    ``steps`` for a bound on :math:`D_w` and report exceeding it themselves
    (:class:`~bayesphys.odil.GliomaModel`: :func:`stable_steps` at ``d_max``).

    A ``c0`` with a NaN or infinite entry is a ``ValueError`` naming it (it gave a NaN map
    silently; a NaN tensor rate is the stability check's ``RuntimeWarning``); not tested under
    a :mod:`torch.func` transform, whose wrapped values cannot be read.
    """
    c0 = _real_state("c0", c0)
    check_finite_input("c0", c0)
    return _fk_forward(
        c0,
        faces,
        dw,
        rho,
        t_end=t_end,
        steps=steps,
        spacing=spacing,
        tissue=tissue,
        save_every=save_every,
        scheme=scheme,
        check_stability=check_stability,
    )


def _fk_forward(
    c0: Tensor,
    faces: Sequence[Tensor],
    dw: Tensor | float,
    rho: Tensor | float,
    *,
    t_end: float,
    steps: int,
    spacing: float,
    tissue: Tensor | None = None,
    save_every: int | None = None,
    scheme: str = "euler",
    check_stability: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`fk_forward` without its test of the values of ``c0``: for a
    model's own solves at points it made (a sampler's or optimiser's trial point), where a
    non-finite one gives a non-finite loss the caller rejects, not an error."""
    _check_scheme(scheme)
    t_end, steps = _check_time(t_end, steps)
    c0 = _real_state("c0", c0)
    if len(faces) != c0.ndim:
        raise ValueError(
            f"faces: expected {c0.ndim} face maps (one per axis of c0), received {len(faces)}"
        )
    spacing = _check_grid(c0, faces, tissue, spacing)
    # before the stability check (which reads them) and the first product with the faces
    _check_rates_on_device(c0.device, "c0", dw=dw, rho=rho)
    if not isinstance(dw, (Tensor, np.ndarray)):  # numbers: dw >= 0 (< 0 anti-diffused)
        check_real("dw", dw, minimum=0.0)
    if not isinstance(rho, (Tensor, np.ndarray)):
        check_real("rho", rho)
    if save_every is not None:
        save_every = check_int("save_every", save_every, minimum=1)
    if check_bool("check_stability", check_stability):
        _check_stable(faces, dw, rho, t_end=t_end, steps=steps, spacing=spacing, scheme=scheme)
    dt = t_end / steps
    hs = [spacing] * c0.ndim
    scaled = [f * dw for f in faces]
    c = c0 if tissue is None else c0 * tissue
    traj = [c] if save_every else None
    for k in range(steps):
        if scheme == "euler":
            c = c + dt * (_div_flux(c, scaled, hs) + rho * c * (1 - c))
        else:
            c = logistic_step(c, rho, 0.5 * dt)
            c = logistic_step(c + dt * _div_flux(c, scaled, hs), rho, 0.5 * dt)
        if save_every and (k + 1) % save_every == 0:
            traj.append(c)
    if save_every:
        return c, torch.stack(traj)
    return c


def fk_residual(
    c: Tensor,
    faces: Sequence[Tensor],
    dw: Tensor | float,
    rho: Tensor | float,
    *,
    dt: float,
    spacing: float,
    scheme: str = "cn",
) -> Tensor:
    r"""ODIL residual of the space-time field ``c [nt, *grid]`` (levels :math:`t_n = n\,\Delta t`).

    ``scheme="cn"`` (GliODIL's Crank-Nicolson time scheme; GliODIL's reaction reads
    :math:`\rho|c|(1-c)`, which agrees with the one below wherever :math:`c \ge 0`):
    :math:`(c^n - c^{n-1})/\Delta t - \tfrac12[F(c^n) + F(c^{n-1})]`;
    ``"euler"``: :math:`(c^n - c^{n-1})/\Delta t - F(c^{n-1})` (the forward solver's scheme),
    with :math:`F(c) = \nabla\cdot(D\nabla c) + \rho c(1-c)`. Returns ``[nt-1, *grid]``.
    ``dt`` and ``spacing`` (numbers) ``> 0``; ``c`` has at least 2 levels; ``faces``, and
    ``dw`` and ``rho`` when tensors (other than 0-dim CPU ones), on ``c``'s device.
    """
    if scheme not in ("cn", "euler"):
        raise ValueError(f"scheme: expected 'cn' or 'euler', received {scheme!r}")
    _check_step("dt", dt)
    c = _real_state("c", c)
    if c.ndim < 2 or c.shape[0] < 2:
        raise ValueError(
            f"c: expected [nt >= 2, *grid] (time levels first), received {tuple(c.shape)}"
        )
    # the faces and rates before the first product with them (torch's error named neither);
    # a 0-dim CPU rate passes, as torch moves one itself
    _check_on_device("faces", faces, c.device, "c")
    _check_rates_on_device(c.device, "c", dw=dw, rho=rho)
    hs = [spacing] * (c.ndim - 1)
    scaled = [f * dw for f in faces]
    hs = _check_div_flux(c, scaled, hs, "c")  # once, not in each call of rhs

    def rhs(u):
        return _div_flux(u, scaled, hs) + rho * u * (1 - u)

    ct = (c[1:] - c[:-1]) / dt
    if scheme == "cn":
        return ct - 0.5 * (rhs(c[1:]) + rhs(c[:-1]))
    return ct - rhs(c[:-1])  # "euler" (scheme was checked on entry)


def _logistic_tangent(
    c: Tensor, dc: Tensor, rho: Tensor, drho: Tensor, tau: float
) -> tuple[Tensor, Tensor]:
    # R = c e / q, q = 1 + c (e - 1), e = exp(rho tau):
    # dR/dc = e / q^2, dR/drho = tau c e (1 - c) / q^2
    e = torch.exp(rho * tau)
    q = 1 + c * (e - 1)
    eq2 = e / (q * q)
    return c * e / q, eq2 * dc + drho * (tau * c * (1 - c)) * eq2


def fk_forward_tangent(
    c0: Tensor,
    dc0: Tensor,
    faces: Sequence[Tensor],
    dw: Tensor | float,
    rho: Tensor | float,
    ddw: Tensor,
    drho: Tensor,
    *,
    t_end: float,
    steps: int,
    spacing: float,
    tissue: Tensor | None = None,
    scheme: str = "euler",
    check_stability: bool = True,
) -> tuple[Tensor, Tensor]:
    r""":func:`fk_forward` together with its tangent-linear model for ``p`` directions.

    ``dc0 [p, *grid]``: directional derivatives of :math:`c_0`; ``ddw, drho [p]``: of
    :math:`D_w, \rho`. Euler step :math:`\delta c \leftarrow \delta c + \Delta t[\nabla\cdot(D\nabla\delta c)
    + \delta D_w \nabla\cdot(\tilde D\nabla c) + \rho(1-2c)\delta c + \delta\rho\,c(1-c)]`; for
    ``scheme="strang"`` the logistic half-steps carry
    :math:`\delta R = (e/q^2)\,\delta c + \tau c(1-c)(e/q^2)\,\delta\rho` with
    :math:`e = e^{\rho\tau}, q = 1 + c(e-1)`. Here :math:`\nabla\cdot(\tilde D\nabla c)` is
    the operator with the unit faces (``faces`` themselves), i.e. the derivative of
    :math:`\nabla\cdot(D_w\tilde D\nabla c)` in :math:`D_w`; it is computed as the
    :math:`D_w`-scaled operator divided by :math:`D_w` for :math:`D_w \ne 0` and directly from
    ``faces`` at :math:`D_w = 0` (which :func:`fk_forward` accepts; dividing gave NaN there).
    Returns ``(c(T) [*grid], dc(T) [p, *grid])`` -- the Jacobian columns in one batched pass.
    The arguments and the step are checked as in :func:`fk_forward` (``dw >= 0`` and ``rho``
    finite when given as numbers, devices; ``check_stability`` likewise); ``dc0``, ``ddw``
    and ``drho`` on ``c0``'s device; a ``c0`` with a NaN or infinite entry is refused by name,
    as there.
    """
    _check_scheme(scheme)
    t_end, steps = _check_time(t_end, steps)
    c0 = _real_state("c0", c0)
    check_finite_input("c0", c0)
    if len(faces) != c0.ndim:
        raise ValueError(
            f"faces: expected {c0.ndim} face maps (one per axis of c0), received {len(faces)}"
        )
    spacing = _check_grid(c0, faces, tissue, spacing)
    _check_rates_on_device(c0.device, "c0", dw=dw, rho=rho)
    # lists failed with AttributeError; tensors pass unchanged
    dc0 = _real_state("dc0", dc0)
    ddw = ddw if isinstance(ddw, Tensor) else as_tensor("ddw", ddw, dtype=c0.dtype)
    drho = drho if isinstance(drho, Tensor) else as_tensor("drho", drho, dtype=c0.dtype)
    # the directions are reshaped to [p, 1, ...] before any product: no 0-dim CPU exception
    for name, direction in (("dc0", dc0), ("ddw", ddw), ("drho", drho)):
        check_on_device(name, direction, c0.device, "c0's")
    # as fk_forward: a negative dw anti-diffused (the stability check reads |dw|), NaN went on
    if not isinstance(dw, (Tensor, np.ndarray)):
        check_real("dw", dw, minimum=0.0)
    if not isinstance(rho, (Tensor, np.ndarray)):
        check_real("rho", rho)
    if dc0.shape[1:] != c0.shape or ddw.numel() != len(dc0) or drho.numel() != len(dc0):
        raise ValueError(
            f"dc0, ddw, drho: expected [p, *grid] and [p], [p] with grid {tuple(c0.shape)}, "
            f"received {tuple(dc0.shape)}, {tuple(ddw.shape)}, {tuple(drho.shape)}"
        )
    if check_bool("check_stability", check_stability):
        _check_stable(faces, dw, rho, t_end=t_end, steps=steps, spacing=spacing, scheme=scheme)
    dt = t_end / steps
    nd = c0.ndim
    hs = [spacing] * nd
    scaled = [f * dw for f in faces]
    # d/dD_w of div(D_w f grad c) is div(f grad c): the scaled operator / D_w (the values of
    # the benchmarks' fits, unchanged) except at D_w = 0, where it is taken from the unit faces
    zero_dw = bool(torch.as_tensor(dw).detach().eq(0).all())

    def dw_term(lap_c: Tensor, cc: Tensor) -> Tensor:  # ddw * div(f grad c)
        return ddw * _div_flux(cc, faces, hs) if zero_dw else ddw * lap_c / dw

    bshape = (-1,) + (1,) * nd
    ddw, drho = ddw.reshape(bshape), drho.reshape(bshape)
    rho_t = torch.as_tensor(rho, dtype=c0.dtype, device=c0.device)
    c, dc = c0, dc0
    if tissue is not None:
        c, dc = c * tissue, dc * tissue
    for _ in range(steps):
        if scheme == "strang":
            c, dc = _logistic_tangent(c, dc, rho_t, drho, 0.5 * dt)
        both = torch.cat([c[None], dc], 0)
        lap = _div_flux(both, scaled, hs)  # D_w-scaled operator on c and on dc
        if scheme == "euler":
            react = c * (1 - c)
            dc = dc + dt * (lap[1:] + dw_term(lap[0], c) + rho * (1 - 2 * c) * dc + drho * react)
            c = c + dt * (lap[0] + rho * react)
        else:
            dc = dc + dt * (lap[1:] + dw_term(lap[0], c))
            c = c + dt * lap[0]
            c, dc = _logistic_tangent(c, dc, rho_t, drho, 0.5 * dt)
    return c, dc
