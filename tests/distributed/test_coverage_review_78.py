"""Review 78 (line/branch coverage): paths of bayesphys.distributed that no test ran.

Each test drives one such path (an option, an error branch, a fallback) and checks it against
the documented rule or an independent result; see the module docstrings of the code under
test for the behaviour."""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading

import numpy as np
import pytest
import torch
import torch.distributed as dist
import xarray as xr

from bayesphys import BayesphysWarning
from bayesphys._checkpoint import save_checkpoint
from bayesphys._checks import MissingPackage
from bayesphys.distributed import (
    CombineError,
    DaskRunner,
    RayRunner,
    _ray_runner,
    ddp,
    fit_many,
    problem_seed,
)
from bayesphys.distributed import _process_group as pg
from bayesphys.distributed._combine import _combine
from bayesphys.distributed.executors import MapRunner, TaskError, resolve_runner
from bayesphys.inference_data import group_dataset
from tests.env_vars import TORCHRUN_ENV, clear_env

from . import _tasks, _toy

# --- _combine: xarray refuses a stack that the checks before it let through ---------------


def test_a_coordinate_of_another_length_is_a_combine_error_naming_the_group():
    """A coordinate on a dimension of no variable, 2 labels in one problem and 3 in the other:
    the checks before the stacking do not see it, xarray's exact join refuses it; that error
    comes back as a CombineError naming the group, the problems and xarray's reason."""
    draws = np.zeros((1, 3))
    a = xr.Dataset({"y": (("chain", "draw"), draws)}, coords={"c": ("k", [1.0, 2.0])})
    b = xr.Dataset({"y": (("chain", "draw"), draws)}, coords={"c": ("k", [1.0, 2.0, 3.0])})
    with pytest.raises(CombineError) as info:
        _combine({"a": {"posterior": a}, "b": {"posterior": b}}, "problem")
    msg = str(info.value)
    assert "cannot stack group 'posterior' of problems 'a', 'b' along 'problem'" in msg
    assert "'k'" in msg and "{2, 3}" in msg  # xarray's reason: the sizes that conflict
    assert "error.result.per_problem" in msg
    assert isinstance(info.value.__cause__, ValueError)


# --- _ddp_checkpoint: damaged checkpoints -------------------------------------------------


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)).double()


def _write(path, state) -> None:
    save_checkpoint(path, kind=ddp.CHECKPOINT_KIND, config={}, state=state)


def test_a_checkpoint_without_model_weights_is_refused_by_name(tmp_path):
    path = tmp_path / "run.pt"
    _write(path, {"model": None, "optimizer": None, "epoch": 0, "step": 0})
    with pytest.raises(ValueError, match=r"holds no model weights \(its 'model' entry is a None"):
        ddp.load_training_checkpoint(path, model=_model())


def test_a_weight_that_is_no_tensor_is_named_and_nothing_is_loaded(tmp_path):
    """One entry of the saved weights is a list: torch's load_state_dict copied every other
    weight before it raised, and the error kept only torch's first line ("Error(s) in loading
    state_dict for Sequential:"), which names neither the entry nor what is wrong with it."""
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    saved = {k: torch.full_like(v, 7.0) for k, v in before.items()}
    saved["1.bias"] = [0.5]
    path = tmp_path / "run.pt"
    _write(path, {"model": saved, "optimizer": None, "epoch": 0, "step": 0})
    with pytest.raises(ValueError) as info:
        ddp.load_training_checkpoint(path, model=model)
    assert str(path) in str(info.value) and "'1.bias'" in str(info.value)
    assert "list" in str(info.value)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)  # untouched


def test_optimizer_state_that_does_not_load_is_a_value_error_naming_the_file(tmp_path):
    """Groups of the right sizes but no "state" entry: torch's own KeyError, reported with the
    file and torch's reason; the model keeps its own weights (the optimizer loads first, and
    torch sets its state only once all of it is read: the weights were copied in before)."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = [{"params": list(range(4)), "lr": 0.1}]
    path = tmp_path / "run.pt"
    saved = {k: torch.full_like(v, 7.0) for k, v in before.items()}
    _write(path, {"model": saved, "optimizer": {"param_groups": groups}})
    with pytest.raises(ValueError, match=r"its states do not load \(KeyError: 'state'\)") as info:
        ddp.load_training_checkpoint(path, model=model, optimizer=opt)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)  # untouched
    assert opt.state_dict()["param_groups"][0]["lr"] == 0.1 and not opt.state


class _Tagged(torch.nn.Module):
    """A module with an extra state of its own (not a tensor) beside its weight."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.tag = {"units": "m"}

    def get_extra_state(self):
        return dict(self.tag)

    def set_extra_state(self, state) -> None:
        self.tag = dict(state)


def test_a_modules_extra_state_that_is_no_tensor_still_loads(tmp_path, monkeypatch):
    """Entries that are not tensors in the model too (a module's extra state) are left to
    torch, which loads them: only a non-tensor where the model has a tensor is refused."""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    trained = _Tagged()
    trained.tag = {"units": "km"}
    with torch.no_grad():
        trained.w.fill_(3.0)
    path = tmp_path / "run.pt"
    ctx = ddp.init_distributed(device="cpu")
    ddp.save_training_checkpoint(path, model=trained, optimizer=None, epoch=0, step=1, ctx=ctx)
    fresh = _Tagged()
    ddp.load_training_checkpoint(path, model=fresh)
    assert fresh.tag == {"units": "km"} and torch.equal(fresh.w, torch.full((2,), 3.0))


# --- _ddp_data: a loader with worker processes ---------------------------------------------


def test_a_tensor_loader_with_a_worker_deals_the_batches_of_one_without():
    """``num_workers > 0`` goes through DataLoader's own iterator: the same batches, in the
    same order, as the in-process one (the documented "loads as any DataLoader does")."""
    x = torch.arange(24.0).reshape(12, 2)
    y = torch.arange(12)
    ctx = ddp.DistContext()
    kw = dict(shuffle=True, seed=3)
    plain = list(ddp.distributed_loader((x, y), 4, ctx, **kw))
    workers = list(ddp.distributed_loader((x, y), 4, ctx, num_workers=1, **kw))
    assert len(plain) == len(workers) == 3
    for a, b in zip(plain, workers):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(a[0], x[a[1]])  # rows and labels stay paired


# --- _pool_runners: executors of the user's, Dask task errors ------------------------------


class _Future:
    """A future that is not a concurrent.futures.Future: ``done()`` and ``result()`` only."""

    def __init__(self, fn, arg) -> None:
        self.fn, self.arg, self.polls = fn, arg, 0

    def done(self) -> bool:
        self.polls += 1
        return self.polls > 1  # not done at the first look: the runner waits and looks again

    def result(self):
        return self.fn(self.arg)


class _OwnFuturesExecutor:
    """``submit`` returning futures of its own; it refuses to submit the value 4."""

    def submit(self, fn, arg):
        if arg == 4:
            raise RuntimeError("the queue is full")
        return _Future(fn, arg)


def test_an_executor_with_futures_of_its_own_is_polled_and_refusals_are_per_task():
    with resolve_runner(_OwnFuturesExecutor()) as runner:
        events = {i: (ok, v) for i, ok, v in runner.run(_tasks.task, [0, 2, 3, 4])}
    assert events[0] == (True, 0) and events[1] == (True, 20)
    ok, err = events[2]
    assert not ok and isinstance(err, TaskError) and err.index == 2
    assert "task three broke" in str(err)
    ok, err = events[3]
    assert not ok and isinstance(err, TaskError) and err.index == 3
    assert "could not be submitted: RuntimeError: the queue is full" in str(err)


class _DropsAResultPool:
    """``imap_unordered`` that silently returns no result for the task of value 1."""

    def imap_unordered(self, fn, items):
        return (fn(item) for item in items if item[1] != 1)


def test_a_pool_that_returns_no_result_for_a_task_fails_that_task_by_name():
    events = {i: (ok, v) for i, ok, v in MapRunner(_DropsAResultPool(), "pool").run(abs, [-3, 1])}
    assert events[0] == (True, 3)
    ok, err = events[1]
    assert not ok and isinstance(err, TaskError) and err.index == 1
    assert str(err) == "task 1 failed: the pool returned no result for it"


class _NoPickle:
    def __reduce__(self):
        raise TypeError("this task cannot be pickled")


def _build_holding(problem, seed=None, *, lock=None):
    return _toy.build(problem, seed=seed)


def test_dask_task_errors_and_refused_submissions_stay_with_their_tasks(dask_client):
    runner = DaskRunner(dask_client, None, 1)
    events = {i: (ok, v) for i, ok, v in runner.run(_tasks.task, [0, 3, _NoPickle()])}
    assert events[0] == (True, 0)
    assert not events[1][0] and events[1][1].index == 1
    assert "task three broke" in str(events[1][1])
    assert not events[2][0] and events[2][1].index == 2
    assert "could not be submitted" in str(events[2][1])
    assert list(runner.run(_tasks.task, [])) == []
    # fit_many's shared part (here a builder holding a lock) cannot be scattered: each task
    # then carries it and reports its own failure; the run goes on to its table
    build = functools.partial(_build_holding, lock=threading.Lock())
    with pytest.warns(BayesphysWarning, match="2 of 2 problems failed"):
        res = fit_many(
            _toy.problems(2),
            build,
            executor=dask_client,
            seed=0,
            fit_kwargs={"steps": 2},
            num_samples=5,
            progress=False,
        )
    assert list(res.table["status"]) == ["error", "error"]
    assert all("could not be submitted" in e for e in res.table["error"])


# --- fit_many: threads_per_worker=None --------------------------------------------------------


def test_threads_per_worker_none_leaves_the_tasks_thread_count_as_it_is():
    seen = []

    def build(problem, seed=None):
        seen.append(torch.get_num_threads())
        return _toy.build(problem, seed=seed)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for threads in (None, 1):
            fit_many(
                _toy.problems(1),
                build,
                executor="sequential",
                threads_per_worker=threads,
                seed=0,
                fit_kwargs={"steps": 2},
                num_samples=5,
                progress=False,
            )
        assert seen == [2, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# --- _problem_task: an id whose comparison raises ------------------------------------------


def test_an_id_whose_comparison_raises_is_seeded_from_its_str():
    """An array id: ``id != id`` raises (an array's truth value); the id is then taken by its
    ``str``, as the docstring says every id is."""
    arr = np.array([1, 2])
    assert problem_seed(7, arr) == problem_seed(7, str(arr))


# --- _process_group ---------------------------------------------------------------------------


def test_free_port_without_room_on_either_side_binds_an_os_port(monkeypatch):
    """Less than 1000 ports below the ephemeral range and above it: nothing is drawn, the OS
    hands out a port (from its ephemeral range), which is free."""
    low, high = pg._ephemeral_range()
    monkeypatch.setattr(pg, "_ephemeral_range", lambda: (pg._PORT_FLOOR + 500, 65000))
    monkeypatch.setattr(pg, "_draw_port", lambda *a: pytest.fail("drew a port"))
    port = pg.free_port()
    assert low <= port <= high
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


def test_set_local_rank_env_refuses_a_rank_outside_the_world(monkeypatch):
    clear_env(monkeypatch, *TORCHRUN_ENV)
    with pytest.raises(
        ValueError, match=r"^rank: expected 0 <= rank < world_size = 2, received 2$"
    ):
        ddp.set_local_rank_env(2, 2, 29500)
    assert "RANK" not in os.environ and "MASTER_PORT" not in os.environ  # nothing was set


def test_a_world_size_below_one_in_the_environment_is_refused_by_name(monkeypatch):
    clear_env(monkeypatch, *TORCHRUN_ENV)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "0")
    with pytest.raises(ValueError, match=r"^WORLD_SIZE: expected an int >= 1, received 0$"):
        ddp.planned_world()


def test_init_distributed_refuses_a_device_torch_distributed_does_not_serve(monkeypatch):
    """An MPS device (simulated present, as on a Mac) passes resolve_device but neither gloo
    nor NCCL serves it: refused by name before any group is made."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("a group"))
    with pytest.raises(ValueError, match=r"^device: expected a cpu or cuda device .*'mps'"):
        ddp.init_distributed(device="mps")


def test_a_one_rank_group_without_local_rank_is_made_and_left(monkeypatch):
    """torchrun's RANK and WORLD_SIZE without LOCAL_RANK (a launcher that sets only those):
    the local rank is the rank, the device the CPU (no CUDA), the backend gloo over the
    loopback interface; cleanup_distributed destroys the group it made."""
    clear_env(monkeypatch, *TORCHRUN_ENV, "GLOO_SOCKET_IFNAME")
    monkeypatch.setattr(pg.torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(ddp.free_port()))
    assert not dist.is_initialized()
    try:
        ctx = ddp.init_distributed()
        assert (ctx.rank, ctx.world_size, ctx.local_rank) == (0, 1, 0)
        assert ctx.device == torch.device("cpu") and ctx.backend == "gloo"
        assert ctx.initialized_here and dist.is_initialized()
        if pg._loopback_interface() is not None:
            assert os.environ["GLOO_SOCKET_IFNAME"] == pg._loopback_interface()
        assert ddp.planned_world() == (0, 1)
        ddp.cleanup_distributed(ctx)
        assert not dist.is_initialized()
        ddp.cleanup_distributed()  # no group left: nothing to do, no error
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_rank_zero_only_skips_the_call_on_another_rank(monkeypatch):
    calls = []
    wrapped = ddp.rank_zero_only(calls.append)
    monkeypatch.setattr(pg.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(pg.dist, "get_rank", lambda *a: 1)
    assert wrapped("on rank 1") is None and calls == []
    monkeypatch.setattr(pg.dist, "get_rank", lambda *a: 0)
    wrapped("on rank 0")
    assert calls == ["on rank 0"]


# --- ddp.train_ddp -----------------------------------------------------------------------------


def _data(n: int = 32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return x, torch.sin(x.sum(-1, keepdim=True))


def _net() -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return net.double()


def _mse(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def test_an_epoch_with_a_nan_loss_but_finite_steps_is_rolled_back_naming_the_loss(monkeypatch):
    """A NaN added to the loss that no weight depends on (finite gradients, finite weights
    and optimizer state): the epoch's mean is NaN, so it diverged; the message names the loss,
    not the weights or the optimizer state."""
    clear_env(monkeypatch, "RANK", "WORLD_SIZE", "LOCAL_RANK")
    calls = {"n": 0}

    def nan_in_epoch_one(model, batch):
        calls["n"] += 1
        loss = _mse(model, batch)
        return loss + float("nan") if calls["n"] == 6 else loss

    kw = dict(epochs=3, batch_size=8, seed=5, progress=False)
    res = ddp.train_ddp(_net, nan_in_epoch_one, _data(), **kw)
    assert not res.converged
    assert res.message == "diverged at epoch 1 (loss nan); restored the state it started from"
    assert res.steps == 4 and len(res.loss_history) == 1
    one = ddp.train_ddp(_net, _mse, _data(), **{**kw, "epochs": 1})
    for a, b in zip(res.extra["model"].parameters(), one.extra["model"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # epoch 0's weights


def test_an_error_of_model_fn_reaches_the_caller_as_it_is(monkeypatch):
    clear_env(monkeypatch, "RANK", "WORLD_SIZE", "LOCAL_RANK")

    def broken():
        raise RuntimeError("no such layer")

    with pytest.raises(RuntimeError, match="^no such layer$"):
        ddp.train_ddp(broken, _mse, _data(), epochs=1, batch_size=8, progress=False)


# --- executors: an engine that cannot be imported; Ray's runner without Ray ---------------


def test_a_ray_runner_without_ray_names_the_package_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ModuleNotFoundError
    with pytest.raises(MissingPackage, match=r"executor='ray' needs 'ray'.*ray\[default\]"):
        RayRunner(1, 1)


def test_an_engine_missing_a_module_of_its_own_raises_that_error(monkeypatch):
    """Ray is there but a module it imports is not: the import's own error, not "install
    ray" (which is installed)."""
    import importlib

    def missing_grpc(name):
        raise ModuleNotFoundError("No module named 'grpc'", name="grpc")

    monkeypatch.setattr(importlib, "import_module", missing_grpc)
    with pytest.raises(ModuleNotFoundError, match="grpc"):
        RayRunner(1, 1)


class _Ref:
    """A stand-in Ray object reference: the task's result (``ok``) or its error."""

    def __init__(self, ok: bool, value) -> None:
        self.ok, self.value = ok, value


class _StandInRay:
    """The part of the ``ray`` module RayRunner uses, run in this process: ``remote`` calls
    the function at submission and keeps its result or error for ``get``."""

    def __init__(self, cpus: float = 4, fail_init: bool = False, fail_put: bool = False) -> None:
        self.up, self.cpus = False, cpus
        self.fail_init, self.fail_put = fail_init, fail_put
        self.init_threads: list[str] = []

    def is_initialized(self) -> bool:
        return self.up

    def init(self, **kwargs) -> None:
        self.init_threads.append(threading.current_thread().name)
        if self.fail_init:
            raise ConnectionError("no GCS")
        self.up = True

    def shutdown(self) -> None:
        self.up = False

    def cluster_resources(self) -> dict:
        return {"CPU": self.cpus}

    def put(self, value):
        if self.fail_put:
            raise TypeError("cannot put it")
        return value

    def remote(self, **resources):
        def wrap(fn):
            class Remote:
                @staticmethod
                def remote(*args):
                    if any(isinstance(a, _NoPickle) for a in args):
                        raise TypeError("could not serialize the task")
                    try:
                        return _Ref(True, fn(*args))
                    except Exception as err:  # noqa: BLE001
                        return _Ref(False, err)

            return Remote

        return wrap

    def wait(self, pending, num_returns=1):
        return pending[:num_returns], pending[num_returns:]

    def get(self, ref):
        if not ref.ok:
            raise ref.value
        return ref.value


@pytest.fixture
def stand_in_ray(monkeypatch):
    ray = _StandInRay()
    monkeypatch.setattr(_ray_runner, "_import", lambda *a: ray)
    # the tasks run in this process: the per-task thread limit would stay set in it
    monkeypatch.setattr(_ray_runner, "limit_threads", lambda n: None)
    yield ray
    assert _ray_runner._ray_users == 0


def test_a_ray_task_reserving_more_cpus_than_the_cluster_has_is_refused(stand_in_ray):
    with pytest.raises(
        ValueError, match=r"each Ray task reserves 8 CPUs but the cluster has 4: no task"
    ):
        RayRunner(8, None)
    assert not stand_in_ray.up  # the instance started for the call was shut down


def test_ray_runners_share_an_instance_and_leave_the_callers_own(stand_in_ray):
    first = RayRunner(1, 2)
    second = RayRunner(1, 2)  # a second call while the first runs: shares its instance
    assert first.workers == second.workers == 4
    first.close()
    assert stand_in_ray.up  # still used by the second
    second.close()
    assert not stand_in_ray.up
    stand_in_ray.up = True  # an instance the caller started
    RayRunner(1, 2).close()
    assert stand_in_ray.up


def test_a_ray_runner_made_in_another_thread_starts_ray_there_and_raises_its_error(stand_in_ray):
    out: dict = {}

    def make():
        try:
            out["runner"] = RayRunner(1, 2)
        except Exception as err:  # noqa: BLE001
            out["error"] = err

    stand_in_ray.fail_init = True
    t = threading.Thread(target=make, name="caller")
    t.start()
    t.join(30)
    assert isinstance(out["error"], ConnectionError) and "runner" not in out
    assert stand_in_ray.init_threads == ["bayesphys-ray-owner"]  # not the caller's thread
    stand_in_ray.fail_init = False
    t = threading.Thread(target=make, name="caller")
    t.start()
    t.join(30)
    assert stand_in_ray.up
    out["runner"].close()
    assert not stand_in_ray.up and _ray_runner._ray_owner_done is None


def test_ray_task_errors_and_refused_submissions_stay_with_their_tasks(stand_in_ray):
    runner = RayRunner(1, 2)
    try:
        events = {i: (ok, v) for i, ok, v in runner.run(_tasks.task, [0, 3, _NoPickle()])}
    finally:
        runner.close()
    assert events[0] == (True, 0)
    assert not events[1][0] and events[1][1].index == 1 and "task three broke" in str(events[1][1])
    assert not events[2][0] and events[2][1].index == 2
    assert "could not be submitted: TypeError: could not serialize" in str(events[2][1])


def test_fit_many_on_ray_sends_each_task_whole_when_the_store_refuses_the_shared_part(
    stand_in_ray,
):
    """The shared part (build, settings) cannot be put in the object store: each task carries
    it instead, with the same results as a sequential run."""
    stand_in_ray.fail_put = True
    kw = dict(seed=0, fit_kwargs={"steps": 3}, num_samples=5, progress=False)
    runner = RayRunner(1, 2)
    try:
        got = fit_many(_toy.problems(2), _toy.build, executor=runner, **kw)
    finally:
        runner.close()
    ref = fit_many(_toy.problems(2), _toy.build, executor="sequential", **kw)
    assert list(got.table["status"]) == ["ok", "ok"]
    np.testing.assert_array_equal(
        got.table["final_loss"].to_numpy(), ref.table["final_loss"].to_numpy()
    )
    xr.testing.assert_equal(
        group_dataset(got.idata, "posterior")["u"], group_dataset(ref.idata, "posterior")["u"]
    )
