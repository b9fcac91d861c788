r"""``bayesphys calibrate odil`` hook: SBC / coverage of the glioma Laplace posterior.

Simulator: :func:`bayesphys.problems.glioma.synthetic_patient` on the 32 x 32 phantom at 4 mm
(:math:`D_w, \rho` log-uniform, focus in white matter, thresholds 0.6 / 0.25, truth with Strang
steps at 4x the fit's default step count). The true object is
:math:`\theta = (\log D_w, \log\rho, x_0, y_0)`; inference is :class:`~bayesphys.odil.GliomaModel`
(reduced-space fit + Laplace). The simulator's prior is not the model's (log-normal / Gaussian
around the core centroid), so SBC ranks test calibration under a mild prior mismatch; coverage is
the main figure.
"""

from __future__ import annotations

import torch

from ..problems.glioma import brain_phantom, synthetic_patient, truth_theta

_N, _H = 32, 4.0


def simulate(n: int, *, seed: int) -> tuple[torch.Tensor, list[dict]]:
    """``theta [n, 4]`` = (log D_w, log rho, x0, y0) and ``n`` synthetic patients."""
    ph = brain_phantom(_N, _H)
    pats = [synthetic_patient(90_000 + 1000 * seed + i, phantom=ph) for i in range(n)]
    theta = torch.stack([truth_theta(p) for p in pats])
    return theta, pats


def calibrate_rows(quick: bool, seed: int) -> list[dict]:
    """One row for ``ODIL-Laplace`` (quick: N=50, L=49; full: N=200, L=99)."""
    from ..diagnostics.calibrate import calibration_rows
    from ..diagnostics.summaries import probe
    from .glioma import GliomaModel

    n_sims, n_draws, n_fit = (50, 49, 30) if quick else (200, 99, 100)

    def infer(p: dict):
        m = GliomaModel.from_patient(p)
        m.fit(progress=False)
        return m.theta_posterior()

    summaries = {"log_dw": probe(0), "log_rho": probe(1), "x0": probe(2), "y0": probe(3)}
    return calibration_rows(
        simulate,
        infer,
        summaries,
        n_sims=n_sims,
        n_draws=n_draws,
        problem="glioma-phantom-32",
        method="ODIL-Laplace",
        seed=seed,
        setting={"grid": "32x32", "mm": _H, "noise_corr_mm": 4.0},
        recalibrate=n_fit,
    )
