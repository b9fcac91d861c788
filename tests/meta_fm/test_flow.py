import math

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, cfm_loss, integrate, interpolate, ot_pairing
from bayesphys.problems.populations import PopulationPairs, linear_map, linear_map_exact_field
from tests.tiny_models import SMALL_MFM as SMALL


def test_exact_field_has_zero_fm_loss_on_b2():
    d = linear_map(dim=2, n_train=4, n_cal=0, n_test=0, n_points=256, seed=0)
    gen = torch.Generator().manual_seed(0)
    for i in range(4):
        x0, x1 = d.source[i].double(), d.target[i].double()
        t = torch.rand(x0.shape[0], generator=gen, dtype=torch.float64) * 0.6  # M_t invertible
        xt, u = interpolate(x0, x1, t)
        v = linear_map_exact_field(xt, t, d.extra["A"][i], d.extra["b"][i])
        assert float(cfm_loss(v, u)) < 1e-12
        # a wrong field has a clearly positive loss
        assert float(cfm_loss(torch.zeros_like(u), u)) > 1e-2


def test_cfm_loss_is_the_mean_squared_norm_of_the_velocity_error():
    # ||v - u||^2 summed over the d coordinates, averaged over points (a mean over
    # coordinates too divided the loss by d, and no test saw it)
    u = torch.ones(7, 3, dtype=torch.float64)
    assert float(cfm_loss(torch.zeros_like(u), u)) == 3.0
    v = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    assert float(cfm_loss(v, w)) == (5.0 + 25.0) / 2


def test_exact_field_integrates_to_target():
    d = linear_map(dim=2, n_train=1, n_cal=0, n_test=0, n_points=64, seed=3)
    a, b = d.extra["A"][0], d.extra["b"][0]
    x1 = integrate(
        lambda t, x: linear_map_exact_field(x, t, a, b),
        d.source[0].double(),
        method="rk4",
        steps=50,
    )
    torch.testing.assert_close(x1, d.target[0].double(), atol=1e-3, rtol=1e-3)


def test_rk4_and_dopri5_agree_on_known_flow():
    # dx/dt = W x with a rotation-plus-contraction W: x(1) = expm(W) x(0)
    w = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
    x0 = torch.randn(50, 2, dtype=torch.float64)
    exact = x0 @ torch.linalg.matrix_exp(w).mT
    f = lambda t, x: x @ w.mT  # noqa: E731
    rk = integrate(f, x0, method="rk4", steps=100)
    dp = integrate(f, x0, method="dopri5", atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(rk, exact, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(dp, exact, atol=1e-7, rtol=1e-7)
    with pytest.raises(ValueError, match="method"):
        integrate(f, x0, method="euler")


def test_ot_pairing_recovers_permutation():
    x0 = torch.randn(40, 2, dtype=torch.float64)
    perm = torch.randperm(40)
    x1 = x0[perm] + 1e-3
    a, b = ot_pairing(x0, x1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(b - a, torch.full_like(a, 1e-3))


def test_model_rk4_matches_dopri5():
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=48)
    m = MetaFlowMatching(d, seed=0, **SMALL)
    m.fit(steps=20, progress=False)
    src = d.subset("test").source
    rk = m.predict(src, solver="rk4", steps=40)
    dp = m.predict(src, solver="dopri5")
    for a, b in zip(rk, dp):
        assert float((a - b).abs().max()) < 1e-3


@pytest.mark.parametrize("method", ["MFM", "FM", "CGFM"])
def test_save_load_bit_for_bit(tmp_path, method):
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=48)
    m = MetaFlowMatching(d, method=method, seed=1, fourier_sigma=1.0, **SMALL)
    m.fit(steps=10, progress=False)
    src = d.subset("test").source
    before = m.predict(src, seed=7)
    path = m.save(tmp_path / "m.pt")
    m2 = MetaFlowMatching.load(path)
    after = m2.predict(src, seed=7)
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    torch.testing.assert_close(m2.net["field"].fourier.B, m.net["field"].fourier.B, atol=0, rtol=0)
    assert m2.config == m.config


def test_bad_input_raises_clear_errors():
    d = linear_map(n_train=4, n_cal=0, n_test=1, n_points=32)
    m = MetaFlowMatching(d, seed=0, **SMALL)
    good = torch.randn(20, 2)
    with pytest.raises(ValueError, match=r"sources\[0\]: expected dimension 2"):
        m.predict([torch.randn(20, 3)])
    with pytest.raises(ValueError, match=r"sources\[1\]: expected dimension 2"):
        m.predict([good, torch.randn(20, 5)])
    with pytest.raises(ValueError, match="at least 2 points"):
        m.predict([torch.empty(0, 2)])
    with pytest.raises(ValueError, match="at least 2 points"):
        m.predict([torch.randn(1, 2)])
    bad = good.clone()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        m.predict([bad])
    with pytest.raises(TypeError, match="sources"):
        m.predict([[1.0, 2.0]])
    # mixed dimensions inside training data
    pairs = PopulationPairs(
        "x",
        [good, torch.randn(20, 3)],
        [good, torch.randn(20, 3)],
        torch.arange(2),
        {"train": [0, 1]},
        paired=True,
    )
    with pytest.raises(ValueError, match="expected dimension 2"):
        MetaFlowMatching(pairs, **SMALL)
    nanpairs = PopulationPairs(
        "x", [good, bad], [good, good], torch.arange(2), {"train": [0, 1]}, paired=True
    )
    with pytest.raises(ValueError, match="NaN"):
        MetaFlowMatching(nanpairs, **SMALL)
    with pytest.raises(ValueError, match="method"):
        MetaFlowMatching(d, method="XYZ")


def test_rk4_is_fourth_order_on_a_time_dependent_flow():
    # dx/dt = cos(t) x + t^2 (x(1) in closed form): the stage times t + h/2, t + h enter;
    # a stage evaluated at the wrong time drops the order to 1 or 2
    x0 = torch.ones(4, 2, dtype=torch.float64)
    s1 = math.sin(1.0)
    # x(1) = e^{sin 1} (1 + int_0^1 s^2 e^{-sin s} ds)
    from scipy.integrate import quad

    integral = quad(lambda s: s * s * math.exp(-math.sin(s)), 0.0, 1.0, epsabs=1e-14)[0]
    exact = math.exp(s1) * (1 + integral)
    errs = [
        float((integrate(lambda t, x: torch.cos(t) * x + t**2, x0, steps=n) - exact).abs().max())
        for n in (8, 16)
    ]
    order = math.log2(errs[0] / errs[1])
    assert 3.7 < order < 4.3, (errs, order)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_integrate_of_no_points_returns_no_points(method):
    # [0, d] is a valid x0: rk4 returned it, dopri5 failed in torchdiffeq ("underflow in dt")
    if method == "dopri5":
        pytest.importorskip("torchdiffeq")
    for x0 in (torch.zeros(0, 2), torch.zeros(3, 0, 2)):
        out = integrate(lambda t, x: -x, x0, method=method)
        assert out.shape == x0.shape and out.dtype == x0.dtype
    with pytest.raises(ValueError, match="velocities of x's shape"):
        integrate(lambda t, x: x[..., :1], torch.zeros(0, 2), method=method)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_integrate_refuses_velocities_of_another_dtype(method):
    """A float64 field moved float32 points into a float64 result (rk4) without a word."""
    if method == "dopri5":
        pytest.importorskip("torchdiffeq")
    x0 = torch.ones(5, 2)
    with pytest.raises(TypeError, match="velocities in x's dtype torch.float32"):
        integrate(lambda t, x: -x.double(), x0, method=method)
