"""Pieces shared by the glioma problems of the ODIL benchmark (``benchmarks/odil.py``; anchor:
GliODIL + odil, ``shared/anchors/gliodil.md`` section 8): the anchor label of the B1 / B2 targets,
one phantom case's fit and the Dice score."""

from __future__ import annotations

import time

from bayesphys.odil import GliomaModel

GLIODIL = "anchor targets (GliODIL's own B1/B2 figures were not retrieved)"


def _fit_case(p, device, pet=False):
    m = GliomaModel.from_patient(p, use_pet=pet, device=device)
    t0 = time.perf_counter()
    m.fit(progress=False)
    return m, time.perf_counter() - t0


def _dice(a, b):
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2 * int((a & b).sum()) / s
