"""Fixtures shared by the ODIL argument-check tests: a 32 x 32 phantom patient and a glioma
model with a stand-in Laplace posterior."""

from __future__ import annotations

import pytest
import torch

from bayesphys.odil import GliomaModel
from bayesphys.problems.glioma import brain_phantom, synthetic_patient


@pytest.fixture(scope="module")
def phantom():
    return brain_phantom(32, 4.0)


@pytest.fixture(scope="module")
def patient(phantom):
    return synthetic_patient(1, phantom=phantom)


@pytest.fixture(scope="module")
def model(patient):
    """A glioma model with a stand-in Laplace posterior (no fit: the checks come first)."""
    m = GliomaModel.from_patient(patient)
    m.theta = m._theta0()
    m.theta_cov = 1e-4 * torch.eye(len(m.theta), dtype=m.dtype)
    return m


@pytest.fixture(scope="session")
def tiny_pet_model():
    """A fitted (converged) glioma model with a PET map on a 16 x 16 phantom of 8 mm voxels
    (12 x 10 crop, 8 time steps): the cheapest real fit, shared by the posterior tests."""
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    m = GliomaModel.from_patient(p, use_pet=True)
    res = m.fit(progress=False)
    assert res.converged, res.message
    return m
