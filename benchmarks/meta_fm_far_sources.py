"""How far the meta_fm benchmark's held-out source populations lie from the training sources,
on the measures of Meta FM's far-source warning (``bayesphys.meta_fm._sources``): the mean's
excess beyond the box of the training sources' means, in pooled training sds (warns above
``FAR_MEAN`` = 3), and the spread's ratio to the training spreads' range (warns above
``FAR_SPREAD`` = 2). No model is trained: the record is that of a fit on the training split.

Cases: B1-B4 and B4's replicate split (``--quick``: the quick presets of seed 0 only; else
quick and full presets, seeds 0-3, B1 seed 0), the demo's data and the population-response
example's (smoke and full sizes). Prints one JSON line per case, then the largest excess and
ratio over all of them.

    python benchmarks/meta_fm_far_sources.py --quick    # seconds
    python benchmarks/meta_fm_far_sources.py            # a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bayesphys.meta_fm._sources import FAR_MEAN, FAR_SPREAD, source_distance, source_record
from bayesphys.problems.populations import interacting_particles, linear_map

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta_fm_presets import problem_data  # noqa: E402


def distances(data, split: str) -> dict:
    """The largest excess and spread ratio of ``split``'s sources from the training record."""
    train = data.subset("train")
    rec = source_record(train.source, train.target)
    d = [source_distance(rec, p) for p in data.subset(split).source]
    return {"excess": max(e for e, _ in d), "ratio": max(r for _, r in d), "n": len(d)}


def cases(quick: bool):
    for pid in ("B1", "B2", "B3", "B4", "B4-replica"):
        for full in (False,) if quick else (False, True):
            for seed in (0,) if quick or pid == "B1" else (0, 1, 2, 3):
                data, _, _ = problem_data(pid, not full, seed)
                yield f"{pid} {'full' if full else 'quick'} seed {seed}", data, "test"
    yield "demo", linear_map(n_train=60, n_cal=8, n_test=4, n_points=128, seed=0), "test"
    yield (
        "example smoke",
        interacting_particles(n_train=24, n_cal=10, n_test=4, n_points=64, seed=0),
        "test",
    )
    if not quick:
        yield (
            "example full",
            interacting_particles(n_train=200, n_cal=30, n_test=6, n_points=256, seed=0),
            "test",
        )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="quick presets of seed 0 only")
    args = ap.parse_args(argv)
    worst = {"excess": (0.0, ""), "ratio": (0.0, "")}
    for name, data, split in cases(args.quick):
        row = distances(data, split)
        print(json.dumps({"case": name, "split": split, **row}), flush=True)
        for key in worst:
            if row[key] > worst[key][0]:
                worst[key] = (row[key], name)
    out = {
        "largest_excess": round(worst["excess"][0], 3),
        "at": worst["excess"][1],
        "largest_ratio": round(worst["ratio"][0], 3),
        "ratio_at": worst["ratio"][1],
        "warn_above": {"excess": FAR_MEAN, "ratio": FAR_SPREAD},
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
