"""Defects the review of the ODIL engine's less-read parts found (each test fails on the code
before).

- a Jacobian with NaN/Inf entries (sqrt(|u|) at u = 0) refined the colouring to its limit
  and then blamed ``stencil_radius``;
- ``theta_covariance(dense=True)`` called the parameters undetermined when field cells no
  residual reads made the Gauss-Newton matrix singular (the CG and sparse paths drop them);
- ``standard_margin_plan`` took labels 3 / NaN and a probability map as the brain;
- ``fit_odil(linear_solver="sparse")`` on a float32 model named a problem the user never
  built; a joint fit that accepted no step replaced the posterior and left ``model.result``.
"""

from __future__ import annotations

import pytest
import torch

from bayesphys.odil import (
    DiscreteProblem,
    GliomaModel,
    minimize,
    standard_margin_plan,
    theta_covariance,
)
from bayesphys.problems import brain_phantom, synthetic_patient


def _laplacian(u):
    return u[2:, 1:-1] + u[:-2, 1:-1] + u[1:-1, 2:] + u[1:-1, :-2] - 4 * u[1:-1, 1:-1]


def test_a_non_finite_jacobian_is_named_not_blamed_on_the_stencil():
    def res(f, p):
        u = f["u"]
        return {"pde": _laplacian(u) - p["k"], "data": torch.sqrt(u.abs()) - 0.5}

    prob = DiscreteProblem({"u": (12, 12)}, {"k": 0.1}, res)
    x = prob.initial()
    with pytest.raises(ValueError, match="Jacobian-vector products are not finite at x"):
        theta_covariance(prob, x, ["k"], sparse=True)
    x1, fit = minimize(prob, x, method="gn", steps=2, linear_solver="sparse")
    assert not fit.converged and "non-finite Jacobian or step at step 0" in fit.message
    assert torch.equal(x1, x)


def test_dense_theta_covariance_drops_cells_no_residual_reads():
    mask = torch.ones(12)
    mask[5:9] = 0

    def res(f, p):
        u = f["u"] * mask
        return {
            "pde": u[2:] - 2 * u[1:-1] + u[:-2] - p["a"],
            "data": (u - p["b"] * torch.linspace(0, 1, 12))[mask > 0],
        }

    prob = DiscreteProblem({"u": (12,)}, {"a": 0.1, "b": 0.5}, res)
    x, _ = minimize(prob, method="gn", steps=5)
    sparse, _ = theta_covariance(prob, x, ["a", "b"], sparse=True)
    dense, _ = theta_covariance(prob, x, ["a", "b"], dense=True)
    torch.testing.assert_close(dense, sparse, rtol=1e-9, atol=0)


def test_margin_plan_checks_labels_and_brain():
    lab = torch.zeros(10, 9, 8, dtype=torch.long)
    lab[4:6, 4:6, 3:5] = 2
    brain = torch.ones_like(lab)
    plan = standard_margin_plan(lab, brain, 2.0, 4.0)
    assert int(plan.sum()) > int((lab == 2).sum())
    three = lab.clone()
    three[three == 2] = 3
    with pytest.raises(
        ValueError, match=r"labels: expected values in \{0, 1, 2\}, received also \[3\]"
    ):
        standard_margin_plan(three, brain, 2.0, 4.0)
    nan = lab.double()
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="labels: expected finite values"):
        standard_margin_plan(nan, brain, 2.0, 4.0)
    with pytest.raises(ValueError, match="brain: expected a boolean"):
        standard_margin_plan(lab, torch.full(lab.shape, 0.01), 2.0, 4.0)
    # a float 0/1 brain mask gives the same plan as an integer one
    assert torch.equal(standard_margin_plan(lab, brain.double(), 2.0, 4.0), plan)


def test_fit_odil_sparse_on_a_float32_model_names_the_model():
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    m = GliomaModel.from_patient(p, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"GliomaModel is torch.float32: build it with dtype"):
        m.fit_odil(linear_solver="sparse")


def test_a_joint_fit_that_accepts_no_step_keeps_the_previous_posterior():
    p = synthetic_patient(0, n=32, spacing=4.0)
    m = GliomaModel.from_patient(p, seed=0)
    m.fit(progress=False, steps=10)
    th, cov, res = m.theta.clone(), m.theta_cov.clone(), m.result
    with pytest.warns(RuntimeWarning, match="no Levenberg-Marquardt step was accepted"):
        out = m.fit_odil(nt=4, steps=3, linear_solver="sparse")
    assert len(out.loss_history) == 1 and out.extra["kept_previous"]
    assert torch.equal(m.theta, th) and torch.equal(m.theta_cov, cov) and m.result is res
    # a joint fit that moves: its result is the model's
    out = m.fit_odil(nt=4, steps=8, linear_solver="sparse")
    assert len(out.loss_history) > 1 and m.result is out


# seed=None means torch's global stream, as everywhere (API review, 2026-12-02)
def test_glioma_theta_draws_with_seed_none_come_from_the_global_stream(model):
    torch.manual_seed(0)
    a = model.theta_draws(50, seed=None)
    torch.manual_seed(0)
    assert torch.equal(a, model.theta_draws(50, seed=None))
    assert not torch.equal(a, model.theta_draws(50, seed=0))  # None read as 0 before


def test_glioma_replicates_with_seed_none_come_from_the_global_stream(model):
    c = torch.full(model.full_shape, 0.5, dtype=model.dtype)
    torch.manual_seed(0)
    a = model.replicate_observations(c, seed=None)["labels"]
    torch.manual_seed(0)
    assert torch.equal(a, model.replicate_observations(c, seed=None)["labels"])
    different = [
        not torch.equal(a, model.replicate_observations(c, seed=None)["labels"]) for _ in range(3)
    ]
    assert any(different)  # None read as 0 before: always the seed-0 replicate
