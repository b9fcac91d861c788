"""Checks shared by the fit-callback tests of every training model (``fit(callback=...,
callback_every=...)``, the semantics of :meth:`bayesphys.neural_process.RandomGridNP.fit`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from bayesphys import FitResult


def check_bad_callbacks_refused(fit: Callable[..., Any]) -> None:
    """``fit(**kw)`` refuses a bad ``callback`` / ``callback_every`` with the shared messages
    (the caller then checks that nothing was trained)."""
    with pytest.raises(TypeError, match="callback: expected a callable or None"):
        fit(steps=4, callback=3, callback_every=2, progress=False)
    with pytest.raises(TypeError, match=r"callback: expected a callable callback\(model, step\)"):
        fit(steps=4, callback=lambda model: None, callback_every=2, progress=False)
    with pytest.raises(ValueError, match="callback_every: expected an int >= 1"):
        fit(steps=4, callback=lambda model, step: None, callback_every=0, progress=False)
    with pytest.raises(TypeError, match="callback_every: expected an int"):
        fit(steps=4, callback_every="2", progress=False)


def check_callback_time_excluded(fit: Callable[..., FitResult]) -> FitResult:
    """Three steps with a callback sleeping 0.2 s after each: the result's ``seconds`` leaves
    the 0.6 s out; returns the result."""
    t0 = time.perf_counter()
    r = fit(steps=3, progress=False, callback=lambda model, step: time.sleep(0.2), callback_every=1)
    wall = time.perf_counter() - t0
    assert r.steps == 3 and wall - r.seconds >= 0.6
    return r


def callbacks_around_a_nan_gradient(
    fit: Callable[..., FitResult], param: Any, bad_call: int, **fit_kw: Any
) -> tuple[FitResult, list[tuple[int, bool]]]:
    """``fit(callback=..., callback_every=1, progress=False, **fit_kw)`` with the gradient of
    ``param`` made NaN at its ``bad_call``-th backward pass (a finite loss whose update
    poisons the optimiser); returns the result and, per callback, ``(step, param finite)``."""
    import math

    import torch

    calls: list[int] = []
    seen: list[tuple[int, bool]] = []

    def hook(g):
        calls.append(1)
        return g * math.nan if len(calls) == bad_call else g

    handle = param.register_hook(hook)
    try:
        res = fit(
            progress=False,
            callback=lambda model, step: seen.append((step, bool(torch.isfinite(param).all()))),
            callback_every=1,
            **fit_kw,
        )
    finally:
        handle.remove()
    return res, seen
