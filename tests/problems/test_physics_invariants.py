"""Physics invariants of the problem generators, checked numerically: the closed-form GPME
solutions satisfy their PDE and their boundary / interface conditions, the B3 particle
dynamics conserve the centroid and repel, its RK4 steps converge at fourth order, and the
Fisher-Kolmogorov solver keeps a mirror-symmetric tumour symmetric and its state in [0, 1]."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.problems.fisher_kolmogorov import (
    fk_forward,
    initial_condition,
    max_step,
    tissue_faces,
)
from bayesphys.problems.glioma import brain_phantom
from bayesphys.problems.gpme import Diffusion, PorousMedium, Stefan, stefan_constants
from bayesphys.problems.populations import particle_velocity
from bayesphys.problems.populations.b3_particles import _simulate_particles

F64 = torch.float64


def _pde_terms(prob, t: torch.Tensor, x: torch.Tensor, param: float):
    """``(u_t, d/dx(k(u) u_x), u)`` of the exact solution by autograd."""
    t = t.clone().requires_grad_(True)
    x = x.clone().requires_grad_(True)
    u = prob.solution(t, x, param)
    ut, ux = torch.autograd.grad(u.sum(), (t, x), create_graph=True)
    k = prob.diffusivity(u, torch.tensor(param, dtype=F64))
    (dflux,) = torch.autograd.grad((k * ux).sum(), x)
    return ut.detach(), dflux, u.detach()


@pytest.mark.parametrize(
    ("prob", "param"),
    [(Diffusion(), 1.0), (Diffusion(), 5.0), (PorousMedium(), 1.0), (PorousMedium(), 3.0)]
    + [(PorousMedium(), 6.0)],
)
def test_gpme_exact_solutions_satisfy_their_pde(prob, param):
    # u_t = d/dx(k(u) u_x) at random interior points (PME: behind its front x = t, where the
    # solution is smooth); the residual is round-off against the size of the terms
    g = torch.Generator().manual_seed(0)
    t = 0.05 + 0.9 * torch.rand(200, generator=g, dtype=F64)
    x0, x1 = prob.x_range
    x = x0 + (x1 - x0) * torch.rand(200, generator=g, dtype=F64)
    if isinstance(prob, PorousMedium):
        x = x * t * 0.98  # strictly behind the front
    ut, dflux, _ = _pde_terms(prob, t, x, param)
    scale = float(ut.abs().max())
    assert scale > 0.1
    assert float((ut - dflux).abs().max()) < 1e-10 * scale


def test_gpme_boundary_and_initial_data():
    # diffusion: u(0, x) = sin x and the periodic ends agree; PME: u(t, 0) = (m t)^(1/m),
    # u = 0 ahead of the front x = t, u(0, x) = 0
    x = torch.linspace(0, 2 * math.pi, 9, dtype=F64)
    torch.testing.assert_close(Diffusion().solution(0.0, x, 3.0), torch.sin(x))
    d = Diffusion().solution(0.4, torch.tensor([0.0, 2 * math.pi], dtype=F64), 3.0)
    assert abs(float(d[0] - d[1])) < 1e-15
    for m in (1.0, 3.0, 6.0):
        assert float(PorousMedium().solution(0.7, 0.0, m)) == pytest.approx((m * 0.7) ** (1 / m))
        assert float(PorousMedium().solution(0.7, 0.71, m)) == 0.0
        assert float(PorousMedium().solution(0.0, 0.3, m)) == 0.0


@pytest.mark.parametrize("u_star", [0.2, 0.5, 0.6, 0.9])
def test_stefan_front_conditions(u_star):
    # u(t, 0) = 1; u = u* just behind the front x* = alpha sqrt(t), 0 ahead of it; and the
    # Stefan condition: the latent heat u* carried by the moving front equals the flux
    # arriving there, u* dx*/dt = -u_x(x*-)
    st = Stefan()
    alpha, _ = stefan_constants(u_star)
    alpha = float(alpha)
    for t in (0.01, 0.05, 0.1):
        front = alpha * math.sqrt(t)
        assert float(st.solution(t, 0.0, u_star)) == pytest.approx(1.0)
        assert float(st.solution(t, front * (1 - 1e-9), u_star)) == pytest.approx(u_star, abs=1e-8)
        assert float(st.solution(t, front * (1 + 1e-9), u_star)) == 0.0
        x = torch.tensor(front * (1 - 1e-12), dtype=F64, requires_grad=True)
        (ux,) = torch.autograd.grad(st.solution(t, x, u_star), x)
        speed = alpha / (2 * math.sqrt(t))
        assert u_star * speed == pytest.approx(-float(ux), rel=1e-8)


def test_particles_conserve_the_centroid_and_repel():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 40, 2, generator=g, dtype=F64) * 1.5
    x1 = _simulate_particles(x0, 10, 1.0, 2.0, 0.5, F64)
    # sum_j -a (x_j - xbar) = 0 and the kernel term is pairwise antisymmetric: d xbar / dt = 0
    torch.testing.assert_close(x1.mean(1), x0.mean(1), rtol=0, atol=1e-13)
    # without attraction two nearby particles move apart, along the line joining them
    pair = torch.tensor([[[0.0, 0.0], [0.3, 0.4]]], dtype=F64)
    v = particle_velocity(pair, a=0.0)
    sep = pair[0, 1] - pair[0, 0]
    assert float((v[0, 1] - v[0, 0]) @ sep) > 0
    assert abs(float(torch.linalg.det(torch.stack([v[0, 1] - v[0, 0], sep])))) < 1e-15
    # without repulsion every particle relaxes to the centroid: x - xbar decays like e^{-a t}
    x_att = _simulate_particles(x0, 40, 1.0, 0.0, 0.5, F64)
    torch.testing.assert_close(
        x_att - x_att.mean(1, keepdim=True),
        (x0 - x0.mean(1, keepdim=True)) * math.exp(-1.0),
        rtol=0,
        atol=1e-7,
    )


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_particles_simulated_64_populations_at_a_time_move_as_each_alone(dtype):
    """The populations are integrated 64 at a time: 63, 64, 65 and 129 populations (a last
    block of one) give each population's own trajectory, in order and in ``dtype``; the
    initial positions are left as they were."""
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(129, 5, 2, generator=g, dtype=F64) * 1.5
    kept = x0.clone()
    # reference: blocks of at most 10 populations, each under the 64 of one block, and some
    # populations alone
    alone = torch.cat([_simulate_particles(x, 3, 1.0, 2.0, 0.5, dtype) for x in x0.split(10)])
    for i in (0, 63, 64, 128):
        one = _simulate_particles(x0[i : i + 1], 3, 1.0, 2.0, 0.5, dtype)[0]
        torch.testing.assert_close(alone[i], one, rtol=1e-13, atol=1e-13 if dtype == F64 else 1e-5)
    for p in (63, 64, 65, 129):
        got = _simulate_particles(x0[:p], 3, 1.0, 2.0, 0.5, dtype)
        assert got.shape == (p, 5, 2) and got.dtype == dtype
        tol = 1e-13 if dtype == F64 else 1e-5
        torch.testing.assert_close(got, alone[:p], rtol=tol, atol=tol, msg=f"{p} populations")
    assert torch.equal(x0, kept)


def test_particle_rk4_converges_at_fourth_order():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(2, 32, 2, generator=g, dtype=F64)
    ref = _simulate_particles(x0, 320, 1.0, 2.0, 0.5, F64)
    errs = [
        float((_simulate_particles(x0, s, 1.0, 2.0, 0.5, F64) - ref).abs().max()) for s in (5, 10)
    ]
    order = math.log2(errs[0] / errs[1])
    assert 3.6 < order < 4.5, (errs, order)


@pytest.fixture(scope="module")
def phantom():
    ph = brain_phantom(32, 4.0)
    return ph, tissue_faces(ph["wm"], ph["gm"])


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_fk_mirror_symmetric_tumour_stays_symmetric_and_in_the_unit_interval(phantom, scheme):
    # the phantom is mirror-symmetric in axis 0 about the midline x = 64 mm; a focus on it
    # grows a tumour that stays mirror-symmetric (a one-sided stencil or face would break it)
    ph, faces = phantom
    assert torch.equal(ph["wm"], ph["wm"].flip(0)) and torch.equal(ph["gm"], ph["gm"].flip(0))
    c0 = initial_condition((32, 32), torch.tensor([64.0, 76.0], dtype=F64), 4.0)
    dw, rho, t_end = 0.4, 0.1, 100.0
    steps = math.ceil(t_end / max_step(faces, dw, rho, 4.0, scheme))  # the largest stable step
    kw = {"t_end": t_end, "steps": steps, "spacing": 4.0, "tissue": ph["brain"]}
    c, traj = fk_forward(c0, faces, dw, rho, scheme=scheme, save_every=1, **kw)
    assert float(c.max()) > 0.5  # a grown tumour, not a vanished one
    torch.testing.assert_close(c, c.flip(0), rtol=0, atol=1e-14)
    assert float(traj.min()) >= 0.0 and float(traj.max()) <= 1.0
    assert float((traj * (1 - ph["brain"])).abs().max()) == 0.0  # nothing outside the tissue
