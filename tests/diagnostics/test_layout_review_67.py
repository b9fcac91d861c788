"""A truth that requires grad (or draws that are an ``nn.Parameter``) in the scores of the
calibration diagnostics (the test failed before)."""

from __future__ import annotations

import warnings

import torch

from bayesphys.diagnostics import score_summary

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
