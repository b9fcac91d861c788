"""fit() reports only numerical failures of a solve as a divergence; other errors propagate.

Before, any ``ValueError`` raised inside a solve (a bug, a shape mismatch) became a NaN loss and
was reported as "diverged at step k", hiding the error."""

import math

import pytest
import torch

import bayesphys.gp_pde._fit as gp_fit
from bayesphys.gp_pde import DenseSolve, GPPDESolver, KronSolve
from bayesphys.gp_pde._errors import NumericalFailure
from bayesphys.gp_pde._inputs import check_grid_tensor
from tests.fit_callback_checks import callbacks_around_a_nan_gradient

# weighting="prior" eliminates U by the Kronecker solve, "identity" by the dense one
SOLVERS = [("prior", KronSolve), ("identity", DenseSolve)]

# one thread for the fits (set in the test body, it was left to the autouse fixture to undo)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(weighting):
    return GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2, seed=0, weighting=weighting)


@pytest.mark.parametrize(("weighting", "cls"), SOLVERS)
def test_bug_inside_the_solve_propagates(monkeypatch, weighting, cls):
    m = _model(weighting)

    def broken(self, *args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(cls, "solve", broken)
    with pytest.raises(ValueError, match="^boom$"):
        m.fit(steps=3, progress=False)


@pytest.mark.parametrize(("weighting", "cls"), SOLVERS)
def test_bad_input_inside_the_solve_propagates(monkeypatch, weighting, cls):
    m = _model(weighting)
    solve = cls.solve

    def misshapen(self, f, g, *args, **kwargs):  # a bug handing a solver's check the wrong shape
        check_grid_tensor("f", f.reshape(-1)[:-1], self.shape)
        return solve(self, f, g, *args, **kwargs)

    monkeypatch.setattr(cls, "solve", misshapen)
    with pytest.raises(ValueError, match="f: expected a finite grid tensor of shape") as err:
        m.fit(steps=3, progress=False)
    assert not isinstance(err.value, NumericalFailure)


@pytest.mark.parametrize(("weighting", "cls"), SOLVERS)
def test_non_finite_iterate_is_reported_as_divergence(monkeypatch, weighting, cls):
    m = _model(weighting)
    solve = cls.solve
    params, fields = [], []
    fail_at = 3

    def nan_once(self, *args, **kwargs):  # the iterate of the 4th solve became NaN
        params.append([p.detach().clone() for p in m._params()])
        if len(params) == fail_at + 1:
            nan = torch.full(self.shape, math.nan, dtype=m.dtype)
            check_grid_tensor("u0", nan, self.shape)
        out = solve(self, *args, **kwargs)
        fields.append(out.clone())
        return out

    monkeypatch.setattr(cls, "solve", nan_once)
    res = m.fit(steps=6, progress=False)
    assert res.message == f"diverged at step {fail_at} (loss nan); restored the last good state"
    assert res.steps == fail_at and not res.converged
    # restored to the values before the last step with a finite loss; the field solved there
    for p, good in zip(m._params(), params[fail_at - 1]):
        assert torch.equal(p.detach(), good)
    assert torch.equal(m.u, fields[fail_at - 1])


def test_overflowing_precision_is_reported_as_divergence():
    m = _model("prior")
    start = [p.detach().clone() for p in m._params()]
    with torch.no_grad():
        m.log_tau_pde.fill_(1e4)  # exp overflows: tau2 = inf
    start[-1] = m.log_tau_pde.detach().clone()
    res = m.fit(steps=3, progress=False)
    assert res.message.startswith("diverged at step 0 (loss nan); restored the last good state")
    assert "; final solve failed (" in res.message  # at the restored (overflowing) tau
    for p, good in zip(m._params(), start):
        assert torch.equal(p.detach(), good)


def test_failed_gram_factor_with_eval_every_is_reported_as_divergence():
    """With ``eval_every > 0`` the test error of a step whose Gram factor failed was computed
    from that factor again: the ``NumericalFailure`` left fit instead of the divergence its
    docstring promises, and the model kept the failed hyperparameters."""
    m = GPPDESolver("poisson1d-low", num_mixtures=4, n_col=40, seed=0)
    start = [p.detach().clone() for p in m._params()]
    res = m.fit(steps=10, lr=30.0, progress=False, eval_every=1)
    assert res.message.startswith("diverged at step 1") and res.steps == 1
    # the diverged step's hyperparameters are discarded and step 0's update undone: the model
    # holds the start again, 0 steps done, and the next fit records its step 0
    assert all(torch.equal(p.detach(), s) for p, s in zip(m._params(), start))
    assert m.steps_done == 0 and m.history["step"] == [] and m.history["rel_l2"] == []
    assert math.isfinite(res.extra["rel_l2_best"]) and m._fresh()


def test_numerical_failures_are_value_errors():
    # callers of the solvers that catch ValueError keep working
    assert issubclass(NumericalFailure, ValueError)
    with pytest.raises(NumericalFailure, match="u0: expected finite values, received 1 NaN"):
        check_grid_tensor("u0", torch.tensor([0.0, math.nan]), (2,))


# a 12-point grid, below the problem's Nyquist rate, keeps the test fast: what it checks is the
# solver's precision check, not the resolution warning
@pytest.mark.filterwarnings("ignore:problem 'allencahn1d-sin100'.*Nyquist:UserWarning")
def test_underflowed_precision_is_a_numerical_failure():
    """exp(log tau) == 0 must be reported as a NumericalFailure (a divergence in fit()), not a
    plain ValueError from GaussNewtonKronSolve's tau2 > 0 check."""
    import torch

    from bayesphys.gp_pde._errors import NumericalFailure

    s = GPPDESolver(
        "allencahn1d-sin100",
        n_col=12,
        num_mixtures=2,
        seed=0,
        weighting="prior",
        nonlinear_solver="gauss-newton",
    )
    with torch.no_grad():
        s.log_tau_pde.fill_(-800.0)
    with pytest.raises(NumericalFailure, match="tau: expected finite positive precisions"):
        s._solver(s._factors())


@pytest.mark.parametrize(("weighting", "cls"), SOLVERS)
def test_a_step_whose_solve_failed_records_no_test_error(monkeypatch, weighting, cls):
    """With ``eval_every > 0`` a step whose solve failed (its Gram factor did not) recorded a
    test error of the discarded hyperparameters with the previous step's field, and that
    checkpoint counted the diverged step as done: the next fit numbered its steps one late."""
    m = _model(weighting)
    solve, calls = cls.solve, []

    def fail_once(self, *args, **kwargs):  # the 4th solve fails numerically
        calls.append(None)
        if len(calls) == 4:
            raise NumericalFailure("diverged")
        return solve(self, *args, **kwargs)

    monkeypatch.setattr(cls, "solve", fail_once)
    res = m.fit(steps=6, lr=0.5, progress=False, eval_every=1)
    assert res.message.startswith("diverged at step 3") and res.steps == 3
    # the hyperparameters step 2 started from are restored, its update undone (steps_done
    # counts the updates of the kept state): step 2 is the next fit's first step
    assert m.history["step"] == [0, 1]
    assert m.steps_done == 2
    restored = m.rel_l2()
    m.fit(steps=1, lr=0.5, progress=False, eval_every=1)
    # the recorded errors are those of the evaluated states: step 2's is the restored one's
    assert m.history["step"] == [0, 1, 2]
    assert m.history["rel_l2"][-1] == pytest.approx(restored, rel=1e-9)


def test_an_initially_failing_solve_records_no_test_error():
    m = _model("prior")
    with torch.no_grad():
        m.log_tau_pde.fill_(1e4)  # exp overflows: tau2 = inf, the first solve fails
    res = m.fit(steps=3, progress=False, eval_every=1)
    assert res.message.startswith("diverged at step 0")
    assert m.history["step"] == [] and m.history["rel_l2"] == []
    assert m.steps_done == 0 and "rel_l2_best" not in res.extra


def test_an_objective_whose_gradient_squares_overflow_is_a_divergence():
    """A hyperparameter gradient of 1e200 times its own at the third step (the objective
    finite): Adam's second moment became inf and that hyperparameter never moved again,
    the fit "converged" at max steps. Now the step is a divergence and the kept iterate is
    one evaluated before it."""
    m, res = _poisoned_fit(0, steps=6, n_col=None)
    p = m._params()[0]
    assert not res.converged and res.steps == 2, res.message
    assert res.message.startswith("diverged at step 2") and "optimizer state" in res.message
    assert res.extra["best_step"] < 2 and m.history["fit_steps"] == [1]
    before = p.detach().clone()
    assert m.fit(steps=3, lr=0.05, progress=False).steps == 3
    assert not torch.equal(p.detach(), before)  # it trains on


def _poisoned_fit(eval_every, steps=4, n_col=12):
    """A fit of ``steps`` steps whose third step has a finite objective but a gradient 1e200
    times its own (an update that leaves Adam's second moment infinite), with ``eval_every``
    (``n_col=None``: the problem's default grid)."""
    kw = {} if n_col is None else {"n_col": n_col}
    m = GPPDESolver("poisson1d-low", seed=0, num_mixtures=2, **kw)
    p = m._params()[0]
    calls = []

    def hook(g):
        calls.append(1)
        return g * 1e200 if len(calls) == 3 else g

    h = p.register_hook(hook)
    try:
        res = m.fit(steps=steps, lr=0.05, progress=False, eval_every=eval_every)
    finally:
        h.remove()
    return m, res


def test_steps_done_after_a_poisoned_update_does_not_depend_on_eval_every():
    """The poisoned step's test error was recorded (its objective finite) and that checkpoint
    counted the step as done: steps_done was 3 with eval_every=1, 2 without evaluation. The
    diverged step is not done, as after a failed solve, nor is the step before it, whose
    update the restore undid (steps_done counts the updates of the kept state)."""
    plain, r0 = _poisoned_fit(0)
    evald, r1 = _poisoned_fit(1)
    for res in (r0, r1):
        assert res.message.startswith("diverged at step 2") and "optimizer state" in res.message
        assert res.steps == 2
    assert plain.steps_done == evald.steps_done == 1
    assert evald.history["step"] == [0] and len(evald.history["rel_l2"]) == 1
    # a second fit numbers its checkpoints on from there, its first (the restored state) at 1
    evald.fit(steps=2, lr=0.05, progress=False, eval_every=1)
    assert evald.history["step"] == [0, 1, 2] and evald.steps_done == 3


# a joint fit a few small steps from its zero field: its field is far below order 1
@pytest.mark.filterwarnings("ignore:GPPDESolver. the fitted field's rms:UserWarning")
@pytest.mark.parametrize(("method", "lr"), [("gp-hm", 0.05), ("ref", 0.001)])
def test_keep_best_never_keeps_the_start_of_a_poisoned_step(method, lr, monkeypatch):
    """keep_best kept the lowest objective of every starting point whose objective was
    finite, the poisoned step's too: the fit said "restored the last good state; kept the
    lowest-objective iterate (start of step 2)", brought back the hyperparameters whose
    gradients had overflowed (those a later fit would start from and hit again), with a
    best_objective not in loss_history, a best_step equal to ``steps`` (which names the last
    iterate) and two updates in a model whose steps_done is 1. The candidates are the
    recorded iterates: a step's start is kept only once its update went through."""
    m = GPPDESolver("poisson1d-low", seed=0, num_mixtures=2, method=method)
    p = m._params()[0]
    starts, calls, objectives = [], [], []
    objective = gp_fit.objective

    def recorded(*args, **kw):  # every objective the fit evaluates, in order
        out = objective(*args, **kw)
        objectives.append(float(out.detach()))
        return out

    monkeypatch.setattr(gp_fit, "objective", recorded)

    def hook(g):  # the third step's gradient 1e200 times its own: Adam's moment overflows
        calls.append(1)
        return g * 1e200 if len(calls) == 3 else g

    h = p.register_hook(hook)
    cb = lambda model, step: starts.append(  # noqa: E731
        [t.detach().clone() for t in model._params()]
    )
    try:
        res = m.fit(steps=6, lr=lr, progress=False, keep_best=True, callback=cb, callback_every=1)
    finally:
        h.remove()
    assert res.message.startswith("diverged at step 2") and "optimizer state" in res.message
    # the poisoned step's start (the third objective) had the lowest objective of all
    assert res.loss_history == objectives[:2] and res.steps == 2
    assert objectives[2] < min(res.loss_history)
    best = res.extra["best_step"]
    assert best < res.steps and res.extra["best_objective"] == min(res.loss_history)
    assert "kept the lowest-objective iterate" not in res.message  # the restored state's
    kept = [t.detach() for t in m._params()]
    assert all(torch.equal(a, b) for a, b in zip(kept, starts[best - 1]))  # after 1 update
    assert m.steps_done == best == 1


def test_no_callback_after_the_update_that_ends_the_fit():
    """The callback ran after the third step's update, whose NaN gradient (finite objective)
    had made a hyperparameter NaN, at the step the fit then reported as its divergence."""
    m = GPPDESolver("poisson1d-low", seed=0, num_mixtures=2)
    p = m._params()[0]
    res, seen = callbacks_around_a_nan_gradient(m.fit, p, 3, steps=6, lr=0.05)
    assert res.message.startswith("diverged at step 2"), res.message
    assert seen == [(1, True), (2, True)]


def test_a_joint_fit_whose_objective_overflows_is_a_divergence_with_no_gradient_taken():
    """``method="ref"`` (the field optimised with the kernel): an objective that overflows
    to inf while every factor and the field are finite ends the fit at that step; the
    starting values are kept and no gradient of the inf loss was taken."""
    m = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2, seed=0, method="ref")
    with torch.no_grad():
        m.log_tau_b.fill_(1e4)  # exp(1e4) = inf: the boundary term is inf
    start = [p.detach().clone() for p in m._params()]
    res = m.fit(steps=3, progress=False)
    assert res.message == "diverged at step 0 (loss inf); restored the last good state"
    assert res.steps == 0 and res.loss_history == []
    assert all(torch.equal(p.detach(), s) for p, s in zip(m._params(), start))
    assert all(p.grad is None for p in m._params())


def test_a_joint_fit_whose_last_update_cannot_be_factored_keeps_the_best_iterate(monkeypatch):
    """The last update of a ``method="ref"`` fit is evaluated once, after the steps: where
    its Gram factor fails its objective is inf, and the lowest-objective iterate (the start
    of a step) is kept instead of hyperparameters nothing can be computed at."""
    m = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2, seed=0, method="ref")
    factors, calls = m._factors, []

    def fail_after_the_steps():
        calls.append(None)
        if len(calls) == 4:  # after 3 steps' closures: the final evaluation
            raise NumericalFailure("kernel: the Gram factor is not positive definite")
        return factors()

    monkeypatch.setattr(m, "_factors", fail_after_the_steps)
    res = m.fit(steps=3, lr=0.05, progress=False, keep_best=True)
    assert res.extra["final_objective"] == math.inf
    losses = res.loss_history
    best = min(range(3), key=losses.__getitem__)
    assert res.extra["best_step"] == best and res.extra["best_objective"] == losses[best]
    assert res.message == f"max steps (3); kept the lowest-objective iterate (start of step {best})"
