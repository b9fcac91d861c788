"""DDP helpers: 2-process gloo gradients equal one process on the global batch; resume."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from bayesphys.distributed import _ddp_checkpoint, ddp
from bayesphys.distributed._ddp_checkpoint import SHUFFLE, _check_resume

GLOBAL_BATCH = 8


def _data(n: int = 32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.1 * torch.randn(
        n, 1, generator=gen, dtype=torch.float64
    )
    return x, y


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).double()


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in ddp.unwrap(model).parameters()]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: a DDP step on its shard of the global batch, then a short train_ddp run."""
    ddp.set_local_rank_env(rank, world, port)
    torch.set_num_threads(1)
    ctx = ddp.init_distributed(backend="gloo", device="cpu")
    assert ctx.distributed and ctx.rank == rank and ctx.world_size == world
    torch.manual_seed(0)
    net = torch.nn.parallel.DistributedDataParallel(_model())
    x, y = _data()
    shard = GLOBAL_BATCH // world
    sl = slice(rank * shard, (rank + 1) * shard)
    _loss(net, (x[sl], y[sl])).backward()
    res = ddp.train_ddp(
        _model,
        _loss,
        (x, y),
        epochs=3,
        batch_size=GLOBAL_BATCH // world,
        lr=1e-2,
        seed=3,
        progress=False,
        checkpoint=os.path.join(out, "ckpt.pt"),
    )
    loader = ddp.distributed_loader((x, y), 4, ctx, seed=3)
    first = next(iter(loader))[0]
    torch.save(
        {
            "grads": _grads(net),
            "params": [p.detach() for p in res.extra["model"].parameters()],
            "loss": res.loss_history,
            "first_batch": first,
        },
        os.path.join(out, f"rank{rank}.pt"),
    )
    del net  # drop the DDP reducer before its group goes
    ddp.cleanup_distributed()  # barrier, then rank 0 leaves last


def test_two_process_gloo_step_equals_single_process_global_batch(tmp_path):
    port = ddp.free_port()
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))

    # single process, same init, the whole global batch
    torch.manual_seed(0)
    model = _model()
    x, y = _data()
    _loss(model, (x[:GLOBAL_BATCH], y[:GLOBAL_BATCH])).backward()
    for g_single, g0, g1 in zip(_grads(model), r0["grads"], r1["grads"]):
        torch.testing.assert_close(g0, g_single, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g1, g0, rtol=0, atol=0)  # replicas hold identical gradients

    # the ranks see disjoint shards of each global batch
    assert not torch.equal(r0["first_batch"], r1["first_batch"])

    # train_ddp with 2 x (batch 4) == one process with batch 8 (same global batches)
    single = ddp.train_ddp(  # on the CPU, as the gloo ranks (alone it takes the GPU if any)
        _model,
        _loss,
        (x, y),
        epochs=3,
        batch_size=GLOBAL_BATCH,
        lr=1e-2,
        seed=3,
        progress=False,
        device="cpu",
    )
    assert single.extra["world_size"] == 1
    for p_single, p0, p1 in zip(single.extra["model"].parameters(), r0["params"], r1["params"]):
        torch.testing.assert_close(p0, p_single.detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(p1, p0, rtol=0, atol=0)
    assert r0["loss"] == pytest.approx(single.loss_history, rel=1e-10)
    assert (tmp_path / "ckpt.pt").exists()

    # the 2-rank checkpoint is not resumed by one process, not even with the same global batch
    # (it used to go on silently with other batches, or other random streams per rank)
    with pytest.raises(ValueError) as err:
        ddp.train_ddp(
            _model,
            _loss,
            (x, y),
            epochs=4,
            batch_size=GLOBAL_BATCH,
            lr=1e-2,
            seed=3,
            progress=False,
            checkpoint=tmp_path / "ckpt.pt",
        )
    assert "world_size: saved 2, now 1" in str(err.value)
    assert "batch_size (per rank): saved 4, now 8" in str(err.value)


def _release_worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: with the cyclic collector off, count the DDP wrappers alive after train_ddp
    returns, then leave the group with a wrapper caught in a reference cycle."""
    import gc
    import json
    import weakref

    from torch.nn.parallel import DistributedDataParallel as DDP

    ddp.set_local_rank_env(rank, world, port)
    torch.set_num_threads(1)
    ddp.init_distributed(backend="gloo", device="cpu")
    gc.disable()
    try:
        res = ddp.train_ddp(
            _model, _loss, _data(), epochs=1, batch_size=4, lr=1e-2, seed=0, progress=False
        )
        # by type(o), not isinstance(o, ...): isinstance reads o.__class__, which warns for some
        # objects (torch.distributed's deprecated reduce_op: a FutureWarning, an error under -W
        # error)
        model = res.extra["model"]
        alive = sum(issubclass(type(o), DDP) and o.module is model for o in gc.get_objects())
        net = DDP(_model())
        net.__dict__["_cycle"] = net  # only the cyclic collector frees it
        ref = weakref.ref(net)
        del net
        ddp.cleanup_distributed()
        collected = ref() is None
    finally:
        gc.enable()
    with open(os.path.join(out, f"release{rank}.json"), "w") as f:
        json.dump({"alive": alive, "collected": collected}, f)


def test_the_process_group_is_not_held_past_cleanup(tmp_path):
    """A DDP wrapper (its reducer holds the gloo group) alive after cleanup_distributed frees
    the group at some later collection or at exit, after the other ranks are gone, which
    aborted a rank now and then ("terminate called without an active exception"). train_ddp
    leaves no wrapper behind (its frame was kept alive by a traceback of torch's lazy imports,
    wrapper included), and cleanup_distributed collects wrappers caught in cycles first."""
    import json

    mp.spawn(_release_worker, args=(2, ddp.free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"release{rank}.json").read_text())
        assert got == {"alive": 0, "collected": True}, (rank, got)


def test_train_ddp_resumes_from_checkpoint_exactly(tmp_path):
    data = _data()
    kw = dict(batch_size=8, lr=1e-2, seed=5, progress=False)
    straight = ddp.train_ddp(_model, _loss, data, epochs=4, **kw)
    ckpt = tmp_path / "run.pt"
    part = ddp.train_ddp(_model, _loss, data, epochs=2, checkpoint=ckpt, **kw)
    assert len(part.loss_history) == 2 and ckpt.exists()
    rest = ddp.train_ddp(_model, _loss, data, epochs=4, checkpoint=ckpt, **kw)
    assert rest.extra["start_epoch"] == 2 and len(rest.loss_history) == 2
    assert part.loss_history + rest.loss_history == pytest.approx(straight.loss_history, rel=1e-12)
    for a, b in zip(rest.extra["model"].parameters(), straight.extra["model"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    state = ddp.load_training_checkpoint(ckpt, model=_model())
    assert state["epoch"] == 3 and state["step"] == 4 * 4


def test_single_process_context_without_torchrun(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = ddp.init_distributed(device="cpu")
    assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main) == (0, 1, False, True)
    assert ddp.all_reduce_mean(torch.tensor(2.5), ctx) == 2.5
    calls = []
    ddp.rank_zero_only(calls.append)(1)
    assert calls == [1]
    assert ddp.seed_for_rank(1, 0) != ddp.seed_for_rank(1, 1)


def test_bad_inputs_are_named(monkeypatch, tmp_path):
    with pytest.raises(TypeError, match="data"):
        ddp.distributed_loader("not data", 4, ddp.DistContext())
    with pytest.raises(ValueError, match="batch_size"):
        ddp.distributed_loader(torch.zeros(4, 1), 0, ddp.DistContext())
    with pytest.raises(TypeError, match="batch_size: expected an int"):
        ddp.distributed_loader(torch.zeros(4, 1), 2.5, ddp.DistContext())
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK"):
        ddp.init_distributed(device="cpu")
    bad = tmp_path / "not_ddp.pt"
    torch.save({"kind": "other"}, bad)
    with pytest.raises(ValueError, match="ddp_training"):
        ddp.load_training_checkpoint(bad, model=_model())


def test_train_ddp_refuses_a_batch_larger_than_the_data(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    x, y = _data(16)
    with pytest.raises(ValueError, match="batch_size"):
        ddp.train_ddp(_model, _loss, (x, y), epochs=2, batch_size=32, progress=False)


def _no_group(*args, **kwargs):
    raise AssertionError("a process group or context was set up before the arguments were checked")


_X, _Y = _data(16)


class _Stream(torch.utils.data.IterableDataset):
    """A stream of samples: no length, so it cannot be split by rank."""

    def __iter__(self):
        yield from zip(_X, _Y)


class _NoLength(torch.utils.data.Dataset):
    def __getitem__(self, i):
        return _X[i], _Y[i]


BAD_TRAIN_ARGS = [  # (overrides of a valid call, error type, message)
    ({"batch_size": 32}, ValueError, r"batch_size: 32 per rank exceeds the 16 samples"),
    ({"batch_size": 0}, ValueError, r"batch_size: expected an int >= 1"),
    ({"epochs": -1}, ValueError, r"epochs: expected an int >= 0"),
    ({"epochs": 2.5}, TypeError, r"epochs: expected an int"),
    ({"lr": 0.0}, ValueError, r"lr: expected a number > 0"),
    ({"lr": float("nan")}, ValueError, r"lr: expected a finite number"),
    ({"seed": "0"}, TypeError, r"seed: expected an int"),
    ({"backend": "tcp"}, ValueError, r"backend: expected one of"),
    ({"device": "gpu0"}, ValueError, r"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ({"device": 3}, TypeError, r"device: expected str, torch.device or None"),
    ({"model_fn": 3}, TypeError, r"model_fn: expected a callable"),
    ({"loss_fn": None}, TypeError, r"loss_fn: expected a callable"),
    ({"optimizer_fn": "adam"}, TypeError, r"optimizer_fn: expected a callable or None"),
    ({"config": [("width", 8)]}, TypeError, r"config: expected a mapping"),
    ({"checkpoint": 3}, TypeError, r"checkpoint: expected a path"),
    ({"checkpoint": "<tmp_path>"}, ValueError, r"checkpoint: .* is a folder"),
    ({"data": (_X, _Y[:10])}, ValueError, r"data: the tensors must share .*\[16, 10\]"),
    ({"data": torch.tensor(1.0)}, ValueError, r"data: expected tensors with a first"),
    ({"data": "not data"}, TypeError, r"data: expected a torch Dataset"),
    (
        {"data": _Stream()},
        TypeError,
        r"^data: expected a map-style dataset with a length, received _Stream",
    ),
    ({"data": _NoLength()}, TypeError, r"^data: expected a map-style dataset .*received _NoLength"),
]


@pytest.mark.parametrize(
    "kw, err, match",
    BAD_TRAIN_ARGS,
    ids=[f"{next(iter(k))}-{i}" for i, (k, _, _) in enumerate(BAD_TRAIN_ARGS)],
)
def test_train_ddp_checks_its_arguments_before_any_group_or_model(
    monkeypatch, tmp_path, kw, err, match
):
    """A bad argument is refused before the process group, the model or the optimizer is set
    up (it used to cost a rendezvous, a model build and, for some, a trained epoch)."""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(ddp, "init_distributed", _no_group)
    monkeypatch.setattr(torch.distributed, "init_process_group", _no_group)
    built = []
    args = {
        "model_fn": lambda: built.append(1) or _model(),
        "loss_fn": _loss,
        "data": (_X, _Y),
        "epochs": 2,
        "batch_size": 4,
        "progress": False,
    }
    args.update({k: str(tmp_path) if v == "<tmp_path>" else v for k, v in kw.items()})
    with pytest.raises(err, match=match):
        ddp.train_ddp(**args)
    assert not built


def test_train_ddp_refuses_a_cuda_index_beyond_the_devices_before_any_group(monkeypatch):
    """``cuda:7`` on a one-GPU machine passed the early check and failed later, inside
    ``init_distributed`` (simulated: CUDA reported present with one device)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(ddp, "init_distributed", _no_group)
    with pytest.raises(ValueError, match=r"device: cuda:7 was requested but only 1 CUDA"):
        ddp.train_ddp(
            _model, _loss, (_X, _Y), epochs=1, batch_size=4, device="cuda:7", progress=False
        )


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_train_ddp_refuses_devices_torch_distributed_does_not_serve(device, monkeypatch):
    """``meta`` (and ``mps`` where present) passed the device check and failed inside DDP."""
    monkeypatch.setattr(ddp, "init_distributed", _no_group)
    with pytest.raises(ValueError, match="device: "):
        ddp.train_ddp(
            _model, _loss, (_X, _Y), epochs=1, batch_size=4, device=device, progress=False
        )


def test_train_ddp_refuses_a_batch_larger_than_each_rank_holds_before_the_rendezvous(monkeypatch):
    """Rank 0 of 2 (as under torchrun): 16 samples give each rank 8, so a batch of 16 per rank
    is refused at once; it used to wait for the other rank at the rendezvous first."""
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for var, value in {**env, "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(ddp, "init_distributed", _no_group)
    monkeypatch.setattr(torch.distributed, "init_process_group", _no_group)
    with pytest.raises(ValueError, match=r"batch_size: 16 per rank exceeds the 8 samples"):
        ddp.train_ddp(_model, _loss, (_X, _Y), epochs=1, batch_size=16, progress=False)


def test_train_ddp_lr_is_checked_only_for_the_default_optimizer(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    res = ddp.train_ddp(
        _model,
        _loss,
        (_X, _Y),
        epochs=1,
        batch_size=8,
        lr=None,
        optimizer_fn=lambda params: torch.optim.SGD(params, lr=0.1),
        progress=False,
    )
    assert len(res.loss_history) == 1


def _single_process(monkeypatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


RESUME_KW = dict(batch_size=8, lr=1e-2, seed=5, progress=False, config={"width": 16})
OTHER_SETTINGS = [  # (overrides of RESUME_KW or data size, message, refused before any model)
    ({"batch_size": 4}, r"batch_size \(per rank\): saved 8, now 4", True),
    ({"n": 40}, r"len\(data\): saved 32, now 40", True),
    ({"seed": 6}, r"seed: saved 5, now 6", True),
    ({"config": {"width": 32}}, r"config\['width'\]: saved 16, now 32", True),
    (
        {"config": {"width": 16, "act": "relu"}},
        r"config\['act'\]: saved <absent>, now 'relu'",
        True,
    ),
    ({"config": None}, r"config\['width'\]: saved 16, now <absent>", True),
    ({"lr": 1e-3}, r"optimizer lr: saved 0.01, now 0.001", False),
    (
        {"optimizer_fn": lambda params: torch.optim.SGD(params, lr=1e-2)},
        r"optimizer: saved torch.optim.adam.Adam, now torch.optim.sgd.SGD",
        False,
    ),
]


@pytest.mark.parametrize(
    "kw, match, early",
    OTHER_SETTINGS,
    ids=[
        "batch_size",
        "len_data",
        "seed",
        "config",
        "config_added",
        "config_dropped",
        "lr",
        "optimizer",
    ],
)
def test_train_ddp_refuses_to_resume_with_other_settings(monkeypatch, tmp_path, kw, match, early):
    """A checkpoint is resumed only with the settings it was written with; the error names
    each one, saved and now, and the way to start afresh. It used to resume silently with
    other batches (batch_size, len(data), seed), ignore the new lr (the optimizer state kept
    the saved one) or load one optimizer's state into another."""
    _single_process(monkeypatch)
    ckpt = tmp_path / "run.pt"
    ddp.train_ddp(_model, _loss, _data(), epochs=1, checkpoint=ckpt, **RESUME_KW)
    written = ckpt.read_bytes()
    args = {**RESUME_KW, **kw}
    data = _data(args.pop("n", 32))
    built = []

    def model_fn():
        built.append(1)
        return _model()

    with pytest.raises(ValueError, match=match) as err:
        ddp.train_ddp(model_fn, _loss, data, epochs=2, checkpoint=ckpt, **args)
    assert "resume=False" in str(err.value) and str(ckpt) in str(err.value)
    assert not built if early else built
    assert ckpt.read_bytes() == written  # the checkpoint is left as it was
    fresh = ddp.train_ddp(_model, _loss, data, epochs=2, checkpoint=ckpt, resume=False, **args)
    assert fresh.extra["start_epoch"] == 0 and len(fresh.loss_history) == 2
    # and the new checkpoint resumes with the new settings
    more = ddp.train_ddp(_model, _loss, data, epochs=3, checkpoint=ckpt, **args)
    assert more.extra["start_epoch"] == 2


def test_train_ddp_resumes_a_seed_by_its_generator_state(monkeypatch, tmp_path):
    """Torch reads a seed modulo 2**64, and so does every stream train_ddp derives from it:
    seeds -1 and 2**64 - 1 train alike, yet a checkpoint of one refused to resume with the
    other ("seed: saved -1, now 18446744073709551615"). Seeds of other states still differ."""
    _single_process(monkeypatch)
    kw = {**RESUME_KW, "seed": -1}
    whole = ddp.train_ddp(_model, _loss, _data(), epochs=2, **kw)
    other = ddp.train_ddp(_model, _loss, _data(), epochs=2, **{**kw, "seed": 2**64 - 1})
    assert other.loss_history == whole.loss_history  # one run under two names
    ckpt = tmp_path / "run.pt"
    ddp.train_ddp(_model, _loss, _data(), epochs=1, checkpoint=ckpt, **kw)
    res = ddp.train_ddp(
        _model, _loss, _data(), epochs=2, checkpoint=ckpt, **{**kw, "seed": 2**64 - 1}
    )
    assert res.extra["start_epoch"] == 1 and res.loss_history == whole.loss_history[1:]
    for a, b in zip(res.extra["model"].parameters(), whole.extra["model"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(
        ValueError, match=r"seed: saved 18446744073709551615, now 18446744073709551614"
    ):
        ddp.train_ddp(
            _model, _loss, _data(), epochs=3, checkpoint=ckpt, **{**kw, "seed": 2**64 - 2}
        )


def test_train_ddp_refuses_a_checkpoint_of_another_world_size_before_the_rendezvous(
    monkeypatch, tmp_path
):
    """Rank 0 of 2 (as under torchrun) finds a 1-process checkpoint: refused on every rank
    before any process group is set up, instead of resuming with other batches."""
    _single_process(monkeypatch)
    ckpt = tmp_path / "run.pt"
    ddp.train_ddp(_model, _loss, _data(), epochs=1, checkpoint=ckpt, **RESUME_KW)
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for var, value in {**env, "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(ddp, "init_distributed", _no_group)
    monkeypatch.setattr(torch.distributed, "init_process_group", _no_group)
    kw = {**RESUME_KW, "batch_size": 4}  # the same global batch of 8
    with pytest.raises(ValueError, match=r"world_size: saved 1, now 2"):
        ddp.train_ddp(_model, _loss, _data(), epochs=2, checkpoint=ckpt, **kw)


def test_train_ddp_checks_world_size_and_config_of_older_checkpoints(monkeypatch, tmp_path):
    """A checkpoint written before the settings were recorded still has its world_size and
    config compared; it resumes when they agree."""
    _single_process(monkeypatch)
    ckpt = tmp_path / "run.pt"
    ddp.train_ddp(_model, _loss, _data(), epochs=1, checkpoint=ckpt, **RESUME_KW)
    old = torch.load(ckpt, weights_only=False)
    del old["state"]["settings"]
    torch.save(old, ckpt)
    # refused, also saying the settings could not be compared (a RuntimeWarning first: an
    # error, not the refusal, under python -W error without pytest.warns)
    with (
        pytest.warns(RuntimeWarning, match="records no training settings"),
        pytest.raises(ValueError, match=r"config\['width'\]: saved 16, now 8"),
    ):
        ddp.train_ddp(
            _model,
            _loss,
            _data(),
            epochs=2,
            checkpoint=ckpt,
            **{**RESUME_KW, "config": {"width": 8}},
        )
    # resumed, saying that the batch size, seed and data could not be compared
    with pytest.warns(RuntimeWarning, match="records no training settings"):
        res = ddp.train_ddp(_model, _loss, _data(), epochs=2, checkpoint=ckpt, **RESUME_KW)
    assert res.extra["start_epoch"] == 1


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(monkeypatch, tmp_path):
    ckpt = tmp_path / "run.pt"
    ctx = ddp.DistContext()
    model = _model()
    ddp.save_training_checkpoint(ckpt, model=model, optimizer=None, epoch=0, step=1, ctx=ctx)
    written = ckpt.read_bytes()

    def disk_full(obj, f, *args, **kwargs):  # the write to disk starts, then the disk is full
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        ddp.save_training_checkpoint(ckpt, model=model, optimizer=None, epoch=1, step=2, ctx=ctx)
    assert ckpt.read_bytes() == written
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left behind


def test_two_writers_of_one_checkpoint_path_do_not_collide(tmp_path):
    """Each save writes through a temporary name of its own (a fixed ``.run.pt.tmp`` was shared:
    one writer published the other's file and the other's rename then failed)."""
    import threading

    ckpt, ctx, errors = tmp_path / "run.pt", ddp.DistContext(), []

    def writer(k):
        model = _model()
        for step in range(15):
            try:
                ddp.save_training_checkpoint(
                    ckpt, model=model, optimizer=None, epoch=k, step=step, ctx=ctx
                )
            except Exception as err:  # recorded for the assertion below
                errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


def _failed_save_worker(rank: int, world: int, port: int, out: str) -> None:
    """Rank 0's checkpoint write fails (disk full); every rank records what it raised."""
    ddp.set_local_rank_env(rank, world, port)
    torch.set_num_threads(1)
    ctx = ddp.init_distributed(backend="gloo", device="cpu", timeout_s=30.0)

    def disk_full(path, **kwargs):
        raise OSError("No space left on device")

    _ddp_checkpoint.save_checkpoint = disk_full  # this process only
    try:
        ddp.save_training_checkpoint(
            os.path.join(out, "run.pt"), model=_model(), optimizer=None, epoch=0, step=1, ctx=ctx
        )
        outcome = "returned"
    except Exception as err:  # recorded for the test process
        outcome = f"{type(err).__name__}: {err}"
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as fh:
        fh.write(outcome)
    # rank 0 fails while building the state (extra is no mapping): the others must not hang
    try:
        ddp.save_training_checkpoint(
            os.path.join(out, "run.pt"),
            model=_model(),
            optimizer=None,
            epoch=0,
            step=1,
            ctx=ctx,
            extra=3 if rank == 0 else None,
        )
        outcome = "returned"
    except Exception as err:  # recorded for the test process
        outcome = f"{type(err).__name__}: {err}"
    with open(os.path.join(out, f"rank{rank}_state.txt"), "w") as fh:
        fh.write(outcome)
    ddp.cleanup_distributed()


def test_a_failed_checkpoint_write_on_rank_0_fails_every_rank_at_once(tmp_path):
    """The other ranks did not learn of rank 0's failure (here rank 1 returned as if the
    checkpoint were written; in a run it waited at the next collective until the group's
    timeout); now they raise at once, naming rank 0's error."""
    # the messages tell a prompt failure from a wait until the group's timeout (a timed-out
    # collective names no rank 0 error); no wall-clock bound on a shared machine
    mp.spawn(_failed_save_worker, args=(2, ddp.free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = ((tmp_path / f"rank{r}.txt").read_text() for r in (0, 1))
    assert r0 == "OSError: No space left on device"
    assert r1.startswith("RuntimeError: checkpoint: rank 0 failed to write")
    assert r1.endswith("OSError: No space left on device")
    assert not (tmp_path / "run.pt").exists()
    s0, s1 = ((tmp_path / f"rank{r}_state.txt").read_text() for r in (0, 1))
    assert s0.startswith("TypeError") and s1.startswith("RuntimeError: checkpoint: rank 0 failed")


def test_train_ddp_leaves_the_callers_stream_and_rolls_back_a_diverged_epoch():
    data = _data()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    ok = ddp.train_ddp(_model, _loss, data, epochs=2, batch_size=8, seed=5, progress=False)
    assert torch.equal(torch.get_rng_state(), before)  # was reseeded and left so
    calls = {"n": 0}

    def nan_from_the_sixth(model, batch):
        calls["n"] += 1
        loss = _loss(model, batch)
        return loss * float("nan") if calls["n"] >= 6 else loss

    res = ddp.train_ddp(
        _model, nan_from_the_sixth, data, epochs=3, batch_size=8, seed=5, progress=False
    )
    assert res.message.startswith("diverged at epoch 1") and not res.converged
    assert res.steps == 4 and len(res.loss_history) == 1  # epoch 0's four steps
    # the weights at the end of epoch 0, not NaN: equal to a one-epoch run's
    one = ddp.train_ddp(_model, _loss, data, epochs=1, batch_size=8, seed=5, progress=False)
    for a, b in zip(res.extra["model"].parameters(), one.extra["model"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert ok.converged


def test_train_ddp_rolls_back_an_epoch_whose_last_step_left_nan_weights(tmp_path):
    """A finite loss whose gradient is NaN (here in the last batch of epoch 1) leaves NaN
    weights with a finite epoch mean: the epoch diverged all the same. It was kept (the NaN
    weights returned, written to the checkpoint and, as the last epoch, called converged)."""
    data = _data()
    calls = {"n": 0}

    def nan_gradient_in_step_eight(model, batch):
        calls["n"] += 1
        loss = _loss(model, batch)
        if calls["n"] == 8:  # sqrt'(0) = inf, times 0: a NaN gradient, a finite loss
            loss = loss + torch.sqrt(0.0 * sum(p.sum() for p in model.parameters()))
        return loss

    ckpt = tmp_path / "run.pt"
    res = ddp.train_ddp(
        _model,
        nan_gradient_in_step_eight,
        data,
        epochs=2,
        batch_size=8,
        seed=5,
        progress=False,
        checkpoint=ckpt,
    )
    assert not res.converged and res.message.startswith("diverged at epoch 1")
    assert "non-finite weights" in res.message
    assert res.steps == 4 and len(res.loss_history) == 1
    one = ddp.train_ddp(_model, _loss, data, epochs=1, batch_size=8, seed=5, progress=False)
    for a, b in zip(res.extra["model"].parameters(), one.extra["model"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # epoch 0's weights, finite
    saved = ddp.load_training_checkpoint(ckpt, model=_model())
    assert saved["epoch"] == 0  # the diverged epoch was not written
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_train_ddp_rolls_back_an_epoch_that_left_a_non_finite_optimizer_state(tmp_path):
    """A huge but finite gradient (1e200 in float64, with a finite loss) overflows Adam's
    squared-gradient average to inf while the weights stay finite: every later update is
    m / inf = 0, so the weights froze for good (the loss repeated itself epoch after epoch) and
    the run was called converged, with the inf moments written to the checkpoint."""
    data = _data()
    calls = {"n": 0}

    def huge_gradient_in_step_eight(model, batch):
        calls["n"] += 1
        loss = _loss(model, batch)
        if calls["n"] == 8:  # the last batch of epoch 1: value unchanged, gradient 1e200
            x = 1e200 * sum(p.sum() for p in model.parameters())
            loss = loss + (x - x.detach())
        return loss

    ckpt = tmp_path / "run.pt"
    kw = dict(batch_size=8, seed=5, progress=False)
    res = ddp.train_ddp(_model, huge_gradient_in_step_eight, data, epochs=3, checkpoint=ckpt, **kw)
    assert not res.converged and res.message.startswith("diverged at epoch 1")
    assert "non-finite optimizer state" in res.message
    assert res.steps == 4 and len(res.loss_history) == 1
    one = ddp.train_ddp(_model, _loss, data, epochs=1, **kw)
    for a, b in zip(res.extra["model"].parameters(), one.extra["model"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # epoch 0's weights
    saved = ddp.load_training_checkpoint(ckpt, model=_model())
    assert saved["epoch"] == 0  # the diverged epoch was not written
    moments = [t for st in saved["optimizer"]["state"].values() for t in st.values()]
    assert moments and all(torch.isfinite(t).all() for t in moments)


def test_train_ddp_sums_the_epoch_loss_on_the_device(monkeypatch):
    """The epoch's loss is summed as a tensor and read once (a ``float`` per batch made a CUDA
    run wait for the GPU every step); the reported mean is the batches' mean all the same."""
    reads = []
    real = torch.Tensor.__float__

    def counted(self):
        reads.append(1)
        return real(self)

    monkeypatch.setattr(torch.Tensor, "__float__", counted)
    res = ddp.train_ddp(_model, _loss, _data(64), epochs=1, batch_size=4, lr=1e-2, progress=False)
    monkeypatch.undo()
    assert len(reads) < 16  # 16 batches: fewer reads than batches
    assert res.loss_history and math.isfinite(res.loss_history[0])


def test_train_ddp_takes_a_loss_of_shape_one():
    """``loss.backward()`` takes a one-element loss; the epoch sum must too."""

    def loss_1(model, batch):
        x, y = batch
        return ((model(x) - y) ** 2).mean(0)  # shape [1]

    res = ddp.train_ddp(_model, loss_1, _data(), epochs=2, batch_size=8, lr=1e-2, progress=False)
    assert len(res.loss_history) == 2 and all(math.isfinite(v) for v in res.loss_history)


def _shuffled(loader, epoch: int) -> list[int]:
    loader.sampler.set_epoch(epoch)
    return [i for (batch,) in loader for i in batch.tolist()]


def test_distributed_loader_takes_every_seed_in_range_for_every_epoch(monkeypatch):
    """The sampler seeds ``seed + epoch``: a seed near ``2**64 - 1`` (accepted by ``train_ddp``)
    overflowed from the second epoch on, mid-training, with a bare "Overflow when unpacking
    long long". Every seed in torch's range runs each epoch with the shuffle of its own
    generator state (``seed`` and ``seed - 2**64`` seed torch alike)."""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    idx = torch.arange(10)
    ctx = ddp.DistContext()
    for seed in (2**64 - 1, 2**63, 5):
        loader = ddp.distributed_loader(idx, 5, ctx, seed=seed, drop_last=False)
        for epoch in (0, 1, 2):
            gen = torch.Generator().manual_seed((seed + epoch) % 2**64)
            assert _shuffled(loader, epoch) == torch.randperm(10, generator=gen).tolist()
    res = ddp.train_ddp(_model, _loss, _data(16), epochs=2, batch_size=8, seed=2**64 - 1, **_CPU)
    assert len(res.loss_history) == 2


@pytest.mark.parametrize("drop_last", [True, False])
def test_distributed_loader_batches_are_the_rank_shard_whatever_the_batch_size(drop_last):
    """11 samples over 2 ranks in batches of 1, 2, 4, 5 and 6 per rank (last partial batches;
    a batch above the shard): each rank's batches, in order, are ``perm[rank::2]`` of the
    epoch's permutation (cut to 10 samples, or padded to 12 with its first sample without
    ``drop_last``), an incomplete last batch dropped only with ``drop_last``; no batch size
    changes which samples come in which order."""
    idx = torch.arange(11)
    gen = torch.Generator().manual_seed(7 + 2)  # the sampler seeds seed + epoch
    perm = torch.randperm(11, generator=gen).tolist()
    perm = perm[:10] if drop_last else perm + perm[:1]
    for rank in (0, 1):
        ctx = ddp.DistContext(rank=rank, world_size=2)
        shard = perm[rank::2]
        for batch_size in (1, 2, 4, 5, 6):
            loader = ddp.distributed_loader(idx, batch_size, ctx, seed=7, drop_last=drop_last)
            loader.sampler.set_epoch(2)
            sizes = [len(b) for (b,) in loader]
            full, rest = divmod(len(shard), batch_size)
            assert sizes == [batch_size] * full + ([rest] if rest and not drop_last else [])
            assert len(loader) == len(sizes)
            assert _shuffled(loader, 2) == shard[: sum(sizes)], (rank, batch_size)


_CPU = {"lr": 1e-2, "progress": False, "device": "cpu"}


def _dealt(seed: int, epochs: int) -> list[list[int]]:
    """The sample indices train_ddp deals in each epoch of a one-process run seeded ``seed``."""
    seen: list[int] = []

    def loss(model, batch):
        idx, y = batch
        seen.extend(int(i) for i in idx)
        return ((model(idx.to(y.dtype)[:, None] / 16) - y) ** 2).mean()

    idx = torch.arange(16)
    y = torch.zeros(16, 1, dtype=torch.float64)
    model = lambda: torch.nn.Linear(1, 1).double()  # noqa: E731
    ddp.train_ddp(model, loss, (idx, y), epochs=epochs, batch_size=4, seed=seed, **_CPU)
    return [seen[16 * e : 16 * (e + 1)] for e in range(epochs)]


def test_train_ddp_runs_of_neighbouring_seeds_do_not_share_shuffles(monkeypatch):
    """The sampler shuffled epoch e with seed + e, so seed 0's epoch 1 dealt the batches of
    seed 1's epoch 0 (and so on): an ensemble over consecutive seeds repeated its batches
    across members. Its base seed is now a hash of the seed."""
    _single_process(monkeypatch)
    a, b = _dealt(0, 3), _dealt(1, 3)
    assert sorted(a[1]) == list(range(16))  # every sample once per epoch
    assert a[1] != b[0] and a[2] != b[1]
    assert _dealt(0, 3) == a  # and a seed still reproduces its shuffles


def test_a_checkpoint_of_the_old_shuffle_is_refused(tmp_path):
    """A checkpoint whose settings name no shuffle was written when the sampler was seeded
    with the seed itself: resuming it would deal its later epochs other batches."""
    now = {"world_size": 1, "batch_size": 8, "samples": 32, "seed": 5, "shuffle": SHUFFLE}
    old = {k: v for k, v in now.items() if k != "shuffle"}
    with pytest.raises(ValueError, match="sampler shuffle of epoch e: saved 'seed \\+ epoch'"):
        _check_resume(tmp_path / "c.pt", {"state": {"settings": old}}, now)
    _check_resume(tmp_path / "c.pt", {"state": {"settings": dict(now)}}, now)  # the same: fine


@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"seed": 0.5}, TypeError, "seed: expected an int"),
        ({"seed": 2**64}, ValueError, "seed: expected an int in"),
        ({"shuffle": "no"}, TypeError, "shuffle: expected True or False"),
        ({"drop_last": None}, TypeError, "drop_last: expected True or False"),
        ({"num_workers": -1}, ValueError, "num_workers: expected an int >= 0"),
        ({"ctx": None}, TypeError, "ctx: expected a DistContext"),
    ],
)
def test_distributed_loader_names_a_bad_argument(kw, err, match):
    """A float seed failed only when the loader was iterated (torch's "manual_seed expected a
    long"), ``shuffle="no"`` shuffled, and a missing context was an ``AttributeError``."""
    args = {"ctx": ddp.DistContext(), **kw}
    with pytest.raises(err, match=match):
        ddp.distributed_loader(torch.zeros(4, 1), 2, **args)


def test_train_ddp_with_nothing_left_to_train_says_so(tmp_path):
    """A resumed run asked for fewer epochs than its checkpoint holds trains nothing, as
    documented; its message read "trained epochs 3..1"."""
    ckpt = tmp_path / "run.pt"
    kw = dict(batch_size=8, checkpoint=ckpt, **_CPU)
    first = ddp.train_ddp(_model, _loss, _data(), epochs=3, **kw)
    again = ddp.train_ddp(_model, _loss, _data(), epochs=2, **kw)
    assert again.loss_history == [] and again.steps == first.steps
    assert again.message == "trained no epoch (the checkpoint holds epochs 0..2; epochs=2)"
    fresh = ddp.train_ddp(_model, _loss, _data(), epochs=0, batch_size=8, **_CPU)
    assert fresh.message == "trained no epoch (epochs=0)" and fresh.steps == 0
    assert first.message == "trained epochs 0..2"


def test_train_ddp_leaves_no_gradients_on_the_trained_model():
    """The returned model holds no ``.grad`` (one per weight, read by nothing after the run)."""
    res = ddp.train_ddp(_model, _loss, _data(), epochs=2, batch_size=8, seed=5, progress=False)
    params = list(res.extra["model"].parameters())
    assert params and all(p.grad is None for p in params)


def _two_groups(lr_second: float):
    """An optimizer_fn with two parameter groups (the second's lr given)."""

    def make(params):
        return torch.optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": lr_second}])

    return make


def test_resume_compares_every_optimizer_group_and_config_tensors_by_dtype(monkeypatch, tmp_path):
    _single_process(monkeypatch)
    kw = dict(batch_size=8, seed=5, progress=False)
    ckpt = tmp_path / "run.pt"
    ddp.train_ddp(
        _model, _loss, _data(), epochs=1, checkpoint=ckpt, optimizer_fn=_two_groups(0.01), **kw
    )
    with pytest.raises(ValueError, match=r"optimizer group 1 lr: saved 0\.01, now 0\.001"):
        ddp.train_ddp(
            _model, _loss, _data(), epochs=2, checkpoint=ckpt, optimizer_fn=_two_groups(1e-3), **kw
        )
    more = ddp.train_ddp(
        _model, _loss, _data(), epochs=2, checkpoint=ckpt, optimizer_fn=_two_groups(0.01), **kw
    )
    assert more.extra["start_epoch"] == 1
    # a config tensor of the same values in another dtype is another setting
    ckpt2 = tmp_path / "cfg.pt"
    scale = torch.tensor([1.0, 2.0])
    ddp.train_ddp(_model, _loss, _data(), epochs=1, checkpoint=ckpt2, config={"s": scale}, **kw)
    with pytest.raises(ValueError, match=r"config\['s'\]: saved tensor\(\[1\., 2\.\]\), now"):
        ddp.train_ddp(
            _model, _loss, _data(), epochs=2, checkpoint=ckpt2, config={"s": scale.double()}, **kw
        )
    same = ddp.train_ddp(
        _model, _loss, _data(), epochs=2, checkpoint=ckpt2, config={"s": scale.clone()}, **kw
    )
    assert same.extra["start_epoch"] == 1


def test_load_training_checkpoint_restores_the_optimizer_state(monkeypatch, tmp_path):
    _single_process(monkeypatch)
    ckpt = tmp_path / "run.pt"
    res = ddp.train_ddp(_model, _loss, _data(), epochs=2, batch_size=8, lr=1e-2, seed=5,
                        checkpoint=ckpt, progress=False)  # fmt: skip
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    state = ddp.load_training_checkpoint(ckpt, model=model, optimizer=opt)
    assert state["epoch"] == 1 and state["step"] == 8
    for a, b in zip(model.parameters(), res.extra["model"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    steps = {int(s["step"]) for s in opt.state_dict()["state"].values()}
    assert steps == {8}  # Adam's moments and step counts of the run, not a fresh optimizer
    fresh = _model()
    assert ddp.load_training_checkpoint(ckpt, model=fresh)["epoch"] == 1  # weights only


def test_resume_tells_a_list_from_a_tuple_in_config(monkeypatch, tmp_path):
    """config is compared key by key with the types of its values, as a tensor's dtype: a
    list and a tuple of the same numbers are other settings (a builder may read them
    otherwise), refused with both shown; the same tuple, which the checkpoint keeps a tuple,
    resumes."""
    _single_process(monkeypatch)
    kw = dict(batch_size=8, seed=5, progress=False)
    ckpt = tmp_path / "run.pt"
    ddp.train_ddp(_model, _loss, _data(), epochs=1, checkpoint=ckpt, config={"h": (16, 16)}, **kw)
    with pytest.raises(ValueError, match=r"config\['h'\]: saved \(16, 16\), now \[16, 16\]"):
        ddp.train_ddp(
            _model, _loss, _data(), epochs=2, checkpoint=ckpt, config={"h": [16, 16]}, **kw
        )
    same = ddp.train_ddp(
        _model, _loss, _data(), epochs=2, checkpoint=ckpt, config={"h": (16, 16)}, **kw
    )
    assert same.extra["start_epoch"] == 1


def test_resume_compares_config_arrays_nested_values_and_nan_by_value(monkeypatch, tmp_path):
    """Arrays by dtype, shape and values (NaN equal to NaN), nested mappings key by key, a NaN
    setting equal to itself; a tensor or array against a list is another setting; so is
    another optimizer or another number of parameter groups."""
    _single_process(monkeypatch)
    kw = dict(batch_size=8, seed=5, progress=False)
    ckpt = tmp_path / "run.pt"

    def config():
        return {
            "grid": np.array([0.5, np.nan]),
            "opts": {"k": 3, "name": "a"},
            "tol": float("nan"),
            "ids": torch.tensor([1, 2]),
        }

    def run(epochs, **over):
        return ddp.train_ddp(
            _model, _loss, _data(), epochs=epochs, checkpoint=ckpt, config={**config(), **over},
            **kw,
        )  # fmt: skip

    run(1)
    assert run(2).extra["start_epoch"] == 1
    for over, saved_now in (
        ({"grid": [0.5, np.nan]}, r"config\['grid'\]: saved .*, now \[0\.5, nan\]"),
        ({"grid": np.array([0.5, np.nan], np.float32)}, r"config\['grid'\]: saved"),
        ({"grid": np.array([0.5])}, r"config\['grid'\]: saved"),
        ({"ids": [1, 2]}, r"config\['ids'\]: saved tensor\(\[1, 2\]\), now \[1, 2\]"),
        ({"opts": {"k": 4, "name": "a"}}, r"config\['opts'\]: saved"),
    ):
        with pytest.raises(ValueError, match=saved_now):
            run(3, **over)
    with pytest.raises(ValueError, match=r"optimizer: saved torch\.optim\.adam\.Adam, now .*SGD"):
        ddp.train_ddp(
            _model, _loss, _data(), epochs=3, checkpoint=ckpt, config=config(),
            optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.1), **kw,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"optimizer parameter groups: saved 1, now 2"):
        ddp.train_ddp(
            _model, _loss, _data(), epochs=3, checkpoint=ckpt, config=config(),
            optimizer_fn=_two_groups(0.01), **kw,
        )  # fmt: skip


class _Records(torch.utils.data.Dataset):
    """The samples of _data() as dicts, with a label that is no tensor."""

    def __init__(self):
        self.x, self.y = _data()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "name": f"s{i}"}


def test_train_ddp_takes_batches_of_dicts_as_of_tuples(monkeypatch):
    _single_process(monkeypatch)
    names = []

    def dict_loss(model, batch):
        names.extend(batch["name"])  # non-tensor entries are passed on as they are
        return _loss(model, (batch["x"], batch["y"]))

    kw = dict(epochs=1, batch_size=8, seed=5, progress=False)
    as_dicts = ddp.train_ddp(_model, dict_loss, _Records(), **kw)
    as_tuples = ddp.train_ddp(_model, _loss, _data(), **kw)
    assert as_dicts.loss_history == as_tuples.loss_history
    assert sorted(names) == sorted(f"s{i}" for i in range(32))


def test_resume_compares_a_tensor_learning_rate_by_its_value(monkeypatch, tmp_path):
    _single_process(monkeypatch)
    kw = dict(batch_size=8, seed=5, progress=False, checkpoint=tmp_path / "run.pt")

    def adam(lr):
        return lambda p: torch.optim.Adam(
            p, lr=torch.tensor(lr, dtype=torch.float64), foreach=False
        )

    ddp.train_ddp(_model, _loss, _data(), epochs=1, optimizer_fn=adam(0.01), **kw)
    again = ddp.train_ddp(_model, _loss, _data(), epochs=2, optimizer_fn=adam(0.01), **kw)
    assert again.extra["start_epoch"] == 1
    with pytest.raises(ValueError, match=r"optimizer lr: saved 0\.01, now 0\.02"):
        ddp.train_ddp(_model, _loss, _data(), epochs=3, optimizer_fn=adam(0.02), **kw)
