"""B1 of the ODIL benchmark (``benchmarks/odil.py``; anchor: GliODIL + odil,
``shared/anchors/gliodil.md`` section 8): single-focus phantom patients (64x64, 2 mm, known
thresholds), parameter / focus recovery and Dice@10%, with B4's radiotherapy proxy on the same
cases."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from bayesphys._bench import bench_row
from bayesphys.problems.glioma import brain_phantom, synthetic_patient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _odil_b4 import _b4_case, _b4_rows  # noqa: E402
from _odil_common import GLIODIL, _dice, _fit_case  # noqa: E402


def _phantom_mask(ph: dict) -> torch.Tensor:
    """Whole-brain planning mask of the phantom (tissue + CSF, holes filled), as PREDICT-GBM."""
    from scipy import ndimage

    m = (((ph["wm"] + ph["gm"] + ph["csf"]) >= 0.5) | (ph["brain"] > 0)).cpu().numpy()
    return torch.as_tensor(ndimage.binary_fill_holes(m)).to(ph["wm"].dtype)


def bench_b1_b4(quick: bool, device) -> list[dict]:
    n_cases = 5 if quick else 50
    ph = brain_phantom(64, 2.0)
    mask = _phantom_mask(ph)
    keys = ("rel_err_l", "rel_err_v", "focus_err_mm", "dice10", "seconds")
    acc = {k: [] for k in keys}
    rt = []
    for s in range(n_cases):
        p = synthetic_patient(1000 + s, phantom=ph)
        m, secs = _fit_case(p, device)
        e, tr = m.estimates(), p["truth"]
        acc["rel_err_l"].append(abs(e["ell"] / tr["ell"] - 1))
        acc["rel_err_v"].append(abs(e["v"] / tr["v"] - 1))
        acc["focus_err_mm"].append(math.hypot(e["x0"] - tr["x0"], e["y0"] - tr["y0"]))
        c_map = m.full(m.forward(m.theta).detach()).cpu()
        acc["dice10"].append(_dice(c_map >= 0.1, p["c_true"].cpu() >= 0.1))
        acc["seconds"].append(secs)
        rt.append(_b4_case(m.recrop(crop_margin_mm=40.0), p, mask, s))
    mean = {k: float(np.mean(v)) for k, v in acc.items()}
    setting = {"grid": "64x64", "mm": 2.0, "cases": n_cases, "thresholds": "known"}
    rows = [
        bench_row(
            "B1",
            "ODIL-GN",
            mean,
            setting=setting,
            anchor={
                "source": GLIODIL + " (targets: focus<1 mm, rel. err < 10%, <30 s)",
                "metrics": {
                    "rel_err_l": 0.10,
                    "rel_err_v": 0.10,
                    "focus_err_mm": 1.0,
                    "seconds": 30.0,
                },
            },
            note=f"max rel_err_l {max(acc['rel_err_l']):.3f}, "
            f"max rel_err_v {max(acc['rel_err_v']):.3f}; "
            "Dice@10% of the MAP forward map vs truth; reduced-space LM + tangent-linear Jacobian",
        ),
    ]
    return rows + _b4_rows(rt, setting | {"phantom": "analytic 2-D"})
