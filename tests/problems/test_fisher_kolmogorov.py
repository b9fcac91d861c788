"""Fisher-Kolmogorov solver: the step-size limit and the tangent model at D_w = 0."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.problems.fisher_kolmogorov import (
    fk_forward,
    fk_forward_tangent,
    initial_condition,
    max_step,
    stable_steps,
    tissue_faces,
)
from bayesphys.problems.glioma import brain_phantom
from bayesphys.problems.stencil import div_flux

H = 4.0
F64 = torch.float64


@pytest.fixture(scope="module")
def setup():
    ph = brain_phantom(32, H)
    faces = tissue_faces(ph["wm"], ph["gm"])
    c0 = initial_condition((32, 32), torch.tensor([60.0, 64.0], dtype=F64), H, width=6.0)
    return ph, faces, c0 * ph["brain"]


def test_max_step_is_the_explicit_limit():
    # unit faces on a 2-D grid: an interior cell has 4 unit faces, so dt <= h^2 / (4 dw),
    # i.e. h^2 / (2 d dw max_face)
    faces = [torch.ones(6, 7, dtype=F64), torch.ones(6, 7, dtype=F64)]
    assert max_step(faces, 0.5, 0.0, 2.0, "strang") == pytest.approx(4.0 / (4 * 0.5))
    # the explicit Euler step carries the reaction too: linearised at c = 1 it adds -rho to
    # the diffusion's eigenvalues, dt <= 2 / (2 a + |rho|) with a = dw * 4 / h^2 = 0.5
    assert max_step(faces, 0.5, 10.0, 2.0, "euler") == pytest.approx(2.0 / (2 * 0.5 + 10.0))
    assert max_step(faces, 0.5, 0.0, 2.0, "euler") == pytest.approx(2.0)  # diffusion alone
    assert max_step(faces, 0.0, 10.0, 2.0, "euler") == pytest.approx(0.2)  # reaction alone
    assert max_step(faces, 0.5, 10.0, 2.0, "strang") == pytest.approx(2.0)  # exact reaction
    assert max_step(faces, 0.0, 0.0, 2.0, "euler") == math.inf


def test_max_step_refuses_an_unknown_scheme_and_a_bad_spacing():
    # "Euler" (or any other name) got the strang bound, 5.5x the euler one here; a zero
    # spacing failed with a ZeroDivisionError, a negative one was squared away
    faces = [torch.ones(6, 7, dtype=F64), torch.ones(6, 7, dtype=F64)]
    with pytest.raises(ValueError, match="scheme"):
        max_step(faces, 0.5, 10.0, 2.0, "Euler")
    for h in (0.0, -2.0, math.nan):
        with pytest.raises(ValueError, match="spacing"):
            max_step(faces, 0.5, 10.0, h, "strang")


def test_euler_step_at_the_diffusion_bound_with_growth_is_refused():
    """At dt = h^2 / (D max face sum) the Euler step's grid-scale mode near c = 1 grew by
    (1 + dt rho) per step, to NaN, while the old bound (the smaller of the diffusion and
    reaction ones) accepted it; the bound now combines them."""
    n, dw, rho, h = 64, 1.0, 0.5, 1.0
    faces = [torch.ones(n, dtype=F64)]
    c0 = 1 + 1e-3 * torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(0))
    dt_diff = h**2 / (2 * dw)
    with pytest.raises(ValueError, match="stability bound"):
        fk_forward(c0, faces, dw, rho, t_end=400 * dt_diff, steps=400, spacing=h, scheme="euler")
    bad = fk_forward(
        c0,
        faces,
        dw,
        rho,
        t_end=400 * dt_diff,
        steps=400,
        spacing=h,
        scheme="euler",
        check_stability=False,
    )
    assert not bool(torch.isfinite(bad).all()) or float(bad.abs().max()) > 2
    limit = max_step(faces, dw, rho, h, "euler")
    steps = math.floor(400 * dt_diff / limit) + 1
    ok = fk_forward(c0, faces, dw, rho, t_end=400 * dt_diff, steps=steps, spacing=h, scheme="euler")
    assert float((ok - 1).abs().max()) < 1e-2


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_fk_forward_refuses_an_unstable_step_count(setup, scheme):
    ph, faces, c0 = setup
    kw = {"t_end": 100.0, "spacing": H, "tissue": ph["brain"], "scheme": scheme}
    need = math.ceil(100.0 / max_step(faces, 5.0, 0.05, H, scheme))
    with pytest.raises(ValueError, match=rf"^steps: 2 steps .* use steps >= {need}\b"):
        fk_forward(c0, faces, 5.0, 0.05, steps=2, **kw)  # blew up to ~51.8 silently
    with pytest.raises(ValueError, match=rf"use steps >= {need}\b"):
        fk_forward(c0, faces, 5.0, 0.05, steps=need - 1, **kw)
    c = fk_forward(c0, faces, 5.0, 0.05, steps=need, **kw)  # the named count is stable
    assert 0 <= float(c.min()) and float(c.max()) <= 1
    # stable_steps (safety 0.8, faces <= 1) is always accepted
    fk_forward(c0, faces, 5.0, 0.05, steps=stable_steps(100.0, 5.0, H, 2), **kw)


def test_fk_forward_with_tensor_parameters_warns_instead(setup):
    ph, faces, c0 = setup
    dw = torch.tensor(5.0, dtype=F64)
    with pytest.warns(RuntimeWarning, match=r"^steps: 2 steps .*stability bound"):
        fk_forward(c0, faces, dw, torch.tensor(0.05, dtype=F64), t_end=100.0, steps=2, spacing=H)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fk_forward(c0, faces, dw, 0.05, t_end=100.0, steps=stable_steps(100, 5.0, H, 2), spacing=H)


def test_check_stability_false_skips_the_check_and_the_glioma_model_uses_it(setup):
    """GliomaModel sizes its steps for d_max and reports a D_w above it in the fit's message;
    its forward solves skip the check (an LM fit visiting a large D_w warned at every call)."""
    from bayesphys.odil import GliomaModel
    from bayesphys.problems.glioma import brain_phantom, synthetic_patient

    _, faces, c0 = setup
    out = fk_forward(c0, faces, 5.0, 0.05, t_end=100.0, steps=2, spacing=H, check_stability=False)
    assert bool((out.abs() > 1).any())  # the unchecked unstable step does blow up
    with pytest.raises(TypeError, match="check_stability"):
        fk_forward(c0, faces, 5.0, 0.05, t_end=1.0, steps=2, spacing=H, check_stability=1)
    model = GliomaModel.from_patient(synthetic_patient(1, phantom=brain_phantom(32, 4.0)))
    theta = model._theta0().clone()
    theta[0] = torch.log(torch.tensor(50.0 * model.config["d_max"], dtype=theta.dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model.forward(theta)
        model.jacobian(theta)


def test_fk_forward_tangent_refuses_an_unstable_step_count(setup):
    _, faces, c0 = setup
    one = torch.ones(1, dtype=F64)
    dc0 = torch.zeros(1, *c0.shape, dtype=F64)
    with pytest.raises(ValueError, match="use steps >= "):
        fk_forward_tangent(c0, dc0, faces, 5.0, 0.05, one, one, t_end=100.0, steps=2, spacing=H)


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_tangent_at_zero_diffusivity_is_the_derivative(setup, scheme):
    ph, faces, c0 = setup
    kw = {"t_end": 10.0, "steps": 20, "spacing": H, "tissue": ph["brain"], "scheme": scheme}
    rho = 0.05
    dc0 = torch.zeros(2, *c0.shape, dtype=F64)
    ddw = torch.tensor([1.0, 0.0], dtype=F64)
    drho = torch.tensor([0.0, 1.0], dtype=F64)
    c, dc = fk_forward_tangent(c0, dc0, faces, 0.0, rho, ddw, drho, **kw)
    assert bool(torch.isfinite(dc).all())  # was all NaN (ddw * lap / dw with dw = 0)
    torch.testing.assert_close(c, fk_forward(c0, faces, 0.0, rho, **kw), rtol=0, atol=1e-14)
    # one-sided second-order difference in dw >= 0
    e = 1e-4
    f0, f1, f2 = (fk_forward(c0, faces, k * e, rho, **kw) for k in (0, 1, 2))
    fd = (-3 * f0 + 4 * f1 - f2) / (2 * e)
    assert float(fd.abs().max()) > 1e-2  # a non-trivial direction
    torch.testing.assert_close(dc[0], fd, rtol=0, atol=1e-7)
    # and continuous with the tangent at a small positive dw
    _, dc_small = fk_forward_tangent(c0, dc0, faces, 1e-9, rho, ddw, drho, **kw)
    torch.testing.assert_close(dc, dc_small, rtol=0, atol=1e-7)


def test_tissue_faces_are_the_gliodil_face_diffusivities():
    """Face k, i (between cells i and i+1 along axis k) is W_face + G_face / r with the
    face-averaged maps, 0 where either cell is CSF/background (W + G < 0.1) and on the last
    layer; every axis reads its own neighbours (GliODIL's get_D took the y maps for z)."""
    g = torch.Generator().manual_seed(0)
    shape = (3, 4, 5)
    wm = torch.rand(shape, dtype=F64, generator=g)
    gm = (1 - wm) * torch.rand(shape, dtype=F64, generator=g)
    csf = torch.rand(shape, generator=g) < 0.25
    wm[csf], gm[csf] = 0.03, 0.04  # W + G < 0.1: no tissue
    r = 7.0
    faces = tissue_faces(wm, gm, dg_ratio=r)
    assert len(faces) == 3
    w, gg, tissue = wm.numpy(), gm.numpy(), (~csf).numpy()
    for k in range(3):
        assert faces[k].shape == shape
        for idx in torch.cartesian_prod(*[torch.arange(n) for n in shape]).tolist():
            i = tuple(idx)
            j = list(idx)
            j[k] += 1
            j = tuple(j)
            if j[k] == shape[k] or not (tissue[i] and tissue[j]):
                want = 0.0
            else:
                want = 0.5 * (w[i] + w[j]) + 0.5 * (gg[i] + gg[j]) / r
            assert float(faces[k][i]) == pytest.approx(want, rel=1e-14, abs=0), (k, i)
    # a grey-matter-only face diffuses r times slower than a white-matter-only one
    one, zero = torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64)
    assert float(tissue_faces(zero, one, dg_ratio=r)[0][0]) == pytest.approx(1 / r)
    assert float(tissue_faces(one, zero, dg_ratio=r)[0][0]) == 1.0


@pytest.mark.parametrize(
    ("dw", "rho", "match"),
    [(-0.1, 0.05, "dw: expected a number >= 0"), (0.1, math.nan, "rho: expected a finite")],
)
def test_fk_forward_tangent_checks_numbers_as_fk_forward(setup, dw, rho, match):
    """A negative D_w (anti-diffusion, accepted by the stability check, which reads |D_w|) or
    a NaN rate ran silently in the tangent solver, while fk_forward refused them."""
    ph, faces, c0 = setup
    kw = {"t_end": 10.0, "steps": 20, "spacing": H, "tissue": ph["brain"]}
    one = torch.ones(1, dtype=F64)
    dc0 = torch.zeros(1, *c0.shape, dtype=F64)
    with pytest.raises(ValueError, match=match):
        fk_forward(c0, faces, dw, rho, **kw)
    with pytest.raises(ValueError, match=match):
        fk_forward_tangent(c0, dc0, faces, dw, rho, one, one, **kw)


@pytest.mark.parametrize("name", ["wm", "gm"])
def test_tissue_faces_refuse_non_finite_maps(name):
    """One NaN voxel, even in the background (W + G < 0.1), gave NaN faces (NaN * 0) and a
    NaN state after the first step of fk_forward; synthetic_patient then failed in segment()
    naming "c", after both solves."""
    ph = brain_phantom(16, 8.0)
    bad = dict(ph)
    bad[name] = ph[name].clone()
    bad[name][0, 0] = math.nan  # the grid's corner: background
    assert float(ph["brain"][0, 0]) == 0.0
    with pytest.raises(ValueError, match=rf"^{name}: expected finite values"):
        tissue_faces(bad["wm"], bad["gm"])
    from bayesphys.problems.glioma import synthetic_patient

    # synthetic_patient names the phantom's map (wm / gm are not its arguments)
    with pytest.raises(ValueError, match=rf"^phantom\['{name}'\]: expected finite values"):
        synthetic_patient(0, phantom=bad)
    assert all(bool(torch.isfinite(f).all()) for f in tissue_faces(ph["wm"], ph["gm"]))


@settings(max_examples=25, deadline=None)
@given(
    grid=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**31 - 1),
    csf=st.floats(0.0, 0.6),
)
def test_tissue_operator_is_the_symmetric_no_flux_finite_volume_matrix(grid, seed, csf):
    """div_flux on tissue_faces, as a dense matrix over the cells, is the finite-volume matrix
    assembled face by face: each face between tissue cells i, j (W + G >= 0.1 both) adds
    D_ij / h^2 to M_ij and M_ji and -D_ij / h^2 to M_ii and M_jj, with the arithmetic face
    average D_ij = (W_i + W_j) / 2 + (G_i + G_j) / (2 r). Hence symmetric, rows and columns
    summing to zero (mass conserved), and no coupling to CSF / background cells."""
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(grid)
    wm = torch.rand(shape, generator=gen, dtype=F64)
    gm = (1 - wm) * torch.rand(shape, generator=gen, dtype=F64)
    out = torch.rand(shape, generator=gen) < csf
    wm[out], gm[out] = 0.02, 0.05
    r, h = 6.0, 1.3
    n = wm.numel()
    basis = torch.eye(n, dtype=F64).reshape(n, *shape)  # column j: the unit state e_j
    m = div_flux(basis, tissue_faces(wm, gm, dg_ratio=r), [h] * len(shape)).reshape(n, n).T
    want = torch.zeros(n, n, dtype=F64)
    ids = torch.arange(n).reshape(shape)
    tissue = (wm + gm) >= 0.1
    for k in range(len(shape)):
        lo = [slice(None)] * len(shape)
        hi = [slice(None)] * len(shape)
        lo[k], hi[k] = slice(0, shape[k] - 1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        d = (0.5 * (wm[lo] + wm[hi]) + 0.5 * (gm[lo] + gm[hi]) / r) / h**2
        d = d * (tissue[lo] & tissue[hi])
        for a, b, dab in zip(ids[lo].reshape(-1), ids[hi].reshape(-1), d.reshape(-1)):
            want[a, b] += dab
            want[b, a] += dab
            want[a, a] -= dab
            want[b, b] -= dab
    torch.testing.assert_close(m, want, rtol=1e-13, atol=1e-13)
    assert torch.equal(m, m.T)
    assert float(m.sum(0).abs().max()) < 1e-12 and float(m.sum(1).abs().max()) < 1e-12
    off = ~tissue.reshape(-1)
    assert not bool(m[off].any()) and not bool(m[:, off].any())


def test_logistic_step_is_the_exact_flow_also_for_integer_states():
    # the exact flow of dc/dt = rho c (1 - c) against an ODE solver, for growth and decay,
    # states inside and outside [0, 1]; an integer state cast rho to int (0.5 -> 0: no move)
    from scipy.integrate import solve_ivp

    from bayesphys.problems.fisher_kolmogorov import logistic_step

    for rho in (0.5, -0.7, 3.0):
        for c0 in (0.0, 0.01, 0.3, 1.0, 2.0, -0.05):
            ref = solve_ivp(
                lambda t, c, r=rho: r * c * (1 - c), (0, 0.8), [c0], rtol=1e-12, atol=1e-14
            )
            got = logistic_step(torch.tensor(c0, dtype=F64), rho, 0.8)
            assert float(got) == pytest.approx(ref.y[0, -1], rel=1e-8, abs=1e-10)
    got = logistic_step(torch.tensor([0, 1, 2]), 0.5, 1.0)
    assert got.is_floating_point()
    want = logistic_step(torch.tensor([0.0, 1.0, 2.0]), 0.5, 1.0)
    torch.testing.assert_close(got, want)
    assert float(got[2]) == pytest.approx(2 * math.e**0.5 / (1 + 2 * (math.e**0.5 - 1)))


def test_stable_steps_sizes_for_the_euler_reaction_when_given_rho():
    """fk_forward's refusal pointed to stable_steps, which sizes for diffusion only: with
    dw=0.001, rho=10, h=1 it gave 1 step where the Euler scheme needs 6. ``rho`` sizes for the
    reaction too; without it the counts are those of every earlier call."""
    faces = tissue_faces(torch.ones(8, dtype=F64), torch.zeros(8, dtype=F64))
    c0 = torch.linspace(0.05, 0.95, 8, dtype=F64)
    kw = {"t_end": 1.0, "spacing": 1.0, "scheme": "euler"}
    assert stable_steps(1.0, 0.001, 1.0, 1) == 1  # diffusion only, as before
    need = math.ceil(1.0 / max_step(faces, 0.001, 10.0, 1.0, "euler"))
    assert need == 6
    with pytest.raises(ValueError, match=r"use steps >= 6 \(e\.g\. stable_steps\(.*rho=10\)"):
        fk_forward(c0, faces, 0.001, 10.0, steps=stable_steps(1.0, 0.001, 1.0, 1), **kw)
    n = stable_steps(1.0, 0.001, 1.0, 1, rho=10.0)
    assert n >= need
    c = fk_forward(c0, faces, 0.001, 10.0, steps=n, **kw)  # accepted, and stays in [0, 1]
    assert 0 <= float(c.min()) and float(c.max()) <= 1
    for t, d, h, nd in [(100.0, 1.0, 1.0, 3), (365.0, 0.22, 4.0, 2), (30.0, 5.0, 2.0, 1)]:
        assert stable_steps(t, d, h, nd, rho=0.0) == stable_steps(t, d, h, nd)
        assert stable_steps(t, d, h, nd, rho=-0.5) == stable_steps(t, d, h, nd, rho=0.5)
        assert stable_steps(t, d, h, nd, rho=0.5) >= stable_steps(t, d, h, nd)
    with pytest.raises(ValueError, match="rho"):
        stable_steps(1.0, 0.001, 1.0, 1, rho=float("nan"))


def test_a_nan_rate_has_no_stability_bound_and_is_flagged(setup):
    """max_steps read a NaN dw or rho as "no bound" (inf), so a NaN tensor rate passed the
    stability check silently and the state came out NaN."""
    from bayesphys.problems.fisher_kolmogorov import max_steps

    _, faces, c0 = setup
    nan = torch.tensor([float("nan"), 0.1], dtype=F64)
    bound = max_steps(faces, nan, torch.tensor([0.05, 0.05], dtype=F64), H, "euler")
    assert math.isnan(float(bound[0])) and math.isfinite(float(bound[1]))
    assert math.isinf(
        float(max_steps(faces, torch.zeros(1, dtype=F64), torch.zeros(1), H, "strang")[0])
    )
    with pytest.warns(RuntimeWarning, match=r"^dw, rho: expected finite rates"):
        fk_forward(
            c0, faces, torch.tensor(float("nan"), dtype=F64), 0.05, t_end=1.0, steps=4, spacing=H
        )


def test_face_maps_and_masks_on_another_device_are_named(setup):
    """Faces or a tissue mask on another device than the state failed inside the first flux
    product with torch's "not on the expected device" (fk_forward, fk_residual, div_flux);
    each is now a ValueError naming the argument and both devices."""
    from bayesphys.problems.fisher_kolmogorov import fk_residual

    ph, faces, c0 = setup
    kw = dict(t_end=1.0, steps=4, spacing=H, check_stability=False)
    with pytest.raises(ValueError, match=r"^faces\[0\]: expected a tensor on c0's device meta"):
        fk_forward(c0.to("meta"), faces, 0.1, 0.5, **kw)
    with pytest.raises(ValueError, match=r"^tissue: expected a tensor on c0's device cpu"):
        fk_forward(c0, faces, 0.1, 0.5, tissue=ph["brain"].to("meta"), **kw)
    with pytest.raises(ValueError, match=r"^faces\[1\]: expected a tensor on u's device cpu"):
        div_flux(c0, [faces[0], faces[1].to("meta")], [H, H])
    levels = torch.stack([c0, c0]).to("meta")
    with pytest.raises(ValueError, match=r"^faces\[0\]: expected a tensor on c's device meta"):
        fk_residual(levels, faces, torch.tensor(0.1), torch.tensor(0.5), dt=0.1, spacing=H)
    assert fk_forward(c0, faces, 0.1, 0.5, **kw).shape == c0.shape


def test_fk_residual_names_a_rate_on_another_device(setup):
    """fk_residual multiplied the faces by ``dw`` before its device check, so a ``dw`` (or a
    ``rho``) on another device than ``c`` failed with torch's bare "not on the expected
    device"; both are now refused by name. A 0-dim CPU rate still passes (torch moves one
    itself), as before."""
    from bayesphys.problems.fisher_kolmogorov import fk_residual

    _, faces, c0 = setup
    levels = torch.stack([c0, c0])
    one, half = torch.tensor(0.1, dtype=F64), torch.tensor(0.5, dtype=F64)
    kw = dict(dt=0.1, spacing=H)
    with pytest.raises(ValueError, match=r"^dw: expected a tensor on c's device cpu"):
        fk_residual(levels, faces, one.to("meta"), half, **kw)
    with pytest.raises(ValueError, match=r"^rho: expected a tensor on c's device cpu"):
        fk_residual(levels, faces, one, half.to("meta"), **kw)
    with pytest.raises(ValueError, match=r"^dw: expected a tensor on c's device cpu"):
        fk_residual(levels, faces, torch.full((32, 32), 0.1, device="meta"), half, **kw)
    # on another device with CPU numbers: torch's own rule lets a 0-dim CPU tensor through
    meta = [f.to("meta") for f in faces]
    out = fk_residual(levels.to("meta"), meta, one, half, **kw)
    assert out.device.type == "meta" and out.shape == (1, 32, 32)
    ref = fk_residual(levels, faces, one, half, **kw)
    assert ref.shape == (1, 32, 32) and torch.isfinite(ref).all()


def test_fk_forward_and_tangent_name_a_rate_on_another_device(setup):
    """fk_forward and fk_forward_tangent multiplied the faces by ``dw`` (and read ``dw`` and
    ``rho`` in the stability check) without a device check, so a rate on another device than
    ``c0`` failed with torch's bare "not on the expected device" (or "cannot be called on meta
    tensors"); each is now refused by name, as in fk_residual, and so are the tangent's
    directions. A 0-dim CPU rate still passes (torch moves one itself)."""
    _, faces, c0 = setup
    one, half = torch.tensor(0.1, dtype=F64), torch.tensor(0.5, dtype=F64)
    kw = dict(t_end=1.0, steps=4, spacing=H)
    dirs = torch.zeros(2, *c0.shape, dtype=F64), torch.ones(2, dtype=F64), torch.ones(2, dtype=F64)
    for check in (True, False):
        kw["check_stability"] = check
        with pytest.raises(ValueError, match=r"^dw: expected a tensor on c0's device cpu"):
            fk_forward(c0, faces, one.to("meta"), half, **kw)
        with pytest.raises(ValueError, match=r"^rho: expected a tensor on c0's device cpu"):
            fk_forward(c0, faces, one, half.to("meta"), **kw)
        with pytest.raises(ValueError, match=r"^dw: expected a tensor on c0's device cpu"):
            fk_forward(c0, faces, torch.full(c0.shape, 0.1, device="meta"), half, **kw)
        with pytest.raises(ValueError, match=r"^dw: expected a tensor on c0's device cpu"):
            fk_forward_tangent(c0, dirs[0], faces, one.to("meta"), half, *dirs[1:], **kw)
        with pytest.raises(ValueError, match=r"^rho: expected a tensor on c0's device cpu"):
            fk_forward_tangent(c0, dirs[0], faces, one, half.to("meta"), *dirs[1:], **kw)
        for k, name in enumerate(("dc0", "ddw", "drho")):
            moved = [d.to("meta") if j == k else d for j, d in enumerate(dirs)]
            with pytest.raises(ValueError, match=rf"^{name}: expected a tensor on c0's device"):
                fk_forward_tangent(c0, moved[0], faces, one, half, *moved[1:], **kw)
    # on another device with CPU numbers: torch's own rule lets a 0-dim CPU tensor through
    meta = [f.to("meta") for f in faces]
    out = fk_forward(c0.to("meta"), meta, one, half, **kw)
    assert out.device.type == "meta" and out.shape == c0.shape
    c, dc = fk_forward_tangent(
        c0.to("meta"), dirs[0].to("meta"), meta, one, half, *(d.to("meta") for d in dirs[1:]), **kw
    )
    assert c.device.type == "meta" and dc.shape == (2, *c0.shape)
    ref, dref = fk_forward_tangent(c0, *dirs[:1], faces, one, half, *dirs[1:], **kw)
    assert torch.allclose(ref, fk_forward(c0, faces, one, half, **kw))
    assert dref.shape == (2, *c0.shape) and torch.isfinite(dref).all()


@settings(max_examples=20, deadline=None)
@given(
    grid=st.lists(st.integers(2, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**31 - 1),
)
def test_max_step_is_the_largest_diagonal_of_the_dense_operator(grid, seed):
    """max_step's diffusion rate is D_w max_i (sum of the faces of cell i) / h^2, i.e. the
    largest |diagonal| of the dense div_flux matrix: checked against that matrix for random
    positive faces whose last layer (outside the grid, never used by div_flux) is not zero."""
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(grid)
    faces = [0.1 + 3 * torch.rand(shape, generator=gen, dtype=F64) for _ in shape]
    h, dw, rho = 1.7, 0.3, 0.8
    n = math.prod(shape)
    basis = torch.eye(n, dtype=F64).reshape(n, *shape)
    m = div_flux(basis, [dw * f for f in faces], [h] * len(shape)).reshape(n, n).T
    rate = float(m.diagonal().abs().max())
    assert max_step(faces, dw, rho, h, "strang") == pytest.approx(1 / rate, rel=1e-12)
    assert max_step(faces, dw, rho, h, "euler") == pytest.approx(2 / (2 * rate + rho), rel=1e-12)


def test_fk_residual_is_the_crank_nicolson_and_euler_residual_by_hand():
    """Two cells, one face f between them, levels c^0, c^1: with F_0(c) = D_w f (c_1 - c_0)
    / h^2 + rho c_0 (1 - c_0) (and F_1 the mirror), the residual is (c^1 - c^0)/dt minus
    (F(c^1) + F(c^0))/2 ("cn") or F(c^0) ("euler")."""
    from bayesphys.problems.fisher_kolmogorov import fk_residual

    f, dw, rho, h, dt = 0.7, 0.4, 1.5, 1.3, 0.2
    faces = [torch.tensor([f, 0.0], dtype=F64)]
    c = torch.tensor([[0.2, 0.6], [0.35, 0.5]], dtype=F64)

    def rhs(u):
        flux = dw * f * (u[1] - u[0]) / h**2
        return [flux + rho * u[0] * (1 - u[0]), -flux + rho * u[1] * (1 - u[1])]

    f0, f1 = rhs(c[0].tolist()), rhs(c[1].tolist())
    ct = [(float(c[1, i]) - float(c[0, i])) / dt for i in range(2)]
    cn = [ct[i] - 0.5 * (f0[i] + f1[i]) for i in range(2)]
    eu = [ct[i] - f0[i] for i in range(2)]
    kw = dict(dt=dt, spacing=h)
    got_cn = fk_residual(c, faces, torch.tensor(dw, dtype=F64), torch.tensor(rho, dtype=F64), **kw)
    got_eu = fk_residual(
        c, faces, torch.tensor(dw, dtype=F64), torch.tensor(rho, dtype=F64), scheme="euler", **kw
    )
    assert got_cn.shape == (1, 2)
    assert got_cn[0].tolist() == pytest.approx(cn, rel=1e-12)
    assert got_eu[0].tolist() == pytest.approx(eu, rel=1e-12)


def test_maps_foci_amplitudes_and_face_shapes_are_checked_or_taken_as_documented(setup):
    from bayesphys.problems.fisher_kolmogorov import fk_residual

    ph, faces, c0 = setup
    with pytest.raises(
        ValueError, match=r"^gm: expected the shape of wm \(32, 32\), received \(32, 31\)$"
    ):
        tissue_faces(ph["wm"], ph["gm"][:, :-1])
    # a focus as numbers, and a tensor amplitude the result is differentiable in
    amp = torch.tensor(0.5, dtype=F64, requires_grad=True)
    c = initial_condition((8, 8), [10.0, 12.0], 2.0, amplitude=amp)
    ref = initial_condition((8, 8), torch.tensor([10.0, 12.0]), 2.0, amplitude=0.5)
    torch.testing.assert_close(c.detach(), ref.to(c.dtype))
    (grad,) = torch.autograd.grad(c.sum(), amp)
    torch.testing.assert_close(grad, (ref / 0.5).sum().to(grad.dtype))
    with pytest.raises(ValueError, match=r"^faces: expected one face map per grid axis, each of"):
        fk_forward(c0, [faces[0], faces[1][:-1]], 0.1, 0.05, t_end=1.0, steps=4, spacing=H)
    cc = torch.stack([c0, c0])
    with pytest.raises(
        ValueError, match=r"^scheme: expected one of \('cn', 'euler'\), received 'rk4'$"
    ):
        fk_residual(cc, faces, 0.1, 0.05, dt=0.5, spacing=H, scheme="rk4")


def test_a_non_finite_face_or_an_infinite_tensor_rate_is_named_not_a_zero_division(setup):
    """A NaN face map was reported as non-finite rates ("dw, rho: expected finite rates,
    received dw=0.1, rho=0.05"), and an infinite face or an infinite tensor rate (a stability
    bound of 0) failed with a raw ZeroDivisionError."""
    _, faces, c0 = setup
    kw = dict(t_end=1.0, steps=4, spacing=H)
    for bad in (float("nan"), float("inf")):
        broken = [f.clone() for f in faces]
        broken[1][5, 5] = bad
        for fn, args in (
            (fk_forward, (c0, broken, 0.1, 0.05)),
            (
                fk_forward_tangent,
                (c0, torch.zeros(1, *c0.shape, dtype=F64), broken, 0.1, 0.05)
                + (torch.zeros(1, dtype=F64), torch.zeros(1, dtype=F64)),
            ),
        ):
            with pytest.raises(
                ValueError,
                match=r"^faces: expected finite face maps .*received NaN/Inf in faces\[1\]$",
            ):
                fn(*args, **kw)
    inf = torch.tensor(float("inf"), dtype=F64)
    for dw, rho in ((inf, 0.05), (0.1, inf)):
        with pytest.warns(RuntimeWarning, match=r"^dw, rho: expected finite rates, received"):
            fk_forward(c0, faces, dw, rho, **kw)


def test_finite_rates_whose_stability_bound_overflows_to_zero_are_not_called_non_finite(setup):
    """dw = 1e300 on a 1e-10 grid: every input is finite, but the diffusion rate overflows
    and the bound is 0; the refusal said "expected finite rates, received dw=1e+300"."""
    _, faces, c0 = setup
    with pytest.raises(
        ValueError,
        match=r"^dw, rho: the stability bound of these rates on this grid is 0 \(dw=1e\+300, "
        r"rho=0\.05, spacing=1e-10: the rate overflows float64\), so no step count is stable$",
    ):
        fk_forward(c0, faces, 1e300, 0.05, t_end=1.0, steps=4, spacing=1e-10)


@pytest.mark.parametrize(
    ("rho", "t_end", "count"), [(1e300, 1.0, "about 5e+299"), (1e308, 100.0, "above 1.8e+308")]
)
def test_an_impractical_step_count_is_named_readably(rho, t_end, count):
    """A rate near the float maximum printed a 300-digit 'use steps >= N' (or, where t_end /
    bound overflowed, raised OverflowError from math.ceil); the refusal now gives the count to
    three digits and says the parameters make it impractical. Counts up to 1e9 are exact."""
    faces = tissue_faces(torch.ones(8, dtype=F64), torch.zeros(8, dtype=F64))
    c0 = torch.linspace(0.05, 0.95, 8, dtype=F64)
    kw = {"t_end": t_end, "steps": 10, "spacing": 1.0, "scheme": "euler"}
    with pytest.raises(ValueError, match=r"^steps: 10 steps over") as info:
        fk_forward(c0, faces, 0.001, rho, **kw)
    text = str(info.value)
    assert f"a stable run needs {count} steps, which these parameters make impractical" in text
    assert "check dw, rho and spacing" in text and len(text) < 400
    with pytest.warns(RuntimeWarning, match=re.escape(f"needs {count} steps")):  # tensors
        fk_forward(c0, faces, torch.tensor(0.001, dtype=F64), rho, **kw)
    need = math.ceil(2.0 / max_step(faces, 0.001, 5e8, 1.0, "euler"))
    assert need <= 10**9
    with pytest.raises(ValueError, match=rf"use steps >= {need} \(e\.g\. stable_steps"):
        fk_forward(c0, faces, 0.001, 5e8, **{**kw, "t_end": 2.0})


@pytest.mark.parametrize(
    "args, kw",
    [
        ((1e308, 1.0, 1e-3, 3), {}),  # a huge t_end: t_end / dt_max overflows to inf
        ((1.0, 1.0, 1.0, 1), {"rho": 1.7e308}),  # a huge rho
        ((1.0, 1e300, 1e-300, 3), {}),  # the bound underflows to 0
        ((1.0, 1e300, 1e-300, 3), {"rho": 1.0}),
    ],
)
def test_stable_steps_refuses_a_count_beyond_the_float_maximum(args, kw):
    """A huge t_end or rho made t_end / dt_max infinite, and math.ceil raised an OverflowError
    naming no argument; a bound that underflowed to 0 raised ZeroDivisionError."""
    with pytest.raises(
        ValueError,
        match=r"^t_end, d_max, spacing, rho: a stable run needs above 1\.8e\+308 steps \(t_end=.*"
        r"which these parameters make impractical",
    ):
        stable_steps(*args, **kw)


def test_stable_steps_of_zero_time_or_a_huge_spacing_is_one_step():
    """t_end = 0 is one step whatever the bound (0 / 0 raised ZeroDivisionError where the bound
    underflowed); a spacing whose square overflows has no diffusion bound (its float power
    raised OverflowError)."""
    assert stable_steps(0.0, 1e300, 1e-300, 3) == 1
    assert stable_steps(1.0, 1.0, 1e200, 1) == 1
    assert stable_steps(1.0, 1.0, 1e200, 1, rho=2.0) == math.ceil(1.0 / (0.8 / 2.0))


@pytest.mark.parametrize(
    ("args", "kw", "count"),
    [
        ((1e20, 1.0, 1.0, 1), {}, "about 2.5e+20"),  # a huge t_end
        ((1.0, 1.0, 1e-6, 3), {}, "about 7.5e+12"),  # a tiny spacing
        ((1.0, 1.0, 1.0, 1), {"rho": 1e10}, "about 1.25e+10"),  # a huge rho
    ],
)
def test_stable_steps_refuses_an_impractical_count_as_fk_forward_does(args, kw, count):
    """stable_steps returned counts such as 2.5e20 that fk_forward's refusal calls impractical
    (above 1e9); it refuses them in the same words, naming its arguments. 1e9 itself is
    returned, exact."""
    with pytest.raises(
        ValueError,
        match=rf"^t_end, d_max, spacing, rho: a stable run needs {re.escape(count)} steps "
        r"\(t_end=.*which these parameters make impractical \(more than 1e\+09\): check t_end",
    ):
        stable_steps(*args, **kw)
    assert stable_steps(4e8, 1.0, 1.0, 1) == 10**9  # 4e8 / 0.4
