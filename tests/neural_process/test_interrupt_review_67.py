"""An interrupt (Ctrl-C) during RandomGridNP.calibrate keeps the variance scales in force before
the call (they were reset to 1 while the validation posteriors were drawn, and an interrupt
left them there: the earlier calibration was lost without a word)."""

from __future__ import annotations

import pytest
import torch

from bayesphys.problems.rgnp import poisson_test_set
from tests.tiny_models import tiny_rgnp


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_calibrate_keeps_the_previous_scales(error, monkeypatch):
    m = tiny_rgnp(dtype=torch.float64)
    m.fit(steps=2, progress=False)
    val = poisson_test_set(20, seed=3, n_nodes=21)
    m.calibrate(val["x"], val["u"], val["z"], val["w"])
    before = dict(m.variance_scale)
    assert before != {"field": 1.0, "parameters": 1.0}

    def interrupted(*args, **kwargs):
        raise error()

    monkeypatch.setattr(m, "parameter_posterior", interrupted)
    with pytest.raises(error):
        m.calibrate(val["x"], val["u"], val["z"], val["w"])
    assert m.variance_scale == before
