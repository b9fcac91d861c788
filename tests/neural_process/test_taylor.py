"""The fused swish on stacked derivative streams equals the reference dict version exactly,
with first- and second-order gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.neural_process.taylor import swish_taylor, swish_taylor_stacked

STREAM_SETS = [
    ("v",),
    ("v", "x"),
    ("v", "t"),
    ("v", "x", "xx"),
    ("v", "x", "t"),
    ("v", "x", "xx", "t"),
]


def _reference(a: torch.Tensor, keys: tuple[str, ...]) -> torch.Tensor:
    return torch.stack(list(swish_taylor(dict(zip(keys, a))).values()))


@settings(max_examples=25, deadline=None)
@given(
    keys=st.sampled_from(STREAM_SETS),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 6.0),
)
def test_stacked_matches_reference_values_and_gradients(keys, shape, seed, scale):
    g = torch.Generator().manual_seed(seed)
    a = (scale * torch.randn(len(keys), *shape, generator=g, dtype=torch.float64)).requires_grad_()
    out, ref = swish_taylor_stacked(a, keys), _reference(a, keys)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (g_out,) = torch.autograd.grad(out, a, w, create_graph=True)
    (g_ref,) = torch.autograd.grad(ref, a, w, create_graph=True)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-11, atol=1e-11)
    # second order through the hand-written backward
    w2 = torch.randn(a.shape, generator=g, dtype=torch.float64)
    (h_out,) = torch.autograd.grad(g_out, a, w2)
    (h_ref,) = torch.autograd.grad(g_ref, a, w2)
    torch.testing.assert_close(h_out, h_ref, rtol=1e-10, atol=1e-10)


def test_stacked_gradcheck_and_bad_keys():
    a = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: swish_taylor_stacked(t, ("v", "x", "xx")), (a,))
    assert torch.autograd.gradgradcheck(lambda t: swish_taylor_stacked(t, ("v", "x", "xx")), (a,))
    with pytest.raises(ValueError, match="value stream 'v' first"):
        swish_taylor_stacked(a, ("x", "v", "xx"))
    with pytest.raises(ValueError, match="needs the 'x' stream"):
        swish_taylor_stacked(a[:2], ("v", "xx"))
    with pytest.raises(ValueError, match="3 stacked streams"):
        swish_taylor_stacked(a[:2], ("v", "x", "xx"))


@pytest.mark.parametrize("keys", STREAM_SETS)
def test_first_order_backward_equals_the_graph_backward_bit_for_bit(keys):
    # the first-order backward reuses the forward's factors and writes in place; it must give
    # the numbers of the differentiable (create_graph) backward exactly, bias included
    g = torch.Generator().manual_seed(len(keys))
    a = (3 * torch.randn(len(keys), 4, 6, 5, generator=g)).requires_grad_()
    bias = torch.randn(4, 1, 5, generator=g).requires_grad_()
    w = torch.randn(a.shape, generator=g)
    fast = torch.autograd.grad(swish_taylor_stacked(a, keys, bias), (a, bias), w)
    slow = torch.autograd.grad(swish_taylor_stacked(a, keys, bias), (a, bias), w, create_graph=True)
    assert all(torch.equal(f, s.detach()) for f, s in zip(fast, slow))
    # a second backward over a retained graph recomputes the factors: the same numbers again
    out = swish_taylor_stacked(a, keys, bias)
    once = torch.autograd.grad(out, (a, bias), w, retain_graph=True)
    twice = torch.autograd.grad(out, (a, bias), w)
    assert all(torch.equal(x, y) for x, y in zip(once, twice))


def test_bias_is_added_to_the_value_stream_only():
    g = torch.Generator().manual_seed(0)
    keys = ("v", "x", "xx")
    a = torch.randn(3, 2, 4, dtype=torch.float64, generator=g).requires_grad_()
    bias = torch.randn(4, dtype=torch.float64, generator=g).requires_grad_()
    shifted = torch.cat([a[:1] + bias, a[1:]])
    assert torch.equal(swish_taylor_stacked(a, keys, bias), swish_taylor_stacked(shifted, keys))
    assert torch.autograd.gradcheck(lambda t, b: swish_taylor_stacked(t, keys, b), (a, bias))
    assert torch.autograd.gradgradcheck(lambda t, b: swish_taylor_stacked(t, keys, b), (a, bias))
    for bad in (torch.zeros(3), torch.zeros(3, 2, 4), [0.0] * 4):  # would enlarge / no tensor
        with pytest.raises(ValueError, match="bias: expected a tensor broadcastable"):
            swish_taylor_stacked(a, keys, bad)


def test_swish_taylor_names_missing_streams():
    """A dict without the value stream, or with 'xx' but not 'x', raised a bare KeyError."""
    t = torch.ones(3)
    with pytest.raises(ValueError, match="'v'"):
        swish_taylor({"x": t})
    with pytest.raises(ValueError, match="'x' beside 'xx'"):
        swish_taylor({"v": t, "xx": t})
