"""Strang-split FK time stepping, its tangent model, the model option, and recalibration."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.odil import GliomaModel, fit_recalibration_map
from bayesphys.problems.fisher_kolmogorov import (
    fk_forward,
    fk_forward_tangent,
    initial_condition,
    logistic_step,
    tissue_faces,
)
from bayesphys.problems.glioma import brain_phantom, synthetic_patient

H = 4.0


@pytest.fixture(scope="module")
def setup():
    ph = brain_phantom(32, H)
    faces = tissue_faces(ph["wm"], ph["gm"])
    c0 = initial_condition((32, 32), torch.tensor([64.0, 60.0], dtype=torch.float64), H)
    return ph, faces, c0


def test_logistic_step_is_the_exact_flow():
    c = torch.linspace(0, 1, 11, dtype=torch.float64)
    # closed form of c' = rho c (1 - c): c(t) = 1 / (1 + (1/c0 - 1) e^{-rho t}), and the flow
    # property R_a R_b = R_{a+b}
    inner = c[1:]
    ref = 1 / (1 + (1 / inner - 1) * math.exp(-0.3 * 2.0))
    assert torch.allclose(logistic_step(inner, 0.3, 2.0), ref, atol=1e-14)
    assert torch.allclose(
        logistic_step(logistic_step(c, 0.3, 0.7), 0.3, 1.3), logistic_step(c, 0.3, 2.0)
    )
    assert (
        float(logistic_step(c, 0.3, 2.0)[0]) == 0.0 and float(logistic_step(c, 0.3, 2.0)[-1]) == 1.0
    )


def test_strang_is_far_more_accurate_than_euler_at_the_same_steps(setup):
    ph, faces, c0 = setup
    kw = {"t_end": 100.0, "spacing": H, "tissue": ph["brain"]}
    ref = fk_forward(c0, faces, 0.22, 0.08, steps=2048, scheme="strang", **kw)
    err = {
        s: float((fk_forward(c0, faces, 0.22, 0.08, steps=32, scheme=s, **kw) - ref).abs().max())
        for s in ("euler", "strang")
    }
    assert err["strang"] < err["euler"] / 10, err
    # both converge to the same semi-discrete solution
    fine_e = fk_forward(c0, faces, 0.22, 0.08, steps=2048, scheme="euler", **kw)
    assert float((fine_e - ref).abs().max()) < 5e-3


def test_strang_without_reaction_is_euler_diffusion_and_conserves_mass(setup):
    ph, faces, c0 = setup
    kw = {"t_end": 100.0, "steps": 40, "spacing": H, "tissue": ph["brain"]}
    a = fk_forward(c0, faces, 0.3, 0.0, scheme="strang", **kw)
    b = fk_forward(c0, faces, 0.3, 0.0, scheme="euler", **kw)
    assert torch.allclose(a, b, atol=1e-15)
    assert float(a.sum()) == pytest.approx(float((c0 * ph["brain"]).sum()), rel=1e-12)


def test_strang_tangent_matches_autodiff(setup):
    ph, faces, c0 = setup
    th = torch.tensor([math.log(0.22), math.log(0.06)], dtype=torch.float64)
    kw = {"t_end": 100.0, "steps": 20, "spacing": H, "tissue": ph["brain"], "scheme": "strang"}

    def f(t):
        return fk_forward(c0, faces, t[0].exp(), t[1].exp(), **kw)

    jac = torch.autograd.functional.jacobian(f, th).movedim(-1, 0)
    e = torch.eye(2, dtype=torch.float64)
    dw, rho = th.exp()
    dc0 = torch.zeros(2, *c0.shape, dtype=torch.float64)
    c, dc = fk_forward_tangent(c0, dc0, faces, dw, rho, dw * e[:, 0], rho * e[:, 1], **kw)
    assert torch.allclose(c, f(th), atol=1e-15)
    assert torch.allclose(dc, jac, atol=1e-12 * float(jac.abs().max()))


def test_unknown_scheme_is_rejected(setup):
    ph, faces, c0 = setup
    with pytest.raises(ValueError, match="scheme"):
        fk_forward(c0, faces, 0.2, 0.05, t_end=1.0, steps=1, spacing=H, scheme="rk4")
    p = synthetic_patient(3, phantom=ph)
    with pytest.raises(ValueError, match="time_scheme"):
        GliomaModel.from_patient(p, time_scheme="rk4")


def test_time_scheme_round_trips_and_old_checkpoints_load_as_euler(setup, tmp_path):
    ph, _, _ = setup
    p = synthetic_patient(3, phantom=ph)
    m = GliomaModel.from_patient(p, time_scheme="euler")
    back = GliomaModel.load(m.save(tmp_path / "e.pt"))
    assert back.config["time_scheme"] == "euler"
    th = m._theta0()
    assert torch.equal(back.forward(th), m.forward(th))
    assert GliomaModel.from_patient(p).config["time_scheme"] == "strang"
    # a checkpoint written before the option existed has no key: it loads with Euler
    ck = torch.load(tmp_path / "e.pt", weights_only=False)
    ck["config"].pop("time_scheme")
    torch.save(ck, tmp_path / "old.pt")
    assert GliomaModel.load(tmp_path / "old.pt").config["time_scheme"] == "euler"


def test_recalibration_map_recovers_a_known_shift_and_scale_and_rejects_bad_input():
    g = torch.Generator().manual_seed(0)
    sd = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    mean = torch.tensor([0.0, -0.7, 0.4], dtype=torch.float64)
    z = mean + torch.randn(4000, 3, generator=g, dtype=torch.float64) * sd
    b, s = fit_recalibration_map(z)
    assert torch.allclose(b, mean, atol=0.1)
    assert torch.allclose(s, sd, rtol=0.08)
    cov = (((z - b) / s).abs() <= 1.6449).double().mean(0)
    assert bool(((cov >= 0.9) & (cov < 0.92)).all()), cov
    b0, s0 = fit_recalibration_map(z, shift=False)
    assert bool((b0 == 0).all()) and bool((s0 > s).all())  # the bias now widens the intervals
    with pytest.raises(ValueError, match="shape"):
        fit_recalibration_map(torch.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        fit_recalibration_map(torch.tensor([[0.0], [float("nan")]]))


def test_recalibrate_shifts_by_sds_and_keeps_correlations(setup, tmp_path):
    ph, _, _ = setup
    m = GliomaModel.from_patient(synthetic_patient(3, phantom=ph))
    with pytest.raises(RuntimeError, match="fit"):
        m.recalibrate(0.0, 2.0)
    m.fit(progress=False)
    th0, cov0 = m.theta.clone(), m.theta_cov.clone()
    b = torch.tensor([-0.5, 0.2, 0.0, 1.0], dtype=torch.float64)
    s = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    m.recalibrate(b, s)
    sd0 = cov0.diagonal().sqrt()
    assert torch.allclose(m.theta, th0 - b * sd0)
    assert torch.allclose(m.theta_cov.diagonal().sqrt(), sd0 * s)

    def corr(c):
        d = c.diagonal().sqrt()
        return c / d[:, None] / d[None, :]

    assert torch.allclose(corr(m.theta_cov), corr(cov0), atol=1e-12)
    # a second map replaces the first (acts on the fitted posterior), and survives save/load
    m.recalibrate(b, s)
    assert torch.allclose(m.theta, th0 - b * sd0)
    assert torch.allclose(m.theta_cov.diagonal().sqrt(), sd0 * s)
    m.recalibrate(0.0, 1.0)
    assert torch.allclose(m.theta, th0) and torch.allclose(m.theta_cov, cov0)
    m.recalibrate(b, s)
    path = m.save(tmp_path / "recal.pt")
    m2 = GliomaModel.load(path)
    assert torch.equal(m2.theta, m.theta) and torch.equal(m2.recalibration[1], s)
    m2.recalibrate(0.0, 1.0)
    assert torch.allclose(m2.theta, th0) and torch.allclose(m2.theta_cov, cov0)
    with pytest.raises(ValueError, match="scale"):
        m.recalibrate(0.0, torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        m.recalibrate(0.0, -1.0)
    with pytest.raises(ValueError, match="shift"):
        m.recalibrate(float("nan"), 1.0)


def test_b5_truth_rule_time_step_error_is_small():
    # B5's truth takes 2x the stable steps of the patient's own D_w (3-D count); its error in c
    # at the slowest-diffusing, fastest-growing corner of the prior (D_w = rho = 0.1), measured
    # on the 2-D phantom at 2 mm against a converged Strang solution (the figure docs/odil.md
    # and benchmarks/odil.py quote)
    from bayesphys.problems.fisher_kolmogorov import stable_steps

    ph = brain_phantom(64, 2.0)
    faces = tissue_faces(ph["wm"], ph["gm"])
    c0 = initial_condition((64, 64), torch.tensor([64.0, 60.0], dtype=torch.float64), 2.0)
    kw = {"t_end": 100.0, "spacing": 2.0, "tissue": ph["brain"], "scheme": "strang"}
    ref = fk_forward(c0, faces, 0.1, 0.1, steps=4096, **kw)
    c = fk_forward(c0, faces, 0.1, 0.1, steps=2 * stable_steps(100.0, 0.1, 2.0, 3), **kw)
    err = float((c - ref).abs().max())
    assert 0.01 < err < 0.03, err


def test_forward_solvers_refuse_step_counts_below_one(setup):
    ph, faces, c0 = setup
    kw = {"t_end": 10.0, "spacing": H, "tissue": ph["brain"]}
    dc0 = torch.zeros(1, *c0.shape, dtype=c0.dtype)
    one = torch.ones(1, dtype=c0.dtype)
    for steps, err in ((0, ValueError), (-3, ValueError), (2.5, TypeError)):
        # 0 divided by zero; -3 returned c0 unchanged (no step ran); 2.5 failed inside range()
        with pytest.raises(err, match="steps"):
            fk_forward(c0, faces, 0.3, 0.1, steps=steps, **kw)
        with pytest.raises(err, match="steps"):
            fk_forward_tangent(c0, dc0, faces, 0.3, 0.1, one, one, steps=steps, **kw)
    with pytest.raises(ValueError, match="t_end"):
        fk_forward(c0, faces, 0.3, 0.1, steps=4, t_end=-1.0, spacing=H)
