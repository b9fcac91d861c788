"""The command line and results file of an ablation script (``benchmarks/*_ablation.py`` ...).

Its argparse types (:func:`positive_int`, :func:`results_name_arg`), its parser
(:func:`ablation_parser`: ``--out``, ``--table``, ``--jobs``), its results file
(:func:`write_rows`) and the whole ``main()`` of one with a ``--smoke`` mode
(:func:`smoke_ablation_main`)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._files import out_folder_arg
from .._process_state import torch_threads
from .commands import recorded_command, threading_info
from .results import _check_out, _results_text, _warn_nonfinite, _write_or_keep_aside
from .tables import print_rows_table, rows_table
from .tasks import run_script_tasks


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
    thread each, a positive int; :func:`run_script_tasks`). Abbreviated options are refused
    (``--ou`` for ``--out``): a results file records the command as given, to be rerun."""
    ap = argparse.ArgumentParser(
        description=doc.strip().splitlines()[0] if doc else None, allow_abbrev=False
    )
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
    t0 = time.perf_counter()
    with torch_threads(1):  # one thread per task, as the workers have; the caller's count back
        per_task = run_script_tasks(
            script, "run_task", tasks, args.jobs, argv=argv, smoke=args.smoke
        )
    rows = [r for task_rows in per_task for r in task_rows]
    rows += summarise(rows)
    info = {"smoke": args.smoke, **extra(args.smoke)}
    path = write_rows(name, rows, script=script, argv=argv, out=args.out, extra=info, started=t0)
    print(table(rows))
    print(json.dumps({"seconds": time.perf_counter() - t0}))
    return path
