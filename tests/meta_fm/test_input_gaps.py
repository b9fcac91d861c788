"""bayesphys.meta_fm input gaps: data of more treatments than a model was built for, and
interpolation times outside [0, 1] (each test failed before its fix, except the guards of
kept behaviour)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble, interpolate
from bayesphys.problems.populations import patient_screen
from tests.tiny_models import TINY_MFM


def _screen():
    return patient_screen(n_patients=4, n_treatments=2, n_replicates=1, n_cells=24, dim=3)


def test_fit_refuses_data_of_more_treatments_than_the_model():
    # indices in [0, 2) of a 5-treatment labelling were trained as the model's 2 treatments
    scr = _screen()
    m = MetaFlowMatching(scr, method="FM", **TINY_MFM)
    wide = dataclasses.replace(scr, num_treatments=5)
    with pytest.raises(
        ValueError,
        match=r"^data\.num_treatments: this model was built for 2 treatments, received data "
        r"of 5",
    ):
        m.fit(wide, steps=1, progress=False)
    assert m.steps_done == 0
    m.fit(scr, steps=1, progress=False)  # its own data still train
    assert m.steps_done == 1


def test_ensemble_uncertainty_refuses_a_split_of_more_treatments_before_predicting():
    scr = _screen()
    ens = MFMEnsemble(scr, members=2, method="FM", **TINY_MFM)

    def no_prediction(*a, **k):
        raise AssertionError("a prediction was made before the checks")

    ens.predict_members = no_prediction
    wide = dataclasses.replace(scr.subset("test"), num_treatments=5)
    with pytest.raises(
        ValueError,
        match=r"^test\.num_treatments: the members were built for 2 treatments, received "
        r"data of 5",
    ):
        ens.uncertainty(scr.subset("cal"), wide)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf])
def test_interpolate_refuses_times_outside_zero_one(bad):
    # x_t = (1-t) x0 + t x1 was extrapolated (or NaN) without a word
    x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
    t = torch.tensor([0.0, 0.5, bad, 1.0])
    with pytest.raises(ValueError, match=r"^t: expected times in \[0, 1\] .* received 1 outside"):
        interpolate(x0, x1, t)


def test_interpolate_keeps_the_end_points_and_runs_under_torch_func():
    x0, x1 = torch.zeros(3, 2), torch.ones(3, 2)
    xt, u = interpolate(x0, x1, torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(xt[:, 0], torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(u, torch.ones(3, 2))
    jac = torch.func.jacfwd(lambda t: interpolate(x0, x1, t)[0])(torch.tensor([0.5, 0.5, 0.5]))
    assert jac.shape == (3, 2, 3)
