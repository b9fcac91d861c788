"""What the calibration tools build from a caller's tensors is their own: a later in-place edit
of the caller's tensor, or of the returned object, does not reach the other (review of
aliasing; each test failed before its mend)."""

from __future__ import annotations

import copy

import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.diagnostics import (
    CoreFamily,
    SimulationRecord,
    fit_recalibration,
    fit_record_recalibration,
    front_position,
    total_mass,
)

F64 = torch.float64


@pytest.mark.parametrize(
    ("build", "edit"),
    [
        (lambda w: total_mass(w), lambda w: w.mul_(5.0)),
        (lambda w: total_mass(w), lambda w: w.fill_(float("nan"))),  # past its check
        (lambda w: total_mass(w.numpy()), lambda w: w.mul_(5.0)),  # the array's memory
        (lambda x: front_position(x), lambda x: x.add_(10.0)),
        (lambda x: front_position(x.numpy()), lambda x: x.add_(10.0)),
    ],
    ids=["mass-scaled", "mass-nan", "mass-array", "front-moved", "front-array"],
)
def test_a_summary_keeps_its_own_weights_and_grid(build, edit):
    """total_mass kept the caller's weights and front_position the caller's grid: an edit of
    them after the build changed every later summary (a NaN weight, a grid no longer
    increasing, went past the checks made at the build)."""
    given = torch.tensor([0.0, 0.25, 0.5, 0.75], dtype=F64)
    summary = build(given)
    u = torch.tensor([[1.0, 0.8, 0.3, 0.1], [0.9, 0.9, 0.6, 0.2]], dtype=F64)
    before = summary(u)
    edit(given)
    torch.testing.assert_close(summary(u), before, rtol=0, atol=0)


def test_a_recalibrated_record_has_a_truth_of_its_own():
    """RecordRecalibration.apply returned a record holding the given record's truth tensor:
    an edit of one record's truth changed the other's."""
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(40, 2, generator=g, dtype=F64)
    draws = truth[:, None] + torch.randn(40, 9, 2, generator=g, dtype=F64)
    record = SimulationRecord(names=["a", "b"], truth=truth.clone(), draws=draws.clone())
    out = fit_record_recalibration(record, "affine").apply(record)
    torch.testing.assert_close(out.truth, truth, rtol=0, atol=0)
    out.truth.add_(1.0)
    out.draws.add_(1.0)
    assert torch.equal(record.truth, truth) and torch.equal(record.draws, draws)


def test_a_wrapped_posteriors_heldout_report_is_a_copy():
    """RecalibratedPosterior.heldout_coverage was a shallow copy: its lists of levels and
    coverages were the recalibrator's, so an edit of one posterior's report changed the
    recalibrator's and that of every posterior it wraps."""
    fam = CoreFamily(inflate=0.5)
    rec = fit_recalibration(fam.simulate, fam.infer, n_fit=10, n_eval=5, seed=0, progress=False)
    before = copy.deepcopy(rec.heldout)
    base = GaussianPosterior(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64))
    report = rec.wrap(base).heldout_coverage
    assert report == before
    for value in report.values():
        if isinstance(value, list):
            value[0] = -1.0
    assert rec.heldout == before
    assert rec.wrap(base).heldout_coverage == before
