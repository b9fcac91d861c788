"""Review 77: mutation testing of the ODIL engine, the Fisher-Kolmogorov solver and the glioma
posterior -- tests that kill hand-made mutants of their formulas which the suite let through.

Every test checks the right answer against an oracle independent of the code (a naive loop, a
closed form, a dense matrix inverse, numpy / scipy); its docstring names the mutant it kills.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from bayesphys.odil import (
    DiscreteProblem,
    GliomaModel,
    div_flux,
    face_average,
    field_posterior,
    log_evidence,
    standard_margin_plan,
)
from bayesphys.odil.glioma_odil import _start_substeps
from bayesphys.problems.fisher_kolmogorov import fk_forward, tissue_faces
from bayesphys.problems.glioma import brain_phantom, synthetic_patient

F64 = torch.float64


# --- stencils and the Fisher-Kolmogorov geometry -------------------------------------------------


def test_face_average_is_the_arithmetic_mean_with_a_zero_last_face():
    """Kills ``last[-1] = 0`` -> ``last[-1] = 1`` in ``face_average`` (the outer face then held
    ``a[-1]``; ``div_flux``, ``tissue_faces`` and ``max_steps`` never read that face, so only the
    public ``face_average`` itself shows it). Oracle: a loop over the faces of each axis."""
    gen = torch.Generator().manual_seed(77)
    a = torch.rand(4, 5, 3, generator=gen, dtype=F64) + 0.5
    for axis in range(a.ndim):
        got = face_average(a, axis)
        want = torch.zeros_like(a)
        n = a.shape[axis]
        for i in range(n - 1):
            lo, hi = a.select(axis, i), a.select(axis, i + 1)
            want.select(axis, i).copy_(0.5 * (lo + hi))
        # the face i + 1/2 between i and i+1; the last (outside the grid) carries no flux
        torch.testing.assert_close(got, want, rtol=1e-15, atol=0.0)
        assert bool((got.select(axis, n - 1) == 0).all())


def test_tissue_faces_count_a_cell_at_exactly_the_threshold_as_tissue():
    """Kills ``(wm + gm) >= threshold`` -> ``(wm + gm) > threshold`` in ``tissue_faces``: the
    docstring (and GliODIL) zero a face only where a neighbour has ``W + G < threshold``. The
    values are dyadic so ``wm + gm`` equals the threshold exactly. Oracle: the face formula
    ``(W_i + W_{i+1})/2 + (G_i + G_{i+1})/(2 r)`` by hand."""
    wm = torch.tensor([0.5, 0.0625, 0.25, 0.0], dtype=F64)
    gm = torch.tensor([0.25, 0.0625, 0.5, 0.0625], dtype=F64)
    # cells 0..2 are tissue (cell 1 sits at W + G = 0.125 = threshold), cell 3 is not (0.0625)
    (faces,) = tissue_faces(wm, gm, dg_ratio=4.0, threshold=0.125)
    want = torch.tensor(
        [
            0.5 * (0.5 + 0.0625) + 0.5 * (0.25 + 0.0625) / 4.0,
            0.5 * (0.0625 + 0.25) + 0.5 * (0.0625 + 0.5) / 4.0,
            0.0,  # cell 3 is below the threshold: no flux into it
            0.0,  # the outer face
        ],
        dtype=F64,
    )
    torch.testing.assert_close(faces, want, rtol=1e-15, atol=0.0)


# --- the Laplace posterior -----------------------------------------------------------------------


def test_dense_field_posterior_of_a_weakly_determined_field_is_the_inverse_gauss_newton_matrix():
    """Kills ``schur = 1.0 / (inv.diagonal() * h.diagonal())`` -> ``1.0 / inv.diagonal()`` in
    ``field_posterior``'s singularity test: the test must be scale-free (each unknown's Schur
    complement in its own units). A well-posed field whose noise sds are 1e9 has variances of
    about 1e18, so ``1 / (H^-1)_ii`` (1e-18) is below ``n eps`` and the mutant refused it as
    singular. Oracle: ``inv(J^T J)`` of the linear residuals' constant Jacobian, by numpy."""
    n, sd = 6, 1e9
    y = torch.linspace(-1.0, 2.0, n, dtype=F64)

    def residuals(f, p):
        u = f["u"]
        return {"data": (u - y) / sd, "smooth": torch.diff(u) / sd}

    prob = DiscreteProblem({"u": (n,)}, {}, residuals)
    x = prob.pack({"u": y})
    post = field_posterior(prob, x, "u")
    jac = np.vstack([np.eye(n), np.diff(np.eye(n), axis=0)]) / sd
    want = np.linalg.inv(jac.T @ jac)
    assert want.diagonal().min() > 1e17  # the regime the mutant refused
    np.testing.assert_allclose(post.covariance.to_dense().numpy(), want, rtol=1e-9)


# --- the glioma posterior ------------------------------------------------------------------------


def _stand_in_fit(model: GliomaModel, cov: torch.Tensor | None = None) -> GliomaModel:
    """``model`` with a stand-in Laplace posterior at its starting point (no fit)."""
    model.theta = model._theta0()
    p = len(model.theta)
    model.theta_cov = 1e-4 * torch.eye(p, dtype=model.dtype) if cov is None else cov
    return model


def test_pointwise_log_likelihoods_are_tempered_by_kappa_and_carry_the_gaussian_constant():
    """Kills, in ``to_inference_data``'s pointwise log likelihoods, ``/ kappa`` ->
    ``/ math.sqrt(kappa)`` (labels) and ``- math.log(pet_sd * math.sqrt(2 * math.pi))`` ->
    ``- math.log(pet_sd)`` (PET): the suite checked the labels only at ``kappa = 1`` (the
    default ``noise_corr_mm`` equals its 4 mm voxels) and the PET term not at all. Here
    ``kappa = (12 / 8)^2``. Oracle: scipy's ``norm.logcdf`` / ``norm.logpdf`` per voxel with
    the documented sds (model error added in quadrature), divided by ``kappa``."""
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0), refine=1)
    h, alpha, lam, sig_s = 8.0, 0.01, 12.0, 0.07
    m = GliomaModel.from_patient(
        p, use_pet=True, noise_corr_mm=lam, seg_sigma=sig_s, model_error=alpha
    )
    _stand_in_fit(m)
    idata = m.to_inference_data(num_samples=2, seed=3, predictive=False)
    crop = (..., *m.crop)
    c = idata.posterior["c"].values[0, 1][crop[1:]]
    ll_lab = idata.log_likelihood["labels"].values[0, 1][crop[1:]]
    ll_pet = idata.log_likelihood["pet"].values[0, 1][crop[1:]]
    brain, lab, pet = m._brain.numpy() > 0, m._labels.numpy(), m._pet.numpy()
    kappa = (lam / h) ** 2
    sig = math.hypot(sig_s, alpha * h)
    want = np.zeros_like(c)
    for k, thr in ((1, p["th_down"]), (2, p["th_up"])):
        s = np.where(lab >= k, 1.0, -1.0)
        want += stats.norm.logcdf(s * (c - thr) / sig)
    want = np.where(brain, want / kappa, 0.0)
    np.testing.assert_allclose(ll_lab, want, rtol=1e-10, atol=1e-12)
    pet_sd = math.hypot(0.05, 0.75 * alpha * h)
    lesion = lab > 0
    assert lesion.any()
    want_pet = np.where(lesion, stats.norm.logpdf(pet, 0.75 * c, pet_sd) / kappa, 0.0)
    np.testing.assert_allclose(ll_pet, want_pet, rtol=1e-10, atol=1e-12)


def test_log_evidence_is_the_stated_laplace_formula_with_log_k_factorial():
    r"""Kills, in ``log_evidence``, ``+ 0.5 * logdet_cov`` -> ``- 0.5 * logdet_cov`` and
    ``math.lgamma(model.n_foci + 1)`` -> ``math.lgamma(model.n_foci)`` (the same at ``K = 1``,
    the only count the suite pinned by value). Oracle: the module docstring's
    :math:`-L - \tfrac12\log\det H - \sum_i\log\sigma_i + \log K!` with ``H`` the inverse
    of a stand-in covariance (numpy), the prior sds given to the model and ``math.factorial``."""
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    prior = {"log_dw": (math.log(0.2), 0.7), "log_rho": (math.log(0.05), 0.4), "focus_sd": 6.0}
    m = GliomaModel.from_patient(p, n_foci=2, prior=prior)
    k = m.n_foci * m.ndim + 2
    gen = torch.Generator().manual_seed(77)
    a = torch.randn(k, k, generator=gen, dtype=F64)
    cov = 0.05 * (a @ a.T / k + torch.eye(k, dtype=F64))
    _stand_in_fit(m, cov)
    with torch.no_grad():
        loss = float(m.loss(m.theta))
    logdet_h = np.linalg.slogdet(np.linalg.inv(cov.numpy()))[1]
    log_sd = math.log(0.7) + math.log(0.4) + m.n_foci * m.ndim * math.log(6.0)
    want = -loss - 0.5 * logdet_h - log_sd + math.log(math.factorial(m.n_foci))
    assert log_evidence(m) == pytest.approx(want, rel=1e-12, abs=1e-9)


def test_joint_odil_start_loss_is_the_crank_nicolson_residual_on_levels_t_end_over_nt_minus_1():
    """Kills ``dt = t_end / (nt - 1)`` -> ``dt = t_end / nt`` in ``fit_joint_odil`` (``nt``
    levels span ``[0, t_end]``: ``nt - 1`` intervals); the suite's joint fits ran with either.
    Oracle: the loss at the start (``steps=0``) from the forward trajectory on those levels,
    with the Crank-Nicolson residual written out by hand on ``div_flux``, the data and the
    prior residuals."""
    m = GliomaModel.from_patient(synthetic_patient(0, phantom=brain_phantom(16, 8.0)))
    m.theta = m._theta0()
    m.theta_cov = torch.diag(torch.tensor([0.04, 0.04, 4.0, 4.0], dtype=m.dtype))
    nt, sigma_pde = 3, 0.01
    res = m.fit_odil(nt=nt, steps=0, sigma_pde=sigma_pde, progress=False, linear_solver="sparse")
    th = m.theta  # steps=0: the start's theta
    cfg = m.config
    t_end, h = cfg["t_end"], cfg["spacing"]
    dw, rho = float(torch.exp(th[0])), float(torch.exp(th[1]))
    sub = _start_substeps(m, th, nt)
    mask = m._brain
    c0 = m.initial_state(th)
    _, traj = fk_forward(
        c0,
        m.faces,
        dw,
        rho,
        t_end=t_end,
        steps=sub * (nt - 1),
        spacing=h,
        tissue=mask,
        save_every=sub,
    )
    assert traj.shape[0] == nt
    c = torch.cat([(c0 * mask)[None], traj[1:] * mask])
    dt = t_end / (nt - 1)
    faces = [f * dw for f in m.faces]

    def rhs(u):
        return div_flux(u, faces, [h] * m.ndim) + rho * u * (1 - u)

    pde = torch.stack(
        [(c[n] - c[n - 1]) / dt - 0.5 * (rhs(c[n]) + rhs(c[n - 1])) for n in range(1, nt)]
    )
    terms = [(pde * mask / sigma_pde).reshape(-1)]
    terms += [v.reshape(-1) for v in m._data_residuals(c[-1]).values()]
    terms.append(m._prior_residuals(th))
    want = 0.5 * float(torch.cat(terms).square().sum())
    assert res.loss_history[0] == pytest.approx(want, rel=1e-9)


# --- radiotherapy plans --------------------------------------------------------------------------


def test_standard_margin_plan_grows_from_the_core_label_two_by_the_euclidean_margin():
    """Kills ``core = labels == 2`` -> ``core = labels == 1`` in ``standard_margin_plan``: the
    suite's patients gave plans that passed with either label as the core. Oracle: a loop over
    voxels, each kept when some label-2 voxel lies within ``margin_mm`` (Euclidean, in mm,
    anisotropic voxels) and it is in the brain."""
    labels = torch.zeros(9, 8, dtype=torch.long)
    labels[2:7, 2:6] = 1  # oedema around
    labels[4, 3] = 2  # a one-voxel core off the lesion's centre
    brain = torch.ones(9, 8, dtype=torch.bool)
    brain[:, 7] = False
    spacing, margin = (1.0, 1.5), 2.5
    got = standard_margin_plan(labels, brain, spacing, margin_mm=margin)
    core = [(i, j) for i, j in itertools.product(range(9), range(8)) if labels[i, j] == 2]
    want = torch.zeros(9, 8, dtype=torch.bool)
    for i, j in itertools.product(range(9), range(8)):
        near = min(math.hypot((i - a) * spacing[0], (j - b) * spacing[1]) for a, b in core)
        want[i, j] = bool(brain[i, j]) and near <= margin
    assert torch.equal(got, want)
