"""GliomaModel's model-error term: sd alpha * h added in quadrature to the data noise."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.odil import GliomaModel
from bayesphys.problems.glioma import brain_phantom, synthetic_patient


@pytest.fixture(scope="module")
def patient():
    return synthetic_patient(1, phantom=brain_phantom(32, 4.0))


def _flat(res: dict) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in res.values()])


def test_model_error_is_data_noise_added_in_quadrature(patient):
    alpha, h = 0.02, patient["spacing"]
    m = GliomaModel.from_patient(patient, use_pet=True, model_error=alpha)
    seg = math.hypot(0.05, alpha * h)
    pet = math.hypot(0.05, 0.75 * alpha * h)
    ref = GliomaModel.from_patient(patient, use_pet=True, seg_sigma=seg, pet_sigma=pet)
    th = m._theta0()
    assert torch.allclose(_flat(m.residuals(th)), _flat(ref.residuals(th)), rtol=1e-13, atol=0)
    # the pointwise log likelihood (ArviZ export) uses the same sds
    c = m.full(m.forward(th))[None]
    assert torch.allclose(
        m._pointwise_log_likelihood(c), ref._pointwise_log_likelihood(c), rtol=1e-13, atol=0
    )
    # and it matters: the default (0) is the plain data noise
    plain = GliomaModel.from_patient(patient, use_pet=True)
    assert not torch.allclose(_flat(plain.residuals(th)), _flat(m.residuals(th)))


def test_model_error_widens_the_posterior(patient):
    sds = []
    for alpha in (0.0, 0.02):
        m = GliomaModel.from_patient(patient, model_error=alpha)
        m.fit(progress=False)
        sds.append(m.theta_cov.diagonal().sqrt())
    assert bool((sds[1] > sds[0]).all())


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf")])
def test_bad_model_error_is_refused(patient, bad):
    with pytest.raises(ValueError, match="^model_error"):
        GliomaModel.from_patient(patient, model_error=bad)


def test_model_error_round_trips_and_old_checkpoints_load_without_it(patient, tmp_path):
    m = GliomaModel.from_patient(patient, model_error=0.015)
    back = GliomaModel.load(m.save(tmp_path / "m.pt"))
    assert back.config["model_error"] == 0.015
    th = m._theta0()
    assert torch.equal(_flat(back.residuals(th)), _flat(m.residuals(th)))
    ck = torch.load(tmp_path / "m.pt", weights_only=False)
    ck["config"].pop("model_error")
    torch.save(ck, tmp_path / "old.pt")
    assert GliomaModel.load(tmp_path / "old.pt").config["model_error"] == 0.0


def test_pet_log_likelihood_is_exported_and_matches_the_loss(patient):
    m = GliomaModel.from_patient(patient, use_pet=True, model_error=0.01)
    m.theta = m._theta0()
    m.theta_cov = 1e-4 * torch.eye(len(m.theta), dtype=m.dtype)
    idata = m.to_inference_data(num_samples=2)
    assert set(idata.log_likelihood.data_vars) == {"labels", "pet"}
    assert idata.observed_data["pet"].dims == ("x", "y")
    th = m.theta_draws(2, 2, 0)[0, 0]
    with torch.no_grad():
        r = m.residuals(th)["pet"]
    _, pet_sd, kappa = m._noise()
    n = int((m._labels > 0).sum())
    # summed over voxels: minus the PET part of the loss, plus its normalising constant
    want = -0.5 * float((r * r).sum()) - n * math.log(pet_sd * math.sqrt(2 * math.pi)) / kappa
    assert math.isclose(float(idata.log_likelihood["pet"][0, 0].sum()), want, rel_tol=1e-10)
    # without PET there is no such entry
    plain = GliomaModel.from_patient(patient)
    plain.theta, plain.theta_cov = m.theta, m.theta_cov
    assert "pet" not in plain.to_inference_data(num_samples=2).log_likelihood


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_at_construction(patient, dtype):
    with pytest.raises(ValueError, match="^dtype: expected torch.float32 or torch.float64"):
        GliomaModel.from_patient(patient, dtype=dtype)
