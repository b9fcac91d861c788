"""fit_recalibration on an ``infer`` that returns no draws axis: a point estimate (a 0-d
tensor) for a scalar ``theta`` passed the new shape check (its ``shape[1:]`` is the truth's
``()``) and was refused by ``SamplePosterior`` as "draws", naming neither ``infer`` nor the
problem; a single draw was refused the same way, without the problem's note."""

from __future__ import annotations

import pytest
import torch

from bayesphys.diagnostics import fit_recalibration, simulate_and_infer


def simulate(n: int, *, seed: int):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, generator=g, dtype=torch.float64)
    return theta, theta + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)


def _notes(err: BaseException) -> str:
    return " ".join(getattr(err, "__notes__", []))


def test_a_point_estimate_for_a_scalar_theta_is_refused_naming_infer():
    def infer(y):
        return y.clone()  # 0-d: a point estimate, no draws axis

    with pytest.raises(ValueError, match=r"infer \(fit problem 0\): expected draws \[L, \*event\]"):
        fit_recalibration(simulate, infer, n_fit=12, n_eval=12, progress=False)
    # as simulate_and_infer names it
    with pytest.raises(ValueError, match=r"infer: expected posterior draws"):
        simulate_and_infer(simulate, infer, n_sims=3, n_draws=2, progress=False)


def test_a_single_draw_is_refused_with_the_problem_it_came_from():
    def infer(y):
        return y.reshape(1)  # draws [1]: one draw, too few for empirical moments

    with pytest.raises(ValueError, match="at least two draws") as info:
        fit_recalibration(simulate, infer, n_fit=12, n_eval=12, progress=False)
    assert "fit_recalibration: raised in fit problem 0 of 12" in _notes(info.value)
