"""Mass-residual discrepancy (bayesphys.probconserv.mass_check)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from linear_operator.operators import (
    DenseLinearOperator,
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

from bayesphys.probconserv import ProbConserv, trapezoid_weights
from bayesphys.probconserv.mass_check import (
    add_discrepancy,
    discrepancy_roots,
    discrepancy_variance,
    fit_mass_kappa,
    gated_discrepancy_variance,
    mass_residual,
    outside_training_range,
)
from bayesphys.problems.gpme import make_dataset

F64 = torch.float64


def _dense(c):
    return c if isinstance(c, torch.Tensor) else c.to_dense()


def _covs(gen, b, nt, n, r):
    d = torch.rand(b, nt, n, generator=gen, dtype=F64) + 0.1
    root = torch.randn(b, nt, n, r, generator=gen, dtype=F64)
    a = torch.randn(b, nt, n, n, generator=gen, dtype=F64)
    return [
        DiagLinearOperator(d),
        LowRankRootAddedDiagLinearOperator(LowRankRootLinearOperator(root), DiagLinearOperator(d)),
        a @ a.mT + torch.eye(n, dtype=F64),
        DenseLinearOperator(a @ a.mT + torch.eye(n, dtype=F64)),
    ]


def _grid(gen, n):
    return torch.sort(torch.rand(n, generator=gen, dtype=F64)).values + torch.arange(n) * 1e-3


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 3),
    nt=st.integers(1, 3),
    n=st.integers(2, 9),
    r=st.integers(1, 4),
)
def test_residual_and_added_discrepancy_equal_the_dense_formulas(seed, b, nt, n, r):
    gen = torch.Generator().manual_seed(seed)
    g = trapezoid_weights(_grid(gen, n))
    mean = torch.randn(b, nt, n, generator=gen, dtype=F64)
    mass = torch.randn(b, nt, generator=gen, dtype=F64)
    sd2 = torch.rand(b, nt, generator=gen, dtype=F64)
    sd2[0, 0] = 0.0  # a function without discrepancy beside ones with
    root = torch.randn(n, 3, generator=gen, dtype=F64)
    for cov in _covs(gen, b, nt, n, r):
        dense = _dense(cov)
        res, var = mass_residual(mean, cov, g, mass)
        torch.testing.assert_close(res, mean @ g - mass, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(var, g @ dense @ g, rtol=1e-10, atol=1e-12)
        want = dense + sd2[..., None, None] * (root @ root.T)
        torch.testing.assert_close(_dense(add_discrepancy(cov, sd2, root)), want)
        assert add_discrepancy(cov, torch.zeros_like(sd2), root) is cov


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 60), frac=st.floats(0.02, 0.5))
def test_kernel_roots_and_the_mass_neutral_part(seed, n, frac):
    gen = torch.Generator().manual_seed(seed)
    x = _grid(gen, n)
    g = trapezoid_weights(x)
    ell = frac * float(x[-1] - x[0])
    root, perp, gkg = discrepancy_roots(x, g, ell)
    k = torch.exp(-0.5 * (x[:, None] - x[None, :]).pow(2) / ell**2)
    torch.testing.assert_close(root @ root.T, k, rtol=0, atol=1e-9)
    assert gkg == pytest.approx(float(g @ k @ g), rel=1e-9)
    # K_perp g = 0 (draws of the discrepancy carry no mass), K_perp = K - Kg g'K / g'Kg
    assert float((perp.T @ g).abs().max()) < 1e-10 * max(1.0, float(root.abs().max()))
    kg = k @ g
    torch.testing.assert_close(perp @ perp.T, k - torch.outer(kg, kg) / gkg, rtol=0, atol=1e-8)


@settings(max_examples=50, deadline=None)
@given(
    r=st.floats(-10, 10), v=st.floats(1e-4, 10), kappa=st.floats(0.1, 10), gkg=st.floats(1e-3, 1)
)
def test_discrepancy_variance_explains_the_residual(r, v, kappa, gkg):
    t = lambda a: torch.tensor([[a]], dtype=F64)  # noqa: E731
    sd2 = float(discrepancy_variance(t(r), t(v), kappa, gkg))
    assert sd2 >= 0
    if r * r > kappa * v:  # the ML estimate: r^2 = kappa v + sd2 g'Kg
        assert kappa * v + sd2 * gkg == pytest.approx(r * r, rel=1e-12)
    else:
        assert sd2 == 0.0


@settings(max_examples=50, deadline=None)
@given(
    r=st.floats(-10, 10),
    v=st.floats(1e-4, 10),
    kappa=st.floats(0.1, 10),
    gkg=st.floats(1e-3, 1),
    floor=st.floats(0, 3),
    outside=st.booleans(),
)
def test_gated_discrepancy_variance_has_a_floor_outside_only(r, v, kappa, gkg, floor, outside):
    t = lambda a: torch.tensor([[a]], dtype=F64)  # noqa: E731
    flag = torch.tensor([outside])
    sd2 = float(gated_discrepancy_variance(t(r), t(v), kappa, gkg, flag, floor))
    ml = float(discrepancy_variance(t(r), t(v), kappa, gkg))
    if not outside:
        assert sd2 == 0.0
    else:  # never below the ML estimate, never below floor x the residual's resolution
        assert sd2 == pytest.approx(max(ml, floor * kappa * v / gkg), rel=1e-12)
        assert sd2 >= ml
    if outside and floor == 0:
        assert sd2 == ml


def test_bad_input_gets_clear_errors():
    z = torch.ones(2, 1, dtype=F64)
    with pytest.raises(ValueError, match="kappa"):
        discrepancy_variance(z, z, 0.0, 1.0)
    with pytest.raises(ValueError, match="at least 4"):
        fit_mass_kappa(z, z)
    flags = torch.ones(2, dtype=torch.bool)
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="floor"):
            gated_discrepancy_variance(z, z, 1.0, 1.0, flags, bad)
    with pytest.raises(ValueError, match="one flag per function"):
        gated_discrepancy_variance(z, z, 1.0, 1.0, flags[:1], 1.0)
    with pytest.raises(ValueError, match="finite"):
        bad = torch.tensor([1.0, 2.0, float("nan"), 1.0], dtype=F64).reshape(4, 1)
        fit_mass_kappa(bad, torch.ones(4, 1, dtype=F64))
    x = torch.linspace(0, 1, 5, dtype=F64)
    g = trapezoid_weights(x)
    with pytest.raises(ValueError, match="length"):
        discrepancy_roots(x, g, 0.0)
    mean = torch.zeros(2, 1, 5, dtype=F64)
    cov = DiagLinearOperator(torch.ones(2, 1, 5, dtype=F64))
    with pytest.raises(ValueError, match="g: expected shape"):
        mass_residual(mean, cov, g[:4], z)
    with pytest.raises(ValueError, match="mass: expected shape"):
        mass_residual(mean, cov, g, torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="positive"):
        mass_residual(mean, DiagLinearOperator(torch.zeros(2, 1, 5, dtype=F64)), g, z)


@pytest.fixture(scope="module")
def checked_model():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = ProbConserv("pme", step1="anp", hidden=16, n_samples=8, seed=0)
        m.fit(steps=5, progress=False)
        m.calibrate(
            make_dataset("pme", 12, seed=5), objective="hybrid", local_functions=20, mass_gate=None
        )
        yield m
    finally:
        torch.set_num_threads(n)


def test_model_widens_only_functions_whose_mass_contradicts_them(checked_model, tmp_path):
    m = checked_model
    cal = m.calibration
    assert cal.mass_kappa > 0 and cal.mass_length == pytest.approx(0.05)  # PME x in [0, 1]
    off = ProbConserv.load(m.save(tmp_path / "off.pt"))
    off.calibration.mass_kappa = None
    test = make_dataset("pme", params=[2.0, 4.0], seed=11)
    x = m.problem.grid(201)
    g = trapezoid_weights(x)
    mean = m.step1(test).mean  # the Step-1 mean does not depend on the mass
    agree = mean @ g  # [2, 1]: a mass the model explains exactly
    for sg in (math.inf, None):  # the Step-1 posterior with its calibration, and the update
        a, b = (
            m.posterior(test, mass=agree, sigma_g=sg),
            off.posterior(test, mass=agree, sigma_g=sg),
        )
        assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
    # a mass far from the model's: r^2 >> kappa v, so sd2 = (r^2 - kappa v) / g'Kg > 0
    prior_off = off.posterior(test, mass=agree, sigma_g=math.inf)  # s_prior Sigma
    v = g @ prior_off.covariance.to_dense() @ g  # [2, 1]
    far = agree + 10.0 * (cal.mass_kappa * v).sqrt()
    v_far = g @ off.posterior(test, mass=far, sigma_g=math.inf).covariance.to_dense() @ g
    root, perp, gkg = discrepancy_roots(x, g, cal.mass_length)
    sd2 = ((far - agree).pow(2) - cal.mass_kappa * v_far) / gkg
    assert bool((sd2 > 0).all())
    torch.testing.assert_close(m.mass_discrepancy(test, mass=far), sd2)
    assert bool((m.mass_discrepancy(test, mass=agree) == 0).all())
    with pytest.raises(ValueError, match="mass_check first"):
        off.mass_discrepancy(test)
    # the check is fitted with the parameter-conditional scale and used only with it
    pooled = ProbConserv.load(m.save(tmp_path / "pooled.pt"))
    pooled.calibration.local = None
    pooled_off = ProbConserv.load(off.save(tmp_path / "pooled_off.pt"))
    pooled_off.calibration.local = None
    a, b = pooled.posterior(test, mass=agree * 2), pooled_off.posterior(test, mass=agree * 2)
    assert torch.equal(a.variance, b.variance)
    with pytest.raises(ValueError, match="mass_check first"):
        pooled.mass_discrepancy(test)
    on_p, off_p = (
        m.posterior(test, mass=far, sigma_g=math.inf),
        off.posterior(test, mass=far, sigma_g=math.inf),
    )
    torch.testing.assert_close(on_p.variance, off_p.variance + sd2[..., None] * (root**2).sum(-1))
    on_q, off_q = m.posterior(test, mass=far), off.posterior(test, mass=far)
    # the update's mean is untouched; its variance gains the mass-neutral part only
    torch.testing.assert_close(on_q.mean, off_q.mean, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(on_q.variance, off_q.variance + sd2[..., None] * (perp**2).sum(-1))
    # another latent-draw seed: the same identity with that seed's discrepancy
    d3 = m.mass_discrepancy(test, mass=far, seed=3)
    on3 = m.posterior(test, mass=far, sigma_g=math.inf, seed=3).variance
    off3 = off.posterior(test, mass=far, sigma_g=math.inf, seed=3).variance
    torch.testing.assert_close(on3, off3 + d3[..., None] * (root**2).sum(-1))
    draws = on_q.sample((16,), generator=torch.Generator().manual_seed(0))
    assert float((draws @ g - far).abs().max()) < 1e-10


def test_outside_training_range():
    theta = torch.tensor([0.5, 0.85, 0.95, 1.0, 2.0, 3.0, 3.05, 3.2], dtype=F64)
    got = outside_training_range(theta, 1.0, 3.0, 0.1)
    assert got.tolist() == [True, True, False, False, False, False, False, True]
    with pytest.raises(ValueError, match="margin"):
        outside_training_range(theta, 1.0, 3.0, -0.1)
    assert outside_training_range(theta.tolist(), 1.0, 3.0, 0.1).tolist() == got.tolist()
    with pytest.raises(ValueError, match="theta"):  # NaN compared as inside: never flagged
        outside_training_range(torch.tensor([float("nan")], dtype=F64), 1.0, 3.0, 0.1)


def test_gate_keeps_functions_inside_the_training_range_unchanged(checked_model, tmp_path):
    m = checked_model
    gated = ProbConserv.load(m.save(tmp_path / "g.pt"))
    cal = gated.calibration
    assert cal.mass_margin is None and cal.mass_theta_sd > 0
    cal.mass_margin = 2.0 * cal.mass_theta_sd  # what calibrate(mass_gate=2.0) stores
    test = make_dataset("pme", params=[2.0, 4.0, 5.0], seed=11)
    g = trapezoid_weights(m.problem.grid(201))
    mean = m.step1(test).mean
    own = mean @ g
    # masses the model's own (theta_hat in range) and 1e3 times larger (theta_hat far outside)
    for mass in (own + 1e-3, own * 1e3):
        ungated = m.mass_discrepancy(test, mass=mass)
        theta = cal.local.pmap(mean, mass)
        out = outside_training_range(theta, cal.local.pmap.lo, cal.local.pmap.hi, cal.mass_margin)
        torch.testing.assert_close(gated.mass_discrepancy(test, mass=mass), ungated * out[:, None])
    assert bool(out.all()) and bool((ungated > 0).all())  # the far masses are outside
    a, b = gated.posterior(test, mass=own), m.posterior(test, mass=own, method="probconserv")
    theta = cal.local.pmap(mean, own)
    inside = ~outside_training_range(theta, cal.local.pmap.lo, cal.local.pmap.hi, cal.mass_margin)
    assert torch.equal(a.mean, b.mean)
    torch.testing.assert_close(a.variance[inside], b.variance[inside])


def test_floor_widens_flagged_functions_whose_residual_is_small(checked_model, tmp_path):
    """A function the gate flags whose mass the model matches (r = 0, so the ML estimate is 0)
    gets mass_floor x kappa v / g'Kg; functions the gate does not flag get nothing."""
    m = checked_model
    test = make_dataset("pme", params=[2.0, 4.0, 5.0], seed=11)
    x = m.problem.grid(201)
    g = trapezoid_weights(x)
    own = m.step1(test).mean @ g  # r = 0
    gated = ProbConserv.load(m.save(tmp_path / "f.pt"))
    cal = gated.calibration
    cal.mass_margin, cal.mass_floor = 0.0, 1.0
    pm = cal.local.pmap
    theta = pm(m.step1(test).mean, own)
    assert bool((m.mass_discrepancy(test, mass=own) == 0).all())  # ML alone: nothing
    assert bool((gated.mass_discrepancy(test, mass=own) == 0).all())  # theta_hat inside
    pm.lo, pm.hi = float(theta.max()) + 1.0, float(theta.max()) + 2.0  # every function outside
    off = ProbConserv.load(gated.save(tmp_path / "off.pt"))
    off.calibration.mass_kappa = None
    v = g @ off.posterior(test, mass=own, sigma_g=math.inf).covariance.to_dense() @ g  # [3, 1]
    _, _, gkg = discrepancy_roots(x, g, cal.mass_length)
    got = gated.mass_discrepancy(test, mass=own)
    torch.testing.assert_close(got, cal.mass_kappa * v / gkg)
    assert bool((got > 0).all())
    cal.mass_floor = 0.0  # the ML estimate alone
    assert bool((gated.mass_discrepancy(test, mass=own) == 0).all())
    with pytest.raises(ValueError, match="mass_floor"):
        m.calibrate(
            make_dataset("pme", 12, seed=5), objective="hybrid", local_functions=20, mass_floor=-1.0
        )


def test_mass_check_round_trips_and_is_checked(checked_model, tmp_path):
    m = checked_model
    back = ProbConserv.load(m.save(tmp_path / "m.pt"))
    assert back.calibration.mass_kappa == m.calibration.mass_kappa
    assert back.calibration.mass_length == m.calibration.mass_length
    test = make_dataset("pme", params=[1.5, 5.5], seed=3)
    a, b = m.posterior(test), back.posterior(test)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
    data = make_dataset("pme", 12, seed=5)
    with pytest.raises(ValueError, match="mass_check: needs"):
        m.calibrate(data, objective="hybrid", mass_check=True)
    with pytest.raises(ValueError, match="mass_length"):
        m.calibrate(data, objective="hybrid", local_functions=20, mass_length=0.0)
    with pytest.raises(ValueError, match="mass_gate"):
        m.calibrate(data, objective="hybrid", local_functions=20, mass_gate=-1.0)
    off = ProbConserv.load(m.save(tmp_path / "n.pt"))
    off.calibrate(data, objective="hybrid", local_functions=20, mass_check=False)
    assert off.calibration.mass_kappa is None and off.calibration.mass_length is None
    off.calibrate(data, objective="hybrid", local_functions=20)  # the default gate, 2 sd
    cal = off.calibration
    assert cal.mass_margin == pytest.approx(2.0 * cal.mass_theta_sd)


def test_unconstrained_baselines_never_see_the_mass(checked_model):
    """method='none' / 'hardc' took the conservation right-hand side b into their variance
    (parameter-conditional scale and mass check): the 'unconstrained' rows used the law."""
    m = checked_model
    test = make_dataset("pme", params=[2.0, 4.0], seed=11)
    g = trapezoid_weights(m.problem.grid(201))
    own = m.step1(test).mean @ g
    far = own * 3.0
    a = m.posterior(test, method="none")
    with pytest.raises(ValueError, match="method='none' is the unconstrained model"):
        m.posterior(test, mass=far, method="none")  # a mass it would not use: refused
    s1 = m.step1(test)  # the public Step 1 is the same unconstrained model
    assert torch.equal(a.mean, s1.mean) and torch.equal(a.variance, s1.variance)
    raw = m.posterior(test, mass=own, sigma_g=math.inf)  # the mass-aware Step 1 (ProbConserv's)
    assert not torch.allclose(raw.variance, a.variance)
    hc_own = m.posterior(test, mass=own, method="hardc")
    hc_far = m.posterior(test, mass=far, method="hardc")
    assert torch.equal(hc_own.variance, hc_far.variance)  # variance untouched by b
    assert float((hc_far.mean @ g - far).abs().max()) < 1e-10  # but projected onto it
    # with the local scale removed, the baseline's calibration is unchanged: it is the pooled one
    import copy

    plain = copy.copy(m)
    plain.calibration = copy.copy(m.calibration)
    plain.calibration.local = None
    plain.calibration.mass_kappa = None
    d = plain.posterior(test, method="none")
    torch.testing.assert_close(d.variance, a.variance, rtol=1e-12, atol=0)


def test_kappa_and_discrepancy_shapes_are_checked_by_name():
    with pytest.raises(ValueError, match=r"^variance: expected shape \(4, 1\), received \(4,\)$"):
        fit_mass_kappa(torch.ones(4, 1, dtype=F64), torch.ones(4, dtype=F64))
    cov = DiagLinearOperator(torch.ones(2, 1, 5, dtype=F64))
    with pytest.raises(
        ValueError, match=r"^sd2: expected shape \(2, 1\) \(one variance per function and slice\)"
    ):
        add_discrepancy(cov, torch.zeros(2, dtype=F64), torch.ones(5, 1, dtype=F64))


def test_mass_discrepancy_is_read_on_the_calibration_times_only(checked_model):
    test = make_dataset("pme", params=[2.0], seed=11)
    with pytest.raises(
        ValueError, match=r"^t: expected the calibration times \(the check is fitted there\)$"
    ):
        checked_model.mass_discrepancy(test, t=0.3)
    assert checked_model.mass_discrepancy(test).shape == (1, 1)
