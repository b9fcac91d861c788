r"""The range of parameters a :class:`~bayesphys.probconserv.ProbConserv` Step-1 model was
trained on, and the warning for functions outside it.

The Step-1 model (ANP or meta-GP) is fitted to functions whose parameters span that range only:
``U(train_range)`` widened by ``train_margin`` (``fit()``), or the parameters of the data a fit
was given (``fit(data)``). For a function outside it (Stefan at ``u* = 0.5``, range ``[0.55,
0.7]``) the mean is an extrapolation and the covariance carries no calibration: standard
deviations of ``1e-3`` where the error is ``0.5``. Only the mass check of a hybrid calibration
(:mod:`~bayesphys.probconserv.mass_check`) widens the covariance there, and only in the
posteriors that read the mass; every other posterior gets a ``UserWarning``.

The record is ``(lo, hi)``, ``None`` when nothing is known (an untrained model, a fit on data of
unknown parameters, a checkpoint written before the record).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import torch

from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning

if TYPE_CHECKING:
    from ..problems.gpme import GPMEData
    from .model import ProbConserv

__all__ = ["record_trained_range", "warn_outside_trained", "checked_record"]

_UNKNOWN = (math.nan, math.nan)


def record_trained_range(model: ProbConserv, data: GPMEData | None) -> None:
    """Widen ``model._trained_params`` by the parameters of the fit about to run: the
    (widened) training range when ``data`` is None, else ``data.params``' span; a
    non-finite parameter (unknown) makes the record unknown for good."""
    if data is None:
        margin = model.config.train_margin
        lo, hi = model.problem.widened_range(margin) if margin else model.problem.train_range
    else:
        p = data.params.detach().to("cpu", torch.float64)
        if p.numel() == 0 or not bool(torch.isfinite(p).all()):
            lo, hi = _UNKNOWN
        else:
            lo, hi = float(p.min()), float(p.max())
    prev = getattr(model, "_trained_params", None)
    if prev is not None and model.steps_done > 0:
        if math.isnan(prev[0]) or math.isnan(lo):
            lo, hi = _UNKNOWN
        else:
            lo, hi = min(prev[0], lo), max(prev[1], hi)
    model._trained_params = (float(lo), float(hi))


def checked_record(value) -> tuple[float, float] | None:
    """A saved record read back: ``None`` or a pair of floats (NaN: unknown)."""
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"trained_params: expected None or [lo, hi] numbers, received {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not (math.isnan(lo) and math.isnan(hi)) and not lo <= hi:
        raise ValueError(f"trained_params: expected lo <= hi, received {value!r}")
    return lo, hi


def warn_outside_trained(model: ProbConserv, context: GPMEData, where: str, gated: bool) -> None:
    """One ``UserWarning`` at the user's line when a known (finite) ``context.params`` lies
    outside the model's trained range (beyond ``1e-6`` of its length). ``gated``: the call
    applies the hybrid calibration's mass check, which widens the covariance of such
    functions itself (no warning)."""
    rec = getattr(model, "_trained_params", None)
    if gated or rec is None or math.isnan(rec[0]):
        return
    lo, hi = rec
    p = context.params.detach().to("cpu", torch.float64).reshape(-1)
    tol = 1e-6 * max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    out = torch.isfinite(p) & ((p < lo - tol) | (p > hi + tol))
    n = int(out.sum())
    if not n:
        return
    i = int(out.nonzero()[0, 0])
    warnings.warn(
        f"{where}: {n} of {p.numel()} context functions have a parameter outside the range "
        f"the Step-1 model was trained on, [{lo:.6g}, {hi:.6g}] (e.g. function {i}: "
        f"{float(p[i]):.6g}). There its mean is an extrapolation and its covariance is not "
        "calibrated: it need not widen, so the posterior can be confidently wrong. "
        "calibrate(objective='hybrid', local_functions=M) adds the mass check's discrepancy "
        "to such functions in posterior(method='probconserv') on the calibration grid",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )
