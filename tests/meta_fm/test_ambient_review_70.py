"""Meta Flow Matching trains the same under another torch default dtype (review of
process-wide torch settings): the flow-matching times were drawn in the default dtype, so
under ``torch.set_default_dtype(torch.float64)`` the same seed drew other times and the fit
went elsewhere (its first loss 0.4711 instead of 0.4718), although its networks are built
in float32 whatever the default."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.problems.populations import linear_map, patient_screen
from tests.tiny_models import TINY_MFM


def _plain():
    data = linear_map(n_train=6, n_cal=0, n_test=2, n_points=32, seed=0)
    model = MetaFlowMatching(data, seed=0, **TINY_MFM)
    loss = model.fit(steps=2, progress=False).loss_history
    return loss, model.posterior([data.source[0]], num_samples=2, seed=0).draws


def _type_frame():
    data = patient_screen(n_patients=4, n_treatments=2, n_replicates=3, n_cells=30, dim=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # populations smaller than points
        model = MetaFlowMatching(data, type_frame=True, seed=0, **TINY_MFM)
        loss = model.fit(steps=2, progress=False).loss_history
    return loss, None


@pytest.mark.parametrize("run", [_plain, _type_frame], ids=["plain", "type_frame"])
def test_a_fit_under_a_float64_default_dtype_is_the_fit_under_float32(run):
    ref_loss, ref_draws = run()
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        loss, draws = run()
    finally:
        torch.set_default_dtype(before)
    assert loss == ref_loss and len(loss) == 2
    if ref_draws is not None:
        assert draws.dtype == ref_draws.dtype == torch.float32  # the model's dtype
        assert torch.equal(draws, ref_draws)
