"""Scale-out benchmark: fit_many wall time per executor, DDP throughput with 1 vs 2 processes.

* ``fit_many`` on N = 1, 4, 16 small inverse problems (the cohort example's linear-Gaussian
  model, fixed number of Adam steps so every problem costs the same) with each executor:
  ``sequential``, ``local`` (spawned processes), ``ray`` and ``dask``, 2 workers x 1 thread.
  *cold* rows include starting the pool/cluster and the workers' imports (what one call of
  ``fit_many(executor="ray")`` costs); *warm* rows pass an already started, warmed executor
  (what a long session or a real cluster sees). ``speedup`` = sequential seconds / seconds at
  the same N, measured right before each row (paired, because the load on the shared machine
  drifts); ``concurrency`` = sum of per-task seconds / wall seconds (at most the worker count);
  ``task_seconds_mean`` vs ``sequential_task_seconds_mean`` shows how much slower one task runs
  inside a worker than in the driver.
* DDP: samples per second of the ``ddp_training`` example with 1 and 2 gloo processes at the
  same global batch: the MLP surrogate through ``train_ddp``, and the random-grid neural process
  data-parallel inside ``RandomGridNP.fit`` (tasks per second); and each model with 1 process
  at half that batch, whose ``speedup_bound`` (2 x its samples/s over the 1-process row's) is
  the most 2 ranks stepping on half the batch each can gain before any all-reduce or waiting.

Each row records the 1-minute load average before it ran: the figures committed here were taken
on a 2-core machine shared with other jobs, so they are lower bounds on the speed-up.

Run: ``bayesphys bench scale_out [--quick]`` or ``python benchmarks/scale_out.py --quick``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from bayesphys._bench import bench_row, comma_ids, write_results
from bayesphys._files import out_folder_arg

WORKERS = 2
EXECUTORS = ("sequential", "local", "ray", "dask")  # the names _warm_executor knows
# sequential is every cohort row's paired baseline, not a row of its own
NO_COHORT_NOTE = (
    " No cohort rows: no executor other than sequential was asked for or importable, and"
    " sequential alone is only the paired baseline of the other executors' rows."
)
ANCHOR_2X = {
    "source": "issue 10: ideal for 2 workers on 2 cores (expect ~2x)",
    "metrics": {"speedup": 2.0},
}


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _cohort_rows(
    ns: list[int], executors: list[str], size: dict, steps: int, warm: bool = True
) -> list[dict]:
    from bayesphys.distributed import fit_many
    from bayesphys.examples.cohort import LinearGaussianModel, make_cohort

    fit_kwargs = {"steps": steps, "tol": None}

    def run(executor, n: int):
        probs = make_cohort(n, seed=0, **size)
        load = _load()
        t0 = time.perf_counter()
        res = fit_many(
            probs,
            LinearGaussianModel,
            executor=executor,
            seed=0,
            progress=False,
            max_workers=WORKERS,
            num_samples=100,
            fit_kwargs=fit_kwargs,
        )
        wall = time.perf_counter() - t0
        if res.failed:
            errors = res.table.loc[res.failed, "error"]
            raise RuntimeError(
                f"benchmark: {len(res.failed)} of {n} problems failed on {executor}: "
                + "; ".join(f"{pid}: {err}" for pid, err in errors.items())
            )
        return wall, float(res.table["seconds"].sum()), load

    rows = []
    # warm the parent's own first-use costs (arviz/xarray imports, torch.optim's dynamo import)
    run("sequential", 2)
    for name in executors:
        if name == "sequential":
            continue  # measured as the paired baseline of every row
        for mode in ("cold", "warm") if warm else ("cold",):
            ex, cleanup = name, None
            if mode == "warm":
                ex, cleanup = _warm_executor(name)
                run(ex, 2 * WORKERS)  # start the workers and their first-use imports
            try:
                for n in ns:
                    # paired baseline: the same N sequentially, right before (the machine's
                    # load drifts by minutes, so a baseline taken earlier is not comparable)
                    seq_wall, seq_sum, _ = run("sequential", n)
                    wall, task_sum, load = run(ex, n)
                    speed = seq_wall / wall
                    rows.append(
                        bench_row(
                            "cohort-linear-gaussian",
                            name,
                            {
                                "seconds": wall,
                                "sequential_seconds": seq_wall,
                                "speedup": speed,
                                "concurrency": task_sum / wall,
                                "task_seconds_mean": task_sum / n,
                                "sequential_task_seconds_mean": seq_sum / n,
                                "load1": load,
                            },
                            setting={
                                "n_problems": n,
                                "mode": mode,
                                "workers": WORKERS,
                                "steps": steps,
                                **size,
                            },
                            anchor=ANCHOR_2X if n == max(ns) else None,
                        )
                    )
                    print(
                        f"{name:6s} {mode:4s} N={n:2d}: {wall:6.2f} s vs sequential "
                        f"{seq_wall:6.2f} s  x{speed:4.2f}  per task {task_sum / n:5.2f} s vs "
                        f"{seq_sum / n:5.2f} s  load {load}",
                        file=sys.stderr,
                    )
            finally:
                if cleanup is not None:
                    cleanup()
    return rows


def _warm_executor(name: str):
    if name == "local":
        import concurrent.futures as cf
        import multiprocessing as mp

        from bayesphys.distributed._worker_threads import _init_worker

        pool = cf.ProcessPoolExecutor(
            WORKERS, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(1,)
        )
        return pool, lambda: pool.shutdown()
    if name == "ray":
        import ray

        ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
        return "ray", ray.shutdown
    if name == "dask":
        import dask
        from dask.distributed import Client, LocalCluster

        from bayesphys.distributed._pool_runners import _DASK_TRIM_KEY

        with dask.config.set({_DASK_TRIM_KEY: None}):  # as fit_many does (see _pool_runners.py)
            cluster = LocalCluster(
                n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
            )
        client = Client(cluster)

        def close():
            client.close()
            cluster.close()

        return client, close
    raise ValueError(name)


_SPIN = (
    "import time, sys\n"
    "n = int(sys.argv[1]); t0 = time.perf_counter(); acc = 0\n"
    "for i in range(n):\n    acc += i * i % 7\n"
    "print(time.perf_counter() - t0)"
)


def _spin(n: int, copies: int) -> list[float]:
    """Run ``copies`` bare Python processes at once, each an ``n``-iteration loop; their times."""
    import subprocess
    import sys

    procs = [
        subprocess.Popen([sys.executable, "-c", _SPIN, str(n)], stdout=subprocess.PIPE, text=True)
        for _ in range(copies)
    ]
    return [float(p.communicate()[0]) for p in procs]


def _probe_rows(quick: bool) -> list[dict]:
    """How much parallelism the machine offers right now: the same CPU-bound loop in 1 process
    alone vs in 2 processes at once. ``speedup = 2 t_1 / mean(t_2)`` bounds any executor."""
    n = 3_000_000 if quick else 10_000_000
    rows = []
    for _ in range(1 if quick else 3):
        load = _load()
        t1 = _spin(n, 1)[0]
        t2 = sum(_spin(n, WORKERS)) / WORKERS
        speed = WORKERS * t1 / t2
        rows.append(
            bench_row(
                "cpu-probe",
                "2 processes vs 1 (pure Python loop)",
                # sequential_seconds: the same work (WORKERS loops) in one process, so that
                # speedup = sequential_seconds / seconds as in the cohort rows
                {
                    "seconds": t2,
                    "sequential_seconds": WORKERS * t1,
                    "speedup": speed,
                    "load1": load,
                },
                setting={"iterations": n, "workers": WORKERS},
                anchor=ANCHOR_2X,
                note="upper bound on any executor's speed-up at that moment",
            )
        )
        print(
            f"cpu probe: 1 proc {t1:.2f} s, 2 at once {t2:.2f} s each -> x{speed:.2f}  load {load}",
            file=sys.stderr,
        )
    return rows


# the two data-parallel runs: (problem id, model flag, global batch, run length flag and value,
# label, metric name in the row, summary key of the test metric)
_DDP_RUNS = {
    "mlp": ("ddp-heat-surrogate", 128, "--epochs", (1, 6), "DDP gloo", "rel_l2"),
    "rgnp": ("ddp-rgnp-poisson", 64, "--steps", (10, 40), "RGNP data-parallel gloo", "nse_u"),
}


def _ddp_rows(model: str, quick: bool) -> list[dict]:
    """``ddp_training --model MODEL`` with 1 and 2 gloo processes at the same global batch, and
    one process at half that batch: the half-batch row's ``speedup_bound`` =
    2 x its samples/s / the one-process full-batch samples/s bounds what 2 ranks, each stepping
    on half the batch, can gain before any all-reduce or waiting (a batch of B/2 costs more than
    half a batch of B when the step has a fixed part)."""
    from bayesphys.examples import ddp_training

    problem, global_batch, length_flag, (n_quick, n_full), label, metric = _DDP_RUNS[model]
    length = n_quick if quick else n_full
    half = global_batch // 2
    rows, base = [], None
    # (processes, batch per process): the full-batch baseline first, the half-batch bound, then
    # two processes at the same global batch as the baseline
    for nproc, per_rank in ((1, global_batch), (1, half), (2, half)):
        with tempfile.TemporaryDirectory() as tmp:
            load = _load()
            argv = ["--model", model, "--out", tmp, "--nproc", str(nproc)]
            argv += [length_flag, str(length), "--batch-size", str(per_rank)]
            argv += ["--no-resume"] + (["--smoke"] if quick and model == "mlp" else [])
            s = ddp_training.main(argv)
        sps = s["samples_per_second"]
        base = base or sps
        metrics = {
            "steps_per_second": sps / (per_rank * nproc),
            "samples_per_second": sps,
            "seconds": s["train_seconds"],
            metric: s["test_value"],
            "load1": load,
        }
        bound = nproc == 1 and per_rank == half
        if bound:
            metrics["speedup_bound"] = WORKERS * sps / base
            method = f"{label} x1, half batch"
        else:
            metrics["speedup"] = sps / base
            method = f"{label} x{nproc}"
        rows.append(
            bench_row(
                problem,
                method,
                metrics,
                setting={
                    "nproc": nproc,
                    "global_batch": per_rank * nproc,
                    length_flag.lstrip("-"): length,
                    "threads_per_rank": 1,
                },
                anchor=ANCHOR_2X if nproc == 2 else None,
                note=(
                    "bound on 2 ranks at half the batch each: 2 x this row's samples/s over "
                    "the one-process full-batch row's"
                    if bound
                    else None
                ),
            )
        )
        extra = f"  bound x{metrics['speedup_bound']:.2f}" if bound else ""
        print(
            f"{model} x{nproc} batch {per_rank}: {sps:10.1f} samples/s{extra}  load {load}",
            file=sys.stderr,
        )
    return rows


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(
        prog="bayesphys bench scale_out", description=__doc__, allow_abbrev=False
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="N = 4 only, smaller problems, cold executors, 1 DDP epoch",
    )
    ap.add_argument("--out", type=out_folder_arg, default=None)
    ap.add_argument(
        "--device", default="cpu", help="cpu only (this benchmark measures CPU workers)"
    )
    ap.add_argument(
        "--executors",
        type=comma_ids(EXECUTORS, unique=True, what="executors"),
        default=",".join(EXECUTORS),
        help=f"comma-separated, some of {','.join(EXECUTORS)}; ray and dask are skipped with a "
        "note when not installed",
    )
    ap.add_argument("--no-ddp", action="store_true")
    args = ap.parse_args(argv)
    if args.device != "cpu":  # a usage error (exit 2), not a traceback
        ap.error(f"--device: this benchmark runs on cpu, received {args.device!r}")
    executors = args.executors
    torch.set_num_threads(1)
    available, skipped = [], []
    for e in executors:
        mod = {"ray": "ray", "dask": "dask.distributed"}.get(e)
        if mod:
            try:
                __import__(mod)
            except ImportError:
                print(
                    f"skip {e}: not installed (pip install 'bayesphys[distributed]')",
                    file=sys.stderr,
                )
                skipped.append(e)
                continue
            except Exception as err:  # noqa: BLE001 - a broken install: skip it, say why
                print(f"skip {e}: import failed ({type(err).__name__}: {err})", file=sys.stderr)
                skipped.append(e)
                continue
        available.append(e)
    if args.quick:
        ns, size, steps = [4], {"n": 150, "m": 60}, 60
    else:
        ns, size, steps = [1, 4, 16], {"n": 300, "m": 150}, 150
    cohort = any(e != "sequential" for e in available)
    if not cohort:
        print(NO_COHORT_NOTE.strip(), file=sys.stderr)
    rows = _probe_rows(args.quick)
    if cohort:  # sequential is measured as each row's paired baseline
        rows += _cohort_rows(ns, available, size, steps, warm=not args.quick)
    rows += _probe_rows(args.quick)
    if not args.no_ddp:
        rows += _ddp_rows("mlp", args.quick) + _ddp_rows("rgnp", args.quick)
    out = args.out
    if args.quick and out is None:
        out = tempfile.mkdtemp(prefix="bayesphys-bench-")
    cmd = "bayesphys bench scale_out" + (" --quick" if args.quick else "")
    if executors != list(EXECUTORS):  # the options that change the rows
        cmd += f" --executors {','.join(executors)}"
    if args.no_ddp:
        cmd += " --no-ddp"
    note = (
        "2-core machine, possibly shared with other jobs during the run; load1 = 1-minute "
        "load average before each row (2.0 = both cores busy). cold = pool/cluster start and "
        "worker imports included; warm = executor started and warmed beforehand."
    )
    if skipped:
        note += f" Skipped (not importable here): {', '.join(skipped)}."
    if not cohort:
        note += NO_COHORT_NOTE
    return write_results(
        "scale_out", rows, quick=args.quick, command=cmd, out=out, extra={"note": note}
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        res = main()
        if res is not None:  # a results file (internal modes print their own output)
            print(f"results: {res}")
