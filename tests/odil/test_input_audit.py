"""Inputs of the ODIL public API that used to fail obscurely, give NaN or be ignored silently.

Each case now fails early with an error that names the argument (``pytest.raises(match=...)``
with the argument's name). Before, they failed inside torch / scipy with messages such as
``'list' object has no attribute 'items'``, ``shape '[1, 2]' is invalid for input of size 1``,
``bitwise_and_cpu not implemented for 'Float'``, ``random_ expects 'from' to be less than
'to'``, ``cannot convert float NaN to integer``; or they ran on: a field and a parameter of one
name shared a slice, a NaN start "converged" by stalling, ``jacobian=`` with the CG solver, a
``data=`` / ``x=`` argument, ``n=`` next to ``phantom=`` and a ``make_model`` ignoring its
``n_foci`` were ignored, ``dg_ratio=0`` simulated an empty tumour, a too long focus used its
first entries.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayesphys.odil import (
    DiscreteProblem,
    GliomaModel,
    Multigrid,
    cg,
    d1,
    d2,
    dense_gn_matrix,
    div_flux,
    face_average,
    field_posterior,
    fit_recalibration_map,
    focus_error_mm,
    gn_matvec,
    kmeans_foci,
    laplacian,
    log_evidence,
    minimize,
    multifocal_initial_condition,
    nuts_reference,
    recurrence_coverage,
    select_n_foci,
    shift,
    theta_covariance,
)
from bayesphys.problems import fisher_kolmogorov as fk
from bayesphys.problems.glioma import brain_phantom, mni_atlas, segment, synthetic_patient

NAN = math.nan
F64 = torch.float64


def _res(f, p):
    return {"r": f["u"] - p["c"], "s": (p["c"] - 1).reshape(1)}


def _prob(**kw) -> DiscreteProblem:
    return DiscreteProblem({"u": (6,)}, {"c": 0.5}, _res, **kw)


# -- DiscreteProblem --------------------------------------------------------------------------
def test_problem_containers_names_and_parameter_values():
    with pytest.raises(TypeError, match=r"^fields: expected a dict"):
        DiscreteProblem([("u", (6,))], {}, _res)
    with pytest.raises(TypeError, match=r"^params: expected a dict"):
        DiscreteProblem({"u": (6,)}, [0.5], _res)
    with pytest.raises(TypeError, match=r"^multigrid: expected a dict"):
        DiscreteProblem({"u": (8,)}, {}, _res, multigrid=[("u", 2)])
    # the parameter's slice silently replaced the field's
    with pytest.raises(ValueError, match=r"^params: names \['u'\] are also fields"):
        DiscreteProblem({"u": (6,)}, {"u": 1.0}, _res)
    with pytest.raises(ValueError, match=r"^params\['c'\]: expected finite"):
        DiscreteProblem({"u": (6,)}, {"c": NAN}, _res)
    with pytest.raises(TypeError, match=r"^params\['c'\]: expected a tensor or array"):
        DiscreteProblem({"u": (6,)}, {"c": "0.5"}, _res)


def test_problem_residuals_signature_and_terms():
    with pytest.raises(TypeError, match=r"^residuals: expected a callable residuals\(fields, pa"):
        DiscreteProblem({"u": (6,)}, {}, lambda f: {"r": f["u"]})
    prob = DiscreteProblem({"u": (6,)}, {}, lambda f, p: {"r": 1.0})
    with pytest.raises(TypeError, match=r"^residuals: expected a tensor for every term"):
        prob.residual(prob.initial())

    class Res:  # a callable object and *args are fine
        def __call__(self, *args):
            return {"r": args[0]["u"]}

    assert DiscreteProblem({"u": (3,)}, {}, Res()).residual(torch.ones(3, dtype=F64)).shape == (3,)


# -- minimize / cg ----------------------------------------------------------------------------
def test_minimize_problem_start_and_callables():
    with pytest.raises(TypeError, match=r"^problem: expected a DiscreteProblem"):
        minimize(object(), steps=1)
    with pytest.raises(ValueError, match=r"^x0: expected finite"):
        minimize(_prob(), torch.full((7,), NAN, dtype=F64), steps=3)
    for method in ("lm", "adam"):  # the imaginary part was dropped with a ComplexWarning
        with pytest.raises(TypeError, match=r"^x0: expected real values, received complex"):
            minimize(_prob(), torch.ones(7, dtype=torch.complex128), method=method, steps=1)
    with pytest.raises(TypeError, match=r"^callback: expected a callable"):
        minimize(_prob(), steps=1, callback=3)
    with pytest.raises(TypeError, match=r"^jacobian: expected a callable"):
        minimize(_prob(), steps=1, linear_solver="dense", jacobian=3)
    # a list start is converted like a tensor one
    xl, _ = minimize(_prob(), [0.0] * 7, steps=2)
    xt, _ = minimize(_prob(), torch.zeros(7, dtype=F64), steps=2)
    assert torch.equal(xl, xt)


@pytest.mark.parametrize(("method", "solver"), [("lm", "cg"), ("gn", "cg"), ("adam", "dense")])
def test_minimize_jacobian_only_where_it_is_used(method, solver):
    def jac(x):
        return torch.zeros(7, dtype=F64), torch.zeros(7, 7, dtype=F64)

    with pytest.raises(ValueError, match=r"^jacobian: only used by method='gn' or 'lm' with line"):
        minimize(_prob(), steps=1, method=method, linear_solver=solver, jacobian=jac)


def test_minimize_jacobian_output_checked():
    bad_shape = lambda x: (torch.zeros(3, dtype=F64), torch.zeros(3, 3, dtype=F64))  # noqa: E731
    with pytest.raises(ValueError, match=r"^jacobian: expected jacobian\(x\) to return r \[m\]"):
        minimize(_prob(), steps=1, linear_solver="dense", jacobian=bad_shape)
    with pytest.raises(TypeError, match=r"^jacobian: expected jacobian\(x\) to return a pair"):
        minimize(_prob(), steps=1, linear_solver="dense", jacobian=lambda x: x)


@pytest.mark.parametrize("method", ["gn", "lm", "adam", "lbfgs"])
def test_a_callback_that_cannot_take_k_and_x_is_refused_by_name(method):
    """callback(k) failed at the first step with the bare TypeError of its own call
    ("<lambda>() takes 1 positional argument but 2 were given"), naming no argument."""
    with pytest.raises(TypeError, match=r"^callback: expected a callable callback\(k, x\)"):
        minimize(_prob(), method=method, steps=2, callback=lambda k: None)


def test_a_jacobian_that_cannot_take_x_is_refused_by_name():
    with pytest.raises(TypeError, match=r"^jacobian: expected a callable jacobian\(x\)"):
        minimize(_prob(), steps=1, linear_solver="dense", jacobian=lambda x, y: None)


@pytest.mark.parametrize("method", ["gn", "lm"])
def test_a_user_jacobian_without_all_the_problems_residuals_is_refused(method):
    """A jacobian(x) whose pair (r [m], J [m, n]) left out residuals of the problem (here its
    last one) was fitted without a word: the steps minimised the pair's residuals, not the
    problem's."""

    def res(f, p):
        return {"d": (f["u"] - 1.0) / 0.1, "p": p["c"] - 2.0 + 0.1 * f["u"].sum()}

    prob = DiscreteProblem({"u": (4,)}, {"c": 0.0}, res)

    def short(x):
        r = prob.residual(x)
        jac = torch.autograd.functional.jacobian(prob.residual, x)
        return r[:-1], jac[:-1]

    with pytest.raises(ValueError, match=r"^jacobian: .* the problem's 5 residuals.* \(4,\)"):
        minimize(prob, method=method, steps=1, linear_solver="dense", jacobian=short)


@pytest.mark.parametrize("method", ["gn", "lm"])
def test_minimize_nan_loss_at_the_start_is_not_convergence(method):
    # LM rejected every step until the damping "stalled" and reported converged=True at NaN
    prob = DiscreteProblem({"u": (2,)}, {}, lambda f, p: {"r": f["u"] * NAN})
    x0 = torch.ones(2, dtype=F64)
    x, res = minimize(prob, x0, method=method, steps=50)
    assert not res.converged and res.message.startswith("diverged at step 0")
    assert torch.equal(x, x0) and res.steps == 0


def test_cg_arguments():
    b = torch.ones(3, dtype=F64)
    with pytest.raises(TypeError, match=r"^matvec: expected a callable"):
        cg(3, b)
    with pytest.raises(TypeError, match=r"^precond: expected a callable"):
        cg(lambda v: 2 * v, b, precond=1)
    with pytest.raises(TypeError, match=r"^b: expected a tensor"):
        cg(lambda v: 2 * v, [1.0, 1.0])
    with pytest.raises(ValueError, match=r"^x0: expected a tensor of b's shape"):
        cg(lambda v: 2 * v, b, x0=torch.zeros(4, dtype=F64))


# -- Laplace posterior ------------------------------------------------------------------------
def test_theta_covariance_names_and_point():
    prob = DiscreteProblem({"u": (6,)}, {"coef": 0.5}, lambda f, p: _res(f, {"c": p["coef"]}))
    x, _ = minimize(prob, steps=10)
    ref, _ = theta_covariance(prob, x, ["coef"])
    # a single name as a string was split into letters ("unknown unknown 'c'")
    assert torch.equal(theta_covariance(prob, x, "coef")[0], ref)
    assert torch.equal(theta_covariance(prob, x.tolist(), ["coef"])[0], ref)
    with pytest.raises(ValueError, match=r"^params: unknown name 'zz'"):
        theta_covariance(prob, x, ["zz"])
    with pytest.raises(ValueError, match=r"^params: expected at least one name"):
        theta_covariance(prob, x, [])
    with pytest.raises(ValueError, match=r"^params: expected distinct names"):
        theta_covariance(prob, x, ["coef", "coef"])
    bad = x.clone()
    bad[0] = NAN
    for fn in (theta_covariance, gn_matvec, dense_gn_matrix):
        with pytest.raises(ValueError, match=r"^x: expected finite"):
            fn(prob, bad)
        with pytest.raises(TypeError, match=r"^problem: expected a DiscreteProblem"):
            fn(object(), x)
    with pytest.raises(ValueError, match=r"^field: expected one of"):
        field_posterior(prob, x, ["u"])


def test_multigrid_shapes():
    with pytest.raises(TypeError, match=r"^shape: expected a sequence of ints"):
        Multigrid(8, 2)
    mg = Multigrid((8, 8), 2)
    with pytest.raises(ValueError, match=r"^coeffs: expected shape \(80,\)"):
        mg.to_fine(torch.zeros(10))
    # a coarser field gave a coefficient vector of the wrong length without a word
    with pytest.raises(ValueError, match=r"^u: expected the fine shape \(8, 8\)"):
        mg.from_fine(torch.zeros(4, 4))


# -- stencils ---------------------------------------------------------------------------------
def test_stencil_arguments():
    u = torch.rand(8, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    with pytest.raises(TypeError, match=r"^k: expected an int"):
        shift(u, 0, 1.5, "zero")
    with pytest.raises(ValueError, match=r"^h: expected a number > 0"):
        d1(u, 0, 0.0)  # gave inf
    with pytest.raises(ValueError, match=r"^h: expected a finite number"):
        d2(u, 0, NAN)
    with pytest.raises(TypeError, match=r"^spacing: expected a sequence of grid steps"):
        laplacian(u, 1.0)
    with pytest.raises(ValueError, match=r"^spacing\[1\]: expected a number > 0"):
        laplacian(u, [1.0, 0.0])
    for empty in ([], ()):  # laplacian returned the integer 0, div_flux zeros
        with pytest.raises(ValueError, match=r"^spacing: expected at least one grid step"):
            laplacian(u, empty)
        with pytest.raises(ValueError, match=r"^spacing: expected at least one grid step"):
            div_flux(u, [], empty)
    with pytest.raises(ValueError, match=r"^faces: expected 2 face tensors"):
        div_flux(u, [u], [1.0, 1.0])  # IndexError
    with pytest.raises(ValueError, match=r"^faces: expected 2 face tensors"):
        div_flux(u, [u[:4, :4], u[:4, :4]], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"^axis: expected an axis of a 2-D tensor"):
        face_average(u, 3)
    # tensor steps (e.g. differentiable) and negative axes keep working
    assert torch.equal(d2(u, 1, torch.tensor(0.5, dtype=F64)), d2(u, 1, 0.5))
    assert torch.equal(face_average(u, -1), face_average(u, 1))


# -- Fisher-Kolmogorov simulator --------------------------------------------------------------
def test_fisher_kolmogorov_arguments():
    u = torch.rand(8, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    for bad in (0.0, NAN):
        with pytest.raises(ValueError, match=r"^dg_ratio: expected"):
            fk.tissue_faces(u, u, dg_ratio=bad)  # inf / NaN faces
    f = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    for focus in (f, f[:1]):  # 3 entries on a 2-D grid: the first two were used
        with pytest.raises(ValueError, match=r"^focus: expected 2 coordinates"):
            fk.initial_condition((8, 8), focus, 1.0)
    with pytest.raises(ValueError, match=r"^origin: expected 2 coordinates"):
        fk.initial_condition((8, 8), f[:2], 1.0, origin=[0.0])
    with pytest.raises(ValueError, match=r"^spacing: expected a number > 0"):
        fk.initial_condition((8, 8), f[:2], 0.0)
    with pytest.raises(ValueError, match=r"^t_end: expected a finite number"):
        fk.stable_steps(NAN, 1.0, 1.0, 2)
    with pytest.raises(ValueError, match=r"^spacing: expected a number > 0"):
        fk.stable_steps(1.0, 1.0, 0.0, 2)  # ZeroDivisionError
    with pytest.raises(ValueError, match=r"^d_max: expected a number > 0"):
        fk.stable_steps(10.0, -1.0, 1.0, 2)  # one step whatever t_end
    faces = fk.tissue_faces(u, u)
    kw = {"t_end": 1.0, "steps": 3, "spacing": 1.0}
    with pytest.raises(ValueError, match=r"^spacing: expected a number > 0"):
        fk.fk_forward(u, faces, 0.1, 0.1, **{**kw, "spacing": 0.0})
    for every in (0, -1):  # 0 returned no trajectory, -1 every step
        with pytest.raises(ValueError, match=r"^save_every: expected an int >= 1"):
            fk.fk_forward(u, faces, 0.1, 0.1, save_every=every, **kw)
    with pytest.raises(ValueError, match=r"^faces: expected 2 face maps"):
        fk.fk_forward(u, faces[:1], 0.1, 0.1, **kw)
    with pytest.raises(ValueError, match=r"^tissue: expected the grid's shape"):
        fk.fk_forward(u, faces, 0.1, 0.1, tissue=torch.ones(8, dtype=F64), **kw)
    with pytest.raises(ValueError, match=r"^dw: expected a number >= 0"):
        fk.fk_forward(u, faces, -0.1, 0.1, **kw)
    dc0, e = torch.zeros(2, 8, 8, dtype=F64), torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match=r"^faces: expected 2 face maps"):
        fk.fk_forward_tangent(u, dc0, faces[:1], 0.1, 0.1, e, e, **kw)
    with pytest.raises(ValueError, match=r"^dc0, ddw, drho: expected"):
        fk.fk_forward_tangent(u, dc0, faces, 0.1, 0.1, e[:1], e, **kw)
    c, one = torch.stack([u, u]), torch.tensor(0.1, dtype=F64)
    with pytest.raises(ValueError, match=r"^dt: expected a number > 0"):
        fk.fk_residual(c, faces, one, one, dt=0.0, spacing=1.0)
    with pytest.raises(ValueError, match=r"^c: expected \[nt >= 2, \*grid\]"):
        fk.fk_residual(u[None], faces, one, one, dt=1.0, spacing=1.0)


# -- glioma problem generators ----------------------------------------------------------------
def test_segment_phantom_and_atlas_arguments():
    c, brain = torch.linspace(0, 1, 11, dtype=F64), torch.ones(11, dtype=F64)
    with pytest.raises(ValueError, match=r"^brain: expected the shape of c"):
        segment(c.reshape(1, 11).expand(3, 11), 0.6, 0.25, brain)  # broadcast silently
    with pytest.raises(ValueError, match=r"^c: expected finite values"):
        segment(c * NAN, 0.6, 0.25, brain)  # NaN cells labelled 0
    with pytest.raises(ValueError, match=r"^th_up: expected a finite number"):
        segment(c, NAN, 0.25, brain)
    with pytest.raises(ValueError, match=r"^dtype: expected a floating dtype"):
        brain_phantom(16, dtype=torch.long)  # integer "probability" maps
    assert brain_phantom(16, dtype="float32")["wm"].dtype == torch.float32
    # checked before the template is read
    with pytest.raises(TypeError, match=r"^resolution_mm: expected a real number"):
        mni_atlas(True)  # read as 1 mm
    with pytest.raises(ValueError, match=r"^margin_mm: expected a number >= 0"):
        mni_atlas(4.0, margin_mm=-10.0)  # cropped into the brain
    with pytest.raises(ValueError, match=r"^axial_mm: expected a finite number"):
        mni_atlas(4.0, axial_mm=NAN)


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"seed": 2.5}, TypeError, r"^seed: expected an int"),  # truncated to 2
        ({"seed": None}, TypeError, r"^seed: expected an int"),
        ({"t_end": NAN}, ValueError, r"^t_end: expected a finite number"),
        ({"future_days": -1.0}, ValueError, r"^future_days: expected a number >= 0"),
        ({"dg_ratio": 0.0}, ValueError, r"^dg_ratio: expected a number > 0"),  # empty tumour
        ({"step_d": NAN}, ValueError, r"^step_d: expected a finite number"),  # ignored by max()
        ({"th_up": NAN}, ValueError, r"^th_up: expected a finite number"),
        ({"n": 32}, ValueError, r"^n: unused with phantom="),
        ({"spacing": 4.0}, ValueError, r"^spacing: unused with phantom="),
    ],
)
def test_synthetic_patient_settings(phantom, kw, exc, match):
    with pytest.raises(exc, match=match):
        synthetic_patient(**{"seed": 0, **kw}, phantom=phantom)


def test_synthetic_patient_phantom(phantom):
    with pytest.raises(TypeError, match=r"^phantom: expected a dict"):
        synthetic_patient(0, phantom=[phantom["wm"]])
    with pytest.raises(
        ValueError,
        match=(
            r"^phantom: expected keys \['wm', 'gm', 'brain', 'spacing'\].* missing \['gm', "
            r"'brain', 'spacing'\]"
        ),
    ):
        synthetic_patient(0, phantom={"wm": phantom["wm"]})
    no_wm = {**phantom, "wm": 0.5 * phantom["wm"]}
    with pytest.raises(ValueError, match=r"^phantom: no white-matter voxel"):
        synthetic_patient(0, phantom=no_wm)
    # the built-in phantom is still sized by n and spacing
    assert synthetic_patient(0, n=16, spacing=8.0, refine=1)["labels"].shape == (16, 16)


# -- GliomaModel ------------------------------------------------------------------------------
def test_glioma_tissue_maps(patient):
    wm, gm = patient["wm"].clone(), patient["gm"]
    wm[0, 0] = -0.2  # anti-diffusion
    with pytest.raises(ValueError, match=r"^wm: expected tissue probabilities in \[0, 1\]"):
        GliomaModel(wm, gm, patient["labels"], spacing=4.0)
    with pytest.raises(ValueError, match=r"^gm: expected tissue probabilities in \[0, 1\]"):
        GliomaModel(patient["wm"], 3 * gm, patient["labels"], spacing=4.0)
    with pytest.raises(TypeError, match=r"^wm: expected real values, received complex"):
        GliomaModel(patient["wm"].to(torch.complex128), gm, patient["labels"], spacing=4.0)


def test_glioma_theta_argument(model):
    th = model.theta
    for fn in (model.forward, model.loss, model.residuals, model.jacobian, model.foci):
        for bad in (th[:3], torch.cat([th, th])):
            with pytest.raises(ValueError, match=r"^theta: expected shape \(4,\)"):
                fn(bad)
    with pytest.raises(ValueError, match=r"^theta: expected shape \(4,\)"):
        model.initial_state(th[:3])
    # array-likes are converted (a list failed with "'list' object has no attribute")
    assert torch.equal(model.forward(th.tolist()), model.forward(th))
    assert torch.equal(model.loss(th.numpy()), model.loss(th))
    with pytest.raises(ValueError, match=r"^c: expected a field"):
        model.full(torch.zeros(3, 3))


def test_glioma_unused_data_and_grid_arguments(model):
    with pytest.raises(ValueError, match=r"^data: expected None"):
        model.fit(torch.zeros(3), progress=False)
    with pytest.raises(ValueError, match=r"^x: expected None"):
        model.posterior(torch.zeros(3), num_samples=2)


def test_from_patient(patient):
    with pytest.raises(TypeError, match=r"^patient: expected a dict"):
        GliomaModel.from_patient([patient])
    with pytest.raises(ValueError, match=r"^pet: pass use_pet=True"):
        GliomaModel.from_patient(patient, pet=patient["pet"])
    # the patient's horizon and tissue ratio were replaced by the defaults (100 d, 10)
    m = GliomaModel.from_patient({**patient, "t_end": 150.0, "dg_ratio": 20.0})
    assert (m.config["t_end"], m.config["dg_ratio"]) == (150.0, 20.0)
    assert GliomaModel.from_patient({**patient, "t_end": 150.0}, t_end=50).config["t_end"] == 50.0


def test_recalibrate_inputs(model):
    m = model  # refused before anything is changed
    with pytest.raises(TypeError, match=r"^shift: expected a tensor or array"):
        m.recalibrate("0.1", 1.0)
    with pytest.raises(TypeError, match=r"^shift: expected real numbers"):
        m.recalibrate(True, 1.0)  # read as 1
    with pytest.raises(TypeError, match=r"^scale: expected real numbers"):
        m.recalibrate(0.0, torch.ones(4, dtype=torch.bool))
    assert m.recalibration is None


# -- foci, plans, recalibration map -----------------------------------------------------------
def test_foci_helpers(patient, model):
    with pytest.raises(TypeError, match=r"^model: expected a GliomaModel"):
        log_evidence(object())
    with pytest.raises(TypeError, match=r"^model: expected a GliomaModel"):
        nuts_reference(object(), num_samples=1, warmup_steps=0)
    with pytest.raises(TypeError, match=r"^make_model: expected a callable"):
        select_n_foci(3, (1,))
    with pytest.raises(TypeError, match=r"^candidates: expected a sequence of ints"):
        select_n_foci(lambda k: model, 2)
    with pytest.raises(TypeError, match=r"^make_model\(1\): expected a GliomaModel"):
        select_n_foci(lambda k: None, (1,))
    # a make_model that ignored K compared the evidence of the wrong models
    with pytest.raises(ValueError, match=r"^make_model\(2\): expected a model with n_foci=2"):
        select_n_foci(lambda k: model, (2,))
    with pytest.raises(ValueError, match=r"^est: expected finite values"):
        focus_error_mm([[NAN, 1.0]], [[1.0, 1.0]])  # gave NaN
    with pytest.raises(TypeError, match=r"^true: expected a tensor or array"):
        focus_error_mm([[1.0, 1.0]], "ab")
    pts = torch.rand(12, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert torch.equal(kmeans_foci(pts.numpy(), 2), kmeans_foci(pts, 2))
    assert torch.equal(
        kmeans_foci((10 * pts).long(), 2), kmeans_foci((10 * pts).long().double(), 2)
    )
    with pytest.raises(ValueError, match=r"^points: expected finite values"):
        kmeans_foci(pts * NAN, 2)
    f = [[2.0, 3.0]]
    ref = multifocal_initial_condition((8, 8), torch.tensor(f, dtype=F64), 1.0)
    assert torch.equal(multifocal_initial_condition((8, 8), f, 1.0)[0], ref[0])
    for origin in ([0.0], [0.0, 0.0, 5.0]):  # extra entries were ignored
        with pytest.raises(ValueError, match=r"^origin: expected 2 coordinates"):
            multifocal_initial_condition((8, 8), f, 1.0, origin=origin)
    with pytest.raises(ValueError, match=r"^foci: expected shape \[K >= 1, 2\]"):
        multifocal_initial_condition((8, 8), torch.zeros(0, 2), 1.0)


def test_recurrence_coverage_masks():
    lab = torch.zeros(10, 10, dtype=torch.long)
    lab[3:6, 3:6] = 2
    lab[6, 3:6] = 1
    plan, rec = lab == 2, lab > 0
    ref = recurrence_coverage(plan, rec)
    assert ref == 0.75
    assert recurrence_coverage(plan.double(), rec.float()) == ref  # float masks failed in '&'
    assert recurrence_coverage(plan.long(), rec.long()) == ref
    with pytest.raises(ValueError, match=r"^recurrence: expected a boolean \(or 0/1\) mask"):
        recurrence_coverage(plan, lab)  # 2 & 1 = 0 counted label-2 voxels as missed


def test_fit_recalibration_map_inputs():
    z = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    with pytest.raises(TypeError, match=r"^level: expected a real number"):
        fit_recalibration_map(z, "0.9")
    with pytest.raises(TypeError, match=r"^shift: expected True or False"):
        fit_recalibration_map(z, shift="no")  # truthy
    with pytest.raises(ValueError, match=r"^z: expected shape \[n >= 2, p >= 1\]"):
        fit_recalibration_map(z[:, :0])
    with pytest.raises(TypeError, match=r"^z: expected a tensor or array"):
        fit_recalibration_map("abc")
    b, s = fit_recalibration_map(z.numpy(), 0.9, shift=np.bool_(True))
    assert torch.equal(b, fit_recalibration_map(z)[0]) and torch.equal(
        s, fit_recalibration_map(z)[1]
    )


def test_laplace_takes_x_in_any_dtype_and_gn_returns_a_detached_x():
    """A float32 x for a float64 problem failed inside the user's residual; GN/LM returned an
    x attached to the caller's autograd graph (a parameter value that required grad)."""
    from bayesphys.odil import DiscreteProblem, minimize, theta_covariance

    a = torch.linspace(1.0, 2.0, 4, dtype=torch.float64)

    def res(f, p):
        return {"r": f["u"] * p["k"] - a, "p": p["k"] - 2.0}

    prob = DiscreteProblem({"u": (4,)}, {"k": torch.tensor(0.5, requires_grad=True)}, res)
    for method in ("gn", "lm"):
        x, _ = minimize(prob, method=method, steps=5)
        assert not x.requires_grad and x.grad_fn is None
    cov64, _ = theta_covariance(prob, x, ["k"])
    cov32, _ = theta_covariance(prob, x.float(), ["k"])
    assert cov32.dtype == torch.float64
    torch.testing.assert_close(cov32, cov64, rtol=1e-5, atol=0)


def test_an_infinite_derivative_at_the_start_is_not_convergence():
    """sqrt(u) at u = 0: LM with CG raised its damping until it 'stalled' and reported a local
    minimum at the start; the dense solve died in an internal lstsq assert."""
    from bayesphys.odil import DiscreteProblem, minimize

    prob = DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"r": torch.sqrt(f["u"]) - 1.0})
    for method, solver in (("lm", "cg"), ("lm", "dense"), ("gn", "dense")):
        x, res = minimize(prob, method=method, steps=60, linear_solver=solver)
        assert not res.converged, (method, solver)
        assert "non-finite Jacobian or step at step 0" in res.message
        assert torch.equal(x, torch.zeros(3, dtype=x.dtype))
    x, res = minimize(prob, x0=torch.full((3,), 0.5), method="lm", steps=60, linear_solver="dense")
    assert res.converged and torch.allclose(x, torch.ones(3, dtype=x.dtype))


def test_field_posterior_seed_none_gives_fresh_draws():
    """seed=None gave the same Monte-Carlo covariance on every call (a new generator's
    default seed)."""
    from bayesphys.odil import DiscreteProblem, field_posterior, minimize

    a = torch.linspace(1.0, 2.0, 6, dtype=torch.float64)
    prob = DiscreteProblem(
        {"u": (6,)}, {}, lambda f, p: {"r": f["u"] - a, "s": f["u"][1:] - f["u"][:-1]}
    )
    x, _ = minimize(prob, method="gn", steps=2)
    kw = dict(dense_max=0, num_samples=4)
    c0 = [field_posterior(prob, x, "u", seed=0, **kw).variance for _ in range(2)]
    assert torch.equal(c0[0], c0[1])
    cn = [field_posterior(prob, x, "u", seed=None, **kw).variance for _ in range(2)]
    assert not torch.equal(cn[0], cn[1])


def test_fit_start_respects_d_max_when_every_grid_start_exceeds_it(patient):
    """With d_max below every grid start (grid=1: the prior mean), LM started from the
    unclipped prior mean, an unstable explicit time step (grid_start_loss inf)."""
    m = GliomaModel.from_patient(patient, d_max=0.1)
    res = m.fit(steps=2, grid=1, progress=False)
    assert math.isfinite(res.extra["grid_start_loss"])
    assert float(torch.exp(m.theta[0])) <= 0.1 * (1 + 1e-6)


def test_theta_covariance_names_an_unidentified_parameter():
    """A parameter no residual depends on gave a raw LinAlgError naming nothing."""
    from bayesphys.odil import DiscreteProblem, theta_covariance

    def res(f, p):
        return {"r": f["u"] * p["k"] - 1, "p": p["k"] - 2}

    prob = DiscreteProblem({"u": (4,)}, {"k": 0.5, "z": 0.0}, res)
    x = prob.initial() + 0.3
    for kw in ({}, {"sparse": True}):
        with pytest.raises(
            ValueError,
            match=r"^params: the Gauss-Newton matrix is singular, no residual depends on \['z'\]",
        ):
            theta_covariance(prob, x, **kw)
    cov, _ = theta_covariance(prob, x, ["k"])  # the identified one alone still works
    assert cov.shape == (1, 1) and bool(torch.isfinite(cov).all())


def _heat_problem():
    """Implicit-midpoint heat equation on a 9 x 16 space-time grid, data at the last time."""
    import math

    from bayesphys.odil import DiscreteProblem, d2

    nt, nx = 9, 16
    dt, dx = 0.5 / (nt - 1), 1.0 / nx
    u0 = torch.sin(2 * math.pi * torch.arange(nx, dtype=torch.float64) * dx)
    y = u0 * math.exp(-0.1 * (2 * math.pi) ** 2 * 0.5)

    def res(f, p):
        u = f["u"]
        ut = (u[1:] - u[:-1]) / dt
        uxx = 0.5 * (d2(u[1:], 1, dx) + d2(u[:-1], 1, dx))
        return {
            "pde": (ut - p["D"] * uxx) / 1e-2,
            "init": (u[0] - u0) / 1e-2,
            "data": (u[-1] - y) / 1e-2,
        }

    prob = DiscreteProblem({"u": (nt, nx)}, {"D": 0.1}, res, dtype=torch.float64)
    return prob, prob.pack({"u": u0.expand(nt, nx)})


def test_field_posterior_warns_when_cg_stops_short():
    """Capped CG gave draws whose spread was 1-10 % of the true one, silently."""
    import warnings

    from bayesphys.odil import field_posterior

    prob, x = _heat_problem()
    with pytest.warns(RuntimeWarning, match="field_posterior: CG did not reach"):
        field_posterior(prob, x, "u", dense_max=0, num_samples=4, cg_maxiter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        field_posterior(prob, x, "u", dense_max=0, num_samples=4)


def test_field_posterior_refuses_cells_no_residual_sees():
    """A cell outside every residual: the dense path failed inside torch's inv, the sampling
    path reported the jitter (1e-6) as its sd; its variance is infinite."""
    from bayesphys.odil import DiscreteProblem, field_posterior

    y = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)

    def res(f, p):
        return {"data": (f["u"][:4] - y) / 0.1, "a": (p["a"] - 1.0).reshape(1) / 0.5}

    prob = DiscreteProblem({"u": (5,)}, {"a": 0.0}, res, dtype=torch.float64)
    x = prob.pack({"u": torch.tensor([1.0, 2, 3, 4, 0], dtype=torch.float64)})
    for dense_max in (4096, 0):
        with pytest.raises(
            ValueError, match=r"1 cell\(s\) of field 'u' \(e.g. \[\(4,\)\]\) have a zero Jacobian"
        ):
            field_posterior(prob, x, "u", dense_max=dense_max, num_samples=8)

    # a free cell of another field, or a free parameter, makes the asked field's marginal
    # undefined too (the dense path failed inside torch's inv)
    def res_two(f, p):
        return {"data": (f["u"][:4] - y) / 0.1, "v": (f["v"][:2] - 1.0), "a": p["a"].reshape(1)}

    two = DiscreteProblem(
        {"u": (4,), "v": (3,)}, {"a": 0.0, "b": 0.0}, res_two, dtype=torch.float64
    )
    with pytest.raises(
        ValueError, match=r"1 cell\(s\) of field 'v' \(e.g. \[\(2,\)\]\); parameter 'b'"
    ):
        field_posterior(two, two.pack({"u": y}), "u")

    # the same cell seen by a prior residual: accepted, finite variance
    def res_prior(f, p):
        out = res(f, p)
        out["prior"] = f["u"] / 10.0
        return out

    ok = DiscreteProblem({"u": (5,)}, {"a": 0.0}, res_prior, dtype=torch.float64)
    post = field_posterior(ok, ok.pack({"u": torch.zeros(5, dtype=torch.float64)}), "u")
    assert bool(torch.isfinite(post.variance).all())


def test_theta_covariance_refuses_nan_gauss_newton_matrix():
    """A residual that is NaN at x gave a NaN covariance and no warning (r > tol is False for
    NaN residuals)."""
    from bayesphys.odil import DiscreteProblem, theta_covariance

    def res(f, p):
        u = f["u"]
        return {"data": (torch.sqrt(u) - 1.0) / 0.1, "a": (p["a"] * u.sum() - 1.0).reshape(1)}

    prob = DiscreteProblem({"u": (3,)}, {"a": 1.0}, res, dtype=torch.float64)
    x = prob.pack({"u": torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)})
    with pytest.warns(RuntimeWarning, match="CG did not reach"):
        with pytest.raises(ValueError, match="Gauss-Newton matrix at x is not finite"):
            theta_covariance(prob, x, ["a"])
    with pytest.raises(ValueError, match="Gauss-Newton matrix at x is not finite"):
        theta_covariance(prob, x, ["a"], dense=True)
    # the field marginal too (its dense path returned a NaN covariance silently)
    from bayesphys.odil import field_posterior

    for dense_max in (4096, 0):
        with pytest.raises(ValueError, match="x: the residuals at x are not finite"):
            field_posterior(prob, x, "u", dense_max=dense_max)


def test_complex_labels_and_scores_are_refused_by_name(patient):
    """Complex labels built a model (and a margin plan) from their real part, and a complex
    score ranked a plan by its real part, with only torch's casting warning; a float label
    of 2**63 was named as -9223372036854775808 (the value after the cast to int64)."""
    from bayesphys.odil import model_plan, standard_margin_plan

    lab = patient["labels"]
    brain = (patient["wm"] + patient["gm"]) >= 0.1
    bad = lab.to(torch.complex128) + 0.5j
    with pytest.raises(TypeError, match=r"^labels: expected real values, received complex"):
        GliomaModel(patient["wm"], patient["gm"], bad, spacing=4.0)
    with pytest.raises(TypeError, match=r"^labels: expected real values, received complex"):
        standard_margin_plan(bad, brain, 4.0)
    score = torch.rand(brain.shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match=r"^score: expected real values, received complex"):
        model_plan(score.to(torch.complex128), brain, 10)
    assert int(model_plan(score, brain, 10).sum()) == 10
    huge = lab.double()
    huge[0, 0] = 2.0**63
    with pytest.raises(ValueError, match=r"received also \[9\.22\d*e\+18\]$"):
        standard_margin_plan(huge, brain, 4.0)
    three = lab.double()
    three[0, 0] = 3.0
    with pytest.raises(ValueError, match=r"received also \[3\]$"):
        standard_margin_plan(three, brain, 4.0)


def test_from_patient_use_pet_is_a_bool(patient):
    """use_pet="no" (truthy) built a model on the patient's PET map."""
    p = dict(patient)
    if p.get("pet") is None:
        p["pet"] = 0.5 * p["labels"].to(F64)
    with pytest.raises(TypeError, match=r"^use_pet: expected True or False, received str"):
        GliomaModel.from_patient(p, use_pet="no")
    assert GliomaModel.from_patient(p, use_pet=np.bool_(False)).pet is None
    assert GliomaModel.from_patient(p, use_pet=True).pet is not None


def test_glioma_maps_labels_pet_and_foci_are_checked_by_name(patient):
    wm, gm, lab = patient["wm"], patient["gm"], patient["labels"]
    kw = {"spacing": 4.0}
    with pytest.raises(
        ValueError, match=r"^wm: expected a 2-D or 3-D map, received shape \(32,\)$"
    ):
        GliomaModel(wm[0], gm[0], lab[0], **kw)
    with pytest.raises(ValueError, match=r"^pet: expected shape \(32, 32\), received \(32, 31\)$"):
        GliomaModel(wm, gm, lab, pet=torch.zeros(32, 31), **kw)
    outside = lab.clone()
    outside[0, 0] = 1  # a corner of the phantom: no tissue
    assert float(wm[0, 0] + gm[0, 0]) < 0.1
    with pytest.raises(
        ValueError, match=r"^labels: lesion voxels found outside the brain \(wm \+ gm < 0\.1\)$"
    ):
        GliomaModel(wm, gm, outside, **kw)
    with pytest.raises(
        ValueError, match=r"^labels: expected a lesion \(some label 1 or 2\), received none$"
    ):
        GliomaModel(wm, gm, torch.zeros_like(lab), **kw)
    with pytest.raises(
        ValueError, match=r"^labels: expected integer labels 0/1/2, received non-integer values$"
    ):
        GliomaModel(wm, gm, lab.double() * 0.5, **kw)
    small = torch.zeros_like(lab)
    small[tuple((lab == 2).nonzero()[0])] = 2  # a lesion of one voxel
    with pytest.raises(
        ValueError, match=r"^n_foci: expected at most 1 foci for this lesion, received 2$"
    ):
        GliomaModel(wm, gm, small, n_foci=2, **kw)


def test_problem_pack_unpack_terms_and_loss_terms():
    prob = _prob()
    with pytest.raises(
        ValueError, match=r"^fields\['u'\]: expected shape \(6,\), received \(5,\)$"
    ):
        prob.pack({"u": torch.zeros(5)})
    with pytest.raises(ValueError, match=r"^x: expected shape \(7,\), received \(6,\)$"):
        prob.unpack(torch.zeros(6, dtype=F64))
    x = prob.pack({"u": torch.arange(6.0)}, {"c": 2.0})
    # 1/2 |u - c|^2 and 1/2 (c - 1)^2, per term, as floats
    assert prob.loss_terms(x) == {"r": 0.5 * float(((torch.arange(6.0) - 2) ** 2).sum()), "s": 0.5}
    assert sum(prob.loss_terms(x).values()) == pytest.approx(float(prob.loss(x)))
    for bad in ({}, [torch.zeros(6)]):
        empty = DiscreteProblem({"u": (6,)}, {}, lambda f, p, bad=bad: bad)
        with pytest.raises(TypeError, match=r"^residuals: expected a non-empty dict"):
            empty.residual(empty.initial())


def test_multigrid_takes_one_to_four_dimensions():
    for shape in ((2, 2, 2, 2, 2), ()):
        with pytest.raises(ValueError, match=r"^shape: expected "):
            Multigrid(shape, 2)
    assert Multigrid((4, 4, 4, 4), 1).shape == (4, 4, 4, 4)


def test_gn_matvec_is_the_dense_gauss_newton_product_and_checks_x():
    prob, x = _heat_problem()
    g = torch.Generator().manual_seed(1)
    v = torch.randn(3, prob.n, generator=g, dtype=F64)
    h = dense_gn_matrix(prob, x)
    mv = gn_matvec(prob, x)
    torch.testing.assert_close(mv(v[0]), h @ v[0])
    torch.testing.assert_close(mv(v), v @ h.T)  # a batch [k, n] in one pass
    with pytest.raises(ValueError, match=rf"^x: expected shape \({prob.n},\), received \(3,\)$"):
        gn_matvec(prob, torch.zeros(3, dtype=F64))


def test_theta_covariance_refuses_a_schur_complement_at_round_off():
    """A parameter the field absorbs up to a weak prior ``eps (c - 1)``: its Schur complement
    is ``eps^2``; at eps = 1e-3 the variance 1/eps^2 is returned, at 1e-6 (1e-12 of the
    parameter's own precision, round-off) it is refused by name on every path."""
    from bayesphys.odil import DiscreteProblem, theta_covariance

    def prob(eps):
        def res(f, p):
            return {"r": f["u"] - p["c"], "s": eps * (p["c"] - 1).reshape(1)}

        return DiscreteProblem({"u": (6,)}, {"c": 0.5}, res, dtype=F64)

    ok = prob(1e-3)
    cov, _ = theta_covariance(ok, ok.initial())
    assert float(cov) == pytest.approx(1e6, rel=1e-6)
    weak = prob(1e-6)
    for kw in ({}, {"dense": True}, {"sparse": True}):
        with pytest.raises(
            ValueError,
            match=r"^params: the Gauss-Newton matrix is singular, the parameters \['c'\] are not "
            r"determined jointly .*\(the Schur complement is singular to working precision\)",
        ):
            theta_covariance(weak, weak.initial(), **kw)


def test_field_posterior_of_a_multigrid_problem_names_the_plain_one():
    prob = DiscreteProblem({"u": (8,)}, {}, lambda f, p: {"r": f["u"] - 1}, multigrid={"u": 2})
    with pytest.raises(
        ValueError, match=r"^problem: use problem\.plain\(\) / to_plain\(x\) for the Laplace"
    ):
        field_posterior(prob, prob.initial(), "u")
    plain = prob.plain()
    post = field_posterior(plain, prob.to_plain(prob.initial()), "u")
    assert post.event_shape == (8,)


def test_nuts_reference_needs_a_fitted_model(patient):
    m = GliomaModel.from_patient(patient)
    with pytest.raises(
        RuntimeError, match=r"^model: fit\(\) it first; NUTS starts at the optimum$"
    ):
        nuts_reference(m, num_samples=1, warmup_steps=0, progress=False)


def test_radiotherapy_masks_must_be_tensors():
    from bayesphys.odil import recurrence_coverage

    plan = torch.ones(4, 4, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"^recurrence: expected a Tensor, received ndarray$"):
        recurrence_coverage(plan, np.ones((4, 4), dtype=bool))


def test_a_residual_with_a_zero_jacobian_has_zero_products():
    """A piecewise-constant residual (``round``) has J = 0 at every point: its products are
    zeros of the right shape (one tangent and a batch), not an autograd error."""
    from bayesphys.odil.solvers import jvp_vjp

    x = torch.tensor([0.2, 1.7, -0.4], dtype=F64)
    r, jv, jtw = jvp_vjp(lambda x: 2 * torch.round(x), x)
    assert torch.equal(r, torch.tensor([0.0, 4.0, -0.0], dtype=F64))
    assert torch.equal(jv(torch.ones(3, dtype=F64)), torch.zeros(3, dtype=F64))
    assert torch.equal(jv(torch.ones(2, 3, dtype=F64)), torch.zeros(2, 3, dtype=F64))
    assert torch.equal(jtw(torch.ones(3, dtype=F64)), torch.zeros(3, dtype=F64))
