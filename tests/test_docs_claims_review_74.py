"""Prose claims of README.md and docs/ (review 74) that are cheap to pin: each test fails when
the behaviour the page states changes. Code blocks are run by ``test_docs_snippets.py``; these
are claims in the text beside them."""

from __future__ import annotations

import inspect
import json
import types
import warnings

import pytest
import torch

import bayesphys
from bayesphys import SamplePosterior, check_int, check_seed, plot_populations
from bayesphys.diagnostics import CoreFamily, probe, run_sbc
from bayesphys.diagnostics import suite as calibration_suite
from bayesphys.distributed import fit_many
from bayesphys.gp_pde import GPPDESolver
from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.neural_process import RandomGridNP
from bayesphys.odil import GliomaModel
from bayesphys.probconserv import ProbConserv


def test_a_renamed_argument_gives_a_package_future_warning():
    """README, "Warnings in the tests": every package warning is a BayesphysWarning and still
    its standard category, FutureWarning included (a renamed argument under its old name)."""
    draws = torch.randn(1, 3, 8, 2, generator=torch.Generator().manual_seed(0))
    post = SamplePosterior(draws, event_ndim=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ax = plot_populations(post, num_draws=2)
    import matplotlib.pyplot as plt

    plt.close(ax.figure)
    renamed = [w for w in caught if "renamed" in str(w.message)]
    assert renamed, [str(w.message) for w in caught]
    assert issubclass(renamed[0].category, bayesphys.BayesphysWarning)
    assert issubclass(renamed[0].category, FutureWarning)


def _hook(calibrate_rows):
    return types.SimpleNamespace(calibrate_rows=calibrate_rows)


def _raise(quick, seed):
    raise RuntimeError("boom")


def _rows(path):
    return json.loads(path.read_text(encoding="utf-8"))["rows"]


def test_calibrate_without_a_hook_writes_one_not_calibrated_row(monkeypatch, tmp_path):
    """docs/calibration.md, `bayesphys calibrate`: the row a component without a hook gets."""
    monkeypatch.setattr(calibration_suite, "load_hook", lambda component: None)
    path = calibration_suite.run_calibration("gp_pde", quick=True, out=tmp_path)
    (row,) = _rows(path)
    assert row["note"] == (
        "not calibrated: bayesphys/gp_pde/_calibration.py with calibrate_rows(quick, seed) is "
        "not present"
    )


def test_calibrate_with_a_raising_hook_fails_and_keeps_earlier_rows(monkeypatch, tmp_path):
    """docs/calibration.md: a hook that raises ends the run with CalibrationFailed (status 1
    of the command) after the file is written; a row `failed: calibrate_rows failed: ...`
    records it when the file holds no rows of the component, else those rows are kept."""
    monkeypatch.setattr(calibration_suite, "load_hook", lambda component: _hook(_raise))
    with pytest.raises(calibration_suite.CalibrationFailed, match="calibrate_rows failed"):
        calibration_suite.run_calibration("gp_pde", quick=True, out=tmp_path)
    (row,) = _rows(tmp_path / "calibration.json")
    assert row["note"].startswith("failed: calibrate_rows failed: RuntimeError('boom')")

    metrics = {"coverage50": 0.5, "coverage90": 0.9, "coverage95": 0.95, "sbc_pvalue": 0.5}
    metrics |= {"tarp_atc": 0.0, "crps": 0.1, "seconds": 1.0}
    good = _hook(lambda quick, seed: [{"problem": "p", "method": "m", "metrics": metrics}])
    monkeypatch.setattr(calibration_suite, "load_hook", lambda component: good)
    calibration_suite.run_calibration("gp_pde", quick=True, out=tmp_path)
    monkeypatch.setattr(calibration_suite, "load_hook", lambda component: _hook(_raise))
    with pytest.raises(calibration_suite.CalibrationFailed, match="previous rows"):
        calibration_suite.run_calibration("gp_pde", quick=True, out=tmp_path)
    (row,) = _rows(tmp_path / "calibration.json")
    assert (row["problem"], row["method"]) == ("p", "m")


def test_the_cli_calibrate_exits_1_on_a_failed_hook(monkeypatch, tmp_path, capsys):
    from bayesphys.cli import main

    monkeypatch.setattr(calibration_suite, "load_hook", lambda component: _hook(_raise))
    assert main(["calibrate", "gp_pde", "--quick", "--out", str(tmp_path)]) == 1
    assert "calibrate_rows failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "cls, seed",
    [
        (GPPDESolver, None),
        (RandomGridNP, None),
        (GliomaModel, None),
        (ProbConserv, 0),
        (MetaFlowMatching, 0),
        (MFMEnsemble, 0),
    ],
)
def test_default_seeds_of_the_models(cls, seed):
    """docs/concepts.md, "Seeds and devices": which models are built with seed=None or 0."""
    assert inspect.signature(cls).parameters["seed"].default == seed


@pytest.mark.parametrize("cls", [ProbConserv, MetaFlowMatching, MFMEnsemble, GliomaModel])
def test_posteriors_that_draw_with_seed_0_by_default(cls):
    assert inspect.signature(cls.posterior).parameters["seed"].default == 0


@pytest.mark.parametrize(
    "cls", [GPPDESolver, ProbConserv, RandomGridNP, MetaFlowMatching, MFMEnsemble]
)
def test_training_fits_take_max_seconds_and_a_callback_every_100_steps(cls):
    """docs/concepts.md, "Models": max_seconds, callback(model, step), callback_every 100."""
    params = inspect.signature(cls.fit).parameters
    assert params["callback_every"].default == 100
    assert "callback" in params and "max_seconds" in params


def test_scalar_settings_checks():
    """docs/concepts.md, "Models": TypeError for 2.5 or True as a count, 64.0 read as 64."""
    assert check_int("width", 64.0) == 64 and type(check_int("width", 64.0)) is int
    for bad in (2.5, True):
        with pytest.raises(TypeError, match="width"):
            check_int("width", bad)


def test_a_misspelt_choice_names_the_closest_one():
    """docs/concepts.md quotes this message."""
    with pytest.raises(ValueError) as err:
        ProbConserv(step1="GP")
    assert str(err.value) == "step1: expected 'anp' or 'gp', received 'GP' (did you mean 'gp'?)"


def test_seed_range():
    """docs/concepts.md: a seed is an int in [-2**63, 2**64 - 1]."""
    assert check_seed("seed", -(2**63)) == -(2**63)
    assert check_seed("seed", 2**64 - 1) == 2**64 - 1
    for bad in (2**64, -(2**63) - 1):
        with pytest.raises(ValueError, match=r"seed: expected an int in \[-2\*\*63, 2\*\*64 - 1\]"):
            check_seed("seed", bad)


def test_joint_sbc_p_values_need_two_summaries_and_crossfit_four_problems():
    """docs/calibration.md: the joint columns are None for K = 1, crossfit also for N < 4."""
    fam = CoreFamily()
    one = run_sbc(fam.simulate, fam.infer, {"a": probe(50)}, n_sims=6, n_draws=9, progress=False)
    m = one.metrics()
    assert m["sbc_pvalue_joint"] is None and m["sbc_pvalue_crossfit"] is None
    few = run_sbc(fam.simulate, fam.infer, fam.summaries(), n_sims=3, n_draws=9, progress=False)
    m = few.metrics()
    assert m["sbc_pvalue_joint"] is not None and m["sbc_pvalue_crossfit"] is None


class _Fixed:
    """A model whose posterior is a fixed Gaussian (fit_many's default export draws it)."""

    def __init__(self, problem):
        self.problem = problem

    def fit(self):
        return bayesphys.FitResult([0.0], 0.0, True, 1, "")

    def posterior(self):
        mean = torch.zeros(3, dtype=torch.float64)
        return bayesphys.GaussianPosterior(mean, torch.eye(3, dtype=torch.float64))


def test_fit_many_keeps_200_draws_per_problem_by_default():
    """docs/scale_out.md, "Output size": num_samples (default 200)."""
    res = fit_many({"a": 0, "b": 1}, _Fixed, executor="sequential", seed=0, progress=False)
    assert tuple(res.idata.posterior["u"].shape) == (1, 200, 2, 3)
    assert res.failed == [] and res.seed == 0
