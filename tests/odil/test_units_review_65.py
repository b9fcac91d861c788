"""The glioma model works in mm and days: a scan given in metres or a horizon in seconds is
refused with the units to use (both built silently: metres fitted a focus wider than the scan
and returned the prior, seconds asked for millions of explicit steps per solve and the fit
never ended), while a consistent change of the time unit gives the same posterior in it."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch

from bayesphys.odil import GliomaModel, fit_recalibration_map
from bayesphys.problems.glioma import brain_phantom, synthetic_patient

DAY = 86400.0


@pytest.fixture(scope="module")
def patient():
    return synthetic_patient(0, phantom=brain_phantom(16, 8.0))


def _model(p, **kw):
    return GliomaModel(p["wm"], p["gm"], p["labels"], th_up=p["th_up"], th_down=p["th_down"], **kw)


def test_a_voxel_size_in_metres_is_refused(patient):
    # every length of the model in metres, as a consistent SI user would give them
    metres = dict(
        spacing=0.008,
        d_max=1e-6,
        noise_corr_mm=0.004,
        crop_margin_mm=0.024,
        prior={"log_dw": (math.log(0.22e-6), 1.0), "focus_sd": 0.015},
    )
    with pytest.raises(
        ValueError, match=r"^spacing: expected the voxel size in mm, received 0\.008"
    ):
        _model(patient, **metres)
    with pytest.raises(ValueError, match=r"^spacing: .*1000 times too small"):
        _model(patient, spacing=0.008)
    assert _model(patient, spacing=8.0).config["spacing"] == 8.0  # mm: built as before


def test_a_voxel_size_in_micrometres_is_refused(patient):
    # the focus fell between the cell centres: c0 = 0 everywhere, the fit returned the prior
    with pytest.raises(
        ValueError, match=r"^spacing: expected the voxel size in mm, received 8000: .*micrometres"
    ):
        _model(patient, spacing=8000.0)
    assert _model(patient, spacing=30.0).config["spacing"] == 30.0  # the widest taken


def test_a_horizon_in_seconds_is_refused(patient):
    with pytest.raises(
        ValueError, match=r"^t_end, d_max, spacing: the forward solve needs \d+ explicit steps"
    ) as err:
        _model(patient, spacing=8.0, t_end=100 * DAY)
    assert "(t_end=8.64e+06 days, d_max=1 mm^2/day, spacing=8 mm)" in str(err.value)
    assert "more than 200000," in str(err.value) and "t_end=100.0, not" in str(err.value)


def test_seconds_throughout_give_the_posterior_in_seconds(patient):
    days = _model(patient, spacing=8.0)
    secs = _model(
        patient,
        spacing=8.0,
        t_end=100 * DAY,
        d_max=1.0 / DAY,
        prior={"log_dw": (math.log(0.22 / DAY), 1.0), "log_rho": (math.log(0.05 / DAY), 1.0)},
    )
    assert secs.steps == days.steps
    days.fit(steps=5, grid=2, progress=False)
    secs.fit(steps=5, grid=2, progress=False)
    a, b = days.estimates(), secs.estimates()
    for k, per_day in (("dw", 1.0), ("rho", 1.0), ("v", 1.0), ("ell", 0.0)):
        assert b[k] * DAY**per_day == pytest.approx(a[k], rel=1e-6), k
    for k in ("x0", "y0", "sd_x0", "sd_y0", "sd_log_dw", "sd_log_rho"):
        assert b[k] == pytest.approx(a[k], rel=1e-6), k


def test_inputs_that_require_grad_are_constants_of_the_model(patient):
    """Maps, a focus guess and a recalibration map that required grad were kept as graph
    nodes: ``copy.deepcopy`` of the model refused them, and reading the fit or the estimates
    gave torch's warning of a tensor read as a float."""
    kw = dict(spacing=8.0, d_max=3.0)
    ref = _model(patient, **kw)
    wm = patient["wm"].clone().requires_grad_()
    focus = ref.focus_init.clone().requires_grad_()
    m = GliomaModel(
        wm,
        patient["gm"],
        patient["labels"],
        th_up=patient["th_up"],
        th_down=patient["th_down"],
        focus_init=focus,
        **kw,
    )
    assert not any(v.requires_grad for v in (m.wm, m._wm, m.focus_init, *m.faces))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(steps=2, grid=1, progress=False)
        ref.fit(steps=2, grid=1, progress=False)
        assert torch.equal(m.theta, ref.theta)
        b = torch.full((4,), 0.1, requires_grad=True)
        s = torch.full((4,), 1.2, requires_grad=True)
        m.recalibrate(b, s)
        assert not m.theta.requires_grad and not m.theta_cov.requires_grad
        m.estimates()
        assert torch.equal(copy.deepcopy(m).theta, m.theta)
        z = torch.randn(20, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        got = fit_recalibration_map(z.clone().requires_grad_())
        for a, c in zip(got, fit_recalibration_map(z)):
            assert torch.equal(a, c) and not a.requires_grad
    assert wm.grad is None and focus.grad is None  # the user's tensors untouched


def test_a_prediction_horizon_in_seconds_is_refused(patient):
    # a third of 100 days in seconds: 225 000 steps per solve at 8 mm, each draw of posterior
    m = _model(patient, spacing=8.0)
    theta = m._theta0()
    assert m.forward(theta, t_end=160.0).shape == m.shape  # days: solved as before
    match = r"^t_end, d_max, spacing: the forward solve needs 225000 explicit steps"
    with pytest.raises(ValueError, match=match):
        m.forward(theta, t_end=100 * DAY / 3)
    m.fit(steps=1, grid=1, progress=False)
    with pytest.raises(ValueError, match=match):
        m.posterior(num_samples=2, t_end=100 * DAY / 3)


def test_a_patient_saved_with_numpy_loads_as_a_model(patient, tmp_path):
    """np.savez / np.load give the scalars back as 0-d arrays: from_patient refused them
    ("th_up: expected a real number, received ndarray") though spacing was taken."""
    arrays = {k: v.numpy() if torch.is_tensor(v) else v for k, v in patient.items()}
    keep = ("wm", "gm", "labels", "spacing", "th_up", "th_down", "t_end", "dg_ratio")
    np.savez(tmp_path / "p.npz", **{k: arrays[k] for k in keep})
    loaded = dict(np.load(tmp_path / "p.npz"))
    assert loaded["th_up"].shape == ()  # 0-d arrays
    ref = GliomaModel.from_patient(patient)
    m = GliomaModel.from_patient(loaded)
    assert m.config == ref.config and all(
        type(v) is type(ref.config[k]) for k, v in m.config.items()
    )
    theta = ref._theta0()
    assert float(m.loss(theta)) == float(ref.loss(theta))
    f64 = torch.float64
    zero_d = dict(
        t_end=torch.tensor(100.0, dtype=f64),
        d_max=np.array(2.0),
        noise_corr_mm=torch.tensor(4.0, dtype=f64, requires_grad=True),
        n_foci=np.array(1),
        prior={"log_rho": torch.tensor([math.log(0.05), 1.0], dtype=f64)},
    )
    plain = dict(
        t_end=100.0,
        d_max=2.0,
        noise_corr_mm=4.0,
        n_foci=1,
        prior={"log_rho": (math.log(0.05), 1.0)},
    )
    assert (
        GliomaModel.from_patient(patient, **zero_d).config
        == GliomaModel.from_patient(patient, **plain).config
    )
    with pytest.raises(TypeError, match=r"^t_end: expected a real number, received Tensor"):
        GliomaModel.from_patient(patient, t_end=torch.tensor([100.0]))  # not 0-d: refused
