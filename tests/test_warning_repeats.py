"""Warnings in a user's loop: under Python's default filter a warning is shown once per
message and line, so a message that carries a number changing at every iteration (the
model's step count, a fitted value drifting between fits) was shown at every iteration of
an ordinary loop that trains on in chunks. These loops are each shown the warning once."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from tests.tiny_models import calibrated_tiny_rgnp

LOOPS = 6


def shown_by_default(loop: Callable[[], object], text: str) -> list[str]:
    """The messages containing ``text`` that the default filter shows while ``loop()`` runs
    (the first of each message at each line; the registry of earlier tests is reset)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        loop()
    return [str(r.message) for r in rec if text in str(r.message)]


def test_a_stale_rgnp_calibration_is_shown_once_in_a_train_and_query_loop():
    m, x, z, w, u = calibrated_tiny_rgnp()

    def loop():
        for _ in range(LOOPS):
            m.fit(steps=1, progress=False)
            m.posterior(x, z=z, w=w)

    got = shown_by_default(loop, "made for other weights")
    assert len(got) == 1, got
    assert "at step 2" in got[0]


def test_a_stale_probconserv_calibration_is_shown_once_in_a_train_and_query_loop():
    from bayesphys.probconserv import ProbConserv
    from bayesphys.problems.gpme import make_dataset

    m = ProbConserv("pme", hidden=8, n_samples=4, batch_size=2, seed=0)
    m.fit(steps=2, progress=False)
    test = make_dataset("pme", 2, seed=1)
    m.calibrate(n_functions=4, objective="ll")

    def loop():
        for _ in range(LOOPS):
            m.fit(steps=1, progress=False)
            m.posterior(test)

    got = shown_by_default(loop, "made for other weights")
    assert len(got) == 1, got
    assert "at step 2" in got[0]


def test_a_field_far_from_order_one_is_warned_about_once_per_model():
    from bayesphys.gp_pde import GPPDESolver

    big = 1e3
    x = torch.linspace(0, 1, 24, dtype=torch.float64)
    m = GPPDESolver(
        x=x,
        source=lambda x: -big * (2 * math.pi) ** 2 * torch.sin(2 * math.pi * x),
        boundary=lambda x: big * (torch.sin(2 * math.pi * x) + x),
        num_mixtures=2,
        seed=0,
    )

    def loop():
        for _ in range(LOOPS):
            m.fit(steps=2, progress=False)

    # its rms drifted between fits: a new message at 2 of these 6 fits (4 of 10) before
    got = shown_by_default(loop, "the fitted field's rms is")
    assert len(got) == 1, got
