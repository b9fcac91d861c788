"""Bad scalar settings of the ODIL engine and the glioma model fail early with a clear error.

Each case used to fail deep inside torch / numpy / pyro with a message that did not name the
argument (``stack expects a non-empty TensorList``, ``cannot convert float NaN to integer``,
``float division by zero``), or was accepted silently (a negative damping, a NaN tolerance, a
zero-width focal Gaussian, ``True`` as a count, a 2.5-level multigrid truncated to 2).
"""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.odil import (
    DiscreteProblem,
    GliomaModel,
    Multigrid,
    cg,
    field_posterior,
    kmeans_foci,
    minimize,
    multifocal_initial_condition,
    nuts_reference,
    select_n_foci,
    standard_margin_plan,
    theta_covariance,
)
from bayesphys.odil.glioma_inputs import lesion_crop
from bayesphys.odil.radiotherapy import model_plan

NAN, INF = math.nan, math.inf


def _raises(exc, name, fn, *args, **kw):
    """``fn(*args, **kw)`` raises ``exc`` and the message starts with the argument's name."""
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    assert str(info.value).startswith(name), str(info.value)


def _prob() -> DiscreteProblem:
    return DiscreteProblem(
        {"u": (6,)},
        {"c": 0.5},
        lambda f, p: {"r": f["u"] - p["c"], "s": (p["c"] - 1).reshape(1)},
    )


def _glioma(p: dict, **kw) -> GliomaModel:
    base = {"spacing": p["spacing"], "th_up": p["th_up"], "th_down": p["th_down"]}
    return GliomaModel(p["wm"], p["gm"], p["labels"], **{**base, **kw})


# -- engine -----------------------------------------------------------------------------------
BAD_INT = [  # (value, exception) for counts whose minimum is 1
    (0, ValueError),
    (-1, ValueError),
    (2.5, TypeError),
    (NAN, TypeError),
    (INF, TypeError),
    (True, TypeError),
]
BAD_NONNEG = [(-1.0, ValueError), (NAN, ValueError), (INF, ValueError), (True, TypeError)]
BAD_POS = [(0.0, ValueError), *BAD_NONNEG]


@pytest.mark.parametrize(("value", "exc"), BAD_INT)
def test_problem_shapes_and_multigrid_levels(value, exc):
    res = lambda f, p: {"r": f["u"]}  # noqa: E731
    if value not in (0, -1):  # 0 / -1 keep the existing "non-empty positive shape" message
        _raises(exc, "fields['u']", DiscreteProblem, {"u": (value, 4)}, {}, res)
    _raises(exc, "multigrid['u']", DiscreteProblem, {"u": (8,)}, {}, res, multigrid={"u": value})
    _raises(exc, "levels", Multigrid, (8, 8), value)
    _raises(exc, "shape", Multigrid, (value, 8), 2)


def test_problem_shape_is_a_sequence_and_multigrid_axes_in_range():
    _raises(TypeError, "fields['u']", DiscreteProblem, {"u": 4}, {}, lambda f, p: {"r": f["u"]})
    _raises(ValueError, "axes", Multigrid, (8, 8), 2, axes=(2,))
    _raises(ValueError, "axes", Multigrid, (8, 8), 2, axes=(-1,))
    _raises(TypeError, "axes", Multigrid, (8, 8), 2, axes=(0.5,))
    # a five-axis field was refused by Multigrid under the name "shape"
    res = lambda f, p: {"r": f["u"]}  # noqa: E731
    five = {"u": (2,) * 5}
    _raises(ValueError, "multigrid['u']", DiscreteProblem, five, {}, res, multigrid={"u": 2})
    assert DiscreteProblem(five, {}, res, multigrid={"u": 1}).n == 32  # a plain grid: fine


@pytest.mark.parametrize(("value", "exc"), BAD_INT)
def test_cg_and_minimize_iteration_counts(value, exc):
    a = 2 * torch.eye(3, dtype=torch.float64)
    b = torch.ones(3, dtype=torch.float64)
    _raises(exc, "maxiter", cg, lambda x: a @ x, b, maxiter=value)
    _raises(exc, "cg_maxiter", minimize, _prob(), cg_maxiter=value)
    if value != 0:  # steps = 0 is allowed: no step, x0 returned
        for method in ("lm", "adam"):
            _raises(exc, "steps", minimize, _prob(), method=method, steps=value)


@pytest.mark.parametrize(("value", "exc"), BAD_NONNEG)
def test_cg_and_minimize_tolerances_and_damping(value, exc):
    a = 2 * torch.eye(3, dtype=torch.float64)
    b = torch.ones(3, dtype=torch.float64)
    _raises(exc, "tol", cg, lambda x: a @ x, b, tol=value)
    for name in ("tol", "cg_tol", "damping"):
        _raises(exc, name, minimize, _prob(), method="lm", **{name: value})


@pytest.mark.parametrize(("value", "exc"), BAD_POS)
def test_minimize_learning_rate(value, exc):
    for method in ("adam", "lm"):  # checked whatever the method
        _raises(exc, "lr", minimize, _prob(), method=method, lr=value)


def test_minimize_linear_solver_checked_before_any_step():
    with pytest.raises(ValueError, match="linear_solver"):
        minimize(_prob(), steps=0, linear_solver="qr")


def test_laplace_settings():
    prob = _prob()
    x = prob.initial()
    for name, value, exc in (
        ("cg_tol", NAN, ValueError),
        ("cg_tol", -1e-8, ValueError),
        ("cg_maxiter", 0, ValueError),
        ("cg_maxiter", 2.5, TypeError),
    ):
        _raises(exc, name, theta_covariance, prob, x, ["c"], **{name: value})
        _raises(exc, name, field_posterior, prob, x, "u", dense_max=0, **{name: value})
    for name, value, exc in (
        ("dense_max", -1, ValueError),
        ("dense_max", 2.5, TypeError),
        ("num_samples", 0, ValueError),
        ("num_samples", True, TypeError),
        ("jitter", -1e-12, ValueError),
        ("jitter", NAN, ValueError),
        ("seed", 2.5, TypeError),
        ("seed", NAN, TypeError),
    ):
        _raises(exc, name, field_posterior, prob, x, "u", **{name: value})


def test_engine_valid_settings_still_work_and_integral_floats_are_ints():
    prob = _prob()
    x, res = minimize(prob, method="gn", steps=2.0, linear_solver="dense", damping=0, tol=None)
    assert res.steps == 2 and torch.allclose(x[-1], torch.tensor(1.0, dtype=torch.float64))
    x0, res0 = minimize(prob, steps=0)
    assert torch.equal(x0, prob.initial()) and res0.steps == 0
    xa, _ = minimize(prob, method="adam", steps=3, lr=1e-2, tol=0.0)
    assert xa.shape == (prob.n,)
    mg = Multigrid((8, 8), levels=2.0, axes=[1])
    assert mg.levels == 2 and mg.level_shapes == [(8, 8), (8, 4)]
    p2 = DiscreteProblem({"u": (4.0, 3)}, {}, lambda f, p: {"r": f["u"]}, multigrid={"u": None})
    assert p2.field_shapes == {"u": (4, 3)} and not p2.multigrid
    sol, its, _ = cg(lambda v: 2 * v, torch.ones(3, dtype=torch.float64), tol=0, maxiter=3.0)
    assert torch.allclose(sol, torch.full((3,), 0.5, dtype=torch.float64)) and its >= 1
    post = field_posterior(prob, x, "u", dense_max=0, num_samples=2, jitter=0, seed=None)
    assert post.mean.shape == (6,)


# -- glioma model -----------------------------------------------------------------------------
POSITIVE = ("spacing", "t_end", "dg_ratio", "pet_scale", "pet_sigma", "seg_sigma", "d_max")
POSITIVE += ("noise_corr_mm",)


@pytest.mark.parametrize("name", POSITIVE)
@pytest.mark.parametrize(("value", "exc"), [*BAD_POS, ("1", TypeError)])
def test_glioma_positive_settings(patient, name, value, exc):
    _raises(exc, name, _glioma, patient, **{name: value})


@pytest.mark.parametrize("name", ("th_up", "th_down"))
@pytest.mark.parametrize(
    ("value", "exc"), [(NAN, ValueError), (INF, ValueError), (True, TypeError), ("0.5", TypeError)]
)
def test_glioma_thresholds_are_finite_reals(patient, name, value, exc):
    _raises(exc, name, _glioma, patient, **{name: value})


@pytest.mark.parametrize(("th_down", "th_up"), [(0.0, 0.6), (0.25, 1.0), (0.6, 0.25), (0.3, 0.3)])
def test_glioma_threshold_order_kept(patient, th_down, th_up):
    with pytest.raises(ValueError, match="th_down, th_up: expected 0 < th_down < th_up < 1"):
        _glioma(patient, th_down=th_down, th_up=th_up)


@pytest.mark.parametrize(
    ("name", "value", "exc"),
    [
        ("n_foci", 0, ValueError),
        ("n_foci", 2.5, TypeError),
        ("n_foci", True, TypeError),
        ("crop_margin_mm", -1.0, ValueError),
        ("crop_margin_mm", NAN, ValueError),
        ("crop_margin_mm", INF, ValueError),
        ("crop_margin_mm", True, TypeError),
        ("crop_scale", 0.5, ValueError),
        ("crop_scale", INF, ValueError),
        ("crop_scale", True, TypeError),
        ("seed", 2.5, TypeError),
        ("seed", NAN, TypeError),
        ("seed", "1", TypeError),
    ],
)
def test_glioma_counts_crops_and_seed(patient, name, value, exc):
    _raises(exc, name, GliomaModel.from_patient, patient, **{name: value})


@pytest.mark.parametrize(
    ("prior", "name", "exc"),
    [
        ({"log_dw": (0.0, -1.0)}, "prior['log_dw'] sd", ValueError),
        ({"log_rho": (0.0, 0.0)}, "prior['log_rho'] sd", ValueError),
        ({"log_rho": (NAN, 1.0)}, "prior['log_rho'] mean", ValueError),
        ({"log_dw": 1.0}, "prior['log_dw']", ValueError),
        ({"focus_sd": NAN}, "prior['focus_sd']", ValueError),
        ({"focus_sd": 0}, "prior['focus_sd']", ValueError),
        ({"log_Dw": (0.0, 1.0)}, "prior: expected keys among", ValueError),
        ([("log_dw", (0.0, 1.0))], "prior", TypeError),
    ],
)
def test_glioma_prior(patient, prior, name, exc):
    _raises(exc, name, GliomaModel.from_patient, patient, prior=prior)


def test_lesion_crop_settings(patient):
    lab = patient["labels"]
    _raises(ValueError, "crop_margin_mm", lesion_crop, lab, 4.0, crop_margin_mm=NAN)
    _raises(ValueError, "crop_scale", lesion_crop, lab, 4.0, crop_scale=INF)
    _raises(ValueError, "spacing", lesion_crop, lab, 0.0)


def test_glioma_valid_settings_still_work(patient, model):
    m = GliomaModel.from_patient(patient, n_foci=1.0, crop_margin_mm=0, seed=3.0, t_end=50)
    assert m.n_foci == 1 and isinstance(m.config["n_foci"], int) and m.config["seed"] == 3
    assert m.config["crop_margin_mm"] == 0.0 and m.config["t_end"] == 50.0
    mp = GliomaModel.from_patient(
        patient, use_pet=True, prior={"log_dw": [-1.5, 0.5], "focus_sd": 10}, crop_scale=1
    )
    assert mp.config["prior"]["log_dw"] == (-1.5, 0.5) and mp.config["prior"]["focus_sd"] == 10.0
    assert set(mp.residuals(mp._theta0())) == {"seg1", "seg2", "pet", "prior"}
    assert model.theta_draws(2.0, 1.0, seed=None).shape == (1, 2, 4)
    assert model.posterior(num_samples=2, seed=-1, t_end=0).mean.shape == (32, 32)
    c0 = model.initial_state(model.theta) * model._brain
    torch.testing.assert_close(model.forward(model.theta, 0), c0)  # t_end = 0: the initial state
    assert model.to_inference_data(num_samples=1, field=False).posterior["D_w"].shape == (2, 1)


@pytest.mark.parametrize(("value", "exc"), BAD_INT)
def test_fit_and_posterior_counts(model, value, exc):
    if value != 0:  # fit(steps=0) keeps the grid start
        _raises(exc, "steps", model.fit, steps=value, progress=False)
        _raises(exc, "steps", model.fit_odil, steps=value)
    _raises(exc, "grid", model.fit, grid=value, progress=False)
    _raises(exc, "cg_maxiter", model.fit_odil, cg_maxiter=value)
    _raises(exc, "nt", model.fit_odil, nt=value)
    for name in ("num_samples", "num_chains"):
        _raises(exc, name, model.theta_draws, **{name: value})
    _raises(exc, "num_samples", model.posterior, num_samples=value)
    _raises(exc, "num_samples", model.to_inference_data, num_samples=value, field=False)
    for name in ("num_samples", "num_chains", "max_tree_depth"):
        _raises(exc, name, nuts_reference, model, **{name: value})
    if value != 0:
        _raises(exc, "warmup_steps", nuts_reference, model, warmup_steps=value)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("field", "no"), ("field", 0), ("field", None), ("predictive", "no"), ("predictive", 0)],
)
def test_inference_data_flags_are_booleans(model, flag, value):
    # field="no" is truthy: it exported the maps and their log likelihood
    # (predictive=None is its documented default: it follows field)
    _raises(TypeError, flag, model.to_inference_data, num_samples=1, **{flag: value})


def test_fit_and_posterior_other_settings(model):
    _raises(ValueError, "nt", model.fit_odil, nt=1)  # used to divide by zero
    _raises(ValueError, "linear_solver", model.fit_odil, linear_solver="lu")
    _raises(ValueError, "num_samples", model.posterior, num_samples=1)  # one draw: no moments
    for value, exc in BAD_POS:
        _raises(exc, "sigma_pde", model.fit_odil, sigma_pde=value)
    for value, exc in BAD_NONNEG:
        _raises(exc, "t_end", model.posterior, num_samples=2, t_end=value)
        _raises(exc, "t_end", model.forward, model.theta, value)
    for value in (2.5, NAN, True):
        _raises(TypeError, "seed", model.theta_draws, seed=value)
        _raises(TypeError, "seed", model.posterior, seed=value)
        _raises(TypeError, "seed", nuts_reference, model, seed=value)
    _raises(ValueError, "seed", nuts_reference, model, seed=-1)
    _raises(ValueError, "seed", nuts_reference, model, seed=2**32)
    with pytest.raises(ValueError, match="hessian"):
        model.laplace_covariance("bogus")
    _raises(ValueError, "crop_margin_mm", model.recrop, crop_margin_mm=-4.0)


# -- foci and plans ---------------------------------------------------------------------------
def test_foci_settings():
    pts = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for value, exc in BAD_INT:
        _raises(exc, "k", kmeans_foci, pts, value)
        _raises(exc, "iters", kmeans_foci, pts, 2, iters=value)
        _raises(exc, "candidates", select_n_foci, lambda k: None, (1, value))
    assert kmeans_foci(pts, 2.0, iters=5.0).shape == (2, 2)
    f = torch.ones(1, 2, dtype=torch.float64)
    for value, exc in BAD_POS:
        _raises(exc, "spacing", multifocal_initial_condition, (8, 8), f, value)
        _raises(exc, "width", multifocal_initial_condition, (8, 8), f, 1.0, width=value)


def test_plan_settings():
    lab = torch.zeros(20, 20, dtype=torch.long)
    lab[8:12, 8:12] = 2
    brain = torch.ones(20, 20)
    for value, exc in BAD_POS:
        _raises(exc, "spacing", standard_margin_plan, lab, brain, value)
    for value, exc in BAD_NONNEG:
        _raises(exc, "margin_mm", standard_margin_plan, lab, brain, 1.0, value)
    assert int(standard_margin_plan(lab, brain, 1, 0).sum()) == 16  # margin 0: the core
    score = torch.rand(20, 20, generator=torch.Generator().manual_seed(0))
    for value in (NAN, INF, "5"):  # NaN / inf used to fail in int() without the name
        _raises(TypeError, "volume", model_plan, score, brain, value)
    assert int(model_plan(score, brain, 5.0).sum()) == 5


def test_fit_names_an_unknown_hessian(model):
    with pytest.raises(
        ValueError,
        match=r"^hessian: expected 'exact' or 'gn', received 'exakt' \(did you mean 'exact'\?\)$",
    ):
        model.fit(hessian="exakt", progress=False)
