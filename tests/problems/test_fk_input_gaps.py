"""The Fisher-Kolmogorov solvers' remaining input gaps: extreme grid steps and widths, the
shapes of the rates, numpy rates, ``logistic_step``'s ``tau``, the tangent's ``dc0`` and
``fk_residual``'s numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesphys.problems import stencil
from bayesphys.problems.fisher_kolmogorov import (
    fk_forward,
    fk_forward_tangent,
    fk_residual,
    initial_condition,
    logistic_step,
    max_step,
    max_steps,
    tissue_faces,
)
from bayesphys.problems.stencil import div_flux

F64 = torch.float64


def _grid(n: int = 6):
    wm = torch.full((n,), 0.8, dtype=F64)
    gm = torch.full((n,), 0.1, dtype=F64)
    c0 = torch.linspace(0.0, 0.5, n, dtype=F64)
    return c0, tissue_faces(wm, gm), [torch.zeros(n, dtype=F64)]


# --- grid steps whose square overflows or underflows float64 --------------------------------


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_a_huge_spacing_gives_the_bound_without_diffusion(scheme):
    # spacing**2 raised an OverflowError naming no argument; the diffusion rate D_w f / h^2
    # is 0 there, so the bound is that of the reaction alone (as with zero faces)
    _, faces, zero = _grid()
    dw, rho = torch.tensor([0.1, 0.0]), torch.tensor([0.1, 0.0])
    got = max_steps(faces, dw, rho, 1e200, scheme)
    assert torch.equal(got, max_steps(zero, dw, rho, 1.0, scheme))
    assert max_step(faces, 0.1, 0.1, 1e200, scheme) == (20.0 if scheme == "euler" else math.inf)


def test_div_flux_with_a_huge_spacing_gives_zero_not_an_overflow_error():
    c0, faces, _ = _grid()
    assert torch.equal(div_flux(c0, faces, [1e200]), torch.zeros_like(c0))


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_fk_forward_with_a_huge_spacing_runs_the_reaction_alone(scheme):
    c0, faces, zero = _grid()
    kw = {"t_end": 1.0, "steps": 10, "scheme": scheme}
    got = fk_forward(c0, faces, 0.1, 0.3, spacing=1e200, **kw)
    assert torch.equal(got, fk_forward(c0, zero, 0.1, 0.3, spacing=1.0, **kw))


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_a_tiny_spacing_with_zero_faces_has_the_reaction_bound_not_nan(scheme):
    # 0 / h^2 with h^2 underflowed to 0 was NaN, which fk_forward then refused as a rate that
    # "overflows float64"
    _, _, zero = _grid()
    dw, rho = torch.tensor([0.1]), torch.tensor([0.3])
    got = max_steps(zero, dw, rho, 1e-200, scheme)
    assert torch.equal(got, max_steps(zero, dw, rho, 1.0, scheme))
    # a NaN rate still has no bound
    assert torch.isnan(max_steps(zero, torch.tensor([math.nan]), rho, 1e-200, scheme)).all()


@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_fk_forward_with_a_tiny_spacing_and_zero_faces_runs(scheme):
    c0, _, zero = _grid()
    kw = {"t_end": 1.0, "steps": 10, "scheme": scheme}
    got = fk_forward(c0, zero, 0.1, 0.3, spacing=1e-200, **kw)
    assert torch.equal(got, fk_forward(c0, zero, 0.1, 0.3, spacing=1.0, **kw))


def test_a_tiny_spacing_with_tissue_faces_is_refused_as_an_infinite_rate():
    c0, faces, _ = _grid()
    assert max_step(faces, 0.1, 0.0, 1e-200, "strang") == 0.0
    assert max_step(faces, 0.0, 0.0, 1e-200, "strang") == math.inf  # D_w = 0: no diffusion
    with pytest.raises(ValueError, match="rate overflows float64"):
        fk_forward(c0, faces, 0.1, 0.3, t_end=1.0, steps=10, spacing=1e-200)


def test_div_flux_keeps_its_precision_where_the_square_of_the_step_is_subnormal():
    # h = 3e-162: h^2 = 9e-324 rounds to the subnormal 1e-323 (10 % off); dividing twice by h
    # keeps the operator's relative precision
    u = torch.tensor([0.0, 1e-300, 3e-300], dtype=F64)
    faces = [torch.ones(3, dtype=F64)]
    h = 3e-162
    want = div_flux(u, faces, [1.0]) / h / h
    assert torch.allclose(div_flux(u, faces, [h]), want, rtol=1e-12, atol=0)
    zero = [torch.zeros(3, dtype=F64)]
    assert torch.equal(div_flux(u, zero, [1e-200]), torch.zeros_like(u))


# --- the shapes of the rates -----------------------------------------------------------------


def _solve(which: str, c0, faces, dw, rho, scheme: str = "euler"):
    if which == "forward":
        return fk_forward(c0, faces, dw, rho, t_end=1.0, steps=10, spacing=1.0, scheme=scheme)
    if which == "tangent":
        d = torch.zeros(2, dtype=F64)
        dc0 = torch.ones((2, *c0.shape), dtype=F64)
        return fk_forward_tangent(
            c0, dc0, faces, dw, rho, d, d, t_end=1.0, steps=10, spacing=1.0, scheme=scheme
        )[1]
    c = torch.stack([c0, 0.9 * c0 + 0.05])
    return fk_residual(c, faces, dw, rho, dt=0.1, spacing=1.0, scheme="cn")


@pytest.mark.parametrize("which", ["forward", "tangent", "residual"])
@pytest.mark.parametrize("shape", [(2,), (6,), (1, 6)])
def test_a_dw_that_is_not_a_scalar_is_refused_by_name(which, shape):
    # torch's "The size of tensor a (6) must match the size of tensor b (2)" named nothing
    c0, faces, _ = _grid()
    dw = torch.full(shape, 0.1, dtype=F64)
    with pytest.raises(ValueError, match=r"dw: expected a number or a 0-dim tensor.*shape \("):
        _solve(which, c0, faces, dw, 0.3)


@pytest.mark.parametrize("which", ["forward", "tangent", "residual"])
@pytest.mark.parametrize("shape", [(2,), (1, 6), (6, 1)])
def test_a_rho_that_is_neither_a_scalar_nor_a_field_is_refused_by_name(which, shape):
    c0, faces, _ = _grid()
    rho = torch.full(shape, 0.3, dtype=F64)
    with pytest.raises(ValueError, match=r"rho: expected a number, a 0-dim tensor or a field"):
        _solve(which, c0, faces, 0.1, rho)


@pytest.mark.parametrize("which", ["forward", "tangent", "residual"])
@pytest.mark.parametrize("scheme", ["euler", "strang"])
def test_a_constant_rho_field_gives_the_scalar_rates_values(which, scheme):
    c0, faces, _ = _grid()
    want = _solve(which, c0, faces, torch.tensor(0.1, dtype=F64), 0.3, scheme)
    field = torch.full(c0.shape, 0.3, dtype=F64)
    assert torch.equal(_solve(which, c0, faces, torch.tensor(0.1, dtype=F64), field, scheme), want)


def test_a_rho_field_is_a_growth_rate_per_cell():
    # no diffusion (zero faces): each cell follows its own exact logistic flow over t_end
    c0, _, zero = _grid()
    rho = torch.linspace(0.0, 1.0, 6, dtype=F64)
    got = fk_forward(c0, zero, 0.1, rho, t_end=2.0, steps=8, spacing=1.0, scheme="strang")
    assert torch.allclose(got, logistic_step(c0, rho, 2.0), rtol=1e-12, atol=1e-15)
    assert not torch.allclose(got, logistic_step(c0, 0.5, 2.0))


@pytest.mark.parametrize("shape", [(2,), (2, 6)])
def test_logistic_step_refuses_a_rho_that_does_not_broadcast_to_the_state(shape):
    # (2,) failed with torch's unnamed size mismatch; (2, 6) grew the result to [2, 6]
    c0, _, _ = _grid()
    with pytest.raises(ValueError, match=r"rho: expected a number or a tensor that broadcasts"):
        logistic_step(c0, torch.full(shape, 0.3, dtype=F64), 1.0)
    per_entry = logistic_step(c0, torch.full((6,), 0.3, dtype=F64), 1.0)
    assert torch.equal(per_entry, logistic_step(c0, 0.3, 1.0))


# --- logistic_step's tau -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tau", "error", "match"),
    [
        ("a", TypeError, r"tau: expected a real number, received str"),
        (None, TypeError, r"tau: expected a real number, received NoneType"),
        (math.nan, ValueError, r"tau: expected a finite number, received nan"),
        (math.inf, ValueError, r"tau: expected a finite number, received inf"),
        (-1.0, ValueError, r"tau: expected a number >= 0.0, received -1.0"),
        (torch.ones(2), ValueError, r"tau: expected a number or a 0-dim tensor.*\(2,\)"),
    ],
)
def test_logistic_step_refuses_a_tau_that_is_not_a_duration(tau, error, match):
    # "a" failed with "only integer tensors of a single element can be converted to an
    # index"; NaN gave a NaN state silently
    c0, _, _ = _grid()
    with pytest.raises(error, match=match):
        logistic_step(c0, 0.3, tau)


def test_logistic_step_takes_a_zero_or_a_0_dim_tensor_tau():
    c0, _, _ = _grid()
    assert torch.equal(logistic_step(c0, 0.3, 0.0), c0)
    tau = torch.tensor(2.0, dtype=F64, requires_grad=True)
    got = logistic_step(c0, 0.3, tau)
    assert torch.equal(got.detach(), logistic_step(c0, 0.3, 2.0))
    got.sum().backward()
    assert tau.grad is not None and float(tau.grad) > 0  # the cells grow with tau


# --- fk_forward_tangent's dc0 ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_fk_forward_tangent_refuses_a_non_finite_dc0_by_name(bad):
    # c0 was refused, dc0 gave a NaN tangent silently
    c0, faces, _ = _grid()
    dc0 = torch.zeros((2, 6), dtype=F64)
    dc0[1, 3] = bad
    d = torch.zeros(2, dtype=F64)
    kw = {"t_end": 1.0, "steps": 10, "spacing": 1.0}
    with pytest.raises(ValueError, match=r"^dc0: expected finite values, received 1 NaN/Inf"):
        fk_forward_tangent(c0, dc0, faces, 0.1, 0.3, d, d, **kw)
    _, dc = fk_forward_tangent(c0, dc0.nan_to_num(0.0, 0.0, 0.0), faces, 0.1, 0.3, d, d, **kw)
    assert torch.isfinite(dc).all()


# --- fk_residual's numbers and schemes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("dw", "rho", "match"),
    [
        (-0.1, 0.3, r"^dw: expected a number >= 0.0, received -0.1"),
        (math.nan, 0.3, r"^dw: expected a finite number, received nan"),
        (math.inf, 0.3, r"^dw: expected a finite number, received inf"),
        (0.1, math.nan, r"^rho: expected a finite number, received nan"),
        (0.1, -math.inf, r"^rho: expected a finite number, received -inf"),
    ],
)
def test_fk_residual_checks_rates_given_as_numbers_as_fk_forward(dw, rho, match):
    # a negative or NaN number was accepted (fk_forward refuses them)
    c0, faces, _ = _grid()
    c = torch.stack([c0, c0])
    with pytest.raises(ValueError, match=match):
        fk_residual(c, faces, dw, rho, dt=0.1, spacing=1.0)
    with pytest.raises(ValueError, match=match):
        fk_forward(c0, faces, dw, rho, t_end=1.0, steps=10, spacing=1.0)


def test_fk_residual_leaves_tensor_rates_to_its_caller():
    # a model's residual at a trial point: a NaN tensor rate gives a NaN residual, no error
    c0, faces, _ = _grid()
    c = torch.stack([c0, c0])
    nan = torch.tensor(math.nan, dtype=F64)
    assert torch.isnan(fk_residual(c, faces, nan, 0.3, dt=0.1, spacing=1.0)).any()
    neg = torch.tensor(-0.1, dtype=F64)
    assert torch.isfinite(fk_residual(c, faces, neg, 0.3, dt=0.1, spacing=1.0)).all()


@pytest.mark.parametrize(("scheme", "hint"), [("CN", "'cn'"), ("Euler", "'euler'")])
def test_fk_residual_names_its_schemes_and_the_closest(scheme, hint):
    c0, faces, _ = _grid()
    with pytest.raises(
        ValueError,
        match=rf"^scheme: expected one of \('cn', 'euler'\), received '{scheme}' "
        rf"\(did you mean {hint}\?\)",
    ):
        fk_residual(torch.stack([c0, c0]), faces, 0.1, 0.3, dt=0.1, spacing=1.0, scheme=scheme)


# --- extreme widths, the stencil's second differences, numpy rates ----------------------------


@pytest.mark.parametrize("width", [1e155, 1e200])
def test_initial_condition_with_a_huge_width_is_flat(width):
    # width**2 raised an OverflowError naming no argument
    focus = torch.tensor([1.5, 0.5], dtype=F64)
    got = initial_condition((3, 2), focus, 1.0, width=width, amplitude=0.4)
    assert torch.equal(got, torch.full((3, 2), 0.4, dtype=F64))
    # with a huge spacing too, the distances in widths (inf / inf gave NaN)
    far = initial_condition((3,), torch.tensor([0.0], dtype=F64), 1e200, width=1e200)
    want = 0.5 * torch.exp(-0.5 * torch.tensor([0.25, 2.25, 6.25], dtype=F64))
    assert torch.allclose(far, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("width", [1e-160, 1e-200])
def test_initial_condition_with_a_tiny_width_is_zero_off_the_focus(width):
    # width**2 underflowed to 0: 0 / 0 = NaN on the cell centre at the focus
    got = initial_condition((4,), torch.tensor([1.5], dtype=F64), 1.0, width=width)
    assert torch.equal(got, torch.tensor([0.0, 0.5, 0.0, 0.0], dtype=F64))


def test_initial_condition_keeps_its_values_for_ordinary_widths():
    focus = torch.tensor([1.3, 2.1], dtype=F64)
    got = initial_condition((4, 5), focus, 0.7, width=2.5, amplitude=0.3)
    axes = [(torch.arange(n, dtype=F64) + 0.5) * 0.7 for n in (4, 5)]
    gx, gy = torch.meshgrid(*axes, indexing="ij")
    want = 0.3 * torch.exp(-((gx - 1.3) ** 2 + (gy - 2.1) ** 2) / (2 * 2.5**2))
    assert torch.equal(got, want)


@pytest.mark.parametrize("h", [1e-200, 3e-162])
def test_d2_and_laplacian_divide_twice_by_a_step_whose_square_underflows(h):
    # (u_{i+1} - 2u_i + u_{i-1}) / (h * h) with h * h = 0: NaN for a zero difference
    u = torch.tensor([0.0, 1e-300, 3e-300, 2e-300], dtype=F64)
    want = stencil.d2(u, 0, 1.0) / h / h
    assert torch.allclose(stencil.d2(u, 0, h), want, rtol=1e-12, atol=0)
    assert torch.allclose(stencil.laplacian(u, [h]), want, rtol=1e-12, atol=0)
    flat = torch.zeros((2, 3), dtype=F64)
    assert torch.equal(stencil.d2(flat, 1, h), flat)
    assert torch.equal(stencil.laplacian(flat, [h, h]), flat)


def test_d2_with_a_huge_step_gives_zero_and_keeps_ordinary_values():
    u = torch.tensor([0.0, 1.0, 3.0, 2.0], dtype=F64)
    assert torch.equal(stencil.d2(u, 0, 1e200), torch.zeros_like(u))
    want = (torch.roll(u, -1) - 2 * u + torch.roll(u, 1)) / (0.3 * 0.3)
    assert torch.equal(stencil.d2(u, 0, 0.3), want)


_WHICH = ["forward", "tangent", "residual"]


@pytest.mark.parametrize("which", _WHICH)
def test_a_0_dim_numpy_rate_is_a_number_without_numpy_warnings(which, recwarn):
    # a 0-dim array dw scaled the faces with numpy's __array_wrap__ DeprecationWarning; a
    # 0-dim array rho failed with "unsupported operand type(s) for *"
    c0, faces, _ = _grid()
    got = _solve(which, c0, faces, np.array(0.1), np.array(0.3))
    assert torch.equal(got, _solve(which, c0, faces, 0.1, 0.3))
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


@pytest.mark.parametrize("which", _WHICH)
@pytest.mark.parametrize(
    ("dw", "rho", "match"),
    [
        (np.array(-0.1), 0.3, r"^dw: expected a number >= 0.0, received -0.1"),
        (np.array(math.nan), 0.3, r"^dw: expected a finite number, received nan"),
        (0.1, np.array(math.inf), r"^rho: expected a finite number, received inf"),
        (0.1, np.full(6, math.nan), r"^rho: expected finite values"),
    ],
)
def test_numpy_rates_are_checked_as_numbers(which, dw, rho, match):
    # a NaN or negative array went on (a NaN state, or only a warning) where the same number
    # is refused
    c0, faces, _ = _grid()
    with pytest.raises(ValueError, match=match):
        _solve(which, c0, faces, dw, rho)


@pytest.mark.parametrize("which", _WHICH)
def test_a_numpy_rho_field_is_the_tensor_field(which):
    c0, faces, _ = _grid()
    field = np.linspace(0.1, 0.5, 6)
    want = _solve(which, c0, faces, 0.1, torch.tensor(field, dtype=F64))
    assert torch.equal(_solve(which, c0, faces, 0.1, field), want)
    with pytest.raises(TypeError, match=r"^rho: expected real rates, received an array of bool"):
        _solve(which, c0, faces, 0.1, np.ones(6, dtype=bool))


# --- logistic_step's number rate ---------------------------------------------------------


@pytest.mark.parametrize("rho", [float("nan"), float("inf"), np.float64("nan"), np.array(np.inf)])
def test_logistic_step_refuses_a_non_finite_number_rate(rho):
    # a NaN or infinite number rate gave a NaN state silently
    with pytest.raises(ValueError, match=r"^rho: expected a finite number"):
        logistic_step(torch.full((3,), 0.5, dtype=F64), rho, 1.0)


def test_logistic_step_checks_a_numpy_rate_field_as_fk_forward_does():
    c = torch.full((3,), 0.5, dtype=F64)
    with pytest.raises(ValueError, match=r"^rho: expected finite values"):
        logistic_step(c, np.array([0.5, np.nan, 0.5]), 1.0)  # gave a NaN entry silently
    field = np.array([0.1, 0.5, 0.9])
    want = logistic_step(c, torch.tensor(field, dtype=F64), 1.0)
    assert torch.equal(logistic_step(c, field, 1.0), want)


def test_logistic_step_refuses_a_bool_rate_and_keeps_number_and_tensor_rates():
    c = torch.full((3,), 0.5, dtype=F64)
    with pytest.raises(TypeError, match=r"^rho: expected a number or a tensor, received bool"):
        logistic_step(c, True, 1.0)
    want = 0.5 * math.exp(0.5) / (1 + 0.5 * (math.exp(0.5) - 1))
    assert torch.allclose(logistic_step(c, 0.5, 1.0), torch.full((3,), want, dtype=F64))
    assert torch.allclose(logistic_step(c, np.array(0.5), 1.0), torch.full((3,), want, dtype=F64))
    rho = torch.tensor(0.5, dtype=F64, requires_grad=True)
    logistic_step(c, rho, 1.0).sum().backward()
    assert rho.grad is not None and bool(torch.isfinite(rho.grad))


# --- source lines --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["_fk_geometry", "_fk_solver", "_fk_stability", "fisher_kolmogorov", "stencil"]
)
def test_the_fk_modules_keep_their_lines_within_100_characters(name):
    # ruff leaves long lines to its formatter, which does not rewrap docstrings or strings
    path = Path(stencil.__file__).with_name(f"{name}.py")
    long = [k + 1 for k, line in enumerate(path.read_text().splitlines()) if len(line) > 100]
    assert not long, f"{path.name}: lines over 100 characters: {long}"


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_initial_condition_refuses_a_non_finite_tensor_focus(bad):
    # only a focus given as numbers was checked: a NaN tensor gave a NaN state, an infinite
    # one a zero state, silently
    focus = torch.tensor([bad, 1.0], dtype=F64)
    with pytest.raises(ValueError, match=r"^focus: expected finite values, received 1 NaN/Inf"):
        initial_condition((4, 4), focus, 1.0)
