r"""Fisher-Kolmogorov time steps: the explicit schemes' stability bounds and their checks.

:func:`max_step` / :func:`max_steps` bound the step :math:`\Delta t` of :func:`fk_forward`'s
schemes on a grid of face maps ``[*grid]``; :func:`stable_steps` sizes a step count for a bound
on :math:`D_w`; ``_check_stable`` refuses (numbers) or flags (tensors) an unstable step. The
public names are re-exported by :mod:`bayesphys.problems.fisher_kolmogorov`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_real, did_you_mean
from .._device import ArrayLike, values_as_tensor
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning
from .stencil import _check_step, _square, _underflows, shift

__all__ = ["stable_steps", "max_step", "max_steps", "SCHEMES"]


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
    faces: Sequence[Tensor],
    dw: Tensor | ArrayLike,
    rho: Tensor | ArrayLike,
    spacing: float,
    scheme: str,
) -> Tensor:
    r""":func:`max_step`'s bound for each pair of ``dw [n]`` and ``rho [n]`` (tensors, or
    numbers / lists / arrays read as float64; broadcast;
    float64 on the CPU, ``inf`` where there is no bound, NaN for a NaN ``dw`` or ``rho``), from
    one pass over the faces: the diffusion rate is linear in :math:`D_w` (e.g. every posterior
    draw of a fit at once). A ``spacing`` whose square overflows float64 (e.g. 1e200) gives
    a diffusion rate of 0 (the reaction's bound); one whose square underflows (e.g. 1e-200)
    an infinite rate (bound 0) where a face is nonzero and none on all-zero faces."""
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
    # numbers and lists through numpy (float64): torch.as_tensor rounded them to float32, and
    # the bound of max_steps(faces, 0.1, 0.3, ...) was 2e-8 off max_step's for the same values
    dw, rho = (
        (v if isinstance(v, Tensor) else values_as_tensor(v)).detach().to("cpu", torch.float64)
        for v in (dw, rho)
    )
    dw, rho = dw.abs(), rho.abs()
    h2 = _square(spacing)  # inf past the float maximum (spacing**2 raised OverflowError)
    if face_sum == 0:  # no diffusion on any grid (0 / an underflowed h2 gave a NaN bound)
        rate = dw * 0.0  # NaN for a NaN dw
    elif _underflows(h2):  # a tiny step: an infinite rate (bound 0), not 0 / 0
        rate = dw * face_sum / spacing / spacing
    else:
        rate = dw * face_sum / h2
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
            warnings.warn(msg, BayesphysRuntimeWarning, stacklevel=user_stacklevel())
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
            msg = (
                f"dw, rho: expected finite rates, received dw={a:g}, rho={r:g} (the state "
                "would be NaN)"
            )
        if tensors:
            warnings.warn(msg, BayesphysRuntimeWarning, stacklevel=user_stacklevel())
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
        warnings.warn(msg, BayesphysRuntimeWarning, stacklevel=user_stacklevel())
    else:
        raise ValueError(msg)
