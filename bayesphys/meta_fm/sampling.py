r"""ODE samplers for the learned flow :math:`\dot x = v(t, x)`, :math:`t: 0 \to 1`.

* ``"rk4"``: classical fixed-step Runge-Kutta; deterministic and cheap, enough for the nearly
  straight flows of CFM (10 steps match 50 to four decimals on letters, anchor 4.4).
* ``"dopri5"``: adaptive Dormand-Prince via ``torchdiffeq.odeint`` (``atol``, ``rtol``), the
  reference's solver. Its steps follow the error norm of everything integrated together, so
  the points of one batch move (within the tolerance) with the rest of the batch: for that
  reason ``MetaFlowMatching.predict`` integrates each population on its own unless asked to
  batch them.

``f(t, x)`` maps a scalar time tensor and points ``[..., d]`` (e.g. ``[N, d]``, or ``[G, n, d]``
for ``G`` populations of ``n`` points) to velocities of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_int, check_real, did_you_mean, require
from .._device import check_finite

__all__ = ["integrate", "SOLVERS"]

SOLVERS = ("rk4", "dopri5")
"""ODE solvers of the sampler: fixed-step ``"rk4"`` and adaptive ``"dopri5"`` (torchdiffeq)."""


def integrate(
    f: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    method: str = "rk4",
    steps: int | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> Tensor:
    """Integrate ``dx/dt = f(t, x)`` from ``t=0`` to ``1`` starting at ``x0 [..., d]`` ->
    ``[..., d]``.

    ``f(t, x)`` must return velocities of ``x``'s shape and dtype. ``x0``: a finite floating tensor.
    ``"rk4"`` takes ``steps >= 1`` (default 10); ``"dopri5"`` takes ``atol``, ``rtol`` finite
    and ``> 0`` (default ``1e-5``). A setting the chosen method does not read is refused
    (``steps`` for dopri5, ``atol``/``rtol`` for rk4) rather than ignored. A result holding
    NaN/Inf (a field that is not finite along the path) raises ``ValueError``.
    """
    if method not in SOLVERS:
        raise ValueError(
            f"method: expected one of {SOLVERS}, received {method!r}{did_you_mean(method, SOLVERS)}"
        )
    if not callable(f):
        raise TypeError(f"f: expected a callable f(t, x), received {type(f).__name__}")
    if not isinstance(x0, Tensor):
        raise TypeError(f"x0: expected a torch.Tensor, received {type(x0).__name__}")
    if not x0.is_floating_point() or x0.ndim < 1:
        raise ValueError(
            f"x0: expected a floating tensor [..., d], received {x0.dtype} of shape "
            f"{tuple(x0.shape)}"
        )
    check_finite("x0", x0)
    if method == "rk4":
        for name, value in (("atol", atol), ("rtol", rtol)):
            if value is not None:
                raise ValueError(
                    f"{name}: only the adaptive 'dopri5' solver reads a tolerance; 'rk4' takes "
                    f"steps, received {name}={value!r}"
                )
        steps = 10 if steps is None else check_int("steps", steps, minimum=1)
        h = 1.0 / steps
        x = x0
        for i in range(steps):
            t = torch.tensor(i * h, dtype=x0.dtype, device=x0.device)
            k1 = f(t, x)
            if i == 0:
                _check_velocity(k1, x)
            k2 = f(t + h / 2, x + h / 2 * k1)
            k3 = f(t + h / 2, x + h / 2 * k2)
            k4 = f(t + h, x + h * k3)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return _check_result(x, f"rk4 with {steps} steps")
    if steps is not None:
        raise ValueError(
            f"steps: only the fixed-step 'rk4' solver takes steps; 'dopri5' adapts its steps to "
            f"atol and rtol, received steps={steps!r}"
        )
    atol = 1e-5 if atol is None else check_real("atol", atol, minimum=0.0, strict=True)
    rtol = 1e-5 if rtol is None else check_real("rtol", rtol, minimum=0.0, strict=True)
    odeint = require("torchdiffeq", "torchdiffeq", "solver='dopri5'").odeint

    checked = [False]

    def g(t: Tensor, x: Tensor) -> Tensor:
        v = f(t, x)
        if not checked[0]:
            _check_velocity(v, x)
            checked[0] = True
        return v

    ts = torch.tensor([0.0, 1.0], dtype=x0.dtype, device=x0.device)
    if x0.numel() == 0:  # no points: torchdiffeq's first step size is 0 ("underflow in dt")
        _check_velocity(f(ts[0], x0), x0)
        return x0.clone()
    out = odeint(g, x0, ts, method="dopri5", atol=atol, rtol=rtol)[-1]
    return _check_result(out, f"dopri5 with atol={atol:g}, rtol={rtol:g}")


def _check_result(x: Tensor, how: str) -> Tensor:
    """The integrated points, refused if any is NaN/Inf (a diverged field would otherwise
    surface later, e.g. inside a metric)."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(-1).sum()) if x.ndim else 1
        raise ValueError(
            f"integrate: {bad} points became NaN/Inf ({how}); the vector field is not finite "
            f"along the path (a diverged fit?): check the model's training"
        )
    return x


def _check_velocity(v: object, x: Tensor) -> None:
    """The first evaluation of ``f``: velocities of ``x``'s shape (not a broadcastable one) and
    dtype (a float64 field moved float32 points into a float64 result without a word)."""
    if not isinstance(v, Tensor) or v.shape != x.shape:
        got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise ValueError(
            f"f: expected f(t, x) to return velocities of x's shape {tuple(x.shape)}, "
            f"received {got}"
        )
    if v.dtype != x.dtype:
        raise TypeError(
            f"f: expected f(t, x) to return velocities in x's dtype {x.dtype}, received {v.dtype}"
        )
