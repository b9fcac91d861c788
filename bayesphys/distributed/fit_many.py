r"""``fit_many``: fit many independent inverse problems on an executor, collect one InferenceData.

For problems :math:`p_1, \dots, p_N` with ids :math:`i_1, \dots, i_N`, each task runs

.. code-block:: python

    seed_everything(s_k)                      # s_k = problem_seed(seed, i_k)
    model = build(p_k)                        # or build(p_k, seed=s_k) if build takes seed=
    fit = model.fit(**fit_kwargs)             # -> FitResult
    post = model.posterior(**posterior_kwargs)  # -> Posterior, event shape E
    idata_k = post.to_inference_data(      # the draws' own stream:
        num_samples=S, num_chains=C, seed=stream_seed(s_k, "fit_many/export"), name=name
    )

and the per-problem groups are stacked along a new ``problem_dim`` of length :math:`N_{ok}`
(the problems that succeeded): a posterior variable of shape ``[C, S, *E]`` becomes
``[C, S, N_ok, *E]`` with dims ``(chain, draw, problem_dim, ...)``; non-sample groups
(``observed_data``, ``constant_data``) become ``[N_ok, ...]``. The per-problem seed depends only
on ``seed`` and the problem id, so the numbers equal a sequential loop with the same seeds,
whatever the executor and the completion order. The base seed (drawn at random for
``seed=None``) is returned as ``FitManyResult.seed`` and in the table column ``base_seed``:
passing it back as ``seed=`` reproduces the run.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .._checks import check_bool, check_int, require
from .._progress import progress_bar
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning, BayesphysUserWarning
from ._combine import CombineError, FitManyResult, _combine, _table
from ._problem_task import ProblemTask, _check_seed, problem_seed, run_problem
from ._records import (
    _build_name,
    _read,
    _read_meta,
    _same_run,
    _settings_key,
    _stem,
    _stem_on_disk,
    _sweep_stale_temporaries,
    _write,
)

__all__ = [
    "CombineError",
    "FitManyResult",
    "ProblemTask",
    "fit_many",
    "problem_seed",
    "run_problem",
]


def _normalise(
    problems: Iterable[Any] | Mapping[Any, Any], files: bool = True
) -> list[tuple[Any, Any]]:
    """``[(id, problem)]``; ids must differ as labels and, with ``files`` (an out folder), as
    file stems compared without case (one file on a case-insensitive disk)."""
    if isinstance(problems, (str, bytes)):
        # iterable, so each character was a problem: every build failed, one row per letter
        raise TypeError(
            "problems: expected a mapping id -> problem or an iterable of problems, received "
            f"{type(problems).__name__} {problems[:40]!r}; pass [problem] for a single one"
        )
    if hasattr(problems, "columns") and hasattr(problems, "iterrows"):
        # a pandas DataFrame iterates over its column labels: each label became a problem
        raise TypeError(
            "problems: expected a mapping id -> problem or an iterable of problems, received "
            f"a {type(problems).__name__}, whose iteration gives its column labels "
            f"{list(problems.columns)[:5]!r}; pass one problem per row as a dict, e.g. "
            "dict(df.iterrows()) (id = the row's index label, problem = the row as a Series)"
        )
    if isinstance(problems, Mapping):
        items = list(problems.items())
    else:
        try:
            items = list(enumerate(problems))
        except TypeError as err:
            raise TypeError(
                "problems: expected a mapping id -> problem or an iterable of problems, "
                f"received {type(problems).__name__}"
            ) from err
    stems: dict[str, Any] = {}
    for pid, _ in items:
        _refuse_undecoded(pid)
        s = _stem(pid).casefold() if files else str(pid)
        if s in stems:
            what = f"file stem {_stem(pid)!r}, compared without case" if files else f"label {s!r}"
            raise ValueError(
                f"problems: ids {stems[s]!r} and {pid!r} collide ({what}); use distinct ids"
            )
        stems[s] = pid
    return items


def _refuse_undecoded(problem_id: Any) -> None:
    """Refuse an id holding a surrogate character: the bytes of a file name that
    ``os.listdir`` / ``Path.glob`` could not decode (kept as ``U+DC80`` .. ``U+DCFF``). Its seed
    could not be hashed (a bare UnicodeEncodeError, with an out folder or without) and
    xarray cannot read such a coordinate back."""
    text = str(problem_id)
    bad = next((c for c in text if "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        raise ValueError(
            f"problems: id {problem_id!r} holds the surrogate character {bad!r}, the "
            "undecodable byte of a file name (not valid in the file system's encoding, "
            f"{sys.getfilesystemencoding()}); decode the name first, e.g. "
            "os.fsencode(name).decode('utf-8', 'replace')"
        )


def _forget(out_dir: Path, problem_id: Any) -> None:
    """Remove ``problem_id``'s files from ``out_dir`` (best effort: the disk may be failing)."""
    stem = _stem_on_disk(out_dir, problem_id)
    for ext in ("json", "nc"):
        try:
            (out_dir / f"{stem}.{ext}").unlink(missing_ok=True)
        except OSError:
            pass


def _result(
    records: dict,
    items: list,
    problem_dim: str,
    runner_name: str,
    workers,
    t0: float,
    base,
) -> FitManyResult:
    """The :class:`FitManyResult` of ``records`` (``idata`` still ``None``), in input order."""
    import pandas as pd

    ordered = [records[pid] for pid, _ in items if pid in records]
    for r in ordered:  # records written before warnings were kept have none
        r["warnings"] = list(r.get("warnings") or [])
    per_problem = {r["id"]: r["groups"] for r in ordered if r["status"] == "ok" and r["groups"]}
    table = _table(ordered, problem_dim)
    table["warnings"] = pd.Series([r["warnings"] for r in ordered], index=table.index, dtype=object)
    return FitManyResult(
        idata=None,
        table=table,
        per_problem=per_problem,
        executor=runner_name,
        workers=workers,
        seconds=time.perf_counter() - t0,
        seed=base,
    )


def _warn_summary(table: Any) -> None:
    """One warning in the caller for the problems that failed (their errors and tracebacks are
    in ``table["error"]`` / ``table["traceback"]``; a run whose every problem failed returned
    ``idata=None`` without a word) and one for those whose build / fit / posterior warned (the
    warnings themselves are in ``table["warnings"]``)."""
    bad = (table["status"] != "ok").to_numpy()
    failed = table.index[bad]
    if len(failed):
        # as a Python value: integer ids (a list of problems) sit in an int64 index, whose
        # scalars numpy 2 shows as "np.int64(1)"
        pid = failed[:1].tolist()[0]
        error = str(table["error"].to_numpy()[bad][0])  # by position: ids may be tuples
        if len(error) > 160:
            error = error[:157] + "..."
        warnings.warn(
            f"fit_many: {len(failed)} of {len(table)} problems failed (first, {pid!r}: "
            f"{error}); result.failed lists them and result.table's 'error' and 'traceback' "
            "columns say why",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    warned = [w for w in table["warnings"] if w]
    if not warned:
        return
    first = warned[0][0]
    if len(first) > 160:
        first = first[:157] + "..."
    warnings.warn(
        f"fit_many: {len(warned)} of {len(table)} problems warned (first: {first}); see "
        "result.table['warnings'] for each problem's warnings",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )


def fit_many(
    problems: Iterable[Any] | Mapping[Any, Any],
    build: Callable[..., Any],
    *,
    executor: Any = None,
    out: str | Path | None = None,
    progress: bool = True,
    problem_dim: str = "problem",
    seed: int | None = None,
    threads_per_worker: int | None = 1,
    max_workers: int | None = None,
    num_samples: int | None = None,
    num_chains: int | None = None,
    name: str | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    posterior_kwargs: Mapping[str, Any] | None = None,
    export: Callable[..., Any] | None = None,
    retry_failed: bool = True,
) -> FitManyResult:
    r"""Fit ``build(problem)`` for every problem on ``executor``; stack posteriors by problem.

    Parameters
    ----------
    problems
        a mapping ``id -> problem`` or an iterable (ids ``0..N-1``); a pandas
        ``DataFrame``, which iterates over its column labels, is refused (``TypeError``;
        ``dict(df.iterrows())`` gives one problem per row). Problems and ``build`` must be
        picklable for process/cluster executors (module-level functions and
        classes, not lambdas). An id holding a surrogate character, the undecodable byte of
        a file name (``Path.stem`` of a name not valid in the file system's encoding), is
        refused (``ValueError``). Any hashable id works here (tuples too: the ``out`` records
        name files by a hash); :func:`~bayesphys.save_netcdf` of the stacked ``idata`` needs
        string or number ids (a tuple coordinate is a ``ValueError`` naming it).
    build
        ``build(problem) -> model`` (or ``build(problem, seed=s)``) where the model has
        ``fit(**fit_kwargs) -> FitResult`` and ``posterior(**posterior_kwargs) -> Posterior``.
    executor
        ``None``/``"local"`` (spawned processes), ``"sequential"``, ``"ray"``,
        ``"dask"``, or an executor/client/pool object or a ``Runner`` (see :mod:`.executors`;
        objects passed in are left open). Checked before anything is read or started.
    out
        directory; each finished problem is written there as ``<id>.nc`` (InferenceData) and
        ``<id>.json`` (its table row) as soon as it completes, and problems already finished
        there are loaded instead of refitted (failed ones are retried if ``retry_failed``);
        files written by another ``build``, other settings (``fit_kwargs``,
        ``posterior_kwargs``, ``num_samples``, ``num_chains``, ``name``, ``export``) or, when
        ``seed`` is given, another seed are refitted.
        A problem whose ``<id>.json`` or ``<id>.nc`` is missing or cannot be read (cut short
        by a killed run, damaged by a disk error) counts as not finished, whatever
        ``retry_failed``: it is fitted again like a new problem (its row has ``resumed``
        False and says nothing of the damaged file) and both files are overwritten; the
        unreadable file is not kept. Each file is written to a temporary file in ``out`` and
        renamed into place, the ``.json`` last, so a crash leaves no record that looks finished
        without its draws; temporary files that a killed writer on this machine left behind
        are removed at the start of the next call (those of live processes and of other
        machines sharing ``out`` are left alone). A problem that finished but could not be
        written keeps its draws in the result when the disk failed (``OSError``: full,
        read-only, quota; the table's ``write_error`` says so) and its files in ``out`` are
        removed, so a rerun fits it again; when its output itself cannot be written (e.g. an
        attribute netCDF refuses) it counts as failed and its record in ``out`` says so (a
        rerun retries it with ``retry_failed``).
    seed
        base seed; problem ``i`` uses ``s_i = problem_seed(seed, i)`` for the
        torch/numpy/python RNGs before ``build`` (and ``build(problem, seed=s_i)``); the exported
        draws use ``stream_seed(s_i, "fit_many/export")``, a stream of their own (with ``s_i``
        itself their normals were the numbers ``build`` / ``fit`` drew). ``None`` draws a random
        32-bit base seed. Either way it is recorded as ``result.seed``, in the table column
        ``base_seed`` and in each ``<id>.json``; passing it back as ``seed=`` reproduces the run.
        On an executor that runs tasks as threads of this process (a ``ThreadPoolExecutor``)
        the global streams are shared by the tasks running at once: only a model that draws
        from generators of its own (seeded through ``build(problem, seed=s)``) repeats there.
    threads_per_worker
        torch/OpenMP/BLAS threads in each task (``None``: leave as is).
    max_workers
        size of pools/clusters started here (default: all cores).
    num_samples, num_chains, name
        passed to ``Posterior.to_inference_data`` (default 200,
        1, ``"u"``; a :class:`~bayesphys.SamplePosterior` given neither count exports its
        stored chains as they are, given either it exports that many of its stored draws);
        with ``export`` they do not apply (``export`` makes the draws) and giving one is
        refused (``ValueError``). A ``name`` holding ``/`` or equal to ``chain``, ``draw`` or
        ``problem_dim`` is refused (``ValueError``) before anything is fitted.
    problem_dim
        the name of the stacked dimension (default ``"problem"``): not ``chain``, ``draw``,
        nor holding ``/`` (netCDF reads it as a group path; ``ValueError``).
    export
        optional ``export(model, posterior, seed) -> InferenceData`` (``seed``: the draws'
        seed above) replacing the default
        export, e.g. to add named parameter draws (``D``, ``rho``) or ``observed_data``.

    Returns
    -------
    FitManyResult
        ``idata`` (posterior ``u`` of shape ``[C, S, N_ok, *E]``, dims
        ``(chain, draw, problem_dim, ...)``), ``table`` (one row per problem, failures
        included) and ``seed`` (the base seed). The table's ``warnings`` column lists, per
        problem, the distinct warnings its build / fit / posterior / export raised
        (``"Category: message"``; captured in the worker, so they show even where a worker's
        output does not reach the caller, e.g. Ray); when any problem warned, one
        ``UserWarning`` in the caller says how many. Records written before this column
        existed read as no warnings.

    Raises
    ------
    CombineError
        when the finished problems' results cannot be stacked (a group, variable,
        shape or coordinate differs between problems); it names the problems and what differs,
        and its ``result`` holds ``per_problem`` and ``table`` (``idata=None``).
    Exception
        Any exception that stops the loop over problems (the runner itself failing, Ctrl-C)
        propagates with a ``partial_result`` attribute: the :class:`FitManyResult`
        (``idata=None``) of the problems finished or resumed so far, so they are not lost
        even without ``out``.
    """

    from .executors import Runner, _check_executor, resolve_runner

    progress = check_bool("progress", progress)
    retry_failed = check_bool("retry_failed", retry_failed)  # "no" is truthy: it retried
    items = _normalise(problems, files=out is not None)
    if not callable(build):
        raise TypeError(f"build: expected a callable, received {type(build).__name__}")
    if export is not None and not callable(export):
        raise TypeError(f"export: expected a callable or None, received {type(export).__name__}")
    if not isinstance(problem_dim, str):
        raise TypeError(f"problem_dim: expected a str, received {type(problem_dim).__name__}")
    if not problem_dim or problem_dim in ("chain", "draw"):
        raise ValueError(
            "problem_dim: expected a dimension name other than 'chain' and 'draw', received "
            f"{problem_dim!r}"
        )
    if "/" in problem_dim:  # the stacked result could not be saved (netCDF reads a group path)
        raise ValueError(
            "problem_dim: expected a name without '/' (netCDF and DataTree read it as a group "
            f"path), received {problem_dim!r}"
        )
    for arg, value in (
        ("fit_kwargs", fit_kwargs),
        ("posterior_kwargs", posterior_kwargs),
    ):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{arg}: expected a mapping or None, received {type(value).__name__}")
    _check_executor(executor)
    if export is not None:
        given = {"num_samples": num_samples, "num_chains": num_chains, "name": name}
        given = {k: v for k, v in given.items() if v is not None}
        if given:  # export() makes the draws: these settings were silently ignored
            raise ValueError(
                f"{', '.join(given)}: do not apply with export= (export(model, posterior, "
                f"seed) makes the draws and names them); set them in export, received "
                + ", ".join(f"{k}={v!r}" for k, v in given.items())
            )
    counts_given = num_samples is not None or num_chains is not None
    num_samples = check_int("num_samples", 200 if num_samples is None else num_samples, minimum=1)
    num_chains = check_int("num_chains", 1 if num_chains is None else num_chains, minimum=1)
    name = "u" if name is None else name
    if not isinstance(name, str) or not name:
        # refused by every problem's export otherwise, after all the fitting
        raise TypeError(f"name: expected a non-empty string, received {name!r}")
    if export is None and ("/" in name or name in ("chain", "draw", problem_dim)):
        # as above: every problem failed in its export (or the stacking failed) after its fit
        raise ValueError(
            "name: expected a variable name without '/' and other than 'chain', 'draw' and "
            f"problem_dim {problem_dim!r} (dimensions of the result), received {name!r}"
        )
    if threads_per_worker is not None:
        threads_per_worker = check_int("threads_per_worker", threads_per_worker, minimum=1)
    if max_workers is not None:
        max_workers = check_int("max_workers", max_workers, minimum=1)
    # a drawn base seed is returned (result.seed, table, <id>.json) so the run can be repeated
    base = secrets.randbits(32) if seed is None else _check_seed(seed)
    if out is not None and (not isinstance(out, str | os.PathLike) or not os.fspath(out)):
        # an int failed in pathlib without the argument's name; "" wrote into the working folder
        raise TypeError(f"out: expected a folder path (str or Path) or None, received {out!r}")
    out_dir = Path(out).expanduser() if out is not None else None
    if out_dir is not None:
        # before any fit (every record was then written as an error, its draws dropped, after
        # all the fitting time)
        require("h5netcdf", "h5netcdf", "out= (per-problem netCDF files; or pass out=None)")
        if out_dir.exists() and not out_dir.is_dir():  # mkdir's bare FileExistsError before
            raise ValueError(f"out: expected a folder, received the file {out}")
        out_dir.mkdir(parents=True, exist_ok=True)
        _sweep_stale_temporaries(out_dir)  # left by a writer killed before its rename

    t0 = time.perf_counter()
    build_name = _build_name(build)
    # what shapes each record: passed to every task and fingerprinted for the resume check
    shaping = dict(
        fit_kwargs=dict(fit_kwargs or {}),
        posterior_kwargs=dict(posterior_kwargs or {}),
        num_samples=num_samples,
        num_chains=num_chains,
        name=name,
        export=export,
    )
    if counts_given:  # a SamplePosterior's stored draws are then picked (a default run's
        # fingerprint stays as it was)
        shaping["keep_stored_chains"] = False
    records: dict[Any, dict[str, Any]] = {}
    todo: list[ProblemTask] = []
    keys: dict[Any, str] = {}
    for pid, prob in items:
        # the problem's data is part of the fingerprint: a cohort regenerated with other data
        # into the same folder is refitted, not resumed
        settings = keys[pid] = _settings_key(**shaping, problem=prob) if out_dir else ""
        if out_dir is not None:
            # a record written with another seed or builder is stale: fit the problem again
            want = problem_seed(base, pid) if seed is not None else None
            done = _read(out_dir, pid, seed=want, build=build_name, settings=settings)
            if done is not None:
                done["resumed"] = True
                records[pid] = done
                continue
            if not retry_failed:
                # keep a failure on record; unreadable: fit the problem again, as _read does
                rec = _read_meta(out_dir / f"{_stem_on_disk(out_dir, pid)}.json")
                if (
                    rec is not None
                    # an ok record that _read refused has its .nc missing or unreadable
                    and rec.get("status") != "ok"
                    and str(rec.get("id")) == str(pid)  # not another id with the same file stem
                    and _same_run(rec, want, build_name, settings)
                ):
                    rec.update(id=pid, groups=None, resumed=True)
                    records[pid] = rec
                    continue
        todo.append(
            ProblemTask(
                problem_id=pid,
                problem=prob,
                build=build,
                seed=None,  # set below, once the base seed is settled
                threads=threads_per_worker,
                **{k: dict(v) if isinstance(v, dict) else v for k, v in shaping.items()},
            )
        )

    if seed is None:
        # a resumed run keeps the base seed its records were fitted with (when they agree), so
        # result.seed repeats the whole run; otherwise the drawn one
        bases = {rec.get("base_seed") for rec in records.values()}
        if len(bases) == 1 and None not in bases:
            base = _check_seed(bases.pop())
        elif len(bases) > 1:
            warnings.warn(
                f"seed: the resumed records were fitted with {len(bases)} different base seeds; "
                "result.seed repeats only the problems fitted now (each row's base_seed says "
                "which seed fitted it)",
                BayesphysRuntimeWarning,
                stacklevel=user_stacklevel(),
            )
    for task in todo:
        task.seed = problem_seed(base, task.problem_id)

    # what ran the fits: no runner when there was nothing to fit (an empty problem set
    # reported "none (all resumed)", though nothing was resumed either)
    runner_name = "none (all resumed)" if records else "none (no problems)"
    workers = None
    if todo:
        try:
            runner = resolve_runner(
                executor, max_workers=max_workers, threads_per_worker=threads_per_worker
            )
        except BaseException as err:  # the runner did not start: keep what was resumed
            # its executor is no runner either: not "none (all resumed)" with problems unfitted
            err.partial_result = _result(
                records, items, problem_dim, "none (the executor did not start)", None, t0, base
            )
            raise
        runner_name, workers = runner.name, runner.workers
        bar = progress_bar(total=len(todo), desc="fit_many", progress=progress)
        try:
            for i, ok, value in runner.run(run_problem, todo):
                task = todo[i]
                if ok:
                    rec = value
                else:  # the executor failed to run the task (worker died, pickling, ...)
                    rec = {
                        "id": task.problem_id,
                        "seed": task.seed,
                        "status": "error",
                        "groups": None,
                        "error": f"{type(value).__name__}: {value}",
                        "traceback": "".join(traceback.format_exception(value)),
                    }
                rec["resumed"] = False
                rec.setdefault("warnings", [])  # a task the executor failed to run raised none
                rec["build"] = build_name
                rec["settings"] = keys[task.problem_id]  # other settings or data: refit
                rec["base_seed"] = base  # the only way back to a seed drawn for seed=None
                records[task.problem_id] = rec
                if out_dir is not None:
                    try:
                        _write(out_dir, rec)
                    except Exception as err:  # noqa: BLE001 - e.g. an attribute netCDF refuses
                        # the fit is not on disk: its record there says failed (a rerun fits it
                        # again) and the other problems go on instead of being abandoned
                        msg = f"writing to {out_dir}: {type(err).__name__}: {err}"
                        failed = dict(
                            status="error", groups=None, error=msg, traceback=traceback.format_exc()
                        )
                        if isinstance(err, OSError):
                            # the disk failed (full, read-only, quota), not the fit: its draws
                            # stay in this call's result, the table notes the failed write, and
                            # no record is left in out (a rerun fits it, whatever retry_failed)
                            rec["write_error"] = msg
                            _forget(out_dir, task.problem_id)
                        else:  # the fit's own output cannot be written (nor combined safely)
                            rec.update(failed)
                            try:
                                _write(out_dir, rec)
                            except Exception:  # noqa: BLE001, S110 - the row stays in the table
                                pass
                bar.update(1)
                if rec["status"] != "ok":
                    bar.set_postfix(
                        failed=sum(r["status"] != "ok" for r in records.values()), refresh=False
                    )
        except BaseException as err:
            # the runner itself failed or the call was interrupted (Ctrl-C): the problems that
            # finished (and those resumed) are kept on the exception, not lost with it
            err.partial_result = _result(
                records, items, problem_dim, runner_name, workers, t0, base
            )
            raise
        finally:
            bar.close()
            if not isinstance(executor, Runner):  # a runner passed in stays open for reuse
                runner.close()

    result = _result(records, items, problem_dim, runner_name, workers, t0, base)
    _warn_summary(result.table)
    try:
        result.idata = _combine(result.per_problem, problem_dim)
    except CombineError as err:
        err.result = result  # nothing fitted is lost: the per-problem results and the table
        raise
    return result
