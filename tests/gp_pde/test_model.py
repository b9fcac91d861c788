import math

import numpy as np
import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.gp_pde import GPPDESolver
from bayesphys.problems.gp_pde import get_problem, tensor_grid

from .dense_reference import dense_posterior

F64 = torch.float64


@pytest.fixture(scope="module")
def low_fit():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = GPPDESolver("poisson1d-low", num_mixtures=8, weighting="identity", jitter=1e-12, seed=0)
        w0 = m.kernels[0].weights.clone()
        res = m.fit(steps=300, progress=False)
        yield m, res, w0
    finally:
        torch.set_num_threads(n)


def test_low_frequency_poisson_to_1e8(low_fit):
    m, res, _ = low_fit
    assert res.steps == 300 and res.seconds < 60
    # measured 7.1e-9 and 2.07e-8 on two machines (same code and torch): at this accuracy the
    # solve is at the round-off of the CPU's vector instructions
    assert m.rel_l2() < 5e-8


def test_superfluous_mixture_weights_shrink(low_fit):
    m, _, w0 = low_fit
    k = m.kernels[0]
    w, mu, w0 = k.weights.detach(), k.mu.detach(), w0.detach()
    # components away from the solution's frequencies (0 and 1 cycle) are pruned
    far = (mu - 0).abs().minimum((mu - 1).abs()) > 1.0
    assert far.sum() >= 3
    assert float(w[far].max()) < 0.05 * float(w0[far].min())
    assert float(w[~far].max()) > 10 * float(w0.max())


def test_posterior_and_inference_data(low_fit):
    m, _, _ = low_fit
    post = m.posterior()
    assert isinstance(post, GaussianPosterior)
    assert post.event_shape == (300,)
    ex = m.problem.solution(m._test_axes(None))
    lo, hi = post.interval(0.95)
    assert float(((lo <= ex) & (ex <= hi)).double().mean()) > 0.9
    s = post.sample((4,), generator=torch.Generator().manual_seed(0))
    assert s.shape == (4, 300)
    idata = post.to_inference_data(num_samples=8, seed=0)
    assert "u" in idata.posterior


def test_posterior_samples_match_marginal_variance():
    m = GPPDESolver("poisson2d-low", num_mixtures=3, seed=0)
    m.fit(steps=3, progress=False)
    ta = [torch.linspace(0, 1, 7, dtype=F64), torch.linspace(0, 1, 6, dtype=F64)]
    post = m.posterior(ta)
    draws = post.sample((6000,), generator=torch.Generator().manual_seed(1))
    emp = draws.var(0)
    torch.testing.assert_close(emp, post.variance, rtol=0.12, atol=1e-12)
    torch.testing.assert_close(
        draws.mean(0),
        post.mean,
        rtol=0,
        atol=5 * float(post.stddev.max()) / math.sqrt(6000) + 1e-12,
    )


def test_2d_poisson_structured_fit():
    # exact Kronecker + Woodbury elimination of U on a 32 x 32 grid (prior residual metric);
    # low frequencies are this metric's weak spot (see docs), hence the loose bound
    m = GPPDESolver("poisson2d-low", num_mixtures=6, jitter=1e-10, seed=0)
    res = m.fit(steps=50, progress=False, eval_every=49)
    assert m.history["rel_l2"][0] > 0.5
    assert res.extra["rel_l2"] < 0.1


def test_save_load_round_trip(tmp_path):
    m = GPPDESolver("poisson1d-low", num_mixtures=4, seed=0)
    m.fit(steps=5, progress=False)
    path = m.save(tmp_path / "m.pt")
    m2 = GPPDESolver.load(path)
    assert m2.config == m.config
    assert torch.equal(m2.u, m.u)
    for a, b in zip(m.kernels.parameters(), m2.kernels.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(m2.predict(), m.predict())
    assert m2.rel_l2() == m.rel_l2()
    p1, p2 = m.posterior(), m2.posterior()
    assert torch.equal(p1.mean, p2.mean) and torch.equal(p1.variance, p2.variance)


def _snapshot(m: GPPDESolver) -> dict:
    st = m.state()
    kern = st.pop("kernels")
    return {
        **{k: v.clone() for k, v in st.items() if torch.is_tensor(v)},
        **kern,
        "s": st["solved"],
    }


def _assert_same_posterior(p1, p2):
    assert torch.equal(p1.mean, p2.mean) and torch.equal(p1.variance, p2.variance)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(p1.sample((2,), generator=g1), p2.sample((2,), generator=g2))


_UNCONVERGED = {
    "gauss-newton": dict(
        problem="allencahn2d-low",
        nonlinear_solver="gauss-newton",
        solver_options=dict(max_iter=2, cg_maxiter=20),
    ),
    "picard": dict(problem="allencahn2d-low", solver_options=dict(max_iter=2)),
    "dense-1d": dict(problem="allencahn1d-sin100"),
    "ref-gauss-newton": dict(
        problem="allencahn2d-low",
        method="ref",
        weighting="prior",
        nonlinear_solver="gauss-newton",
        solver_options=dict(max_iter=2, cg_maxiter=20),
    ),
}


# the 1-D case's 30-point grid is below its Nyquist rate (a small grid keeps the test fast;
# what it checks is posterior(), not the resolution warning)
@pytest.mark.filterwarnings("ignore:problem 'allencahn1d-sin100'.*Nyquist:UserWarning")
@pytest.mark.parametrize("case", list(_UNCONVERGED))
def test_posterior_is_idempotent_and_leaves_the_fit_unchanged(case, tmp_path):
    # posterior() re-ran unconverged nonlinear solves (Picard, 1-D dense Gauss-Newton) from the
    # stored field and overwrote it: two calls differed (6.5e-5 in the mean with Picard) and a
    # model saved after posterior() was not the fitted one; method="ref" marked its own U solved
    kw = dict(_UNCONVERGED[case])
    n_col = 30 if case == "dense-1d" else 10
    m = GPPDESolver(kw.pop("problem"), n_col=n_col, num_mixtures=3, seed=0, **kw)
    m.fit(steps=3, progress=False)
    before = _snapshot(m)
    p1 = m.posterior()
    p2 = m.posterior()
    _assert_same_posterior(p1, p2)
    after = _snapshot(m)
    assert after.keys() == before.keys()
    assert all(
        after[k] == before[k] if k == "s" else torch.equal(after[k], before[k]) for k in after
    )
    # the saved model is the fitted one, and its posterior the same
    m2 = GPPDESolver.load(m.save(tmp_path / "m.pt"))
    assert torch.equal(m2.u, m.u)
    _assert_same_posterior(p1, m2.posterior())
    if case != "dense-1d":  # deliberately unconverged: an explicit re-solve still iterates on
        m.solve_field()
        assert not torch.equal(m.u, before["u"])


def test_posterior_after_new_hyperparameters_solves_once():
    kw = dict(n_col=10, num_mixtures=3, seed=0, solver_options=dict(max_iter=2))
    m = GPPDESolver("allencahn2d-low", **kw)
    m.fit(steps=3, progress=False)
    m2 = GPPDESolver("allencahn2d-low", **kw).warm_start_from(m)
    p1 = m2.posterior()  # solves U at the copied hyperparameters and stores it
    u1 = m2.u.clone()
    assert bool(u1.abs().sum() > 0)
    _assert_same_posterior(p1, m2.posterior())
    assert torch.equal(m2.u, u1) and m2.state()["solved"]


def test_predict_after_warm_start_is_the_posterior_mean():
    """predict() read the zero field warm_start_from leaves (rel_l2 1.0) while posterior()
    solved it; both now solve once and agree."""
    m = GPPDESolver("poisson1d-low", n_col=20, num_mixtures=2, seed=0)
    m.fit(steps=3, progress=False)
    m3 = GPPDESolver("poisson1d-low", n_col=24, num_mixtures=2).warm_start_from(m)
    pred = m3.predict()
    assert bool(pred.abs().max() > 0.1)
    assert m3.state()["solved"]
    torch.testing.assert_close(pred, m3.posterior().mean.reshape(pred.shape))
    assert m3.rel_l2() < 0.5


def test_checkpoint_keeps_the_problem_id_of_registered_problems_only(tmp_path):
    """A modified copy of a registered problem was saved by its name, so load attached the
    registered problem's exact solution (rel_l2 0.84 instead of 0.004)."""
    import dataclasses

    reg = get_problem("poisson1d-low")
    m = GPPDESolver(reg, n_col=16, num_mixtures=2, seed=0)
    m.fit(steps=2, progress=False)
    assert GPPDESolver.load(m.save(tmp_path / "a.pt")).problem is reg
    mod = dataclasses.replace(reg, exact=lambda x: torch.sin(6 * x))
    m = GPPDESolver(mod, n_col=16, num_mixtures=2, seed=0)
    m.fit(steps=2, progress=False)
    m2 = GPPDESolver.load(m.save(tmp_path / "b.pt"))
    assert m2.problem is None and m2.config["problem"] is None
    assert torch.equal(m2.predict(), m.predict())
    with pytest.raises(ValueError, match="no exact solution known .* set model.problem"):
        m2.rel_l2()
    m2.problem = mod
    assert m2.rel_l2() == m.rel_l2()
    renamed = dataclasses.replace(reg, name="mine")  # loaded before: "name: expected one of"
    m = GPPDESolver(renamed, n_col=16, num_mixtures=2, seed=0)
    assert GPPDESolver.load(m.save(tmp_path / "c.pt")).problem is None


def test_custom_problem_from_points_and_callables():
    x = torch.linspace(0, 1, 24, dtype=F64)
    y = torch.linspace(0, 1, 20, dtype=F64)
    pts = tensor_grid([x, y]).reshape(-1, 2)[torch.randperm(480)]
    u = lambda a, b: torch.sin(math.pi * a) * torch.sin(math.pi * b)  # noqa: E731
    f = lambda a, b: -2 * math.pi**2 * u(a, b)  # noqa: E731
    m = GPPDESolver(x=pts, source=f, boundary=u, num_mixtures=3, seed=0)
    assert m.shape == (24, 20)
    m.fit(steps=2, progress=False)
    post = m.posterior([torch.linspace(0, 1, 9, dtype=F64)] * 2)
    assert post.event_shape == (9, 9)


def test_ref_method_runs_and_tracks_best():
    m = GPPDESolver("poisson1d-low", method="ref", num_mixtures=4, seed=0)
    res = m.fit(steps=10, progress=False, eval_every=5)
    assert res.steps == 10
    assert res.extra["rel_l2_best"] <= res.extra["rel_l2"] + 1e-15


def test_bad_inputs_are_refused():
    x = torch.linspace(0, 1, 10, dtype=F64)
    pts = tensor_grid([x, x]).reshape(-1, 2)
    with pytest.raises(ValueError, match="tensor-product"):
        GPPDESolver(x=pts[:-1], source=torch.zeros(10, 10), boundary=torch.zeros(10, 10))
    scattered = torch.rand(50, 2, dtype=F64)
    with pytest.raises(ValueError, match="tensor-product"):
        GPPDESolver(x=scattered, source=lambda a, b: a, boundary=lambda a, b: b)
    with pytest.raises(ValueError, match="source"):
        GPPDESolver(x=[x, x], source=lambda a, b: a[0], boundary=lambda a, b: b)
    with pytest.raises(ValueError, match="source"):
        GPPDESolver(x=[x, x], source=torch.zeros(10, 9), boundary=torch.zeros(10, 10))
    bad = torch.zeros(10, 10)
    bad[0, 3] = float("nan")
    with pytest.raises(ValueError, match="boundary"):
        GPPDESolver(x=[x, x], source=torch.zeros(10, 10), boundary=bad)
    with pytest.raises(ValueError, match="method"):
        GPPDESolver("poisson1d-low", method="pinn")
    with pytest.raises(ValueError, match="^problem: expected one of"):
        GPPDESolver("poisson9d")
    with pytest.raises(ValueError, match="x\\[0\\]"):
        GPPDESolver(
            x=[torch.tensor([0.0, 0.5, 0.4, 1.0])], source=np.zeros(4), boundary=np.zeros(4)
        )
    # n_col 0 / negative failed inside torch (index out of range, negative steps)
    # (3 was accepted, but its checkpoint could not be loaded: a grid given by x needs 4)
    for n in (0, -5, 2, 3):
        with pytest.raises(ValueError, match="n_col: expected an int >= 4"):
            GPPDESolver("poisson1d-low", n_col=n)
    with pytest.raises(TypeError, match="n_col: expected an int"):
        GPPDESolver("poisson1d-low", n_col=3.5)


@pytest.mark.parametrize("kw", [dict(method="ref"), dict(weighting="identity")])
def test_posterior_without_exact_solver_names_a_working_remedy(kw):
    # 78 x 78 = 6084 > 6000 grid points with the identity metric: no exact solver of U; the
    # message used to say "use method='ref'", also to method='ref' models (which fail the same)
    m = GPPDESolver("poisson2d-low", n_col=78, num_mixtures=2, seed=0, **kw)
    with pytest.raises(NotImplementedError, match="weighting='prior'") as err:
        m.posterior()
    assert "method='ref'" not in str(err.value)


def test_bad_test_axes_are_refused():
    """A [M, d] point tensor used to be read as M axes (a reshape error); NaN axes gave an
    error about the mean."""
    m = GPPDESolver("poisson1d-low", n_col=20, num_mixtures=2, seed=0)
    m.fit(steps=2, progress=False)
    with pytest.raises(ValueError, match="x: expected 1 test axes"):
        m.posterior([torch.linspace(0, 1, 5, dtype=F64)] * 2)
    with pytest.raises(ValueError, match=r"x\[0\]: expected 1 dimensions, received shape \(5, 3\)"):
        m.posterior(torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"test_axes\[0\]: expected finite values"):
        m.predict([torch.tensor([0.0, float("nan")], dtype=F64)])
    with pytest.raises(ValueError, match=r"test_axes\[0\]: expected a non-empty axis"):
        m.predict([torch.zeros(0, dtype=F64)])
    one = torch.linspace(0, 1, 7, dtype=F64)
    torch.testing.assert_close(m.predict(one), m.predict([one]))  # a bare 1-D axis is accepted


def test_wrong_axis_count_names_the_argument_passed():
    """The count refusal named ``x`` also when predict's argument ``test_axes`` was wrong."""
    m = GPPDESolver("poisson1d-low", n_col=20, num_mixtures=2, seed=0)
    two = [torch.linspace(0, 1, 5, dtype=F64)] * 2
    with pytest.raises(ValueError, match="^test_axes: expected 1 test axes") as err:
        m.predict(two)
    assert "x:" not in str(err.value)
    with pytest.raises(ValueError, match="^test_axes: expected 1 test axes"):
        m.rel_l2(two)
    with pytest.raises(ValueError, match="^x: expected 1 test axes"):
        m.posterior(two)


def test_a_flat_list_of_numbers_is_the_axis_of_a_1d_grid():
    """``predict``, ``posterior`` and ``rel_l2`` of a 1-D model read ``[0.1, 0.5, 0.9]`` as
    one axis of three points, as the equal tensor (each number was read as an axis of its
    own and the list refused as three axes); a one-number list is a one-point axis. A 2-D
    model still refuses a flat list, naming the argument and the grid's dimension."""
    m = GPPDESolver("poisson1d-low", n_col=20, num_mixtures=2, seed=0)
    m.fit(steps=2, progress=False)
    pts = [0.1, 0.5, 0.9]
    t = torch.tensor(pts, dtype=F64)
    torch.testing.assert_close(m.predict(pts), m.predict(t))
    torch.testing.assert_close(m.predict(tuple(pts)), m.predict(t))
    torch.testing.assert_close(m.predict([torch.tensor(p, dtype=F64) for p in pts]), m.predict(t))
    torch.testing.assert_close(m.predict([0.5]), m.predict(t[1:2]))
    post, ref = m.posterior(pts), m.posterior(t)
    torch.testing.assert_close(post.mean, ref.mean)
    torch.testing.assert_close(post.variance, ref.variance)
    assert m.rel_l2(pts) == m.rel_l2(t)
    with pytest.raises(ValueError, match=r"^test_axes: expected finite values"):
        m.predict([0.1, float("nan")])
    m2 = GPPDESolver("poisson2d-low", n_col=8, num_mixtures=2, seed=0)
    with pytest.raises(ValueError, match=r"^x: expected 2 test axes .* flat sequence of 3 numbers"):
        m2.posterior(pts)


def test_one_number_is_a_one_point_axis_of_a_1d_grid():
    """``predict(0.5)`` was refused ("expected 1 dimensions, received shape ()")."""
    m = GPPDESolver("poisson1d-low", n_col=20, num_mixtures=2, seed=0)
    one = m.predict(torch.tensor([0.5], dtype=F64))
    torch.testing.assert_close(m.predict(0.5), one)
    torch.testing.assert_close(m.predict(torch.tensor(0.5, dtype=F64)), one)
    torch.testing.assert_close(m.posterior(0.5).mean, one)


def test_test_points_outside_the_collocation_grid_are_warned_about():
    """Outside the grid the field is the kernel's extrapolation, unconstrained by the PDE (it
    was returned without a word); the warning names the argument and the axis, once per
    call, at the user's line; points on the grid's ends are inside."""
    import warnings

    m = GPPDESolver("poisson1d-low", n_col=20, num_mixtures=2, seed=0)
    for call, label in ((m.predict, "test_axes"), (m.posterior, "x"), (m.rel_l2, "test_axes")):
        with pytest.warns(UserWarning, match=rf"^{label}: 2 of 3 points outside \[0, 1\]") as rec:
            call([0.5, 1.5, -0.25])
        assert len(rec) == 1 and rec[0].filename == __file__
    m2 = GPPDESolver("poisson2d-low", n_col=8, num_mixtures=2, seed=0)
    inside = torch.linspace(0, 1, 3, dtype=F64)
    with pytest.warns(UserWarning, match=r"^test_axes\[1\]: 1 of 3 points outside"):
        m2.predict([inside, torch.tensor([0.0, 1.0, 1.5], dtype=F64)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.predict(torch.linspace(0, 1, 7, dtype=F64))
        m2.predict([inside, inside])


def test_predict_default_grid_of_a_custom_problem_has_300_points():
    x = torch.linspace(0, 1, 8, dtype=F64)
    m = GPPDESolver(x=[x], source=np.zeros(8), boundary=np.zeros(8), num_mixtures=2, seed=0)
    assert m.predict().shape == (300,)


@pytest.mark.gpu
def test_fit_on_cuda(cuda_device):
    m = GPPDESolver("poisson2d-low", num_mixtures=4, device=cuda_device, seed=0)
    res = m.fit(steps=5, progress=False)
    assert m.u.device.type == "cuda"
    post = m.posterior()
    assert post.mean.device.type == "cuda"
    assert math.isfinite(res.final_loss)
    assert get_problem("poisson2d-low").dim == 2


def test_posterior_pickles(low_fit):
    # the test-grid sampler was a closure, so the posterior could not be pickled (torch.save,
    # a process pool); it is a class now and the copy draws the same fields
    import pickle

    m, _, _ = low_fit
    post = m.posterior()
    back = pickle.loads(pickle.dumps(post))
    a = post.sample((3,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, back.sample((3,), generator=torch.Generator().manual_seed(1)))


def test_fit_keeps_the_lowest_objective_iterate():
    """Adam at a large step size leaves the best basin; the fit returns the iterate with the
    lowest objective (the starting point of step ``best_step``), ``keep_best=False`` the last."""
    kw = dict(steps=40, lr=2.0, tau_lr_mult=4.0, progress=False)
    best = GPPDESolver("poisson1d-low", num_mixtures=4, seed=0, n_col=40)
    rb = best.fit(**kw)
    last = GPPDESolver("poisson1d-low", num_mixtures=4, seed=0, n_col=40)
    rl = last.fit(**kw, keep_best=False)
    assert rb.loss_history == rl.loss_history  # same trajectory, only the returned iterate differs
    k = min(range(len(rb.loss_history)), key=rb.loss_history.__getitem__)
    assert rb.extra["best_step"] == k < kw["steps"]
    assert rb.extra["best_objective"] == rb.loss_history[k] < rb.extra["final_objective"]
    assert "kept the lowest-objective iterate (start of step" in rb.message
    # the returned state is that iterate: its objective is the best one, to round-off
    assert best._objective_value(best.u) == pytest.approx(rb.loss_history[k], rel=1e-9)
    assert last._objective_value(last.u) == pytest.approx(rb.extra["final_objective"], rel=1e-9)
    assert "best_step" not in rl.extra


def test_keep_best_returns_the_evaluated_field_of_a_nonlinear_problem():
    """Allen-Cahn's field depends on the solver's warm start: the kept iterate is the field
    the objective was evaluated at (re-solving it from the last field gave another one)."""
    m = GPPDESolver(
        "allencahn2d-low", n_col=10, weighting="prior", solver_options={"max_iter": 2}, seed=0
    )
    res = m.fit(steps=25, lr=0.5, progress=False)
    assert res.extra["best_step"] < 25 and "kept the lowest-objective" in res.message
    assert m._objective_value(m.u) == res.extra["best_objective"]
    assert m._fresh()  # the kept field is the one solved at the kept hyperparameters


def test_keep_best_after_a_divergence_names_the_restored_iterate():
    m = GPPDESolver("poisson1d-low", num_mixtures=4, n_col=40, seed=0)
    res = m.fit(steps=10, lr=30.0, progress=False)
    assert res.message.startswith("diverged at step 1") and res.steps == 1
    assert res.extra["best_step"] == 0  # iterate 1 gave NaN; iterate 0 is the state returned
    assert m._objective_value(m.u) == res.extra["best_objective"] == res.loss_history[0]


def test_fit_keeps_the_final_iterate_when_it_is_the_best():
    kw = dict(steps=20, progress=False)
    a = GPPDESolver("poisson1d-low", num_mixtures=4, seed=0, n_col=40)
    ra = a.fit(**kw)
    b = GPPDESolver("poisson1d-low", num_mixtures=4, seed=0, n_col=40)
    b.fit(**kw, keep_best=False)
    assert ra.extra["best_step"] == ra.steps == 20
    assert ra.extra["final_objective"] <= ra.extra["best_objective"]
    assert "kept the lowest" not in ra.message
    for p, q in zip(a._params(), b._params()):
        assert torch.equal(p, q)
    assert torch.equal(a.u, b.u)
    with pytest.raises(TypeError, match="keep_best"):
        a.fit(steps=1, progress=False, keep_best="yes")


def test_reference_method_keeps_its_last_iterate_by_default():
    """``method="ref"`` mirrors the reference code's loop, which ends at its last iterate."""
    kw = dict(steps=40, lr=0.5, progress=False)
    a = GPPDESolver("poisson1d-low", method="ref", num_mixtures=4, seed=0, n_col=40)
    ra = a.fit(**kw)
    assert "best_step" not in ra.extra and "kept the lowest" not in ra.message
    b = GPPDESolver("poisson1d-low", method="ref", num_mixtures=4, seed=0, n_col=40)
    rb = b.fit(**kw, keep_best=True)  # opting in: this run's last iterate is not its best
    assert rb.extra["best_step"] < ra.steps
    assert b._objective_value(b.u) < a._objective_value(a.u)


def test_keep_best_when_the_last_solve_fails_restores_the_evaluated_iterate():
    m = GPPDESolver("poisson1d-low", num_mixtures=4, n_col=40, seed=0)
    real, calls = m._settle, []

    def failing_once(joint, u_param):
        calls.append(joint)
        if len(calls) == 1:
            return torch.linalg.LinAlgError("factor not positive definite")
        return real(joint, u_param)

    m._settle = failing_once
    res = m.fit(steps=10, progress=False)
    assert res.extra["final_objective"] == math.inf and res.extra["best_step"] < 10
    assert "final solve failed (factor not positive definite); kept the lowest-objective" in (
        res.message
    )
    assert m._objective_value(m.u) == res.extra["best_objective"] and m._fresh()


def test_a_second_fit_continues_the_history_and_reports_its_own_best():
    """A second fit recorded its checkpoints from step 0 again and took ``rel_l2_best`` over
    every earlier fit's checkpoints too (review of 2026-12-03)."""
    m = GPPDESolver("poisson1d-low", num_mixtures=2, seed=0)
    first = m.fit(steps=6, eval_every=2, progress=False)
    assert m.history["step"] == [0, 2, 4] and m.history["fit_steps"] == [6]
    m.history["rel_l2"][0] = 0.0  # an earlier checkpoint no later fit can beat
    second = m.fit(steps=4, eval_every=2, progress=False)
    assert m.history["step"] == [0, 2, 4, 6, 8] and m.history["fit_steps"] == [6, 4]
    assert second.extra["rel_l2_best"] == min(m.history["rel_l2"][3:] + [second.extra["rel_l2"]])
    assert second.extra["rel_l2_best"] > 0.0 and "rel_l2_best" in first.extra


def test_a_fit_after_an_interrupted_one_numbers_its_steps_after_the_last_recorded(monkeypatch):
    """An interrupt inside a step whose checkpoint was already recorded counted that step as
    not done: the next fit reused its number (review of 2026-12-03)."""
    m = GPPDESolver("poisson1d-low", num_mixtures=2, seed=0)
    real, calls = torch.optim.Adam.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third update: step 2's checkpoint is recorded
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(KeyboardInterrupt):
        m.fit(steps=6, eval_every=1, progress=False)
    monkeypatch.undo()
    m.fit(steps=2, eval_every=1, progress=False)
    assert m.history["step"] == [0, 1, 2, 3, 4]


def _tiny_solver(**kw) -> GPPDESolver:
    x = torch.linspace(0, 1, 12, dtype=F64)
    return GPPDESolver(
        None, x=x, source=lambda x: torch.sin(3 * x), boundary=lambda x: 0 * x, num_mixtures=2, **kw
    )


@pytest.mark.parametrize("key, value", [("equation", "allencahn"), ("beta", 3.0)])
def test_an_equation_assigned_after_construction_is_refused(tmp_path, key, value):
    # the operator is built from the equation at construction: the live model kept the old
    # one while a checkpoint rebuilt it from the new (the loaded posterior's variance differed)
    m = _tiny_solver()
    m.fit(steps=2, progress=False)
    m.config[key] = value
    for call in (
        lambda: m.posterior(),
        lambda: m.predict(),
        lambda: m.fit(steps=1, progress=False),
        lambda: m.solve_field(),
        lambda: m.save(tmp_path / "m.pt"),
    ):
        with pytest.raises(ValueError, match=rf"config {key}=.*assigned after"):
            call()
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "key, value, kw",
    [
        ("problem", "poisson1d-low", {}),
        ("num_mixtures", 3, {}),
        ("kind", "gm", {}),
        ("nugget", 1e-4, {}),
        ("nugget", None, {"nugget": 1e-6}),
        ("freq_scale", 5.0, {}),
        ("zero_component", True, {}),
        ("zero_component", None, {"zero_component": False}),
    ],
)
def test_a_setting_read_at_construction_is_refused_at_every_use(tmp_path, key, value, kw):
    """These were refused at save only: fit, predict and the posterior went on with the
    kernels, problem and precisions built from the old value, silently. A nugget assigned to
    a model that learns its precisions neither fixed them (they kept their learned values)
    nor, the other way round, freed them (fixed precisions stayed fixed), while a checkpoint
    recorded it as if it applied. ``freq_scale`` and ``zero_component`` set the kernels'
    initial frequencies only: assigned later they changed nothing, yet were accepted and
    saved as if the kernels had started from them."""
    m = _tiny_solver(**kw)
    m.fit(steps=2, progress=False)
    before = m.config[key]
    m.config[key] = value
    for where, call in (
        ("posterior", lambda: m.posterior()),
        ("predict", lambda: m.predict()),
        ("fit", lambda: m.fit(steps=1, progress=False)),
        ("solve_field", lambda: m.solve_field()),
        ("save", lambda: m.save(tmp_path / "m.pt")),
    ):
        with pytest.raises(ValueError, match=rf"{where}: config {key}=.*assigned after"):
            call()
    assert not (tmp_path / "m.pt").exists() and m.history["fit_steps"] == [2]
    m.config[key] = before  # set back: usable, and saved
    back = GPPDESolver.load(m.save(tmp_path / "m.pt"))
    assert torch.equal(back.posterior().variance, m.posterior().variance)


def _as_older_file(path, drop):
    """Rewrite the checkpoint at ``path`` without the settings ``drop`` (as a file saved
    before they existed)."""
    ck = torch.load(path, weights_only=True)
    for k in drop:
        del ck["config"][k]
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("key, value", [("nugget", 1e-4), ("zero_component", True)])
def test_a_file_older_than_a_setting_loads_a_model_that_refuses_it_assigned(tmp_path, key, value):
    """A model loaded from a file saved before ``nugget`` (or ``zero_component``) existed had
    no such key in its config, so the key assigned afterwards was not refused (the nugget
    neither fixed the learned precisions nor was refused at save; a later load fixed them):
    the loaded config now carries the default the model was rebuilt with, and an assignment
    is refused as on a new model."""
    m = _tiny_solver()
    m.fit(steps=2, progress=False)
    path = _as_older_file(m.save(tmp_path / "m.pt"), ["nugget", "zero_component"])
    back = GPPDESolver.load(path)
    assert back.config["nugget"] is None and back.config["zero_component"] is None
    assert torch.equal(back.posterior().variance, m.posterior().variance)
    back.config[key] = value
    for where, call in (
        ("posterior", back.posterior),
        ("save", lambda: back.save(tmp_path / "again.pt")),
    ):
        with pytest.raises(ValueError, match=rf"{where}: config {key}=.*assigned after"):
            call()


def test_save_refuses_a_problem_id_or_a_config_a_load_would_refuse(tmp_path):
    m = _tiny_solver()
    m.config["problem"] = "poisson1d-low"  # a load attached that problem's exact solution
    with pytest.raises(ValueError, match="config problem='poisson1d-low' was assigned after"):
        m.save(tmp_path / "m.pt")
    m.config["problem"] = None
    m.config["nonlinear_solver"] = "newton"  # ignored live (Picard), refused by a load
    with pytest.raises(ValueError, match="save: config nonlinear_solver.*could not be loaded"):
        m.save(tmp_path / "m.pt")
    m.config["nonlinear_solver"] = "picard"
    m.config["lam_b"] = 50.0  # read at every use: saved, and the load predicts the same
    back = GPPDESolver.load(m.save(tmp_path / "m.pt"))
    assert torch.equal(back.posterior().variance, m.posterior().variance)


def test_a_loaded_registered_problem_is_not_taken_for_an_assigned_one(tmp_path):
    m = GPPDESolver("poisson1d-low", num_mixtures=2, n_col=12)
    back = GPPDESolver.load(m.save(tmp_path / "m.pt"))
    back.save(tmp_path / "again.pt")  # the file's problem id is the one it was built with
    assert back.config["problem"] == "poisson1d-low"


def test_warm_start_copies_what_its_docstring_says():
    torch.set_num_threads(1)
    a = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2, method="ref", seed=0)
    a.fit(steps=5, progress=False)
    b = GPPDESolver("poisson1d-low", n_col=16, num_mixtures=2, method="ref").warm_start_from(a)
    for p, q in zip(a._params(), b._params()):
        assert torch.equal(p.detach(), q.detach())
    # the paper's method optimises U: it restarts at zero, not re-solved by the posterior
    assert float(b.posterior().mean.abs().max()) == 0.0
    c = GPPDESolver("poisson1d-low", n_col=16, num_mixtures=2, method="ref", nugget=1e-3)
    c.warm_start_from(a)
    assert float(c.log_tau_b) == float(c.log_tau_pde) == pytest.approx(-math.log(1e-3))
    for p, q in zip(a.kernels.parameters(), c.kernels.parameters()):
        assert torch.equal(p.detach(), q.detach())


def test_best_step_is_counted_in_the_call_and_the_history_after_the_earlier_steps():
    torch.set_num_threads(1)
    m = GPPDESolver("poisson1d-low", n_col=12, num_mixtures=2, method="ref", seed=0)
    m.fit(steps=3, progress=False)
    res = m.fit(steps=30, lr=0.1, progress=False, keep_best=True, eval_every=1)
    best = res.extra["best_step"]
    assert best < 30  # Adam at this rate leaves the lowest-objective iterate
    assert res.extra["best_objective"] == min(res.loss_history)
    assert res.loss_history[best] == res.extra["best_objective"]
    recorded = dict(zip(m.history["step"], m.history["rel_l2"]))
    assert recorded[3 + best] == res.extra["rel_l2"]


@pytest.mark.parametrize(
    "kw",
    [
        dict(problem="poisson1d-low", n_col=16, weighting="identity"),
        dict(problem="poisson2d-low", n_col=7),  # prior metric: the Kronecker solve
        dict(problem="advection-low", n_col=6),  # complex eigenbasis
    ],
)
def test_posterior_matches_a_dense_gp_conditioned_on_the_collocation_equations(kw):
    """Mean and variance on a test grid against the dense Gaussian posterior of
    ``U ~ N(0, C)`` given ``g ~ N(S U, (lam_b tau_1)^-1 I)`` and ``0 ~ N(A U - f, tau_2^-1 W)``,
    then ``u(X*) | U = W U + N(0, K** - K*X C^-1 KX*)``."""
    torch.set_num_threads(1)
    kw = dict(kw)
    m = GPPDESolver(kw.pop("problem"), num_mixtures=2, seed=0, **kw)
    m.fit(steps=3, progress=False)
    ta = [torch.linspace(0.05, 0.95, 5, dtype=F64) for _ in m.shape]
    post = m.posterior(ta)
    ref = dense_posterior(m, ta)
    mu, W, var = ref["mu"], ref["W"], ref["full"].diagonal()
    torch.testing.assert_close(m.u.reshape(-1), mu, rtol=0, atol=1e-6 * float(mu.abs().max()))
    mean = post.mean.reshape(-1)
    torch.testing.assert_close(mean, W @ mu, rtol=0, atol=1e-6 * float(mean.abs().max()))
    torch.testing.assert_close(
        post.variance.reshape(-1), var, rtol=1e-5, atol=1e-6 * float(var.max())
    )


@pytest.mark.parametrize("method", ["gp-hm", "ref"])
def test_fit_leaves_no_gradients_on_the_hyperparameters(method):
    """The last step's gradients were kept on every hyperparameter after fit (memory nothing
    reads: each step clears them first); a fit ended by an error releases them too."""
    kw = dict(num_mixtures=4, n_col=40) if method == "ref" else dict(num_mixtures=2)
    m = GPPDESolver("poisson1d-low", method=method, seed=0, **kw)
    tensors = [*m.kernels.parameters(), m.log_tau_b, m.log_tau_pde]
    assert m.fit(steps=3, progress=False).steps == 3
    assert all(t.grad is None for t in tensors)

    def stop(model, step):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        m.fit(steps=3, progress=False, callback=stop, callback_every=1)
    assert all(t.grad is None for t in tensors)


def test_solve_field_of_a_linear_equation_reports_only_its_direct_solver():
    """A linear PDE is solved directly: the statistics name the solver and record no
    iterations or last update (those of the iterative nonlinear solvers)."""
    for problem, solver in (("poisson1d-low", "DenseSolve"), ("poisson2d-low", "KronSolve")):
        m = GPPDESolver(problem, n_col=8, num_mixtures=2, seed=0)
        assert m.solve_field() == {"solver": solver}
        assert m._fresh() and bool(torch.isfinite(m.u).all())


def test_mixture_weights_are_the_kernels_weights_one_per_dimension_detached():
    m = GPPDESolver("poisson2d-low", n_col=8, num_mixtures=3, seed=0)
    w = m.mixture_weights()
    assert len(w) == 2 and all(t.shape == (3,) and not t.requires_grad for t in w)
    for t, k in zip(w, m.kernels):
        assert torch.equal(t, k.log_w.detach().exp()) and bool((t > 0).all())
