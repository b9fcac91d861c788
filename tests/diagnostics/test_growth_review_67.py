"""Memory over the replicates of one calibration run: each replicate's inference is released
once its summaries are recorded (long runs of hundreds of fits in one process)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import torch
from torch import Tensor

from bayesphys.diagnostics.simulate import simulate_and_infer


def _simulate(n: int, *, seed: int):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return theta, theta + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _graph_keeping_infer(n_draws: int) -> tuple[Callable[[Tensor], Tensor], list[int]]:
    """A user's ``infer`` whose draws ``[n_draws, 2]`` carry the autograd graph of a fresh
    "fitted model" (a parameter) per call, and the list it fills with the number of earlier
    calls' parameters still alive at each call."""
    weights: list[weakref.ref] = []
    alive_at_call: list[int] = []
    gen = torch.Generator().manual_seed(1)

    def infer(data: Tensor) -> Tensor:
        gc.collect()
        alive_at_call.append(sum(w() is not None for w in weights))
        w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))  # "the fitted model"
        weights.append(weakref.ref(w))
        noise = torch.randn(n_draws, 2, generator=gen, dtype=torch.float64)
        return data * w + 0.1 * noise  # draws that require grad

    return infer, alive_at_call


def test_simulate_and_infer_keeps_no_graph_of_earlier_replicates():
    """Draws returned with their autograd graph (a user's network sampled outside no_grad)
    were recorded as summaries that kept that graph, and so every replicate's weights and
    intermediates, alive until the last of the ``N`` inferences: memory grew with ``N``."""
    infer, alive_at_call = _graph_keeping_infer(50)
    rec = simulate_and_infer(
        _simulate, infer, n_sims=6, n_draws=9, seed=0, field_levels=[0.5], progress=False
    )
    assert rec.draws.shape == (6, 9, 2) and not rec.draws.requires_grad
    assert not rec.truth.requires_grad
    assert rec.field_coverage is not None and not rec.field_coverage.requires_grad
    # at each call, the weights of every earlier replicate have been released
    assert alive_at_call == [0] * 6


def test_fit_recalibration_keeps_no_graph_of_the_draws():
    """fit_recalibration holds the posteriors of all ``n_fit`` (then ``n_eval``) inferences
    until it fits (evaluates) the map; draws returned with their autograd graph were held
    with it, and so every inference's weights and intermediates."""
    from bayesphys.diagnostics import Recalibrator, fit_recalibration

    infer, alive_at_call = _graph_keeping_infer(40)
    rec = fit_recalibration(_simulate, infer, n_fit=4, n_eval=3, seed=0, progress=False)
    assert isinstance(rec, Recalibrator)
    assert alive_at_call == [0] * 7
