"""One-thread fit and prediction seconds of CGFM and MFM at the meta_fm benchmark's settings.

Times ``--steps`` training steps and the prediction of ``--pops`` test populations of one
problem (the benchmark's data, field and options for it, seed 0), and prints one JSON line.
To compare two versions of the package side by side (two shells, the same minute), point
``PYTHONPATH`` at a checkout of the other one, e.g. the field code before the per-population
condition:

    git worktree add /tmp/before de46af3
    PYTHONPATH=/tmp/before python benchmarks/meta_fm_speed.py --problem B2
    python benchmarks/meta_fm_speed.py --problem B2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch

import bayesphys
from bayesphys._bench import positive_int
from bayesphys.meta_fm import MetaFlowMatching


def _benchmark_script():
    """This directory's meta_fm.py (its settings), loaded without the package's helpers, so
    that an older package version on ``PYTHONPATH`` can run it too."""
    path = Path(__file__).resolve().parent / "meta_fm.py"
    spec = importlib.util.spec_from_file_location("_meta_fm_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", default="B2", choices=["B1", "B2", "B3", "B4"])
    ap.add_argument("--steps", type=positive_int, default=400)
    ap.add_argument("--pops", type=positive_int, default=50)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    bench = _benchmark_script()
    pid = args.problem
    data, _, k = bench.problem_data(pid, False, 0)
    base = bench.model_kwargs(k, bench.FOURIER[pid], bench.CONDITIONING[pid])
    test = data.subset("test")
    n = min(args.pops, len(test))
    tr = None if test.treatment is None else test.treatment[:n]
    feats = None if test.source_features is None else test.source_features[:n]
    out: dict = {"package": str(Path(bayesphys.__file__).parent), "problem": pid}
    out.update(steps=args.steps, pops=n)
    for meth in ("CGFM", "MFM"):
        kw = base | ({"centered": bench.CENTERED[pid]} if meth == "MFM" else {})
        m = MetaFlowMatching(data, method=meth, seed=0, **kw)
        t0 = time.perf_counter()
        m.fit(steps=args.steps, progress=False)
        out[f"{meth}_fit_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        m.predict(test.source[:n], tr, features=feats)
        out[f"{meth}_predict_s"] = time.perf_counter() - t0
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
