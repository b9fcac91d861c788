"""Bad scalar settings of the GP PDE solver fail early with an error naming the setting.

Before these checks, e.g. ``num_mixtures=2.5`` was truncated to 2, ``n_col=nan`` failed with
``cannot convert float NaN to integer``, ``lam_b`` <= 0 / NaN, a negative or NaN
``freq_scale``, ``lr=0``, ``eval_every=2.5`` and a NaN ``time_limit`` or ``tau_lr_mult`` were
accepted silently, a negative ``jitter`` surfaced as a Cholesky failure and ``solver_options``
such as ``max_iter=0`` were accepted (no iteration).
"""

import contextlib
import math
import warnings

import pytest
import torch

from bayesphys.gp_pde import (
    GaussNewtonKronSolve,
    GPPDESolver,
    LinearPDEOperator,
    PicardKronSolve,
    SpectralMixture1d,
)
from bayesphys.gp_pde.operator import build_factors

NAN = float("nan")


def _small(**kw):
    return GPPDESolver("poisson1d-low", **dict(dict(num_mixtures=2, n_col=12, seed=0), **kw))


def test_defaults_still_construct():
    m = GPPDESolver("poisson1d-low", seed=0)
    assert m.config["num_mixtures"] == 30 and m.config["nugget"] is None
    SpectralMixture1d()
    # zeros that are legitimate: no per-factor jitter, frequencies all at 0, frozen taus
    m = _small(jitter=0.0, freq_scale=0.0, num_mixtures=2.0, n_col=12.0)
    assert m.config["num_mixtures"] == 2 and m.shape == (12,)
    res = m.fit(steps=1, tau_lr_mult=0.0, progress=False)
    assert res.steps == 1


@pytest.mark.parametrize(
    "name,bad,err",
    [
        ("num_mixtures", 0, ValueError),
        ("num_mixtures", -1, ValueError),
        ("num_mixtures", 2.5, TypeError),
        ("num_mixtures", True, TypeError),
        ("lam_b", 0.0, ValueError),
        ("lam_b", -1.0, ValueError),
        ("lam_b", NAN, ValueError),
        ("lam_b", True, TypeError),
        ("jitter", -1e-6, ValueError),
        ("jitter", NAN, ValueError),
        ("freq_scale", -1.0, ValueError),
        ("freq_scale", math.inf, ValueError),
        ("nugget", 0.0, ValueError),
        ("nugget", True, TypeError),
        ("beta", NAN, ValueError),
    ],
)
def test_constructor_settings(name, bad, err):
    with pytest.raises(err, match=name):
        GPPDESolver("poisson1d-low", **{name: bad})


def test_n_col_refuses_nan_inf_and_bools():
    for bad in (NAN, math.inf, True):
        with pytest.raises(TypeError, match="n_col: expected an int"):
            GPPDESolver("poisson1d-low", n_col=bad)


@pytest.mark.parametrize(
    "solver,name,bad,err",
    [
        ("picard", "max_iter", 0, ValueError),
        ("picard", "max_iter", 2.5, TypeError),
        ("picard", "depth", -1, ValueError),
        ("picard", "max_newton", 0, ValueError),
        ("picard", "tol", -1e-3, ValueError),
        ("picard", "accept", NAN, ValueError),
        ("picard", "shift", math.inf, ValueError),
        ("picard", "newton", 1, TypeError),
        ("gauss-newton", "max_iter", 0, ValueError),
        ("gauss-newton", "cg_maxiter", -1, ValueError),
        ("gauss-newton", "cg_maxiter", NAN, TypeError),
        ("gauss-newton", "max_backtrack", 0, ValueError),
        ("gauss-newton", "precond_rank", 0, ValueError),
        ("gauss-newton", "cg_tol", -0.1, ValueError),
        ("gauss-newton", "gtol", NAN, ValueError),
    ],
)
def test_solver_options(solver, name, bad, err):
    with pytest.raises(err, match=name):
        GPPDESolver("allencahn2d-low", nonlinear_solver=solver, solver_options={name: bad}, n_col=8)


def test_solver_options_are_normalised():
    m = GPPDESolver(
        "allencahn2d-low",
        n_col=8,
        num_mixtures=2,
        nonlinear_solver="gauss-newton",
        solver_options=dict(max_iter=3.0, cg_tol=1e-3),
    )
    assert m.config["solver_options"] == dict(max_iter=3, cg_tol=1e-3)
    assert isinstance(m.config["solver_options"]["max_iter"], int)
    assert PicardKronSolve.check_options(dict(depth=0, shift=None)) == dict(depth=0, shift=None)
    assert GaussNewtonKronSolve.check_options({}) == {}


@pytest.mark.parametrize(
    "problem, kw, why",
    [
        ("poisson1d-low", dict(n_col=12), "the equation is linear"),
        ("allencahn1d-sin100", dict(n_col=12), "1-D model with weighting='identity'"),
        ("allencahn2d-low", dict(n_col=8, weighting="identity"), "weighting='identity'"),
    ],
)
# the 1-D problem's 12-point grid is below its Nyquist rate (a small grid keeps the test fast;
# what it checks is the solver_options warning, not the resolution one)
@pytest.mark.filterwarnings("ignore:problem 'allencahn1d-sin100'.*Nyquist:UserWarning")
def test_unused_solver_options_warn(problem, kw, why):
    """solver_options configure the structured nonlinear solve only; elsewhere they were
    ignored without a word (a user tuning max_iter for a Poisson fit saw no effect)."""
    with pytest.warns(UserWarning, match="solver_options \\['max_iter'\\] will be ignored") as rec:
        GPPDESolver(problem, num_mixtures=2, solver_options=dict(max_iter=2), **kw)
    assert any(why in str(w.message) for w in rec)
    assert rec[0].filename == __file__  # points at the caller's line


def test_used_solver_options_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GPPDESolver("allencahn2d-low", n_col=8, num_mixtures=2, solver_options=dict(max_iter=2))
        GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2, solver_options={})


@pytest.mark.parametrize(
    "name,bad,err",
    [
        ("steps", 2.5, TypeError),
        ("steps", -1, ValueError),
        ("lr", 0.0, ValueError),
        ("lr", -0.01, ValueError),
        ("lr", math.inf, ValueError),
        ("eval_every", 2.5, TypeError),
        ("eval_every", -1, ValueError),
        ("time_limit", 0.0, ValueError),
        ("time_limit", NAN, ValueError),
        ("max_seconds", 0.0, ValueError),
        ("max_seconds", NAN, ValueError),
        ("tau_lr_mult", -1.0, ValueError),
        ("tau_lr_mult", NAN, ValueError),
    ],
)
def test_fit_arguments(name, bad, err):
    m = _small()
    kw = dict(steps=1, progress=False)
    kw[name] = bad
    renamed = pytest.warns(DeprecationWarning) if name == "time_limit" else contextlib.nullcontext()
    with renamed, pytest.raises(err, match=name):
        m.fit(**kw)
    assert m.history["step"] == []  # refused before any step


def test_time_limit_deprecation_points_at_the_user_line():
    # DeprecationWarning is shown by default only when attributed to __main__: the user's code
    m = _small()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m.fit(steps=0, time_limit=5.0, progress=False)
    (w,) = [w for w in rec if "time_limit is renamed" in str(w.message)]
    assert issubclass(w.category, DeprecationWarning) and w.filename == __file__


def test_kernel_and_factor_settings():
    with pytest.raises(TypeError, match="num_mixtures"):
        SpectralMixture1d(2.5)
    assert SpectralMixture1d(3.0).num_mixtures == 3
    for bad in (-1.0, NAN):
        with pytest.raises(ValueError, match="freq_scale"):
            SpectralMixture1d(3, freq_scale=bad)
    x = torch.linspace(0, 1, 6, dtype=torch.float64)
    op = LinearPDEOperator.for_equation("poisson", 1)
    with pytest.raises(ValueError, match="jitter"):
        build_factors([SpectralMixture1d(2)], [x], op, jitter=-1.0)


def test_tau_lr_mult_with_a_fixed_nugget_is_refused():
    """With ``nugget`` the precisions are fixed (not optimised): ``tau_lr_mult`` was accepted
    and changed nothing (the same fit with or without it); it is refused by name now."""
    m = _small(nugget=1e-4)
    with pytest.raises(ValueError, match="tau_lr_mult: only with learned precisions"):
        m.fit(steps=1, tau_lr_mult=10.0, progress=False)
    assert m.fit(steps=1, progress=False).steps == 1  # without it the fit runs
    learned = _small()  # learned precisions: it applies
    assert learned.fit(steps=1, tau_lr_mult=10.0, progress=False).steps == 1


def test_an_unknown_clock_is_refused_by_name():
    m = _small()
    with pytest.raises(ValueError, match=r"^clock: expected 'wall' or 'cpu', received 'gpu'$"):
        m.fit(steps=1, clock="gpu", max_seconds=60.0, progress=False)


def test_cpu_clock_without_a_budget_is_refused():
    """``clock`` is the clock ``max_seconds`` is measured on: without a budget ``clock="cpu"``
    was accepted and changed nothing."""
    m = _small()
    with pytest.raises(ValueError, match="clock: only with max_seconds"):
        m.fit(steps=1, clock="cpu", progress=False)
    assert m.fit(steps=1, clock="cpu", max_seconds=60.0, progress=False).steps == 1


def test_load_does_not_repeat_the_unused_solver_options_warning(tmp_path):
    """The warning is given once, where the model is built: load() of its file rebuilt the
    model from the saved settings and warned again, at a line of the package's own."""
    with pytest.warns(UserWarning, match="will be ignored"):
        m = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=1, solver_options=dict(max_iter=2))
    m.save(tmp_path / "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = GPPDESolver.load(tmp_path / "m.pt")
    assert back.config["solver_options"] == dict(max_iter=2)
