"""Post-hoc variance calibration of RandomGridNP (bayesphys.neural_process.calibrate)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.neural_process import RandomGridNP, evaluate_poisson, interval_scale
from bayesphys.problems.rgnp import poisson_test_set
from tests.calibration_checks import stale_calibration_messages
from tests.tiny_models import calibrated_tiny_rgnp, tiny_rgnp


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(50, 400),
    level=st.sampled_from([0.5, 0.9, 0.9545]),
)
def test_interval_scale_puts_level_of_scores_inside_band(seed, n, level):
    g = torch.Generator().manual_seed(seed)
    err = torch.randn(n, generator=g, dtype=torch.float64) * 3.0
    sd = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    s = interval_scale(err, sd, level)
    z = float(np.sqrt(2.0) * torch.erfinv(torch.tensor(level, dtype=torch.float64)))
    inside = float((err.abs() <= z * sd * s**0.5 * (1 + 1e-9)).double().mean())
    # the empirical quantile interpolates between order statistics: within one entry
    assert abs(inside - level) <= 1.0 / n + 1e-12


def test_interval_scale_bad_input():
    e, s = torch.ones(3), torch.ones(3)
    with pytest.raises(ValueError, match="level"):
        interval_scale(e, s, 1.5)
    with pytest.raises(ValueError, match="shapes"):
        interval_scale(e, torch.ones(4))
    with pytest.raises(ValueError, match="non-finite"):
        interval_scale(torch.tensor([1.0, float("nan"), 0.0]), s)
    with pytest.raises(ValueError, match="at least one"):
        interval_scale(torch.ones(0), torch.ones(0))
    # negative spreads gave |err| / sd < 0 and a scale of 1e-24 silently
    with pytest.raises(ValueError, match="sd: expected positive"):
        interval_scale(e, -s)


def test_calibrate_sets_coverage_keeps_means_and_round_trips(tmp_path):
    m = tiny_rgnp(dtype=torch.float64)
    m.fit(steps=3, progress=False)
    val = poisson_test_set(40, seed=3, n_nodes=41)
    before = m.posterior(val["x"], z=val["z"][:2], w=val["w"][:2])
    pbefore = m.parameter_posterior(val["x"][1:-1], val["u"][:2, 1:-1], val["w"][:2])
    out = m.calibrate(val["x"], val["u"], val["z"], val["w"])
    assert out["field"] > 0 and out["parameters"] > 0
    assert m.variance_scale == {"field": out["field"], "parameters": out["parameters"]}
    after = m.posterior(val["x"], z=val["z"][:2], w=val["w"][:2])
    torch.testing.assert_close(after.mean, before.mean)
    inner = slice(1, -1)  # D(x) = 0 on the Dirichlet ends: zero spread there
    torch.testing.assert_close(
        after.variance[:, inner], before.variance[:, inner] * out["field"], rtol=1e-9, atol=0
    )
    pafter = m.parameter_posterior(val["x"][1:-1], val["u"][:2, 1:-1], val["w"][:2])
    torch.testing.assert_close(pafter.variance, pbefore.variance * out["parameters"])
    # on the validation set itself the 2-sigma coverage is now the level (to one entry)
    ev = evaluate_poisson(m, val)
    n_entries = 40 * 39
    assert abs(ev["coverage2sd_u"] - 0.9545) <= 2.0 / n_entries + 1e-9
    assert abs(ev["coverage2sd_z"] - 0.9545) <= 2.0 / (40 * 5) + 1e-9
    path = m.save(tmp_path / "cal.pt")
    m2 = RandomGridNP.load(path)
    assert m2.variance_scale == m.variance_scale
    torch.testing.assert_close(
        m2.posterior(val["x"], z=val["z"][:2], w=val["w"][:2]).variance, after.variance
    )


def test_calibrate_bad_input_leaves_model_unchanged():
    m = tiny_rgnp()
    val = poisson_test_set(4, seed=3, n_nodes=21)
    with pytest.raises(ValueError, match="u: expected shape"):
        m.calibrate(val["x"], val["u"][:, :-1], val["z"], val["w"])
    with pytest.raises(ValueError, match="z/w"):
        m.calibrate(val["x"], val["u"], val["z"][:3], val["w"])
    with pytest.raises(ValueError, match="finite"):
        bad = val["u"].copy()
        bad[0, 3] = np.nan
        m.calibrate(val["x"], bad, val["z"], val["w"])
    assert m.variance_scale == {"field": 1.0, "parameters": 1.0}


def test_calibrate_fields_only_keeps_the_parameter_scale_in_force():
    """parameters=False reset a parameter scale fitted before to 1 (silently)."""
    m = tiny_rgnp(dtype=torch.float64)
    m.fit(steps=3, progress=False)
    val = poisson_test_set(20, seed=3, n_nodes=41)
    both = m.calibrate(val["x"], val["u"], val["z"], val["w"])
    assert both["parameters"] != 1.0
    field = m.calibrate(val["x"][::2], val["u"][:, ::2], val["z"], val["w"], parameters=False)
    # the returned dict names the parameter scale in force, as documented (it had no
    # "parameters" key), and has no raw parameter coverage (nothing was fitted)
    assert field["parameters"] == both["parameters"]
    assert "coverage_parameters_raw" not in field
    assert m.variance_scale == {"field": field["field"], "parameters": both["parameters"]}


@pytest.mark.parametrize("seed", [-60_001, -59_999, -(2**40)])
def test_calibration_simulations_take_any_seed_apart_from_the_training_set(seed):
    """The hook's simulations: a negative seed gets its own stream (60_000 + seed was refused
    below -60000, after the training, and gave the training set's seed 1 at -59999)."""
    from bayesphys.neural_process._calibration import simulate
    from bayesphys.problems.rgnp import poisson_sensor_data

    theta, data = simulate(3, seed=seed)
    assert theta.shape == (3, 5) and len(data) == 3
    train = poisson_sensor_data(3, seed=1)
    assert not torch.equal(theta, torch.as_tensor(train["z"]))
    assert torch.equal(
        simulate(3, seed=0)[0], torch.as_tensor(poisson_sensor_data(3, seed=60_000)["z"])
    )


def test_a_calibration_of_earlier_weights_warns_after_a_refit_and_a_load(tmp_path):
    # calibrate() then fit() again: the variance scales of the old weights were applied to
    # the new ones without a word (after a save and load too)
    m, x, z, w, u = calibrated_tiny_rgnp()
    fresh = m.posterior(x, z=z, w=w)
    assert not stale_calibration_messages(lambda: m.posterior(x, z=z, w=w))
    # the parameter scale was not fitted: no warning for it, before or after a fit
    xi = x[1:-1, None]
    assert not stale_calibration_messages(lambda: m.parameter_posterior(xi, u[:, 1:-1], w))
    m.fit(steps=1, progress=False)
    got = stale_calibration_messages(lambda: m.posterior(x, z=z, w=w))
    assert len(got) == 1 and "at step 2" in got[0] and "calibrate(x, u, z, w) again" in got[0]
    assert not stale_calibration_messages(lambda: m.parameter_posterior(xi, u[:, 1:-1], w))
    back = RandomGridNP.load(m.save(tmp_path / "m.pt"))
    assert stale_calibration_messages(lambda: back.posterior(x, z=z, w=w))
    m.calibrate(x, u, z, w, parameters=False)  # recalibrated: quiet again
    assert not stale_calibration_messages(lambda: m.posterior(x, z=z, w=w))
    # a model saved right after calibrate: its file is as before, and a fit after the load warns
    m2 = tiny_rgnp()
    m2.fit(steps=2, progress=False)
    m2.calibrate(x, u, z, w, parameters=False)
    assert "calibrated_at" not in m2.state()
    loaded = RandomGridNP.load(m2.save(tmp_path / "m2.pt"))
    assert not stale_calibration_messages(lambda: loaded.posterior(x, z=z, w=w))
    loaded.fit(steps=1, progress=False)
    assert stale_calibration_messages(lambda: loaded.posterior(x, z=z, w=w))
    assert torch.isfinite(fresh.variance).all()


def test_raw_field_coverage_is_at_the_requested_level():
    """coverage_field_raw is the fraction of the interior validation entries inside the
    uncalibrated central band of the requested level, z = Phi^-1((1 + level) / 2), whatever
    the level (not the 2-sigma band of the default)."""
    from scipy.stats import norm

    m = tiny_rgnp(dtype=torch.float64)
    m.fit(steps=2, progress=False)
    val = poisson_test_set(12, seed=5, n_nodes=31)
    post = m.posterior(val["x"], z=val["z"], w=val["w"])
    inner = slice(1, -1)  # D(x) = 0 on the Dirichlet ends
    err = (torch.as_tensor(val["u"]) - post.mean)[:, inner]
    sd = post.variance.sqrt()[:, inner]
    for level in (0.5, 0.8):
        out = m.calibrate(val["x"], val["u"], val["z"], val["w"], level=level, parameters=False)
        m.variance_scale = {"field": 1.0, "parameters": 1.0}
        want = float((err.abs() <= norm.ppf((1 + level) / 2) * sd).double().mean())
        assert out["coverage_field_raw"] == pytest.approx(want, abs=1e-12)
        assert out["coverage_field_raw"] != pytest.approx(
            float((err.abs() <= 2 * sd).double().mean())
        )


def test_calibration_and_evaluation_in_batches_equal_one_batch():
    """``calibrate`` and ``evaluate_poisson`` take the instances ``batch`` at a time (default
    250, above the tests' sets): batches of 3 (3 + 3 + 1), 6 (6 + 1) and 8 give the scales
    and metrics of one batch of all 7 instances, the field and parameter passes alike."""
    m = tiny_rgnp(dtype=torch.float64)
    m.fit(steps=1, progress=False)
    val = poisson_test_set(7, seed=4, n_nodes=21)
    args = (val["x"], val["u"], val["z"], val["w"])
    whole = m.calibrate(*args, batch=7)
    metrics = evaluate_poisson(m, val, batch=7)
    assert whole["parameters"] != 1.0 and whole["field"] != 1.0
    for batch in (3, 6, 8):
        got = m.calibrate(*args, batch=batch)
        assert got.keys() == whole.keys()
        for key, value in whole.items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=0), (batch, key)
        ev = evaluate_poisson(m, val, batch=batch)
        assert ev.keys() == metrics.keys()
        for key, value in metrics.items():
            assert ev[key] == pytest.approx(value, rel=1e-12, abs=1e-15, nan_ok=True), (batch, key)


def test_interval_scale_warns_when_the_errors_are_all_zero():
    """Zero validation errors (the model's own output passed as truth) gave the floor scale
    1e-24 without a word: every calibrated variance collapsed."""
    with pytest.warns(UserWarning, match=r"err: 5 of 5 validation errors are exactly zero"):
        s = interval_scale(torch.zeros(5), torch.ones(5))
    assert s == 1e-24
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one nonzero error above the quantile: no warning
        assert interval_scale(torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0]), torch.ones(5), 0.9) > 1e-24
