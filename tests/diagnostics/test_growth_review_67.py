"""Memory over the replicates of one calibration run: each replicate's inference is released
once its summaries are recorded (long runs of hundreds of fits in one process)."""

from __future__ import annotations

import gc
import weakref

import torch

from bayesphys.diagnostics.simulate import simulate_and_infer


def _simulate(n: int, *, seed: int):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return theta, theta + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def test_simulate_and_infer_keeps_no_graph_of_earlier_replicates():
    """Draws returned with their autograd graph (a user's network sampled outside no_grad)
    were recorded as summaries that kept that graph, and so every replicate's weights and
    intermediates, alive until the last of the ``N`` inferences: memory grew with ``N``."""
    weights: list[weakref.ref] = []
    alive_at_call: list[int] = []
    gen = torch.Generator().manual_seed(1)

    def infer(data):
        gc.collect()
        alive_at_call.append(sum(w() is not None for w in weights))
        w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))  # "the fitted model"
        weights.append(weakref.ref(w))
        noise = torch.randn(50, 2, generator=gen, dtype=torch.float64)
        return data * w + 0.1 * noise  # draws [50, 2] that require grad

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

    weights: list[weakref.ref] = []
    alive_at_call: list[int] = []
    gen = torch.Generator().manual_seed(1)

    def infer(data):
        gc.collect()
        alive_at_call.append(sum(w() is not None for w in weights))
        w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
        weights.append(weakref.ref(w))
        return data * w + 0.1 * torch.randn(40, 2, generator=gen, dtype=torch.float64)

    rec = fit_recalibration(_simulate, infer, n_fit=4, n_eval=3, seed=0, progress=False)
    assert isinstance(rec, Recalibrator)
    assert alive_at_call == [0] * 7
