"""Parameter-conditional (localized split-conformal) variance scale."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.probconserv import ProbConserv, trapezoid_weights
from bayesphys.probconserv.calibration import coverage_scale
from bayesphys.probconserv.conditional import (
    Z90,
    binned_coverage_error,
    choose_bandwidth,
    fit_parameter_map,
    local_coverage_scale,
    to_unit,
)
from bayesphys.problems.gpme import make_dataset

F64 = torch.float64


def _hetero(seed: int, m: int, n: int = 50):
    """z-scores whose spread grows with the parameter: sd(theta) = exp(1.2 theta)."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.rand(m, generator=gen, dtype=F64) * 2 - 1
    z = torch.randn(m, 1, n, generator=gen, dtype=F64) * torch.exp(1.2 * theta)[:, None, None]
    return theta, z


def test_infinite_bandwidth_is_the_pooled_scale():
    theta, z = _hetero(0, 200)
    s = local_coverage_scale(z.abs(), theta, torch.tensor([-0.9, 0.0, 0.7], dtype=F64), math.inf)
    assert s.shape == (3, 1)
    assert torch.allclose(s, s[0].expand_as(s))
    # the same 90 % quantile of |z| as the pooled scale (up to the interpolation rule)
    assert float(s[0, 0]) == pytest.approx(coverage_scale(z), rel=2e-3)
    inside = (z.abs() <= Z90 * s[0, 0].sqrt()).double().mean()
    assert float(inside) == pytest.approx(0.9, abs=1e-3)


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95])
def test_scale_makes_the_central_level_interval_cover_level(level):
    gen = torch.Generator().manual_seed(3)
    m, n = 40, 25
    absz = (2.0 * torch.randn(m, 2, n, generator=gen, dtype=F64)).abs()
    u = torch.rand(m, generator=gen, dtype=F64) * 2 - 1
    s = local_coverage_scale(absz, u, torch.zeros(1, dtype=F64), math.inf, level=level)
    zq = float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=F64)))
    half = zq * s[0].sqrt() * (1 + 1e-12)  # the half-width of the central level interval
    inside = (absz <= half[None, :, None]).double().mean((0, 2))  # [nt]
    # the smallest pooled |z| reaching level: coverage in [level, level + 1 / (M N))
    # (level = 0.5 covered 22 %: the scale divided the level quantile by z_0.95)
    assert bool((inside >= level).all()) and bool((inside < level + 1 / (m * n)).all())


def test_uninformative_feature_gives_the_pooled_scale():
    """Features independent of the errors: every local scale is the pooled one (within
    sampling error) and the 2-fold choice does not prefer a narrow kernel."""
    gen = torch.Generator().manual_seed(1)
    m = 400
    theta = torch.rand(m, generator=gen, dtype=F64) * 2 - 1
    z = torch.randn(m, 1, 50, generator=gen, dtype=F64) * 0.3
    pooled = local_coverage_scale(z.abs(), theta, torch.zeros(1, dtype=F64), math.inf)
    q = torch.linspace(-1, 1, 5, dtype=F64)
    local = local_coverage_scale(z.abs(), theta, q, 0.4)
    assert torch.allclose(local, pooled.expand_as(local), rtol=0.1)
    h, cv = choose_bandwidth(z.abs(), theta, theta, -1.0, 1.0)
    assert cv[math.inf] <= min(cv.values()) + 0.01


def test_local_scale_fixes_conditional_coverage():
    theta, z = _hetero(2, 400)
    h, cv = choose_bandwidth(z.abs(), theta, theta, -1.0, 1.0)
    assert h < math.inf and cv[h] < 0.5 * cv[math.inf]
    # fresh functions from the same distribution
    t2, z2 = _hetero(3, 600)
    pooled = local_coverage_scale(z.abs(), theta, t2, math.inf)
    local = local_coverage_scale(z.abs(), theta, t2, h)
    e_pooled = binned_coverage_error(z2, pooled, t2, -1.0, 1.0)
    e_local = binned_coverage_error(z2, local, t2, -1.0, 1.0)
    assert e_pooled > 0.05 and e_local < 0.03
    edges = torch.linspace(-1, 1, 6, dtype=F64)
    inside = (z2.abs() <= Z90 * local.sqrt()[..., None]).double().mean((-1, -2))
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (t2 >= a) & (t2 < b)
        assert 0.85 <= float(inside[sel].mean()) <= 0.95


def test_parameter_map_recovers_theta_from_mean_and_mass():
    gen = torch.Generator().manual_seed(4)
    v, n = 60, 30
    x = torch.linspace(0, 1, n, dtype=F64)
    theta = 1 + 4 * torch.rand(v, generator=gen, dtype=F64)
    mean = (torch.exp(-theta[:, None] * x))[:, None] + 1e-3 * torch.randn(
        v, 1, n, generator=gen, dtype=F64
    )
    mass = torch.zeros(v, 1, dtype=F64)  # constant: dropped, no NaN
    pm = fit_parameter_map(mean, mass, theta, (1.0, 5.0))
    t2 = 1 + 4 * torch.rand(20, generator=gen, dtype=F64)
    m2 = torch.exp(-t2[:, None] * x)[:, None]
    est = pm(m2, torch.zeros(20, 1, dtype=F64))
    assert float((est - t2).abs().max()) < 0.25
    u = pm.unit(m2, torch.zeros(20, 1, dtype=F64))
    assert float(u.min()) >= -1 and float(u.max()) <= 1
    # uninformative means, informative mass
    noise = torch.randn(v, 1, n, generator=gen, dtype=F64)
    pm2 = fit_parameter_map(noise, theta[:, None].sqrt(), theta, (1.0, 5.0))
    torch.testing.assert_close(pm2(noise, theta[:, None].sqrt()), theta, atol=0.05, rtol=0)
    torch.testing.assert_close(
        to_unit(torch.tensor([0.0, 3.0, 9.0], dtype=F64), 1.0, 5.0),
        torch.tensor([-1.0, 0.0, 1.0], dtype=F64),
    )


def test_parameter_map_without_ridge_is_least_squares():
    """ridge = 0 with a dropped constant column (the zero mass of the periodic diffusion
    problem) is the least-squares fit; the solve of the singular F^T F raised LinAlgError."""
    gen = torch.Generator().manual_seed(5)
    v, n = 30, 12
    theta = torch.rand(v, generator=gen, dtype=F64)
    mean = torch.randn(v, 1, n, generator=gen, dtype=F64)
    mass = torch.zeros(v, 1, dtype=F64)
    pm = fit_parameter_map(mean, mass, theta, (0.0, 1.0), rank=2, ridge=0.0)
    f = pm.features(mean, mass)  # [V, 6]: psi (2), psi^2 (2), mass and mass^2 (dropped)
    assert bool((f[:, 4:] == 0).all()) and bool((pm.coef[5:] == 0).all())
    design = torch.cat([torch.ones(v, 1, dtype=F64), f[:, :4]], -1)
    ref = torch.linalg.lstsq(design, theta[:, None]).solution[:, 0]
    torch.testing.assert_close(pm.coef[:5], ref, rtol=1e-10, atol=1e-12)


def test_per_function_lengths_are_checked():
    absz = torch.rand(8, 2, 5, dtype=F64)
    ok, short = torch.rand(8, dtype=F64), torch.rand(5, dtype=F64)
    with pytest.raises(ValueError, match=r"theta: expected shape \(8,\)"):  # was IndexError
        binned_coverage_error(absz, torch.ones(8, 2, dtype=F64), short, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"u: expected shape \(8,\)"):
        choose_bandwidth(absz, short, ok, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"theta: expected shape \(8,\)"):
        choose_bandwidth(absz, ok, short, 0.0, 1.0)
    h, cv = choose_bandwidth(absz, ok * 2 - 1, ok, 0.0, 1.0)
    assert h in cv and all(math.isfinite(e) for e in cv.values())


def test_bad_inputs_raise():
    theta, z = _hetero(5, 20)
    with pytest.raises(ValueError, match="bandwidth"):
        local_coverage_scale(z.abs(), theta, theta, 0.0)
    with pytest.raises(ValueError, match="u: expected 20"):
        local_coverage_scale(z.abs(), theta[:5], theta, 0.2)
    with pytest.raises(ValueError, match="dimensions"):
        local_coverage_scale(z[:, 0], theta, theta, 0.2)
    with pytest.raises(ValueError, match="finite"):
        local_coverage_scale(z.abs() * math.nan, theta, theta, 0.2)
    mean = torch.randn(20, 1, 7, dtype=F64)
    with pytest.raises(ValueError, match="train_range"):
        fit_parameter_map(mean, torch.zeros(20, 1, dtype=F64), theta, (1.0, 1.0))
    with pytest.raises(ValueError, match="functions"):
        fit_parameter_map(mean, torch.zeros(19, 1, dtype=F64), theta, (0.0, 1.0))
    pm = fit_parameter_map(mean, torch.zeros(20, 1, dtype=F64), theta, (-1.0, 1.0))
    with pytest.raises(ValueError, match="calibration grid"):
        pm(torch.randn(2, 1, 5, dtype=F64), torch.zeros(2, 1, dtype=F64))


def test_model_local_scale_conserves_and_round_trips(tmp_path):
    torch.set_num_threads(1)
    m = ProbConserv("pme", step1="anp", hidden=16, n_samples=8, seed=0)
    m.fit(steps=5, progress=False)
    with pytest.raises(ValueError, match="only with objective='hybrid'"):
        m.calibrate(make_dataset("pme", 12, seed=5), local_functions=20)
    m.calibrate(make_dataset("pme", 12, seed=5), objective="hybrid", local_functions=20)
    loc = m.calibration.local
    assert set(loc.bandwidth) == {"prior", "post"} and loc.absz["post"].shape == (20, 1, 201)
    test = make_dataset("pme", params=[1.5, 5.5], seed=11)
    post = m.posterior(test)
    g = trapezoid_weights(m.problem.grid(201))
    torch.testing.assert_close(post.mean @ g, m.mass(test), rtol=0, atol=1e-10)
    draws = post.sample((8,), generator=torch.Generator().manual_seed(0))
    assert float((draws @ g - m.mass(test)).abs().max()) < 1e-10
    # the limit update's mean does not depend on the (per-function) scale
    pooled = ProbConserv.load(m.save(tmp_path / "a.pt"))
    pooled.calibration.local = None
    torch.testing.assert_close(pooled.posterior(test).mean, post.mean)
    back = ProbConserv.load(m.save(tmp_path / "b.pt"))
    b = back.posterior(test)
    assert torch.equal(b.mean, post.mean) and torch.equal(b.variance, post.variance)
    assert back.calibration.local.bandwidth == loc.bandwidth


def test_range_margin_draws_calibration_functions_beyond_the_range(monkeypatch):
    import bayesphys.probconserv._model_calibration as mc

    torch.set_num_threads(1)
    m = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0)
    m.fit(steps=5, progress=False)
    val = make_dataset("diffusion", 12, seed=5)
    m.calibrate(val, objective="hybrid", local_functions=40, range_margin=0.0)
    inside = m.calibration.local.u.clone()
    m.calibrate(val, objective="hybrid", local_functions=40)
    default = m.calibration.local.u.clone()
    drawn, drawn_val = [], []

    def spy(into, size=None):
        def draw(*args, **kw):
            data = make_dataset(*args, **kw)
            if size is None or len(data) == size:
                into.append(data.params)
            return data

        return draw

    monkeypatch.setattr(mc, "make_dataset", spy(drawn))
    m.calibrate(val, objective="hybrid", local_functions=40, range_margin=0.0)
    assert torch.equal(m.calibration.local.u, inside)  # 0: the training range
    m.calibrate(val, objective="hybrid", local_functions=40, range_margin=0.05)
    assert torch.equal(m.calibration.local.u, default)  # the default margin
    m.calibrate(val, objective="hybrid", local_functions=40, range_margin=0.2)
    assert not torch.equal(m.calibration.local.u, inside)
    # the calibration functions' parameters reach up to a fifth of the range beyond each end
    lo, hi = m.problem.train_range
    w = hi - lo
    assert lo <= float(drawn[0].min()) and float(drawn[0].max()) <= hi
    assert float(drawn[2].min()) < lo and float(drawn[2].max()) > hi
    assert lo - w / 5 <= float(drawn[2].min()) and float(drawn[2].max()) <= hi + w / 5
    torch.testing.assert_close(drawn[2], lo - w / 5 + (drawn[0] - lo) * 1.4)
    torch.testing.assert_close(drawn[1], lo - w / 20 + (drawn[0] - lo) * 1.1)
    # without data, the validation functions calibrate draws itself are widened as well
    # (hybrid only; the scalar objectives keep the training distribution)
    # the validation draws only (16 functions; the 40 local ones were checked above)
    monkeypatch.setattr(mc, "make_dataset", spy(drawn_val, size=16))
    m.calibrate(n_functions=16, objective="hybrid", local_functions=40, range_margin=0.2)
    m.calibrate(n_functions=16, objective="hybrid", local_functions=40, range_margin=0.0)
    m.calibrate(n_functions=16, objective="ll")
    with pytest.raises(ValueError, match="range_margin: only with objective='hybrid'"):
        m.calibrate(n_functions=16, objective="ll", range_margin=0.2)  # was silently unused
    torch.testing.assert_close(drawn_val[0], lo - w / 5 + (drawn_val[1] - lo) * 1.4)
    assert torch.equal(drawn_val[2], drawn_val[1])
    for bad, err in ((-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError)):
        with pytest.raises(err, match="range_margin"):
            m.calibrate(val, objective="hybrid", local_functions=40, range_margin=bad)
    # a margin that leaves the family's domain (diffusion needs k > 0: 1 - 0.3 * 4 < 0)
    with pytest.raises(ValueError, match=r"range_margin = 0.3: expected k in \(0, inf\)"):
        m.calibrate(val, objective="hybrid", local_functions=40, range_margin=0.3)


def test_conditional_scale_arguments_are_checked_by_name():
    from bayesphys.probconserv import fit_local_scale

    theta, z = _hetero(5, 20)
    with pytest.raises(TypeError, match=r"^mean: expected a Tensor, received list$"):
        fit_parameter_map([[0.0]], torch.zeros(20, 1, dtype=F64), theta, (-1.0, 1.0))
    mean = torch.randn(20, 1, 7, generator=torch.Generator().manual_seed(0), dtype=F64)
    mass = torch.randn(20, 1, generator=torch.Generator().manual_seed(1), dtype=F64)
    with pytest.raises(
        ValueError, match=r"^rank: expected 1 <= rank and >= 2 rank \+ 4 functions, got 9, 20$"
    ):
        fit_parameter_map(mean, mass, theta, (-1.0, 1.0), rank=9)
    pm = fit_parameter_map(mean, mass, theta, (-1.0, 1.0))
    with pytest.raises(ValueError, match=r"^mass: expected shape \(2, 1\), received \(3, 1\)$"):
        pm.features(mean[:2], mass[:3])
    with pytest.raises(ValueError, match=r"^level: expected in \(0, 1\), received 1\.0$"):
        local_coverage_scale(z.abs(), theta, theta, 0.2, level=1.0)
    with pytest.raises(ValueError, match=r"^lo, hi: expected lo < hi, received \(1\.0, 1\.0\)$"):
        binned_coverage_error(z.abs(), torch.ones(20, 1, dtype=F64), theta, 1.0, 1.0)
    with pytest.raises(
        ValueError, match=r"^calibration set: expected at least 4 functions, received 3$"
    ):
        choose_bandwidth(z[:3].abs(), theta[:3], theta[:3], -1.0, 1.0)
    cal_theta, cal_z = _hetero(6, 12)
    cal_mean = torch.randn(12, 1, 7, generator=torch.Generator().manual_seed(2), dtype=F64)
    cal_mass = torch.randn(12, 1, generator=torch.Generator().manual_seed(3), dtype=F64)
    args = (mean, mass, theta, cal_mean, cal_mass, cal_theta)
    with pytest.raises(
        TypeError, match=r"^z: expected a dict \{stage: z-scores\}, received Tensor$"
    ):
        fit_local_scale(*args, cal_z, (-1.0, 1.0))
    with pytest.raises(ValueError, match=r"^z: expected at least one stage"):
        fit_local_scale(*args, {}, (-1.0, 1.0))
    with pytest.raises(ValueError, match=r"^z\['post'\]: expected shape \(12, 1, 7\), received"):
        fit_local_scale(*args, {"post": cal_z}, (-1.0, 1.0))
    local = fit_local_scale(*args, {"post": torch.randn(12, 1, 7, dtype=F64)}, (-1.0, 1.0))
    with pytest.raises(ValueError, match=r"^stage: expected one of \['post'\], received 'prior'"):
        local.scale(cal_mean[:2], cal_mass[:2], "prior")
    assert local.scale(cal_mean[:2], cal_mass[:2], "post").shape == (2, 1)


def test_a_query_far_from_every_calibration_function_gets_the_pooled_scale():
    """Kernel weights that all underflow (a query 40 bandwidths from every calibration
    function) fall back to equal weights: the pooled scale, not a division by zero."""
    theta, z = _hetero(5, 20)
    far = torch.tensor([50.0], dtype=F64)
    s = local_coverage_scale(z.abs(), theta, far, 0.2)
    pooled = local_coverage_scale(z.abs(), theta, far, math.inf)
    assert bool(torch.isfinite(s).all()) and torch.equal(s, pooled)
