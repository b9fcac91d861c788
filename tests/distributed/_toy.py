"""Picklable toy builders for the fit_many tests (module-level so workers can import them)."""

from __future__ import annotations

import torch

from bayesphys.examples.cohort import LinearGaussianModel, make_cohort


def problems(n: int = 4, fail: tuple[int, ...] = ()) -> dict:
    """Small cohort; problems at positions in ``fail`` are marked to raise in ``build``."""
    probs = make_cohort(n, seed=1, n=41, m=12)
    for k, key in enumerate(sorted(probs)):
        probs[key]["fail"] = k in fail
    return probs


class GlobalRNGModel(LinearGaussianModel):
    """Draws its start from the *global* torch RNG (tests that fit_many seeds it)."""

    def __init__(self, problem, seed=None):
        super().__init__(problem, seed=None)
        with torch.no_grad():
            self.log_lengthscale.add_(0.3 * torch.randn((), dtype=torch.float64))


def build(problem: dict, seed: int | None = None) -> LinearGaussianModel:
    if problem.get("fail"):
        raise RuntimeError("boom: this problem is set to fail")
    return LinearGaussianModel(problem, seed=seed)


def build_global(problem: dict) -> GlobalRNGModel:
    if problem.get("fail"):
        raise RuntimeError("boom: this problem is set to fail")
    return GlobalRNGModel(problem)


def build_interrupt(problem: dict, seed: int | None = None) -> LinearGaussianModel:
    """Simulates a crash of the whole run (KeyboardInterrupt is not caught per problem)."""
    if problem.get("fail"):
        raise KeyboardInterrupt("simulated crash")
    return LinearGaussianModel(problem, seed=seed)


def build_no_trim(problem: dict, seed: int | None = None) -> LinearGaussianModel:
    """As :func:`build`, but fails where Dask's MALLOC_TRIM_THRESHOLD_ leaked into the worker."""
    import os

    if os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        raise RuntimeError("MALLOC_TRIM_THRESHOLD_ is set in this worker (slow torch allocations)")
    return build(problem, seed=seed)


def build_scaled(problem: dict, seed: int | None = None, *, noise: float = 0.1):
    """A builder with an argument (for partials): the model sees ``noise`` x its data."""
    prob = dict(problem, y=problem["y"] * (1.0 + noise))
    return LinearGaussianModel(prob, seed=seed)


def build_sleeping(problem: dict, seed: int | None = None) -> LinearGaussianModel:
    """As :func:`build`, after ``problem["sleep"]`` seconds (calls that overlap in time)."""
    import time

    time.sleep(problem.get("sleep", 0.0))
    return build(problem, seed=seed)


class StoredDrawsModel(LinearGaussianModel):
    """Its posterior is a SamplePosterior of 5 stored draws in 2 chains (an ensemble's)."""

    def posterior(self):
        from bayesphys import SamplePosterior

        gen = torch.Generator().manual_seed(0)
        return SamplePosterior(super().posterior().sample((2, 5), generator=gen))


def build_stored(problem: dict, seed: int | None = None) -> StoredDrawsModel:
    return StoredDrawsModel(problem, seed=seed)
