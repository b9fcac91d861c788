"""Reprs a notebook shows: short, by shapes and sizes, never the data."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bayesphys._model import FitResult
from bayesphys.distributed import FitManyResult
from bayesphys.problems.gpme import make_dataset
from bayesphys.problems.populations import interacting_particles

LIMIT = 400


def test_data_sets_show_sizes_not_points():
    d = interacting_particles(n_train=10, n_cal=3, n_test=3)
    text = repr(d)
    assert len(text) < LIMIT and "pairs=16" in text and "dim=2" in text, text
    assert "'test': 3" in text and "tensor(" not in text
    g = make_dataset("stefan", params=[0.6] * 8, seed=1)
    text = repr(g)
    assert len(text) < LIMIT and "functions=8" in text and "Tensor[8, 100, 2]" in text, text
    assert "'stefan'" in text and "tensor(" not in text


def test_fit_result_shows_the_history_by_length():
    members = [FitResult(loss_history=[0.5] * 1000, steps=1000)] * 3
    res = FitResult(
        loss_history=[1.0] * 1199 + [0.25],
        seconds=3.2,
        converged=True,
        steps=1200,
        message="max steps (1200)",
        extra={"members": members, "best": 0.1},
    )
    text = repr(res)
    assert len(text) < LIMIT, text
    assert "steps=1200" in text and "final_loss=0.25" in text and "list(len=1200)" in text
    assert "'members': list(len=3)" in text


def test_calibration_result_and_record():
    from bayesphys.diagnostics import CoreFamily, run_sbc

    fam = CoreFamily()
    res = run_sbc(
        fam.simulate, fam.infer, fam.summaries(), n_sims=50, n_draws=19, seed=0, progress=False
    )
    text = repr(res)
    assert len(text) < LIMIT and "N=50" in text and "L=19" in text and "coverage90=" in text
    rec = repr(res.record)
    assert len(rec) < LIMIT and "draws=Tensor[50, 19, 5] float64" in rec, rec
    # a partial result (no record yet) still has a repr
    from bayesphys.diagnostics import CalibrationResult

    empty = CalibrationResult("p", "m", *([None] * 8))
    assert repr(empty) == "CalibrationResult(problem='p', method='m')"


def test_fit_many_result_counts_problems():
    table = pd.DataFrame({"status": ["ok", "ok", "failed"]}, index=[0, 1, 2])
    per = {i: {"posterior": object()} for i in range(2)}
    res = FitManyResult(None, table, per, executor="local", workers=2, seconds=1.5, seed=3)
    text = repr(res)
    assert text == (
        "FitManyResult(executor='local', workers=2, seconds=1.5, seed=3, problems=3, ok=2, "
        "failed=1)"
    )
    # a table without its status column (built by hand): the problems are still counted
    bare = FitManyResult(None, pd.DataFrame(), per, executor="local", workers=1, seconds=0.5)
    want = "FitManyResult(executor='local', workers=1, seconds=0.5, seed=None, problems=2)"
    assert repr(bare) == want


def test_models_have_one_line_reprs():
    from bayesphys.gp_pde import GPPDESolver
    from bayesphys.probconserv import ProbConserv

    text = repr(GPPDESolver("poisson1d-low", num_mixtures=2, seed=0))
    assert text.startswith("GPPDESolver(problem='poisson1d-low', grid=[64], Q=2"), text
    text = repr(ProbConserv("stefan", seed=0))
    assert text.startswith("ProbConserv(problem='stefan', step1='anp'") and "steps_done=0" in text
    assert "object at 0x" not in text


def test_flow_and_neural_process_models_have_one_line_reprs():
    from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
    from bayesphys.problems.populations import linear_map
    from tests.tiny_models import TINY_MFM, tiny_rgnp

    d = linear_map(n_train=4, n_cal=0, n_test=2, n_points=20)
    m = MetaFlowMatching(d, seed=0, **TINY_MFM)
    m.fit(steps=1, progress=False)
    # the method and coupling as strings, and the steps taken, as the ensemble's repr
    assert repr(m) == (
        "MetaFlowMatching(method='MFM', dim=2, coupling='index', steps_done=1, device=cpu)"
    )
    ens = MFMEnsemble(d, members=2, method="FM", **TINY_MFM)
    assert repr(ens) == (
        "MFMEnsemble(method='FM', members=2, dim=2, steps_done=[0, 0], device=cpu)"
    )
    text = repr(tiny_rgnp("poisson"))
    assert text == "RandomGridNP(problem='poisson', method='RGNP', device=cpu, dtype=float32)"


def test_short_summaries():
    from bayesphys._repr import short

    assert short(torch.zeros(3, 4)) == "Tensor[3, 4] float32"
    assert short(torch.tensor(2.5)) == "2.5"
    assert short([1, 2]) == "[1, 2]" and short(list(range(9))) == "list(len=9)"
    assert short("x" * 200).endswith("...'") and len(short("x" * 200)) <= 82
    assert short({"a": [torch.zeros(2)]}) == "{'a': list(len=1)}"
    # a long dict by its size and first keys, a nested one by its size
    assert short({i: i for i in range(40)}) == "dict(len=40, keys=[0, 1, 2, 3, ...])"
    assert short({"n": {"x": 1}}) == "{'n': dict(len=1, keys=['x'])}"

    class Wordy:
        def __repr__(self):
            return "w" * 200

    class Lines:
        def __repr__(self):
            return "a\nb"

    # other objects by their repr, unless it is long or spans lines
    assert short(Wordy()) == "<Wordy>" and short(Lines()) == "<Lines>"
    assert short(range(3)) == "range(0, 3)"


def test_reprs_never_raise():
    import numpy as np

    assert "loss_history=[]" in repr(FitResult(loss_history=[]))
    assert repr(FitResult(loss_history=torch.rand(1200))).startswith("FitResult(")
    assert repr(FitResult(loss_history=np.zeros(3))).startswith("FitResult(")
    assert "Tensor[] float32 meta" in repr(FitResult(extra={"x": torch.empty((), device="meta")}))
    d = interacting_particles(n_train=4, n_cal=2, n_test=2)
    d.source_features = []
    assert "features=None" in repr(d)


def test_posteriors_show_shapes_and_kind_not_values():
    from linear_operator.operators import DiagLinearOperator

    from bayesphys import GaussianPosterior, SamplePosterior

    g = GaussianPosterior(
        torch.zeros(4, 3, dtype=torch.float64),
        DiagLinearOperator(torch.ones(12, dtype=torch.float64)),
    )
    assert repr(g) == (
        "GaussianPosterior(event_shape=(4, 3), batch_shape=(), covariance=DiagLinearOperator, "
        "device=cpu, dtype=torch.float64)"
    )
    s = SamplePosterior(torch.zeros(2, 100, 5, 3), event_ndim=1)
    assert repr(s) == (
        "SamplePosterior(chains=2, draws=100, event_shape=(3,), batch_shape=(5,), device=cpu)"
    )


def test_a_half_built_posterior_has_a_repr():
    """An __init__ that raised part-way leaves a posterior without some attributes; printing
    it (a traceback's locals, a debugger) raised AttributeError from __repr__, which hid the
    error being looked at. It shows the class and what is known."""
    from bayesphys import GaussianPosterior, SamplePosterior

    mean = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="covariance: expected shape") as info:
        GaussianPosterior(mean, torch.eye(5, dtype=torch.float64))
    half = next(e.locals["self"] for e in info.traceback if "self" in e.locals)
    assert not hasattr(half, "covariance")  # raised after the shapes, before the covariance
    assert repr(half) == "GaussianPosterior(event_shape=(4, 3), batch_shape=())"
    bare = GaussianPosterior.__new__(GaussianPosterior)
    assert repr(bare) == "GaussianPosterior()"
    bare = SamplePosterior.__new__(SamplePosterior)
    assert repr(bare) == "SamplePosterior()"


def test_a_value_whose_repr_fails_is_shown_by_its_type():
    from bayesphys._repr import short

    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    assert short(Broken()) == "<Broken>"
    assert short({"a": Broken()}) == "{'a': <Broken>}"
    assert "extra={'b': <Broken>}" in repr(FitResult(extra={"b": Broken()}))
