"""The Ray runner: one Ray task per problem, reserving ``threads_per_worker`` CPUs each.

A local Ray instance is shared by the ``fit_many`` calls running at once in this process: the
first starts it and the last to close shuts it down; an instance the caller started is left
running. A call outside the main thread starts it from a thread of its own that lives until
that shutdown: on Linux Ray's processes die with the *thread* that started them (their
parent-death signal), so an instance started in one call's thread died when that thread ended
while another call still used it, and Ray then ended the whole process ("Failed to connect to
GCS within 60 seconds").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._checks import check_int, check_real
from ._problem_task import join_shared, split_shared
from ._runner import Event, Runner, _import
from ._task_errors import _task_error
from ._worker_threads import limit_threads

__all__ = ["RayRunner"]

# fit_many calls in this process using the local Ray instance one of them started
_RAY_LOCK = threading.Lock()
_ray_users = 0
# set to let the thread that started that instance end (after its shutdown)
_ray_owner_done: threading.Event | None = None


def _start_owned(ray: Any, **kwargs: Any) -> threading.Event | None:
    """``ray.init(**kwargs)`` where Ray's processes outlive every fit_many call: in the main
    thread when called there (which lives as long as the process; Ray then also sets its SIGTERM
    handler, as it always did), else in a daemon thread that waits, alive, until the returned
    event is set (after ``ray.shutdown()``). An error of ``ray.init`` is raised here."""
    if threading.current_thread() is threading.main_thread():
        ray.init(**kwargs)
        return None
    done, started = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def own() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
            failure.append(err)
            started.set()
            return
        started.set()
        done.wait()

    threading.Thread(target=own, name="bayesphys-ray-owner", daemon=True).start()
    started.wait()
    if failure:
        raise failure[0]
    return done


class RayRunner(Runner):
    """Ray tasks reserving ``threads_per_worker`` CPUs (and ``num_gpus`` GPUs) each."""

    name = "ray"

    def __init__(self, threads: int | None, workers: int | None, num_gpus: float = 0.0):
        global _ray_users, _ray_owner_done
        # checked before Ray is started: threads=0 reserved one CPU and failed in every task,
        # workers=0 started Ray on every core, a negative num_gpus failed at each submission
        threads = None if threads is None else check_int("threads", threads, minimum=1)
        workers = None if workers is None else check_int("workers", workers, minimum=1)
        num_gpus = check_real("num_gpus", num_gpus, minimum=0.0)
        ray = _import("ray", "ray[default]")
        self.ray = ray
        self.started = False
        with _RAY_LOCK:
            # one local instance for the fit_many calls running at once in this process: the
            # first starts it and the last to close shuts it down (each call shutting down
            # what it started stopped the other calls' tasks; two calls both starting failed)
            if not ray.is_initialized():
                _ray_owner_done = _start_owned(
                    ray,
                    num_cpus=workers or os.cpu_count(),
                    include_dashboard=False,
                    # the workers' output stays on the workers: fit_many keeps each problem's
                    # warnings in its record (table["warnings"]) instead
                    log_to_driver=False,
                    configure_logging=False,
                )
                _ray_users = 0
                self.started = True
            elif _ray_users > 0:  # started by another fit_many still running: shared
                self.started = True
            if self.started:
                _ray_users += 1
        try:
            cpus = ray.cluster_resources().get("CPU", 1)
        except BaseException:
            self.close()  # counted above: a failure here kept the instance up for good
            raise
        if (threads or 1) > cpus:
            # every task would wait forever for CPUs the cluster does not have
            self.close()
            raise ValueError(
                f"threads_per_worker: each Ray task reserves {threads} CPUs but the cluster has "
                f"{cpus:g}: no task could ever be scheduled; lower threads_per_worker (or give "
                "Ray more CPUs: max_workers, or ray.init(num_cpus=...))"
            )
        self.workers = int(cpus) // max(1, threads or 1)
        self.threads = threads
        self.num_gpus = num_gpus

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Event]:
        tasks = list(tasks)
        ray = self.ray
        resources = dict(num_cpus=self.threads or 1, num_gpus=self.num_gpus)
        refs = {}
        split = split_shared(tasks)
        shared = None
        if split is not None:
            # fit_many's build, export and settings put in the object store once: passed inside
            # every task, each task stored its own copy (a builder carrying a 10 MB input took
            # 1 GB of the store for 100 problems, and 32 ms each to submit)
            try:
                shared = ray.put(split[0])
            except Exception:  # noqa: BLE001 - e.g. unpicklable: each task reports it below
                shared = None
        if shared is not None:
            remote = ray.remote(**resources)(_ray_call_shared)
            for i, own in enumerate(split[1]):
                try:
                    refs[remote.remote(fn, shared, own, self.threads)] = i
                except Exception as err:  # noqa: BLE001
                    yield i, False, _task_error(i, tasks[i], err, "could not be submitted: ")
        else:
            remote = ray.remote(**resources)(_ray_call)
            for i, task in enumerate(tasks):
                try:
                    refs[remote.remote(fn, task, self.threads)] = i
                except Exception as err:  # noqa: BLE001
                    yield i, False, _task_error(i, task, err, "could not be submitted: ")
        del shared  # the tasks hold the reference now: the store frees it after the last
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = refs[ref]
                try:
                    value = ray.get(ref)
                except Exception as err:  # noqa: BLE001
                    yield i, False, _task_error(i, tasks[i], err)
                else:
                    yield i, True, value

    def close(self) -> None:
        global _ray_users, _ray_owner_done
        if not self.started:
            return  # an instance the caller started: left running
        with _RAY_LOCK:
            self.started = False
            _ray_users -= 1
            if _ray_users == 0:
                try:
                    self.ray.shutdown()
                finally:
                    if _ray_owner_done is not None:  # its thread may end now
                        _ray_owner_done.set()
                        _ray_owner_done = None


def _ray_call(fn, task, threads):
    limit_threads(threads)
    return fn(task)


def _ray_call_shared(fn, shared, own, threads):
    """:func:`_ray_call` of the task :func:`~._problem_task.join_shared` rebuilds (``shared``
    comes out of the object store as this task's own copy)."""
    limit_threads(threads)
    return fn(join_shared(shared, own))
