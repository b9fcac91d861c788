r"""``bayesphys calibrate meta_fm`` hook: coverage / SBC of the MFM deep-ensemble posterior on B2.

Simulator: the B2 family (:func:`~bayesphys.problems.populations.linear_map`, ``dim=2``) with
seeds disjoint from training: source :math:`x_0 \sim \mathcal N(\mu_i, \Sigma_i)`, target
:math:`x_1 = A_i x_0 + b_i`, whose exact law is :math:`\mathcal N(\mu_i + 0.5\tanh\mu_i,
A_i\Sigma_i A_i^\top)`. ``theta`` ``[n, 3]`` holds the exact target summaries: mean along each
axis and the spread :math:`\sqrt{\operatorname{tr}\,\mathrm{Cov}}`.
Inference: one small :class:`~bayesphys.meta_fm.MFMEnsemble` trained once (cached); its
:class:`~bayesphys.SamplePosterior` ``[M, draws, 1, n, 2]`` of predicted populations (chain =
member, draw = embedding subsample seed) is reduced to draws ``[L, 3]`` of the same summaries.
The subsample seeds of each problem are fresh draws from one generator per run (seeded with the
run's ``seed``), so the problems' draws are independent and a run is reproducible; each
member gives ``ceil(L / M)`` draws and a random ``L`` of them are kept, so every kept draw comes
from each member with probability ``1 / M``.
A 3-member ensemble only captures epistemic spread between members, so overconfidence is expected.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from .._process_state import torch_threads
from ..problems.populations import linear_map

__all__ = ["simulate", "calibrate_rows", "population_summaries"]

_POINTS = 256


def population_summaries(pop: torch.Tensor) -> torch.Tensor:
    r"""``[*S, n, d] -> [*S, d + 1]``: per-axis mean and spread
    :math:`\sqrt{\operatorname{tr} C}`, :math:`C = \frac1n \sum_i (x_i - \bar x)(x_i -
    \bar x)^\top` the population (biased, divisor ``n``) covariance, matched to the exact
    law's :math:`\sqrt{\operatorname{tr}\,\mathrm{Cov}}` of :func:`simulate`."""
    mean = pop.mean(-2)
    spread = (pop - mean[..., None, :]).pow(2).sum(-1).mean(-1).sqrt()
    return torch.cat([mean, spread[..., None]], -1)


def simulate(n: int, *, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``theta`` ``[n, 3]`` (exact target mean x, y and spread) and ``n`` source populations."""
    d = linear_map(n_train=n, n_cal=0, n_test=0, n_points=_POINTS, seed=70_000 + seed)
    mean = d.extra["target_mean"]
    spread = torch.diagonal(d.extra["target_cov"], dim1=-2, dim2=-1).sum(-1).sqrt()
    theta = torch.cat([mean, spread[:, None]], -1)
    return theta, list(d.source)


@lru_cache(maxsize=4)
def _ensemble(steps: int, members: int, n_train: int, seed: int):
    from .ensemble import MFMEnsemble

    data = linear_map(n_train=n_train, n_cal=0, n_test=0, n_points=_POINTS, seed=seed)
    ens = MFMEnsemble(
        data,
        members=members,
        seed=seed,
        device="cpu",
        width=64,
        layers=3,
        time_dim=32,
        fourier=32,
        gnn_hidden=32,
        gnn_layers=2,
        knn_k=10,
        points=128,
        solver_steps=5,
    )
    with torch_threads(1):  # small networks: fastest on one thread
        ens.fit(data, steps=steps, progress=False)
    return ens


def calibrate_rows(
    quick: bool,
    seed: int,
    *,
    steps: int | None = None,
    n_sims: int | None = None,
    n_draws: int | None = None,
    members: int = 3,
) -> list[dict]:
    """One row for the MFM ensemble (quick: 300 steps, 3 members, N=40 populations, L=11)."""
    from ..diagnostics.calibrate import calibration_rows

    steps = steps if steps is not None else (300 if quick else 2000)
    n_sims = n_sims if n_sims is not None else (40 if quick else 150)
    n_draws = n_draws if n_draws is not None else (11 if quick else 29)
    n_train = 64 if quick else 200
    n_fit = 20 if quick else 75
    ens = _ensemble(steps, members, n_train, seed)
    per_member = math.ceil(n_draws / members)
    # one generator per run, advancing from problem to problem: each problem's embedding
    # subsamples start from a fresh seed (``infer`` is not told which problem it serves).
    # Passing the run's seed to every problem gave all problems the same subsample indices
    g = torch.Generator().manual_seed(seed)

    def infer(src: torch.Tensor) -> torch.Tensor:
        base = int(torch.randint(0, 2**62, (), generator=g))
        post = ens.posterior([src], num_samples=per_member, seed=base)
        s = population_summaries(post.draws.reshape(-1, *src.shape).double().cpu())
        # a random n_draws of the members x per_member draws (the first n_draws left the last
        # member one draw short when members does not divide n_draws)
        return s[torch.randperm(s.shape[0], generator=g)[:n_draws]]

    return calibration_rows(
        simulate,
        infer,
        None,
        n_sims=n_sims,
        n_draws=n_draws,
        problem="B2-linear-d2",
        method=f"MFM deep ensemble (M={members})",
        seed=seed,
        setting={"train_steps": steps, "members": members, "n_train": n_train, "points": _POINTS},
        note=(
            "draws = members x embedding subsample seeds; ensembles are expected to be "
            "overconfident"
        ),
        recalibrate=n_fit,
    )
