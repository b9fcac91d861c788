"""Levenberg-Marquardt steps rejected at an unmoved iterate reuse its residuals and Jacobian."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import bayesphys.odil._damped_step as damped_step
import bayesphys.odil._gauss_newton as gauss_newton
import bayesphys.odil._glioma_fit as glioma_fit
from bayesphys.odil import DiscreteProblem, GliomaModel, minimize, solvers
from bayesphys.problems.glioma import brain_phantom, synthetic_patient


def _rosenbrock() -> tuple[DiscreteProblem, Tensor]:
    """Rosenbrock's residuals from the usual start (-1.2, 1): with a small initial damping the
    first LM steps overshoot the curved valley and are rejected."""

    def res(f, p):
        u = f["u"]
        return {"valley": 10 * (u[1] - u[0] ** 2), "end": 1 - u[0]}

    return DiscreteProblem({"u": (2,)}, {}, res), torch.tensor([-1.2, 1.0], dtype=torch.float64)


def _rosenbrock_jacobian(x):
    r = torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])
    jac = torch.tensor([[-20 * float(x[0]), 10.0], [-1.0, 0.0]], dtype=x.dtype)
    return r, jac


def _exp_decay() -> tuple[DiscreteProblem, Tensor]:
    """An exponential-decay fit from a badly scaled start (amplitude 100, rate -3)."""
    t = torch.linspace(0.0, 4.0, 30, dtype=torch.float64)
    y = 2.5 * torch.exp(-1.3 * t) + 0.01 * torch.sin(7 * t)

    def res(f, p):
        return {"data": p["a"] * torch.exp(-p["b"] * t) - y}

    prob = DiscreteProblem({}, {"a": 1.0, "b": 1.0}, res)
    return prob, torch.tensor([100.0, -3.0], dtype=torch.float64)


def _bratu(n: int = 40) -> tuple[DiscreteProblem, Tensor]:
    """A 1-D Bratu problem u'' + lam e^u = 0 with one observation of u, on a grid (so the
    sparse coloured Jacobian applies), from a start far off (u = 5, lam = 30)."""
    h = 1.0 / (n + 1)

    def res(f, p):
        u = torch.nn.functional.pad(f["u"], (1, 1))
        pde = (u[2:] - 2 * u[1:-1] + u[:-2]) / h**2 + p["lam"] * torch.exp(u[1:-1])
        return {"pde": pde, "obs": ((f["u"][n // 2] - 0.4) / 0.01).reshape(1)}

    prob = DiscreteProblem({"u": (n,)}, {"lam": 1.0}, res)
    x0 = torch.cat([torch.full((n,), 5.0, dtype=torch.float64), torch.tensor([30.0]).double()])
    return prob, x0


# (problem, minimize settings): every case rejects steps (checked in the tests)
_CASES = {
    "rosenbrock-dense": (_rosenbrock, {"linear_solver": "dense", "damping": 1e-8}),
    "rosenbrock-jacobian": (
        _rosenbrock,
        {"linear_solver": "dense", "damping": 1e-8, "jacobian": _rosenbrock_jacobian},
    ),
    "rosenbrock-cg": (_rosenbrock, {"linear_solver": "cg", "damping": 1e-8}),
    "exp-decay-dense": (_exp_decay, {"linear_solver": "dense", "damping": 1e-6}),
    "exp-decay-cg": (_exp_decay, {"linear_solver": "cg", "damping": 1e-6}),
    "bratu-sparse": (_bratu, {"linear_solver": "sparse", "damping": 1e-9, "steps": 60}),
    "bratu-cg": (_bratu, {"linear_solver": "cg", "damping": 1e-9, "steps": 60}),
}


def _counted_run(monkeypatch, case: str):
    """Run a case; returns (x, fit, accepted iterates, Jacobian evaluations, the accepted
    steps' indices)."""
    build, settings = _CASES[case]
    prob, x0 = build()
    settings = {"steps": 200, "tol": 1e-14, **settings}
    count = [0]

    def counting(f):
        def wrapped(*args, **kwargs):
            count[0] += 1
            return f(*args, **kwargs)

        return wrapped

    # every linearisation (_damped_step._linearise) goes through exactly one of these
    monkeypatch.setattr(damped_step, "dense_jacobian", counting(damped_step.dense_jacobian))
    monkeypatch.setattr(damped_step, "jvp_vjp", counting(damped_step.jvp_vjp))
    if "jacobian" in settings:
        settings["jacobian"] = counting(settings["jacobian"])
    iterates: list[Tensor] = []
    steps_taken: list[int] = []  # the index of each accepted step

    def callback(k, x):
        iterates.append(x.clone())
        steps_taken.append(k)

    x, fit = minimize(prob, x0, method="lm", callback=callback, **settings)
    return x, fit, iterates, count[0], steps_taken


@pytest.mark.parametrize("case", list(_CASES))
def test_a_rejected_lm_step_does_not_recompute_the_jacobian(monkeypatch, case):
    """A rejected LM step leaves x where it was, so the retry with a larger damping needs
    only a new linear solve: the residuals and Jacobian were computed again for every
    rejected step (one Jacobian per step). Now one per point visited: the start and each
    accepted iterate the fit went on from."""
    x, fit, iterates, n_jac, steps_taken = _counted_run(monkeypatch, case)
    accepted = len(iterates)
    assert len(fit.loss_history) == accepted + 1
    assert fit.steps > accepted, f"the case rejects no step: {fit.message}"
    # the last accepted iterate is linearised only when a step followed it (a rejected one)
    last_accepted = fit.steps - 1 == steps_taken[-1] if steps_taken else False
    assert n_jac == accepted + (0 if last_accepted else 1), (n_jac, fit.steps, accepted)
    assert n_jac < fit.steps


@pytest.mark.parametrize("case", list(_CASES))
def test_reusing_the_jacobian_keeps_the_iterates_bit_for_bit(monkeypatch, case):
    """Against the algorithm that linearises afresh at every step (reuse disabled): the same
    iterates, losses, damping, CG iterations, step count and message, bit for bit."""
    x, fit, iterates, n_jac, _ = _counted_run(monkeypatch, case)
    monkeypatch.setattr(gauss_newton, "_REUSE_LINEARISATION", False)
    x_ref, ref, iterates_ref, n_jac_ref, _ = _counted_run(monkeypatch, case)
    assert n_jac_ref == ref.steps > n_jac  # the reference did linearise at every step
    assert torch.equal(x, x_ref)
    assert len(iterates) == len(iterates_ref)
    assert all(torch.equal(a, b) for a, b in zip(iterates, iterates_ref))
    assert fit.loss_history == ref.loss_history
    assert (fit.steps, fit.converged, fit.message) == (ref.steps, ref.converged, ref.message)
    assert fit.extra["cg_iters"] == ref.extra["cg_iters"]
    assert fit.extra["damping"] == ref.extra["damping"]
    assert fit.extra.get("cg_rel") == ref.extra.get("cg_rel")


def test_a_glioma_fit_with_rejected_steps_is_unchanged_by_the_reuse(monkeypatch):
    """The reduced-space glioma fit (dense tangent-linear Jacobian) from a badly placed start
    (log rho + 1.5) with a small initial damping rejects steps: it now calls the model's
    Jacobian once per point visited instead of once per step, with the same iterates, final
    theta and Laplace covariance, bit for bit."""
    patient = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    inner = glioma_fit.minimize
    runs: list[dict] = []

    def badly_started(prob, x0, **kw):
        x0 = x0.clone()
        x0[1] += 1.5
        iterates: list[torch.Tensor] = []
        kw.update(damping=1e-6, callback=lambda k, x: iterates.append(x.clone()))
        x, res = inner(prob, x0, **kw)
        runs.append({"iterates": iterates, "calls": calls[0]})
        return x, res

    monkeypatch.setattr(glioma_fit, "minimize", badly_started)

    def fit():
        model = GliomaModel.from_patient(patient)
        jacobian = model.jacobian

        def counted(theta):
            calls[0] += 1
            return jacobian(theta)

        model.jacobian = counted
        res = model.fit(progress=False, grid=1)
        return model, res

    calls = [0]
    model, res = fit()
    monkeypatch.setattr(gauss_newton, "_REUSE_LINEARISATION", False)
    calls = [0]
    model_ref, res_ref = fit()
    new, old = runs
    accepted = len(new["iterates"])
    assert res.steps > accepted, f"no step rejected: {res.message}"
    assert old["calls"] == res_ref.steps and new["calls"] <= accepted + 1 < old["calls"]
    assert len(new["iterates"]) == len(old["iterates"])
    assert all(torch.equal(a, b) for a, b in zip(new["iterates"], old["iterates"]))
    assert res.loss_history == res_ref.loss_history and res.message == res_ref.message
    assert torch.equal(model.theta, model_ref.theta)
    assert torch.equal(model.theta_cov, model_ref.theta_cov)


def _two_exponentials(dtype: torch.dtype) -> tuple[DiscreteProblem, Tensor]:
    """A noisy two-exponential fit (200 points, 4 parameters): its optimum's loss is O(1),
    so in float32 the last LM steps change it by round-off only."""
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 4, 200, dtype=torch.float64)
    y = 2.0 * torch.exp(-1.3 * t) + 0.5 * torch.exp(-0.4 * t)
    y = (y + 0.05 * torch.randn(200, generator=g, dtype=torch.float64)).to(dtype)
    t = t.to(dtype)

    def res(f, p):
        a = f["a"]
        return {"r": a[0] * torch.exp(-a[1] * t) + a[2] * torch.exp(-a[3] * t) - y}

    x0 = torch.tensor([1.0, 2.0, 1.0, 0.2], dtype=dtype)
    return DiscreteProblem({"a": (4,)}, {}, res, dtype=dtype), x0


@pytest.mark.parametrize("linear_solver", ["dense", "cg"])
def test_float32_lm_whose_steps_run_out_at_round_off_is_converged(linear_solver):
    """A float32 LM fit at its optimum accepts round-off decreases (above tol=1e-9) and then
    raises its damping towards the stall: steps that ran out in between ended "max steps",
    not converged, at the same iterate the stall reports as a local minimum."""
    prob, x0 = _two_exponentials(torch.float32)
    kw = {"method": "lm", "linear_solver": linear_solver, "tol": 1e-9}
    accepted: list[int] = []  # the indices of the accepted steps
    x_full, full = minimize(prob, x0, steps=200, callback=lambda k, x: accepted.append(k), **kw)
    assert full.converged and full.message.startswith("stalled"), full.message
    h = full.loss_history
    eps = torch.finfo(torch.float32).eps
    # the last accepted step: round-off of a sum of m = 200 squares (12 eps on a machine where
    # the rule's former 8 eps bound left the steps that ran out unconverged)
    assert abs(h[-2] - h[-1]) <= 8 * math.sqrt(200) * eps * h[-2]
    assert full.steps >= accepted[-1] + 4  # a rejection streak after it
    # run out of steps at that step or inside the streak: the same iterate, now converged
    for steps in (accepted[-1] + 1, accepted[-1] + 3, full.steps - 1):
        x, fit = minimize(prob, x0, steps=steps, **kw)
        assert fit.steps == steps and fit.loss_history == h, fit.message
        assert torch.equal(x, x_full)
        assert fit.converged and "stalled at round-off" in fit.message, fit.message
    # and one accepted step before the round-off one still moves the loss: not converged
    x, fit = minimize(prob, x0, steps=3, **kw)
    assert not fit.converged and fit.message == "max steps (3)", fit.message


@pytest.mark.parametrize("linear_solver", ["dense", "cg"])
def test_float64_lm_fit_keeps_its_steps_and_ending(linear_solver):
    """The round-off ending of steps that run out cannot meet a float64 fit with tol above
    8 eps: its round-off step stops it first, by the relative-decrease test."""
    prob, x0 = _two_exponentials(torch.float64)
    kw = {"method": "lm", "linear_solver": linear_solver, "tol": 1e-9}
    x, full = minimize(prob, x0, steps=200, **kw)
    assert full.converged and full.message == f"converged after {full.steps} steps"
    for steps in range(1, full.steps):
        _, fit = minimize(prob, x0, steps=steps, **kw)
        assert not fit.converged and fit.message == f"max steps ({steps})", fit.message


def test_cg_takes_a_start_in_the_dtype_and_device_of_b():
    """A float32 x0 beside a float64 b failed in the first matrix product with torch's
    'addmv input tensors must have the same dtype' (another device likewise); x0 is now
    taken in b's dtype and on its device, as minimize takes its x0 in the problem's."""
    from bayesphys.odil import cg

    a = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x, _, rel = cg(lambda v: a @ v, b, x0=torch.zeros(2, dtype=torch.float32), tol=1e-14)
    assert x.dtype == torch.float64 and rel <= 1e-14
    torch.testing.assert_close(x, torch.linalg.solve(a, b))


def test_a_finite_loss_whose_gradient_squares_overflow_is_a_divergence():
    """A residual of value 1 whose derivative is 1e200: the loss (1/2) is finite, the gradient's
    square is not. Adam's second moment became inf, every update m / inf = 0: the iterate never
    moved and the fit ended "converged" at the start; now it is reported as a divergence."""

    def res(f, p):
        u = f["u"]
        return {"fit": u - 3.0, "cliff": 1.0 + 1e200 * (u[:1] - u[:1].detach())}

    prob = DiscreteProblem({"u": (2,)}, {}, res)
    x0 = torch.zeros(2, dtype=torch.float64)
    x, fit = minimize(prob, x0, method="adam", steps=20, lr=0.1, tol=1e-12)
    assert not fit.converged and fit.message.startswith("diverged at step 0"), fit.message
    assert "optimizer state is not finite" in fit.message
    assert torch.equal(x, x0) and fit.steps == 0


@pytest.mark.parametrize("kind", ["huge", "nan"])
def test_no_callback_after_the_adam_update_that_ends_the_fit(kind):
    """The callback ran after the step whose update left Adam's state non-finite (a NaN
    gradient made x NaN), the step the fit then reported as its divergence."""
    scale = 1e200 if kind == "huge" else math.nan

    def res(f, p):
        u = f["u"]
        return {"fit": u - 3.0, "cliff": 1.0 + scale * (u[:1] - u[:1].detach())}

    prob = DiscreteProblem({"u": (2,)}, {}, res)
    x0 = torch.zeros(2, dtype=torch.float64)
    seen = []
    x, fit = minimize(
        prob,
        x0,
        method="adam",
        steps=5,
        lr=0.1,
        callback=lambda k, x: seen.append(bool(torch.isfinite(x).all())),
    )
    assert fit.message.startswith("diverged at step 0"), fit.message
    assert seen == [] and torch.equal(x, x0)


def test_lbfgs_that_never_moves_off_a_cliff_is_not_converged():
    """A residual of value 1 whose derivative is 1e200 beside a finite loss: every L-BFGS line
    search returned a zero-length step, the loss never changed and the fit ended "converged"
    at its start with a finite state. A fit that never moved from x0 is now converged only if
    the gradient there is within L-BFGS's own first-order tolerance."""

    def res(f, p):
        u = f["u"]
        return {"fit": u - 3.0, "cliff": 1.0 + 1e200 * (u[:1] - u[:1].detach())}

    prob = DiscreteProblem({"u": (2,)}, {}, res)
    x0 = torch.zeros(2, dtype=torch.float64)
    x, fit = minimize(prob, x0, method="lbfgs", steps=20, tol=1e-12)
    assert torch.equal(x, x0) and fit.steps >= 1
    assert not fit.converged and fit.message.startswith("no progress"), fit.message
    # started at the optimum (gradient exactly 0): no step either, and that is converged
    smooth = DiscreteProblem({"u": (2,)}, {}, lambda f, p: {"fit": f["u"] - 3.0})
    at = torch.full((2,), 3.0, dtype=torch.float64)
    x, fit = minimize(smooth, at, method="lbfgs", steps=20, tol=1e-12)
    assert torch.equal(x, at) and fit.converged, fit.message
    # a fit that moves is left as it was
    x, fit = minimize(smooth, x0, method="lbfgs", steps=20, tol=1e-12)
    assert fit.converged and torch.allclose(x, at)


def _one_parameter(kind: str) -> DiscreteProblem:
    def res(f, p):
        a = p["a"]
        if kind == "atan":
            return {"r": torch.atan(a).reshape(1)}
        return {"r": torch.stack([torch.atan(a), 0.3 * a])}

    return DiscreteProblem({}, {"a": 1.0}, res)


@pytest.mark.parametrize("linear_solver", ["dense", "cg"])
def test_one_lm_step_is_the_damped_step_with_nielsen_update_by_hand(linear_solver):
    """One LM step of a one-parameter problem, by hand: delta = -J'r / (J'J + lam) (the damping
    adds lam I, not lam diag(J'J)), gain = (L(x) - L(x + delta)) / pred with pred = -J'r delta -
    |J delta|^2 / 2, and after an accepted step lam <- lam max(1/3, 1 - (2 gain - 1)^3)."""
    x0, lam = 1.0, 0.01

    def r_of(a):
        return [math.atan(a), 0.3 * a]

    r = r_of(x0)
    jac = [1 / (1 + x0**2), 0.3]
    g = sum(j * ri for j, ri in zip(jac, r))
    jtj = sum(j * j for j in jac)
    delta = -g / (jtj + lam)
    pred = -g * delta - 0.5 * jtj * delta**2
    loss0 = 0.5 * sum(ri * ri for ri in r)
    loss1 = 0.5 * sum(ri * ri for ri in r_of(x0 + delta))
    gain = (loss0 - loss1) / pred
    assert 0 < gain < 0.9  # accepted, in the range where the update is not the factor 1/3
    x, res = minimize(
        _one_parameter("atan_ridge"),
        torch.tensor([x0], dtype=torch.float64),
        method="lm",
        damping=lam,
        steps=1,
        tol=None,
        linear_solver=linear_solver,
        cg_tol=1e-14,
    )
    assert float(x[0]) == pytest.approx(x0 + delta, rel=1e-12)
    assert res.loss_history == pytest.approx([loss0, loss1], rel=1e-12)
    want = lam * max(1 / 3, 1 - (2 * gain - 1) ** 3)
    assert res.extra["damping"] == pytest.approx(want, rel=1e-10)


def test_lm_from_zero_damping_raises_it_after_a_rejected_step():
    """damping=0 is allowed: the first LM step from atan's x0 = 3 is the undamped Gauss-Newton
    step, which overshoots (|atan| grows) and is rejected; the damping must then become
    positive (a rejected step at lam = 0 was retried at lam = 0 for ever) and the fit reach
    the root 0."""
    x, res = minimize(
        _one_parameter("atan"),
        torch.tensor([3.0], dtype=torch.float64),
        method="lm",
        damping=0.0,
        steps=80,
        linear_solver="dense",
    )
    assert res.converged, res.message
    assert abs(float(x[0])) < 1e-6


def test_cg_columns_each_meet_the_tolerance():
    """cg solves the columns of b [n, k] together, each to its own tolerance: a column a
    million times smaller than the other is not left unsolved by a norm over all columns
    (solved as one system, the small column stopped at a relative residual of about 1e-2)."""
    gen = torch.Generator().manual_seed(3)
    n = 200
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, 4, n, dtype=torch.float64)) @ q.T
    b = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    b[:, 1] *= 1e-6
    x, _, rel = solvers.cg(lambda v: a @ v, b, tol=1e-4, maxiter=1000)
    assert rel <= 1e-4
    for col in range(2):
        res_col = torch.linalg.norm(b[:, col] - a @ x[:, col]) / torch.linalg.norm(b[:, col])
        assert float(res_col) <= 2e-4


@pytest.mark.parametrize("method", ["gn", "lm", "adam", "lbfgs"])
def test_zero_steps_follow_the_fixed_budget_convention_of_every_fit(method):
    """steps=0 returns x0 untouched with the message "max steps (0)". Without a tolerance a
    fit's only criterion is its step budget (FitResult.converged), spent here: converged, as
    optimize's (which runs Adam and L-BFGS here) and every component's fit(steps=0); with a
    tolerance nothing was tested: not converged. GN/LM record the start's loss."""
    prob, x0 = _rosenbrock()
    kw = {"linear_solver": "dense"} if method in ("gn", "lm") else {}
    for tol, converged in ((None, True), (1e-10, False)):
        x, res = minimize(prob, x0, method=method, steps=0, tol=tol, progress=False, **kw)
        assert torch.equal(x, x0)
        assert res.steps == 0 and res.message == "max steps (0)"
        assert res.converged is converged
        start = [float(prob.loss(x0))] if method in ("gn", "lm") else []
        assert res.loss_history == pytest.approx(start, rel=1e-15)
