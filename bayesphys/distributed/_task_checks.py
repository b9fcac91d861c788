"""What a task of :func:`~bayesphys.distributed.fit_many` gets back from the user's code,
checked where it arrives: the model ``build(problem)`` returns, the result of its ``fit`` and
its ``posterior`` (errors and warnings name the function that returned it)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning

__all__ = ["check_model", "check_fit_result", "check_posterior"]

#: the attributes of a :class:`~bayesphys.FitResult` the table reads
_FIT_FIELDS = ("seconds", "converged", "steps", "loss_history", "message")


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def check_model(build: Callable[..., Any], model: Any) -> Any:
    """``model`` when it has callable ``fit`` and ``posterior`` methods, else a ``TypeError``
    naming ``build`` and what it returned (``None``, a forgotten ``return``, failed on with
    ``'NoneType' object has no attribute 'fit'``)."""
    lacks = [m for m in ("fit", "posterior") if not callable(getattr(model, m, None))]
    if lacks:
        raise TypeError(
            f"build: expected build(problem) to return a model with fit() and posterior() "
            f"methods, but {_name(build)} returned {type(model).__name__}, which has no "
            f"{' or '.join(f'{m}()' for m in lacks)}"
        )
    return model


def check_fit_result(model: Any, fit: Any) -> None:
    """Warn (``UserWarning``, kept in the problem's ``warnings`` column) when ``model.fit``
    returned an object with none of a :class:`~bayesphys.FitResult`'s attributes: the table's
    ``fit_seconds``, ``converged``, ``steps``, ``final_loss`` and ``message`` of the problem
    then hold blanks (NaN, False, 0, ''), not its fit's (``converged`` read False, silently)."""
    if any(hasattr(fit, a) for a in _FIT_FIELDS):
        return
    warnings.warn(
        f"{type(model).__name__}.fit returned {type(fit).__name__}, not a FitResult: the "
        "table's fit_seconds, converged, steps, final_loss and message of this problem are "
        "blanks (NaN, False, 0, ''), not its fit's; return a bayesphys.FitResult to fill them",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )


def check_posterior(model: Any, post: Any) -> Any:
    """``post`` when it has a callable ``to_inference_data`` (a bayesphys ``Posterior``), else
    a ``TypeError`` naming the model's ``posterior`` and what it returned (it failed with
    ``'Tensor' object has no attribute 'to_inference_data'``)."""
    if not callable(getattr(post, "to_inference_data", None)):
        raise TypeError(
            f"posterior: expected {type(model).__name__}.posterior() to return a bayesphys "
            f"Posterior (with to_inference_data), received {type(post).__name__}; wrap draws "
            "in bayesphys.SamplePosterior, or pass export=(model, posterior, seed) -> "
            "InferenceData to fit_many to export them yourself"
        )
    return post
