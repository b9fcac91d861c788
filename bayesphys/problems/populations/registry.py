"""The Meta Flow Matching benchmarks (Atanackovic et al., ICLR 2025, section 8) by id.

:func:`make_population_problem` builds one of B1-B4 by its id; :func:`redraw_targets` draws
each pair's target law afresh for a data set built here (the sampling floor), dispatching on
the id in the data set's name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..._checks import check_seed, did_you_mean
from ._common import _rotation
from .b1_letters import letter_points, letters
from .b2_linear_map import linear_map
from .b3_particles import _gmm_draw, _simulate_particles, interacting_particles
from .b4_screen import _screen_draw, patient_screen
from .pairs import PopulationPairs

__all__ = ["make_population_problem", "redraw_targets"]


def redraw_targets(data: PopulationPairs, seed: int = 12345) -> list[Tensor]:
    """Independent draws of each pair's target law (same size), for the sampling floor.

    B1: fresh glyph noise at the same rotation; B2: a fresh Gaussian source through the exact
    map; B3: a fresh mixture draw simulated to T = 1 (in float64 for float64 targets, as
    :func:`interacting_particles` does; in float32 otherwise); B4: a fresh treated population.
    ``[]`` for a data set without pairs (an empty split).
    """
    if not isinstance(data, PopulationPairs):
        raise TypeError(f"data: expected PopulationPairs, received {type(data).__name__}")
    seed = check_seed("seed", seed)
    gen = torch.Generator().manual_seed(seed)
    name = data.name.split("/")[0]
    ex = data.extra
    out: list[Tensor] = []
    if name.startswith("B1"):
        for ch, th, t in zip(ex["letter"], ex["theta"], data.target):
            base = letter_points(ch).to(torch.float64)
            x1 = base + ex["params"]["target_noise"] * torch.randn(
                base.shape, generator=gen, dtype=torch.float64
            )
            out.append((x1 @ _rotation(th).mT).to(t.dtype))
    elif name.startswith("B2"):
        for i, t in enumerate(data.target):
            chol = torch.linalg.cholesky(ex["source_cov"][i])
            z = torch.randn(t.shape, generator=gen, dtype=torch.float64)
            x0 = ex["source_mean"][i] + z @ chol.mT
            out.append((x0 @ ex["A"][i].mT + ex["b"][i]).to(t.dtype))
    elif name.startswith("B3"):
        if data.target:  # an empty split (no pairs) has nothing to draw
            n = data.target[0].shape[0]
            x0 = torch.stack([_gmm_draw(m, s, n, gen) for m, s in ex["mixture"]])
            prm = ex["params"]
            # as interacting_particles: float64 targets simulate in float64, others in float32
            sim = torch.float64 if data.target[0].dtype == torch.float64 else torch.float32
            x1 = _simulate_particles(x0, prm["steps"], prm["a"], prm["b"], prm["ell"], sim)
            out = [x.to(t.dtype) for x, t in zip(x1, data.target)]
    elif name.startswith("B4"):
        prm = ex["params"]
        for i, t in enumerate(data.target):
            x1, _ = _screen_draw(
                prm, int(ex["patient"][i]), int(data.treatment[i]), ex["offset"][i], t.shape[0], gen
            )
            out.append(x1.to(t.dtype))
    else:
        raise ValueError(f"data: no target sampler for problem {data.name!r}")
    return out


def make_population_problem(name: str, **kwargs: Any) -> PopulationPairs:
    """Build a benchmark by id: ``"B1"``, ``"B2"``, ``"B3"`` or ``"B4"`` (kwargs passed on)."""
    table = {"B1": letters, "B2": linear_map, "B3": interacting_particles, "B4": patient_screen}
    if not isinstance(name, str) or name not in table:
        raise ValueError(
            f"name: expected one of {sorted(table)}, received {name!r}{did_you_mean(name, sorted(table))}"
        )
    return table[name](**kwargs)
