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
