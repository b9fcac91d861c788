"""``max_seconds`` of :func:`~bayesphys.odil.minimize` and the glioma fits (the joint ODIL fit
runs for tens of minutes at 1 mm; it had no budget): the fit ends after the first step that
finishes past the budget, not converged, with the iterate it would have after that many
steps; the callback's time is not counted."""

from __future__ import annotations

import math
import time

import pytest
import torch

from bayesphys.odil import DiscreteProblem, GliomaModel, minimize
from bayesphys.problems.glioma import brain_phantom, synthetic_patient

F64 = torch.float64


def _prob() -> DiscreteProblem:
    target = torch.linspace(0.0, 1.0, 8, dtype=F64)

    def res(f, p):  # a smooth fit with a cubic term: several LM steps
        u = f["u"]
        return {"data": u + 0.3 * u**3 - target, "smooth": 0.5 * (u[1:] - u[:-1])}

    return DiscreteProblem({"u": (8,)}, {}, res)


@pytest.mark.parametrize("method", ["lm", "gn", "adam", "lbfgs"])
def test_a_spent_budget_ends_the_fit_after_one_step(method):
    x1, r1 = minimize(_prob(), steps=1, method=method, tol=None)
    x, res = minimize(_prob(), steps=6, method=method, tol=None, max_seconds=1e-9)
    assert not res.converged
    assert res.message == "time budget (1e-09 s) reached after 1 steps"
    assert res.steps == 1 and torch.equal(x, x1)


@pytest.mark.parametrize("method", ["lm", "adam"])
def test_the_callbacks_time_is_not_counted(method):
    def slow(k, x):  # 6 x 0.3 s: counted, the callbacks would end the fit after 4 steps
        time.sleep(0.3)

    # the steps themselves take milliseconds: a 1 s budget leaves a wide margin on a busy machine
    _, res = minimize(_prob(), steps=6, method=method, tol=None, callback=slow, max_seconds=1.0)
    assert res.steps == 6 and res.message == "max steps (6)"


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, "1"])
def test_max_seconds_is_checked_before_any_work(bad):
    exc = TypeError if isinstance(bad, str) else ValueError
    with pytest.raises(exc, match="max_seconds"):
        minimize(_prob(), steps=2, max_seconds=bad)
    m = GliomaModel.from_patient(synthetic_patient(1, phantom=brain_phantom(32, 4.0)))
    with pytest.raises(exc, match="max_seconds"):
        m.fit(progress=False, max_seconds=bad)
    with pytest.raises(exc, match="max_seconds"):  # before "call fit() first"
        m.fit_odil(progress=False, max_seconds=bad)


# a fit stopped by the budget may stop short of a minimum, where the Laplace covariance warns
# (how far it got depends on the machine's speed); the test checks the budget, not the fit
@pytest.mark.filterwarnings("ignore:laplace_covariance. the exact Hessian of the loss at the")
def test_glioma_fits_stop_at_the_budget_with_a_posterior():
    p = synthetic_patient(0, n=32, spacing=4.0)
    one = GliomaModel.from_patient(p, seed=0)
    one.fit(progress=False, steps=1, grid=2)
    m = GliomaModel.from_patient(p, seed=0)
    res = m.fit(progress=False, steps=10, grid=2, max_seconds=1e-9)
    assert not res.converged and res.message.startswith("time budget (1e-09 s) reached after 1")
    assert torch.equal(m.theta, one.theta) and torch.isfinite(m.theta_cov).all()
    before = m.theta.clone()
    # its first step is rejected here: no step accepted, the fit keeps the previous posterior
    with pytest.warns(RuntimeWarning, match=r"keeps its previous posterior \(raise max_seconds"):
        res = m.fit_odil(nt=4, steps=8, linear_solver="sparse", progress=False, max_seconds=1e-9)
    assert not res.converged and res.message.startswith("time budget (1e-09 s) reached after 1")
    assert res.extra["kept_previous"] and torch.equal(m.theta, before)


def test_a_joint_fit_of_zero_steps_sets_the_posterior_at_its_start():
    """As documented (``fit(steps=0)`` does the same at its start): the joint covariance at
    the reduced fit's estimate replaces the posterior, no warning."""
    import warnings

    p = synthetic_patient(0, n=32, spacing=4.0)
    m = GliomaModel.from_patient(p, seed=0)
    m.fit(progress=False, steps=10)
    theta = m.theta.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = m.fit_odil(nt=4, steps=0, linear_solver="sparse", progress=False)
    assert m.result is res and "kept_previous" not in res.extra
    assert torch.equal(m.theta, theta) and torch.isfinite(m.theta_cov).all()


@pytest.mark.parametrize("method", ["lm", "gn", "adam", "lbfgs"])
def test_a_callbacks_exceptions_propagate_with_every_method(method):
    """As for the models' fit callbacks, an exception of the callback leaves the fit, a
    ``StopIteration`` too: Adam and L-BFGS read it as their step function ending the fit and
    returned a result ("stopped by step()"), where GN/LM raised it."""

    def stop(k, x):
        if k == 1:
            raise StopIteration("enough")

    with pytest.raises(StopIteration, match="enough"):
        minimize(_prob(), steps=4, method=method, tol=None, callback=stop)

    def fail(k, x):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        minimize(_prob(), steps=4, method=method, tol=None, callback=fail)
