"""One-thread seconds of ``MetaFlowMatching.predict``: each population integrated on its own
(the default) against ``batch=True`` (populations of equal size in one solve).

For each problem: an MFM at the meta_fm benchmark's settings for it (``model_kwargs``,
``FOURIER``, ``CONDITIONING``, ``CENTERED``), fitted ``--steps`` steps on the quick data of
seed 0, predicts all its test populations (B1: 10 of 1244 points, B2: 50 of 512, B3: 30 of
256) with rk4 and with dopri5; the two ways alternate, ``--repeats`` calls each, and the
fastest call of each is kept. ``max_diff`` is the largest difference between the two ways'
points (what the batch moves). Prints one JSON line.

    python benchmarks/meta_fm_predict_batch.py    # about 3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from bayesphys._bench import positive_int
from bayesphys.meta_fm import MetaFlowMatching

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meta_fm import CENTERED, CONDITIONING, FOURIER, model_kwargs, problem_data  # noqa: E402

PROBLEMS = ("B1", "B2", "B3")


def time_problem(pid: str, steps: int, repeats: int, pops: int | None = None) -> dict:
    """Per solver: the fastest of ``repeats`` predict calls of each way, and their largest
    point difference (``pops``: only the first test populations)."""
    data, _, k = problem_data(pid, True, 0)
    kw = model_kwargs(k, FOURIER[pid], CONDITIONING[pid])
    m = MetaFlowMatching(data, method="MFM", seed=0, centered=CENTERED[pid], **kw)
    with warnings.catch_warnings():  # an untrained or short fit warns; timing is the point
        warnings.simplefilter("ignore")
        m.fit(steps=steps, progress=False)
    src = list(data.subset("test").source)[:pops]
    out: dict = {}
    for solver in ("rk4", "dopri5"):
        seconds: dict[bool, list[float]] = {False: [], True: []}
        got: dict[bool, list[torch.Tensor]] = {}
        for _ in range(repeats):
            for batch in (False, True):
                t0 = time.perf_counter()
                got[batch] = m.predict(src, solver=solver, batch=batch)
                seconds[batch].append(time.perf_counter() - t0)
        diff = max(float((a - b).abs().max()) for a, b in zip(got[False], got[True]))
        out[solver] = {
            "populations": f"{len(src)} x {src[0].shape[0]}",
            "own_s": round(min(seconds[False]), 3),
            "batch_s": round(min(seconds[True]), 3),
            "max_diff": diff,
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    ap.add_argument("--steps", type=positive_int, default=400)
    ap.add_argument("--repeats", type=positive_int, default=7)
    ap.add_argument("--pops", type=positive_int, default=None, help="first test populations")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res: dict = {"steps": args.steps, "repeats": args.repeats}
        for pid in args.problems:
            res[pid] = time_problem(pid, args.steps, args.repeats, args.pops)
    finally:  # the caller's thread count (a test calls main in its own process)
        torch.set_num_threads(threads)
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
