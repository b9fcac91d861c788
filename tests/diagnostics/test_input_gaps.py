"""SimulationRecord checks its fields when built (each test failed before its fix, except
the guards of records the package builds itself)."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.diagnostics import (
    SimulationRecord,
    analyse,
    fit_record_recalibration,
    simulate_and_infer,
)

F64 = torch.float64


def _parts(n=6, lsz=5, k=2):
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(n, k, generator=g, dtype=F64)
    draws = torch.randn(n, lsz, k, generator=g, dtype=F64)
    return {"names": [f"s{j}" for j in range(k)], "truth": truth, "draws": draws}


def _with(**kw):
    return {**_parts(), **kw}


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        # n_sims raised AttributeError: 'list' object has no attribute 'shape'
        (_with(truth=[[0.0, 1.0]] * 6), TypeError, r"^record\.truth: expected a torch\.Tensor"),
        (_with(draws=torch.zeros(6, 5)), ValueError, r"^record\.truth/record\.draws: expected"),
        (_with(draws=torch.zeros(5, 5, 2)), ValueError, r"received \(6, 2\) and \(5, 5, 2\)"),
        (_with(draws=torch.zeros(6, 5, 3)), ValueError, r"^record\.draws: expected K = 2"),
        (_with(draws=torch.zeros(6, 0, 2)), ValueError, r"L >= 1 draws"),
        (_with(truth=torch.zeros(6, 2, dtype=torch.complex64)), TypeError, "real values"),
        (_with(truth=torch.full((6, 2), math.nan)), ValueError, r"^record\.truth: expected fin"),
        (_with(draws=torch.full((6, 5, 2), math.inf)), ValueError, r"^record\.draws: expected fin"),
        # three names for two summaries went through a recalibration into its record
        (_with(names=["a", "b", "c"]), ValueError, r"^record\.names: expected 2 names"),
        (_with(names="ab"), TypeError, r"^record\.names: expected a list"),
        (_with(levels=(0.5, 1.5)), ValueError, r"^record\.levels\[1\]"),
        (_with(field_coverage=torch.zeros(6, 2)), ValueError, r"^record\.field_coverage: exp"),
        (_with(seconds=math.nan), ValueError, r"^record\.seconds: expected a finite"),
        (_with(seconds=-1.0), ValueError, r"^record\.seconds: "),
        (_with(meta=None), TypeError, r"^record\.meta: expected a dict, received NoneType"),
    ],
)
def test_a_bad_record_is_refused_when_built(kwargs, err, match):
    with pytest.raises(err, match=match):
        SimulationRecord(**kwargs)


def test_a_field_assigned_after_building_is_still_checked_by_analyse():
    rec = SimulationRecord(**_parts())
    rec.names = ["only one"]
    with pytest.raises(ValueError, match=r"^record\.names: expected 2 names"):
        analyse(rec)


def test_records_the_package_builds_pass_their_checks():
    def simulate(n, seed):
        g = torch.Generator().manual_seed(seed)
        theta = torch.randn(n, 2, generator=g, dtype=F64)
        return theta, theta + 0.1 * torch.randn(n, 2, generator=g, dtype=F64)

    gen = torch.Generator().manual_seed(1)

    def infer(y):
        return y + 0.1 * torch.randn(40, 2, generator=gen, dtype=F64)

    plain = simulate_and_infer(
        simulate, infer, n_sims=8, n_draws=40, field_levels=None, progress=False
    )
    assert plain.levels == () and plain.field_coverage is None
    fields = simulate_and_infer(
        simulate, infer, n_sims=8, n_draws=40, field_levels=(0.5, 0.9), progress=False
    )
    assert fields.field_coverage.shape == (8, 2)
    fit = fit_record_recalibration(fields, "affine")
    out = fit.apply(fields)
    assert out.draws.shape == fields.draws.shape and out.meta == {"recalibrated": "affine"}
    assert analyse(fields).metrics()["field_coverage90"] is not None
    assert analyse(out).record is out
