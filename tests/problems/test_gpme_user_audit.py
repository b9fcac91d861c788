"""The GPME problems given what a user may pass: indices of a data set, and values of
shapes that do not broadcast together.

Each case here used to give a malformed result without a word, or fail inside torch with a
message that named no argument.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys.problems.gpme import make_dataset


@pytest.fixture(scope="module")
def data():
    return make_dataset("pme", 3, n_t_context=2, n_x_context=2, n_t_target=2, n_x_target=2)


@pytest.mark.parametrize("idx", [1, -2, np.int64(1), torch.tensor(1)])
def test_subset_with_one_index_keeps_the_function_axis(data, idx):
    # an int dropped the axis: params [] and x_context [4, 2], a set whose len() failed
    one = data.subset(idx)
    assert len(one) == 1
    assert one.params.shape == (1,) and one.x_context.shape == (1, 4, 2)
    assert one.y_context.shape == (1, 4) and one.y_target.shape == (1, 4)
    assert torch.equal(one.x_target, data.x_target[1:2])
    assert float(one.params[0]) == float(data.params[1])


def test_subset_refuses_a_bool_index(data):
    with pytest.raises(TypeError, match=r"^idx: expected a slice, an int or a sequence"):
        data.subset(True)  # read as a new axis: params [1, 3]
