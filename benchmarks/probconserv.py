"""ProbConserv benchmark: GPME diffusion / PME / Stefan + Stefan shock position.

``bayesphys bench probconserv [--quick]`` or ``python benchmarks/probconserv.py [--quick]``.
The problems run on ``--jobs`` worker processes with one thread each (default 2; the quick
run took 315 s on 2 cores on 2026-12-02); ``--jobs 1`` runs them here with ``--threads``
threads (default 1). A problem's rows do not depend on where it runs: ``--jobs 2`` reproduces
``--jobs 1`` (one thread) bit for bit, and ``--problems stefan`` the full run's Stefan rows, on
the same machine (on another CPU the ANP's float32 training takes other bits: the GP rows
repeat, the ANP rows do not; rescoring saved models with ``--load-models`` repeats every row).
Trains, per problem, an ANP (Step 1), a SoftC-ANP (the ANP fine-tuned with the PDE-residual
penalty), a meta-learned GP and a SoftC-GP (the GP fine-tuned with the penalty on its predictive
mean) on freshly generated training functions, then scores on seeded
test sets (50 functions per test parameter; 201 points at the table time):
ANP / SoftC-ANP / HardC-ANP / ProbConserv-ANP (hybrid validation-fitted Sigma,
bayesphys.probconserv.calibration, with a parameter-conditional variance scale,
bayesphys.probconserv.conditional, and the mass-residual discrepancy,
bayesphys.probconserv.mass_check) / ProbConserv-ANP-model (the ANP's own low-rank Sigma, one
scalar scale) / ProbConserv-ANP-diag (the reference's diagonal Sigma, updated once after moment
matching) / ProbConserv-ANP-mixture (the reference's update: each latent draw's diagonal
Gaussian updated, then the mixture moment-matched) and GP / SoftC-GP / HardC-GP /
ProbConserv-GP / ProbConserv-GP-model. ``--load-models`` / ``--merge`` / ``--problems`` rerun
parts without retraining or losing the other rows (a ``--load-models`` folder without
``{problem}_SoftC-GP.pt`` has its other three models loaded and SoftC-GP trained from its
GP). A problem that fails does not stop the others; when a run stops (a failed problem,
Ctrl-C) the rows of the finished problems go to ``probconserv.partial.json``
(``"partial": true``; in ``--out``, else the temporary folder) and the results file is
left as it was; a later completed run into the same folder removes it. To finish such a run,
copy it as ``probconserv.json`` into a folder DIR of its own (the copy replaces a results
file there) and rerun the problems not finished with the run's other
options and ``--problems ... --merge --out DIR``.
Anchor figures: Hansen et al. 2023 Table 1 (diffusion) and the reference-checkpoint
measurements of the anchor file (PME, Stefan, shock).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from bayesphys._bench import (
    comma_ids,
    positive_int,
    recorded_command,
    remove_partial,
    repo_root,
    write_partial,
    write_results,
)
from bayesphys._cli_args import device_arg
from bayesphys._device import resolve_device
from bayesphys._files import out_folder_arg
from bayesphys.examples import _args
from bayesphys.problems.gpme import get_problem, make_dataset

# the helper modules beside this script; names that other code reaches on this script stay
# bound here (SETTINGS, calibration_options: _probconserv_saved.py; shock_metrics: the tests)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probconserv_results import _add_reference, _previous, _rewrite  # noqa: E402
from _probconserv_rows import NOTES, ranking_agreement, target_notes  # noqa: E402
from _probconserv_scoring import evaluate, shock_metrics  # noqa: E402, F401
from _probconserv_settings import (  # noqa: E402
    ANP_TRAIN_MARGIN,
    QUICK_STEP_SCALE,
    RANGE_MARGIN,
    RANGE_SCOPE,
    SETTINGS,
    calibration_options,
)
from _probconserv_train import MODELS, _train  # noqa: E402


def run(
    quick: bool,
    device: str = "cpu",
    seed: int = 0,
    log=print,
    scale: float = 1.0,
    save_models: str | None = None,
    problems: tuple[str, ...] = ("diffusion", "pme", "stefan"),
    load_models: str | None = None,
    prev_training: dict | None = None,
    retrain_softc: bool = False,
    anp_train_margin: float = ANP_TRAIN_MARGIN,
) -> tuple[list[dict], dict]:
    cfg = dict(SETTINGS["quick" if quick else "full"])
    for k in ("anp", "softc", "gp"):
        cfg[k] = max(1, int(cfg[k] * scale))
    dev = resolve_device(device)
    rows: list[dict] = []
    train_info: dict[str, dict] = {}
    for pname in problems:
        prob = get_problem(pname)
        cpu0 = time.process_time()
        steps = QUICK_STEP_SCALE.get(pname, 1.0) if quick else 1.0
        pcfg = cfg | {k: max(1, int(cfg[k] * steps)) for k in ("anp", "softc", "gp")}
        trained = _train(
            prob,
            pcfg,
            dev,
            seed,
            log,
            load_models,
            prev_training or {},
            retrain_softc,
            anp_train_margin,
        )
        train_info[f"{pname}/cpu"] = {"training_cpu_seconds": time.process_time() - cpu0}
        models = {}
        for key, (model, info) in trained.items():
            train_info[f"{pname}/{key}"] = info
            t_cal = time.perf_counter()
            beta = model.calibrate(**calibration_options(prob, cfg, seed))
            cal = model.calibration
            info["calibration"] = {
                "beta": beta,
                "neighbours": cal.neighbours,
                "selection": cal.selection,
                "prior_scale": cal.prior_scale,
                "post_scale": cal.post_scale,
                "cv_mse": {f"K={k},beta={b}": v for (k, b), v in cal.cv_mse.items()},
                "seconds": time.perf_counter() - t_cal,
            }
            if cal.mass_kappa is not None:
                info["calibration"]["mass_check"] = {
                    "kappa": cal.mass_kappa,
                    "length": cal.mass_length,
                    "margin": cal.mass_margin,
                }
            if cal.local is not None:
                info["calibration"]["local"] = {
                    "functions": cfg["n_local"],
                    "range_margin": RANGE_MARGIN,
                    "range_scope": RANGE_SCOPE,
                    "bandwidth": {st: str(h) for st, h in cal.local.bandwidth.items()},
                    "cv_binned_coverage_error": {
                        st: {str(h): e for h, e in d.items()} for st, d in cal.local.cv.items()
                    },
                }
            log(
                f"[{pname}] {key} hybrid calibration K {cal.neighbours} beta {beta} scales "
                f"{cal.prior_scale:.3g}/{cal.post_scale:.3g}"
                + (f" local bandwidth {cal.local.bandwidth}" if cal.local is not None else "")
            )
            models[key] = (model, info["seconds"] + info["calibration"]["seconds"])
        # without the hybrid: the model's own Sigma with one scalar variance scale, the
        # reference's diagonal Sigma (same scalar calibration), and the reference's Step 2 on
        # each latent draw (the same Step 1 as ANP-diag)
        for key, base, cov in (
            ("ANP-model", "ANP", "lowrank"),
            ("ANP-diag", "ANP", "diag"),
            ("ANP-mixture", "ANP", "mixture"),
            ("GP-model", "GP", None),
        ):
            m = copy.deepcopy(trained[base][0])
            if cov:
                m.config.covariance = cov
            m.calibrate(seed=777 + seed, n_functions=cfg["n_val"], objective="ll")
            models[key] = (m, models[base][1])
        if save_models:
            for key in MODELS:
                models[key][0].save(Path(save_models) / f"{pname}_{key}.pt")
        tests = [
            (param, make_dataset(prob, params=[param] * cfg["n_test"], seed=10_000 + seed))
            for param in prob.test_params
        ]
        rows += evaluate(prob, models, tests, cfg["shock_draws"], seed, log)
    return rows, train_info


# the problems' relative training cost (one-thread CPU seconds of the full run: diffusion 508,
# PME 464, Stefan 593; --quick trains Stefan twice as long): the longest is submitted first
PROBLEM_COST = {"diffusion": 1.0, "pme": 0.9, "stefan": 1.2}


def run_problem(pname: str, **kwargs) -> dict:
    """:func:`run` for one problem (a worker process's unit of work with ``--jobs``): its
    rows, training records and wall / CPU seconds."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows, train_info = run(problems=(pname,), **kwargs)
    return {
        "rows": rows,
        "training": train_info,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - cpu0,
    }


def run_problems(problems: tuple[str, ...], jobs: int, **kwargs) -> tuple[list[dict], dict, dict]:
    """:func:`run_problem` for every problem, on ``jobs`` worker processes with one thread each
    (longest first, :data:`PROBLEM_COST`), or here when ``jobs == 1``; rows and training records
    in the order of ``problems``, and each problem's wall and CPU seconds (in its worker)."""
    from bayesphys._bench import call_script
    from bayesphys.distributed import resolve_runner

    order = sorted(
        problems,
        key=lambda p: (
            -PROBLEM_COST.get(p, 1.0)
            * (QUICK_STEP_SCALE.get(p, 1.0) if kwargs.get("quick") else 1.0)
        ),
    )
    if jobs > 1:
        fn = functools.partial(call_script, __file__, "run_problem", **kwargs)
        runner = resolve_runner("local", max_workers=jobs, threads_per_worker=1)
    else:
        fn = functools.partial(run_problem, **kwargs)
        runner = resolve_runner("sequential", threads_per_worker=None)
    done: dict[str, dict] = {}
    failed: dict[str, BaseException] = {}
    try:
        with runner:  # released on any exit (an error, Ctrl-C)
            for i, ok, value in runner.run(fn, order):
                if not ok:  # the others go on: their hours of training are not thrown away
                    failed[order[i]] = value
                    print(f"[{order[i]}] FAILED: {type(value).__name__}: {value}", file=sys.stderr)
                    continue
                done[order[i]] = value
                print(
                    f"[{order[i]}] done in {value['seconds']:.0f} s ({len(done)} of {len(order)})",
                    file=sys.stderr,
                )
        if failed:
            names = ", ".join(repr(p) for p in failed)
            raise RuntimeError(
                f"problem {names} failed" if len(failed) == 1 else f"problems {names} failed"
            ) from next(iter(failed.values()))
    except BaseException as err:  # a failed problem, Ctrl-C: the finished problems go with it
        err.finished = _collected([p for p in problems if p in done], done)
        raise
    return _collected(problems, done)


def _collected(problems, done: dict[str, dict]) -> tuple[list[dict], dict, dict]:
    """Rows, training records and seconds of ``problems`` (finished, in ``done``), in order."""
    rows = [r for p in problems for r in done[p]["rows"]]
    train_info = {k: v for p in problems for k, v in done[p]["training"].items()}
    seconds = {p: {k: done[p][k] for k in ("seconds", "cpu_seconds")} for p in problems}
    return rows, train_info, seconds


def _keep_finished(err: BaseException, out: str | None, args, argv) -> None:
    """The rows of the problems that finished before ``err`` stopped the run (a problem
    failed, Ctrl-C) written to ``probconserv.partial.json`` (``"partial": true``; in ``out``,
    else the temporary folder; the results file is left as it was), and where, on stderr."""
    rows, train_info, seconds = getattr(err, "finished", ([], {}, {}))
    if not rows:
        return
    where = write_partial(
        "probconserv",
        rows,
        quick=args.quick,
        command=recorded_command(__file__, argv, device=args.device),
        out=out,
        device=args.device,
        extra={"training": train_info, "problem_seconds": seconds},
    )
    print(
        f"probconserv: stopped by {type(err).__name__}; the rows of the finished problems "
        f"{', '.join(seconds)} {where}",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(
        prog="bayesphys bench probconserv", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    ap.add_argument("--quick", action="store_true", help="short training, 20 test functions")
    ap.add_argument(
        "--out", type=out_folder_arg, default=None, help="output folder (quick default: a temp dir)"
    )
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--seed", type=_args.seed, default=0)
    ap.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        help="worker processes over the problems, one thread each (default: 2, or 1 when "
        "--threads is given or one problem runs); 1: in this process with --threads threads",
    )
    ap.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads of this process with --jobs 1 (default 1: every problem's rows are then "
        "those of a worker's)",
    )
    ap.add_argument(
        "--scale", type=_args.float_in(0.0), default=1.0, help="multiply all training steps"
    )
    ap.add_argument("--save-models", default=None, help="folder for the trained Step-1 models")
    ap.add_argument(
        "--problems",
        type=comma_ids(("diffusion", "pme", "stefan"), what="problems"),
        default="diffusion,pme,stefan",
    )
    ap.add_argument(
        "--anp-train-margin",
        type=_args.nonnegative_float,
        default=None,
        help="widen the ANP's training range by this fraction at each end (default "
        f"{ANP_TRAIN_MARGIN})",
    )
    ap.add_argument(
        "--reference",
        nargs=2,
        metavar=("MODELS", "DATA"),
        default=None,
        help="only add rows scoring the saved models in MODELS on the reference test sets in "
        "DATA (pme_test.npz, stefan_test.npz) to the existing results file",
    )
    ap.add_argument(
        "--load-models",
        default=None,
        help="skip training: load {problem}_{ANP,SoftC-ANP,GP,SoftC-GP}.pt from this folder "
        "(written by --save-models; without {problem}_SoftC-GP.pt, SoftC-GP is fine-tuned from "
        "the loaded GP); training seconds are taken from the existing results file",
    )
    ap.add_argument(
        "--retrain-softc",
        action="store_true",
        help="with --load-models: fine-tune SoftC-ANP and SoftC-GP afresh from the loaded ANP "
        "and GP",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the problems not in --problems from the existing results file "
        "(probconserv.json in --out, else the committed one); a stopped run's "
        "probconserv.partial.json is not read: copy it as probconserv.json into a folder of "
        "its own and give that as --out (benchmarks/probconserv.py's docstring)",
    )
    ap.add_argument(
        "--retarget",
        action="store_true",
        help="only rewrite the target notes (and the docs table) of the existing results file",
    )
    args = ap.parse_args(argv)
    args.device = str(resolve_device(args.device))  # the results record cpu or cuda, not auto
    if args.load_models and args.anp_train_margin is not None:
        ap.error(
            "--anp-train-margin: loaded models keep the margin they were trained with (recorded "
            "as train_margin); give it only when training"
        )
    n_problems = len(args.problems)
    if args.reference or args.retarget:
        args.jobs = 1  # these modes train nothing
    elif args.jobs is None:
        args.jobs = 1 if args.threads is not None else min(2, n_problems)
    if args.jobs > 1 and args.threads not in (None, 1):
        ap.error(
            f"--threads {args.threads}: with --jobs {args.jobs} each worker runs one thread; "
            "give --jobs 1 to run here with more threads"
        )
    # one thread unless asked: a problem's rows are the same whether it runs alone (a
    # --problems stefan --merge refresh), in a worker or beside the others
    args.threads = args.threads or 1
    torch.set_num_threads(args.threads)
    if (args.reference or args.retarget) and args.quick and args.out is None:
        # they rewrite an existing results file: without --out that is the committed one
        opt = "--reference" if args.reference else "--retarget"
        ap.error(
            f"{opt}: rewrites the results file in --out (default: the committed one); "
            "with --quick give --out"
        )
    if args.reference:
        return _add_reference(args)
    if args.retarget:
        return _rewrite(args, lambda payload: payload["rows"], {"notes": NOTES})
    out = args.out
    if out is None and args.quick:
        out = tempfile.mkdtemp(prefix="bench_probconserv_")
    prev = _previous(out)
    problems = tuple(args.problems)
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        rows, train_info, problem_seconds = run_problems(
            problems,
            min(args.jobs, len(problems)),
            quick=args.quick,
            device=args.device,
            seed=args.seed,
            scale=args.scale,
            save_models=args.save_models,
            load_models=args.load_models,
            prev_training=prev.get("training", {}),
            retrain_softc=args.retrain_softc,
            anp_train_margin=ANP_TRAIN_MARGIN
            if args.anp_train_margin is None
            else args.anp_train_margin,
        )
    except BaseException as err:
        _keep_finished(err, out, args, argv)
        raise
    total, total_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    jobs = min(args.jobs, len(problems))
    if jobs > 1:  # the workers' CPU time (this process only waited)
        total_cpu = sum(s["cpu_seconds"] for s in problem_seconds.values())
    # the arguments as given (thread count, model folders): a --threads 2 and a --threads 1
    # run train the float32 ANP differently
    cmd = recorded_command(__file__, argv, device=args.device)
    if args.merge and prev:
        keep = [r for r in prev["rows"] if r["problem"].split("-")[0] not in problems]
        rows = keep + rows
        train_info = {
            **{
                k: v for k, v in prev.get("training", {}).items() if k.split("/")[0] not in problems
            },
            **train_info,
        }
    runs = list(prev.get("runs", [])) if args.merge else []
    runs.append(
        {
            "problems": list(problems),
            "seconds": total,
            "cpu_seconds": total_cpu,
            "jobs": jobs,
            "threads": 1 if jobs > 1 else args.threads,  # of each process that fitted
            # each problem's wall and CPU seconds in its worker (or here, with --jobs 1)
            "problem_seconds": problem_seconds,
            "load_models": args.load_models,
            "argv": list(argv) if argv is not None else sys.argv[1:],
        }
    )
    extra = {}
    full_path = repo_root() / "benchmarks" / "results" / "probconserv.json"
    if args.quick and full_path.exists():
        full = json.loads(full_path.read_text(encoding="utf-8"))
        if not full.get("quick"):
            agreement = ranking_agreement(rows, full["rows"])
            extra["ranking_vs_full"] = agreement
            print(
                f"ranking vs the full table (benchmarks/results/probconserv.json): "
                f"{agreement['agree']} of {agreement['pairs']} (model, setting) pairs agree "
                f"({agreement['agree_strict']} in sign; {agreement['ties']} full-table ties "
                f"within one standard error); disagree: {agreement['disagree']}",
                file=sys.stderr,
            )
    if jobs > 1:  # the fits ran in worker processes with one thread each
        extra["threads"] = f"{jobs} workers x 1"
    extra |= {
        "total_seconds": total,
        "total_cpu_seconds": total_cpu,
        "runs": runs,
        "training": train_info,
        "reference_training_cost": "reference ANP: ~3 s/step x 20k steps (~16-19 h) on this "
        "2-core machine (anchor §4)",
        "notes": NOTES,
    }
    path = write_results(
        "probconserv",
        target_notes(rows),
        quick=args.quick,
        command=cmd,
        out=out,
        device=args.device,
        extra=extra,
    )
    remove_partial("probconserv", out)  # an earlier stopped run's file is not left beside this one
    print(f"wrote {path} in {total:.0f}s", file=sys.stderr)
    return path


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        os.environ.setdefault("OMP_NUM_THREADS", "2")
        res = main()
        if res is not None:  # a results file (internal modes print their own output)
            print(f"results: {res}")
