r"""Ablation: how the MFM field reads its condition and its input (``conditioning``, ``centered``).

Per problem B1–B4 and seed, one MFM fit with each ``MFMConfig.conditioning`` at the benchmark's
settings (``model_kwargs``, ``FOURIER``, ``FULL_STEPS``; B4 with its cell-type features), scored
by the benchmark's sample W2 on the test split (1000 points; B2 also the exact-law W2
``w2_bures``). On B2 the map is a rotation by :math:`\lVert\mu_i\rVert` of the population about
its mean: the field has to multiply ``x`` by a function of the condition, which FiLM's
:math:`h\odot(1+\gamma(c))` expresses directly. The B2 rows also split ``w2_bures`` into the
populations whose rotation angle is within 0.6 rad of :math:`\pi` (mod :math:`2\pi`), where the
straight index-paired interpolant :math:`(1-t)x_0 + tA x_0` nearly collapses the population
onto a point, and the rest.

    python benchmarks/meta_fm_conditioning_ablation.py --selection --jobs 2   # ~10 min, 2 cores

``--selection`` is the run that chooses the benchmark's per-problem ``CONDITIONING``: it
touches none of the benchmark's test populations (seed 3: fresh B2/B3 draws and B4's fold 3,
which the benchmark's seeds 0-2 do not use; B1, whose letters are fixed, is scored on its
validation letter "X" instead of the test letter "Y").

Writes ``benchmarks/results/meta_fm_conditioning_ablation.json``.

``--centering`` compares instead, with each problem's benchmark ``CONDITIONING``, the field
reading raw points with the field reading them relative to the source population's mean
(``MFMConfig.centered``), and writes ``meta_fm_centering_ablation.json``:

    python benchmarks/meta_fm_conditioning_ablation.py --centering --selection --jobs 2

Rule fixed before that run: a problem's MFM gets ``centered=True`` in the benchmark if it lowers
its selection W2 by more than 1 % (B2: 3 %, one seed sd of its MFM row).

``--type-frame`` (B4 only) fits FM, CGFM and MFM at B4's benchmark settings (``CONDITIONING``,
``CENTERED``, ``FOURIER``, ``FULL_STEPS``) with the field in absolute coordinates and in the
per-cell-type frame (``MFMConfig.type_frame``: each point relative to the mean of its own cell
type in its population), 6 fits, and writes ``meta_fm_type_frame_ablation.json``:

    python benchmarks/meta_fm_conditioning_ablation.py --type-frame --selection --jobs 2

Rule fixed before that run: B4's FM, CGFM and MFM together get ``type_frame=True`` if it lowers
MFM's selection W2 by more than 1 %.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import (
    ablation_parser,
    comma_ids,
    positive_int,
    print_rows_table,
    run_script_tasks,
    write_rows,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_fm import (  # noqa: E402
    CENTERED,
    CONDITIONING,
    FOURIER,
    FULL_STEPS,
    mean_metrics,
    model_kwargs,
    problem_data,
)

CONDITIONINGS = ("concat", "film")
NEAR_PI = 0.6


def b2_split(pred, test) -> dict[str, float]:
    """Exact-law W2 on B2, all populations and split by the rotation angle's distance to pi."""
    from bayesphys.meta_fm.evaluation import gaussian_w2

    per = np.array(
        [
            float(
                gaussian_w2(
                    p.double().mean(0),
                    torch.cov(p.double().T),
                    test.extra["target_mean"][i],
                    test.extra["target_cov"][i],
                )
            )
            for i, p in enumerate(pred)
        ]
    )
    angle = test.extra["source_mean"].norm(dim=-1).numpy()
    near = np.abs(np.mod(angle, 2 * math.pi) - math.pi) < NEAR_PI
    return {
        "w2_bures": float(per.mean()),
        "w2_bures_near_pi": float(per[near].mean()),
        "w2_bures_rest": float(per[~near].mean()),
        "n_near_pi": int(near.sum()),
    }


def fit_one(task: tuple[str, int, str, bool], steps: int | None, b1_split: str = "test") -> dict:
    """One MFM fit ``(problem, seed, conditioning, centered)``, scored on the problem's test
    split (B1: ``b1_split``)."""
    from bayesphys.meta_fm import MetaFlowMatching

    pid, seed, cond, centered = task
    n_steps = steps or FULL_STEPS[pid]
    data, _, k = problem_data(pid, False, seed)
    split = b1_split if pid == "B1" else "test"
    test = data.subset(split)
    kw = model_kwargs(k, FOURIER[pid], cond) | {"centered": centered}
    m = MetaFlowMatching(data, method="MFM", seed=seed, **kw)
    fit = m.fit(steps=n_steps, progress=False)
    pred = m.predict(test.source, test.treatment, features=test.source_features)
    row = {"problem": pid, "split": split, "seed": seed, "conditioning": cond}
    row |= {"centered": centered, "steps": n_steps}
    row.update(mean_metrics(pred, test.target, 1000))
    if pid == "B2":
        row.update(b2_split(pred, test))
    row["seconds"] = fit.seconds
    return row


def fit_type_frame(task: tuple[str, int, str, bool], steps: int | None) -> dict:
    """One fit ``(problem, seed, method, type_frame)`` at the benchmark's settings of the
    problem, scored on its test split."""
    from bayesphys.meta_fm import MetaFlowMatching

    pid, seed, method, type_frame = task
    n_steps = steps or FULL_STEPS[pid]
    data, _, k = problem_data(pid, False, seed)
    test = data.subset("test")
    kw = model_kwargs(k, FOURIER[pid], CONDITIONING[pid]) | {"type_frame": type_frame}
    if method == "MFM":  # as the benchmark's MFM (the type frame replaces the centring)
        kw["centered"] = CENTERED[pid] and not type_frame
    m = MetaFlowMatching(data, method=method, seed=seed, **kw)
    fit = m.fit(steps=n_steps, progress=False)
    pred = m.predict(test.source, test.treatment, features=test.source_features)
    row = {"problem": pid, "split": "test", "seed": seed, "method": method}
    row |= {"type_frame": type_frame, "conditioning": CONDITIONING[pid], "steps": n_steps}
    row.update(mean_metrics(pred, test.target, 1000))
    row["seconds"] = fit.seconds
    return row


def _type_frame_run(args, argv: list[str] | None, seeds) -> Path:
    tasks = [
        ("B4", s, meth, tf) for s in seeds for meth in ("FM", "CGFM", "MFM") for tf in (False, True)
    ]
    t0 = time.perf_counter()
    rows = run_script_tasks(
        __file__, "fit_type_frame", tasks, args.jobs, argv=argv, steps=args.steps
    )
    if args.seeds > 1:  # mean over seeds
        for meth in ("FM", "CGFM", "MFM"):
            for tf in (False, True):
                sel = [r for r in rows if r["method"] == meth and r["type_frame"] == tf]
                keys = [k for k in sel[0] if k.startswith(("w1", "w2", "mmd"))]
                mean = {k: float(np.mean([r[k] for r in sel])) for k in keys}
                rows.append(
                    {"problem": "B4", "split": "test", "seed": "mean", "method": meth}
                    | {"type_frame": tf}
                    | mean
                )
    name = "meta_fm_type_frame_ablation"
    return write_rows(name, rows, script=__file__, argv=argv, out=args.out, started=t0)


def main(argv: list[str] | None = None) -> Path:
    ap = ablation_parser(__doc__)
    ap.add_argument(
        "--problems",
        type=comma_ids(FULL_STEPS, what="problems"),
        default=None,
        help="default B1,B2,B3,B4 (--type-frame: B4)",
    )
    ap.add_argument("--seeds", type=positive_int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="default: the benchmark's FULL_STEPS")
    ap.add_argument(
        "--selection",
        action="store_true",
        help="first seed 3 and B1 scored on its validation letter (see the docstring)",
    )
    ap.add_argument(
        "--centering",
        action="store_true",
        help="raw vs source-centred field input, each problem with its CONDITIONING",
    )
    ap.add_argument(
        "--type-frame",
        action="store_true",
        help="B4 only: FM, CGFM and MFM with and without the per-cell-type frame",
    )
    args = ap.parse_args(argv)
    if args.centering and args.type_frame:
        ap.error("--type-frame: compares the type frame alone; drop --centering")
    if args.table:
        return print_rows_table(args.table)
    if args.problems is None:
        args.problems = ["B4"] if args.type_frame else ["B1", "B2", "B3", "B4"]
    problems = args.problems
    if args.type_frame and problems != ["B4"]:
        ap.error(
            f"--type-frame: B4 only (its cell types), received --problems {','.join(problems)}"
        )
    first = 3 if args.selection else 0
    seeds = range(first, first + args.seeds)
    if args.type_frame:
        return _type_frame_run(args, argv, seeds)
    if args.centering:
        variants = {p: [(CONDITIONING[p], False), (CONDITIONING[p], True)] for p in problems}
    else:
        variants = {p: [(c, False) for c in CONDITIONINGS] for p in problems}
    tasks = [(p, s, *v) for p in problems for s in seeds for v in variants[p]]
    b1_split = "val" if args.selection else "test"
    t0 = time.perf_counter()
    rows = run_script_tasks(
        __file__, "fit_one", tasks, args.jobs, argv=argv, steps=args.steps, b1_split=b1_split
    )
    if args.seeds > 1:  # mean over seeds
        for p in problems:
            for c, centered in variants[p]:
                sel = [
                    r
                    for r in rows
                    if r["problem"] == p and r["conditioning"] == c and r["centered"] == centered
                ]
                keys = [k for k in sel[0] if k.startswith(("w1", "w2", "mmd"))]
                mean = {k: float(np.mean([r[k] for r in sel])) for k in keys}
                rows.append(
                    {"problem": p, "split": sel[0]["split"], "seed": "mean", "conditioning": c}
                    | {"centered": centered}
                    | mean
                )
    name = "meta_fm_centering_ablation" if args.centering else "meta_fm_conditioning_ablation"
    return write_rows(name, rows, script=__file__, argv=argv, out=args.out, started=t0)


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
