"""Benchmark result files and the ``docs/benchmarks.md`` tables.

``benchmarks/<component>.py`` scripts produce rows and call :func:`write_results`, which writes
``benchmarks/results/<component>.json`` (format in ``docs/benchmarks.md``) and regenerates that
component's table in ``docs/benchmarks.md`` between ``<!-- bench:<component> -->`` markers.
A row is ``{"problem", "setting", "method", "metrics", "anchor"}``; ``anchor`` is ``None``
or ``{"source", "metrics"}``; missed targets are kept, never dropped.

Results files are strict JSON (:func:`results_json`): a non-finite number (a diverged NLL's
``inf``, the ``nan`` sd of one seed) is written as the string ``"nan"``, ``"inf"`` or
``"-inf"`` (``float()`` reads it back), which the tables show as before, unlike ``null``, which
they show as "–" for a metric that was not measured; Python's ``NaN`` / ``Infinity`` tokens,
which strict JSON parsers refuse, are never written.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._checks import check_int
from ._files import atomic_write_text, out_folder_arg
from ._stack import user_stacklevel

__all__ = [
    "repo_root",
    "write_results",
    "results_json",
    "write_results_json",
    "metric_values",
    "write_partial",
    "partial_path",
    "remove_partial",
    "render_table",
    "update_benchmarks_md",
    "bench_row",
    "call_script",
    "run_script_tasks",
    "rows_table",
    "write_rows",
    "print_rows_table",
    "ablation_parser",
    "positive_int",
    "results_name_arg",
    "script_module",
]


def _is_checkout(folder: Path) -> bool:
    """Whether ``folder`` is a bayesphys source checkout: ``benchmarks/`` beside a
    ``pyproject.toml`` naming the project ``bayesphys`` (a ``benchmarks/`` folder alone, in the
    current directory or installed into site-packages by another package, is not run)."""
    pyproject = folder / "pyproject.toml"
    if not ((folder / "benchmarks").is_dir() and pyproject.is_file()):
        return False
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10: the [project] table's name line
        table = re.search(r"(?ms)^\s*\[project\]\s*$(.*?)(?=^\s*\[|\Z)", text)
        name = table and re.search(r"""(?m)^\s*name\s*=\s*["']([^"']*)["']""", table.group(1))
        return bool(name) and name.group(1) == "bayesphys"
    try:
        return tomllib.loads(text).get("project", {}).get("name") == "bayesphys"
    except tomllib.TOMLDecodeError:
        return False


def repo_root() -> Path:
    """The bayesphys source checkout holding ``benchmarks/``: the package's own (an editable
    install) or the current directory when it is one (:func:`_is_checkout`)."""
    here = Path(__file__).resolve().parents[1]
    for cand in (here, Path.cwd()):
        if _is_checkout(cand):
            return cand
    raise FileNotFoundError(
        "benchmarks/: no bayesphys source checkout next to the package or in the current "
        "directory (a folder with benchmarks/ and a pyproject.toml naming bayesphys); run "
        "benchmark commands from a source checkout"
    )


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


def _write_or_keep_aside(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (its folder created); when that fails (``OSError``: a
    read-only folder or file, a full disk, a folder removed and not creatable) the text is
    written to a new temporary file instead and the error raised again naming it, so that
    the rows of a run that took minutes or hours are not lost with the write."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as err:
        import tempfile

        try:
            fd, aside = tempfile.mkstemp(prefix=f"{path.stem}-unsaved-", suffix=path.suffix)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as err2:
            kept = f"could not keep them elsewhere either ({type(err2).__name__}: {err2})"
        else:
            kept = f"the results are kept in {aside}; copy it to {path} once that can be written"
        msg = f"{path} could not be written ({type(err).__name__}: {err}); {kept}"
        # OSError(errno, ...) is the matching subclass (PermissionError for EACCES ...)
        raise (OSError(err.errno, msg) if err.errno is not None else OSError(msg)) from err


def write_results(
    component: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    quick: bool,
    command: str,
    out: str | Path | None = None,
    device: str = "cpu",
    extra: Mapping[str, Any] | None = None,
    update_docs: bool | None = None,
) -> Path:
    """Write ``<out>/<component>.json`` (``out`` default: the checkout's
    ``benchmarks/results``) and return its path. ``update_docs`` (default: ``out is None``)
    also regenerates the component's table in ``docs/benchmarks.md``: a run given ``out``
    leaves the docs alone. Numpy and torch values are written as the numbers they hold, a
    non-finite number as the string ``"nan"``, ``"inf"`` or ``"-inf"`` (:func:`results_json`); the docs table is rendered from what
    the file holds, so rendering the file again gives the same table. A write that fails
    (``OSError``: a read-only or full disk, a file where the folder should be) raises an
    ``OSError`` naming a temporary file that holds the results instead.

    The header also records ``"threading"`` (:func:`threading_info`: torch's thread count and
    the thread-count variables set), unless ``extra`` gives its own.

    A quick run is never committed: it needs an explicit ``out`` (``ValueError`` otherwise).
    An empty ``out`` (``""``: the current folder) is refused with a ``ValueError``, as the
    ``--out`` options refuse it; ``None`` is the default folder."""
    _check_out(out)
    if quick and out is None:
        raise ValueError(
            f"out: a quick run of {component!r} is not committed; pass an output folder"
        )
    out_dir = Path(out).expanduser() if out is not None else repo_root() / "benchmarks" / "results"
    payload = {
        "component": component,
        "command": command,
        "quick": bool(quick),
        "date": _dt.date.today().isoformat(),
        "torch": torch.__version__.split("+")[0],
        "python": platform.python_version(),
        "device": device,
        "threads": torch.get_num_threads(),
        "threading": threading_info(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "rows": list(rows),
    }
    if extra:
        payload.update(extra)
    path = out_dir / f"{component}.json"
    text, nonfinite = _results_text(payload)
    _write_or_keep_aside(path, text)  # a failed write keeps the rows in a file it names
    if update_docs is None:
        update_docs = out is None
    if update_docs:
        update_benchmarks_md(component, json.loads(text))
    _warn_nonfinite(nonfinite)  # once written: raised as an error, it loses nothing
    return path


def _check_out(out: str | Path | None) -> None:
    """Refuse an empty (or blank) ``out`` string: ``Path("")`` is the current folder, not the
    default one (``None``), and the ``--out`` options refuse it at parse time."""
    if isinstance(out, str) and not out.strip():
        raise ValueError(
            f"out: expected a folder path or None (the default folder), received {out!r}"
        )


def _strict(v: Any, where: str, nonfinite: list[str]) -> Any:
    """``v`` with numpy and torch values as the Python numbers or lists they hold and every
    non-finite float as the string ``"nan"``, ``"inf"`` or ``"-inf"`` (its location ``where``
    appended to ``nonfinite``)."""
    if isinstance(v, Mapping):
        return {k: _strict(x, f"{where}.{k}" if where else str(k), nonfinite) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x, f"{where}[{i}]", nonfinite) for i, x in enumerate(v)]
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if not isinstance(v, float) and (hasattr(v, "item") or hasattr(v, "tolist")):
        return _strict(_json_value(v), where, nonfinite)  # np.float32(nan), a 0-d tensor
    if isinstance(v, float) or hasattr(v, "__float__"):
        f = float(v)  # np.float64 (a float subclass) as a plain float
        if math.isfinite(f):
            return f
        nonfinite.append(f"{where} = {f}")
        return str(f)  # "nan", "inf", "-inf": shown as such, not as a metric never measured
    return v  # anything else: json.dumps' own TypeError


def _results_text(payload: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``payload`` as :func:`results_json` writes it, and where its non-finite numbers were
    (for the warning a writer gives once the text is on disk)."""
    nonfinite: list[str] = []
    clean = _strict(payload, "", nonfinite)
    text = json.dumps(clean, indent=1, default=_json_value, allow_nan=False) + "\n"
    return text, nonfinite


def _warn_nonfinite(nonfinite: list[str]) -> None:
    """The ``RuntimeWarning`` naming the non-finite numbers written as strings (none: none)."""
    if nonfinite:
        shown = ", ".join(nonfinite[:5]) + (
            f" and {len(nonfinite) - 5} more" if len(nonfinite) > 5 else ""
        )
        warnings.warn(
            f"results: {len(nonfinite)} non-finite value(s) written as strings: {shown}",
            RuntimeWarning,
            stacklevel=user_stacklevel(),
        )


def results_json(payload: Mapping[str, Any]) -> str:
    """``payload`` as the strict JSON text of a results file (indent 1, final newline).

    Numpy and torch values become the numbers or lists they hold; a non-finite number (NaN,
    ``±inf``) becomes the string ``"nan"``, ``"inf"`` or ``"-inf"`` (``float()`` reads it
    back; a table shows it as it showed the number, not as "–", which means not measured) with
    a ``RuntimeWarning`` naming where it was, since Python's ``NaN`` / ``Infinity`` tokens are
    not JSON and strict parsers refuse the whole file. The warning comes before the text is
    returned: to write a file, use :func:`write_results_json` (or :func:`write_results`,
    :func:`write_rows`), which warn only once the file is written, so that a run with warnings
    as errors (``python -W error``) still leaves it on disk."""
    text, nonfinite = _results_text(payload)
    _warn_nonfinite(nonfinite)
    return text


def write_results_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` as :func:`results_json` text (its folder created; a failed
    write keeps the text in a temporary file the ``OSError`` names) and return the path. The
    ``RuntimeWarning`` about non-finite numbers comes after the write: raised as an error
    (``python -W error``), it leaves the file written."""
    path = Path(path).expanduser()
    text, nonfinite = _results_text(payload)
    _write_or_keep_aside(path, text)
    _warn_nonfinite(nonfinite)
    return path


def write_partial(
    component: str,
    rows: list[dict],
    *,
    quick: bool,
    command: str,
    out: str | Path | None,
    device: str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The rows a stopped run finished, written to ``<out>/<component>.partial.json`` (``out``
    ``None``: the temporary folder; ``"partial": true`` and ``extra`` in the header; the results
    file and the docs are left as they were). Returns where they are, for the run's stop
    message: ``"are in PATH (marked partial)"``, or ``"could not be written (ERROR)"`` (the
    write's own error is named, never raised: the run's error is the one raised)."""
    try:
        path = write_results(
            f"{component}.partial",
            rows,
            quick=quick,
            command=command,
            out=out or tempfile.gettempdir(),
            device=device,
            extra={"partial": True, **(extra or {})},
            update_docs=False,
        )
    except Warning as warned:  # warnings as errors: raised once the file was written
        return f"are in {partial_path(component, out)} (marked partial; {warned})"
    except Exception as write_err:  # noqa: BLE001 - the run's own error is the one raised
        return f"could not be written ({write_err})"
    return f"are in {path} (marked partial)"


def partial_path(component: str, out: str | Path | None) -> Path:
    """Where :func:`write_partial` keeps ``component``'s rows: ``<out>/<component>.partial.json``
    (``out`` ``None`` or empty: the temporary folder)."""
    folder = Path(out).expanduser() if out else Path(tempfile.gettempdir())
    return folder / f"{component}.partial.json"


def remove_partial(component: str, out: str | Path | None) -> None:
    """Remove ``component``'s partial file (:func:`partial_path`) once a run has written its
    results file: a partial file left by an earlier stopped run (or by this one) is not kept
    beside a completed run as if it belonged to it. No file there is no error; a removal that
    fails raises its ``OSError``."""
    partial_path(component, out).unlink(missing_ok=True)


def metric_values(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A row's ``metrics`` as read from a results file, with the strings ``"nan"``, ``"inf"``
    and ``"-inf"`` (how :func:`results_json` writes a non-finite figure) as the floats they
    stand for, so that code judging targets on a read file compares numbers (a string raised
    ``TypeError`` there); every other value unchanged."""
    return {
        k: float(v) if isinstance(v, str) and v in ("nan", "inf", "-inf") else v
        for k, v in metrics.items()
    }


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


# OMP_NUM_THREADS as the user's shell set it (read before a script's own setdefault)
_USER_OMP_THREADS = os.environ.get("OMP_NUM_THREADS")
#: the other thread-count variables of the BLAS libraries torch and numpy may use
_OTHER_THREAD_VARS = ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# ... as the user's shell set them (only those set)
_USER_OTHER_THREADS = {k: os.environ[k] for k in _OTHER_THREAD_VARS if os.environ.get(k)}


def recorded_command(
    script: str | Path, argv: Iterable[str] | None = None, *, device: str | None = None
) -> str:
    """``python benchmarks/<script> <argv>`` as a results file records it: ``argv`` (default:
    this process's ``sys.argv[1:]``; a script's ``main(argv)`` passes the ``argv`` it parsed,
    not its caller's) shell-quoted, so an empty argument (``--model-errors ""``) or one with
    spaces reruns as given; prefixed with the thread-count variables the shell set
    (:func:`thread_env_prefix`: scripts take their thread count from them, and float32
    training depends on it). ``device``: the device the run resolved ``--device auto`` to
    (``"cpu"``, ``"cuda"``), recorded in its place, so that the command reruns on that device
    on another machine too."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if device is not None:
        argv = _pinned_device(argv, str(device))
    env = thread_env_prefix()
    return (f"{env}python benchmarks/{Path(script).name} " + shlex.join(argv)).strip()


def _pinned_device(argv: list[str], device: str) -> list[str]:
    """``argv`` with ``--device auto`` (or ``--device=auto``) as ``--device <device>``."""
    out = list(argv)
    for i, a in enumerate(out):
        if a == "--device=auto":
            out[i] = f"--device={device}"
        elif a == "auto" and i > 0 and out[i - 1] == "--device":
            out[i] = device
    return out


def thread_env_prefix() -> str:
    """``"OMP_NUM_THREADS=N "`` (then ``MKL_NUM_THREADS=N``, ``OPENBLAS_NUM_THREADS=N``) for
    each of these the shell set for this process (a recorded command reruns with them:
    scripts take their thread count from them, and float32 training depends on it), else
    ``""``."""
    user = {"OMP_NUM_THREADS": _USER_OMP_THREADS, **_USER_OTHER_THREADS}
    return "".join(f"{k}={shlex.quote(v)} " for k, v in user.items() if v)


def threading_info() -> dict[str, Any]:
    """What sets this process's thread counts, for a results file's ``"threading"``:
    ``torch_num_threads`` (:func:`torch.get_num_threads`, now) and each of
    ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` that is set in the
    environment now (the value worker processes inherit; a variable not set is left out)."""
    info: dict[str, Any] = {"torch_num_threads": torch.get_num_threads()}
    for k in ("OMP_NUM_THREADS", *_OTHER_THREAD_VARS):
        if os.environ.get(k):
            info[k] = os.environ[k]
    return info


def write_rows(
    name: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    script: str | Path,
    argv: Iterable[str] | None = None,
    out: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
    started: float | None = None,
) -> Path:
    """Write ``<out>/<name>.json`` = ``{"command", "threading", **extra, "rows"}`` for an
    ablation script (``out`` default, ``None``: ``benchmarks/results`` beside ``script``; an
    empty string is refused with a ``ValueError``, as the ``--out`` option refuses it), print
    the rows' table and return the path. ``command`` is ``python benchmarks/<script> <argv>``
    (:func:`recorded_command`; ``argv`` default: this process's ``sys.argv[1:]``, so a
    script's ``main(argv)`` passes its own ``argv``); ``threading`` is
    :func:`threading_info`; ``started`` (a ``time.perf_counter()`` reading) adds
    ``"seconds"``, the wall time since then. A non-finite number is written as the string
    ``"nan"``, ``"inf"`` or ``"-inf"`` (:func:`results_json`); a failed write is reported as
    :func:`write_results` reports it (the rows kept in a temporary file it names)."""
    _check_out(out)
    rows = list(rows)
    if started is not None:
        extra = {**(extra or {}), "seconds": time.perf_counter() - started}
    out_dir = Path(out).expanduser() if out else Path(script).resolve().parent / "results"
    path = out_dir / f"{name}.json"
    payload = {
        "command": recorded_command(script, argv),
        "threading": threading_info(),
        **(extra or {}),
        "rows": rows,
    }
    text, nonfinite = _results_text(payload)
    _write_or_keep_aside(path, text)  # a failed write keeps the rows in a file it names
    print(rows_table(json.loads(text)["rows"]))  # as --table prints the file
    print(f"wrote {path}")
    _warn_nonfinite(nonfinite)  # once written: raised as an error, it loses nothing
    return path


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


def positive_int(text: str) -> int:
    """An argparse ``type``: ``text`` as an int >= 1, else a clear error naming the value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, received {text!r}")
    return value


def results_name_arg(text: str) -> str:
    """An argparse ``type`` for ``--name``: a results file's name without folder or ``.json``
    (``<out>/<name>.json`` is written; a ``/`` wrote outside ``--out``, a ``.json`` doubled the
    suffix), else a clear error naming the value."""
    if not text or "/" in text or "\\" in text or text.endswith(".json"):
        raise argparse.ArgumentTypeError(
            f"expected a file name without folder or .json, received {text!r}"
        )
    return text


def _results_file_arg(text: str) -> str:
    """An argparse ``type`` for ``--table``: an existing file (a missing one ended in a
    FileNotFoundError traceback); a leading ``~`` is expanded."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no results file {text!r}")
    return str(path)


def ablation_parser(doc: str | None, *, jobs: bool = True) -> argparse.ArgumentParser:
    """The argument parser an ablation script starts from: its description is the first line
    of ``doc`` (the script's docstring); ``--out DIR`` (results folder, default
    ``benchmarks/results``), ``--table RESULTS_JSON`` (only print a results file's table:
    :func:`print_rows_table`) and, with ``jobs``, ``--jobs N`` (worker processes with one
    thread each, a positive int; :func:`run_script_tasks`)."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0] if doc else None)
    if jobs:
        ap.add_argument(
            "--jobs", type=positive_int, default=1, help="worker processes (1 thread each)"
        )
    # checked at parse time ("" overwrote the committed results; a file in the way failed
    # after the work was done)
    ap.add_argument(
        "--out",
        type=out_folder_arg,
        default=None,
        help="results folder (default: benchmarks/results)",
    )
    ap.add_argument(
        "--table",
        type=_results_file_arg,
        metavar="RESULTS_JSON",
        help="only print a results file's table",
    )
    return ap


def print_rows_table(path: str | Path) -> Path:
    """Print the table of a results file written by :func:`write_rows` (``--table``)."""
    path = Path(path)
    print(rows_table(json.loads(path.read_text(encoding="utf-8"))["rows"]))
    return path


def smoke_ablation_main(
    doc: str | None,
    argv: list[str] | None,
    *,
    script: str,
    name: str,
    tasks: list[Any],
    summarise: Any,
    table: Any,
    extra: Any,
) -> Path:
    """``main()`` of an ablation script with a ``--smoke`` mode: parse :func:`ablation_parser`
    plus ``--smoke`` (``--table`` only prints a results file); a smoke run without ``--out``
    writes to a temp folder (tiny sizes never overwrite committed results); run the script's
    ``run_task(task, smoke=...)`` over ``tasks`` (:func:`run_script_tasks`, one thread per
    worker), append ``summarise(rows)``, write them under ``name`` (:func:`write_rows`, extra
    ``{"smoke": ..., **extra(smoke)}``), print ``table(rows)`` and the seconds. Returns the
    results path."""
    import tempfile

    ap = ablation_parser(doc)
    ap.add_argument(
        "--smoke", action="store_true", help="tiny populations, written to a temp folder"
    )
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    if args.smoke and args.out is None:
        args.out = tempfile.mkdtemp(prefix="bench_smoke_")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    per_task = run_script_tasks(script, "run_task", tasks, args.jobs, argv=argv, smoke=args.smoke)
    rows = [r for task_rows in per_task for r in task_rows]
    rows += summarise(rows)
    info = {"smoke": args.smoke, **extra(args.smoke)}
    path = write_rows(name, rows, script=script, argv=argv, out=args.out, extra=info, started=t0)
    print(table(rows))
    print(json.dumps({"seconds": time.perf_counter() - t0}))
    return path


def update_benchmarks_md(component: str, payload: Mapping[str, Any], docs: Path | None = None):
    """Replace the ``<!-- bench:component -->`` block of ``docs/benchmarks.md``."""
    path = docs or repo_root() / "docs" / "benchmarks.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- bench:{component} -->", f"<!-- /bench:{component} -->"
    block = f"{start}\n{render_table(payload)}\n{end}"
    n_start, n_end = text.count(start), text.count(end)
    if n_start or n_end:
        i = text.find(start)
        j = text.find(end, i + len(start)) if i >= 0 else -1
        if n_start != 1 or n_end != 1 or j < 0:
            # never guess: replacing up to a later marker would delete the sections between
            raise ValueError(
                f"{path}: expected one {start} followed by one {end}, found {n_start} start and "
                f"{n_end} end marker(s) (in that order: {j >= 0}); fix the file by hand"
            )
        text = text[:i] + block + text[j + len(end) :]
    else:
        text = text.rstrip() + f"\n\n## {component}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


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
    script's ``main(argv)`` passes its own); ``argv`` is not passed to ``func``. A rerun of the failed tasks alone (a script's
    ``--seeds`` ...) writes its own results file: the two are not merged.
    """
    import functools

    from .distributed import resolve_runner

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
