"""Cost review (2026-12-07): work and memory that scale-out spent on nothing.

- Ray and Dask runs sent ``fit_many``'s builder, export and settings inside every task, so a
  builder carrying a large input (an atlas, a mesh, an operator) was pickled and stored once per
  problem: 100 problems with a 10 MB builder input took 1 GB of Ray's object store (driver
  resident size +504 MB, 3.6 s) and, on a 2-worker Dask cluster, +1028 MB in the driver
  (whose process runs the scheduler) and 13.4 s; now that part is sent once (Ray: the object
  store; Dask: scattered pickled bytes each task loads), +14 MB / 2.6 s and +23 MB / 3.8 s, with
  the same numbers (each task still gets its own copy).
- ``train_ddp`` / ``distributed_loader`` on tensors fetched every batch sample by sample (a
  Python ``TensorDataset.__getitem__`` per sample and a ``torch.stack`` per tensor): 40 % of an
  epoch of the MLP surrogate (20 000 samples, batch 128); now one index per tensor and batch,
  the same batches.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from bayesphys.distributed import fit_many
from bayesphys.distributed._ddp_data import _as_dataset, distributed_loader
from bayesphys.distributed._problem_task import ProblemTask, join_shared, split_shared
from bayesphys.distributed._process_group import DistContext
from bayesphys.inference_data import group_dataset

from . import _toy
from .test_concurrent_calls import _StandInRay as _LifecycleStandInRay


class CountedBuilder:
    """A builder carrying a shared input; counts how often it is pickled (in this process)."""

    pickled = 0

    def __init__(self, atlas: torch.Tensor) -> None:
        self.atlas = atlas

    def __reduce__(self):
        type(self).pickled += 1
        return (CountedBuilder, (self.atlas,))

    def __call__(self, problem, seed=None):
        return _toy.build(problem, seed=seed)


def _fit(executor, builder, n: int = 5):
    return fit_many(
        _toy.problems(n),
        builder,
        executor=executor,
        seed=11,
        progress=False,
        fit_kwargs={"steps": 2},
        num_samples=4,
    )


def _draws(res) -> np.ndarray:
    return group_dataset(res.idata, "posterior")["u"].values


# ------------------------------------------------------------------ the shared part of the tasks
def _tasks(n: int = 3, **kw) -> list[ProblemTask]:
    build = CountedBuilder(torch.zeros(3))
    fit = {"steps": 2, "x": torch.ones(2)}
    return [
        ProblemTask(
            problem_id=f"p{k}", problem={"k": k}, build=build, seed=k, fit_kwargs=dict(fit), **kw
        )
        for k in range(n)
    ]


def test_tasks_split_into_one_shared_part_and_join_back_equal():
    tasks = _tasks()
    shared, own = split_shared(tasks)
    assert (
        shared["build"] is tasks[0].build and shared["fit_kwargs"]["x"] is tasks[0].fit_kwargs["x"]
    )
    assert own == [{"problem_id": f"p{k}", "problem": {"k": k}, "seed": k} for k in range(3)]
    assert [join_shared(shared, o) for o in own] == tasks


def test_tasks_with_other_builders_or_settings_or_other_objects_are_not_split():
    tasks = _tasks()
    tasks[1].build = CountedBuilder(torch.zeros(3))  # an equal but other builder
    assert split_shared(tasks) is None
    tasks = _tasks()
    tasks[2].fit_kwargs = {**tasks[2].fit_kwargs, "x": torch.ones(2)}
    assert split_shared(tasks) is None
    assert split_shared([1, 2]) is None and split_shared([]) is None


# ------------------------------------------------------------------------- Ray, without starting it
class _Ref:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob


class _StandInRay(_LifecycleStandInRay):
    """The part of ``ray`` RayRunner uses (the lifecycle of ``test_concurrent_calls``'s stand-in,
    with 2 CPUs): arguments pickled at submission as Ray does (a ``put`` object once), tasks run
    in this process when their result is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def cluster_resources(self) -> dict:
        return {"CPU": 2}

    def put(self, value):
        self.puts += 1
        return _Ref(pickle.dumps(value))

    def remote(self, **resources):
        def wrap(fn):
            class Remote:
                @staticmethod
                def remote(*args):
                    return (fn, pickle.dumps(args))

            return Remote

        return wrap

    def wait(self, pending, num_returns=1):
        return pending[:num_returns], pending[num_returns:]

    def get(self, ref):
        fn, blob = ref
        args = [pickle.loads(a.blob) if isinstance(a, _Ref) else a for a in pickle.loads(blob)]
        return fn(*args)


def test_ray_pickles_the_builder_once_per_run_not_per_problem(monkeypatch):
    from bayesphys.distributed import _ray_runner

    ray = _StandInRay()
    monkeypatch.setattr(_ray_runner, "_import", lambda *a: ray)
    build = CountedBuilder(torch.randn(1000, generator=torch.Generator().manual_seed(0)))
    ref = _fit("sequential", build)
    CountedBuilder.pickled = 0
    # no thread limit of the runner's own: its tasks run in this process here (each problem's
    # task still limits and restores its threads)
    runner = _ray_runner.RayRunner(None, 2)
    try:
        res = _fit(runner, build)
    finally:
        runner.close()
    assert CountedBuilder.pickled == 1 and ray.puts == 1  # was 5: once per problem
    assert list(res.table["status"]) == ["ok"] * 5
    assert np.array_equal(_draws(res), _draws(ref))  # the same draws


def test_ray_tasks_that_cannot_share_are_sent_whole(monkeypatch):
    from bayesphys.distributed import _ray_runner

    ray = _StandInRay()
    monkeypatch.setattr(_ray_runner, "_import", lambda *a: ray)
    runner = _ray_runner.RayRunner(None, 2)
    try:
        events = sorted(runner.run(abs, [-1, -2]))
    finally:
        runner.close()
    assert events == [(0, True, 1), (1, True, 2)] and ray.puts == 0


# ------------------------------------------------------------------------------------------ Dask
def test_dask_pickles_the_builder_once_per_run_not_per_problem(dask_client):
    build = CountedBuilder(torch.randn(1000, generator=torch.Generator().manual_seed(0)))
    ref = _fit("sequential", build)
    CountedBuilder.pickled = 0
    res = _fit(dask_client, build)
    assert CountedBuilder.pickled == 1  # was 5: once per problem, held by the scheduler
    assert list(res.table["status"]) == ["ok"] * 5
    assert np.array_equal(_draws(res), _draws(ref))


# ------------------------------------------------------------------------- DDP batches of tensors
def _old_loader(data, batch_size, ctx, **kw):
    """The loader before: the plain TensorDataset, fetched sample by sample."""
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    ds = TensorDataset(*data)
    sampler = DistributedSampler(
        ds,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=kw["seed"],
        drop_last=kw["drop_last"],
    )
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=kw["drop_last"])


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("rank", [0, 1])
def test_tensor_batches_are_indexed_whole_and_equal_the_sample_by_sample_ones(
    monkeypatch, rank, drop_last
):
    from torch.utils.data import TensorDataset

    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(103, 3, generator=gen), torch.randn(103, generator=gen).float())
    ctx = DistContext(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
    calls = []
    single = TensorDataset.__getitem__
    monkeypatch.setattr(TensorDataset, "__getitem__", lambda s, i: calls.append(i) or single(s, i))
    new = distributed_loader(data, 8, ctx, seed=5, drop_last=drop_last)
    old = _old_loader(data, 8, ctx, seed=5, drop_last=drop_last)
    for epoch in (0, 1):
        new.sampler.set_epoch(epoch)
        old.sampler.set_epoch(epoch)
        calls.clear()
        got = list(new)
        assert calls == []  # was one call per sample
        want = list(old)
        assert len(got) == len(want) == len(new)
        for a, b in zip(got, want, strict=True):
            assert type(a) is type(b) is list
            assert all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b, strict=True))
    assert isinstance(new.dataset, TensorDataset)


def test_a_single_tensor_and_a_users_dataset_keep_their_batches():
    x = torch.arange(20.0).reshape(10, 2)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    (batch,) = list(distributed_loader(x, 10, ctx, shuffle=False))
    assert type(batch) is list and torch.equal(batch[0], x)
    ds = _as_dataset((x,))
    assert distributed_loader(ds, 4, ctx).dataset is ds  # a dataset passed in is used as it is
