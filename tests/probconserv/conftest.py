"""Fixtures of the ProbConserv tests."""

from __future__ import annotations

import pytest
import torch

from bayesphys.probconserv import ProbConserv


@pytest.fixture
def saved_tiny_anp(tmp_path):
    """A 3-step diffusion ANP saved as ``<tmp_path>/diffusion_ANP.pt`` (the layout of a benchmark
    run's ``--save-models``); returns ``(model, folder)``."""
    torch.set_num_threads(1)
    m = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0)
    m.fit(steps=3, progress=False)
    m.save(tmp_path / "diffusion_ANP.pt")
    return m, tmp_path
