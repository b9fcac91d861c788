"""Interrupts (Ctrl-C) of ProbConserv. Inside a fit step, before its update: ``steps_done``
counts the updates the weights hold, and the model is the one a fit stopped cleanly after the
last completed step leaves (its batch stream and latent-noise stream), so a further fit goes on
as from there. Inside a scalar ``calibrate``: the calibration in force stays."""

from __future__ import annotations

import pytest
import torch

from bayesphys.probconserv import ProbConserv

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny() -> ProbConserv:
    return ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=0)


def _weights(m: ProbConserv) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.net.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _stopped_after_two() -> ProbConserv:
    """A 5-step fit stopped cleanly after its 2nd update (its callback raises there)."""
    m = _tiny()

    def stop(model, step):
        if step == 2:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        m.fit(steps=5, progress=False, callback=stop, callback_every=1)
    return m


def test_an_interrupt_before_the_update_counts_the_completed_steps_only():
    ref = _stopped_after_two()
    m = _tiny()
    real, calls = m.net.loss, {"n": 0}

    def interrupt_third(*args, **kw):  # Ctrl-C while the 3rd step computes its loss
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    m.net.loss = interrupt_third
    with pytest.raises(KeyboardInterrupt):
        m.fit(steps=5, progress=False)
    m.net.loss = real
    # the weights are those of 2 updates: steps_done said 3
    assert _same(_weights(m), _weights(ref))
    assert m.steps_done == ref.steps_done == 2 and not m.net.training
    # the latent-noise stream is back where the interrupted step began
    assert torch.equal(m._train_rng.get_state(), ref._train_rng.get_state())
    # and a further fit goes on as from the cleanly stopped model (the same batches)
    r_m, r_ref = m.fit(steps=3, progress=False), ref.fit(steps=3, progress=False)
    assert r_m.loss_history == r_ref.loss_history
    assert _same(_weights(m), _weights(ref)) and m.steps_done == ref.steps_done == 5


def test_an_interrupted_scalar_calibrate_keeps_the_hybrid_calibration(monkeypatch):
    from bayesphys.problems.gpme import make_dataset

    gp = ProbConserv("pme", step1="gp", gp_width=8, seed=1)
    gp.fit(steps=2, progress=False)
    tt = torch.tensor([0.3, 0.5], dtype=torch.float64)
    val = make_dataset("pme", 8, seed=4)
    gp.calibrate(val, t=tt, objective="hybrid", neighbours=(0, 2))
    hybrid, scale, at = gp.calibration, gp.var_scale, gp._calibrated_at
    assert hybrid is not None

    def interrupted(*args, **kwargs):  # Ctrl-C while the coverage scale is computed
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "quantile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gp.calibrate(val, t=tt, objective="coverage90")
    monkeypatch.undo()
    # the hybrid calibration was dropped before the scale was computed, the scale kept
    assert gp.calibration is hybrid and gp.var_scale == scale and gp._calibrated_at == at
