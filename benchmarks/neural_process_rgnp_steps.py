"""P2's RGNP row trained for a fixed number of steps instead of R0's wall time.

``benchmarks/neural_process.py`` trains RGNP on P2 for R0's wall time, so its step count (3095
in the committed row) moves with the machine's speed. This script trains it for ``--steps``
steps with no time budget, with the benchmark's own training (``_train``: seed 0, the P2
sensor data of seed 1), evaluation (``evaluate_poisson`` on the test cases of seed 0) and
variance calibration (the validation cases of seed 11, field only), and writes the row beside
the committed P2 RGNP row of ``benchmarks/results/neural_process.json``: for each of its
figures but its step count and timings (``steps_per_second``, ``seconds``), whether the rerun
gives it to the last bit and the relative difference (docs/neural_process.md, "Reproducing
the table on another machine").

    OMP_NUM_THREADS=1 python benchmarks/neural_process_rgnp_steps.py   # 3095 steps: 3-8 min

Writes ``benchmarks/results/neural_process_rgnp_steps.json`` (``--name``, ``--out`` to
change it); ``--smoke`` trains 3 steps on 20 test and 20 validation cases into a temporary
folder, with no comparison (the committed row is of the full sizes); ``--table
RESULTS_JSON`` prints a results file's rows.
"""

from __future__ import annotations

import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from bayesphys._bench import (
    ablation_parser,
    positive_int,
    print_rows_table,
    results_name_arg,
    script_module,
    write_rows,
)
from bayesphys.neural_process import evaluate_poisson
from bayesphys.problems.rgnp import poisson_sensor_data, poisson_test_set

NP = script_module(str(Path(__file__).with_name("neural_process.py")))  # the benchmark's parts
COMMITTED = Path(__file__).resolve().parent / "results" / "neural_process.json"
#: not compared: the step count (the input) and the timings
SKIP = ("steps", "steps_per_second", "seconds")


def committed_row() -> dict:
    """The committed P2 RGNP row of ``benchmarks/results/neural_process.json``."""
    rows = json.loads(COMMITTED.read_text(encoding="utf-8"))["rows"]
    (row,) = [r for r in rows if r["problem"] == "P2" and r["method"] == "RGNP"]
    return row


def p2_rgnp(steps: int, n_test: int, n_val: int) -> dict:
    """P2's RGNP metrics after ``steps`` training steps (no time budget), as the benchmark's
    P2 part computes them."""
    test = poisson_test_set(n_test, seed=0)
    val = poisson_test_set(n_val, seed=NP.VAL_SEED)
    data = poisson_sensor_data(n_test, seed=1)
    m, r = NP._train("poisson", "RGNP", steps=steps, device="cpu", data=data)
    raw = NP._pick(evaluate_poisson(m, test))
    cal = m.calibrate(val["x"], val["u"], val["z"], val["w"], parameters=False)
    return {**NP._pick(evaluate_poisson(m, test)), **NP.cost(r), **NP._raw_and_scales(raw, cal)}


def compare(got: dict, ref: dict) -> list[dict]:
    """Per figure of ``ref`` (step count and timings left out): the rerun, the committed
    value, exact equality and the relative difference."""
    rows = []
    for k, want in ref.items():
        if k in SKIP:
            continue
        have = got.get(k)
        rel = None
        if have is not None and want is not None:
            rel = abs(have - want) / abs(want) if want else abs(have - want)
        rows.append(
            {
                "metric": k,
                "rerun": have,
                "committed": want,
                "identical": have == want,
                "rel_diff": rel,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> Path:
    ap = ablation_parser(__doc__, jobs=False)
    ap.add_argument(
        "--steps", type=positive_int, default=3095, help="RGNP training steps (default 3095)"
    )
    ap.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    ap.add_argument(
        "--name",
        type=results_name_arg,
        default="neural_process_rgnp_steps",
        help="results file name",
    )
    ap.add_argument(
        "--smoke", action="store_true", help="3 steps, 20 test cases, into a temporary folder"
    )
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    n_test, n_val = (20, 20) if args.smoke else (1000, 200)  # the benchmark's full sizes
    if args.smoke:
        args.steps = 3
        args.out = args.out or tempfile.mkdtemp(prefix="bench_smoke_")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    got = p2_rgnp(args.steps, n_test, n_val)
    rows = [{"metric": k, "rerun": v} for k, v in got.items()]
    ref = None
    if not args.smoke:
        ref = committed_row()
        if ref["metrics"]["steps"] == args.steps:
            rows = compare(got, ref["metrics"])
    compared = [r for r in rows if "identical" in r]
    extra = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__.split("+")[0],
        "smoke": args.smoke,
        "steps": args.steps,
        "n_test": n_test,
        "n_val": n_val,
        "compared_with": None if not compared else "benchmarks/results/neural_process.json P2 RGNP",
        "identical": sum(r["identical"] for r in compared) if compared else None,
        "figures": len(compared) if compared else None,
        "training_seconds": got["seconds"],
    }
    path = write_rows(
        args.name, rows, script=__file__, argv=argv, out=args.out, extra=extra, started=started
    )
    if compared:
        print(f"{extra['identical']} of {extra['figures']} figures identical to the committed row")
    elif not args.smoke:
        print(f"the committed row trained {ref['metrics']['steps']:g} steps: no comparison")
    return path


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
