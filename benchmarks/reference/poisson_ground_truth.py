"""Write the P1 test set in the text format of the reference RGNP notebooks (side-by-side runs).

The reference code (phys-rgnp, TensorFlow) evaluates on FEniCS ground-truth files. This writes
our own seeded test set, ``poisson_test_set(1000, seed=0)`` (the one
``benchmarks/neural_process.py`` uses), as those four files, so the reference and our R0 are scored
on the same 1000 cases:

    allGroundTruthU.dat  [1000, 201]   reference solutions u(x)
    allGroundTruthZ.dat  [1000, 5]     Chebyshev weights z
    allGroundTruthW.dat  [1000]        forcing w
    FenicsMeshX.dat      [201]         nodes x in [-1, 1]

    python benchmarks/reference/poisson_ground_truth.py OUT_DIR

The notebook's ground-truth directory (``dirnameGT``) is then pointed at ``OUT_DIR``; the rest
of the recipe is in ``docs/neural_process_notes.md`` ("Side by side with the reference code").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bayesphys.problems.rgnp import poisson_test_set


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", help="folder for the four .dat files (made if missing)")
    # `--help` was read as the output folder (a folder named --help with 5 MB in it)
    out = Path(ap.parse_args(argv).out_dir).expanduser()
    if out.exists() and not out.is_dir():
        ap.error(f"out_dir: expected a folder, received the file {out}")
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
