"""Review 75 of the random-grid neural process (cost at realistic sizes): a posterior (no
gradient, the value stream alone) runs the forward MLP without the derivative factors of the
fused swish and without copying the features into a stack of one stream. At 200 parameter sets
on the Burgers preset's default 1071 points this took the peak memory of ``posterior`` from
934 MB to 520 MB, with the same numbers bit for bit."""

from __future__ import annotations

import pytest
import torch

from bayesphys.neural_process import taylor
from tests.memory_checks import linux_only, peak_rise_after
from tests.tiny_models import tiny_rgnp

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*has not been trained:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*outside the prior box:UserWarning"),
]


class _CountingTorch:
    """``torch`` for the module ``taylor``, counting the calls of ``names``."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.calls = dict.fromkeys(names, 0)

    def __getattr__(self, name: str):
        attr = getattr(torch, name)
        if name not in self.calls:
            return attr

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def _reference_values(mlp: taylor.TaylorMLP, feats: torch.Tensor, cond: torch.Tensor):
    """The value stream by the plain formula: ``a = W h (+ b)``, ``h = a * sigmoid(a)``."""
    h = feats.unsqueeze(0) @ mlp.inp.weight.mT
    v = h[0] + mlp.cond(cond).unsqueeze(-2)
    h = (v * torch.sigmoid(v)).unsqueeze(0)
    for layer in mlp.hidden:
        v = torch.matmul(h, layer.weight.mT)[0] + layer.bias
        h = (v * torch.sigmoid(v)).unsqueeze(0)
    return torch.matmul(h, mlp.out.weight.mT)[0] + mlp.out.bias


def test_posterior_skips_the_derivative_factors_and_the_stack(monkeypatch):
    m = tiny_rgnp("burgers", depth=3)
    x = torch.rand(40, 2, generator=torch.Generator().manual_seed(0))
    z, w = torch.tensor([[0.05, 0.7], [0.08, 0.9]]), torch.tensor([[1.0], [1.5]])
    counter = _CountingTorch(("addcmul", "stack", "empty_like"))
    monkeypatch.setattr(taylor, "torch", counter)
    post = m.posterior(x, z=z, w=w)
    # before: one addcmul (the first-order factor) and one empty_like per layer, one stack
    assert counter.calls == {"addcmul": 0, "stack": 0, "empty_like": 0}
    net = m.forward_net
    xb, cond = x.unsqueeze(0).expand(2, -1, -1), torch.cat([z, w], -1)
    with torch.no_grad():
        feats = net.features(xb, ())["v"]
        fast = net.mlp({"v": feats}, cond)["v"]
    with torch.enable_grad():  # weights that need gradients: the backward's factors are kept
        full = net.mlp({"v": feats}, cond)["v"]
    assert full.requires_grad and counter.calls["addcmul"] == 3  # one per layer
    monkeypatch.undo()
    # the same numbers as the plain formula and as the path that keeps the factors
    with torch.no_grad():
        assert torch.equal(fast, _reference_values(net.mlp, feats, cond))
    assert torch.equal(fast, full.detach())
    q = m.posterior(x, z=z, w=w)
    assert torch.equal(post.mean, q.mean) and torch.equal(post.variance, q.variance)


def test_value_only_swish_gives_the_kept_factors_numbers():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 3, 5, 7, generator=g)
    bias = torch.randn(7, generator=g)
    apply = taylor._SwishTaylorStacked.apply
    with torch.no_grad():
        for b in (None, bias):
            a0 = a.clone()
            fast = apply(a, b, (), -1, -1, False)
            assert torch.equal(a, a0)  # the caller's tensor is left as it was
            assert torch.equal(fast, apply(a, b, (), -1, -1, True))
            v = a[0] if b is None else a[0] + b
            assert torch.equal(fast[0], v * torch.sigmoid(v))


def _posterior_peak_rise_mb(batch: int) -> float:
    """Rise (MB) of the peak resident memory of a fresh process over one ``posterior`` of
    ``batch`` parameter sets at a Burgers model's 1071 default points (128 hidden units)."""
    setup = f"""
        import torch
        from tests.tiny_models import tiny_rgnp
        m = tiny_rgnp("burgers", hidden=128, depth=3, n_freq=8)
        z = torch.tensor([[0.05, 0.7]]).expand({batch}, -1)
        w = torch.tensor([[1.0]]).expand({batch}, -1)
        m.posterior(z=z[:2], w=w[:2])  # first-call allocations out of the measurement
        """
    return peak_rise_after(setup, "post = m.posterior(z=z, w=w)")


@linux_only
@pytest.mark.slow  # a fresh process: about 10 s
def test_posterior_peak_memory_at_many_parameter_sets():
    batch = 60
    layer = batch * 1071 * 128 * 4 / 2**20  # one hidden layer's activations, MB (31.4)
    rise = _posterior_peak_rise_mb(batch)
    # before: the swish's factors (1 - sigmoid, q, the first-order factor, its output) beside
    # the layer's input, value and sigmoid, and the stacked copy of the features: 7.5 layers'
    # worth; now the previous layer's output, the matmul, its value and sigmoid: 4.2
    assert rise < 6.0 * layer, f"{rise:.0f} MB, {rise / layer:.1f} layers"
