"""``import bayesphys`` loads torch and numpy, not the heavy libraries each task needs later
(xarray and pandas took ~0.6 s of it before the ArviZ seam imported them on first use): every
`bayesphys` command and every worker process of a scale-out pays the import."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("xarray", "pandas", "arviz", "matplotlib", "gpytorch", "pyro", "ot", "h5py", "scipy")


def test_import_bayesphys_loads_no_heavy_library():
    code = (
        "import json, sys, bayesphys; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
