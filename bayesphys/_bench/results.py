"""Benchmark result files and the ``docs/benchmarks.md`` tables regenerated from them.

``benchmarks/<component>.py`` scripts produce rows and call :func:`write_results`, which writes
``benchmarks/results/<component>.json`` (format in ``docs/benchmarks.md``) and regenerates that
component's table in ``docs/benchmarks.md`` between ``<!-- bench:<component> -->`` markers
(:func:`update_benchmarks_md`). A row is ``{"problem", "setting", "method", "metrics",
"anchor"}`` (:func:`~bayesphys._bench.tables.bench_row`); ``anchor`` is ``None`` or
``{"source", "metrics"}``; missed targets are kept, never dropped. The rows a stopped run
finished go to a partial file (:func:`write_partial`, :func:`partial_path`,
:func:`remove_partial`).

Results files are strict JSON (:func:`results_json`): a non-finite number (a diverged NLL's
``inf``, the ``nan`` sd of one seed) is written as the string ``"nan"``, ``"inf"`` or
``"-inf"`` (``float()`` reads it back), which the tables show as before, unlike ``null``, which
they show as "–" for a metric that was not measured; Python's ``NaN`` / ``Infinity`` tokens,
which strict JSON parsers refuse, are never written. Dict keys are strings: an int key
(numpy's too) is written as its digits, and a float, bool or ``None`` key as ``json.dumps``
writes it; any other key (a tuple, a tensor, a non-finite float), or two keys written as the
same string, is refused naming where it is. A write that fails keeps the text in a
temporary file it names (:func:`_write_or_keep_aside`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_write_text
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning
from .commands import machine_info, threading_info
from .paths import repo_root
from .tables import _json_value, render_table


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
    non-finite number as the string ``"nan"``, ``"inf"`` or ``"-inf"`` (:func:`results_json`); the
    docs table is rendered from what the file holds, so rendering the file again gives the same
    table. A write that fails (``OSError``: a read-only or full disk, a file where the folder should
    be) raises an ``OSError`` naming a temporary file that holds the results instead.

    The header also records ``"threading"`` (:func:`threading_info`: torch's thread count and
    the thread-count variables set), unless ``extra`` gives its own, and ``"machine"``
    (:func:`machine_info`: architecture, cores, CPU model, torch's CPU capability).

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
        "machine": machine_info(),
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
    appended to ``nonfinite``); a value JSON cannot hold is a ``TypeError`` naming ``where``."""
    if isinstance(v, Mapping):
        out: dict[str, Any] = {}
        for k, x in v.items():
            key = _json_key(k, where)
            if key in out:  # 1 and "1" both became "1": json wrote the key twice
                raise ValueError(
                    f"{_key_path(where, k)}: a dict key written as {key!r}, as another key of "
                    "this dict is; expected keys distinct once written"
                )
            out[key] = _strict(x, f"{where}.{key}" if where else key, nonfinite)
        return out
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
    # anything else (a set, a Path, an object): json's encoder failed on it naming no key
    raise TypeError(
        f"{where}: expected a number, string, bool, None, list or dict, received {type(v).__name__}"
    )


def _key_path(where: str, k: Any) -> str:
    """Where the dict key ``k`` is, for an error: its dict's path and the key's repr."""
    return f"{where}[{k!r}]" if where else f"[{k!r}]"


def _json_key(k: Any, where: str) -> str:
    """The dict key ``k`` as the string a results file holds: a string as it is; an int
    (numpy's too) as its digits and a finite float, a bool or ``None`` as ``json.dumps``
    writes them (``"0.5"``, ``"true"``, ``"null"``). Any other key (a tuple, a non-finite
    float, a tensor) is a ``TypeError`` naming where it is (json's said only ``keys must be
    str, int, float, bool or None, not tuple``)."""
    if isinstance(k, str):
        return str(k)  # np.str_ as a plain str
    if isinstance(k, (bool, np.bool_)):
        return "true" if k else "false"
    if k is None:
        return "null"
    if isinstance(k, (int, np.integer)):
        return str(int(k))  # an IntEnum as its number, as json.dumps writes it
    if isinstance(k, (float, np.floating)) and math.isfinite(float(k)):
        return repr(float(k))
    raise TypeError(
        f"{_key_path(where, k)}: expected a dict key that is a string (or an int, a finite "
        f"float, a bool or None, written as a string), received {type(k).__name__}"
    )


def _results_text(payload: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``payload`` as :func:`results_json` writes it, and where its non-finite numbers were
    (for the warning a writer gives once the text is on disk)."""
    nonfinite: list[str] = []
    clean = _strict(payload, "", nonfinite)  # plain JSON types only: json needs no default=
    text = json.dumps(clean, indent=1, allow_nan=False) + "\n"
    return text, nonfinite


def _warn_nonfinite(nonfinite: list[str]) -> None:
    """The ``RuntimeWarning`` naming the non-finite numbers written as strings (none: none)."""
    if nonfinite:
        shown = ", ".join(nonfinite[:5]) + (
            f" and {len(nonfinite) - 5} more" if len(nonfinite) > 5 else ""
        )
        warnings.warn(
            f"results: {len(nonfinite)} non-finite value(s) written as strings: {shown}",
            BayesphysRuntimeWarning,
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


def read_previous_results(path: str | Path) -> dict[str, Any] | None:
    """The results file at ``path`` that a run merges its rows into, read before the run's
    work; ``None`` when there is no file. One that is not a results file (cut short, damaged,
    a merge conflict left in it; not an object with a ``"rows"`` list of objects and a
    ``"command"`` string) is refused with a ``ValueError`` naming it, before any benchmark
    runs: read after the work, it failed there, and the rows of a run of hours were lost with
    it (or left in a partial file, without a word)."""
    path = Path(path).expanduser()
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path}: the results file this run merges into cannot be read ({type(err).__name__}: "
            f"{err}); mend or remove it, or give another --out, before running"
        ) from err
    rows = payload.get("rows") if isinstance(payload, dict) else None
    command = payload.get("command") if isinstance(payload, dict) else None
    if not (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)) or not isinstance(
        command, str
    ):
        raise ValueError(
            f"{path}: the results file this run merges into is not one (expected an object "
            "with a 'rows' list of objects and a 'command' string); mend or remove it, or give "
            "another --out, before running"
        )
    return payload


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
