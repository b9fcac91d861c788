"""The spread-error Spearman of a perfect predictor on B2 and B3 (what the metric allows).

The benchmark scores an ensemble's spread :math:`s_i` by the Spearman correlation with its error
:math:`e_i = W_2(\\hat p_i, p_i)`, where :math:`p_i` is the *observed* target population (a
finite sample). Even a predictor of the exact target law is then a sampling floor away from it,
and how far varies from one draw to the next. This script measures how well a spread can rank
those errors for such a predictor, with nothing trained:

* the **perfect predictor** of population :math:`i` is an independent draw of its true target
  law (the benchmark's ``floor`` row, ``floor_prediction(test, seed=1000 + seed)``), scored
  like the benchmark's rows: :math:`e_i` = ``population_metrics(...)["w2"]`` against the
  observed target (``max_points`` 1000, ``seed=i``);
* **expected-floor** spread, computed with the truth: the mean :math:`W_2` between the two
  draws of each of ``PAIRS`` fresh pairs of target draws (the law's expected floor, blind to
  the realised prediction);
* **one-sample** spread, the benchmark's aleatoric estimate applied to the perfect prediction
  itself (``sampling_noise_w2([pred], n, splits=NOISE_SPLITS[pid])``: disjoint random halves
  of the one predicted sample, as an ensemble's spread is computed without the truth; one
  member, so no epistemic part). It sees the realised prediction, whose own sampling noise is
  part of :math:`e_i`, so it can rank the errors better than the expected floor does.

If the one-sample Spearman of the perfect predictor clears the issue's 0.3, the metric allows
more than 0.3 for floor-limited errors (whether an ensemble's miss is then its model's is a
reading: on B2 / B3 the target is the image of the observed source, so a push-forward model
shares the source's sampling noise with the target, which an independent draw does not). With
one member each half of a split holds ``m / 2`` points (128 on B3, where a five-member
ensemble's halves hold 256): the estimate's level is higher, its ranking is what is scored.
B2 and B3 exactly as ``benchmarks/meta_fm.py`` builds them for its full run
(``problem_data(pid, False, seed)``: 200 test populations, seeds 0, 1, 2).

    python benchmarks/meta_fm_spread_perfect.py --jobs 2      # writes benchmarks/results
    python benchmarks/meta_fm_spread_perfect.py --smoke       # tiny sizes, a temp folder

Writes ``<out>/meta_fm_spread_perfect.json`` (a row per problem, seed and spread, then ``mean``
and ``sd`` rows over seeds) and prints the table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bayesphys._bench import seed_summary_rows, smoke_ablation_main
from bayesphys.meta_fm import floor_prediction
from bayesphys.meta_fm.evaluation import population_metrics, sampling_noise_w2, spearman
from bayesphys.problems.populations import (
    PopulationPairs,
    interacting_particles,
    linear_map,
    redraw_targets,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_fm import NOISE_SPLITS, problem_data  # noqa: E402  (the benchmark's B2 / B3)

NAME = "meta_fm_spread_perfect"
PROBLEMS = ("B2", "B3")
SEEDS = (0, 1, 2)
SPREADS = ("expected-floor", "one-sample")
SUMMARY_KEYS = ("spearman", "err_mean", "err_sd", "spread_mean", "spread_sd", "seconds")
# the benchmark's full-run evaluation size (benchmarks/meta_fm.py: max_points 1000)
MAX_POINTS = 1000
PAIRS = 3
# --smoke: tiny problems (every problem, seed and spread still runs)
SMOKE = {"n_test": 6, "n_points": 24, "steps": 2}


def held_out(pid: str, seed: int, smoke: bool = False) -> PopulationPairs:
    """The benchmark's test split of ``pid`` for ``seed`` (tiny draws with ``smoke``)."""
    if not smoke:
        return problem_data(pid, False, seed)[0].subset("test")
    n = SMOKE["n_test"]
    if pid == "B2":
        data = linear_map(
            dim=2, n_train=1, n_cal=1, n_test=n, n_points=SMOKE["n_points"], seed=seed
        )
    else:
        data = interacting_particles(
            n_train=1,
            n_cal=1,
            n_test=n,
            n_points=SMOKE["n_points"],
            steps=SMOKE["steps"],
            seed=seed,
        )
    return data.subset("test")


def run_task(task: tuple[str, int], smoke: bool = False, pairs: int = PAIRS) -> list[dict]:
    """The rows of one ``(problem, seed)``: one per spread estimate."""
    pid, seed = task
    t0 = time.perf_counter()
    test = held_out(pid, seed, smoke)
    n_pops = len(test)
    perfect = floor_prediction(test, seed=1000 + seed)
    err = np.array(
        [
            population_metrics(p, t, max_points=MAX_POINTS, seed=i)["w2"]
            for i, (p, t) in enumerate(zip(perfect, test.target))
        ]
    )
    # fresh target draws, two per pair (seeds apart from the floor's 1000 + seed)
    draws = [redraw_targets(test, seed=50_000 + 1000 * seed + j) for j in range(2 * pairs)]
    expected = np.array(
        [
            np.mean(
                [
                    population_metrics(draws[2 * j][i], draws[2 * j + 1][i], max_points=MAX_POINTS)[
                        "w2"
                    ]
                    for j in range(pairs)
                ]
            )
            for i in range(n_pops)
        ]
    )
    one_sample = np.array(
        [
            sampling_noise_w2(
                [p], t.shape[0], max_points=MAX_POINTS, seed=i, splits=NOISE_SPLITS[pid]
            )
            for i, (p, t) in enumerate(zip(perfect, test.target))
        ]
    )
    seconds = time.perf_counter() - t0
    return [
        {
            "problem": pid,
            "seed": seed,
            "spread": name,
            "test_pops": n_pops,
            "spearman": spearman(s, err),
            "err_mean": float(err.mean()),
            "err_sd": float(err.std(ddof=1)),
            "spread_mean": float(s.mean()),
            "spread_sd": float(s.std(ddof=1)),
            "seconds": seconds,
        }
        for name, s in (("expected-floor", expected), ("one-sample", one_sample))
    ]


def summary_rows(rows: list[dict]) -> list[dict]:
    """``mean`` and ``sd`` (ddof 1) over seeds of each (problem, spread)'s figures."""
    return seed_summary_rows(rows, ("problem", "spread"), SUMMARY_KEYS, keep=("test_pops",))


def summary_table(rows: list[dict]) -> str:
    """Markdown table: Spearman per seed and mean ± sd, per (problem, spread)."""
    lines = [
        "| problem | spread | " + " | ".join(f"seed {s}" for s in SEEDS) + " | mean ± sd |",
        "|" + "---|" * (3 + len(SEEDS)),
    ]
    by = {(r["problem"], r["spread"], r["seed"]): r for r in rows}
    for pid in PROBLEMS:
        for name in SPREADS:
            if (pid, name, "mean") not in by:
                continue
            cells = [f"{by[(pid, name, s)]['spearman']:.3f}" for s in SEEDS]
            m, sd = by[(pid, name, "mean")]["spearman"], by[(pid, name, "sd")]["spearman"]
            lines.append(f"| {pid} | {name} | " + " | ".join(cells) + f" | {m:.3f} ± {sd:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    return smoke_ablation_main(
        __doc__,
        argv,
        script=__file__,
        name=NAME,
        tasks=[(pid, seed) for pid in PROBLEMS for seed in SEEDS],
        summarise=summary_rows,
        table=summary_table,
        extra=lambda smoke: {
            "pairs": PAIRS,
            "max_eval_points": MAX_POINTS,
            "noise_splits": {p: NOISE_SPLITS[p] for p in PROBLEMS},
            "note": "perfect predictor = floor_prediction(test, seed=1000 + seed); expected-floor "
            "spread = mean W2 over fresh pairs of target draws; one-sample spread = "
            "sampling_noise_w2 of the perfect prediction alone",
        },
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
