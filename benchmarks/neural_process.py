"""Benchmark: random-grid neural processes (R0 = faithful reference setting, RGNP = ours).

Problems (see ``docs/neural_process.md`` and the anchor): P1 Poisson physics only, P2 Poisson
physics + 54 noisy sensors, P3 grid invariance of the inverse (N = 10, 30, 100, 199; uniform,
random, clustered), B1 Burgers, C1 cost (steps per second; steps for RGNP to reach R0's final
P1 error; ``SPEED``: seconds per step with 1 and 2 threads beside the reference code measured
side by side). RGNP trains for the same wall time as R0 on each problem.

    python benchmarks/neural_process.py [--quick] [--out DIR] [--device cpu] [--steps 500]
        [--only P1,C1,P3,P2,B1,P1-10,SPEED] [--merge]

``--only`` runs the listed rows (``P1-10``: R0's matched 10-step row); ``--merge`` keeps the rows
of the existing results file that were not re-run (rows are replaced per problem id, the
10-step row and the ``SPEED`` rows separately) and records both commands.

The rows of each part are written, once the part has finished, to
``neural_process.partial.json`` (``"partial": true``, the parts in ``"finished"``; in
``--out``, else the temporary folder): a run that stops (a part failing, Ctrl-C, a killed
process) leaves it, named on stderr, and the results file as it was; a completed run removes
it. To finish such a run, copy it as ``neural_process.json`` into a folder DIR of its own (the
copy replaces a results file there) and rerun the parts not finished with the run's other
options and ``--only ... --merge --out DIR`` (C1 and P3 need P1 in the same run): DIR then
holds the whole table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import (
    bench_row,
    comma_ids,
    comma_list,
    partial_path,
    positive_int,
    read_previous_results,
    recorded_command,
    remove_partial,
    write_partial,
    write_results,
)
from bayesphys._cli_args import device_arg
from bayesphys._device import resolve_device
from bayesphys._files import out_folder_arg
from bayesphys.examples import _args
from bayesphys.neural_process import (
    RandomGridNP,
    burgers_inverse_inputs,
    evaluate_burgers,
    evaluate_poisson,
    information_oracle,
    invariance_study,
    match_oracle_sigma,
)
from bayesphys.problems.rgnp import burgers_test_set, poisson_sensor_data, poisson_test_set

TF_SEC_PER_STEP = 1.3  # reference TF code, Poisson-lr, this machine (anchor sec. 3.4)
TF_10_STEPS = {
    "nse_u": 0.2028,
    "nse_z": 1.009,
    "coverage2sd_u": 0.807,
    "coverage2sd_z": 1.0,
    "steps_per_second": 1 / TF_SEC_PER_STEP,
}
SRC_TF = "reference TF code (phys-rgnp), run here: anchor sec. 3.4"
#: the reference TF code run side by side on this machine (recipe: docs/neural_process_notes.md,
#: "Side by side with the reference code"): seconds per step after the first (tracing) step of
#: 400-step P1 runs with the notebook's thread settings set to 1 or 2, nothing else running
TF_SIDE_BY_SIDE = {1: 0.1961, 2: 0.1186}
SRC_TF_SBS = "reference TF code run side by side here (docs/neural_process.md), batch 50"
KEYS = (
    "nse_u",
    "nse_u_sd",
    "nse_z",
    "nse_z_sd",
    "coverage2sd_u",
    "coverage2sd_z",
    "nll",
    "crps",
    "nll_z",
    "crps_z",
)


ALL_ROWS = ("P1-10", "P1", "C1", "P3", "P2", "B1", "SPEED")


def _group(row: dict) -> str:
    matched = str(row.get("note") or "").startswith("matched 10 steps")
    if row["problem"] == "C1" and "threads" in (row.get("setting") or {}):
        return "SPEED"
    return "P1-10" if row["problem"] == "P1" and matched else row["problem"]


def results_path(out: Path | None) -> Path:
    """The results file of a run writing to ``out`` (``None``: the committed one)."""
    return (out or Path(__file__).resolve().parent / "results") / "neural_process.json"


def merge_rows(rows: list[dict], cmd: str, old: dict | None) -> tuple[list[dict], str]:
    """Replace the groups re-run in ``rows`` inside the rows of ``old``, the existing results
    file (read before the run: :func:`~bayesphys._bench.read_previous_results`; ``None``:
    none, ``rows`` as they are)."""
    if old is None:
        return rows, cmd
    new_groups = {_group(r) for r in rows}
    merged: list[dict] = []
    placed: set[str] = set()
    for r in old["rows"]:
        g = _group(r)
        if g not in new_groups:
            merged.append(r)
        elif g not in placed:
            merged += [n for n in rows if _group(n) == g]
            placed.add(g)
    merged += [n for n in rows if _group(n) not in placed and _group(n) in new_groups - placed]
    kept = sorted({_group(r) for r in old["rows"]} - new_groups)
    return merged, f"{old['command']} · rows {', '.join(sorted(new_groups))} re-run by: {cmd}" + (
        f" (rows {', '.join(kept)} kept from the commands before)" if kept else ""
    )


def _pick(m: dict, keys=KEYS) -> dict:
    return {k: m[k] for k in keys if k in m}


SEED_KEYS = ("nse_u_seed_sd", "nse_z_seed_sd")
VAL_SEED = 11  # Poisson validation set for the variance calibration (test: 0, P2 sensors: 1)


def cost(res) -> dict:
    return {
        "steps": res.steps,
        "steps_per_second": res.steps / max(res.seconds, 1e-9),
        "seconds": res.seconds,
    }


def _seed_mean(evs: list[dict]) -> dict:
    """Mean of each metric over seeds, plus the seed sd of NSE_u / NSE_z (``*_seed_sd``)."""
    out = {k: float(np.mean([e[k] for e in evs])) for k in evs[0] if evs[0][k] is not None}
    for k in ("nse_u", "nse_z"):
        if k in out and len(evs) > 1:
            out[f"{k}_seed_sd"] = float(np.std([e[k] for e in evs], ddof=1))
    return out


def p3_spread(mean_rows: list[tuple[dict, dict]]) -> dict:
    """``spread_all`` (max/min NSE_z over every setting) and ``spread_<layout>`` (over N)."""
    v = [ev["nse_z"] for _, ev in mean_rows]
    out = {"spread_all": max(v) / min(v)}
    for lay in dict.fromkeys(st["layout"] for st, _ in mean_rows):
        w = [ev["nse_z"] for st, ev in mean_rows if st["layout"] == lay]
        out[f"spread_{lay}"] = max(w) / min(w)
    return out


def _raw_and_scales(raw: dict, cal: dict) -> dict:
    """Uncalibrated coverage / NLL / CRPS and the fitted variance multipliers."""
    keys = ("coverage2sd_u", "coverage2sd_z", "nll", "crps", "nll_z", "crps_z")
    return {
        **{f"{k}_raw": raw[k] for k in keys if k in raw},
        "var_scale_u": cal["field"],
        "var_scale_z": cal.get("parameters", 1.0),
    }


def _p1_seed(seed: int, test: dict, sub: dict, steps: int, val: dict, dev) -> dict:
    """P1 for one seed: R0 for ``steps``, RGNP for R0's wall time, then RGNP calibrated."""
    m_r0, r_r0 = _train("poisson", "R0", steps=steps, device=dev, seed=seed)
    e_r0 = _pick(evaluate_poisson(m_r0, test))
    r0_sub = evaluate_poisson(m_r0, sub)["nse_u"]
    trace: list[tuple[int, float]] = []

    def cb(model, step):
        trace.append((step, evaluate_poisson(model, sub)["nse_u"]))

    m_rg, r_rg = _train(
        "poisson",
        "RGNP",
        steps=10**7,
        seconds=r_r0.seconds,
        device=dev,
        seed=seed,
        callback=cb,
        every=max(5, steps // 20),
    )
    raw = _pick(evaluate_poisson(m_rg, test))
    cal = m_rg.calibrate(val["x"], val["u"], val["z"], val["w"], parameters=False)
    e_rg = {**_pick(evaluate_poisson(m_rg, test)), **_raw_and_scales(raw, cal)}
    print(
        f"  seed {seed}: R0 {e_r0['nse_z']:.3f}, RGNP {e_rg['nse_z']:.3f} (NSE_z)",
        file=sys.stderr,
        flush=True,
    )
    return {
        "R0": {**e_r0, **cost(r_r0)},
        "RGNP": {**e_rg, **cost(r_rg)},
        "cost_r0": cost(r_r0),
        "cost_rg": cost(r_rg),
        "steps_R0": r_r0.steps,
        "steps_RGNP": r_rg.steps,
        "hit": next((s for s, v in trace if v <= r0_sub), None),
        "r0_sub": r0_sub,
        "m_r0": m_r0,
        "m_rg": m_rg,
    }


def speed_rows(dev, *, chunk: int = 60, repeats: int = 5, warmup: int = 10) -> list[dict]:
    """Seconds per P1 training step of R0 and RGNP with 1 and 2 threads (median of ``repeats``
    chunks of ``chunk`` steps after ``warmup``), beside the reference code's side-by-side
    figure. Run it on an otherwise idle machine, as the reference was."""
    rows = []
    prev = torch.get_num_threads()
    try:
        for th in (1, 2):
            torch.set_num_threads(th)
            ref = TF_SIDE_BY_SIDE[th]
            for meth in ("R0", "RGNP"):
                model = RandomGridNP("poisson", meth, device=dev, seed=0)
                model.fit(steps=warmup, progress=False)
                per = []
                for _ in range(repeats):
                    r = model.fit(steps=chunk, progress=False)
                    per.append(r.seconds / r.steps)
                sec = float(np.median(per))
                print(
                    f"  speed {meth} threads={th}: {sec:.4f} s/step (reference {ref})",
                    file=sys.stderr,
                    flush=True,
                )
                rows.append(
                    bench_row(
                        "C1",
                        meth,
                        {
                            "sec_per_step": sec,
                            "steps_per_second": 1 / sec,
                            "speedup_vs_reference": ref / sec,
                            "batch": model.config.batch,
                        },
                        setting={"problem": "P1", "threads": th, "measure": "side by side"},
                        anchor={"source": SRC_TF_SBS, "metrics": {"sec_per_step": ref}},
                        note=f"target: speedup_vs_reference >= 5 (median of {repeats} x {chunk} "
                        "steps; the reference's figure is its 399 steps after tracing)",
                    )
                )
    finally:
        torch.set_num_threads(prev)
    return rows


def _train(
    problem,
    method,
    *,
    steps,
    seconds=None,
    device,
    data=None,
    seed=0,
    callback=None,
    every=50,
    log=print,
):
    model = RandomGridNP(problem, method, device=device, seed=seed)
    res = model.fit(
        data,
        steps=steps,
        progress=False,
        max_seconds=seconds,
        callback=callback,
        callback_every=every,
    )
    log(
        f"  {problem}/{method}: {res.steps} steps, {res.seconds:.1f} s, {res.message}, "
        f"final loss {res.final_loss:.4g}"
    )
    return model, res


def _run_parts(
    rows, finished, *, skip, seeds, steps, n_test, b_sec, q, test, sub, val, dev
) -> None:
    """The parts not in ``skip``, in order (P1-10; P1 with C1; P3; P2; B1; SPEED): their rows
    appended to ``rows``, and ``finished(part, ...)`` called once a part's rows are all in."""
    # matched-steps check against the reference TF run (10 steps, untrained pipeline)
    if "P1-10" not in skip:
        m10, r10 = _train("poisson", "R0", steps=10, device=dev)
        rows.append(
            bench_row(
                "P1",
                "R0",
                {**_pick(evaluate_poisson(m10, test)), **cost(r10)},
                setting={"steps": 10},
                anchor={"source": SRC_TF, "metrics": TF_10_STEPS},
                note="matched 10 steps: both are essentially untrained",
            )
        )
        finished("P1-10")
    p1 = {}
    if "P1" not in skip:
        per: list[dict] = []
        for sd in seeds:
            per.append(_p1_seed(sd, test, sub, steps, val, dev))
            p1.setdefault("R0", []).append(per[-1]["m_r0"])
            p1.setdefault("RGNP", []).append(per[-1]["m_rg"])
        anc = {"source": SRC_TF, "metrics": {"steps_per_second": 1 / TF_SEC_PER_STEP}}
        ns = {"seeds": len(seeds)} if len(seeds) > 1 else {}
        for meth in ("R0", "RGNP"):
            ev = _seed_mean([p[meth] for p in per])
            setting = {"steps": steps} if meth == "R0" else {"equal_wall_time_as": "R0"}
            rows.append(bench_row("P1", meth, ev, setting={**setting, **ns}, anchor=anc))
        if "C1" not in skip:
            hits = [p["hit"] for p in per]
            ratios = [None if h is None else h / steps for h in hits]
            rg = _seed_mean([p["cost_rg"] for p in per])
            r0 = _seed_mean([p["cost_r0"] for p in per])
            rows.append(
                bench_row(
                    "C1",
                    "RGNP",
                    {
                        "steps_per_second": rg["steps_per_second"],
                        "r0_steps_per_second": r0["steps_per_second"],
                        "speedup_vs_tf": rg["steps_per_second"] * TF_SEC_PER_STEP,
                        "r0_speedup_vs_tf": r0["steps_per_second"] * TF_SEC_PER_STEP,
                        "steps_to_r0_final_nse_u": None if None in hits else max(hits),
                        "r0_steps": steps,
                        "step_ratio": None if None in ratios else max(ratios),
                    },
                    setting={
                        "problem": "P1",
                        "r0_final_nse_u_200": float(np.mean([p["r0_sub"] for p in per])),
                        **ns,
                    },
                    anchor={"source": SRC_TF, "metrics": {"steps_per_second": 1 / TF_SEC_PER_STEP}},
                    note="targets: speedup_vs_tf >= 5; step_ratio <= 0.5 (RGNP steps to reach R0's "
                    "final P1 NSE_u on 200 test cases / R0 steps; the worst seed)",
                )
            )
        print(json.dumps(rows[-3:], indent=0, default=float)[:3000], file=sys.stderr, flush=True)
        finished("P1", *(["C1"] if "C1" not in skip else []))
    if "P3" not in skip and p1:
        spreads: dict[str, dict[str, float]] = {}
        for meth, models in p1.items():
            per_model = [invariance_study(m, test) for m in models]
            mean_rows = []
            for j, r in enumerate(per_model[0]):
                setting = {"n_points": r["n_points"], "layout": r["layout"], **ns}
                ev = _seed_mean(
                    [
                        {k: v for k, v in pm[j].items() if k not in ("n_points", "layout")}
                        for pm in per_model
                    ]
                )
                mean_rows.append((setting, ev))
                rows.append(bench_row("P3", meth, _pick(ev, KEYS + SEED_KEYS), setting=setting))
            spreads[meth] = p3_spread(mean_rows)
        for meth, sp in spreads.items():
            rows.append(
                bench_row(
                    "P3",
                    meth,
                    sp,
                    setting={"summary": "spread", **ns},
                    note="spread = max/min NSE_z: over all 12 (N, layout) settings, and over N "
                    "within each layout (flat in N); of the seed-mean errors",
                )
            )
        # information check: linearised Bayes error of any estimator, at the budget noise that
        # matches RGNP's own uniform N = 199 error (is the clustered loss information or network?)
        target = next(
            r["metrics"]["nse_z"]
            for r in rows
            if r["problem"] == "P3"
            and r["method"] == "RGNP"
            and r["setting"].get("n_points") == 199
            and r["setting"].get("layout") == "uniform"
        )
        sig = match_oracle_sigma(test, target)
        for r in information_oracle(test, sig):
            setting = {"n_points": r.pop("n_points"), "layout": r.pop("layout")}
            rows.append(
                bench_row(
                    "P3",
                    "oracle",
                    {**r, "sigma_budget": sig},
                    setting=setting,
                    note="linearised Bayes (Laplace) error of any estimator from the same points, "
                    "fixed information budget, noise matched to RGNP's uniform N=199 error "
                    "(200 cases; information_oracle)",
                )
            )
        finished("P3")
    if "P2" not in skip:
        data = poisson_sensor_data(n_test, seed=1)
        m_r0, r_r0 = _train("poisson", "R0", steps=steps, device=dev, data=data)
        m_rg, r_rg = _train(
            "poisson", "RGNP", steps=10**7, seconds=r_r0.seconds, device=dev, data=data
        )
        raw = _pick(evaluate_poisson(m_rg, test))
        cal = m_rg.calibrate(val["x"], val["u"], val["z"], val["w"], parameters=False)
        for meth, m, r in (("R0", m_r0, r_r0), ("RGNP", m_rg, r_rg)):
            extra = _raw_and_scales(raw, cal) if meth == "RGNP" else {}
            rows.append(
                bench_row(
                    "P2",
                    meth,
                    {**_pick(evaluate_poisson(m, test)), **cost(r), **extra},
                    setting={"steps": r.steps, "sensors": 54, "sigma_y": 0.05},
                )
            )
        print(json.dumps(rows[-2:], indent=0, default=float)[:2000], file=sys.stderr, flush=True)
        finished("P2")
    if "B1" not in skip:
        btest = burgers_test_set(20 if q else 100, seed=0)
        m_r0, r_r0 = _train("burgers", "R0", steps=10**7, seconds=b_sec, device=dev)
        m_rg, r_rg = _train("burgers", "RGNP", steps=10**7, seconds=r_r0.seconds, device=dev)
        # RGNP's parameter variance calibrated on validation cases with the evaluation's
        # inverse layout (225 random interior nodes per case); its field is left as trained
        bval = burgers_test_set(20 if q else 100, seed=VAL_SEED)
        raw = _pick(evaluate_burgers(m_rg, btest))
        xs, ts = bval["x"], bval["t"]
        xin, uin = burgers_inverse_inputs(bval, 225, seed=VAL_SEED)
        cal = m_rg.calibrate(
            np.stack(np.meshgrid(xs[1:-1:10], ts[1::5], indexing="ij"), -1).reshape(-1, 2),
            bval["u"][:, 1::5][:, :, 1:-1:10].transpose(0, 2, 1).reshape(len(bval["z"]), -1),
            bval["z"],
            bval["w"],
            x_inverse=xin,
            u_inverse=uin,
        )
        m_rg.variance_scale["field"] = 1.0
        cal["field"] = 1.0
        for meth, m, r in (("R0", m_r0, r_r0), ("RGNP", m_rg, r_rg)):
            extra = _raw_and_scales(raw, cal) if meth == "RGNP" else {}
            rows.append(
                bench_row(
                    "B1",
                    meth,
                    {**_pick(evaluate_burgers(m, btest)), **cost(r), **extra},
                    setting={"steps": r.steps, "n_test": len(btest["z"])},
                    note="field on a 49 x 20 interior (x, t) sub-grid; inverse "
                    "from 225 random interior reference values",
                )
            )
        print(json.dumps(rows[-2:], indent=0, default=float)[:2000], file=sys.stderr, flush=True)
        finished("B1")
    if "SPEED" not in skip:
        rows += speed_rows(dev, chunk=5 if q else 60, repeats=2 if q else 5, warmup=2 if q else 10)
        finished("SPEED")


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(
        prog="bayesphys bench neural_process",
        description=__doc__.splitlines()[0],
        allow_abbrev=False,
    )
    ap.add_argument("--quick", action="store_true", help="a few steps, small test sets")
    ap.add_argument(
        "--out", type=out_folder_arg, default=None, help="output folder (quick default: a temp dir)"
    )
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--steps", type=positive_int, default=None, help="R0 steps on P1/P2")
    ap.add_argument("--burgers-seconds", type=_args.float_in(0.0), default=None)
    ap.add_argument("--n-test", type=positive_int, default=None)
    ap.add_argument("--threads", type=positive_int, default=1)
    row_ids = comma_ids(ALL_ROWS, nonempty=False, what="rows")
    ap.add_argument(
        "--skip", type=row_ids, default="", help="comma list of P1,P2,P3,B1,C1,P1-10,SPEED to skip"
    )
    ap.add_argument(
        "--only", type=row_ids, default="", help="comma list of rows to run (the rest skipped)"
    )
    ap.add_argument("--merge", action="store_true", help="keep existing rows not re-run")
    ap.add_argument(
        "--seeds",
        type=comma_list(_args.seed, what="seeds"),
        default="0",
        help="comma list of seeds for P1, C1 and P3",
    )
    args = ap.parse_args(argv)
    seeds = args.seeds
    torch.set_num_threads(args.threads)
    q = args.quick
    steps = args.steps if args.steps is not None else (10 if q else 500)
    n_test = args.n_test if args.n_test is not None else (100 if q else 1000)
    b_sec = args.burgers_seconds if args.burgers_seconds is not None else (10.0 if q else 300.0)
    skip = set(args.skip)
    if args.only:
        skip |= set(ALL_ROWS) - set(args.only)
    needs_p1 = sorted({"C1", "P3"} - skip)
    if needs_p1 and "P1" in skip:  # they score P1's trained models: without P1, no row at all
        opt = "--only" if args.only else "--skip"
        ap.error(f"{opt}: {', '.join(needs_p1)} reuse the P1 row's trained models; keep P1")
    dev = str(resolve_device(args.device))  # the results record cpu or cuda, not auto
    out = args.out or (tempfile.mkdtemp(prefix="bench_np_") if q else None)
    # the rows --merge keeps, read before the work: an unreadable file is refused now, not
    # after the rows were computed
    try:
        prev = (
            read_previous_results(results_path(Path(out) if out else None)) if args.merge else None
        )
    except ValueError as err:
        ap.error(str(err))
    t_all = time.perf_counter()
    print(
        f"neural_process benchmark: quick={q} R0 steps={steps} n_test={n_test}",
        file=sys.stderr,
        flush=True,
    )
    test = poisson_test_set(n_test, seed=0)
    sub = {k: (v[:200] if k != "x" else v) for k, v in test.items()}
    # validation instances for RGNP's post-hoc variance calibration (never the test seed)
    val = poisson_test_set(50 if q else 200, seed=VAL_SEED)

    rows: list[dict] = []
    done: list[str] = []  # the parts whose rows are all in ``rows``
    cmd = recorded_command(__file__, argv, device=dev)
    partial = partial_path("neural_process", out)
    where = ""  # where the finished parts' rows are

    def finished(*parts: str) -> None:  # after each part: its rows kept on disk at once
        nonlocal where
        done.extend(parts)
        where = write_partial(
            "neural_process",
            rows,
            quick=q,
            command=cmd,
            out=partial.parent,
            device=dev,
            extra={"finished": list(done)},
        )

    try:
        _run_parts(
            rows,
            finished,
            skip=skip,
            seeds=seeds,
            steps=steps,
            n_test=n_test,
            b_sec=b_sec,
            q=q,
            test=test,
            sub=sub,
            val=val,
            dev=dev,
        )
    except BaseException as err:  # a late part failing, Ctrl-C: the finished parts are kept
        if done:
            print(
                f"neural_process: stopped by {type(err).__name__}; the rows of "
                f"{', '.join(done)} {where}",
                file=sys.stderr,
                flush=True,
            )
        raise
    if args.merge:
        rows, cmd = merge_rows(rows, cmd, prev)
    path = write_results(
        "neural_process",
        rows,
        quick=q,
        command=cmd,
        out=out,
        device=str(dev),
        extra={"total_seconds": time.perf_counter() - t_all},
    )
    if done:  # the rows are in the results file now
        remove_partial("neural_process", out)
    return path


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        res = main()
        if res is not None:  # a results file (internal modes print their own output)
            print(f"results: {res}")
