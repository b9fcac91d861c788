"""GICNet's kernel interpolation: the hand-written backward (used when the points carry no
gradient) gives autograd's gradients bit for bit, and second derivatives through it are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.neural_process.gicnet import KernelInterpolation, _kernel_average, _KernelAverage


def _inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    nd2 = -torch.rand(2, 1, 7, 9, generator=g, dtype=dtype) * 3  # -d^2 [B, 1, M, N]
    inv = (0.5 + torch.rand(3, generator=g, dtype=dtype)).requires_grad_()  # [P]
    feat = torch.randn(2, 9, 3, generator=g, dtype=dtype).requires_grad_()  # [B, N, P]
    return nd2, inv, feat


@pytest.mark.parametrize("both", [True, False], ids=["h-and-sums", "h-only"])
def test_hand_written_backward_equals_autograd_bit_for_bit(both):
    nd2, inv, feat = _inputs()
    g = torch.Generator().manual_seed(1)
    wh, wk = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)

    def loss(fn):
        h, ks = fn(nd2, inv, feat)
        return (h * wh).sum() + ((ks * wk).sum() if both else 0)

    fast = torch.autograd.grad(loss(_KernelAverage.apply), (inv, feat))
    ref = torch.autograd.grad(loss(_kernel_average), (inv, feat))
    assert all(torch.equal(a, b) for a, b in zip(fast, ref))
    # the values too
    assert all(
        torch.equal(a, b)
        for a, b in zip(_KernelAverage.apply(nd2, inv, feat), _kernel_average(nd2, inv, feat))
    )


def test_second_derivatives_through_the_hand_written_backward():
    nd2, inv, feat = _inputs(torch.float64)

    def fn(i, f):
        return _KernelAverage.apply(nd2, i, f)

    assert torch.autograd.gradcheck(fn, (inv, feat))
    assert torch.autograd.gradgradcheck(fn, (inv, feat))


def test_interpolation_gradients_with_and_without_point_gradients_agree():
    # points that need gradients go through autograd's graph, the others through the
    # hand-written backward: the same gradients in the features and length scales
    torch.manual_seed(0)
    interp = KernelInterpolation(torch.linspace(0, 1, 6).unsqueeze(-1), 2)
    x = torch.rand(3, 8, 1)
    feat = torch.randn(3, 8, 2, requires_grad=True)
    grads = []
    for needs in (False, True):
        xx = x.clone().requires_grad_(needs)
        h = interp(xx, feat)
        grads.append(torch.autograd.grad(h.square().sum(), (feat, interp.log_ell)))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize(("free", "sums_only"), [("inv", False), ("feat", False), ("both", True)])
def test_second_derivatives_when_an_input_carries_no_gradient(free, sums_only):
    # a Hessian in the length scales with fixed features (or the reverse), or of a loss of the
    # weights' sums alone (which do not depend on the features): the create_graph backward
    # differentiated both inputs through both outputs, and autograd refused the one outside
    # the graph
    nd2, inv, feat = _inputs(torch.float64)
    if free == "inv":
        feat = feat.detach()
    elif free == "feat":
        inv = inv.detach()
    wrt = [t for t in (inv, feat) if t.requires_grad]
    hessians = []
    for fn in (_KernelAverage.apply, _kernel_average):
        h, ks = fn(nd2, inv, feat)
        loss = ks.square().sum() if sums_only else h.square().sum() + ks.sum()
        g = torch.autograd.grad(loss, wrt, create_graph=True, allow_unused=True)
        second = sum(t.square().sum() for t in g if t is not None)
        hessians.append(torch.autograd.grad(second, wrt, allow_unused=True))
    for fast, ref in zip(*hessians):
        if ref is None:
            assert fast is None or not bool(fast.any())
        else:
            torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
            assert ref.abs().max() > 0


@settings(max_examples=25, deadline=None)
@given(
    dim=st.sampled_from([1, 2]),
    n=st.integers(1, 40),
    channels=st.integers(1, 4),
    ell_min=st.sampled_from([0.05, 0.2, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_interpolation_equals_the_dense_nadaraya_watson_formula(dim, n, channels, ell_min, seed):
    # h_j(g) = sum_i k_j(g, x_i) l_ij / (sum_i k_j(g, x_i) + 1e-6), rho_j(g) = mean_i k_j(g, x_i),
    # k_j(g, x) = exp(-|g - x|^2 / (2 lambda_j^2)), written out in numpy (float64)
    gen = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)] * dim
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
    interp = KernelInterpolation(grid, channels, 1.0, ell_min).double()
    x = 2 * torch.rand(3, n, dim, generator=gen, dtype=torch.float64) - 1
    feat = torch.randn(3, n, channels, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        h, rho = interp(x, feat, density=True)
    ell = interp.log_ell.detach().exp().numpy()
    d2 = ((grid.numpy()[None, :, None, :] - x.numpy()[:, None, :, :]) ** 2).sum(-1)  # B, M, N
    k = np.exp(-d2[:, None] / (2 * ell[None, :, None, None] ** 2))  # B, P, M, N
    num = np.einsum("bpmn,bnp->bpm", k, feat.numpy())
    np.testing.assert_allclose(h.numpy(), num / (k.sum(-1) + 1e-6), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rho.numpy(), k.mean(-1), rtol=1e-9, atol=1e-300)
    assert h.shape == rho.shape == (3, channels, grid.shape[0])
