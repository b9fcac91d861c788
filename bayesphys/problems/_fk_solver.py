r"""Fisher-Kolmogorov solvers: explicit forward solve, its tangent-linear model, ODIL residual.

.. math:: \partial_t c = \nabla\cdot(D(x)\nabla c) + \rho\, c(1-c)

on the face maps of :func:`tissue_faces` (zero faces carry no flux). States ``[*grid]`` (one
state, no batch dimension), trajectories and space-time fields ``[nt, *grid]``. The public
names are re-exported by :mod:`bayesphys.problems.fisher_kolmogorov`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_real, did_you_mean
from .._device import ArrayLike, as_tensor, check_finite_input, check_on_device
from ._fk_stability import _check_scheme, _check_stable, _check_time
from .stencil import (
    _check_div_flux,
    _check_on_device,
    _check_step,
    _div_flux,
)

__all__ = ["fk_forward", "fk_forward_tangent", "fk_residual", "logistic_step"]


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


def _check_grid(
    c0: Tensor, faces: Sequence[Tensor], tissue: ArrayLike | None, spacing
) -> tuple[float, Tensor | None]:
    """One face map per axis of ``c0``'s grid and a tissue mask of that grid; ``spacing > 0``
    (too few faces failed with an IndexError, a mask of another shape broadcast silently),
    both on ``c0``'s device (torch's error named neither). Returns ``(spacing, tissue)``: a
    mask given as a list or array is converted onto ``c0``'s device (finite; a list failed
    with ``AttributeError``, an array multiplied the state with numpy's DeprecationWarning);
    ``faces`` may be one ``[d, *grid]`` tensor (its truth value failed)."""
    _check_step("spacing", spacing)
    if tissue is not None and not isinstance(tissue, Tensor):
        tissue = as_tensor("tissue", tissue, device=c0.device)
    grid = tuple(c0.shape[-len(faces) :]) if len(faces) else ()
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
    return spacing, tissue


def _check_rates_on_device(device: torch.device, of: str, **rates: Tensor | float) -> None:
    """``ValueError`` naming the first of ``rates`` (``dw``, ``rho``, ...) that is a tensor on
    another device than ``device`` (that of the argument ``of``), before the first product with
    it: torch's own error named neither the argument nor the devices. A 0-dim CPU tensor
    passes, as torch moves one itself; numbers and arrays pass."""
    for name, rate in rates.items():
        if not (isinstance(rate, Tensor) and rate.ndim == 0 and rate.device.type == "cpu"):
            check_on_device(name, rate, device, f"{of}'s")


def _shape_of(rate: Tensor | float) -> tuple[int, ...] | None:
    """The shape of a tensor or array rate (a numpy scalar's is ``()``); ``None`` for a
    number or anything else without one (left to the value checks)."""
    shape = getattr(rate, "shape", None)
    return None if shape is None else tuple(shape)


def _check_rate_shapes(dw: Tensor | float, rho: Tensor | float, grid: tuple[int, ...]) -> None:
    """``dw`` a scalar (a number or a 0-dim tensor: :math:`D_w` scales every face) and ``rho``
    a scalar or a field of the grid's shape ``[*grid]`` (a growth rate per cell): a
    ``ValueError`` naming the other shapes, which failed with torch's unnamed size mismatch in
    a product with the faces or the state. A ``dw [*grid]`` ran: it scaled face ``i + 1/2`` by
    ``dw[i]`` alone (one-sided), and the tangent divided the operator by it per cell (wrong).
    Shapes only: no value is read (no device sync)."""
    shape = _shape_of(dw)
    if shape not in (None, ()):
        raise ValueError(
            "dw: expected a number or a 0-dim tensor (the scalar D_w, which scales every "
            "face; a diffusivity that varies in space goes in the faces, as tissue_faces "
            f"makes them), received a tensor of shape {shape}"
        )
    shape = _shape_of(rho)
    if shape not in (None, (), tuple(grid)):
        raise ValueError(
            "rho: expected a number, a 0-dim tensor or a field of the grid's shape "
            f"{tuple(grid)} (a growth rate per cell), received a tensor of shape {shape}"
        )


def _numpy_rate(
    name: str, rate: Tensor | float, like: Tensor, minimum: float | None = None
) -> Tensor | float:
    """A numpy ``rate`` (``dw``, ``rho``) as what it stands for, checked as such: a 0-dim array
    as a number (finite, ``>= minimum``; it went on unchecked, a NaN or negative one to a
    NaN state or a warning where the number is refused, and scaled the faces with numpy's
    ``__array_wrap__`` DeprecationWarning), a field as a real tensor of ``like``'s dtype and
    device (finite; ``tensor * array`` failed with a ``TypeError``). Other values unchanged;
    call after :func:`_check_rate_shapes`."""
    if not isinstance(rate, np.ndarray):
        return rate
    if rate.ndim == 0:
        return check_real(name, rate.item(), minimum=minimum)
    if rate.dtype == np.bool_:
        raise TypeError(f"{name}: expected real rates, received an array of bool")
    return as_tensor(name, rate, dtype=like.dtype, device=like.device, real=True)


def _logistic_factors(c: Tensor, rho: Tensor | float, tau: float) -> tuple[Tensor, Tensor]:
    r"""``(a, b)`` = :math:`(e^{\min(p, 0)}, e^{\min(-p, 0)})`, :math:`p = \rho\tau`, each in
    ``[tiny, 1]`` (one of them 1): the flow is :math:`c a / (c a + (1 - c) b)`, the form
    :math:`c e^p / (1 + c(e^p - 1))` with numerator and denominator divided by
    :math:`\max(e^p, 1)`. That form overflowed for :math:`p > 709` (``inf / inf``: NaN, at
    every state) and for :math:`p < -37` lost the fixed point 1 (``1 + (e^p - 1)`` rounded to
    0: ``inf``); the floor ``tiny`` keeps the fixed points 0 and 1 where :math:`e^{-|p|}`
    underflows (``0 / 0``)."""
    p = torch.as_tensor(rho, dtype=c.dtype, device=c.device) * tau
    tiny = torch.finfo(c.dtype).tiny
    # the exponent's derivative on one side only at p = 0 (a clamp passes it to both at its
    # bound: a and b together doubled the derivative in rho there)
    grows = p > 0
    zero = torch.zeros_like(p)
    a = torch.exp(torch.where(grows, zero, p)).clamp_min(tiny)
    b = torch.exp(torch.where(grows, -p, zero)).clamp_min(tiny)
    return a, b


def _logistic_flow(
    c: Tensor, rho: Tensor | float, tau: float, factors: _HalfStepFactors | None = None
) -> Tensor:
    """:func:`logistic_step` without its checks, for a time loop whose state and rates were
    checked once (the same operations, so the same values); ``factors`` (the loop's
    :class:`_HalfStepFactors` of ``rho`` and ``tau``) reuses the factors of earlier steps."""
    if not c.is_floating_point():
        c = c.to(torch.get_default_dtype())
    if factors is None or not factors.reuse:
        a, b = _logistic_factors(c, rho, tau)
    else:
        a, b = factors(c)[:2]
    ca = c * a
    return ca / (ca + (1 - c) * b)


class _HalfStepFactors:
    r"""The factors ``(a, b, a b)`` of :func:`_logistic_factors` for one time loop's logistic
    half-steps (rate ``rho``, duration ``tau``): they depend on ``rho`` and ``tau`` alone, so
    a loop computes them once per state dtype and device, not twice per step (a dozen small
    operations per half-step: a third of the time of 2-D solves on a 1 mm atlas crop).
    The same operations on the same values, so the same factors. Where a reverse-mode graph
    runs through ``rho`` (grad mode on and ``rho`` requiring grad: the exact Hessian of a
    glioma fit, NUTS) they are recomputed at every call as before, since one shared factor
    would sum the per-step gradient terms in another order (other round-off)."""

    def __init__(self, rho: Tensor | float, tau: float) -> None:
        self.rho, self.tau = rho, tau
        self.reuse = not (isinstance(rho, Tensor) and rho.requires_grad and torch.is_grad_enabled())
        self._key: tuple | None = None
        self._factors: tuple[Tensor, Tensor, Tensor] | None = None

    def __call__(self, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(a, b, a b)`` for the state ``c`` (its dtype and device)."""
        if not self.reuse:
            a, b = _logistic_factors(c, self.rho, self.tau)
            return a, b, a * b
        key = (c.dtype, c.device)
        if key != self._key:
            a, b = _logistic_factors(c, self.rho, self.tau)
            self._key, self._factors = key, (a, b, a * b)
        return self._factors


def logistic_step(c: Tensor, rho: Tensor | float, tau: float) -> Tensor:
    r"""Exact flow of :math:`\dot c = \rho c(1-c)` over :math:`\tau`:
    :math:`c\,e^{\rho\tau} / (1 + c(e^{\rho\tau} - 1))` (elementwise; differentiable),
    evaluated as :math:`c a / (c a + (1 - c) b)` with :math:`a = e^{\min(\rho\tau, 0)}`,
    :math:`b = e^{\min(-\rho\tau, 0)}` (the same value; no overflow at large
    :math:`|\rho\tau|`, and the fixed points 0 and 1 kept at any :math:`\rho\tau`).

    ``c [*]`` (any shape) -> ``[*]``, ``c``'s shape; ``rho``: a number or a tensor that
    broadcasts to ``c``'s shape (``[]``, or ``[*]`` for a rate per entry; another shape
    failed with torch's unnamed size mismatch or grew the result). An integer ``c`` is
    computed in the default floating dtype (``rho`` was cast to its integer dtype: 0.5
    became 0 and the state did not move); a list or array is converted (finite), a complex
    or bool ``c`` refused, as :func:`fk_forward`'s state; a number ``rho`` finite (any sign:
    a negative rate decays), a numpy field converted to ``c``'s dtype and device (finite).
    ``tau``: a duration, a finite number ``>= 0`` (a string failed with a cryptic
    ``TypeError``, NaN gave a NaN state silently), or a 0-dim tensor (differentiable; its
    value is not read)."""
    c = _real_state("c", c)
    if isinstance(tau, (Tensor, np.ndarray)):
        if tau.ndim != 0:
            raise ValueError(
                f"tau: expected a number or a 0-dim tensor (a duration), received a tensor of "
                f"shape {tuple(tau.shape)}"
            )
    else:
        check_real("tau", tau, minimum=0.0)
    if isinstance(rho, (bool, np.bool_)):
        raise TypeError(f"rho: expected a number or a tensor, received {type(rho).__name__}")
    shape = _shape_of(rho)
    if shape is not None:
        try:
            fits = torch.broadcast_shapes(shape, tuple(c.shape)) == c.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"rho: expected a number or a tensor that broadcasts to c's shape "
                f"{tuple(c.shape)} (0-dim, or c's shape), received a tensor of shape {shape}"
            )
    # numbers and numpy values checked (a NaN or infinite rate gave a NaN state silently), as
    # fk_forward's: a 0-dim array as a number, a field as a finite tensor; a tensor's values
    # are not read (it may be differentiated or transformed)
    rho = _numpy_rate("rho", rho, c)
    if not isinstance(rho, Tensor):
        check_real("rho", rho)
    return _logistic_flow(c, rho, tau)


def fk_forward(
    c0: Tensor,
    faces: Sequence[Tensor],
    dw: Tensor | float,
    rho: Tensor | float,
    *,
    t_end: float,
    steps: int,
    spacing: float,
    tissue: ArrayLike | None = None,
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
      keeps the scheme first order overall: measured order about 1.1, with an error 4 to 19
      times smaller than ``"euler"``'s at the same steps, on the 64 x 64 phantom at t = 100
      and the corners of the glioma prior box).

    ``tissue`` (0/1 mask ``[*grid]``: a tensor, array or list) zeroes the initial state
    outside the brain (once: the state stays 0 there where the faces are 0, as
    :func:`tissue_faces` makes them off the tissue). Differentiable in ``c0``, ``dw``,
    ``rho``. With ``save_every`` (an int ``>= 1``) returns ``(c(T), traj [n_saved, *grid])``:
    ``traj[0]`` the initial state (masked by ``tissue``), ``traj[j]`` the state after
    ``j * save_every`` steps (time ``j * save_every * dt``), ``n_saved = 1 + steps //
    save_every`` (the last is :math:`c(T)` when ``save_every`` divides ``steps``).
    ``faces``: ``c0.ndim`` maps of ``c0``'s shape, finite (the stability check refuses a NaN
    or infinite face by name); ``spacing > 0``; ``dw``: the scalar :math:`D_w`, a number or a
    0-dim tensor ``[]``; ``rho``: a number, a 0-dim tensor ``[]`` or a growth rate per cell
    ``[*grid]`` (another shape is a ``ValueError`` naming it); ``dw >= 0`` and ``rho`` finite
    when given as numbers (a 0-dim numpy array is one; a numpy field ``rho`` is converted to
    ``c0``'s dtype and device, finite); ``faces``, ``tissue``, and ``dw`` and ``rho`` when
    tensors (other than 0-dim CPU ones), on ``c0``'s device.

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
    tissue: ArrayLike | None = None,
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
    spacing, tissue = _check_grid(c0, faces, tissue, spacing)
    # before the stability check (which reads them) and the first product with the faces
    _check_rates_on_device(c0.device, "c0", dw=dw, rho=rho)
    _check_rate_shapes(dw, rho, tuple(c0.shape))
    dw, rho = _numpy_rate("dw", dw, c0, 0.0), _numpy_rate("rho", rho, c0)
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
    half = _HalfStepFactors(rho, 0.5 * dt)  # once per solve, not twice per step
    for k in range(steps):
        if scheme == "euler":
            c = c + dt * (_div_flux(c, scaled, hs) + rho * c * (1 - c))
        else:
            c = _logistic_flow(c, rho, 0.5 * dt, half)
            c = _logistic_flow(c + dt * _div_flux(c, scaled, hs), rho, 0.5 * dt, half)
        if save_every and (k + 1) % save_every == 0:
            traj.append(c)
    if save_every:
        return c, torch.stack(traj)
    return c


#: fk_residual's time schemes (fk_forward's are SCHEMES)
_RESIDUAL_SCHEMES = ("cn", "euler")


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
    ``dt`` and ``spacing`` (numbers) ``> 0``; ``c`` has at least 2 levels; ``dw`` a number or
    a 0-dim tensor ``[]``, ``rho`` a number, a 0-dim tensor ``[]`` or a field ``[*grid]``, as
    in :func:`fk_forward`, with ``dw >= 0`` and ``rho`` finite when given as numbers or numpy
    arrays (as there; tensors are not read); ``faces``, and ``dw`` and ``rho`` when tensors
    (other than 0-dim CPU ones), on ``c``'s device.
    """
    if scheme not in _RESIDUAL_SCHEMES:  # gave no hint for e.g. "CN"
        raise ValueError(
            f"scheme: expected one of {_RESIDUAL_SCHEMES}, received {scheme!r}"
            f"{did_you_mean(scheme, _RESIDUAL_SCHEMES)}"
        )
    _check_step("dt", dt)
    # numbers as fk_forward checks them: a negative dw (anti-diffusion) or a NaN rate went on
    if not isinstance(dw, (Tensor, np.ndarray)):
        check_real("dw", dw, minimum=0.0)
    if not isinstance(rho, (Tensor, np.ndarray)):
        check_real("rho", rho)
    c = _real_state("c", c)
    if c.ndim < 2 or c.shape[0] < 2:
        raise ValueError(
            f"c: expected [nt >= 2, *grid] (time levels first), received {tuple(c.shape)}"
        )
    # the faces and rates before the first product with them (torch's error named neither);
    # a 0-dim CPU rate passes, as torch moves one itself
    _check_on_device("faces", faces, c.device, "c")
    _check_rates_on_device(c.device, "c", dw=dw, rho=rho)
    _check_rate_shapes(dw, rho, tuple(c.shape[1:]))
    dw, rho = _numpy_rate("dw", dw, c, 0.0), _numpy_rate("rho", rho, c)
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
    c: Tensor,
    dc: Tensor,
    rho: Tensor,
    drho: Tensor,
    tau: float,
    factors: _HalfStepFactors | None = None,
) -> tuple[Tensor, Tensor]:
    # R = c a / q, q = c a + (1 - c) b, (a, b) of _logistic_factors (a b = exp(-|rho tau|)):
    # dR/dc = a b / q^2, dR/drho = tau c (1 - c) a b / q^2 (e / (1 + c (e - 1))^2 with
    # e = exp(rho tau), in the form that neither overflows nor loses the fixed points);
    # ``factors``: the loop's (a, b, a b), computed once per solve
    if factors is None:
        a, b = _logistic_factors(c, rho, tau)
        ab = a * b
    else:
        a, b, ab = factors(c)
    ca = c * a
    q = ca + (1 - c) * b
    g = ab / (q * q)
    return ca / q, g * dc + drho * (tau * c * (1 - c)) * g


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
    tissue: ArrayLike | None = None,
    scheme: str = "euler",
    check_stability: bool = True,
) -> tuple[Tensor, Tensor]:
    r""":func:`fk_forward` together with its tangent-linear model for ``p`` directions.

    ``dc0 [p, *grid]``: directional derivatives of :math:`c_0`; ``ddw, drho [p]``: of
    :math:`D_w, \rho`. Euler step :math:`\delta c \leftarrow \delta c +
    \Delta t[\nabla\cdot(D\nabla\delta c) + \delta D_w \nabla\cdot(\tilde D\nabla c)
    + \rho(1-2c)\delta c + \delta\rho\,c(1-c)]`; for
    ``scheme="strang"`` the logistic half-steps carry
    :math:`\delta R = (e/q^2)\,\delta c + \tau c(1-c)(e/q^2)\,\delta\rho` with
    :math:`e = e^{\rho\tau}, q = 1 + c(e-1)` (evaluated in :func:`logistic_step`'s form, with
    neither overflow nor a lost fixed point at large :math:`|\rho\tau|`). Here
    :math:`\nabla\cdot(\tilde D\nabla c)` is
    the operator with the unit faces (``faces`` themselves), i.e. the derivative of
    :math:`\nabla\cdot(D_w\tilde D\nabla c)` in :math:`D_w`; it is computed as the
    :math:`D_w`-scaled operator divided by :math:`D_w` for :math:`D_w \ne 0` and directly from
    ``faces`` at :math:`D_w = 0` (which :func:`fk_forward` accepts; dividing gave NaN there).
    Returns ``(c(T) [*grid], dc(T) [p, *grid])`` -- the Jacobian columns in one batched pass.
    The arguments and the step are checked as in :func:`fk_forward` (``dw []`` a scalar and
    ``rho`` a scalar ``[]`` or a field ``[*grid]``, whose ``drho`` is then a uniform change;
    ``dw >= 0`` and ``rho`` finite when given as numbers or numpy arrays, devices;
    ``check_stability`` likewise); ``dc0``, ``ddw`` and ``drho`` on ``c0``'s device; a ``c0``
    or a ``dc0`` with a NaN or infinite entry is refused by name, as ``c0`` there.
    """
    _check_scheme(scheme)
    t_end, steps = _check_time(t_end, steps)
    c0 = _real_state("c0", c0)
    check_finite_input("c0", c0)
    if len(faces) != c0.ndim:
        raise ValueError(
            f"faces: expected {c0.ndim} face maps (one per axis of c0), received {len(faces)}"
        )
    spacing, tissue = _check_grid(c0, faces, tissue, spacing)
    _check_rates_on_device(c0.device, "c0", dw=dw, rho=rho)
    _check_rate_shapes(dw, rho, tuple(c0.shape))
    dw, rho = _numpy_rate("dw", dw, c0, 0.0), _numpy_rate("rho", rho, c0)
    # lists failed with AttributeError; tensors pass unchanged
    dc0 = _real_state("dc0", dc0)
    check_finite_input("dc0", dc0)  # as c0: a NaN or Inf direction gave a NaN tangent
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
    half = _HalfStepFactors(rho_t, 0.5 * dt)  # once per solve, not twice per step
    for _ in range(steps):
        if scheme == "strang":
            c, dc = _logistic_tangent(c, dc, rho_t, drho, 0.5 * dt, half)
        both = torch.cat([c[None], dc], 0)
        lap = _div_flux(both, scaled, hs)  # D_w-scaled operator on c and on dc
        if scheme == "euler":
            react = c * (1 - c)
            dc = dc + dt * (lap[1:] + dw_term(lap[0], c) + rho * (1 - 2 * c) * dc + drho * react)
            c = c + dt * (lap[0] + rho * react)
        else:
            dc = dc + dt * (lap[1:] + dw_term(lap[0], c))
            c = c + dt * lap[0]
            c, dc = _logistic_tangent(c, dc, rho_t, drho, 0.5 * dt, half)
    return c, dc
