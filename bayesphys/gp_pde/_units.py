r"""Warnings for problems stated far from order 1 (lengths, offsets, field values).

The fit starts from values that assume a problem stated in units of order 1: prior variance
:math:`\sum_q w_q = 1`, precisions :math:`\tau_b = \tau_{pde} = 1`, an absolute jitter, and
Adam moves the frequencies :math:`\mu` by ~0.05 cycles per unit length per step. The solver is
not invariant to a change of units: measured on :math:`u = A(\sin 2\pi s + s)`,
:math:`s = (x - x_0)/L`, 64 points, 300 steps (rel. L2 error 1.7e-5 at ``A = L = 1``):
``A = 1e3`` gave 0.68 with an sd 2500x below the error, ``A = 1e-3`` 2.5e-4 with sds 50x too
wide; ``L = 0.1`` gave 0.70 and ``L = 3600`` 1.00 (``L = 10`` 2.4e-6); an offset
:math:`x_0 = 10^7` left 18 % of the posterior sds at exactly 0 (the float64 grid itself
holds only ~9 digits of :math:`x - x_0` there). Hence these warnings; the fix is the user's
rescaling of :math:`x`, :math:`u` and the equation's coefficients to order 1.
"""

from __future__ import annotations

import math
import warnings

from torch import Tensor

from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning

#: axis lengths inside which the registered problems ([0, 1], [0, 2 pi]) and tested lengths lie
LENGTH_RANGE = (0.5, 50.0)
#: field root-mean-square values inside which the fit's starting values are of the right order
FIELD_RMS_RANGE = (1e-2, 1e2)
#: |axis origin| / length above which the grid's float64 values lose the digits the kernel needs
OFFSET_RATIO = 1e6


def warn_axes(axes: list[Tensor]) -> None:
    """Warn about each axis ``[n_j]`` much shorter or longer than 1 or far from the origin."""
    for j, a in enumerate(axes):
        lo, hi = float(a[0]), float(a[-1])
        length = hi - lo
        if not LENGTH_RANGE[0] <= length <= LENGTH_RANGE[1]:
            warnings.warn(
                f"GPPDESolver: axis {j} spans {length:.3g} units; the fit assumes lengths of "
                f"order 1 (frequencies are moved in cycles per unit, the precisions start at "
                f"1): a 0.1-long axis gave a rel. error of 0.70 where the same problem on a "
                f"1-long one reached 1.7e-5. Rescale x (and the equation's coefficients) so "
                f"that each axis spans between {LENGTH_RANGE[0]:g} and {LENGTH_RANGE[1]:g}",
                BayesphysUserWarning,
                stacklevel=user_stacklevel(),
            )
        elif max(abs(lo), abs(hi)) > OFFSET_RATIO * length:
            warnings.warn(
                f"GPPDESolver: axis {j} lies at {lo:.10g}..{hi:.10g}, far from 0 for its length "
                f"{length:.3g}: float64 keeps few digits of the spacing there and posterior "
                "sds can round to 0; shift x to start near 0",
                BayesphysUserWarning,
                stacklevel=user_stacklevel(),
            )


def warn_field_scale(u: Tensor) -> bool:
    """Warn when the fitted field ``u [n_1..n_d]`` is far from order 1 (see the module);
    returns whether it warned."""
    rms = float(u.detach().double().square().mean().sqrt())
    far = math.isfinite(rms) and rms > 0 and not FIELD_RMS_RANGE[0] <= rms <= FIELD_RMS_RANGE[1]
    if far:
        warnings.warn(
            f"GPPDESolver: the fitted field's rms is {rms:.3g}; the fit starts from a prior "
            "variance of 1, precisions of 1 and an absolute jitter, which suit fields of order "
            "1 (fields 1000x larger gave a rel. error of 0.68 and sds 2500x below the error). "
            "Divide the source and boundary values by a scale of the field's order (the "
            "solution of a linear equation scales with them) and multiply the results back",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )
    return far
