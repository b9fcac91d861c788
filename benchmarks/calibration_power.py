"""Null level and power of the calibration checks on posteriors of known calibration.

No model is trained: ``theta ~ N(0, I_K)``, ``x = theta + N(0, I_K)``, so the exact posterior is
``N(x / 2, I / 2)``; its ``L`` draws are then made too narrow (sd x 0.7), too wide (sd x 1.5) or
biased (mean + 0.5 sd). ``decorrelated`` (``K = 2``) has prior correlation 0.9, so the exact
posterior has correlation 0.76, and draws with the exact marginals but independent
coordinates: the marginals are calibrated, only the joint is wrong. Each case is run ``--reps``
times at the sizes of ``bayesphys calibrate`` (N problems, L draws) and each check's rejection
rate is printed as a markdown table (the numbers in docs/calibration.md, "Power at the default
sizes"; the run writes ``benchmarks/results/calibration_power.json``)::

    python benchmarks/calibration_power.py --reps 300

Checks: ``sbc_pvalue < 0.01`` (chi-square, Bonferroni over K), ``sbc_pvalue_ks < 0.01``,
``tarp_pvalue < 0.01``, a rank ECDF leaving the simultaneous 95 % band somewhere (the band of
the PIT-ECDF plot; any of the K curves), ``not is_calibrated`` (``sbc_pvalue < 0.01`` or
``coverage90`` outside ``[0.85, 0.95]``), and ``sbc_pvalue_joint < 0.01`` /
``sbc_pvalue_joint_ks < 0.01`` (chi-square / KS test of the pooled Mahalanobis ranks of the
summary vector, ``diagnostics.sbc_joint_ranks``; computed by ``analyse`` for ``K >= 2`` only,
``-`` in the ``K = 1`` rows). ``--joint-only`` runs only the ``K >= 2`` cases (their table in
docs/calibration_notes.md)::

    python benchmarks/calibration_power.py --reps 300 --recal-reps 0 --joint-only --name calibration_power_joint

``--crossfit`` prints instead the rejection rates (``p < 0.01``) of the cross-fitted joint test
(``diagnostics.sbc_joint_crossfit``, chi-square and KS) beside the pooled Mahalanobis rank's
(``sbc_joint_ranks`` with ``sbc_uniformity``) on the same records of the ``K >= 2`` cases
(docs/calibration_notes.md, "Joint rank")::

    python benchmarks/calibration_power.py --crossfit --reps 300 --name calibration_power_crossfit

A second table (``--recal-reps``, 0 skips it) fits the record recalibration maps
(``zscore``, ``affine``, ``shape``) on ``n_fit`` held-out problems of the *exact* posterior and
applies them to ``N`` further ones, as ``calibration_rows(..., recalibrate=n_fit)`` does for a
rejected row: how much a map fitted on finitely many problems degrades a calibrated posterior
(docs/calibration_notes.md, "Recalibrating a calibrated posterior")::

    python benchmarks/calibration_power.py --reps 0 --recal-reps 50 --name calibration_power_recal

Each ``recal`` row also gives the fitted maps' ``scale_mean``, ``scale_sd``, ``shift_mean`` and
``shift_sd`` over the repetitions (the maps' own estimation error; the z-score map has no
shift)::

    python benchmarks/calibration_power.py --reps 0 --recal-reps 100 --name calibration_power_recal_maps

``--size N L`` runs only that size and ``--case NAME`` (repeatable) only those posteriors, in the
first table, ``--crossfit`` or ``--draws-gaussian``; e.g. the cross-fitted test's level over 600
runs of the exact ``K = 2`` posterior at ``N = 100``, ``L = 99``::

    python benchmarks/calibration_power.py --crossfit --reps 600 --size 100 99 --case "exact K=2" --name calibration_power_crossfit_null

``--draws-gaussian`` prints instead the rejection rates of the rank of the truth's Mahalanobis
distance under a Gaussian fitted to the draws alone (not exact: docs/calibration.md, "Limits")
beside the pooled rank's, on the same records::

    python benchmarks/calibration_power.py --draws-gaussian --reps 200 --size 200 9 --case "exact K=2" --name calibration_power_draws_gaussian

Besides the printed tables, every run writes their rows to
``benchmarks/results/calibration_power.json`` (``--name`` and ``--out`` to change it; each row's
``table`` says which table it belongs to: ``power``, ``crossfit``, ``draws_gaussian`` or
``recal``), with the
command, date, seed, repetitions and wall time; ``--table RESULTS_JSON`` prints a results
file's rows.
"""  # noqa: E501

from __future__ import annotations

import datetime
import time
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import (
    ablation_parser,
    positive_int,
    print_rows_table,
    recorded_command,
    results_name_arg,
    threading_info,
    write_results_json,
)
from bayesphys.diagnostics import (
    SimulationRecord,
    analyse,
    ecdf_band,
    fit_record_recalibration,
    is_calibrated,
    pit_ecdf,
    sbc_joint_crossfit,
    sbc_joint_ranks,
    sbc_uniformity,
)

SIZES = ((50, 49), (100, 49), (200, 99), (500, 99))
CASES = {  # name: (K, sd factor, bias in posterior sd, prior correlation)
    "exact": (1, 1.0, 0.0, 0.0),
    "narrow x0.7": (1, 0.7, 0.0, 0.0),
    "wide x1.5": (1, 1.5, 0.0, 0.0),
    "bias 0.5 sd": (1, 1.0, 0.5, 0.0),
    "exact K=2": (2, 1.0, 0.0, 0.9),
    "decorrelated K=2": (2, 1.0, 0.0, 0.9),
}


def record(case: str, n: int, n_draws: int, g: torch.Generator) -> SimulationRecord:
    """Truth ``[n, K]`` and draws ``[n, L, K]`` of one repetition of ``case``."""
    k, width, bias, rho = CASES[case]
    prior = torch.full((k, k), rho, dtype=torch.float64).fill_diagonal_(1.0)
    theta = torch.randn(n, k, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(prior).T
    x = theta + torch.randn(n, k, generator=g, dtype=torch.float64)
    cov = torch.linalg.inv(torch.linalg.inv(prior) + torch.eye(k, dtype=torch.float64))
    mean = x @ cov.T  # cov is symmetric: the posterior mean cov x
    chol = torch.linalg.cholesky(cov)
    if case.startswith("decorrelated"):
        chol = cov.diagonal().sqrt().diag()  # the exact marginals, no correlation
    eps = torch.randn(n, n_draws, k, generator=g, dtype=torch.float64)
    sd = cov.diagonal().sqrt()
    draws = mean[:, None, :] + bias * sd + width * eps @ chol.T
    return SimulationRecord(names=[f"theta_{j}" for j in range(k)], truth=theta, draws=draws)


def rates(case: str, n: int, n_draws: int, reps: int, seed: int) -> dict[str, float]:
    """Rejection rate of each check over ``reps`` repetitions of ``case``."""
    g = torch.Generator().manual_seed(seed)
    z, _ = pit_ecdf(torch.zeros(n, 1, dtype=torch.long), n_draws)
    lo, hi, _ = ecdf_band(n, z, 0.95)
    out = {"chi2": 0, "ks": 0, "tarp": 0, "band": 0, "not calibrated": 0, "coverage90": 0.0}
    joint = {"joint": 0, "joint ks": 0}
    for r in range(reps):
        res = analyse(record(case, n, n_draws, g), seed=seed + r)
        m = res.metrics()
        _, f = pit_ecdf(res.ranks, n_draws)
        out["chi2"] += m["sbc_pvalue"] < 0.01
        out["ks"] += m["sbc_pvalue_ks"] < 0.01
        out["tarp"] += m["tarp_pvalue"] < 0.01
        out["band"] += bool(((f < lo[:, None] - 1e-12) | (f > hi[:, None] + 1e-12)).any())
        out["not calibrated"] += not is_calibrated(m)
        out["coverage90"] += m["coverage90"]
        if m["sbc_pvalue_joint"] is not None:  # K >= 2
            joint["joint"] += m["sbc_pvalue_joint"] < 0.01
            joint["joint ks"] += m["sbc_pvalue_joint_ks"] < 0.01
    rates = {key: v / reps for key, v in out.items()}
    if CASES[case][0] >= 2:
        rates.update({key: v / reps for key, v in joint.items()})
    return rates


def crossfit_rates(case: str, n: int, n_draws: int, reps: int, seed: int) -> dict[str, float]:
    """Rejection rates at 1 % of the cross-fitted joint test and of the pooled Mahalanobis
    rank over ``reps`` repetitions of ``case`` (the same records for both)."""
    g = torch.Generator().manual_seed(seed)
    out = {"crossfit": 0, "crossfit ks": 0, "joint": 0, "joint ks": 0}
    for r in range(reps):
        rec = record(case, n, n_draws, g)
        cf = sbc_joint_crossfit(rec.truth, rec.draws, seed=seed + r)
        out["crossfit"] += cf["pvalue"] < 0.01
        out["crossfit ks"] += cf["pvalue_ks"] < 0.01
        u = sbc_uniformity(sbc_joint_ranks(rec.truth, rec.draws, seed=seed + r), n_draws)
        out["joint"] += u["pvalue"] < 0.01
        out["joint ks"] += u["pvalue_ks"] < 0.01
    return {key: v / reps for key, v in out.items()}


RECAL_SIZES = ((100, 49, 50), (500, 99, 100))  # (N, L, n_fit): core --quick and full


def recal_rates(n: int, n_draws: int, n_fit: int, reps: int, seed: int) -> dict[str, tuple]:
    """``{map: (SBC chi-square rejection rate at 1 %, mean coverage90, its sd, fitted maps)}``
    over ``reps`` repetitions of an exact posterior recalibrated by a map fitted on ``n_fit``
    others; ``fitted maps`` is ``(scale mean, scale sd, shift mean, shift sd)`` of the ``reps``
    fitted maps (``None`` for ``"none"``; the z-score map has no shift, 0)."""
    g = torch.Generator().manual_seed(seed)
    got: dict[str, list] = {m: [] for m in ("none", "zscore", "affine", "shape")}
    maps: dict[str, list] = {m: [] for m in got}
    for r in range(reps):
        test, fit = record("exact", n, n_draws, g), record("exact", n_fit, n_draws, g)
        for m in got:
            if m == "none":
                rec = test
            else:
                fitted = fit_record_recalibration(fit, m)
                one = fitted.stages[0][0]  # K = 1: the one summary's map
                maps[m].append((float(one.scale), float(getattr(one, "shift", 0.0))))
                rec = fitted.apply(test)
            met = analyse(rec, seed=seed + r).metrics()
            got[m].append((met["sbc_pvalue"] < 0.01, met["coverage90"]))
    out = {}
    for m, v in got.items():
        a = np.asarray(v, dtype=float)
        b = np.asarray(maps[m], dtype=float)
        fitted = (b[:, 0].mean(), b[:, 0].std(), b[:, 1].mean(), b[:, 1].std()) if len(b) else None
        out[m] = (a[:, 0].mean(), a[:, 1].mean(), a[:, 1].std(), fitted)
    return out


def draws_gaussian_rates(case: str, n: int, n_draws: int, reps: int, seed: int) -> dict:
    """Rejection rates at 1 % (chi-square, KS of ``sbc_uniformity``) of the rank of the truth's
    Mahalanobis distance under a Gaussian fitted to the ``L`` draws alone (``draws``,
    ``draws ks``): ``d(x) = (x - m)^T S^-1 (x - m)`` with ``m, S`` the draws' mean and
    covariance, the truth ranked among the draws by ``d`` (continuous: no ties). Not exact: a
    draw is part of the fit that measures it, the truth is not. Beside it the pooled rank of
    ``sbc_joint_ranks`` (``joint``, ``joint ks``), exact, on the same records."""
    g = torch.Generator().manual_seed(seed)
    out = {"draws": 0, "draws ks": 0, "joint": 0, "joint ks": 0}
    for r in range(reps):
        rec = record(case, n, n_draws, g)
        m = rec.draws.mean(1, keepdim=True)  # [N, 1, K]
        c = rec.draws - m
        prec = torch.linalg.inv(c.transpose(1, 2) @ c / (n_draws - 1))  # [N, K, K]
        d_draws = torch.einsum("nlk,nkj,nlj->nl", c, prec, c)
        t = rec.truth[:, None, :] - m
        d_truth = torch.einsum("nlk,nkj,nlj->nl", t, prec, t)  # [N, 1]
        u = sbc_uniformity((d_draws < d_truth).sum(1), n_draws, seed=seed + r)
        out["draws"] += u["pvalue"] < 0.01
        out["draws ks"] += u["pvalue_ks"] < 0.01
        u = sbc_uniformity(sbc_joint_ranks(rec.truth, rec.draws, seed=seed + r), n_draws)
        out["joint"] += u["pvalue"] < 0.01
        out["joint ks"] += u["pvalue_ks"] < 0.01
    return {key: v / reps for key, v in out.items()}


def _key(name: str) -> str:
    """A table column as a results-file key (``"not calibrated"`` -> ``"not_calibrated"``)."""
    return name.replace(" ", "_")


def main(argv: list[str] | None = None) -> Path:
    ap = ablation_parser(__doc__, jobs=False)
    ap.add_argument("--reps", type=int, default=300, help="0 skips the first table")
    ap.add_argument("--recal-reps", type=int, default=100, help="0 skips the second table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--joint-only", action="store_true", help="only the K >= 2 cases")
    ap.add_argument(
        "--crossfit",
        action="store_true",
        help="only the cross-fitted joint test beside the pooled rank, K >= 2 cases",
    )
    ap.add_argument(
        "--draws-gaussian",
        action="store_true",
        help="only the rank under a Gaussian fitted to the draws alone beside the pooled rank",
    )
    ap.add_argument(
        "--size",
        nargs=2,
        type=positive_int,
        metavar=("N", "L"),
        help="only this size (N problems, L draws) in the first table, --crossfit or "
        "--draws-gaussian (default: the four of bayesphys calibrate)",
    )
    ap.add_argument(
        "--case",
        action="append",
        choices=list(CASES),
        help="only this posterior (repeat for several; default: all)",
    )
    ap.add_argument(
        "--name",
        type=results_name_arg,
        default="calibration_power",
        help="results file name (default calibration_power)",
    )
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    if args.reps < 0:
        ap.error("--reps: expected >= 0")
    if args.recal_reps < 0:
        ap.error("--recal-reps: expected >= 0")
    joint_table = "crossfit" if args.crossfit else "draws_gaussian" if args.draws_gaussian else None
    if args.crossfit and args.draws_gaussian:
        ap.error("--crossfit, --draws-gaussian: expected one of them, received both")
    if joint_table and not args.reps:
        ap.error(
            f"--{joint_table.replace('_', '-')}: expected --reps >= 1 (the table has no other part)"
        )
    if not (args.reps or args.recal_reps):
        ap.error("--reps, --recal-reps: both 0, nothing to run")
    sizes = [tuple(args.size)] if args.size else SIZES
    cases = [c for c in CASES if args.case is None or c in args.case]
    if joint_table:
        cases = [c for c in cases if CASES[c][0] >= 2]
        if not cases:
            ap.error(
                f"--case: --{joint_table.replace('_', '-')} needs a K >= 2 posterior, received "
                f"{args.case}"
            )
    t0 = time.perf_counter()
    rows: list[dict] = []
    if joint_table:
        fn = crossfit_rates if args.crossfit else draws_gaussian_rates
        keys = ("crossfit", "crossfit ks") if args.crossfit else ("draws", "draws ks")
        keys += ("joint", "joint ks")
        print(f"| N | L | posterior | {' | '.join(keys)} |")
        print("|---" * (3 + len(keys)) + "|")
        for n, n_draws in sizes:
            for case in cases:
                r = fn(case, n, n_draws, args.reps, args.seed)
                cells = " | ".join(
                    f"{r[k]:.3f}" if args.reps > 100 else f"{r[k]:.2f}" for k in keys
                )
                print(f"| {n} | {n_draws} | {case} | {cells} |", flush=True)
                rows.append(
                    {"table": joint_table, "n": n, "n_draws": n_draws, "posterior": case}
                    | {"reps": args.reps, **{_key(k): r[k] for k in keys}}
                )
        print(f"\n{args.reps} repetitions per row; seed {args.seed}")
    else:
        keys = ("chi2", "ks", "tarp", "band", "not calibrated", "coverage90", "joint", "joint ks")
        if args.reps:
            print(f"| N | L | posterior | {' | '.join(keys)} |")
            print("|---" * (3 + len(keys)) + "|")
            for n, n_draws in sizes:
                for case in cases:
                    if args.joint_only and CASES[case][0] < 2:
                        continue
                    r = rates(case, n, n_draws, args.reps, args.seed)
                    cells = " | ".join(
                        "-" if k not in r else f"{r[k]:.3f}" if k == "coverage90" else f"{r[k]:.2f}"
                        for k in keys
                    )
                    print(f"| {n} | {n_draws} | {case} | {cells} |", flush=True)
                    rows.append(
                        {"table": "power", "n": n, "n_draws": n_draws, "posterior": case}
                        | {"reps": args.reps, **{_key(k): r.get(k) for k in keys}}
                    )
            print(f"\n{args.reps} repetitions per row; seed {args.seed}\n")
        if args.recal_reps:
            print("| N | L | n_fit | map | SBC rejects (1 %) | coverage90 mean | coverage90 sd |")
            print("|---" * 7 + "|")
            for n, n_draws, n_fit in RECAL_SIZES:
                for m, (rej, cov, sd, fitted) in recal_rates(
                    n, n_draws, n_fit, args.recal_reps, args.seed
                ).items():
                    print(f"| {n} | {n_draws} | {n_fit} | {m} | {rej:.2f} | {cov:.3f} | {sd:.3f} |")
                    rows.append(
                        {"table": "recal", "n": n, "n_draws": n_draws, "n_fit": n_fit, "map": m}
                        | {"reps": args.recal_reps, "sbc_rejects": rej}
                        | {"coverage90_mean": cov, "coverage90_sd": sd}
                        | dict(
                            zip(
                                ("scale_mean", "scale_sd", "shift_mean", "shift_sd"),
                                fitted or [None] * 4,
                            )
                        )
                    )
            print(f"\n{args.recal_reps} repetitions per row")
    seconds = time.perf_counter() - t0
    print(f"{seconds:.0f} s in all")
    print(f"versions: torch {torch.__version__}, numpy {np.__version__}")
    out_dir = Path(args.out) if args.out else Path(__file__).resolve().parent / "results"
    payload = {
        "command": recorded_command(__file__, argv),
        "date": datetime.date.today().isoformat(),
        "seed": args.seed,
        "reps": args.reps,
        "recal_reps": 0 if joint_table else args.recal_reps,
        "threads": torch.get_num_threads(),
        "threading": threading_info(),
        "versions": {"torch": torch.__version__.split("+")[0], "numpy": np.__version__},
        "seconds": seconds,
        "rows": rows,
    }
    path = write_results_json(out_dir / f"{args.name}.json", payload)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
