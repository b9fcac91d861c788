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
