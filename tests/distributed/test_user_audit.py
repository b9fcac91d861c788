"""Public scale-out helpers called directly: a bad argument is named as the caller wrote it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from bayesphys.distributed import RayRunner, SequentialRunner, fit_many, limit_threads, run_problem
from bayesphys.distributed.ddp import init_distributed, seed_for_rank, train_ddp

from ._toy import build
from ._toy import problems as build_problems


@pytest.mark.parametrize(("n", "err"), [(0, ValueError), (-2, ValueError), (True, TypeError)])
def test_limit_threads_names_its_own_argument(n, err):
    # the error named 'threads_per_worker', an argument of fit_many, not of this function
    with pytest.raises(err, match=r"^n: expected an int"):
        limit_threads(n)


def test_limit_threads_is_restored_by_its_public_handle(monkeypatch):
    # it returned a dict that only the private _restore_threads could use: a caller had no
    # public way back to its thread count and environment
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    try:
        with limit_threads(1) as limit:
            assert torch.get_num_threads() == 1 and limit.active and limit.n == 1
            assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
        assert torch.get_num_threads() == 2 and not limit.active
        assert os.environ["OMP_NUM_THREADS"] == "2" and "MKL_NUM_THREADS" not in os.environ
        # the call form without a block: the limit holds until restore(), which acts once
        limit = limit_threads(1)
        assert torch.get_num_threads() == 1
        limit.restore()
        assert torch.get_num_threads() == 2
        torch.set_num_threads(3)
        limit.restore()  # a second restore leaves later settings alone
        assert torch.get_num_threads() == 3
        with limit_threads(None) as none:  # no limit: nothing changed, nothing restored
            assert torch.get_num_threads() == 3 and not none.active
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"threads": 0}, ValueError, r"^threads: expected an int >= 1, received 0"),
        ({"threads": True}, TypeError, r"^threads: expected an int"),
        ({"workers": 0}, ValueError, r"^workers: expected an int >= 1, received 0"),
        ({"num_gpus": -0.25}, ValueError, r"^num_gpus: expected a number >= 0"),
        ({"num_gpus": float("nan")}, ValueError, r"^num_gpus: expected a finite number"),
    ],
)
def test_ray_runner_checks_its_settings_before_starting_ray(kwargs, err, match):
    # accepted, and Ray started: threads=0 then failed in every task, workers=0 gave Ray
    # every core, a negative num_gpus failed at each submission
    with pytest.raises(err, match=match):
        RayRunner(**{"threads": 1, "workers": None, **kwargs})


@pytest.mark.parametrize(("threads", "err"), [(0, ValueError), (-1, ValueError), (1.5, TypeError)])
def test_sequential_runner_checks_threads(threads, err):
    with pytest.raises(err, match=r"^threads: expected an int"):
        SequentialRunner(threads)
    assert SequentialRunner(None).threads is None
    assert SequentialRunner(2).threads == 2


@pytest.mark.parametrize("problems", ["p000", b"p0"])
def test_fit_many_refuses_a_string_of_problems(problems):
    # each character was taken as a problem: every build failed, one table row per letter
    with pytest.raises(TypeError, match=r"^problems: expected a mapping .* received (str|bytes)"):
        fit_many(problems, build, executor="sequential", progress=False, seed=0)


@pytest.mark.parametrize("task", [{"problem_id": "p0"}, None])
def test_run_problem_refuses_what_is_not_a_task(task):
    # AttributeError: 'dict' object has no attribute 'problem_id'
    with pytest.raises(TypeError, match=r"^task: expected a ProblemTask .* received"):
        run_problem(task)


@pytest.mark.parametrize(
    ("seed", "rank", "err", "match"),
    [
        (1.7, 0, TypeError, "^seed: expected an int"),  # int() made it seed 1
        (0, 0.5, TypeError, "^rank: expected an int"),  # int() made it rank 0
        (None, 0, TypeError, "^seed: expected an int"),
        (0, "context", TypeError, "^rank: expected an int"),  # the context, not its rank
        (0, -1, ValueError, "^rank: expected an int >= 0"),
    ],
)
def test_seed_for_rank_checks_seed_and_rank(seed, rank, err, match):
    if rank == "context":
        rank = init_distributed()  # one process without torchrun: a plain context
    with pytest.raises(err, match=match):
        seed_for_rank(seed, rank)


def test_seed_for_rank_values_are_unchanged():
    assert seed_for_rank(0, 1) == 104_729
    assert seed_for_rank(-1, 0) == 2**63 - 1


@pytest.mark.parametrize(
    ("loss_fn", "got"),
    [
        (lambda m, b: 1.0, "float"),  # 'float' object has no attribute 'backward'
        (lambda m, b: (m(b[0]) ** 2)[:, 0], r"a tensor of shape \(4,\)"),  # per-sample losses
    ],
)
def test_train_ddp_names_a_loss_that_is_not_one_value(loss_fn, got):
    data = torch.utils.data.TensorDataset(
        torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    )
    with pytest.raises(
        TypeError, match=rf"^loss_fn: expected a scalar tensor loss .*received {got}"
    ):
        train_ddp(
            lambda: torch.nn.Linear(2, 1), loss_fn, data, epochs=1, batch_size=4, progress=False
        )


def test_problem_seed_refuses_an_id_whose_text_changes_between_runs():
    """``problem_seed`` hashes ``str(problem_id)``: an object with the default repr
    (``<... at 0x7f...>``) got a seed that changed from run to run, and seeds past torch's
    range (2**64 and up) were taken although every other seed check refuses them."""
    from bayesphys import problem_seed

    class Case:  # no __repr__ of its own
        pass

    with pytest.raises(TypeError, match=r"^problem_id: str\(\) of the id gives '<.* at 0x"):
        problem_seed(0, Case())
    with pytest.raises(ValueError, match=r"^seed: expected an int in \[-2\*\*63, 2\*\*64 - 1\]"):
        problem_seed(2**64, "a")
    # the seed of a valid id is the same in another interpreter (what the check protects)
    code = "from bayesphys import problem_seed; print(problem_seed(3, ('patient', 7)))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    assert int(other) == problem_seed(3, ("patient", 7))
    assert problem_seed(3, "a") != problem_seed(4, "a")


@pytest.mark.parametrize("client", [None, "tcp://127.0.0.1:8786"])
def test_dask_runner_refuses_what_is_not_a_client(client):
    # accepted: every problem then failed at its submission ("'NoneType' object has no
    # attribute 'submit'"), one table row each
    from bayesphys.distributed import DaskRunner

    with pytest.raises(TypeError, match=r"^client: expected a dask.distributed.Client, received"):
        DaskRunner(client, None, None)


@pytest.mark.parametrize(("workers", "err"), [(0, ValueError), (-1, ValueError), (1.5, TypeError)])
def test_dask_runner_checks_workers(workers, err, dask_client):
    # workers=0 was kept, as RayRunner's and SequentialRunner's settings no longer are
    from bayesphys.distributed import DaskRunner

    with pytest.raises(err, match=r"^workers: expected an int"):
        DaskRunner(dask_client, None, workers)
    assert DaskRunner(dask_client, None, 2).workers == 2
    assert DaskRunner(dask_client, None, None).workers is None


def test_dask_runner_checks_its_cluster(dask_client):
    # any cluster was kept and closed at close(): a string failed there with an
    # AttributeError after the client was closed, another cluster was closed with it
    from bayesphys.distributed import DaskRunner

    distributed = pytest.importorskip("dask.distributed")
    with pytest.raises(TypeError, match=r"^cluster: expected None or the client's dask"):
        DaskRunner(dask_client, "local", 1)
    # another in-process cluster (its dashboard on a free port: the fixture's holds 8787)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as other:
        with pytest.raises(ValueError, match=r"^cluster: expected the client's own cluster"):
            DaskRunner(dask_client, other, 1)
    runner = DaskRunner(dask_client, dask_client.cluster, 1)  # its own: accepted, and owned
    assert runner.cluster is dask_client.cluster and runner.owned


@pytest.mark.parametrize("out", [3, "", b"runs"])
def test_fit_many_names_an_out_that_is_no_folder_path(out, tmp_path, monkeypatch):
    # out=3 failed in pathlib ("expected str, bytes or os.PathLike object, not int") without
    # naming out; out="" wrote every problem's files into the working folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match=r"^out: expected a folder path \(str or Path\) or None"):
        fit_many(build_problems(1), build, executor="sequential", progress=False, out=out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "err", "match"),
    [
        ((0, 2, 70000), ValueError, r"^port: expected a TCP port in 1..65535, received 70000"),
        ((0, 2, 0), ValueError, r"^port: expected an int >= 1, received 0"),
        ((0, 2, "29500"), TypeError, r"^port: expected an int"),
        ((0, 0, 29500), ValueError, r"^world_size: expected an int >= 1, received 0"),
        ((0.5, 2, 29500), TypeError, r"^rank: expected an int"),
    ],
)
def test_set_local_rank_env_checks_before_setting_anything(args, err, match, monkeypatch):
    # port 70000 was written to MASTER_PORT and failed only in init_distributed, with torch's
    # "port must have value from 0 to 65535"; world_size 0 was named as a rank error
    from bayesphys.distributed.ddp import set_local_rank_env

    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        # set, then removed: monkeypatch then puts back the caller's state after the test (a
        # variable absent before is not recorded by delenv, and RANK=1 of 2 made every later
        # test in the process take itself for a torchrun rank)
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    with pytest.raises(err, match=match):
        set_local_rank_env(*args)
    assert "MASTER_PORT" not in os.environ and "RANK" not in os.environ
    set_local_rank_env(1, 2, 29500)
    assert (os.environ["MASTER_PORT"], os.environ["RANK"]) == ("29500", "1")


@pytest.mark.parametrize(
    ("call", "err", "match"),
    [
        (lambda ddp: ddp.all_reduce_mean(1.0, None), TypeError, r"^ctx: expected a DistContext"),
        (
            lambda ddp: ddp.all_reduce_mean(torch.ones(3), ddp.DistContext()),
            ValueError,
            r"^value: expected a scalar .* received a tensor of shape \(3,\)",
        ),
        (
            lambda ddp: ddp.all_reduce_mean([1.0, 2.0], ddp.DistContext()),
            TypeError,
            r"^value: expected a scalar .* received list",
        ),
        (lambda ddp: ddp.cleanup_distributed(3), TypeError, r"^ctx: expected a DistContext"),
        (
            lambda ddp: ddp.cleanup_distributed(None, timeout_s=-1),
            ValueError,
            r"^timeout_s: expected a number > 0.0, received -1",
        ),
    ],
)
def test_ddp_helpers_name_a_wrong_ctx_or_value(call, err, match):
    # AttributeError: 'NoneType' object has no attribute 'device' (or 'initialized_here'),
    # torch's "only one element tensors can be converted to Python scalars", and a negative
    # timeout accepted
    from bayesphys.distributed import ddp

    with pytest.raises(err, match=match):
        call(ddp)
    assert ddp.all_reduce_mean(torch.tensor([2.5]), ddp.DistContext()) == 2.5
    assert ddp.all_reduce_mean(3, ddp.DistContext()) == 3.0


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"model": None}, TypeError, r"^model: expected a torch.nn.Module, received NoneType"),
        ({"optimizer": "adam"}, TypeError, r"^optimizer: expected a torch.optim.Optimizer or None"),
        ({"epoch": -1}, ValueError, r"^epoch: expected an int >= 0, received -1"),
        ({"step": 1.5}, TypeError, r"^step: expected an int"),
        ({"ctx": None}, TypeError, r"^ctx: expected a DistContext"),
    ],
)
def test_training_checkpoints_check_their_arguments_before_writing(kwargs, err, match, tmp_path):
    # model=None failed with "'NoneType' object has no attribute 'state_dict'" (ctx=None with
    # 'is_main'), epoch=-1 was written
    from bayesphys.distributed import ddp

    model = torch.nn.Linear(2, 1)
    args = dict(model=model, optimizer=None, epoch=0, step=0, ctx=ddp.DistContext())
    path = tmp_path / "ckpt.pt"
    with pytest.raises(err, match=match):
        ddp.save_training_checkpoint(path, **{**args, **kwargs})
    assert not path.exists()
    ddp.save_training_checkpoint(path, **args)
    if "model" in kwargs or "optimizer" in kwargs:
        load = {k: v for k, v in kwargs.items() if k in ("model", "optimizer")}
        with pytest.raises(err, match=match):
            ddp.load_training_checkpoint(path, **{"model": model, **load})
    assert ddp.load_training_checkpoint(path, model=model)["epoch"] == 0


def test_rank_zero_only_refuses_what_it_cannot_call():
    # rank_zero_only(3) was returned as a wrapper that failed when called, on rank 0 alone
    from bayesphys.distributed.ddp import rank_zero_only

    with pytest.raises(TypeError, match=r"^fn: expected a callable to decorate, received int"):
        rank_zero_only(3)
    assert rank_zero_only(abs)(-2) == 2  # a single process is rank 0


def test_fit_many_of_no_problems_says_so():
    # it reported executor="none (all resumed)", though nothing was resumed
    res = fit_many({}, build, executor="sequential", progress=False, seed=0)
    assert res.executor == "none (no problems)" and res.workers is None


@pytest.mark.parametrize(
    "kw,err,match",
    [
        ({"rank": -1}, ValueError, r"rank: expected an int >= 0, received -1"),
        ({"world_size": 0}, ValueError, r"world_size: expected an int >= 1, received 0"),
        ({"rank": 2, "world_size": 2}, ValueError, r"rank: expected 0 <= rank < world_size = 2"),
        ({"local_rank": -1}, ValueError, r"local_rank: expected an int >= 0"),
        ({"rank": 1.5, "world_size": 2}, TypeError, r"rank: expected an int"),
        ({"backend": "foo"}, ValueError, r"backend: expected one of .*received 'foo'"),
        ({"backend": 3}, TypeError, r"backend: expected a str or None, received int"),
        ({"device": "meta"}, ValueError, r"device: expected a cpu or cuda device"),
        (
            {"device": "gpu"},
            ValueError,
            r"device: expected .cpu., .cuda. or .cuda:N., received .gpu.",
        ),
        ({"device": 0}, TypeError, r"device: expected a torch.device or its name"),
        ({"initialized_here": "yes"}, TypeError, r"initialized_here: expected a bool"),
    ],
)
def test_dist_context_checks_its_fields(kw, err, match):
    """A DistContext with rank=-1, world_size=0 or backend='foo' was made without a word."""
    from bayesphys.distributed.ddp import DistContext

    with pytest.raises(err, match=match):
        DistContext(**kw)


def test_dist_context_takes_a_device_name_and_a_group_backend():
    """A device given by name stayed a string (``ctx.device.type`` failed later)."""
    from bayesphys.distributed.ddp import DistContext

    ctx = DistContext(1, 2, 0, "cpu", "cpu:gloo,cuda:nccl")
    assert ctx.device == torch.device("cpu") and isinstance(ctx.device, torch.device)
    assert ctx.rank == 1 and ctx.world_size == 2 and ctx.backend == "cpu:gloo,cuda:nccl"
    assert DistContext(backend="gloo").distributed is False  # one rank: no collective
