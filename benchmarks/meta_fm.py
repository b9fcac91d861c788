"""Benchmark of Meta Flow Matching (issue 7): B1 letters, B2 linear map, B3 particles, B4 screen.

For every problem and seed: identity, floor (independent redraw of the true target), FM, CGFM,
MFM and an MFM ensemble (the MFM fit plus more seeds; MEMBERS per problem). Metrics per test
population (exact W1/W2 with POT, the anchor's RBF-MMD), averaged over test populations, then
mean and sd over seeds. The ensemble row adds the spread-vs-error Spearman and split-conformal 90%
coverage of per-population W2 (score W2 / spread, calibrated on the ``cal`` split); the spread
is the predictive one (members' disagreement plus the prediction's own sampling noise), and
``spearman_epistemic`` gives the Spearman of the members' disagreement alone.

    python benchmarks/meta_fm.py --quick --jobs 2 --out /tmp/mfm   # CPU-sized, 6-12 min on 2 cores
    python benchmarks/meta_fm.py --jobs 2       # fuller run, ~1 h on 2 cores, writes
                                                # benchmarks/results
    python benchmarks/meta_fm.py --problems B2 --steps 10000 --merge
                                # rerun one problem with its own settings, keep the others' rows
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import (
    bench_row,
    call_script,
    comma_ids,
    positive_int,
    recorded_command,
    write_results,
)
from bayesphys._cli_args import device_arg
from bayesphys._device import resolve_device
from bayesphys._files import out_folder_arg
from bayesphys.distributed import resolve_runner
from bayesphys.examples import _args
from bayesphys.meta_fm import (
    MetaFlowMatching,
    MFMEnsemble,
    floor_prediction,
    identity_prediction,
)
from bayesphys.meta_fm.ensemble import pooled_prediction

# the helper modules beside this script (the ablation scripts import these names from it)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta_fm_metrics import bures, mean_metrics, mean_r  # noqa: E402
from _meta_fm_presets import (  # noqa: E402
    CENTERED,
    CONDITIONING,
    FOURIER,
    FULL_STEPS,
    MEMBERS,
    NOISE_SPLITS,
    QUICK_STEPS,
    TASK_COST,
    model_kwargs,
    problem_data,
)
from _meta_fm_rows import (  # noqa: E402
    B1_ANCHOR,
    B1_SOURCE,
    METHODS,
    render_table,
    summarise,
    targets,
)

COMPONENT = "meta_fm"


def run_seed(
    pid: str,
    seed: int,
    quick: bool,
    steps: int,
    device,
    max_points,
    log,
    fourier: int = 64,
    conditioning: str = "concat",
    centered: bool = False,
) -> dict[str, dict]:
    data, setting, k = problem_data(pid, quick, seed)
    mfm_kw = model_kwargs(k, fourier, conditioning) | {"centered": centered}
    test, cal = data.subset("test"), data.subset("cal")
    res: dict[str, dict] = {}
    with_r = pid.startswith("B4")  # r needs d >= 3 features (the anchor's B4 metric)
    for meth, pred in (
        ("identity", identity_prediction(test)),
        ("floor", floor_prediction(test, seed=1000 + seed)),
    ):
        res[meth] = mean_metrics(pred, test.target, max_points)
        if with_r:
            res[meth]["r"] = mean_r(pred, test.target)
    models = {}
    for meth in ("FM", "CGFM", "MFM"):
        kw = mfm_kw if meth == "MFM" else model_kwargs(k, fourier, conditioning)
        m = MetaFlowMatching(data, method=meth, seed=seed, device=device, **kw)
        fit = m.fit(steps=steps, progress=False)
        pred = m.predict(test.source, test.treatment, features=test.source_features)
        res[meth] = mean_metrics(pred, test.target, max_points)
        if with_r:
            res[meth]["r"] = mean_r(pred, test.target)
        res[meth]["seconds"] = fit.seconds
        res[meth]["steps"] = fit.steps
        if pid == "B2":
            res[meth]["w2_bures"] = bures(pred, test)
        models[meth] = m
        log(f"{pid} seed {seed} {meth}: {res[meth]}")
    # ensemble: the MFM fit plus MEMBERS - 1 more seeds
    extra = [
        MetaFlowMatching(data, method="MFM", seed=seed + 100 * (j + 1), device=device, **mfm_kw)
        for j in range(MEMBERS[pid] - 1)
    ]
    t0 = time.perf_counter()
    for m in extra:
        m.fit(steps=steps, progress=False)
    ens = MFMEnsemble(models=[models["MFM"], *extra], seed=seed)
    unc = ens.uncertainty(
        cal, test, alpha=0.1, max_points=max_points, normalized=True, noise_splits=NOISE_SPLITS[pid]
    )
    row = {kk: float(np.mean([m[kk] for m in unc["test_metrics"]])) for kk in ("w1", "w2", "mmd")}
    row.update(
        spearman_spread_error=unc["spearman"],
        spearman_epistemic=unc["spearman_epistemic"],
        coverage90=unc["coverage"],
        coverage90_raw=unc["coverage_raw"],
        seconds=res["MFM"]["seconds"] + time.perf_counter() - t0,
        steps=MEMBERS[pid] * steps,
    )
    if pid == "B2":
        preds = ens.predict_members(test.source, features=test.source_features)
        pooled = [
            pooled_prediction([p[i] for p in preds], test.target[i].shape[0], seed=i)
            for i in range(len(test))
        ]
        row["w2_bures"] = bures(pooled, test)
        res["floor"]["w2_bures"] = bures(floor_prediction(test, seed=1000 + seed), test)
        res["identity"]["w2_bures"] = bures(identity_prediction(test), test)
    res["MFM-ensemble"] = row
    log(f"{pid} seed {seed} MFM-ensemble: {row}")
    res["_setting"] = {
        **setting,
        "steps": steps,
        "fourier": fourier,
        "conditioning": conditioning,
        "mfm_centered": centered,  # MFM and its ensemble only
        "noise_splits": NOISE_SPLITS[pid],
        "members": MEMBERS[pid],
    }
    return res


def run_task(
    task: tuple[str, int, int], quick: bool, device: str, max_points: int, fourier: int | None
) -> dict[str, dict]:
    """One ``(problem, seed, steps)`` task (a worker process's unit of work with ``--jobs``)."""
    pid, seed, steps = task
    t0 = time.perf_counter()
    res = run_seed(
        pid,
        seed,
        quick,
        steps,
        resolve_device(device),
        max_points,
        print,
        FOURIER[pid] if fourier is None else fourier,
        CONDITIONING[pid],
        CENTERED[pid],
    )
    res["_seconds"] = time.perf_counter() - t0
    return res


def _by_problem(events, tasks: list[tuple[str, int, int]], problems: list[str], seeds: int):
    """``(problem, per-seed results)`` for each problem as soon as all its seeds are in (in
    completion order, whatever order the tasks were submitted in). A failed task drops its
    problem and the others go on (a failure raised at once and lost the other problems'
    results still in flight); once every other problem is yielded (and written), a
    ``RuntimeError`` names the failed tasks, the first one's error as its cause."""
    done: dict[tuple[str, int], dict] = {}
    pending = list(problems)
    failed: list[tuple[tuple[str, int], BaseException]] = []
    while pending:
        i, ok, value = next(events)
        if not ok:
            failed.append((tasks[i][:2], value))
            if tasks[i][0] in pending:  # its other seeds cannot make a row
                pending.remove(tasks[i][0])
            continue
        done[tasks[i][:2]] = value
        for pid in [p for p in pending if all((p, s) in done for s in range(seeds))]:
            pending.remove(pid)
            yield pid, [done[(pid, s)] for s in range(seeds)]
    if failed:
        names = "; ".join(f"task {key} failed" for key, _ in failed)
        raise RuntimeError(f"{names} (the problems that finished were written)") from failed[0][1]


def longest_first(tasks: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """``tasks`` in the order to submit them: longest expected wall time first
    (:data:`TASK_COST`; ties keep their order), so that the workers of a pool finish together.
    The results do not depend on the order."""
    return sorted(tasks, key=lambda t: -TASK_COST.get(t[0], 0))


def merged_state(prev: dict, problems: list[str], cmd: str) -> tuple[list[dict], dict]:
    """What ``--merge`` keeps of the results file ``prev`` when ``problems`` are rerun by ``cmd``.

    Returns the rows of the other problems and ``{"targets", "steps", "task_seconds", "seed_w2",
    "runs", "run_seconds", "run_problems"}``: the other problems' targets, steps, task wall
    seconds and per-seed W2 (where the older file has them), the commands whose rows remain
    plus ``cmd``, the wall seconds of those earlier commands (``None`` where an older file did
    not record them; the caller appends this command's) and the problems each command ran
    (``None`` where an older file did not record them). An earlier command is dropped when
    every problem it ran is rerun now (none of its rows remain); one whose problems are not
    recorded is kept, since it cannot be told apart.
    """
    prev_runs = prev.get("runs", [prev["command"]])
    prev_secs = prev.get("run_seconds", [None] * (len(prev_runs) - 1) + [prev.get("total_seconds")])
    prev_probs = prev.get("run_problems", [None] * len(prev_runs))
    if not len(prev_runs) == len(prev_secs) == len(prev_probs):
        raise ValueError(
            f"results file: runs ({len(prev_runs)}), run_seconds ({len(prev_secs)}) and "
            f"run_problems ({len(prev_probs)}) must have one entry per command"
        )
    live = [i for i, ran in enumerate(prev_probs) if ran is None or not set(ran) <= set(problems)]
    kept = [r for r in prev["rows"] if r["problem"] not in problems]
    return kept, {
        "targets": {k: v for k, v in prev.get("targets", {}).items() if k not in problems},
        "steps": {k: v for k, v in prev.get("steps", {}).items() if k not in problems},
        "task_seconds": {
            k: v for k, v in prev.get("task_seconds", {}).items() if k not in problems
        },
        "seed_w2": {k: v for k, v in prev.get("seed_w2", {}).items() if k not in problems},
        "runs": [*(prev_runs[i] for i in live), cmd],
        "run_seconds": [prev_secs[i] for i in live],
        "run_problems": [*(prev_probs[i] for i in live), list(problems)],
    }


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(
        prog="bayesphys bench meta_fm", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    ap.add_argument("--quick", action="store_true", help="CPU-sized run (< 10 min on 2 cores)")
    ap.add_argument(
        "--out", type=out_folder_arg, default=None, help="output dir (quick default: a temp dir)"
    )
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--seeds", type=positive_int, default=None)
    ap.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help=f"training steps of every model (default: quick {QUICK_STEPS}, else {FULL_STEPS})",
    )
    ap.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="worker processes (1 thread each) over the (problem, seed) tasks; 1: in this "
        "process with 2 threads",
    )
    ap.add_argument(
        "--problems",
        type=comma_ids(FULL_STEPS, unique=True, what="problems"),
        default="B1,B2,B3,B4",
        help="comma-separated, some of B1,B2,B3,B4,B4-replica (B4's replica split)",
    )
    ap.add_argument(
        "--fourier",
        type=_args.int_in(0, 1_000_000),
        default=None,
        help="random Fourier features of x in every model's field (0: none; default: "
        f"per problem, {FOURIER})",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the other problems from the existing results file",
    )
    ap.add_argument(
        "--table",
        metavar="RESULTS_JSON",
        default=None,
        help="only print the docs table of a results file",
    )
    args = ap.parse_args(argv)
    if args.table:
        if not Path(args.table).is_file():
            ap.error(f"--table: no results file {args.table!r}")
        print(render_table(json.loads(Path(args.table).read_text(encoding="utf-8"))))
        return Path(args.table)
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    seeds = args.seeds or (2 if args.quick else 3)

    def steps_of(pid: str) -> int:
        return args.steps or (QUICK_STEPS if args.quick else FULL_STEPS[pid])

    max_points = 400 if args.quick else 1000
    out = args.out
    if out is None and args.quick:
        out = tempfile.mkdtemp(prefix="bench_meta_fm_")

    def log(msg: str) -> None:  # progress: stdout is kept for the "results: PATH" line
        print(msg, file=sys.stderr, flush=True)

    cmd = recorded_command(__file__, argv, device=str(device))
    problems = args.problems
    rows, checks, t_all = [], {}, time.perf_counter()
    task_secs: dict[str, list] = {}
    seed_w2: dict[str, dict[str, list]] = {}
    path = None
    kept, prev_extra = [], {}
    # the results file this run replaces: --out's (a quick run's fresh temp folder has none)
    old = (Path(out) if out else Path(__file__).resolve().parent / "results") / f"{COMPONENT}.json"
    if args.merge and old.exists():
        kept, prev_extra = merged_state(json.loads(old.read_text(encoding="utf-8")), problems, cmd)
    tasks = longest_first([(pid, s, steps_of(pid)) for pid in problems for s in range(seeds)])
    kw = dict(quick=args.quick, device=str(device), max_points=max_points, fourier=args.fourier)
    if args.jobs > 1:
        fn = functools.partial(call_script, __file__, "run_task", **kw)
        runner = resolve_runner("local", max_workers=args.jobs, threads_per_worker=1)
    else:
        fn = functools.partial(run_task, **kw)
        runner = resolve_runner("sequential", threads_per_worker=None)
    with runner:  # released on any exit; each problem is written once its seeds are in
        for pid, per_seed in _by_problem(runner.run(fn, tasks), tasks, problems, seeds):
            summ = summarise(per_seed)
            task_secs[pid] = [r.get("_seconds") for r in per_seed]
            # each seed's W2 (the rows keep mean and sd; the docs quote single seeds)
            seed_w2[pid] = {m: [r[m].get("w2") for r in per_seed] for m in METHODS}
            checks[pid] = targets(pid, summ)
            setting = per_seed[0]["_setting"]
            for meth in METHODS:
                anchor = None
                if pid == "B1" and meth in B1_ANCHOR:
                    anchor = {"source": B1_SOURCE, "metrics": B1_ANCHOR[meth]}
                note = None
                if meth == "MFM-ensemble":
                    note = "targets: " + ", ".join(
                        f"{k}: {'met' if v else 'MISSED'}" for k, v in checks[pid].items()
                    )
                rows.append(
                    bench_row(pid, meth, summ[meth], setting=setting, anchor=anchor, note=note)
                )
            log(f"{pid} done ({time.perf_counter() - t_all:.0f} s): {json.dumps(checks[pid])}")
            merged = bool(prev_extra)
            path = write_results(
                COMPONENT,
                sorted([*kept, *rows], key=lambda r: r["problem"]),
                quick=args.quick,
                command="runs: " + "; ".join(prev_extra["runs"]) if merged else cmd,
                out=out,
                device=str(device),
                extra={
                    "seeds": seeds,
                    "steps": {**prev_extra.get("steps", {}), **{p: steps_of(p) for p in problems}},
                    "jobs": args.jobs,
                    # with --jobs the fits run in worker processes with one thread each
                    **({"threads": f"{args.jobs} workers x 1"} if args.jobs > 1 else {}),
                    "max_eval_points": max_points,
                    # wall seconds of each (problem, seed) task in its worker
                    "task_seconds": {**prev_extra.get("task_seconds", {}), **task_secs},
                    "seed_w2": {**prev_extra.get("seed_w2", {}), **seed_w2},
                    "targets": {**prev_extra.get("targets", {}), **checks},
                    # this command's wall time; with --merge, run_seconds has every command's
                    "total_seconds": time.perf_counter() - t_all,
                    "complete": len(task_secs) == len(problems),
                    # the problems each command ran (a later --merge drops the commands
                    # none of whose rows remain)
                    "run_problems": prev_extra["run_problems"] if merged else [list(problems)],
                    **(
                        {
                            "runs": prev_extra["runs"],
                            "run_seconds": [
                                *prev_extra["run_seconds"],
                                time.perf_counter() - t_all,
                            ],
                        }
                        if merged
                        else {}
                    ),
                },
            )
    log(f"wrote {path}")
    return path


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        res = main()
        if res is not None:  # a results file (internal modes print their own output)
            print(f"results: {res}")
