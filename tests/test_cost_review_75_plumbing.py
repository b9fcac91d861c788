"""Cost review 75 of the fit loop's plumbing: the per-step checks of :func:`~bayesphys.optimize`
and :class:`~bayesphys.DivergenceGuard` widen their norms once per dtype (a stack), not once per
tensor; the optimiser's state is walked without a detached alias per tensor, and a snapshot is
refreshed without one per parameter. Each gives the same numbers and decisions as before, pinned
here against the formulas as written before the review; the per-tensor work is pinned by counting
the torch operations dispatched (a conversion or an alias per tensor was one dispatch each on the
CPU and one kernel launch each on an accelerator, at every step of a fit)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bayesphys import DivergenceGuard
from bayesphys._fit_state import (
    loss_and_state,
    optimizer_state_tensors,
    refresh,
    snapshot,
    state_tensors,
)


class _Ops(TorchDispatchMode):
    """Counts the aten operations dispatched inside it, by name (``"_to_copy"``, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.count: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count[func._schema.name.split("::")[-1]] += 1
        return func(*args, **(kwargs or {}))


def _old_optimizer_state_tensors(opts):
    """The walk as written before the review: a call per value, a detached alias per tensor."""
    out = []

    def walk(value):
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() or value.is_complex():
                out.append(value.detach())
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    for opt in opts:
        walk(list(opt.state.values()))
    return out


def _old_loss_and_state(loss, states, where="step"):
    """The check as written before the review (one conversion per norm); CPU tensors only."""
    fold = isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.is_floating_point()
    val = None if fold else float(loss)
    parts = [n.to(dtype=torch.float64) for n in torch._foreach_norm(states, 1)]
    if fold:
        parts.insert(0, loss.detach().reshape(()).to(dtype=torch.float64))
    vals = torch.stack(parts).tolist()
    if fold:
        val, vals = vals[0], vals[1:]
    return val, all(math.isfinite(v) for v in vals)


def _old_gradients_ok(gs):
    """``admit_gradients``' test as written before the review; CPU tensors only."""
    tops = torch._foreach_norm(gs, math.inf)
    vals = torch.stack([n.to(dtype=torch.float64) for n in tops]).tolist()
    return all(math.isfinite(t) and t * t <= torch.finfo(g.dtype).max for t, g in zip(vals, gs))


def _mixed_states(seed: int) -> list[torch.Tensor]:
    """Tensors of several dtypes and shapes, in an interleaved order (the groups by dtype are
    not contiguous)."""
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(7, 3, generator=g),
        torch.randn(5, generator=g, dtype=torch.float64),
        torch.randn(4, 4, generator=g).half(),
        torch.randn(6, generator=g, dtype=torch.complex64),
        torch.randn((), generator=g),
        torch.randn(2, 3, generator=g, dtype=torch.float64),
        torch.randn(9, generator=g).to(torch.bfloat16),
        torch.randn(3, generator=g),
    ]


def _adam_and_lbfgs():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    adam = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    lbfgs = torch.optim.LBFGS([x], history_size=3, max_iter=4)
    data = torch.randn(16, 4)
    for _ in range(3):
        adam.zero_grad()
        net(data).square().mean().backward()
        adam.step()

    def closure():
        lbfgs.zero_grad()
        loss = (x**4).sum() + x.sum()
        loss.backward()
        return loss

    lbfgs.step(closure)  # a state of lists of tensors (its history) beside plain values
    return [adam, lbfgs]


def test_the_state_walk_gives_the_old_walks_tensors_without_an_alias_each():
    opts = _adam_and_lbfgs()
    old, new = _old_optimizer_state_tensors(opts), optimizer_state_tensors(opts)
    assert len(new) == len(old) > 10
    for a, b in zip(old, new):  # the same tensors, in the same order
        assert a.data_ptr() == b.data_ptr() and a.shape == b.shape and torch.equal(a, b)
        assert not b.requires_grad
    # the live state tensors themselves: no detached alias made per tensor at each step
    adam_state = [t for s in opts[0].state.values() for t in s.values() if t.is_floating_point()]
    assert all(any(t is s for s in new) for t in adam_state)
    with _Ops() as ops:
        state_tensors(opts)
    assert ops.count["detach"] == 0


def test_the_state_walk_still_detaches_a_tensor_that_needs_gradients():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    opt.state[p]["kept"] = torch.ones(2, requires_grad=True)  # a custom optimiser's state
    (out,) = optimizer_state_tensors([opt])
    assert not out.requires_grad and torch.equal(out, torch.ones(2))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_state_check_widens_once_per_dtype_with_the_old_values(seed):
    states = _mixed_states(seed)
    loss = torch.tensor(0.25, dtype=torch.float32)
    with _Ops() as ops:
        got = loss_and_state(loss, states, "step")
    assert got == _old_loss_and_state(loss, states)
    # five dtypes of norms (float32 twice: complex64's norm is real), and the loss: six
    # conversions at most, where there was one per tensor (nine)
    assert ops.count["_to_copy"] <= 6
    assert ops.count["_foreach_norm"] == 1
    # fifty float32 tensors (an MLP's Adam state): two conversions, not fifty-one
    many = [torch.randn(3) for _ in range(50)]
    with _Ops() as ops:
        got = loss_and_state(loss, many, "step")
    assert got == _old_loss_and_state(loss, many)
    assert ops.count["_to_copy"] == 2


@pytest.mark.parametrize(
    "poison",
    [None, ("nan", 3), ("inf", 0), ("-inf", 5), ("nan", 6), ("big", 0)],
)
@pytest.mark.parametrize("loss", [0.5, float("nan"), "tensor", "half"])
def test_the_state_check_keeps_every_decision_of_the_old_formula(poison, loss):
    states = _mixed_states(2)
    if poison is not None:
        what, i = poison
        t = states[i]
        if what == "big":  # finite elements whose magnitudes sum past float32's range
            states[i] = torch.full_like(t, 3e38)
        else:
            t.view(-1)[0] = float(what)
    if loss == "tensor":
        loss = torch.tensor(-1.5, dtype=torch.float64)
    elif loss == "half":
        loss = torch.tensor(0.1, dtype=torch.float16)
    new, old = loss_and_state(loss, states, "step"), _old_loss_and_state(loss, states)
    assert new[1] == old[1]
    assert new[0] == old[0] or (math.isnan(new[0]) and math.isnan(old[0]))
    assert new[1] == (poison is None)


def _grads(seed: int, poison=None) -> list[torch.nn.Parameter]:
    ps = [torch.nn.Parameter(torch.zeros_like(t)) for t in _mixed_states(seed)]
    for p, g in zip(ps, _mixed_states(seed + 10)):
        p.grad = g
    if poison is not None:
        i, value = poison
        ps[i].grad.view(-1)[0] = value
    return ps


@pytest.mark.parametrize(
    "poison",
    [
        None,
        (0, float("nan")),
        (1, float("inf")),
        (2, 300.0),  # float16: 300**2 overflows it
        (2, 200.0),  # 200**2 = 40000 fits float16
        (0, 2e19),  # float32: (2e19)**2 overflows it
        (4, 1e19),  # float32: (1e19)**2 fits it
        (6, 2e19),  # bfloat16 has float32's range: overflows
        (3, 2e19),  # complex64: |g| = 2e19, its square overflows float32
    ],
)
def test_the_gradient_check_widens_once_per_dtype_with_the_old_decisions(poison):
    ps = _grads(3, poison)
    gs = [p.grad for p in ps]
    want = _old_gradients_ok(gs)
    guard = DivergenceGuard(ps)
    with _Ops() as ops:
        got = guard.admit_gradients(ps)
    assert got == want
    if poison is None or poison[1] in (200.0, 1e19):
        assert got
    else:
        assert not got
    # six (device, dtype) groups: at most six conversions, where there was one per tensor
    assert ops.count["_to_copy"] <= 6


def test_the_gradient_check_of_many_tensors_converts_once():
    ps = [torch.nn.Parameter(torch.zeros(4)) for _ in range(40)]
    for p in ps:
        p.grad = torch.randn(4)
    guard = DivergenceGuard(ps)
    with _Ops() as ops:
        assert guard.admit_gradients(ps)
    assert ops.count["_to_copy"] == 1


def test_a_snapshot_is_refreshed_with_the_same_values_and_no_alias_per_tensor():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5))
    snap = snapshot(net)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0).add_(1.0)
    net.train()(torch.randn(8, 3))  # the buffers (running statistics) move too
    with _Ops() as ops:
        refresh(snap)
    assert ops.count["detach"] == 0 and ops.count["_foreach_copy_"] == 1
    live = net.state_dict()
    assert all(torch.equal(snap[1][k], v) for k, v in live.items())
    # loose tensors that need gradients (a fit's hyperparameters) are copied all the same,
    # and nothing records a graph through the snapshot
    xs = [torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(2, 2))]
    snap = snapshot(xs)
    with torch.no_grad():
        for x in xs:
            x.add_(1.0)
    refresh(snap)
    assert all(torch.equal(b, x.detach()) for b, x in zip(snap[1].values(), xs))
    assert all(not b.requires_grad and b.grad_fn is None for b in snap[1].values())
