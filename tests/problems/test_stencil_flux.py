"""div_flux against an explicit per-cell sum of face fluxes (property test)."""

from __future__ import annotations

import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.problems.stencil import div_flux, face_average


def _cellwise(u: torch.Tensor, faces, spacing) -> torch.Tensor:
    """Cell i gains D_{i+1/2}(u_{i+1} - u_i) and loses D_{i-1/2}(u_i - u_{i-1}) per axis; no
    flux through the outer faces; loops over every cell."""
    nd = len(spacing)
    grid = u.shape[u.ndim - nd :]
    out = torch.zeros_like(u)
    for idx in itertools.product(*(range(n) for n in grid)):
        total = torch.zeros(u.shape[: u.ndim - nd], dtype=u.dtype)
        for k in range(nd):
            acc = torch.zeros_like(total)
            if idx[k] + 1 < grid[k]:
                nxt = list(idx)
                nxt[k] += 1
                acc = acc + faces[k][idx] * (u[(..., *nxt)] - u[(..., *idx)])
            if idx[k] > 0:
                prv = list(idx)
                prv[k] -= 1
                acc = acc - faces[k][tuple(prv)] * (u[(..., *idx)] - u[(..., *prv)])
            total = total + acc / spacing[k] ** 2
        out[(..., *idx)] = total
    return out


@settings(max_examples=30, deadline=None)
@given(
    grid=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    batch=st.integers(0, 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_div_flux_is_the_cellwise_flux_balance(grid, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    shape = ([3] * batch) + grid
    u = torch.randn(shape, generator=gen, dtype=torch.float64)
    coef = torch.rand(grid, generator=gen, dtype=torch.float64) + 0.1
    faces = [face_average(coef, k) for k in range(len(grid))]
    spacing = [0.5 + 0.25 * k for k in range(len(grid))]
    got = div_flux(u, faces, spacing)
    torch.testing.assert_close(got, _cellwise(u, faces, spacing), rtol=1e-12, atol=1e-12)
    # telescoping: no mass is created, whatever the coefficients
    assert float(got.sum().abs()) < 1e-10 * (1 + float(u.abs().sum()))


@settings(max_examples=15, deadline=None)
@given(grid=st.lists(st.integers(2, 4), min_size=1, max_size=2), seed=st.integers(0, 2**31 - 1))
def test_div_flux_gradients_match_the_cellwise_form(grid, seed):
    # values are bit-identical to the one-sided form; gradients agree to round-off
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(grid, generator=gen, dtype=torch.float64, requires_grad=True)
    coef = (torch.rand(grid, generator=gen, dtype=torch.float64) + 0.1).requires_grad_(True)
    w = torch.randn(grid, generator=gen, dtype=torch.float64)
    spacing = [0.5 + 0.25 * k for k in range(len(grid))]

    def grads(op):
        faces = [face_average(coef, k) for k in range(len(grid))]
        return torch.autograd.grad((op(u, faces, spacing) * w).sum(), (u, coef))

    for got, want in zip(grads(div_flux), grads(_cellwise)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _div_flux_fpad(u, faces, spacing):
    """div_flux as written with ``F.pad`` (before its constant pads were called directly)."""
    import torch.nn.functional as F

    nd = len(spacing)
    out = torch.zeros_like(u)
    for k in range(nd):
        ax = u.ndim - nd + k
        flux = faces[k].narrow(k, 0, max(u.shape[ax] - 1, 0)) * torch.diff(u, dim=ax)
        pad = [0, 0] * (u.ndim - 1 - ax)
        out = out + (F.pad(flux, [*pad, 0, 1]) - F.pad(flux, [*pad, 1, 0])) / (spacing[k] ** 2)
    return out


def test_div_flux_matches_the_f_pad_form_bit_for_bit():
    """Values, first and second derivatives (the ODIL engine's double-vjp products) equal."""
    g = torch.Generator().manual_seed(0)
    for grid in ((7,), (5, 6), (3, 4, 5)):
        u0 = torch.randn((2, *grid), dtype=torch.float64, generator=g)
        f0 = [torch.rand(grid, dtype=torch.float64, generator=g) for _ in grid]
        hs = [0.7 + 0.3 * k for k in range(len(grid))]
        w = torch.randn_like(u0)
        outs = []
        for fn in (div_flux, _div_flux_fpad):
            u = u0.clone().requires_grad_(True)
            dw = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
            r = fn(u * u, [f * dw for f in f0], hs)
            gu, gd = torch.autograd.grad(r, (u, dw), w, create_graph=True)
            hu = torch.autograd.grad((gu * w).sum() + gd, u)[0]
            outs.append((r, gu, gd, hu))
        for a, b in zip(*outs):
            assert torch.equal(a, b)


def test_stencil_arguments_are_checked_and_a_zero_shift_is_the_field():
    import pytest

    from bayesphys.problems.stencil import d1, laplacian, shift

    u = torch.arange(6.0).reshape(2, 3)
    v = shift(u, 1, 0)  # the field's values, in a tensor of its own
    assert torch.equal(v, u) and v is not u
    with pytest.raises(ValueError, match=r"^bc: expected one of .*received 'periodc'.*periodic"):
        shift(u, 1, 1, bc="periodc")
    with pytest.raises(
        ValueError, match=r"^scheme: expected 'central', 'backward' or 'forward', received 'up'$"
    ):
        d1(u, 1, 0.5, scheme="up")
    with pytest.raises(TypeError, match=r"^spacing: expected a sequence of grid steps, one per"):
        laplacian(u, None)
    for fn, args in ((laplacian, (u, [1.0] * 3)), (div_flux, (u, [u] * 3, [1.0] * 3))):
        with pytest.raises(
            ValueError, match=r"^spacing: expected at most u\.ndim = 2 steps, received 3$"
        ):
            fn(*args)
