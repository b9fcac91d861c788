"""Benchmark of the GP-HM solver (Fang et al., ICLR 2024) on its PDE set:
``bayesphys bench gp_pde``.

For every problem two methods: ``GP-HM-ref-settings`` (the paper's objective and settings: U a
free parameter, Adam lr 0.01, Q = 30, linspace frequency init; run for a time budget, far fewer
than the paper's 1e5-3e6 steps; on the same collocation grid as ``GP-HM``, which for
advection is 400^2 where the paper used 200^2) and ``GP-HM`` (ours: U eliminated exactly,
periodogram init, cosine-decayed Adam on the hyperparameters). Metrics: ``rel_l2`` (of the iterate
the fit returns, 300 / 300^2 test grid: GP-HM the lowest-objective one,
``GPPDESolver.fit(keep_best)``, the paper-settings rows their last one, setting ``iterate``),
``rel_l2_best`` (minimum over evaluation checkpoints and the returned iterate, selected on the test
set as the reference code does -- labelled as such), ``coverage95`` (posterior 95% interval coverage
of the exact solution on the 300-point test grid in 1-D, on a uniform 40 x 40 grid over the
same box in 2-D, not the 300^2 error grid), ``seconds``, ``steps``, ``peak_mem_mb`` (the row's peak
resident size; Linux resets the process's peak before each row, elsewhere it is the process's
running maximum -- and so were the rows committed before 2026-12-01). The rows finished so far are
written after each one to ``gp_pde.partial.json`` (``"partial": true``; in ``--out``, else the
temporary folder), which a run cut short leaves, naming it, and a completed run removes. To finish
such a run, copy it as ``gp_pde.json`` into a folder DIR of its own (the copy replaces a results
file there) and rerun the problems not finished with the run's other options and
``--only ... --merge --out DIR``: DIR then holds the whole table.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import tempfile

import torch

from bayesphys._bench import (
    bench_row,
    comma_ids,
    partial_path,
    positive_int,
    read_previous_results,
    recorded_command,
    remove_partial,
    write_results,
)
from bayesphys._cli_args import device_arg
from bayesphys._device import resolve_device
from bayesphys._files import closing_figures, out_folder_arg, save_figure
from bayesphys.gp_pde import GPPDESolver

# the helper modules beside this script; _reset_peak and _peak_mb stay bound here (the tests)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _gp_pde_run import _maxrss_bytes, _peak_mb, _reset_peak, run_one  # noqa: E402, F401
from _gp_pde_settings import ANCHOR_NOTE, EXTRA, OURS, QUICK, REF_BUDGET  # noqa: E402


def _measure_child(n: int, kind: str) -> None:
    """Child process: one exact solve; prints ``cpu_seconds peak_delta_bytes``.

    Memory is measured, not modelled: peak RSS after the solve (``ru_maxrss``) minus the current
    RSS just before it (``/proc/self/statm``), i.e. the extra resident memory the solve needed
    (factors and data already built). A fresh process per point keeps the peaks independent.
    """
    import os
    import time

    from bayesphys.gp_pde.dense_solve import DenseSolve
    from bayesphys.gp_pde.operator import LinearPDEOperator, build_factors, with_eigen
    from bayesphys.gp_pde.solve import KronSolve

    torch.set_num_threads(1)
    m = GPPDESolver("poisson2d-sin100", n_col=n, num_mixtures=30, device="cpu", seed=0)
    op = LinearPDEOperator.for_equation("poisson", 2)
    with torch.no_grad():
        fac = build_factors(list(m.kernels), m.axes, op, jitter=1e-6)
        page = os.sysconf("SC_PAGE_SIZE")
        try:
            with open("/proc/self/statm", encoding="ascii") as fh:
                rss0 = int(fh.read().split()[1]) * page
        except OSError as err:  # pragma: no cover - not Linux
            raise RuntimeError("the scaling rows measure memory through /proc (Linux)") from err
        t0 = time.process_time()
        if kind == "kron":
            KronSolve(with_eigen(fac, op), op, 1.0, 200.0).solve(m.f, m.g)
        else:
            DenseSolve(fac, op, "prior").solve(m.f, m.g, 1.0, 200.0)
        dt = time.process_time() - t0
    peak = _maxrss_bytes()
    print(f"{dt} {max(peak - rss0, 0)}")


def scaling_rows(sizes: list[int], dense_max: int, device) -> list[dict]:
    """Time (CPU s, 1 thread) and measured peak memory of one exact solve of U on an n x n grid:
    Kronecker (``KronSolve``) vs dense (``DenseSolve``, the M x M system, M = n^2).

    Each point runs in a fresh subprocess (see :func:`_measure_child`); ``peak_mem_mb`` is
    measured, ``model_mem_mb`` the analytic float64 footprint (kron: factors O(n^2) + capacitance
    (4n)^2 + a few n^2 fields; dense: 5 M^2), used only to extrapolate the largest grid in 24 GiB.
    """
    import subprocess

    rows = []
    gib24 = 24 * 1024**3
    for n in sizes:
        for kind in ("kron", "dense"):
            if kind == "dense" and n > dense_max:
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--_measure", f"{n},{kind}"],
                capture_output=True,
                text=True,
                check=True,
                env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
            ).stdout.split()
            dt, mem = float(out[-2]), float(out[-1])
            model = 8 * (12 * n * n + (4 * n) ** 2 + 10 * n * n) if kind == "kron" else 40 * n**4
            rows.append(
                bench_row(
                    "scaling-poisson2d",
                    f"exact-solve-{kind}",
                    {
                        "cpu_seconds": dt,
                        "peak_mem_mb": mem / 2**20,
                        "model_mem_mb": model / 2**20,
                    },
                    setting={"n": n, "M": n * n},
                    note=None
                    if n != sizes[-1]
                    else (
                        f"largest n in 24 GiB: kron ~{int((gib24 / (8 * 38)) ** 0.5)}, "
                        f"dense ~{int((gib24 / 40) ** 0.25)} (memory model)"
                    ),
                )
            )
            print(
                f"scaling n={n:5d} {kind:5s} {dt:8.3f} cpu-s {mem / 2**20:10.1f} MB measured",
                file=sys.stderr,
                flush=True,
            )
    return rows


def scaling_plot(rows: list[dict], path: pathlib.Path) -> pathlib.Path:
    """Log-log time and measured memory vs M = n^2 for both solvers -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with closing_figures():
        fig, axs = plt.subplots(1, 2, figsize=(9, 3.6))
        for kind, mk in (("kron", "o-"), ("dense", "s--")):
            rs = [r for r in rows if r["method"] == f"exact-solve-{kind}"]
            mm = [r["setting"]["M"] for r in rs]
            axs[0].loglog(mm, [max(r["metrics"]["cpu_seconds"], 1e-4) for r in rs], mk, label=kind)
            axs[1].loglog(mm, [max(r["metrics"]["peak_mem_mb"], 1e-2) for r in rs], mk, label=kind)
        axs[0].set(xlabel="grid points M = n^2", ylabel="CPU s (1 thread)", title="one exact solve")
        axs[1].set(xlabel="grid points M = n^2", ylabel="peak extra RSS (MB, measured)")
        for a in axs:
            a.legend()
            a.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        save_figure(fig, path, dpi=120)
    return path


METHODS = ("GP-HM-ref-settings", "GP-HM", "GP-HM-extra")  # --methods


def main(argv: list[str] | None = None) -> pathlib.Path | None:
    ap = argparse.ArgumentParser(
        prog="bayesphys bench gp_pde", description=__doc__, allow_abbrev=False
    )
    ap.add_argument("--quick", action="store_true", help="tiny grids, a few steps (not committed)")
    ap.add_argument(
        "--out", type=out_folder_arg, default=None, help="output folder (quick default: a temp dir)"
    )
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or auto")
    # the ids of either table here; which table's ids --quick allows is checked after the parse
    ap.add_argument(
        "--only",
        type=comma_ids({**OURS, **QUICK}, nonempty=False, what="problem ids"),
        default=None,
        help="comma-separated problem ids",
    )
    ap.add_argument(
        "--methods",
        type=comma_ids(METHODS, what="methods"),
        default=",".join(METHODS),
        help="GP-HM-extra: the EXTRA rows (e.g. Allen-Cahn on a 200 x 200 collocation grid)",
    )
    ap.add_argument("--merge", action="store_true", help="keep existing rows that are not re-run")
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument(
        "--last-iterate",
        action="store_true",
        help="GP-HM rows return their last iterate (fit(keep_best=False), coarse stage "
        "included) instead of the lowest-objective one; the row's setting says iterate: last",
    )
    ap.add_argument(
        "--budget-scale",
        type=float,
        default=1.0,
        help="multiply the GP-HM rows' CPU-time budgets (e.g. to see where a run cut short by "
        "a slower machine ends; the row's setting records budget_cpu_s)",
    )
    ap.add_argument(
        "--scaling-only",
        action="store_true",
        help="append Kronecker-vs-dense scaling rows to the existing results",
    )
    ap.add_argument("--_measure", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # the combination: --quick runs the QUICK table, else OURS (the parse took either's ids)
    ids = QUICK if args.quick else OURS
    bad = [p for p in args.only or () if p not in ids]
    if bad:
        ap.error(f"--only: unknown problem ids {bad}; expected some of {list(ids)}")
    if args._measure:
        n, kind = args._measure.split(",")
        _measure_child(int(n), kind)
        return None  # the child prints its figures; no results file
    device = resolve_device(args.device)
    torch.set_num_threads(min(torch.get_num_threads(), args.threads))
    if args.scaling_only:
        import json

        if args.quick and args.out is None:  # quick rows are never committed
            args.out = tempfile.mkdtemp(prefix="bench_gp_pde_")
        out_dir = pathlib.Path(args.out) if args.out else None
        res_path = (out_dir or pathlib.Path(__file__).resolve().parent / "results") / "gp_pde.json"
        old = (
            json.loads(res_path.read_text(encoding="utf-8")) if res_path.exists() else {"rows": []}
        )
        rows = [r for r in old["rows"] if not r["problem"].startswith("scaling")]
        sizes = [16, 24, 32, 48] if args.quick else [25, 50, 70, 100, 200, 400, 800, 1600]
        srows = scaling_rows(sizes, 24 if args.quick else 70, device)
        rows += srows
        img = (out_dir or pathlib.Path(__file__).resolve().parents[1] / "docs") / "img"
        print(f"wrote {scaling_plot(srows, img / 'gp_pde_scaling.png')}", file=sys.stderr)
        cmd = old.get("command", "bayesphys bench gp_pde")
        if "--scaling-only" not in cmd:
            cmd += " ; scaling rows from benchmarks/gp_pde.py --scaling-only"
        path = write_results(
            "gp_pde",
            rows,
            quick=args.quick or old.get("quick", False),
            command=cmd,
            out=args.out,
            device=str(device),
            extra={"note": ANCHOR_NOTE},
        )
        return path
    if not (args.budget_scale > 0 and math.isfinite(args.budget_scale)):
        ap.error(f"--budget-scale: expected a finite number > 0, received {args.budget_scale}")
    table = QUICK if args.quick else OURS
    if args.only:
        table = {k: v for k, v in table.items() if k in args.only}
    rows = []
    out = args.out
    if args.quick and out is None:
        out = tempfile.mkdtemp(prefix="bench_gp_pde_")
    # the arguments as given (--only, --methods, --budget-scale, --threads change the rows)
    cmd = recorded_command(__file__, argv, device=str(device))
    partial = partial_path("gp_pde", out)
    partial_dir = partial.parent
    res_path = (
        pathlib.Path(out) if out else pathlib.Path(__file__).resolve().parent / "results"
    ) / "gp_pde.json"
    # the rows --merge keeps, read before the work: an unreadable file is refused now, not
    # after the rows were computed
    try:
        prev = read_previous_results(res_path) if args.merge else None
    except ValueError as err:
        ap.error(str(err))
    try:
        for problem, (mkw, fkw, budget) in table.items():
            for method in args.methods:
                if method == "GP-HM-ref-settings":
                    dim = "2" if ("2d" in problem or problem == "advection") else "1"
                    rkw = {k: v for k, v in mkw.items() if k == "n_col"}
                    rb = min(budget, REF_BUDGET[dim]) if not args.quick else budget
                    rows.append(
                        run_one(
                            problem,
                            method,
                            rkw,
                            dict(steps=10**6 if not args.quick else 5),
                            rb,
                            device,
                        )
                    )
                elif method == "GP-HM-extra":
                    if problem in EXTRA:
                        lab, ekw, efk, eb = EXTRA[problem]
                        eb *= args.budget_scale
                        if args.last_iterate:
                            efk = {**efk, "keep_best": False}
                        rows.append(run_one(problem, "GP-HM", ekw, efk, eb, device, label=lab))
                        if args.budget_scale != 1.0:
                            rows[-1]["setting"]["budget_cpu_s"] = eb
                else:
                    if args.last_iterate:
                        fkw = {**fkw, "keep_best": False}
                    gb = budget * args.budget_scale  # the problem's budget stays the ref rows'
                    rows.append(run_one(problem, method, mkw, fkw, gb, device))
                    if args.budget_scale != 1.0:
                        rows[-1]["setting"]["budget_cpu_s"] = gb
                # partial results after every row (a long run may be cut short), in a file of
                # their own: written as gp_pde.json into --out they replaced the results there
                # before --merge read them, and a run cut short left them as if complete
                write_results(
                    "gp_pde.partial",
                    rows,
                    quick=args.quick,
                    command=cmd,
                    out=partial_dir,
                    device=str(device),
                    extra={"partial": True, "note": ANCHOR_NOTE},
                    update_docs=False,
                )
    except BaseException as err:  # Ctrl-C too: say where the finished rows are
        print(
            f"gp_pde: stopped by {type(err).__name__} after {len(rows)} row(s)"
            + (f"; they are in {partial} (marked partial)" if rows else ""),
            file=sys.stderr,
            flush=True,
        )
        raise
    if prev is not None:  # the previous rows not re-run, then these
        import datetime

        done = {(r["problem"], r["method"]) for r in rows}
        old = [r for r in prev["rows"] if (r["problem"], r["method"]) not in done]
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cmd = prev.get("command", cmd) + f"; {sorted(done)} re-run {when} with `{cmd}`"
        order = list(OURS) + ["scaling-poisson2d"]
        rows = sorted(
            old + rows,
            key=lambda r: (
                order.index(r["problem"]) if r["problem"] in order else 99,
                r["method"],
                r["setting"].get("n", 0),
            ),
        )
    path = write_results(
        "gp_pde",
        rows,
        quick=args.quick,
        command=cmd,
        out=out,
        device=str(device),
        extra={"note": ANCHOR_NOTE},
    )
    remove_partial("gp_pde", out)  # the rows are in the results file now
    return path


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        res = main(sys.argv[1:])
        if res is not None:  # a results file (internal modes print their own output)
            print(f"results: {res}")
