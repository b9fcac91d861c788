"""A record recalibration applied to a record it already recalibrated (a rerun notebook cell
``record = recal.apply(record)``) composes the maps with a warning, never silently."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.diagnostics import SimulationRecord, fit_record_recalibration

F64 = torch.float64


def _record(seed: int, n: int = 40, draws: int = 19) -> SimulationRecord:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(n, 2, generator=g, dtype=F64)
    truth = centre + torch.randn(n, 2, generator=g, dtype=F64)  # sd 1 against draws' 0.4
    x = centre[:, None, :] + 0.4 * torch.randn(n, draws, 2, generator=g, dtype=F64)
    return SimulationRecord(names=["a", "b"], truth=truth, draws=x)


@pytest.mark.parametrize("method", ["zscore", "affine", "zscore+quantile"])
def test_applying_to_an_already_recalibrated_record_warns_and_composes(method):
    recal = fit_record_recalibration(_record(0), method)
    test = _record(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first application is quiet
        once = recal.apply(test)
    assert once.meta["recalibrated"] == method
    with pytest.warns(UserWarning, match=r"record: already recalibrated .*compose") as got:
        twice = recal.apply(once)
    assert got[0].filename == __file__  # at the user's line
    assert twice.meta["recalibrated"] == f"{method} then {method}"
    # what the docstring says: the draws are mapped again (a wider spread for this map)
    assert float(twice.draws.std(1).mean()) > 1.5 * float(once.draws.std(1).mean())
    assert torch.equal(test.draws, _record(1).draws)  # the input records are left alone
