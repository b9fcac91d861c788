"""The GPME diffusivities' domain check reads ``param``'s values: not inside a training step
(the SoftC penalty, whose parameters were checked once before the loop: a read per step was a
device synchronisation per step) and not under a :mod:`torch.func` transform (where the
values cannot be read, and the closed form was vmapped before the check was added)."""

from __future__ import annotations

import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.probconserv._train import softc_penalty
from bayesphys.problems.gpme import Diffusion, PorousMedium, Stefan, make_dataset
from bayesphys.problems.gpme.base import params_checked

F64 = torch.float64


@pytest.mark.parametrize("family", [Diffusion, PorousMedium, Stefan])
def test_diffusivity_vmaps_over_the_parameter(family):
    prob = family()
    lo, hi = prob.train_range
    u = torch.linspace(0.05, 0.95, 7, dtype=F64)
    params = torch.linspace(lo, hi, 4, dtype=F64)
    got = torch.func.vmap(lambda p: prob.diffusivity(u, p))(params)
    want = torch.stack([prob.diffusivity(u, p) for p in params])
    torch.testing.assert_close(got, want)


def test_domain_check_still_reads_outside_a_training_step():
    prob = PorousMedium()
    u = torch.rand(5, dtype=F64)
    with pytest.raises(ValueError, match="m: expected values in"):
        prob.diffusivity(u, torch.tensor(-1.0, dtype=F64))
    with params_checked():  # the caller vouches for the values: no read
        prob.diffusivity(u, torch.tensor(2.0, dtype=F64))


def test_softc_penalty_does_not_read_the_parameters(monkeypatch):
    torch.set_num_threads(1)
    soft = ProbConserv("pme", step1="anp", hidden=16, softc_weight=1.0, softc_points=8, seed=0)
    soft.fit(steps=1, progress=False)
    d = make_dataset("pme", 3, seed=1)
    cast = {"device": soft.device, "dtype": soft.dtype}
    args = (d.x_context.to(**cast), d.y_context.to(**cast), d.x_target.to(**cast))
    params = d.params.to(**cast)

    def refuse(self, param):
        raise AssertionError("the SoftC penalty read the parameters' values")

    monkeypatch.setattr(type(soft.problem), "_check_domain", refuse)
    r = softc_penalty(soft, *args, params)
    assert r.ndim == 0 and bool(torch.isfinite(r))
