"""A seeded ProbConserv draws its training randomness from its own stream, not the global one."""

from __future__ import annotations

import torch

from bayesphys.probconserv import ProbConserv
from tests.rng_checks import leaves_global_rng


def _anp(**kw) -> ProbConserv:
    return ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0, **kw)


def _weights(m: ProbConserv) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in m.net.parameters()])


def test_seeded_build_leaves_the_global_streams_and_repeats_its_weights():
    a = leaves_global_rng(_anp)
    b = leaves_global_rng(lambda: ProbConserv("pme", step1="gp", gp_width=8, seed=0))
    assert torch.equal(_weights(a), _weights(_anp()))
    assert torch.equal(_weights(b), _weights(ProbConserv("pme", step1="gp", gp_width=8, seed=0)))
    # the seed decides the weights: another seed builds other ones
    other = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=1)
    assert not torch.equal(_weights(a), _weights(other))
    assert not torch.equal(
        _weights(b), _weights(ProbConserv("pme", step1="gp", gp_width=8, seed=1))
    )


def test_training_draws_do_not_depend_on_the_global_stream():
    runs = []
    for global_seed in (1, 2):  # the ANP latent noise and SoftC subsets used the global stream
        m = _anp(softc_weight=0.1)
        torch.manual_seed(global_seed)
        res = m.fit(steps=3, progress=False)
        runs.append((res.loss_history, _weights(m)))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def test_a_loaded_model_continues_the_training_stream(tmp_path):
    m = _anp()
    m.fit(steps=2, progress=False)
    m.save(tmp_path / "m.pt")
    loaded = ProbConserv.load(tmp_path / "m.pt")
    torch.manual_seed(7)  # would decide the latent noise of a model reading the global stream
    cont = m.fit(steps=2, progress=False)
    again = loaded.fit(steps=2, progress=False)
    assert cont.loss_history == again.loss_history
    assert torch.equal(_weights(m), _weights(loaded))


def test_unseeded_model_uses_the_global_stream():
    torch.manual_seed(3)
    a = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=None)
    ra = a.fit(steps=2, progress=False)
    torch.manual_seed(3)
    b = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=None)
    rb = b.fit(steps=2, progress=False)
    assert ra.loss_history == rb.loss_history
    # another global seed gives another run (its first step already differs)
    torch.manual_seed(4)
    c = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=None)
    rc = c.fit(steps=1, progress=False)
    assert ra.loss_history[0] != rc.loss_history[0]


def test_a_stream_saved_on_another_device_type_is_not_restored(tmp_path):
    """A CUDA generator's state (16 bytes) cannot be set on a CPU generator: loading such a
    checkpoint on the CPU keeps the seeded stream instead of failing."""
    m = _anp()
    m.fit(steps=1, progress=False)
    m.save(tmp_path / "m.pt")
    ck = torch.load(tmp_path / "m.pt", weights_only=False)
    ck["state"]["train_rng"] = torch.zeros(16, dtype=torch.uint8)
    ck["state"]["train_rng_device"] = "cuda"
    torch.save(ck, tmp_path / "cuda.pt")
    loaded = ProbConserv.load(tmp_path / "cuda.pt")
    assert torch.equal(loaded._train_rng.get_state(), _anp()._train_rng.get_state())
