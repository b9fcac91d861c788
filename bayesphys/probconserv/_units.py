r"""A warning for Step-1 training data far from order 1.

Step 1 reads the field values as they are (only the inputs :math:`(t, x)` are normalised, by
the problem's box): the ANP's predictive sd is :math:`10^{-3} + \mathrm{softplus}(\cdot)` and
the meta-GP's noise variance starts at :math:`10^{-4}` with a floor of :math:`10^{-6}`, both in
the field's units, and the networks start from weights that suit values of order 1. Measured
on the diffusion family (ANP, 300 steps, 256 training functions, 8 test functions at
:math:`k = 2`): fields as given (rms ~0.3) gave a relative L2 error of 0.20 with 90 % coverage
0.90; the same data times :math:`10^{-6}` an error of 7e3 (every sd above 4e3 times the
field's scale) and times :math:`10^3` an error of 1.0 (a flat prediction), both with coverage
1.0.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning

#: field root-mean-square values inside which Step 1's floors and starting values suit the data
FIELD_RMS_RANGE = (1e-2, 1e2)


def warn_field_scale(y_context: Tensor, y_target: Tensor) -> None:
    """Warn when the training field values ``y_context [B, Nc]`` and ``y_target [B, Nt]``
    have a root-mean-square outside :data:`FIELD_RMS_RANGE` (see the module)."""
    y = torch.cat([y_context.detach().reshape(-1), y_target.detach().reshape(-1)]).double()
    rms = float(y.square().mean().sqrt()) if y.numel() else math.nan
    if math.isfinite(rms) and rms > 0 and not FIELD_RMS_RANGE[0] <= rms <= FIELD_RMS_RANGE[1]:
        warnings.warn(
            f"ProbConserv.fit: the training field values have an rms of {rms:.3g}; Step 1 "
            "reads them unscaled, with an sd floor of 1e-3 (ANP) or noise floor 1e-6 (GP) "
            "in the field's units and starting weights for values of order 1 (data 1e-6 "
            "times smaller gave a relative error of 7e3 with every sd above 4e3 times the "
            "field's scale, 1e3 times larger a flat prediction). Divide the field values and "
            f"the masses by a scale of their order (rms between {FIELD_RMS_RANGE[0]:g} and "
            f"{FIELD_RMS_RANGE[1]:g}) and multiply the posterior back",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )
