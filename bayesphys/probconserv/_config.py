"""Settings of :class:`~bayesphys.probconserv.ProbConserv` (Hansen et al., ICML 2023)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ANP_ONLY", "GP_ONLY", "ProbConservConfig"]

# settings of one Step-1 model only (the other ignores them)
ANP_ONLY = {"hidden": 64, "n_samples": 32, "covariance": "lowrank"}
GP_ONLY = {"gp_width": 32}


@dataclass
class ProbConservConfig:
    """Configuration of :class:`~bayesphys.probconserv.ProbConserv` (saved with the checkpoint)."""

    problem: str = "pme"
    step1: str = "anp"
    hidden: int = 64
    softc_weight: float = 0.0
    covariance: str = "lowrank"
    n_samples: int = 32
    sigma_g: float = 0.0
    relative: bool = False
    lr: float | None = None
    batch_size: int = 16
    gp_width: int = 32
    seed: int | None = 0
    softc_points: int = 32
    noise_std: float = 0.0
    train_margin: float = 0.0
