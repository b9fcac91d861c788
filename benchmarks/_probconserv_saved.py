"""Shared command line and model loading of the scripts that rescore the ProbConserv
benchmark's saved Step-1 models (``probconserv_mass_check.py``, ``probconserv_edge.py``,
``probconserv_margin.py``, ``probconserv_selection.py``)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from bayesphys._bench import (
    ablation_parser,
    comma_ids,
    positive_int,
    print_rows_table,
    write_rows,
)
from bayesphys.probconserv.evaluate import slice_scores
from bayesphys.probconserv.model import ProbConserv
from bayesphys.problems.gpme import get_problem, make_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probconserv import SETTINGS, calibration_options  # noqa: E402  (the benchmark's)


def parse(
    doc: str | None,
    argv: list[str] | None,
    problems: str,
    summary: Callable[[list[dict]], str],
    extra: Callable | None = None,
):
    """Parse ``--models DIR --problems --methods --threads --smoke --summary --table --out``
    (and the
    script's own options, added by ``extra(parser)``). Returns the printed results file's path
    for ``--table`` / ``--summary``, else ``(args, cfg)``: the benchmark's full settings (tiny
    with ``--smoke``), with the thread count set."""
    ap = ablation_parser(doc, jobs=False)
    ap.add_argument(
        "--models",
        help="folder of a benchmark run's --save-models (required, --smoke too; e.g. "
        "python benchmarks/probconserv.py --quick --save-models DIR --out DIR)",
    )
    ap.add_argument(
        "--problems",
        type=comma_ids(("diffusion", "pme", "stefan"), what="problems"),
        default=problems,
    )
    # the Step-1 models a benchmark run's --save-models writes
    ap.add_argument(
        "--methods",
        type=comma_ids(("ANP", "SoftC-ANP", "GP", "SoftC-GP"), what="saved models"),
        default="ANP,GP",
        help="Step-1 models to load (ANP, GP)",
    )
    ap.add_argument("--threads", type=positive_int, default=1)
    ap.add_argument(
        "--smoke", action="store_true", help="tiny scoring sizes (tests); needs --models"
    )
    ap.add_argument("--summary", metavar="RESULTS_JSON", help="print the docs' table")
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    if args.summary:
        print(summary(json.loads(Path(args.summary).read_text(encoding="utf-8"))["rows"]))
        return Path(args.summary)
    if not args.models:
        ap.error(
            "--models: required, with --smoke too (the folder a benchmark run saved its models "
            "to; make one with: python benchmarks/probconserv.py --quick --save-models DIR "
            "--out DIR)"
        )
    torch.set_num_threads(args.threads)
    cfg = dict(SETTINGS["full"])
    if args.smoke:
        cfg.update(n_val=12, n_local=20, n_test=3)
        if args.out is None:  # tiny sizes are never written over the committed results
            args.out = tempfile.mkdtemp(prefix="bench_smoke_")
    return args, cfg


def rescore(
    doc: str | None,
    argv: list[str] | None,
    *,
    name: str,
    script: str,
    problems: str,
    summary: Callable[[list[dict]], str],
    rows_for: Callable[..., Iterable[dict]],
    extra: Callable | None = None,
) -> Path:
    """The main of a rescoring script: parse (:func:`parse`), then for each ``--problems``
    entry collect ``rows_for(args, cfg, problem)`` (printing each row), write
    ``benchmarks/results/<name>.json`` (or ``--out``), print ``summary(rows)`` and return the
    path (``--table`` / ``--summary``: the printed file's path)."""
    parsed = parse(doc, argv, problems, summary, extra)
    if isinstance(parsed, Path):
        return parsed
    args, cfg = parsed
    started = time.perf_counter()
    rows = []
    for pname in args.problems:
        for row in rows_for(args, cfg, get_problem(pname)):
            rows.append(row)
            print(row, flush=True)
    path = write_rows(name, rows, script=script, argv=argv, out=args.out, started=started)
    print(summary(rows))
    return path


def param_sets(prob, n: int, seed: int) -> list[tuple[float, object]]:
    """``(parameter, dataset)`` for each of the benchmark's test parameters: ``n`` functions at
    that value, context seed ``seed`` (10 000: the benchmark's test functions)."""
    return [(p, make_dataset(prob, params=[p] * n, seed=seed)) for p in prob.test_params]


def calibrated(folder: str | Path, pname: str, key: str, cfg: dict, **kw) -> ProbConserv:
    """The saved model ``<folder>/<pname>_<key>.pt``, calibrated as the benchmark does (hybrid
    covariance, parameter-conditional scale, mass check with its gate, seed 777); ``kw``
    overrides or adds ``calibrate`` options."""
    model = ProbConserv.load(Path(folder) / f"{pname}_{key}.pt")
    model.calibrate(**(calibration_options(model.problem, cfg, 0) | kw))
    return model


def score(model: ProbConserv, test, method: str) -> dict[str, float]:
    """Mean MSE, LL, 90 % coverage and CRPS of ``model.posterior(test, method=method)`` at the
    problem's table time on the 201-point grid (the benchmark's scores)."""
    prob = model.problem
    x = prob.grid(201)
    truth = prob.solution(prob.table_time, x, test.params[:, None])[:, None]
    mass = prob.mass(prob.table_time, test.params)[:, None]
    sc = slice_scores(model.posterior(test, method=method), truth, x, mass)
    return {k: float(sc[k].mean()) for k in ("mse", "ll", "coverage90", "crps")}


def pivot(
    rows: list[dict],
    keys: Sequence[str],
    columns: Sequence[tuple[str, Callable[[dict], bool]]],
    cell: Callable[[dict], str],
    title: str,
    key_names: Sequence[str] | None = None,
) -> str:
    """Markdown table: one line per distinct ``keys`` tuple (first-seen order; headed
    ``key_names``, default the keys), one column per ``(name, selects_row)``; a cell is
    ``cell(row)`` of the first matching row, else ``–``."""

    def fmt(v) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    lines = [
        title,
        "",
        "| " + " | ".join([*(key_names or keys), *(name for name, _ in columns)]) + " |",
        "|" + "---|" * (len(keys) + len(columns)),
    ]
    seen: list[tuple] = []
    for r in rows:
        k = tuple(r[name] for name in keys)
        if k not in seen:
            seen.append(k)
    for k in seen:
        mine = [r for r in rows if tuple(r[name] for name in keys) == k]
        cells = []
        for _, selects in columns:
            hit = next((r for r in mine if selects(r)), None)
            cells.append("–" if hit is None else cell(hit))
        lines.append("| " + " | ".join([*(fmt(v) for v in k), *cells]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(
        "benchmarks/_probconserv_saved.py is a helper module of the rescoring scripts, not a "
        "script: run probconserv_edge.py, probconserv_margin.py, probconserv_mass_check.py or "
        "probconserv_selection.py"
    )
