"""Fit a :class:`~bayesphys.diagnostics.Recalibrator` on fresh simulations and evaluate it on
others: :func:`fit_recalibration` (the maps are described in
:mod:`bayesphys.diagnostics.recalibrate`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from .._checks import check_bool, check_int, check_seed, offset_seed
from .._posterior_args import _check_level, _check_levels
from .._progress import progress_bar
from ..posterior import Posterior, SamplePosterior
from .recalibrate import _LEVELS, Recalibrator, _check_method
from .simulate import as_draws_or_posterior, noted, simulated

__all__ = ["fit_recalibration"]


def fit_recalibration(
    simulate: Callable[..., tuple[Any, Any]],
    infer: Callable[[Any], Posterior],
    *,
    n_fit: int,
    n_eval: int,
    method: str = "zscore",
    level: float = 0.9,
    seed: int = 0,
    levels: Sequence[float] = _LEVELS,
    progress: bool = True,
) -> Recalibrator:
    """Fit a :class:`Recalibrator` on ``n_fit`` fresh simulations and evaluate it on ``n_eval``
    others (seeds ``seed + 1`` and ``seed + 2``, disjoint from a calibration run at ``seed``).

    ``simulate(n, seed=) -> (theta [n, *event], data)``; ``infer(data[i]) -> Posterior`` or
    draws ``[L, *event]`` (taken as an empirical posterior, ``SamplePosterior``).
    ``n_fit, n_eval >= 1``, ``level``, ``levels``, ``seed`` and ``progress`` are checked
    before the first simulation; what ``simulate`` returns is checked as
    :func:`~bayesphys.diagnostics.run_sbc` checks it, and each posterior's ``batch + event``
    shape (draws: ``[L, *event]``) against ``theta[i]``, errors naming ``simulate`` or
    ``infer``; an error raised in one inference carries a note naming its problem.
    ``progress``: a progress bar over the ``n_fit + n_eval`` inferences on stderr,
    as :func:`~bayesphys.diagnostics.run_sbc` shows (``False``: none).
    """

    # every argument before any simulation: n_fit = 0 failed after the simulation naming
    # "posteriors/truths", and a bad level or levels only after the n_fit (and n_eval) fits
    _check_method(method)
    n_fit = check_int("n_fit", n_fit, minimum=1)
    n_eval = check_int("n_eval", n_eval, minimum=1)
    level = _check_level(level)
    levels = _check_levels(levels)
    seed = check_seed("seed", seed)
    progress = check_bool("progress", progress)
    for name, fn in (("simulate", simulate), ("infer", infer)):
        if not callable(fn):
            raise TypeError(f"{name}: expected a callable, received {type(fn).__name__}")

    def posterior(data: Any, truth: Tensor, i: int, n: int, kind: str) -> Posterior:
        # draws [L, *event] (what run_sbc also takes from infer) as an empirical posterior;
        # the user's error in one of the inferences names its problem
        with noted(f"fit_recalibration: raised in {kind} problem {i} of {n} (seed={seed})"):
            p = as_draws_or_posterior(infer(data[i]), f"{kind} problem {i}")
            # a 0-d tensor (a point estimate) holds no draws axis: for a scalar theta its
            # shape[1:] matched, and SamplePosterior refused it as "draws", naming no infer
            if isinstance(p, Tensor) and (p.ndim == 0 or tuple(p.shape[1:]) != tuple(truth.shape)):
                # draws [*event, L] (the draws axis last) were read as one draw of another
                # shape, and the error blamed the truths
                raise ValueError(
                    f"infer ({kind} problem {i}): expected draws [L, *event] of the simulated "
                    f"object's shape {tuple(truth.shape)}, received draws {tuple(p.shape)}"
                )
            if not isinstance(p, Tensor) and (*p.batch_shape, *p.event_shape) != tuple(truth.shape):
                raise ValueError(
                    f"infer ({kind} problem {i}): expected a posterior over the simulated "
                    f"object's shape {tuple(truth.shape)} (batch + event), received batch "
                    f"{tuple(p.batch_shape)} and event {tuple(p.event_shape)}"
                )
            # in the noted block: its refusal of the draws (a single draw) names the problem;
            # draws without their autograd graph (a network sampled outside no_grad): all
            # n_fit + n_eval posteriors are kept, and with the graph every fit's weights were
            return SamplePosterior(p.detach()[None]) if isinstance(p, Tensor) else p

    # each step is one of the user's inferences (a fit each), as run_sbc's bar counts them
    bar = progress_bar(
        total=n_fit + n_eval, desc="recalibration infer", progress=progress, leave=False
    )

    def posteriors(theta: Tensor, data: Any, n: int, kind: str) -> list[Posterior]:
        out = []
        for i in range(n):
            out.append(posterior(data, theta[i], i, n, kind))
            bar.update()
        return out

    try:
        # checked as run_sbc checks it: a simulate that did not return (theta, data) with n
        # problems failed with "too many values to unpack" or an IndexError in problem n - 1
        theta, data = simulated(simulate, n_fit, offset_seed(seed, 1))
        posts = posteriors(theta, data, n_fit, "fit")
        rec = Recalibrator.fit(posts, [theta[i] for i in range(n_fit)], method=method, level=level)
        theta_e, data_e = simulated(simulate, n_eval, offset_seed(seed, 2))
        posts_e = posteriors(theta_e, data_e, n_eval, "evaluation")
    finally:
        bar.close()
    rec.evaluate(posts_e, [theta_e[i] for i in range(n_eval)], levels)
    return rec
