"""A user's wrong arguments to meta_fm and the population generators: refused with an error
that names them, where they were read silently (a wrong answer) or failed inside torch."""

import dataclasses

import pytest

from bayesphys.meta_fm import MetaFlowMatching, shift_prediction
from bayesphys.problems.populations import linear_map, patient_screen
from tests.tiny_models import TINY_MFM


def _pairs():
    return linear_map(n_train=4, n_cal=2, n_test=2, n_points=20)


def _screen():
    return patient_screen(n_patients=4, n_treatments=2, n_replicates=1, n_cells=24, dim=3)


@pytest.mark.parametrize("flag", ["no", 1, None])
def test_a_pairing_flag_that_is_not_a_bool_is_refused(flag):
    """``paired="no"`` is truthy: unpaired data were trained with the index coupling."""
    scr = dataclasses.replace(_screen(), paired=flag)
    msg = rf"^data\.paired: expected True or False, received {type(flag).__name__}"
    with pytest.raises(TypeError, match=msg):
        MetaFlowMatching(scr, **TINY_MFM)
    with pytest.raises(TypeError, match=msg):
        MetaFlowMatching(dim=3, num_treatments=2, coupling="ot", **TINY_MFM).fit(
            scr, steps=1, progress=False
        )
    with pytest.raises(TypeError, match=msg):
        shift_prediction(scr, _screen())
    assert MetaFlowMatching(_screen(), **TINY_MFM).coupling == "ot"
