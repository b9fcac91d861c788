"""The lid-driven cavity reference solver and the Navier-Stokes residual."""

import math
import warnings

import numpy as np
import pytest
import torch

from bayesphys.problems.cavity import cavity_test_set, lid_velocity, ns_residual, solve_cavity

# Ghia, Ghia & Shin (J. Comput. Phys. 48, 1982), Re = 100, constant lid: extrema of u on the
# vertical centre line and of v on the horizontal one (value, location).
GHIA_RE100 = {"u_min": (-0.21090, 0.4531), "v_max": (0.17527, 0.2344), "v_min": (-0.24533, 0.8047)}


def test_steady_re100_matches_ghia():
    s = solve_cavity(1.0, 0.01, n=65, t_end=30.0, n_snapshots=2, profile="constant")
    u, v, x = s["u"][-1], s["v"][-1], s["x"]
    assert np.abs(s["u"][-1] - s["u"][0]).max() < 1e-3  # steady
    got = {
        "u_min": (u[:, 32].min(), x[u[:, 32].argmin()]),
        "v_max": (v[32, :].max(), x[v[32, :].argmax()]),
        "v_min": (v[32, :].min(), x[v[32, :].argmin()]),
    }
    for k, (val, loc) in GHIA_RE100.items():
        assert got[k][0] == pytest.approx(val, rel=0.03), k
        assert abs(got[k][1] - loc) <= 1.5 / 64, k


def test_regularised_lid_boundary_and_incompressibility():
    s = solve_cavity(0.9, 0.5, n=21, n_snapshots=4)
    u, v, x, t = s["u"], s["v"], s["x"], s["t"]
    assert np.allclose(t, [0.25, 0.5, 0.75, 1.0])
    for i, ti in enumerate(t):
        assert np.allclose(u[i, -1], lid_velocity(x, ti))  # lid
        assert np.abs(u[i, 0]).max() == 0 and np.abs(u[i, :, [0, -1]]).max() == 0  # no slip
        assert np.abs(v[i, [0, -1]]).max() == 0 and np.abs(v[i, :, [0, -1]]).max() == 0
    # the returned velocities are divergence-free in the discrete (central-difference) sense
    h = x[1] - x[0]
    ux = (u[-1][2:-2, 3:-1] - u[-1][2:-2, 1:-3]) / (2 * h)
    vy = (v[-1][3:-1, 2:-2] - v[-1][1:-3, 2:-2]) / (2 * h)
    assert np.abs(ux + vy).max() < 1e-10 * np.abs(ux).max()
    assert np.abs(u[-1]).max() > np.abs(u[0]).max() > 0  # spun up from rest by the lid


def test_grid_refinement_converges():
    coarse = solve_cavity(1.0, 0.5, n=17, n_snapshots=1)["u"][-1]
    mid = solve_cavity(1.0, 0.5, n=33, n_snapshots=1)["u"][-1]
    fine = solve_cavity(1.0, 0.5, n=65, n_snapshots=1)["u"][-1]
    e1 = np.abs(coarse[1:-1, 1:-1] - fine[::4, ::4][1:-1, 1:-1]).max()
    e2 = np.abs(mid[::2, ::2][1:-1, 1:-1] - fine[::4, ::4][1:-1, 1:-1]).max()
    assert e2 < 0.5 * e1


def test_ns_residual_vanishes_on_taylor_green():
    rho = torch.tensor([[0.9]], dtype=torch.float64)
    mu = torch.tensor([[0.3]], dtype=torch.float64)
    nu = mu / rho
    g = torch.Generator().manual_seed(0)
    x = (2 * math.pi * torch.rand(1, 40, generator=g, dtype=torch.float64)).requires_grad_()
    y = (2 * math.pi * torch.rand(1, 40, generator=g, dtype=torch.float64)).requires_grad_()
    t = torch.rand(1, 40, generator=g, dtype=torch.float64).requires_grad_()
    e = torch.exp(-2 * nu * t)
    fld = {
        "u": -torch.cos(x) * torch.sin(y) * e,
        "v": torch.sin(x) * torch.cos(y) * e,
        "p": -rho / 4 * (torch.cos(2 * x) + torch.cos(2 * y)) * e**2,
    }

    def d(f, var):
        return torch.autograd.grad(f.sum(), var, create_graph=True)[0]

    fields = {}
    for k, f in fld.items():
        fx, fy = d(f, x), d(f, y)
        fields[k] = {"v": f, "x": fx, "y": fy, "t": d(f, t), "xx": d(fx, x), "yy": d(fy, y)}
    for r in ns_residual(fields, rho, mu):
        assert r.abs().max() < 1e-12
    # and not on a perturbed field
    fields["u"]["t"] = fields["u"]["t"] + 0.1
    assert ns_residual(fields, rho, mu)[0].abs().max() > 0.05


def test_test_set_is_seeded_and_in_the_prior():
    a = cavity_test_set(2, seed=3, n=11, n_snapshots=3)
    b = cavity_test_set(2, seed=3, n=11, n_snapshots=3)
    assert a["u"].shape == (2, 3, 11, 11) and a["z"].shape == (2, 2)
    assert np.array_equal(a["u"], b["u"]) and np.array_equal(a["z"], b["z"])
    c = cavity_test_set(2, seed=4, n=11, n_snapshots=3)
    assert not np.array_equal(a["z"], c["z"]) and not np.array_equal(a["u"], c["u"])
    assert ((a["z"][:, 0] >= 0.8) & (a["z"][:, 0] <= 1) & (a["z"][:, 1] >= 0.1)).all()


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(rho=0.0, mu=0.5), "rho"),
        (dict(rho=1.0, mu=float("nan")), "mu"),
        (dict(rho=1.0, mu=0.5, n=3), r"^n: expected at least 5 nodes"),
        (dict(rho=1.0, mu=0.5, dt=1.0), "dt"),
        (dict(rho=1.0, mu=0.5, profile="parabolic"), "profile"),
    ],
)
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        solve_cavity(**kw)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(w=float("nan")), ValueError, r"^w: expected a finite number, received nan"),
        (dict(w=float("inf")), ValueError, r"^w: expected a finite number, received inf"),
        (dict(n=10.5), TypeError, r"^n: expected an int, received 10.5"),
        (dict(n_snapshots=2.5), TypeError, r"^n_snapshots: expected an int, received 2.5"),
        (dict(n_snapshots=0), ValueError, r"^n_snapshots: expected an int >= 1, received 0"),
        (dict(dt=float("nan")), ValueError, r"^dt: expected a finite number"),
        (dict(rho="1"), TypeError, r"^rho: expected a real number"),
    ],
)
def test_settings_are_checked(kw, error, match):
    with pytest.raises(error, match=match):
        solve_cavity(**{"rho": 1.0, "mu": 0.5, "n": 11, "n_snapshots": 2, **kw})


def test_huge_lid_speed_is_refused_before_stepping():
    # |w| = 1e9 needed ~|w| t_end / h steps (effectively a hang); the message names the count
    with pytest.raises(ValueError, match=r"^w: lid speed 1e\+09 .* more than CAVITY_MAX_STEPS"):
        solve_cavity(1.0, 0.5, w=1e9, n=11, n_snapshots=2)
    # inside the bound it runs, and the lid moves at w
    s = solve_cavity(1.0, 0.5, w=-3.0, n=11, n_snapshots=2)
    assert np.allclose(s["u"][-1, -1], lid_velocity(s["x"], 1.0, -3.0))


@pytest.mark.parametrize(
    "kw, start, advice",
    [
        # the advection-diffusion limit 2 nu / U^2 binds: a smaller n does not shorten the run
        (dict(mu=0.1, w=1e4), "w: lid speed 10000 ", "a smaller |w| or t_end, or a larger"),
        # the viscous limit h^2 / (4 nu) binds: a larger viscosity (the old advice) lengthens it
        (dict(mu=1e4), "mu: viscosity 10000 ", "a smaller n, t_end or viscosity"),
        # a given step: the limits are not the cause
        (dict(mu=0.5, dt=1e-7), "dt: 1e-07 ", "a larger dt"),
    ],
)
def test_too_many_steps_are_refused_with_advice_for_the_limit_that_binds(kw, start, advice):
    with pytest.raises(ValueError, match="more than CAVITY_MAX_STEPS") as err:
        solve_cavity(**{"rho": 1.0, "n": 50, "n_snapshots": 1, **kw})
    msg = str(err.value)
    assert msg.startswith(start) and f"use {advice}" in msg, msg


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(seed=-1), ValueError, r"^seed: expected an int in \[0, 2\*\*64 - 1\], received -1"),
        (dict(seed=1.5), TypeError, r"^seed: expected an int, received 1.5"),
        (dict(n_cases=1.5), TypeError, r"^n_cases: expected an int, received 1.5"),
        (dict(n_cases=0), ValueError, r"^n_cases: expected an int >= 1, received 0"),
    ],
)
def test_test_set_arguments_are_checked(kw, error, match):
    with pytest.raises(error, match=match):
        cavity_test_set(**{"n_cases": 1, "n": 11, "n_snapshots": 2, **kw})


@pytest.mark.parametrize("n", [5, 7, 9])
def test_every_snapshot_is_filled_when_the_time_step_is_coarse(n):
    # coarse grid, low viscosity: the stable step is longer than the spacing of 50 output times
    s = solve_cavity(1.0, 0.1, n=n, n_snapshots=50)
    for i, ti in enumerate(s["t"]):  # an unfilled snapshot is all zeros, its lid too
        assert np.allclose(s["u"][i, -1], lid_velocity(s["x"], ti)), i  # the lid at time t_i
    assert np.abs(s["u"][-1, 1:-1, 1:-1]).max() > 0  # the fluid has been set in motion


@pytest.mark.parametrize(
    "kw",
    [
        # the regularised lid moves at w t: at t = 20 twenty times faster than the |w| the
        # step was sized for
        dict(rho=1.0, mu=0.1, n=11, t_end=20.0),
        # a fast constant lid: cell Reynolds number U h / nu = 200, past the explicit
        # scheme's advection-diffusion bound dt <= 2 nu / U^2 (without that bound this
        # run overflows by t = 0.2, as the costlier w=1000, n=50 does by t = 0.005)
        dict(rho=1.0, mu=0.1, w=200.0, n=11, t_end=0.2, profile="constant"),
    ],
)
def test_default_step_is_stable_for_a_fast_lid(kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an overflow on the way to NaN
        s = solve_cavity(n_snapshots=2, **kw)
    lid = np.abs(s["u"][:, -1]).max()
    assert np.isfinite(s["u"]).all() and np.isfinite(s["omega"]).all()
    # the fluid is driven by the lid alone: it moves no faster than the lid
    assert np.abs(s["u"][:, 1:-1, 1:-1]).max() <= 1.05 * lid
    assert np.abs(s["v"]).max() <= 1.05 * lid


def test_default_step_of_the_prior_box_is_unchanged():
    # the added limits bind only past the prior (rho, mu) box at t_end = 1: its runs keep
    # their steps (the test set's data are those of before)
    s = solve_cavity(0.8, 0.1, n=50, n_snapshots=1)
    h, nu = 1 / 49, 0.1 / 0.8
    per = math.ceil(1.0 / (0.8 * h * h / (4 * nu)) - 1e-9)
    # the viscous limit alone sets the step: a run given that step is the default run
    ref = solve_cavity(0.8, 0.1, n=50, n_snapshots=1, dt=1.0 / per)
    np.testing.assert_array_equal(s["u"], ref["u"])
