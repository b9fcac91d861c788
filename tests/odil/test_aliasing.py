"""A glioma model's results are its own: an edit of a returned posterior, foci or fitted
``theta`` leaves the model alone (review of aliasing; each test failed before its mend)."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.odil import DiscreteProblem, GliomaModel, field_posterior, laplacian, minimize, shift


def _stand_in(patient) -> GliomaModel:
    m = GliomaModel.from_patient(patient)
    m.theta = m._theta0()
    m.theta_cov = 1e-4 * torch.eye(len(m.theta), dtype=m.dtype)
    return m


def test_edits_of_the_posterior_foci_and_fitted_theta_leave_the_model_alone(patient):
    m = _stand_in(patient)
    theta, cov = m.theta.clone(), m.theta_cov.clone()
    post = m.theta_posterior()
    post.mean.add_(1.0)  # was the model's theta itself
    to_dense = post.covariance.to_dense()
    to_dense.mul_(2.0)
    m.foci().add_(10.0)  # a view of the fitted theta
    t, c = m.fitted_theta()  # the model's own tensors without a recalibration
    t.zero_()
    c.zero_()
    assert torch.equal(m.theta, theta)
    assert torch.equal(m.theta_cov, cov)
    assert torch.equal(m.theta_posterior().covariance.to_dense(), cov)


def test_a_given_theta_still_has_its_foci_as_a_view(patient):
    m = _stand_in(patient)
    theta = m._theta0().requires_grad_(True)
    f = m.foci(theta)
    f.sum().backward()  # differentiable in the given theta (initial_state relies on it)
    assert torch.equal(theta.grad[2:], torch.ones_like(theta[2:]))


def test_later_edits_of_the_callers_maps_do_not_reach_the_model(patient):
    """The model kept the caller's tensors (``as_tensor`` makes no copy): an edit of the
    patient's maps after the build changed the model's ``wm`` / ``labels`` / ``pet`` (saved,
    exported as the observed data) but not the crop it fits, and moved its start focus."""
    p = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in patient.items()}
    m = GliomaModel.from_patient(p, use_pet=True)
    focus = m.centroid.clone()
    m2 = GliomaModel.from_patient(p, focus_init=focus)
    before = {k: getattr(m, k).clone() for k in ("wm", "gm", "labels", "pet")}
    for k in ("wm", "gm", "labels", "pet"):
        p[k].zero_()
    focus.add_(4.0)
    for k, v in before.items():
        assert torch.equal(getattr(m, k), v), k
    assert torch.equal(m2.focus_init, m.centroid)


def test_a_recropped_model_has_a_posterior_of_its_own(patient):
    """recrop() returned a new model that shared the fitted theta / theta_cov tensors with the
    original: an in-place edit of one model's posterior changed the other's."""
    m = _stand_in(patient)
    m.recalibrate(0.1, 2.0)
    theta, cov, (b, s) = m.theta.clone(), m.theta_cov.clone(), m.recalibration
    other = m.recrop(crop_margin_mm=40.0)
    torch.testing.assert_close(other.theta, theta, rtol=0, atol=0)
    other.theta.add_(1.0)
    other.theta_cov.mul_(3.0)
    other.recalibration[1].mul_(5.0)
    assert torch.equal(m.theta, theta) and torch.equal(m.theta_cov, cov)
    assert torch.equal(m.recalibration[1], torch.full_like(s, 2.0)) and torch.equal(
        m.recalibration[0], b
    )


def _smoothing_problem(n: int = 12) -> tuple[DiscreteProblem, torch.Tensor]:
    """A 1-D smoothing problem (Laplacian prior, data on every cell) and its minimiser."""
    xg = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    obs = torch.sin(2 * math.pi * xg)

    def residuals(f, p):
        u = f["u"]
        return {"pde": 1e-2 * laplacian(u, [1.0 / n]), "data": 3.0 * (u - obs)}

    problem = DiscreteProblem({"u": (n,)}, {}, residuals)
    x, _ = minimize(problem, steps=5)
    return problem, x


@pytest.mark.parametrize("dense_max", [4096, 0], ids=["dense", "pathwise"])
def test_a_field_posterior_mean_is_not_a_view_of_x(dense_max):
    """field_posterior's mean was a view of the caller's x: an edit of post.mean changed x,
    and an edit of x (the next solver step written into it) moved the posterior."""
    problem, x = _smoothing_problem()
    x0 = x.clone()
    post = field_posterior(problem, x, "u", dense_max=dense_max, num_samples=4)
    mean = post.mean.clone()
    post.mean.add_(1.0)
    assert torch.equal(x, x0)
    post = field_posterior(problem, x, "u", dense_max=dense_max, num_samples=4)
    x.mul_(2.0)
    assert torch.equal(post.mean, mean)


def test_a_shift_by_zero_is_a_new_tensor():
    """shift(u, axis, 0) returned u itself (every other shift, as torch.roll, a new tensor):
    an in-place edit of the result changed the caller's field."""
    u = torch.arange(6.0).reshape(2, 3)
    for bc in ("periodic", "neumann", "zero"):
        v = shift(u, 1, 0, bc)
        assert torch.equal(v, u)
        v.add_(1.0)
        assert torch.equal(u, torch.arange(6.0).reshape(2, 3)), bc
