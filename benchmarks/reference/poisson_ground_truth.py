"""Write the P1 test set in the text format of the reference RGNP notebooks (side-by-side runs).

The reference code (phys-rgnp, TensorFlow) evaluates on FEniCS ground-truth files. This writes
our own seeded test set, ``poisson_test_set(1000, seed=0)`` (the one ``benchmarks/neural_process.py``
uses), as those four files, so the reference and our R0 are scored on the same 1000 cases:

    allGroundTruthU.dat  [1000, 201]   reference solutions u(x)
    allGroundTruthZ.dat  [1000, 5]     Chebyshev weights z
    allGroundTruthW.dat  [1000]        forcing w
    FenicsMeshX.dat      [201]         nodes x in [-1, 1]

    python benchmarks/reference/poisson_ground_truth.py OUT_DIR

The notebook's ground-truth directory (``dirnameGT``) is then pointed at ``OUT_DIR``; the rest
of the recipe is in ``docs/neural_process.md`` ("Side by side with the reference code").
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bayesphys.problems.rgnp import poisson_test_set


def main(argv: list[str] | None = None) -> Path:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: poisson_ground_truth.py OUT_DIR")
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    d = poisson_test_set(1000, seed=0)
    np.savetxt(out / "allGroundTruthU.dat", d["u"])
    np.savetxt(out / "allGroundTruthZ.dat", d["z"])
    np.savetxt(out / "allGroundTruthW.dat", d["w"][:, 0])
    np.savetxt(out / "FenicsMeshX.dat", d["x"])
    print(f"wrote 4 files to {out}")
    return out


if __name__ == "__main__":
    main()
