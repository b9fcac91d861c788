"""fit_many calls running at once in one process, and in-process Dask workers, leave each
other and the caller alone (review of 2026-12-03; each test failed before)."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from bayesphys.distributed import fit_many

from . import _toy


def _two_overlapping_calls(executor: str) -> dict:
    """A short and a long call started together in two threads: each call's statuses."""
    out: dict = {}

    def run(name: str, sleep: float) -> None:
        probs = _toy.problems(1)
        for prob in probs.values():
            prob["sleep"] = sleep
        try:
            res = fit_many(
                probs,
                _toy.build_sleeping,
                executor=executor,
                max_workers=1,
                seed=0,
                fit_kwargs={"steps": 3},
                num_samples=5,
                progress=False,
            )
            out[name] = (list(res.table["status"]), list(res.table["error"]))
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            out[name] = f"raised {type(err).__name__}: {err}"

    threads = [
        threading.Thread(target=run, args=("short", 1.0)),
        threading.Thread(target=run, args=("long", 12.0)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return out


@pytest.mark.slow  # two local Dask clusters on the shared 2-core machine: ~40 s
def test_two_dask_calls_at_once_each_keep_their_cluster():
    """The first call's client became dask's default: the second call submitted to it and lost
    its task when the first call closed that cluster (FutureCancelledError)."""
    pytest.importorskip("dask.distributed")
    out = _two_overlapping_calls("dask")
    assert out["short"][0] == ["ok"], out
    assert out["long"][0] == ["ok"], out


@pytest.mark.slow  # a local Ray instance: ~30 s
def test_two_ray_calls_at_once_share_one_instance_until_both_end():
    """Each call shut down the instance it started under the other call's tasks."""
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    out = _two_overlapping_calls("ray")
    assert out["short"][0] == ["ok"], out
    assert out["long"][0] == ["ok"], out
    assert not ray.is_initialized()  # the last call to end shut it down


def test_an_in_process_dask_client_leaves_the_callers_thread_settings(monkeypatch):
    """Workers in the caller's own process got a process-wide thread limit that was never
    undone: MKL_NUM_THREADS=1 in the caller's environment, one torch thread in new threads."""
    distributed = pytest.importorskip("dask.distributed")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)

    def new_thread_count() -> int:
        seen = {}
        t = threading.Thread(target=lambda: seen.setdefault("n", torch.get_num_threads()))
        t.start()
        t.join()
        return seen["n"]

    try:
        fresh = new_thread_count()
        with (
            distributed.LocalCluster(
                n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            res = fit_many(
                _toy.problems(2),
                _toy.build,
                executor=client,
                seed=0,
                threads_per_worker=1,
                fit_kwargs={"steps": 2},
                num_samples=5,
                progress=False,
            )
        assert list(res.table["status"]) == ["ok", "ok"]
        assert "MKL_NUM_THREADS" not in os.environ
        assert torch.get_num_threads() == 2
        assert new_thread_count() == fresh
    finally:
        torch.set_num_threads(before)


class _StandInRay:
    """The part of the ``ray`` module RayRunner uses, without starting Ray."""

    def __init__(self, fail_resources: bool = False) -> None:
        self.up = False
        self.fail_resources = fail_resources

    def is_initialized(self) -> bool:
        return self.up

    def init(self, **kwargs) -> None:
        self.up = True

    def shutdown(self) -> None:
        self.up = False

    def cluster_resources(self) -> dict:
        if self.fail_resources:
            raise ConnectionError("GCS unreachable")
        return {"CPU": 4}


def test_a_ray_runner_that_fails_after_starting_gives_its_count_back(monkeypatch):
    """A failure reading the cluster's resources after the call was counted kept the instance
    up for good: no later call shut it down (review of 2026-12-03)."""
    from bayesphys.distributed import _ray_runner

    ray = _StandInRay(fail_resources=True)
    monkeypatch.setattr(_ray_runner, "_import", lambda *a: ray)
    with pytest.raises(ConnectionError):
        _ray_runner.RayRunner(1, 2)
    assert _ray_runner._ray_users == 0 and not ray.up
    ray.fail_resources = False
    runner = _ray_runner.RayRunner(1, 2)
    runner.close()
    assert _ray_runner._ray_users == 0 and not ray.up


def test_a_remote_dask_worker_with_the_callers_pid_still_gets_the_thread_limit(monkeypatch):
    """In-process workers were told apart by pid alone: a worker in another container whose
    pid equals the caller's never got threads_per_worker (review of 2026-12-03)."""
    from bayesphys.distributed import _pool_runners

    pytest.importorskip("dask.distributed")

    class Client:
        __module__ = "distributed.client"

        def __init__(self) -> None:
            self.limited = None

        def scheduler_info(self) -> dict:
            return {"workers": {"tcp://10.0.0.7:1": {}, "tcp://10.0.0.8:1": {}}}

        def run(self, fn, *args, workers=None):
            if fn is _pool_runners._process_identity:
                return {
                    "tcp://10.0.0.7:1": ("elsewhere-0000", os.getpid()),
                    "tcp://10.0.0.8:1": _pool_runners._process_identity(),
                }
            self.limited = workers
            return {}

    client = Client()
    _pool_runners._dask_runner(client, None, 1)
    assert client.limited == ["tcp://10.0.0.7:1"]


def test_the_dask_runner_works_with_a_client_that_is_not_the_default(dask_client):
    """fit_many's own cluster's client is not the process default, and as_completed looked
    the default up: every executor="dask" run without a client of the user's failed with
    "No clients found" (caught by the slow suite, 2026-12-03)."""
    import dask.distributed

    from bayesphys.distributed._pool_runners import DaskRunner

    with pytest.raises(ValueError):
        dask.distributed.default_client()
    events = sorted(DaskRunner(dask_client, None, 1).run(abs, [-1, -2]))
    assert events == [(0, True, 1), (1, True, 2)]


def _ray_processes() -> dict[str, str]:
    """This process's Ray children (``gcs_server``, ``raylet``) -> their state letter."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == os.getpid() and name in ("gcs_server", "raylet"):
            out[name] = state
    return out


@pytest.mark.slow  # starts a local Ray instance: ~10 s
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")
def test_a_shared_ray_instance_outlives_the_thread_that_started_it():
    """Ray's processes die with the thread that started them (a parent-death signal): a call
    in a thread that ended first took the instance down under the other call's tasks, and Ray
    ended the whole process a minute later (the ray test above failed 2 times in 6)."""
    import time

    ray = pytest.importorskip("ray")
    from bayesphys.distributed import RayRunner

    assert not ray.is_initialized()
    first: list = []
    starter = threading.Thread(target=lambda: first.append(RayRunner(1, 1)))
    starter.start()
    starter.join()  # the thread that started the instance has ended
    time.sleep(2.0)
    states = _ray_processes()  # "Z": ended, not yet reaped
    if set(states) != {"gcs_server", "raylet"} or not all(s in "SR" for s in states.values()):
        first[0].close()  # before anything asks the dead instance (Ray would end the process)
        pytest.fail(f"the Ray instance ended with the thread that started it: {states}")
    second = RayRunner(1, 1)  # shares it
    try:
        first[0].close()
        out = list(second.run(lambda x: x + 1, [1, 2]))
        assert sorted(v for _, ok, v in out if ok) == [2, 3], out
    finally:
        second.close()
    assert not ray.is_initialized()
