"""load_training_checkpoint's check of the weights' shapes takes what torch's
``load_state_dict`` takes: a lazy module (``torch.nn.LazyLinear``) not yet run is
materialised from the file, and a ``[1]`` weight loads into a 0-dim one. The check read the
shape of the lazy module's uninitialised parameter and raised torch's "Can't access the
shape of an uninitialized parameter", and refused the ``[1]`` weight as another model's."""

from __future__ import annotations

import pytest
import torch

from bayesphys.distributed import ddp


@pytest.fixture
def ctx(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    return ddp.init_distributed()


def _save(path, model, ctx) -> None:
    ddp.save_training_checkpoint(path, model=model, optimizer=None, epoch=0, step=1, ctx=ctx)


def test_a_lazy_module_is_materialised_from_the_checkpoint(ctx, tmp_path):
    torch.manual_seed(0)
    trained = torch.nn.Sequential(torch.nn.LazyLinear(3))
    trained(torch.randn(2, 4))  # materialised: weight [3, 4]
    _save(tmp_path / "run.pt", trained, ctx)
    fresh = torch.nn.Sequential(torch.nn.LazyLinear(3))
    ddp.load_training_checkpoint(tmp_path / "run.pt", model=fresh, optimizer=None)
    assert torch.equal(fresh[0].weight, trained[0].weight)
    assert torch.equal(fresh[0].bias, trained[0].bias)


class _Scalar(torch.nn.Module):
    def __init__(self, shape: tuple[int, ...], value: float) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.full(shape, value))


def test_a_one_element_weight_loads_into_a_scalar_one(ctx, tmp_path):
    _save(tmp_path / "run.pt", _Scalar((1,), 2.5), ctx)
    model = _Scalar((), 0.0)
    ddp.load_training_checkpoint(tmp_path / "run.pt", model=model, optimizer=None)
    assert model.a.shape == () and model.a.item() == 2.5


def test_other_shapes_are_still_refused_by_name(ctx, tmp_path):
    _save(tmp_path / "run.pt", _Scalar((2,), 2.5), ctx)
    model = _Scalar((), 0.0)
    with pytest.raises(ValueError, match=r"run\.pt holds the weights of another model.*'a'"):
        ddp.load_training_checkpoint(tmp_path / "run.pt", model=model, optimizer=None)
    assert model.a.item() == 0.0
