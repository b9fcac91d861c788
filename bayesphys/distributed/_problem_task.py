"""One problem of ``fit_many``: its seed, the task a worker receives and what the worker runs.

:func:`problem_seed` derives problem ``i``'s seed from the base seed and the id alone, so the
numbers do not depend on the executor or the completion order; :func:`run_problem` builds,
fits, takes the posterior and exports it, and returns a record instead of raising.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._checks import check_seed, stream_seed
from ._records import _groups
from ._task_checks import check_fit_result, check_model, check_posterior
from ._warning_capture import _captured_warnings

__all__ = ["ProblemTask", "problem_seed", "run_problem"]


def _check_seed(seed: Any) -> int:
    """``seed`` as a Python int in torch's seed range ``[-2**63, 2**64 - 1]`` (numpy integers
    too, not bools): :func:`bayesphys._checks.check_seed`, as every other seed of the package."""
    return check_seed("seed", seed)


#: the default ``repr`` of an object, ``<... at 0x7f...>``: an address that changes per run
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")


def _unequal_to_itself(value: Any) -> bool:
    """Whether ``value`` (or an item of a tuple ``value``) is unequal to itself: a NaN."""
    if isinstance(value, tuple):
        return any(_unequal_to_itself(v) for v in value)
    try:
        return bool(value != value)
    except Exception:  # an array-like id, or a comparison that raises: left to str()
        return False


def problem_seed(seed: int, problem_id: Any) -> int:
    """Deterministic 63-bit seed from the base ``seed`` and ``str(problem_id)`` (BLAKE2b).

    An id whose ``str`` holds a memory address (an object without a ``__str__`` / ``__repr__``
    of its own, ``<... at 0x...>``) is a ``TypeError``: its seed would change from run to
    run. So is an id unequal to itself, a NaN (or a tuple holding one), a ``ValueError``: its
    ``str`` is stable, but ``fit_many`` finds each problem's record by its id, and a NaN
    that came back from a worker equals no id (the problem's result was lost). Use strings,
    numbers or tuples of them as ids; ``None`` is taken as its ``str``, ``"None"``.

    ``seed`` in torch's range ``[-2**63, 2**64 - 1]``, read modulo ``2**64`` as torch reads
    it (``-1`` and ``2**64 - 1`` give the same seeds)."""
    if _unequal_to_itself(problem_id):
        raise ValueError(
            f"problem_id: expected an id equal to itself, received {problem_id!r} (a NaN "
            "equals no other value, so its problem's record could not be found by it); use "
            "a string, a finite number or a tuple of them as the id"
        )
    text = str(problem_id)
    if _ADDRESS.search(text):
        raise TypeError(
            f"problem_id: str() of the id gives {text!r}, which holds a memory address that "
            "changes from run to run, so its seed would not reproduce; use a string, a number "
            "or a tuple of them as the id"
        )
    # modulo 2**64, as torch maps a negative seed: -1 and 2**64 - 1 seed the same streams
    # everywhere else, so they give each problem the same seed here too
    base = _check_seed(seed) % 2**64
    digest = hashlib.blake2b(f"{base}/{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass
class ProblemTask:
    """Everything one worker needs (picklable when ``build``/``problem`` are)."""

    problem_id: Any
    problem: Any
    build: Callable[..., Any]
    seed: int
    threads: int | None = 1
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    posterior_kwargs: dict[str, Any] = field(default_factory=dict)
    export: Callable[..., Any] | None = None
    num_samples: int = 200
    num_chains: int = 1
    name: str = "u"
    #: neither count given to ``fit_many``: a posterior of stored draws (``SamplePosterior``)
    #: exports its chains as they are, any other draws ``num_chains x num_samples``
    keep_stored_chains: bool = True


#: the fields of a :class:`ProblemTask` that are each problem's own; the others (``build``,
#: ``export``, the settings) are the same for every task of one ``fit_many`` call
_OWN_FIELDS = ("problem_id", "problem", "seed")
_SHARED_FIELDS = tuple(f for f in ProblemTask.__dataclass_fields__ if f not in _OWN_FIELDS)


def _same_setting(a: Any, b: Any) -> bool:
    """Whether two tasks' values of a shared field are the same objects (dicts: the same keys
    with the same value objects, as ``fit_many`` gives every task its own copy of the dict)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(a[k] is b[k] for k in a)
    return a is b


def split_shared(tasks: Sequence[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """``(shared, own)`` when ``tasks`` are :class:`ProblemTask` s that share their ``build``,
    ``export`` and settings (the same objects, as ``fit_many`` makes them): ``shared`` those
    fields once, ``own[k]`` task ``k``'s id, problem and seed; ``None`` otherwise (or for no
    task). A runner sends ``shared`` once instead of a copy inside every task (a builder or
    keywords carrying large inputs were pickled and stored once per problem: a cohort held
    ``N`` copies in Ray's object store or Dask's scheduler); :func:`join_shared` rebuilds the
    task in the worker."""
    if not tasks or not all(type(t) is ProblemTask for t in tasks):
        return None
    first = tasks[0]
    for t in tasks[1:]:
        if not all(_same_setting(getattr(t, f), getattr(first, f)) for f in _SHARED_FIELDS):
            return None
    shared = {f: getattr(first, f) for f in _SHARED_FIELDS}
    own = [{f: getattr(t, f) for f in _OWN_FIELDS} for t in tasks]
    return shared, own


def join_shared(shared: dict[str, Any], own: dict[str, Any]) -> ProblemTask:
    """The :class:`ProblemTask` of :func:`split_shared`'s ``shared`` and one task's ``own``."""
    return ProblemTask(**shared, **own)


def _accepts(fn: Callable[..., Any], kw: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == kw or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _summary(fit: Any) -> dict[str, Any]:
    hist = list(getattr(fit, "loss_history", []) or [])
    return {
        "fit_seconds": float(getattr(fit, "seconds", float("nan"))),
        "converged": bool(getattr(fit, "converged", False)),
        "steps": int(getattr(fit, "steps", len(hist))),
        "final_loss": float(hist[-1]) if hist else float("nan"),
        "message": str(getattr(fit, "message", "")),
    }


def run_problem(task: ProblemTask) -> dict[str, Any]:
    """Run one task (build, fit, posterior, export); a failing task never raises, its error
    is returned. Anything but a :class:`ProblemTask` is refused (``TypeError``).

    Returns ``{"id", "seed", "status": "ok"|"error", "seconds", "worker", fit summary...,
    "groups": {group: xarray.Dataset} | None, "error", "traceback", "warnings"}``;
    ``"warnings"``: the distinct warnings the task raised (``"Category: message"``), captured
    instead of shown.
    """
    if not isinstance(task, ProblemTask):
        # failed with "'dict' object has no attribute 'problem_id'"
        raise TypeError(
            f"task: expected a ProblemTask (fit_many makes one per problem), received "
            f"{type(task).__name__}"
        )
    from ..inference_data import build_inference_data  # noqa: F401 - import check in workers
    from ._worker_threads import task_state

    t0 = time.perf_counter()
    rec: dict[str, Any] = {
        "id": task.problem_id,
        "seed": task.seed,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "groups": None,
        "error": None,
        "traceback": None,
    }
    # the caller's threads and random streams come back after the task (seed_everything
    # reseeds every CUDA generator too: a caller's initialised CUDA streams are put back as
    # well); tasks overlapping in a thread pool restore what the first of them found
    with task_state(task.threads), _captured_warnings() as caught:
        _run_task(task, rec)
    # the problem's own warnings, kept with its record (on Ray, whose workers' output is not
    # sent to the driver, and in process pools, the record is the only place they show)
    rec["warnings"] = list(dict.fromkeys(caught))
    rec["seconds"] = time.perf_counter() - t0
    return rec


def _run_task(task: ProblemTask, rec: dict[str, Any]) -> None:
    """Build, fit, posterior and export into ``rec`` (errors recorded, never raised)."""
    try:
        from .._process_state import seed_everything

        seed_everything(task.seed % 2**63)
        if _accepts(task.build, "seed"):
            model = task.build(task.problem, seed=task.seed)
        else:
            model = task.build(task.problem)
        model = check_model(task.build, model)
        fit_kwargs = dict(task.fit_kwargs)
        if "progress" not in fit_kwargs and _accepts(model.fit, "progress"):
            fit_kwargs["progress"] = False
        fit = model.fit(**fit_kwargs)
        check_fit_result(model, fit)
        post = model.posterior(**task.posterior_kwargs)
        # the draws get a stream of their own: seeded with task.seed itself, their normals were
        # the very numbers build / fit drew from the global generators (e.g. the data noise)
        draw_seed = stream_seed(task.seed, "fit_many/export")
        if task.export is not None:
            idata = task.export(model, post, draw_seed)
        else:
            from .._sample_posterior import SamplePosterior

            post = check_posterior(model, post)

            counts = dict(num_samples=task.num_samples, num_chains=task.num_chains)
            if task.keep_stored_chains and isinstance(post, SamplePosterior):
                counts = dict(num_samples=None, num_chains=None)  # its stored chains
            idata = post.to_inference_data(**counts, seed=draw_seed, name=task.name)
        rec.update(_summary(fit))
        rec["groups"] = {g: ds.load() for g, ds in _groups(idata).items()}
        rec["status"] = "ok"
    except Exception as err:  # noqa: BLE001 - one problem must not kill the batch
        rec["status"] = "error"
        rec["error"] = f"{type(err).__name__}: {err}"
        rec["traceback"] = traceback.format_exc()
