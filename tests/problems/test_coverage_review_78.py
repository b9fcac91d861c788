"""Coverage review (round 78): problems code that no default test executed.

Integer inputs converted to floating values (an FK state given as a list of ints, GPME
diffusivities of integer states, the linear map's exact field of integer points), the tangent
solve's logistic factors recomputed where a graph runs through ``rho``, phantoms of numpy
arrays and of lists, and the argument checks of ragged lists and boolean parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys.problems.fisher_kolmogorov import fk_forward, fk_forward_tangent, tissue_faces
from bayesphys.problems.glioma import brain_phantom, synthetic_patient
from bayesphys.problems.gpme import get_problem
from bayesphys.problems.populations import linear_map_exact_field

F64 = torch.float64


def _faces(n: int = 12):
    return tissue_faces(torch.ones(n, n, dtype=F64), torch.zeros(n, n, dtype=F64))


# -- fk_forward ---------------------------------------------------------------------------------


def test_fk_forward_reads_a_list_of_ints_as_that_state():
    """``_real_state``: arrays and lists are converted, an integral one to floating values (0 /
    1 states as ints would be rounded by every step). Oracle: the same state as a float64
    tensor."""
    faces = _faces()
    c0 = [[0] * 12 for _ in range(12)]
    c0[5][5] = c0[5][6] = 1
    kw = dict(t_end=5.0, steps=20, spacing=1.0)
    got = fk_forward(c0, faces, 0.1, 0.3, **kw)
    want = fk_forward(torch.tensor(c0, dtype=F64), faces, 0.1, 0.3, **kw)
    assert got.is_floating_point()
    torch.testing.assert_close(got.to(F64), want, rtol=1e-6, atol=1e-7)
    assert 0.0 < float(want.sum()) and float(want.max()) < 1.0  # it diffused and grew


def test_strang_tangent_differentiated_in_rho():
    """Where a reverse-mode graph runs through ``rho`` the tangent solve's logistic factors are
    recomputed at every half-step (``_HalfStepFactors`` without reuse): the same state and
    tangent as without the graph, and the second derivative d/d rho of the tangent's rho
    column equal to a central finite difference of that column. The column itself is checked
    against reverse mode through ``fk_forward`` (its own code)."""
    faces = _faces()
    c0 = torch.zeros(12, 12, dtype=F64)
    c0[5:7, 5:7] = 0.5
    kw = dict(t_end=5.0, steps=20, spacing=1.0, scheme="strang")
    zero = torch.zeros(1, dtype=F64)
    dc0 = torch.zeros(1, 12, 12, dtype=F64)

    def tangent(rho):
        return fk_forward_tangent(c0, dc0, faces, 0.1, rho, zero, zero + 1.0, **kw)

    rho = torch.tensor(0.3, dtype=F64, requires_grad=True)
    c, dc = tangent(rho)
    c_plain, dc_plain = tangent(0.3)
    assert torch.equal(c.detach(), c_plain) and torch.equal(dc.detach(), dc_plain)
    (second,) = torch.autograd.grad(dc.sum(), rho)
    h = 1e-5
    fd = (tangent(0.3 + h)[1].sum() - tangent(0.3 - h)[1].sum()) / (2 * h)
    torch.testing.assert_close(second, fd, rtol=1e-6, atol=0.0)
    (first,) = torch.autograd.grad(fk_forward(c0, faces, 0.1, rho, **kw).sum(), rho)
    torch.testing.assert_close(first, dc_plain.sum(), rtol=1e-10, atol=0.0)


# -- synthetic_patient of a numpy phantom -------------------------------------------------------


def test_a_phantom_of_numpy_arrays_is_the_same_patient():
    ph = brain_phantom(16, 8.0)
    as_numpy = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in ph.items()}
    a = synthetic_patient(0, phantom=ph)
    b = synthetic_patient(0, phantom=as_numpy)
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k
    # a NaN in a numpy map is still refused by name (it skips the tensor-only finite check)
    bad = dict(as_numpy, gm=as_numpy["gm"].copy())
    bad["gm"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^phantom\['gm'\]: expected finite values"):
        synthetic_patient(0, phantom=bad)


@pytest.mark.parametrize("keys", [("gm",), ("brain",), ("wm",), ("wm", "gm", "brain")])
def test_a_phantom_map_that_is_no_tensor_or_array_is_refused_by_name(keys):
    """The docstring: "checked before any simulation: ... phantom a dict with wm, gm, brain,
    spacing (tensors or numpy arrays)". A nested-list map went past that check (the finite
    check read tensors only): a list ``brain`` failed with "list indices must be integers or
    slices, not tuple", a list ``wm`` with an ``AttributeError`` ('shape'), a list ``gm`` was
    taken silently."""
    ph = brain_phantom(16, 8.0)
    bad = dict(ph, **{k: ph[k].tolist() for k in keys})
    with pytest.raises(
        TypeError,
        match=rf"^phantom\['{keys[0]}'\]: expected a tensor or numpy array, received list",
    ):
        synthetic_patient(0, phantom=bad)


# -- GPME problems ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["diffusion", "pme", "stefan"])
def test_diffusivity_of_an_integer_state_is_that_of_its_floats(name):
    """``_diffusivity_args``: "an integral one [u] to the default floating dtype"."""
    prob = get_problem(name)
    param = float(prob.train_range[0])
    u = [1, 0, 2]
    got = prob.diffusivity(u, param)
    assert got.dtype == torch.get_default_dtype()
    want = prob.diffusivity(torch.tensor([1.0, 0.0, 2.0], dtype=torch.get_default_dtype()), param)
    assert torch.equal(got, want)
    assert torch.equal(prob.diffusivity(torch.tensor(u), param), want)


@pytest.mark.parametrize("name", ["diffusion", "pme", "stefan"])
@pytest.mark.parametrize("param", [True, [True, False], np.array([True, False])])
def test_diffusivity_refuses_a_bool_parameter_by_name(name, param):
    prob = get_problem(name)
    with pytest.raises(TypeError, match=rf"^{prob.param_name}: expected real values, received"):
        prob.diffusivity([0.5, 0.2], param)


@pytest.mark.parametrize("name", ["diffusion", "pme", "stefan"])
@pytest.mark.parametrize("arg", ["t", "x", "param"])
def test_solution_names_a_ragged_list(name, arg):
    """``_check_broadcast`` leaves a ragged list (no shape) to the conversion, which names it
    (it failed inside numpy or torch)."""
    prob = get_problem(name)
    lo = float(prob.train_range[0])
    args = {"t": 0.05, "x": 0.5, "param": lo}
    args[arg] = [args[arg], [args[arg], args[arg]]]
    pname = "param" if arg != "param" else prob.param_name
    with pytest.raises(TypeError, match=rf"^{arg if arg != 'param' else pname}: expected a tensor"):
        prob.solution(args["t"], args["x"], args["param"])


# -- the linear map's exact field ---------------------------------------------------------------


def test_linear_map_exact_field_of_integer_points_and_map():
    """Integer ``x``, ``a``, ``b``: returned in the default float dtype at the time given
    (``t = 0.5`` was read as 0 when cast to the points' integer dtype). Oracle: the docstring's
    v_t(x) = (A - I) M_t^{-1}(x - t b) + b, M_t = (1 - t) I + t A, in numpy float64."""
    x = torch.tensor([[1, 2], [-3, 0], [4, -1]])
    a = torch.tensor([[2, 1], [0, 3]])
    b = torch.tensor([1, -2])
    for t in (0.5, torch.tensor([0.25, 0.5, 0.75])):
        got = linear_map_exact_field(x, t, a, b)
        assert got.dtype == torch.get_default_dtype() and got.shape == (3, 2)
        xn, an, bn = x.numpy().astype(float), a.numpy().astype(float), b.numpy().astype(float)
        ts = np.broadcast_to(np.asarray(t, dtype=float), (3,))
        want = np.stack(
            [
                (an - np.eye(2)) @ np.linalg.solve((1 - s) * np.eye(2) + s * an, xi - s * bn) + bn
                for xi, s in zip(xn, ts)
            ]
        )
        np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5, atol=1e-5)
