"""Hybrid (validation-fitted) Step-1 covariance: structure, fit on validation only, Step 2 exact."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from linear_operator.operators import (
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

from bayesphys.posterior import GaussianPosterior
from bayesphys.probconserv import ProbConserv, trapezoid_weights
from bayesphys.probconserv.calibration import (
    coverage_scale,
    fit_hybrid,
    hybrid_covariance,
    local_root,
    select_candidate,
)
from bayesphys.probconserv.update import conserve_slices
from bayesphys.problems.gpme import make_dataset

F64 = torch.float64


def _lowrank(gen, b=3, nt=1, n=7, s=4):
    root = torch.randn(b, nt, n, s, generator=gen, dtype=F64)
    d = torch.rand(b, nt, n, generator=gen, dtype=F64) + 0.1
    return LowRankRootAddedDiagLinearOperator(
        LowRankRootLinearOperator(root), DiagLinearOperator(d)
    )


def test_hybrid_covariance_formula_and_structure():
    gen = torch.Generator().manual_seed(0)
    cov = _lowrank(gen)
    err = torch.randn(1, 7, 5, generator=gen, dtype=F64)
    beta, a, s = 0.3, 2.0, 0.7
    want = s * (beta * a * cov.to_dense() + (1 - beta) * err @ err.mT)
    out = hybrid_covariance(cov, err, beta, a, s)
    assert isinstance(out, LowRankRootAddedDiagLinearOperator)
    torch.testing.assert_close(out.to_dense(), want)
    diag = DiagLinearOperator(cov._diag_tensor.diagonal())
    out_d = hybrid_covariance(diag, err, beta, a, s)
    assert isinstance(out_d, LowRankRootAddedDiagLinearOperator)
    torch.testing.assert_close(
        out_d.to_dense(), s * (beta * a * diag.to_dense() + (1 - beta) * err @ err.mT)
    )
    dense = hybrid_covariance(cov.to_dense(), err, beta, a, s)
    torch.testing.assert_close(dense, want)
    # beta = 1: the model covariance, scaled
    torch.testing.assert_close(
        hybrid_covariance(cov, err, 1.0, a, s).to_dense(), s * a * cov.to_dense()
    )


def test_coverage_scale_puts_90_percent_inside():
    z = torch.randn(20000, generator=torch.Generator().manual_seed(1), dtype=F64) * 3.0
    s = coverage_scale(z)
    assert s == pytest.approx(9.0, rel=0.05)
    assert float((z.abs() / math.sqrt(s) <= 1.6448536269514722).double().mean()) == pytest.approx(
        0.9, abs=1e-3
    )


def error_direction_set(device="cpu"):
    """40 validation functions on 9 points whose errors lie along a fixed direction the model
    covariance ignores: ``fit_hybrid``'s arguments ``(mean, cov, truth, update, t, x)``."""
    gen = torch.Generator().manual_seed(2)
    v, n = 40, 9
    x = torch.linspace(0, 1, n, dtype=F64)
    g = trapezoid_weights(x)
    truth = torch.rand(v, 1, n, generator=gen, dtype=F64)
    direction = torch.zeros(n, dtype=F64)
    direction[2:5] = 1.0
    amp = torch.randn(v, 1, 1, generator=gen, dtype=F64)
    mean = truth + amp * direction + 1e-3 * torch.randn(v, 1, n, generator=gen, dtype=F64)
    cov = DiagLinearOperator(torch.ones(v, 1, n, dtype=F64) * 0.01)
    mass = truth @ g  # [v, 1]
    mean, truth, mass, x, cov = (t.to(device) for t in (mean, truth, mass, x, cov))

    def update(p, idx):
        return conserve_slices(p, x, mass[idx])

    return mean, cov, truth, update, torch.tensor([0.5], device=device), x


def test_fit_hybrid_recovers_error_direction():
    """Errors along a fixed direction the model covariance ignores: beta < 1 is chosen and the
    update mean moves towards the truth."""
    mean, cov, truth, update, t, x = error_direction_set()
    v, n = truth.shape[0], truth.shape[-1]
    cal = fit_hybrid(mean, cov, truth, update, t, x)
    assert cal.beta < 1.0
    assert cal.cv_mse[(0, cal.beta)] < cal.cv_mse[(0, 1.0)]
    assert cal.err_root.shape == (1, n, v)
    torch.testing.assert_close(cal.err_root, (mean - truth).permute(1, 2, 0) / math.sqrt(v))
    assert cal.prior_scale > 0 and cal.post_scale > 0
    # provenance: the rule, and each candidate's paired standard error against the best
    assert cal.selection == "min" and set(cal.cv_se) == set(cal.cv_mse)
    assert cal.cv_se[min(cal.cv_mse, key=cal.cv_mse.get)] == 0.0
    assert all(se >= 0 for se in cal.cv_se.values())
    one_se = fit_hybrid(mean, cov, truth, update, t, x, selection="one_se")
    assert one_se.selection == "one_se" and one_se.cv_mse == cal.cv_mse
    chosen, best = (one_se.neighbours, one_se.beta), min(cal.cv_mse, key=cal.cv_mse.get)
    assert cal.cv_mse[chosen] <= cal.cv_mse[best] + cal.cv_se[chosen]
    # a calibration saved before these fields existed loads with the rule it used
    old = {k: v for k, v in cal.state().items() if k not in ("selection", "cv_se")}
    back = type(cal).from_state(old)
    assert back.selection == "min" and back.cv_se is None and back.beta == cal.beta


def test_select_candidate_min_and_one_se():
    """ "min" takes the smallest held-out MSE; "one_se" the candidate nearest the model's own
    covariance (largest beta, then K = 0, then smaller K) within one paired standard error."""
    v = 50
    noise = torch.linspace(-1.0, 1.0, v, dtype=F64)
    noise = noise - noise.mean()  # zero mean: each candidate's MSE is its constant
    # a near tie: (20, 0.1) best by 0.01; the paired sd of the differences with (0, 1.0) is
    # 0.2 sd(noise) ~ 0.117, its standard error 0.0165 > 0.01; (0, 0.5) is far off
    means = {(0, 1.0): 1.01, (0, 0.5): 1.2, (20, 0.1): 1.0, (20, 0.5): 1.005}
    sign = {(0, 1.0): -0.1, (0, 0.5): 0.1, (20, 0.1): 0.1, (20, 0.5): -0.1}
    per = {c: m + sign[c] * noise for c, m in means.items()}
    cv = {c: float(p.mean()) for c, p in per.items()}
    assert select_candidate(cv, per, "min") == (20, 0.1)
    assert select_candidate(cv, per, "one_se") == (0, 1.0)
    # a clear gap (identical noise, so the paired sd is 0): one_se keeps the best
    same = {c: torch.full((v,), m, dtype=F64) + noise for c, m in means.items()}
    cv_same = {c: float(p.mean()) for c, p in same.items()}
    assert select_candidate(cv_same, same, "one_se") == (20, 0.1)
    # within the band, larger beta first, then K = 0 before analogs, then smaller K
    tie = {(0, 0.5): 1.0, (20, 0.9): 1.0, (50, 0.9): 1.0, (0, 0.3): 0.999}
    per_tie = {
        c: torch.full((v,), m, dtype=F64) + noise * (i + 1) for i, (c, m) in enumerate(tie.items())
    }
    cv_tie = {c: float(p.mean()) for c, p in per_tie.items()}
    assert select_candidate(cv_tie, per_tie, "one_se") == (20, 0.9)
    with pytest.raises(ValueError, match="selection"):
        select_candidate(cv_tie, per_tie, "one-se")
    with pytest.raises(ValueError, match="candidate"):
        select_candidate({}, {}, "one_se")


def test_fit_hybrid_rejects_unknown_selection():
    x = torch.linspace(0, 1, 5, dtype=F64)
    mean = torch.zeros(6, 1, 5, dtype=F64)
    cov = DiagLinearOperator(torch.ones(6, 1, 5, dtype=F64))
    with pytest.raises(ValueError, match="selection"):
        fit_hybrid(mean, cov, mean, lambda p, i: p, torch.tensor([0.5]), x, selection="best")


def test_local_root_uses_nearest_validation_errors():
    gen = torch.Generator().manual_seed(3)
    val_mean = torch.arange(6, dtype=F64).reshape(6, 1, 1).expand(6, 1, 4).clone()
    err = torch.randn(6, 1, 4, generator=gen, dtype=F64)
    mean = torch.tensor([0.1, 4.9], dtype=F64).reshape(2, 1, 1).expand(2, 1, 4)
    root = local_root(err, val_mean, mean, 2)
    assert root.shape == (2, 1, 4, 2)
    torch.testing.assert_close(
        root[0] @ root[0].mT, (err[0].mT @ err[0] + err[1].mT @ err[1])[None] / 2
    )
    torch.testing.assert_close(
        root[1] @ root[1].mT, (err[4].mT @ err[4] + err[5].mT @ err[5])[None] / 2
    )


@pytest.fixture(scope="module")
def calibrated():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = ProbConserv("pme", step1="anp", hidden=16, n_samples=8, seed=0)
        m.fit(steps=10, progress=False)
        val = make_dataset("pme", 12, seed=5)
        beta = m.calibrate(val, objective="hybrid", neighbours=(0, 3))
        yield m, val, beta
    finally:
        torch.set_num_threads(n)


def test_model_hybrid_fitted_on_validation_only(calibrated):
    model, val, beta = calibrated
    cal = model.calibration
    assert beta == cal.beta and 0 < beta <= 1 and model.var_scale == 1.0
    # the error root is exactly (Step-1 mean - truth) of the 12 validation functions
    raw = model._step1(val, None, None, seed=0, stage="raw")
    x = model.problem.grid(201)
    truth = model.problem.solution(0.5, x, val.params[:, None, None])
    want = (raw.mean - truth).permute(1, 2, 0) / math.sqrt(len(val))
    torch.testing.assert_close(cal.err_root, want)


def test_model_hybrid_update_exact_and_round_trip(calibrated, tmp_path):
    model, _, _ = calibrated
    test = make_dataset("pme", params=[6.0, 3.0], seed=11)
    g = trapezoid_weights(model.problem.grid(201))
    post = model.posterior(test)
    torch.testing.assert_close(post.mean @ g, model.mass(test), rtol=0, atol=1e-10)
    draws = post.sample((16,), generator=torch.Generator().manual_seed(0))
    assert float((draws @ g - model.mass(test)).abs().max()) < 1e-10
    prior = model.step1(test)
    assert isinstance(prior, GaussianPosterior)
    assert isinstance(prior.covariance, LowRankRootAddedDiagLinearOperator)
    back = ProbConserv.load(model.save(tmp_path / "cal.pt"))
    b = back.posterior(test)
    assert torch.equal(b.mean, post.mean) and torch.equal(b.variance, post.variance)
    assert back.calibration.beta == model.calibration.beta
    assert back.calibration.selection == model.calibration.selection == "one_se"
    assert back.calibration.cv_se == model.calibration.cv_se


def test_model_hybrid_other_grid_warns(calibrated, tmp_path):
    model, _, _ = calibrated
    test = make_dataset("pme", params=[3.0], seed=1)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        post = model.posterior(test, t=0.3)
    assert any("another (t, x) grid" in str(w.message) for w in rec)
    g = trapezoid_weights(model.problem.grid(201))
    torch.testing.assert_close(post.mean @ g, model.mass(test, 0.3), rtol=0, atol=1e-10)
    # a scalar objective removes the hybrid calibration
    other = ProbConserv.load(model.save(tmp_path / "m.pt"))
    other.calibrate(make_dataset("pme", 4, seed=3))
    assert other.calibration is None


def test_gp_hybrid_several_slices_conserve():
    torch.set_num_threads(1)
    gp = ProbConserv("pme", step1="gp", gp_width=8, seed=1)
    gp.fit(steps=3, progress=False)
    tt = torch.tensor([0.3, 0.5], dtype=F64)
    gp.calibrate(make_dataset("pme", 8, seed=4), t=tt, objective="hybrid", neighbours=(0, 2))
    assert gp.calibration.err_root.shape == (2, 201, 8)
    test = make_dataset("pme", params=[6.0], seed=2)
    post = gp.posterior(test, t=tt)
    assert post.covariance.shape == (1, 2, 201, 201)
    g = trapezoid_weights(gp.problem.grid(201))
    torch.testing.assert_close(post.mean @ g, gp.mass(test, tt), rtol=0, atol=1e-10)
    draws = post.sample((8,), generator=torch.Generator().manual_seed(1))
    assert float((draws @ g - gp.mass(test, tt)).abs().max()) < 1e-10


def test_model_selection_reaches_fit_hybrid(calibrated, monkeypatch):
    """``calibrate(selection=...)`` is the rule ``fit_hybrid`` applies; bad names are refused
    before any work."""
    import bayesphys.probconserv._model_calibration as model_mod

    model, val, _ = calibrated
    seen = []
    real = model_mod.fit_hybrid

    def spy(*args, **kw):
        seen.append(kw["selection"])
        return real(*args, **kw)

    monkeypatch.setattr(model_mod, "fit_hybrid", spy)
    model.calibrate(val, objective="hybrid", neighbours=(0, 3), selection="min")
    model.calibrate(val, objective="hybrid", neighbours=(0, 3))
    assert seen == ["min", "one_se"]  # one_se: the default
    with pytest.raises(ValueError, match="selection"):
        model.calibrate(val, objective="hybrid", selection="smallest")
    assert seen == ["min", "one_se"]


def test_failed_calibration_keeps_the_previous_one(calibrated, monkeypatch):
    """Bad sizes are refused before any work; a failure part-way (here in the conditional
    scale, after the hybrid covariance was fitted) restores the previous calibration."""
    import bayesphys.probconserv._model_calibration as model_mod

    model, val, _ = calibrated
    before, scale = model.calibration, model.var_scale
    for bad, err in ((2, ValueError), (2.5, TypeError), (-1, ValueError)):
        with pytest.raises(err, match="local_functions"):
            model.calibrate(val, objective="hybrid", local_functions=bad)
    with pytest.raises(ValueError, match="local_functions: only with objective='hybrid'"):
        model.calibrate(val, objective="ll", local_functions=8)
    # too few validation functions for the conditional scale's parameter map: said up front
    with pytest.raises(ValueError, match="needs >= 10 validation functions, received 8"):
        model.calibrate(n_functions=8, objective="hybrid", local_functions=8)
    assert model.calibration is before and model.var_scale == scale

    def broken(*args, **kwargs):
        raise RuntimeError("conditional scale failed")

    monkeypatch.setattr(model_mod, "fit_local", broken)
    with pytest.raises(RuntimeError, match="conditional scale failed"):
        model.calibrate(val, objective="hybrid", neighbours=(0, 3), local_functions=8)
    assert model.calibration is before and model.var_scale == scale


def test_hybrid_covariance_return_types_are_those_documented():
    """beta = 1 with a diagonal covariance keeps it diagonal; a dense covariance comes back
    dense in its own dtype (the docstring said float64 whatever the input)."""
    from linear_operator.operators import DiagLinearOperator

    from bayesphys.probconserv.calibration import hybrid_covariance

    g = torch.Generator().manual_seed(0)
    d = torch.rand(2, 3, 5, generator=g, dtype=torch.float64) + 0.1
    err_root = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    out = hybrid_covariance(DiagLinearOperator(d), err_root, beta=1.0, a=2.0, scale=0.5)
    assert isinstance(out, DiagLinearOperator)
    assert torch.equal(out.diagonal(), 0.5 * 2.0 * d)
    dense = torch.eye(5, dtype=torch.float32).expand(2, 3, 5, 5)
    out = hybrid_covariance(dense, err_root, beta=0.5, a=1.0, scale=1.0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    e = err_root.float()
    assert torch.allclose(out, 0.5 * dense + 0.5 * (e @ e.mT))


def test_calibration_arguments_are_checked_by_name():
    import dataclasses
    import types

    mean, cov, truth, update, t, x = error_direction_set()
    v, n = truth.shape[0], truth.shape[-1]
    cases = [
        ({"mean": mean[0]}, ValueError, r"^mean: expected shape \[V, nt, N\], received \(1, 9\)$"),
        (
            {"cov": DiagLinearOperator(torch.ones(v, 1, n - 1, dtype=F64))},
            ValueError,
            rf"^cov: expected shape \({v}, 1, {n}, {n}\) \(one covariance per function",
        ),
        ({"t": torch.tensor([0.5, 0.6])}, ValueError, r"^t: expected shape \(1,\) \(one per"),
        ({"neighbours": ()}, ValueError, r"^neighbours: expected at least one analog size"),
        ({"local_scale": 1}, TypeError, r"^local_scale: expected True or False, received 1$"),
    ]
    kw = dict(mean=mean, cov=cov, truth=truth, update=update, t=t, x=x)
    for change, err, match in cases:
        with pytest.raises(err, match=match):
            fit_hybrid(**{**kw, **change})
    few = dict(
        mean=mean[:3], cov=DiagLinearOperator(torch.ones(3, 1, n, dtype=F64)), truth=truth[:3]
    )
    with pytest.raises(
        ValueError, match=r"^validation set: expected at least 4 functions, received 3$"
    ):
        fit_hybrid(**{**kw, **few})
    cal = fit_hybrid(mean, cov, truth, update, t, x)
    with pytest.raises(ValueError, match=r"^scale: expected finite values >= 0$"):
        hybrid_covariance(cov, cal.err_root, 0.5, 1.0, torch.tensor([[-1.0]], dtype=F64))
    # a parameter-conditional calibration reads the masses: without them it is refused
    local = dataclasses.replace(cal, local=types.SimpleNamespace())
    with pytest.raises(
        ValueError, match=r"^mass: the parameter-conditional scale needs the masses \[B, nt\]$"
    ):
        local.scale_for(mean[:2], "post")


def test_an_update_without_an_introspectable_signature_is_taken_as_it_is():
    from bayesphys.probconserv.calibration import _check_update

    assert _check_update(max) is max  # a builtin: nothing to check beforehand
    with pytest.raises(TypeError, match=r"^update: expected a callable update\(prior, idx\) of"):
        _check_update(lambda prior: prior)


def test_fit_hybrid_takes_a_float32_validation_set():
    # float32 mean, truth and covariance failed at the end ("Index put requires the source and
    # destination dtypes match"): the coverage z-scores are float64, as the errors
    mean, cov, truth, _, t, x = error_direction_set()
    want = fit_hybrid(mean, cov, truth, _update_of(x, truth), t, x)
    f32 = torch.float32
    mean32, truth32, x32 = mean.to(f32), truth.to(f32), x.to(f32)
    cov32 = DiagLinearOperator(cov.diagonal().to(f32))
    got = fit_hybrid(mean32, cov32, truth32, _update_of(x32, truth32), t.to(f32), x32)
    assert (got.neighbours, got.beta) == (want.neighbours, want.beta)
    assert got.prior_scale == pytest.approx(want.prior_scale, rel=1e-3)
    assert got.post_scale == pytest.approx(want.post_scale, rel=1e-3)


def _update_of(x, truth):
    """Step 2 of ``error_direction_set``'s functions on grid ``x`` in ``truth``'s dtype."""
    mass = truth @ trapezoid_weights(x).to(truth.dtype)

    def update(p, idx):
        return conserve_slices(p, x, mass[idx])

    return update
