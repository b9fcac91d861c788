"""Warnings of GliomaModel.fit / fit_odil: at the user's line, worded in the method's own
arguments, one per kind."""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch

from bayesphys.odil import GliomaModel


def _set_d_max(m: GliomaModel, value: float) -> None:
    """Lower the ``d_max`` the fit compares its estimate with while the time steps stay sized
    for the build's: a state a user cannot make (``config["d_max"]`` assigned after
    construction is refused), made here to reach the warning in a stable, cheap fit."""
    m.config["d_max"] = m._built["d_max"] = value


@pytest.fixture(scope="module")
def fitted(patient):
    """A model fitted with d_max below the estimate (the time steps are sized for the
    construction's d_max, so the fit itself runs stably)."""
    m = GliomaModel.from_patient(patient, seed=0, n_foci=1)
    _set_d_max(m, 1e-4)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = m.fit(steps=2, grid=1, progress=False)
    _set_d_max(m, 1.0)
    return m, res, rec


def test_fit_warns_at_user_line_when_d_w_exceeds_d_max(fitted):
    _, res, rec = fitted
    assert "above d_max=0.0001" in res.message and "warning: D_w=" in res.message  # kept
    got = [w for w in rec if "above d_max" in str(w.message)]
    assert len(got) == 1
    w = got[0]
    assert issubclass(w.category, RuntimeWarning) and w.filename == __file__
    msg = str(w.message)
    assert msg.startswith("fit: the fitted D_w is above d_max") and "larger d_max" in msg


def test_fit_odil_rewords_inner_cg_warnings_once_per_kind(fitted):
    m, _, _ = fitted
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        m.fit_odil(nt=4, cg_maxiter=2, steps=2, progress=False)
    msgs = [str(w.message) for w in rec]
    assert not any(s.startswith(("minimize:", "theta_covariance:")) for s in msgs), msgs
    steps = [w for w in rec if "Levenberg-Marquardt steps stopped short" in str(w.message)]
    cov = [w for w in rec if "theta covariance" in str(w.message)]
    assert len(steps) == 1 and len(cov) == 1, msgs
    for w in steps + cov:
        text = str(w.message)
        assert text.startswith("fit_odil: ") and "raise cg_maxiter (given 2)" in text
        assert "cg_tol" not in text and "cg_maxiter=8" not in text
        assert issubclass(w.category, RuntimeWarning)
        assert (w.filename, w.lineno) == (__file__, line)


def test_fit_odil_progress_defaults_like_fit():
    fit = inspect.signature(GliomaModel.fit).parameters["progress"].default
    odil = inspect.signature(GliomaModel.fit_odil).parameters["progress"].default
    assert fit is odil is True


def test_fit_odil_swaps_no_process_wide_warning_state(fitted, monkeypatch):
    """fit_odil words the inner solvers' warnings without catch_warnings, which swaps the
    process-wide filters and hook: fits in other threads lost their warnings and kept an
    "always" filter."""
    m, _, _ = fitted

    def refused(*args, **kwargs):
        raise AssertionError("catch_warnings inside a fit")

    with monkeypatch.context() as mp:  # undone before pytest reports (it uses catch_warnings)
        mp.setattr(warnings, "catch_warnings", refused)
        with pytest.warns(RuntimeWarning, match="fit_odil: the conjugate-gradient"):
            m.fit_odil(nt=4, cg_maxiter=2, steps=1, progress=False)


def test_d_max_warning_points_at_the_user_line_through_foci_selection(patient):
    # select_n_foci fits inside the package: the warning named foci.py, not the caller's line
    from bayesphys.odil import select_n_foci

    def make(k):
        m = GliomaModel.from_patient(patient, seed=0, n_foci=k)
        _set_d_max(m, 1e-4)  # below the estimate; the steps stay sized for the build's
        return m

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        select_n_foci(make, candidates=[1], steps=2, grid=1, progress=False)
    got = [w for w in rec if "above d_max" in str(w.message)]
    assert got and all((w.filename, w.lineno) == (__file__, line) for w in got)


def test_user_stacklevel_counts_package_frames():
    from bayesphys._stack import user_stacklevel

    assert user_stacklevel() == 1  # called from a test file: the caller itself


def test_laplace_hessian_is_the_same_vectorised_or_row_by_row(fitted, monkeypatch):
    # rows in one vmap pass for small graphs, one by one above a size (memory: p times)
    from bayesphys.odil import _glioma_fit

    m, _, _ = fitted
    monkeypatch.setattr(_glioma_fit, "_VECTORIZED_HESSIAN_CELLS", 0)
    looped = m.laplace_covariance("exact")
    monkeypatch.setattr(_glioma_fit, "_VECTORIZED_HESSIAN_CELLS", 10**12)
    assert torch.equal(m.laplace_covariance("exact"), looped)


@pytest.fixture
def unstable():
    """A 16 x 16 glioma model (no fit: a stand-in posterior) whose D_w is three times the d_max
    its time steps are sized for."""
    from bayesphys.problems.glioma import brain_phantom, synthetic_patient

    m = GliomaModel.from_patient(synthetic_patient(0, phantom=brain_phantom(16, 8.0)))
    m.theta = m._theta0()
    m.theta[0] = math.log(3 * m.config["d_max"])
    m.theta_cov = 1e-4 * torch.eye(len(m.theta), dtype=m.dtype)
    return m


def test_fit_odil_start_run_is_stable_above_d_max(unstable):
    # fit_odil's start run took the model's steps (sized for d_max) and warned, at the user's
    # line, "steps: ... use steps >= N" about an argument fit_odil does not have; it now takes
    # the steps the fitted D_w needs, so there is no unstable run to warn about
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        unstable.fit_odil(nt=4, steps=0, linear_solver="sparse", progress=False)
    assert not [w for w in rec if "stability bound" in str(w.message)]
    assert bool(torch.isfinite(unstable.theta_cov).all())


def test_fit_odil_no_accepted_step_warning_at_user_line(unstable, monkeypatch):
    from bayesphys.odil import glioma_odil

    real = glioma_odil.minimize

    def rejecting(*args, **kwargs):  # every step rejected, the start no minimum
        x, out = real(*args, **kwargs)
        out.loss_history, out.converged = out.loss_history[:1], False
        return args[1], out

    monkeypatch.setattr(glioma_odil, "minimize", rejecting)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        out = unstable.fit_odil(nt=4, steps=1, linear_solver="sparse", progress=False)
    assert out.extra["kept_previous"]
    got = [w for w in rec if "no Levenberg-Marquardt step was accepted" in str(w.message)]
    assert len(got) == 1 and (got[0].filename, got[0].lineno) == (__file__, line)


def _linear_gaussian(n: int = 12):
    """y_i = u_i + theta + e_i at every other cell, a smoothness prior on u and a Gaussian prior
    on theta; the start x = 0."""
    from bayesphys.odil import DiscreteProblem

    y = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    obs = torch.arange(0, n, 2)

    def res(fields, params):
        u = fields["u"]
        return {
            "data": (u[obs] + params["theta"] - y[obs]) / 0.3,
            "prior_u": torch.cat([u[:1], u[1:] - u[:-1]]) / 0.5,
            "prior_theta": params["theta"].reshape(1) / 2.0,
        }

    prob = DiscreteProblem({"u": (n,)}, {"theta": 0.0}, res)
    return prob, torch.zeros(prob.n, dtype=torch.float64)


def test_capped_cg_warnings_at_user_line():
    from bayesphys.odil import field_posterior, minimize, theta_covariance

    prob, x = _linear_gaussian()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        minimize(prob, x, method="gn", steps=1, cg_tol=1e-13, cg_maxiter=2)
        theta_covariance(prob, x, cg_tol=1e-14, cg_maxiter=1)
        field_posterior(prob, x, "u", dense_max=0, num_samples=2, cg_maxiter=1)
    got = [w for w in rec if "CG" in str(w.message)]
    assert [str(w.message).split(":")[0] for w in got] == [
        "minimize",
        "theta_covariance",
        "field_posterior",
    ]
    assert [(w.filename, w.lineno) for w in got] == [(__file__, line + k) for k in range(3)]
