"""A misspelt choice names the closest valid one on every workflow entry point, as
docs/concepts.md promises ("A misspelt choice or setting names the closest valid one"): the
posterior method of ProbConserv, fit_many's executor, run_calibration's component, the
recalibration method, Meta FM's conditioning, the neural process's grid, the GP PDE solver's
nonlinear solver and solve weighting, ODIL's linear solver, Meta FM's coupling and solver,
the coverage kind and a population split named the valid choices but
not the one meant; and the command line reads component names with dashes, as it reads
example names (found by a workflow review)."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.diagnostics import (
    CoreFamily,
    expected_coverage,
    fit_recalibration,
    run_calibration,
)
from bayesphys.diagnostics.recalibrate import Recalibrator
from bayesphys.distributed import fit_many
from bayesphys.examples.cohort import LinearGaussianModel, make_cohort
from bayesphys.gp_pde import GPPDESolver
from bayesphys.meta_fm.config import MFMConfig
from bayesphys.meta_fm.field import VectorField
from bayesphys.neural_process.config import RGNPConfig
from bayesphys.odil import DiscreteProblem, minimize
from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset
from bayesphys.problems.populations import linear_map
from bayesphys.problems.stencil import d1


def _probconserv_posterior(method: str):
    model = ProbConserv("diffusion", hidden=8, n_samples=2, seed=0)
    data = make_dataset(model.problem, 1, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the untrained model's warning
        return model.posterior(data, method=method)


def _odil_minimize(linear_solver: str):
    prob = DiscreteProblem({"u": (4,)}, {}, lambda f, p: {"r": f["u"] - 1.0})
    return minimize(prob, method="gn", steps=1, linear_solver=linear_solver, progress=False)


CASES = {
    "ProbConserv.posterior method": (lambda: _probconserv_posterior("hardC"), "hardc"),
    "fit_many executor": (
        lambda: fit_many(make_cohort(1, seed=0), LinearGaussianModel, executor="Sequential"),
        "sequential",
    ),
    "run_calibration component": (lambda: run_calibration("gp-pde", quick=True), "gp_pde"),
    "fit_recalibration method": (
        lambda: fit_recalibration(
            CoreFamily().simulate, CoreFamily().infer, n_fit=4, n_eval=4, method="zScore"
        ),
        "zscore",
    ),
    "Recalibrator.from_z method": (
        lambda: Recalibrator.from_z(torch.randn(8, dtype=torch.float64), method="conformel"),
        "conformal",
    ),
    "MFMConfig conditioning": (lambda: MFMConfig(conditioning="FiLM"), "film"),
    "VectorField conditioning": (lambda: VectorField(2, 1, conditioning="concatenate"), "concat"),
    "RGNPConfig grid": (lambda: RGNPConfig(grid="sobl"), "sobol"),
    "GPPDESolver nonlinear_solver": (
        lambda: GPPDESolver("allencahn1d-sin100", nonlinear_solver="gauss_newton"),
        "gauss-newton",
    ),
    "odil minimize linear_solver": (lambda: _odil_minimize("sparce"), "sparse"),
    "stencil scheme": (lambda: d1(torch.zeros(5), 0, 0.1, scheme="centre"), "central"),
    "MFMConfig coupling": (lambda: MFMConfig(coupling="OT"), "ot"),
    "MFMConfig solver": (lambda: MFMConfig(solver="dopri"), "dopri5"),
    "expected_coverage kind": (
        lambda: expected_coverage(torch.zeros(4, 2), torch.zeros(4, 9, 2), [0.5], "HDI"),
        "hdi",
    ),
    "PopulationPairs.subset split": (
        lambda: linear_map(n_train=4, n_cal=2, n_test=2, n_points=8).subset("tset"),
        "test",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_misspelt_choice_names_the_closest_valid_one(case):
    call, meant = CASES[case]
    # PopulationPairs.subset raises a KeyError, as a mapping does
    with pytest.raises((ValueError, KeyError), match=rf"\(did you mean '{meant}'\?\)"):
        call()


def test_component_names_on_the_command_line_take_dashes_as_run_names_do():
    # `bayesphys run gp-pde-inverse` reads dashes or underscores; `calibrate gp-pde`,
    # `bench scale-out` and `demo --only meta-fm` were refused as invalid choices
    from bayesphys.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["calibrate", "gp-pde", "--quick"]).component == "gp_pde"
    assert parser.parse_known_args(["bench", "scale-out"])[0].component == "scale_out"
    only = parser.parse_args(["demo", "--only", "meta-fm", "neural_process"]).only
    assert only == ["meta_fm", "neural_process"]
    with pytest.raises(SystemExit) as err:  # a name that is no component either way
        parser.parse_args(["calibrate", "gp-pdx"])
    assert err.value.code == 2
