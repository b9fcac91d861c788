"""Legal but unusual inputs of the calibration diagnostics: a truth that requires grad (or
draws that are an ``nn.Parameter``) in the scores, and numpy arrays with negative strides
(``np.flip``, ``a[::-1]``) or read-only ones (a memmap opened with mode "r") as what
``simulate`` / ``infer`` return or as held-out truths (each test failed before)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys.diagnostics import CoreFamily, Recalibrator, run_sbc, score_summary

F64 = torch.float64


def test_score_summary_of_a_truth_that_requires_grad_does_not_warn():
    # float() of the scores warned "Converting a tensor with requires_grad=True to a scalar"
    # (an error under python -W error); the scores are plain floats either way
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(8, 2, dtype=F64, generator=g)
    draws = torch.randn(8, 9, 2, dtype=F64, generator=g)
    ref = score_summary(truth, draws)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = score_summary(truth.clone().requires_grad_(True), draws)
        assert got == score_summary(truth, torch.nn.Parameter(draws.clone()))
    assert got == ref


def _flipped(a: np.ndarray) -> np.ndarray:
    out = np.flip(np.flip(a, -1).copy(), -1)
    assert any(st < 0 for st in out.strides)
    return out


def _read_only(a: np.ndarray) -> np.ndarray:
    out = np.array(a)
    out.flags.writeable = False
    return out


ODD = {"flipped": _flipped, "read_only": _read_only}


@pytest.mark.parametrize("odd", list(ODD))
def test_run_sbc_takes_odd_arrays_from_simulate_and_infer(odd):
    # torch.as_tensor refused the flipped arrays ("At least one stride in the given numpy array
    # is negative") and warned at the read-only ones
    fam, conv = CoreFamily(), ODD[odd]

    def simulate(n, seed):
        theta, data = fam.simulate(n, seed=seed)
        return conv(theta.numpy()), data

    def infer(data, odd=True):
        draws = fam.infer(data).sample((12,)).numpy()
        return conv(draws) if odd else draws

    def ranks(theta_from, infer_with):
        res = run_sbc(theta_from, infer_with, fam.summaries(), n_sims=6, n_draws=9, progress=False)
        return res.ranks

    ref = run_sbc(fam.simulate, fam.infer, fam.summaries(), n_sims=6, n_draws=9, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(ranks(simulate, fam.infer), ref.ranks)
        torch.manual_seed(0)
        got = ranks(fam.simulate, infer)
    torch.manual_seed(0)
    assert torch.equal(got, ranks(fam.simulate, lambda data: infer(data, odd=False)))


@pytest.mark.parametrize("odd", list(ODD))
def test_recalibrator_fit_takes_odd_truth_arrays(odd):
    fam = CoreFamily()
    theta, data = fam.simulate(6, seed=0)
    posts = [fam.infer(d) for d in data]
    ref = Recalibrator.fit(posts, list(theta), method="zscore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = Recalibrator.fit(posts, [ODD[odd](t.numpy()) for t in theta], method="zscore")
    assert got.scale == ref.scale
