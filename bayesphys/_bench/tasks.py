"""Running a benchmark script's tasks.

:func:`script_module` loads a script as a module once per process, :func:`call_script` is a
picklable entry point to its functions for worker processes, and :func:`run_script_tasks` runs
its tasks in order, here or on worker processes, keeping the finished tasks' results in a
partial file when some fail or the run stops (:func:`_keep_task_results`)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._checks import check_int
from .commands import recorded_command, threading_info
from .results import _results_text, _warn_nonfinite, _write_or_keep_aside, partial_path

_SCRIPTS: dict[str, Any] = {}


def script_module(path: str) -> Any:
    """The module of the script at ``path``, loaded once per process (under a private name,
    so a script started as ``__main__`` or by ``bayesphys bench`` is reached the same way)."""
    key = str(Path(path).resolve())
    mod = _SCRIPTS.get(key)
    if mod is None:
        spec = importlib.util.spec_from_file_location(f"_bench_script_{Path(key).stem}", key)
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"path: no Python script at {key}")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _SCRIPTS[key] = mod
    return mod


def call_script(path: str, func: str, *args: Any, **kwargs: Any) -> Any:
    """Call the function ``func`` of the script at ``path`` (loaded once per process).

    A picklable entry point for worker processes: a ``functools.partial`` of this function
    reaches a benchmark script's function even when the script was started as ``__main__`` or
    loaded by ``bayesphys bench`` under another module name.
    """
    mod = script_module(path)
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise AttributeError(f"func: {mod.__file__} defines no function {func!r}")
    return fn(*args, **kwargs)


def run_script_tasks(
    path: str,
    func: str,
    tasks: list[Any],
    jobs: int = 1,
    *,
    argv: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[Any]:
    """``[func(task, **kwargs) for task in tasks]`` of the script at ``path``, in task order.

    ``jobs > 1`` runs them on that many worker processes with one thread each
    (:func:`bayesphys.distributed.resolve_runner` ``"local"``, through :func:`call_script`);
    ``jobs == 1`` runs them here, one thread. Each result is printed as one JSON line when it
    arrives. A failed task does not stop the others (it is reported on stderr when it fails);
    once all have run, a ``RuntimeError`` names the failed tasks (the first one's error
    chained). When tasks failed, or the run stopped (Ctrl-C), the finished tasks' results are
    kept: on the exception as ``results`` (task order, ``None`` for a task that failed or did
    not finish), and in ``<script>.partial.json`` in the temporary folder (``"partial": true``,
    ``"failed"`` and ``"finished"`` the tasks' ``repr``; ``"rows"`` the results, a result
    that is a list of rows extending them; an ablation script's ``--table`` prints them), which
    the error names; the pool is released. Its ``"command"`` is :func:`recorded_command` of
    ``argv``, the arguments the script parsed (default: this process's ``sys.argv[1:]``; a
    script's ``main(argv)`` passes its own); ``argv`` is not passed to ``func``. A rerun of the
    failed tasks alone (a script's ``--seeds`` ...) writes its own results file: the two are not
    merged.
    """
    import functools

    from ..distributed import resolve_runner

    jobs = check_int("jobs", jobs, minimum=1)
    fn = functools.partial(call_script, path, func, **kwargs)
    if jobs > 1:
        runner = resolve_runner("local", max_workers=int(jobs), threads_per_worker=1)
    else:
        runner = resolve_runner("sequential", threads_per_worker=1)
    out: list[Any] = [None] * len(tasks)
    done: list[int] = []
    failed: dict[int, BaseException] = {}
    try:
        with runner:  # released on any exit (an error, Ctrl-C)
            for i, ok, value in runner.run(fn, tasks):
                if not ok:  # the other tasks go on: their results are not thrown away
                    failed[i] = value
                    why = value.__cause__ if value.__cause__ is not None else value
                    print(
                        f"task {tasks[i]!r} FAILED: {type(why).__name__}: {why}",
                        file=sys.stderr,
                        flush=True,
                    )
                    continue
                out[i] = value
                done.append(i)
                print(json.dumps(value), flush=True)
    except BaseException as err:  # Ctrl-C, the pool failing: the finished results are kept
        err.results = out
        where = _keep_task_results(path, tasks, sorted(done), sorted(failed), out, argv)
        if where:
            print(f"{Path(path).name}: stopped by {type(err).__name__}; {where}", file=sys.stderr)
        raise
    if failed:
        names = ", ".join(repr(tasks[i]) for i in sorted(failed))
        where = _keep_task_results(path, tasks, sorted(done), sorted(failed), out, argv)
        err = RuntimeError(
            (f"task {names} failed" if len(failed) == 1 else f"tasks {names} failed")
            + (f"; {where}" if where else "")
        )
        err.results = out
        raise err from failed[min(failed)]
    return out


def _keep_task_results(
    path: str,
    tasks: list[Any],
    done: list[int],
    failed: list[int],
    out: list[Any],
    argv: Iterable[str] | None = None,
) -> str:
    """The results of the finished tasks ``done`` written to ``<script>.partial.json`` in the
    temporary folder (for :func:`run_script_tasks`; the command of ``argv``, the arguments the
    script parsed); where they are ("" when none finished)."""

    if not done:
        return ""
    rows: list[Any] = []
    for i in done:
        if isinstance(out[i], list):  # a task's list of rows
            rows.extend(out[i])
        else:
            rows.append(out[i])
    payload = {
        "command": recorded_command(path, argv),
        "threading": threading_info(),
        "partial": True,
        "failed": [repr(tasks[i]) for i in failed],
        "finished": [repr(tasks[i]) for i in done],
        "rows": rows,
    }
    target = partial_path(Path(path).stem, None)
    text, nonfinite = _results_text(payload)
    try:
        _write_or_keep_aside(target, text)
    except Exception as err:  # noqa: BLE001 - the run's own error is the one raised
        return f"the results of the {len(done)} finished task(s) could not be written ({err})"
    where = f"the results of the {len(done)} finished task(s) are in {target} (marked partial)"
    try:
        _warn_nonfinite(nonfinite)
    except Warning as warned:  # warnings as errors: the run's own error is the one raised
        where += f" ({warned})"
    return where
