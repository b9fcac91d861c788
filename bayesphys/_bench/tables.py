"""Result rows and their Markdown tables.

A benchmark row (:func:`bench_row`) is ``{"problem", "setting", "method", "metrics",
"anchor"}``; :func:`render_table` renders a results file's rows as the table of
``docs/benchmarks.md``, ours beside the anchor's figure. An ablation script's rows are flat
dicts (:func:`seed_summary_rows` adds their mean and sd over seeds), rendered by
:func:`rows_table` (:func:`print_rows_table`: a results file's). :func:`metric_values` reads
back the non-finite figures a results file holds as strings; :func:`_json_value` is the Python
number a numpy or torch value holds (for the tables and the results files alike)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import check_int


def bench_row(
    problem: str,
    method: str,
    metrics: Mapping[str, float],
    *,
    setting: Mapping[str, Any] | None = None,
    anchor: Mapping[str, Any] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """One result row; metric keys are lower-case (``rel_l2``, ``mse``, ``coverage90`` ...)."""
    bad = [k for k in metrics if k != k.lower()]
    if bad:
        raise ValueError(f"metrics: keys must be lower-case, received {bad}")
    row = {
        "problem": problem,
        "setting": dict(setting or {}),
        "method": method,
        "metrics": {k: (None if v is None else float(v)) for k, v in metrics.items()},
        "anchor": dict(anchor) if anchor else None,
    }
    if note:
        row["note"] = note
    return row


def metric_values(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A row's ``metrics`` as read from a results file, with the strings ``"nan"``, ``"inf"``
    and ``"-inf"`` (how :func:`results_json` writes a non-finite figure) as the floats they
    stand for, so that code judging targets on a read file compares numbers (a string raised
    ``TypeError`` there); every other value unchanged."""
    return {
        k: float(v) if isinstance(v, str) and v in ("nan", "inf", "-inf") else v
        for k, v in metrics.items()
    }


def seed_summary_rows(
    rows: Iterable[Mapping[str, Any]],
    group: Sequence[str],
    keys: Sequence[str],
    *,
    keep: Sequence[str] = (),
    fill: Mapping[str, Any] | None = None,
) -> list[dict]:
    """``mean`` and ``sd`` (ddof 1; ``nan`` for one seed) rows over the per-seed ``rows`` of
    each group, for an ablation script's results file.

    ``rows``: one dict per seed (an int ``"seed"``) holding the ``group`` fields and the
    numeric ``keys``; groups come out in their order of first appearance. Each summary row is
    ``{group fields, "seed": "mean" | "sd", **fill, keep fields (from the group's first
    row), keys}``."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[g] for g in group), []).append(r)
    out = []
    for gkey, sel in groups.items():
        for stat in ("mean", "sd"):
            row = {**dict(zip(group, gkey)), "seed": stat, **(fill or {})}
            row.update({k: sel[0][k] for k in keep})
            for k in keys:
                v = np.array([r[k] for r in sel], dtype=float)
                if stat == "mean":
                    row[k] = float(v.mean())
                else:
                    row[k] = float(v.std(ddof=1)) if len(v) > 1 else math.nan
            out.append(row)
    return out


def _json_value(v: Any) -> Any:
    """A numpy or torch value (a setting's ``np.int64(3)``, a 0-d tensor) as the Python
    number or list it holds, for ``json.dumps``: an integer stays an integer (``float`` made
    it ``3.0``); anything else with ``__float__`` becomes a float."""
    item = getattr(v, "item", None)
    if callable(item) and getattr(v, "ndim", None) == 0:
        return item()
    tolist = getattr(v, "tolist", None)
    if callable(tolist):
        return tolist()
    return float(v)


def _fmt(v: Any) -> str:
    if isinstance(v, np.generic):  # an anchor figure given as np.float32: formatted as a float
        v = v.item()
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1e4 or a < 1e-3:
            return f"{v:.2e}"
        return f"{v:.4g}"
    return str(v)


def render_table(payload: Mapping[str, Any]) -> str:
    """Markdown table: one line per row, ours beside the anchor's figure for each metric."""
    rows = payload["rows"]
    keys: list[str] = []
    for r in rows:  # our metrics first, then anchor-only ones (an anchor figure is never hidden)
        for k in r["metrics"]:
            if k not in keys:
                keys.append(k)
    for r in rows:
        for k in (r.get("anchor") or {}).get("metrics") or {}:
            if k not in keys:
                keys.append(k)
    head = ["problem", "setting", "method", *keys, "anchor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        anc = r.get("anchor") or {}
        am = (anc.get("metrics") or {}) if anc else {}
        setting = json.dumps(r.get("setting") or {}, default=_json_value)[1:-1]
        cells = [r["problem"], setting or "–", r["method"]]
        for k in keys:
            ours = _fmt(r["metrics"].get(k))
            cells.append(f"{ours} ({_fmt(am[k])})" if k in am else ours)
        cells.append(anc.get("source", "–") if anc else "–")
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    notes = [f"- {r['problem']} / {r['method']}: {r['note']}" for r in rows if r.get("note")]
    meta = (
        f"Command: {_code_span(payload['command'])} · {payload['date']} · torch "
        f"{payload['torch']} · "
        f"{payload['device']} · {payload['threads']} threads · quick={payload['quick']}. "
        "In parentheses: the anchor's figure, or the issue's target where the row's anchor "
        "column states one."
    )
    return "\n".join([meta, "", *lines, *([""] + notes if notes else [])])


def _code_span(text: str) -> str:
    """``text`` as one Markdown code span: double backticks when it holds single ones (a
    command that quotes other commands in backticks broke out of a single-backtick span)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def rows_table(rows: Iterable[Mapping[str, Any]], digits: int = 3) -> str:
    """Markdown table of flat result rows (the union of their keys as columns, in order of
    appearance; floats to ``digits`` decimals, or in e-notation below ``10^-digits``; missing
    cells as "–"; no rows: "(no rows)"). For ablation scripts."""
    digits = check_int("digits", digits, minimum=1)
    rows = list(rows)
    if not rows:
        return "(no rows)"
    keys = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if not isinstance(v, float):
            return str(v)
        if v != 0 and math.isfinite(v) and abs(v) < 10.0**-digits:
            return f"{v:.{digits - 1}e}"  # e.g. an MSE of 1e-5 is not "0.000"
        return f"{v:.{digits}f}"

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def print_rows_table(path: str | Path) -> Path:
    """Print the table of a results file written by :func:`write_rows` (``--table``)."""
    path = Path(path)
    print(rows_table(json.loads(path.read_text(encoding="utf-8"))["rows"]))
    return path
