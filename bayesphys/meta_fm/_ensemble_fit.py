"""How :meth:`~bayesphys.meta_fm.MFMEnsemble.fit` trains the members of a deep ensemble of
:class:`~bayesphys.meta_fm.MetaFlowMatching` models (Atanackovic et al. 2024, Meta Flow
Matching): one after another under one progress bar, members behind the others first catching
up, each distinct ``config.points`` warning given once for the ensemble, and the members' fit
results merged into one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._data_parallel import _active_group
from .._model import FitResult
from .._progress import progress_bar
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..problems.populations import PopulationPairs
from ._settings import points_warnings
from ._validate import check_pairs, training_split
from .model import MetaFlowMatching

__all__ = [
    "fit_members",
    "warn_points",
    "fit_member",
    "members_message",
    "mean_rate",
    "mean_history",
]


def members_message(messages: Sequence[str]) -> str:
    """The members' fit messages, identical ones once: ``"max steps (30) (all 3 members)"``,
    else ``"max steps (30) (members 0, 2); diverged ... (member 1)"``."""
    groups: dict[str, list[int]] = {}
    for j, msg in enumerate(messages):
        groups.setdefault(msg, []).append(j)
    if len(groups) == 1:
        return f"{messages[0]} (all {len(messages)} members)"
    return "; ".join(
        f"{msg} (member{'s' if len(js) > 1 else ''} {', '.join(map(str, js))})"
        for msg, js in groups.items()
    )


def fit_members(
    models: Sequence[MetaFlowMatching],
    data: PopulationPairs | None,
    steps: int,
    progress: bool,
    max_seconds: float | None,
    callback: Callable[[MetaFlowMatching, int], Any] | None = None,
    callback_every: int = 100,
) -> FitResult:
    """Fit every member of ``models`` for ``steps`` more steps than the member furthest on
    has taken (``max_seconds / len(models)`` of wall time each), rank 0 showing one bar over
    the members; the result's ``loss_history`` is the members' average, ``extra["members"]``
    their own results. ``callback``/``callback_every`` go to each member's fit."""
    warn_points(models, data)  # once, here: the members' copies are silenced below
    results = []
    starts: list[int] = []  # each member's steps before this call: its history's first step
    # members behind the others (an interrupted fit) first catch up, so that every member
    # ends with the same number of steps
    top = max(m.steps_done for m in models)
    method = models[0].config.method
    grp = _active_group()
    # one bar over the members (rank 0 only), each member's step bar nested below it
    bar = progress_bar(
        total=len(models),
        desc=f"{method} member 1/{len(models)}",
        unit="member",
        progress=progress and (grp is None or grp[0] == 0),
        leave=False,
    )
    try:
        for j, m in enumerate(models):
            bar.set_description(f"{method} member {j + 1}/{len(models)}")
            starts.append(m.steps_done)
            results.append(
                fit_member(
                    j,
                    m,
                    len(models),
                    data,
                    steps + top,
                    progress,
                    max_seconds,
                    callback=callback,
                    callback_every=callback_every,
                )
            )
            bar.update(1)
    finally:
        bar.close()
    n = min(len(r.loss_history) for r in results)
    hist = mean_history(results, starts)
    secs = sum(r.seconds for r in results)
    return FitResult(
        loss_history=hist,
        seconds=secs,
        converged=all(r.converged for r in results),
        steps=n,
        message=members_message([r.message for r in results]),
        extra={
            "members": results,
            "seconds_per_1k_steps": mean_rate(results),
        },
    )


def mean_history(results: Sequence[FitResult], starts: Sequence[int]) -> list[float]:
    """The members' mean loss at each step all of them took in this call: entry ``k`` of
    member ``j``'s ``loss_history`` is its step ``starts[j] + k + 1``, so a member that caught
    up contributes its last entries (the members' histories were averaged entry by entry, so
    a caught-up member's first steps were averaged with the others' later ones)."""
    lo = max(starts)
    hi = min(s + len(r.loss_history) for s, r in zip(starts, results))
    return [
        float(np.mean([r.loss_history[g - s] for s, r in zip(starts, results)]))
        for g in range(lo, hi)
    ]


def mean_rate(results: Sequence[FitResult]) -> float:
    """The members' mean ``seconds_per_1k_steps`` over those that took a step (NaN when none
    did): the members' summed seconds over the fewest steps of a member and the number of
    members gave a made-up rate to a call of no step, and overstated it when a member had
    caught up on steps the others had taken before."""
    rates = [r.extra["seconds_per_1k_steps"] for r in results if r.steps]
    return float(np.mean(rates)) if rates else math.nan


def warn_points(models: Sequence[MetaFlowMatching], data: PopulationPairs | None) -> None:
    """The members' ``config.points`` checks, each distinct one once for the ensemble (at
    the user's line); data a member would reject are left to it."""
    texts: list[str] = []
    for m in models:
        d = m.data if data is None else data
        if d is None:
            continue
        try:
            check_pairs(d, m.dim)
            d = training_split(d)
        except Exception:  # the member raises it, named
            continue
        cfg = m.config
        texts += points_warnings(
            d,
            cfg.points,
            cfg.method,
            m.coupling,
            "MFMEnsemble.fit",
            "build the ensemble with points",
        )
    for text in dict.fromkeys(texts):
        warnings.warn(text, BayesphysUserWarning, stacklevel=user_stacklevel())


def fit_member(
    j: int,
    m: MetaFlowMatching,
    members: int,
    data: PopulationPairs | None,
    top: int,
    progress: bool,
    max_seconds: float | None,
    *,
    callback: Callable[[MetaFlowMatching, int], Any] | None = None,
    callback_every: int = 100,
) -> FitResult:
    """Fit member ``j`` of ``members`` up to ``top`` steps in all, within ``max_seconds /
    members`` (its ``config.points`` warnings are :func:`warn_points`'s, given once), with
    ``callback(m, step)`` every ``callback_every`` of its steps; an error gets a note naming
    the member."""
    # the member skips its own config.points warnings (a flag on the member, not a global
    # warnings filter: filters are process-wide, and fits in other threads would share it)
    m._points_warned = True
    # its step bar names the member (every member's read "MFM fit", and logs keep them all)
    m._bar_label = f"{m.config.method} member {j + 1}/{members} steps"
    try:
        todo = top - m.steps_done
        share = None if max_seconds is None else max_seconds / members
        return m.fit(
            data,
            steps=todo,
            progress=progress,
            max_seconds=share,
            callback=callback,
            callback_every=callback_every,
        )
    except BaseException as err:
        done = f"members 0..{j - 1} were fitted" if j else "no member was fitted"
        note = (
            f"MFMEnsemble.fit: member {j} of {members} failed; {done}, member {j} keeps its last "
            "completed step, the others are as they were"
        )
        if hasattr(err, "add_note"):  # Python >= 3.11
            err.add_note(note)
        else:  # 3.10: the attribute add_note fills (tracebacks then do not print it)
            err.__notes__ = [*getattr(err, "__notes__", []), note]
        raise
    finally:
        m._points_warned = False
        m._bar_label = None
