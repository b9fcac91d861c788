"""Stacking the per-problem InferenceData of :func:`~bayesphys.distributed.fit_many` along a
problem dimension (with a named error when they do not stack), and the per-problem table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._repr import fields_repr


@dataclass
class FitManyResult:
    """Outcome of :func:`fit_many`; unpacks as ``idata, table = fit_many(...)``.

    Attributes
    ----------
    idata
        InferenceData whose groups carry ``problem_dim`` (successful problems only), or
        ``None`` when every problem failed.
    table
        :class:`pandas.DataFrame` indexed by problem id: ``seed, base_seed, status, seconds,
        fit_seconds, converged, steps, final_loss, message, error, traceback, worker, resumed,
        write_error, warnings`` (``warnings``: the distinct warnings each problem's task
        raised, ``"Category: message"`` strings; ``seed = problem_seed(base_seed, id)``;
        ``write_error``: why a problem that finished could not be written to ``out`` (the
        disk failed: its draws are still here, and a rerun fits it again), else ``None``;
        ``base_seed`` is that of the run that fitted the row, ``None`` for rows resumed from
        files written before it was recorded).
    per_problem
        problem id -> ``{group: xarray.Dataset}`` of each successful problem.
    executor
        name of the runner used; ``workers``: its worker count where known. No runner
        started: ``"none (no problems)"`` for an empty problem set, ``"none (all resumed)"``
        when every problem was resumed from ``out``, and, in the ``partial_result`` of a
        runner that failed to start, ``"none (the executor did not start)"``.
    seed
        the base seed of this call: the ``seed`` given; for ``seed=None``, that of the
        resumed records when they share one, else a drawn one. ``fit_many(..., seed=result.seed)``
        repeats the per-problem seeds and the draws (rows resumed from records of several base
        seeds keep theirs: see the table's ``base_seed``).
    """

    idata: Any
    table: Any
    per_problem: dict[Any, dict[str, Any]]
    executor: str = ""
    workers: int | None = None
    seconds: float = 0.0
    seed: int | None = None

    def __repr__(self) -> str:
        # counts, not one Dataset per problem (the repr grew with the cohort)
        try:
            status = list(self.table["status"])
            counts = {"problems": len(status), "ok": status.count("ok")}
            counts["failed"] = len(status) - counts["ok"]
        except Exception:  # a table without the column: a repr never fails
            counts = {"problems": len(self.per_problem)}
        return fields_repr(self, ("executor", "workers", "seconds", "seed"), **counts)

    def __iter__(self):
        yield self.idata
        yield self.table

    @property
    def failed(self) -> list[Any]:
        """Ids of problems that raised."""
        return list(self.table.index[self.table["status"] != "ok"])

    @property
    def ok(self) -> list[Any]:
        """Ids of problems that finished."""
        return list(self.table.index[self.table["status"] == "ok"])


class CombineError(ValueError):
    """The per-problem results cannot be stacked into one InferenceData (a group, variable,
    shape or coordinate differs between problems). The message names the problems and what
    differs; ``result`` is the :class:`FitManyResult` with ``idata=None``: its ``per_problem``
    and ``table`` keep every finished problem."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.result: FitManyResult | None = None


def _ids(ids: list[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _split(values: dict[Any, Any]) -> str:
    """``problem -> description`` as ``'desc' in problem(s) a, b; 'desc2' in c`` (largest first)."""
    by: dict[Any, list[Any]] = {}
    for pid, v in values.items():
        by.setdefault(v, []).append(pid)
    parts = sorted(by.items(), key=lambda kv: -len(kv[1]))
    return "; ".join(f"{v} in problem(s) {_ids(pids)}" for v, pids in parts)


def _labels(index: Any) -> str:
    if len(index) == 0:
        return "no labels"
    return f"{len(index)} labels, {index[0]!r} .. {index[-1]!r}"


def _mismatch(per_problem: dict[Any, dict[str, Any]], problem_dim: str) -> str | None:
    """What keeps the problems' groups from stacking along ``problem_dim``, naming the problems
    and the group, variable, shape or coordinate; ``None`` when they match."""
    ids = list(per_problem)
    groups = list(dict.fromkeys(g for i in ids for g in per_problem[i]))
    for g in groups:
        lacking = [i for i in ids if g not in per_problem[i]]
        if lacking:
            having = [i for i in ids if g in per_problem[i]]
            return f"group {g!r} is in problem(s) {_ids(having)} but missing from {_ids(lacking)}"
    for g in groups:
        dsets = {i: per_problem[i][g] for i in ids}
        for i, ds in dsets.items():
            if problem_dim in ds.dims or problem_dim in ds.variables:
                return (
                    f"problem_dim {problem_dim!r} is already a dimension or variable of group "
                    f"{g!r} (problem {i!r}); pass another problem_dim"
                )
        names = list(dict.fromkeys(v for ds in dsets.values() for v in ds.data_vars))
        for v in names:
            sig = {
                i: (
                    f"dims {ds[v].dims} shape {tuple(ds[v].shape)}"
                    if v in ds.data_vars
                    else "missing"
                )
                for i, ds in dsets.items()
            }
            if len(set(sig.values())) > 1:
                return f"variable {v!r} of group {g!r} differs: {_split(sig)}"
        first = ids[0]
        for name, index in dsets[first].indexes.items():
            differ = [
                i
                for i in ids[1:]
                if name not in dsets[i].indexes or not dsets[i].indexes[name].equals(index)
            ]
            if differ:
                other = dsets[differ[0]].indexes.get(name)
                return (
                    f"coordinate {name!r} of group {g!r} differs between problem {first!r} "
                    f"({_labels(index)}) and problem(s) {_ids(differ)} "
                    f"({_labels(other) if other is not None else 'absent'})"
                )
        for i in ids[1:]:
            extra = [n for n in dsets[i].indexes if n not in dsets[first].indexes]
            if extra:
                return (
                    f"coordinate {extra[0]!r} of group {g!r} is in problem {i!r} but not in "
                    f"problem {first!r}"
                )
        # a coordinate that indexes no dimension, of some problems only: xarray attached the
        # first problem's values to every problem (one problem's labels on another's draws)
        coords = list(dict.fromkeys(c for ds in dsets.values() for c in ds.coords))
        for c in coords:
            lacking = [i for i in ids if c not in dsets[i].coords]
            if lacking:
                having = [i for i in ids if c in dsets[i].coords]
                return (
                    f"coordinate {c!r} of group {g!r} is in problem(s) {_ids(having)} but "
                    f"missing from {_ids(lacking)}"
                )
    return None


def _combine(per_problem: dict[Any, dict[str, Any]], problem_dim: str):
    import pandas as pd
    import xarray as xr

    from ..inference_data import SAMPLE_GROUPS, assemble_groups

    if not per_problem:
        return None
    hint = "; the per-problem results are kept: error.result.per_problem and error.result.table"
    why = _mismatch(per_problem, problem_dim)
    if why is not None:
        raise CombineError(
            f"fit_many: cannot stack the problems' results along {problem_dim!r}: {why}{hint}"
        )
    ids = list(per_problem)
    # tuple ids stay labels (pandas made them a MultiIndex, refused with a name: the fits lost)
    index = pd.Index(ids, name=problem_dim, tupleize_cols=False)
    groups = {}
    for g in per_problem[ids[0]]:
        dsets = [per_problem[i][g] for i in ids]
        try:
            ds = xr.concat(dsets, dim=index, join="exact", combine_attrs="override")
        except (ValueError, TypeError, KeyError) as err:
            raise CombineError(
                f"fit_many: cannot stack group {g!r} of problems {_ids(ids)} along "
                f"{problem_dim!r}: {type(err).__name__}: {err}{hint}"
            ) from err
        lead = ["chain", "draw"] if g in SAMPLE_GROUPS and "chain" in ds.dims else []
        ds = ds.transpose(*lead, problem_dim, ...)
        groups[g] = ds
    return assemble_groups(groups)


_COLUMNS = [
    "seed",
    "base_seed",
    "status",
    "seconds",
    "fit_seconds",
    "converged",
    "steps",
    "final_loss",
    "message",
    "error",
    "traceback",
    "worker",
    "resumed",
    "write_error",
]


def _table(records: list[dict[str, Any]], problem_dim: str):
    import pandas as pd

    rows = [{c: r.get(c) for c in _COLUMNS} for r in records]
    index = pd.Index([r["id"] for r in records], name=problem_dim, tupleize_cols=False)
    table = pd.DataFrame(rows, index=index, columns=_COLUMNS)
    # Python ints (or None): a float column would round base seeds above 2**53
    table["base_seed"] = pd.Series([r.get("base_seed") for r in records], index=index, dtype=object)
    return table
