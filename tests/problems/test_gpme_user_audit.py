"""The GPME problems given what a user may pass: indices of a data set, and values of
shapes that do not broadcast together.

Each case here used to give a malformed result without a word, or fail inside torch with a
message that named no argument.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys.problems.gpme import (
    Diffusion,
    PorousMedium,
    Stefan,
    get_problem,
    make_dataset,
    stefan_front,
)


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


_PARAM = {"diffusion": 1.0, "pme": 2.0, "stefan": 0.6}


@pytest.mark.parametrize("name", ["diffusion", "pme", "stefan"])
def test_closed_forms_name_shapes_that_do_not_broadcast(name):
    prob = get_problem(name)
    p, t3, x4 = _PARAM[name], torch.full((3,), 0.05), torch.full((4,), 0.1)
    # failed inside torch: "The size of tensor a (3) must match the size of tensor b (4)"
    want = rf"^t, x, {prob.param_name}: expected shapes that broadcast together, received t \(3,\)"
    with pytest.raises(ValueError, match=want):
        prob.solution(t3, x4, p)
    for method in (prob.mass, prob.boundary_flux):
        with pytest.raises(ValueError, match=rf"^t, {prob.param_name}: expected shapes"):
            method(t3, torch.full((4,), p))
    # shapes that broadcast keep working: [3, 1] x [4] -> [3, 4]
    assert prob.solution(t3[:, None], x4, p).shape == (3, 4)
    assert prob.mass(t3[:, None], torch.full((4,), p)).shape == (3, 4)


def test_stefan_front_names_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"^t, u_star: expected shapes that broadcast"):
        stefan_front(torch.zeros(3), torch.full((4,), 0.6))
    assert stefan_front([[0.01], [0.04]], [0.5, 0.6]).shape == (2, 2)


@pytest.mark.parametrize("family", [Diffusion, PorousMedium, Stefan])
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"train_range": (0.7, 0.6)}, r"^train_range: expected lo < hi"),
        ({"train_range": (-1.0, 0.6)}, r"^train_range: expected \w+ in \("),
        ({"table_time": float("nan")}, r"^table_time: expected a finite number"),
        ({"table_time": 5.0}, r"^table_time: expected a time in t_range"),
    ],
)
def test_a_problem_checks_its_train_range_and_table_time(family, kw, match):
    # each was accepted: a reversed range drew parameters silently, the others failed later
    # (at the first draw, or at the first posterior naming a t never passed)
    with pytest.raises(ValueError, match=match):
        family(**kw)


def test_a_customised_problem_inside_its_domain_is_accepted():
    prob = PorousMedium(train_range=(2.0, 4.0), table_time=0.25)
    assert prob.train_range == (2.0, 4.0) and prob.table_time == 0.25
    assert Stefan(table_time=0.1).table_time == 0.1  # the end of t_range is a time in it


@pytest.mark.parametrize(("name", "bad"), [("pme", -1.0), ("diffusion", 0.0), ("stefan", 1.5)])
def test_setting_and_flux_breaks_refuse_a_parameter_outside_the_family(name, bad):
    prob = get_problem(name)
    pattern = rf"^{prob.param_name}: expected {prob.param_name} in \("
    with pytest.raises(ValueError, match=pattern):
        prob.setting(bad)  # {"m": -1, ...} was returned
    with pytest.raises(ValueError, match=pattern):
        prob.flux_breaks(bad)  # pme listed the breaks of m = -1


def test_flux_breaks_take_one_value():
    stefan = get_problem("stefan")
    # a tensor of two values failed in float(): "only one element tensors can be converted"
    with pytest.raises(ValueError, match=r"^u_star: expected a scalar"):
        stefan.flux_breaks(torch.tensor([0.5, 0.6]))
    assert stefan.flux_breaks(torch.tensor([0.6], dtype=torch.float64)) == stefan.flux_breaks(0.6)
    assert get_problem("pme").setting(3.0) == {"m": 3, "t": 0.5}
