"""Fisher-Kolmogorov solver inputs found by a user-side audit (each failed before its fix)."""

import pytest
import torch

from bayesphys.problems.fisher_kolmogorov import (
    fk_forward,
    fk_forward_tangent,
    initial_condition,
    tissue_faces,
)

F64 = torch.float64


def _grid(n: int = 6):
    wm = torch.full((n, n), 0.9, dtype=F64)
    gm = torch.full((n, n), 0.1, dtype=F64)
    faces = tissue_faces(wm, gm)
    c0 = initial_condition((n, n), torch.tensor([3.0, 3.0], dtype=F64), 1.0)
    return faces, c0


def test_fk_forward_refuses_an_impractical_step_count():
    # t_end=0 gives dt=0, which passed the stability check: 10**12 steps ran for days
    faces, c0 = _grid()
    with pytest.raises(
        ValueError,
        match=r"^steps: expected at most 1e\+09 .* received 1(0){12}; size them with stable_steps$",
    ):
        fk_forward(c0, faces, 0.1, 0.05, t_end=0.0, steps=10**12, spacing=1.0)
    one = torch.ones(1, dtype=F64)
    with pytest.raises(ValueError, match=r"^steps: expected at most 1e\+09"):
        fk_forward_tangent(
            c0, c0[None], faces, 0.1, 0.05, one, one, t_end=0.0, steps=10**12, spacing=1.0
        )


def test_fk_forward_flags_a_negative_tensor_diffusivity():
    # the stability bound read |dw|: a tensor dw = -0.2 blew up to ~1e46 without a word
    faces, c0 = _grid()
    kw = {"t_end": 10.0, "steps": 40, "spacing": 1.0}
    with pytest.warns(RuntimeWarning, match=r"^dw: expected diffusivities >= 0, .* -0\.2 "):
        fk_forward(c0, faces, torch.tensor(-0.2, dtype=F64), 0.05, **kw)
    with pytest.warns(RuntimeWarning, match=r"^dw: expected diffusivities >= 0"):
        one = torch.ones(1, dtype=F64)
        fk_forward_tangent(c0, c0[None], faces, torch.tensor(-0.2, dtype=F64), 0.05, one, one, **kw)
    # a non-negative tensor still runs without a warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fk_forward(c0, faces, torch.tensor(0.2, dtype=F64), 0.05, **kw)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool])
def test_initial_condition_names_a_complex_or_bool_focus(dtype):
    # failed inside torch.arange: '"arange_cpu" not implemented for ...'
    with pytest.raises(TypeError, match=r"^focus: expected real coordinates \(mm\)"):
        initial_condition((4, 4), torch.ones(2, dtype=dtype), 1.0)


def test_initial_condition_checks_a_list_focus_and_the_origin():
    with pytest.raises(ValueError, match=r"^focus: expected finite values"):
        initial_condition((4, 4), [float("nan"), 1.0], 1.0)  # a NaN state, silently
    with pytest.raises(TypeError, match=r"^origin: expected 2 numbers \(mm\), received 'ab'"):
        initial_condition((4, 4), [1.0, 1.0], 1.0, origin="ab")  # str + Tensor TypeError
    with pytest.raises(ValueError, match=r"^origin\[0\]: expected a finite number"):
        initial_condition((4, 4), [1.0, 1.0], 1.0, origin=[float("nan"), 0.0])
    # 0-d tensors and numpy scalars are numbers, as before
    import numpy as np

    a = initial_condition((4, 4), [1.0, 1.0], 1.0, origin=[torch.tensor(0.5), np.float64(1.0)])
    b = initial_condition((4, 4), [1.0, 1.0], 1.0, origin=[0.5, 1.0])
    assert torch.equal(a, b)


def test_segment_takes_lists_and_names_a_complex_map():
    from bayesphys.problems.glioma import segment

    c = torch.tensor([[0.1, 0.3], [0.7, 0.5]], dtype=F64)
    brain = torch.ones(2, 2, dtype=F64)
    want = segment(c, 0.6, 0.25, brain)
    # AttributeError: 'list' object has no attribute 'shape'
    assert torch.equal(segment(c.tolist(), 0.6, 0.25, brain.tolist()), want)
    with pytest.raises(TypeError, match=r"^c: expected real values"):  # '"ge_cpu" not ...'
        segment(c.to(torch.complex128), 0.6, 0.25, brain)


def test_fk_functions_take_lists_and_name_complex_states():
    from bayesphys.problems.fisher_kolmogorov import fk_residual

    faces, c0 = _grid()
    kw = {"t_end": 1.0, "steps": 4, "spacing": 1.0}
    want = fk_forward(c0, faces, 0.1, 0.05, **kw)
    # each of these failed with AttributeError: 'list' object has no attribute ...
    assert torch.equal(fk_forward(c0.tolist(), faces, 0.1, 0.05, **kw), want)
    wm = torch.full((6, 6), 0.9, dtype=F64)
    gm = torch.full((6, 6), 0.1, dtype=F64)
    for a, b in zip(tissue_faces(wm.tolist(), gm.tolist()), faces):
        assert torch.equal(a, b)
    traj = torch.stack([c0, want])
    r = fk_residual(traj, faces, 0.1, 0.05, dt=1.0, spacing=1.0)
    assert torch.equal(fk_residual(traj.tolist(), faces, 0.1, 0.05, dt=1.0, spacing=1.0), r)
    one = torch.ones(1, dtype=F64)
    c, dc = fk_forward_tangent(c0, c0[None], faces, 0.1, 0.05, one, one, **kw)
    c2, dc2 = fk_forward_tangent(c0, c0[None].tolist(), faces, 0.1, 0.05, [1.0], [1.0], **kw)
    assert torch.equal(c, c2) and torch.equal(dc, dc2)
    # complex states ran in complex arithmetic; complex tissue maps failed inside torch
    with pytest.raises(TypeError, match=r"^c0: expected a real state, received torch\.complex"):
        fk_forward(c0.to(torch.complex128), faces, 0.1, 0.05, **kw)
    with pytest.raises(TypeError, match=r"^wm: expected real values"):
        tissue_faces(wm.to(torch.complex128), gm)
