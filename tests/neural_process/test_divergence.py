"""A diverging RandomGridNP fit leaves a usable model (restored, finite optimiser state)."""

import math

import pytest
import torch

from tests.tiny_models import TINY_GIC
from tests.tiny_models import tiny_rgnp as tiny


def _adam_state_finite(m) -> bool:
    return all(
        bool(torch.isfinite(v).all())
        for s in m.optimizer.state.values()
        for k, v in s.items()
        if k != "step" and torch.is_tensor(v)
    )


@pytest.mark.parametrize("lr", [30.0, 1e4])  # NaN loss / overflow (Cholesky failure)
def test_divergence_restores_a_trainable_state(lr):
    m = tiny(lr=lr, grad_clip=None)
    r = m.fit(steps=40, progress=False)
    assert not r.converged and "diverged" in r.message and r.steps < 40
    # the restored parameters are ones whose loss was finite, not the diverged ones
    with torch.no_grad():
        assert all(math.isfinite(float(m.loss()[0])) for _ in range(3))
    assert _adam_state_finite(m)
    m.config.lr = 1e-4  # the user lowers the learning rate and continues
    r2 = m.fit(steps=3, progress=False)
    assert r2.steps == 3 and all(math.isfinite(v) for v in r2.loss_history)


def test_divergence_message_counts_steps_of_the_whole_fit():
    m = tiny()

    def blow_up(model, step):  # from step 6 on, an absurd learning rate
        model.config.lr = 30.0
        model.config.grad_clip = None

    r = m.fit(steps=40, progress=False, callback=blow_up, callback_every=6)
    assert not r.converged and r.steps >= 6
    assert f"diverged at step {r.steps} " in r.message


def test_divergence_at_the_start_of_a_fit_chunk_restores_a_trainable_state():
    # callback_every=1: fit() runs one-step chunks, so the divergence falls on a chunk's first step
    m = tiny()

    def blow_up(model, step):
        if step >= 3:
            model.config.lr, model.config.grad_clip = 30.0, None

    r = m.fit(steps=40, progress=False, callback=blow_up, callback_every=1)
    assert not r.converged and "diverged" in r.message
    with torch.no_grad():
        assert all(math.isfinite(float(m.loss()[0])) for _ in range(3))
    assert _adam_state_finite(m)


def test_the_guard_changes_nothing_on_finite_losses():
    # one verified state across the fit's optimize() chunks: chunking (callbacks) and the
    # guard's snapshots leave the trajectory bit-identical to one uninterrupted fit
    ref = tiny()
    r_ref = ref.fit(steps=9, progress=False)
    for every in (1, 4):
        m = tiny()
        r = m.fit(steps=9, progress=False, callback=lambda model, step: None, callback_every=every)
        assert r.loss_history == r_ref.loss_history and r.converged and m.step_count == 9
        assert len(m.net.state_dict()) == len(ref.net.state_dict())
        for (k, v), w in zip(m.net.state_dict().items(), ref.net.state_dict().values()):
            assert torch.equal(v, w), k
        assert len(m.optimizer.state) == len(ref.optimizer.state) > 0
        for s, t in zip(m.optimizer.state.values(), ref.optimizer.state.values()):
            assert all(torch.equal(s[k], t[k]) for k in ("exp_avg", "exp_avg_sq"))


def test_overflowing_gradients_of_a_finite_loss_do_not_poison_adam():
    # the preset's lengthscale floor (0.05) lets an absurd learning rate reach a finite loss of
    # ~1e22 whose float32 gradients square to inf: before, Adam's second moment became inf, and
    # every later fit diverged at its first step
    m = tiny(gic=dict(TINY_GIC, ell_min=0.05))

    def blow_up(model, step):
        if step >= 3:
            model.config.lr, model.config.grad_clip = 30.0, None

    r = m.fit(steps=40, progress=False, callback=blow_up, callback_every=1)
    assert not r.converged and "gradients overflow" in r.message
    assert _adam_state_finite(m)
    # the values whose gradients overflowed are not kept: the last loss is moderate again
    with torch.no_grad():
        assert all(float(m.loss()[0]) < 1e10 for _ in range(3))
    m.config.lr = 1e-4  # the user lowers the learning rate and continues
    r2 = m.fit(steps=3, progress=False)
    assert r2.steps == 3 and all(math.isfinite(v) for v in r2.loss_history)


def _same_state(a, b) -> None:
    assert a.step_count == b.step_count
    for (k, v), w in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        assert all(torch.equal(sa[i][k], sb[i][k]) for k in sa[i]), i


@pytest.mark.parametrize("bad", ["loss", "gradients"])
def test_a_divergence_takes_back_the_optimiser_state_of_the_undone_update(bad):
    """A divergence at step k of a fit restores the weights step k - 1 started from, but
    Adam's moments and step count kept step k - 1's update: a continuing fit was not the one
    the kept steps give. The model now equals a twin that took only the kept steps (weights,
    Adam's state, step_count), and with the same batch stream a further fit of each is the
    same bit for bit. ``bad``: step 3 of the second fit has a NaN loss, or a finite loss whose
    gradients square past float32's range (no clipping: it would tame them)."""
    m, twin = tiny(grad_clip=None), tiny(grad_clip=None)
    m.fit(steps=3, progress=False)
    real, calls = m.loss, [0]

    def loss(data=None):
        calls[0] += 1
        out, parts = real(data)
        if calls[0] == 4:  # step k = 3 (counted from 0) of this fit
            out = out * math.nan if bad == "loss" else out * 1e30
        return out, parts

    m.loss = loss
    r = m.fit(steps=10, progress=False)
    del m.loss
    assert not r.converged and r.steps == 3 and m.step_count == 3 + 2
    assert ("gradients overflow" in r.message) == (bad == "gradients")
    twin.fit(steps=3, progress=False)
    twin.fit(steps=2, progress=False)  # the kept steps
    _same_state(m, twin)
    twin.generator.set_state(m.generator.get_state())  # the undone steps' draws are spent
    if hasattr(m.grid, "state_dict"):
        twin.grid.load_state_dict(m.grid.state_dict())
    r_m, r_twin = m.fit(steps=3, progress=False), twin.fit(steps=3, progress=False)
    assert r_m.loss_history == r_twin.loss_history and r_m.converged
    _same_state(m, twin)


def test_a_divergence_at_the_first_step_leaves_the_optimiser_state_alone():
    """No update of the fit was undone: Adam's state stays that of the steps before it."""
    m, twin = tiny(), tiny()
    m.fit(steps=3, progress=False)
    real = m.loss
    m.loss = lambda data=None: (real(data)[0] * math.nan, {})
    r = m.fit(steps=5, progress=False)
    del m.loss
    assert r.steps == 0 and m.step_count == 3
    twin.fit(steps=3, progress=False)
    _same_state(m, twin)
