"""A training checkpoint of another model or optimizer is refused by name before anything is
loaded: torch's ``load_state_dict`` copied the weights whose shapes fitted before it raised for
the others (the caller's model left half the file's), and its error named no file."""

from __future__ import annotations

import pytest
import torch

from bayesphys.distributed import ddp


def _data(n: int = 16):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=gen), torch.randn(n, 1, generator=gen)


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def _net(width: int = 4, out: int = 1) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Linear(width, out))


@pytest.fixture
def ckpt(monkeypatch, tmp_path):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "run.pt"
    ddp.train_ddp(_net, _loss, _data(), epochs=1, batch_size=4, checkpoint=path, progress=False)
    return path


def _values(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_another_models_checkpoint_is_refused_and_loads_nothing(ckpt):
    other = _net(out=2)  # its first layer fits the file's, its last does not
    before = _values(other)
    with pytest.raises(ValueError, match=rf"path: {ckpt} holds the weights of another model"):
        ddp.load_training_checkpoint(ckpt, model=other)
    assert all(torch.equal(a, b) for a, b in zip(before, other.parameters()))


def test_another_optimizers_state_is_refused_and_loads_nothing(ckpt):
    model = _net()
    before = _values(model)
    opt = torch.optim.Adam(list(model.parameters())[:2])  # over 2 of the 4 tensors saved
    with pytest.raises(ValueError, match=rf"path: {ckpt} holds the state of an optimizer"):
        ddp.load_training_checkpoint(ckpt, model=model, optimizer=opt)
    # the weights were loaded before the optimizer failed: they are the caller's still
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not opt.state


def test_a_resume_with_another_model_names_the_checkpoint(ckpt):
    with pytest.raises(ValueError, match=rf"path: {ckpt} holds the weights of another model"):
        ddp.train_ddp(
            lambda: _net(width=8), _loss, _data(), epochs=2, batch_size=4, checkpoint=ckpt,
            progress=False,
        )  # fmt: skip
