"""A second ``fit_odil`` continues from the first one's estimate (its docstring), and a ``fit``
in between starts it again from the reduced fit."""

from __future__ import annotations

import torch

from bayesphys.odil import GliomaModel
from bayesphys.problems.glioma import brain_phantom, synthetic_patient


def test_a_second_fit_odil_starts_at_the_first_ones_estimate():
    p = synthetic_patient(0, phantom=brain_phantom(16, 8.0))
    m = GliomaModel.from_patient(p, use_pet=True)
    m.fit(progress=False)
    reduced = m.theta.clone()
    m.fit_odil(nt=4, steps=2, progress=False, linear_solver="sparse")
    first = m.theta.clone()
    assert not torch.allclose(first, reduced)
    # steps=0 sets the posterior at the start: the first call's estimate, not the reduced fit's
    m.fit_odil(nt=4, steps=0, progress=False, linear_solver="sparse")
    torch.testing.assert_close(m.theta, first, rtol=1e-12, atol=1e-12)
    # a fit in between restarts from the reduced fit (fit is deterministic)
    m.fit(progress=False)
    m.fit_odil(nt=4, steps=0, progress=False, linear_solver="sparse")
    torch.testing.assert_close(m.theta, reduced, rtol=1e-12, atol=1e-12)
