"""The Meta Flow Matching benchmarks (Atanackovic et al., ICLR 2025, section 8) by id.

:func:`make_population_problem` builds one of B1-B4 by its id; :func:`redraw_targets` draws
each pair's target law afresh for a data set built here (the sampling floor), dispatching on
the id in the data set's name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
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
    ``[]`` for a data set without pairs (an empty split). Each target ``[m_i, d]`` must have
    the dimension ``d`` of the law recorded in ``data.extra`` (2 for B1 and B3; B2's
    ``source_mean [P, d]``; B4's ``params["m_a"] [patients, d]``), and ``data.extra`` must hold
    one law entry per target (B1 ``letter``/``theta``, B2 ``source_mean``/``source_cov``/``A``/
    ``b``, B3 ``mixture``, B4 ``patient``/``offset``; B4 also one ``treatment`` per target):
    ``ValueError`` otherwise.
    """
    if not isinstance(data, PopulationPairs):
        raise TypeError(f"data: expected PopulationPairs, received {type(data).__name__}")
    seed = check_seed("seed", seed)
    gen = torch.Generator().manual_seed(seed)
    name = data.name.split("/")[0]
    ex = data.extra
    out: list[Tensor] = []
    if name.startswith("B1"):
        _check_law_count(data, ex, ["letter", "theta"])
        _check_law_dim(data, lambda i: 2, "the glyphs' plane")
        for ch, th, t in zip(ex["letter"], ex["theta"], data.target):
            base = letter_points(ch).to(torch.float64)
            x1 = base + ex["params"]["target_noise"] * torch.randn(
                base.shape, generator=gen, dtype=torch.float64
            )
            out.append((x1 @ _rotation(th).mT).to(t.dtype))
    elif name.startswith("B2"):
        _check_law_count(data, ex, ["source_mean", "source_cov", "A", "b"])
        _check_law_dim(data, lambda i: ex["source_mean"][i].shape[-1], 'extra["source_mean"]')
        for i, t in enumerate(data.target):
            chol = torch.linalg.cholesky(ex["source_cov"][i])
            z = torch.randn(t.shape, generator=gen, dtype=torch.float64)
            x0 = ex["source_mean"][i] + z @ chol.mT
            out.append((x0 @ ex["A"][i].mT + ex["b"][i]).to(t.dtype))
    elif name.startswith("B3"):
        _check_law_count(data, ex, ["mixture"])
        _check_law_dim(data, lambda i: 2, "the particles' plane")
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
        _check_law_count(data, ex, ["patient", "offset"])
        tr = data.treatment
        if tr is None or len(tr) != len(data.target):  # None: "not subscriptable" below
            got = "None" if tr is None else f"{len(tr)} entries"
            raise ValueError(
                f"data: {data.name!r} has {len(data.target)} targets but treatment is {got}; "
                "redraw_targets draws each B4 target under its pair's treatment, so it needs "
                "one per target"
            )
        _check_law_dim(data, lambda i: prm["m_a"].shape[1], 'extra["params"]["m_a"]')
        for i, t in enumerate(data.target):
            x1, _ = _screen_draw(
                prm, int(ex["patient"][i]), int(data.treatment[i]), ex["offset"][i], t.shape[0], gen
            )
            out.append(x1.to(t.dtype))
    else:
        raise ValueError(f"data: no target sampler for problem {data.name!r}")
    return out


def _check_law_count(data: PopulationPairs, ex: dict, keys: list[str]) -> None:
    """Refuse per-pair law entries ``ex[key]`` (one per pair) that do not number the
    targets: B2 failed with a raw IndexError, B1 and B3 dropped the targets past the
    shortest entry (``zip``)."""
    n = len(data.target)
    for key in keys:
        if key not in ex or len(ex[key]) != n:
            got = f"{len(ex[key])} entries" if key in ex else "no entry"
            raise ValueError(
                f"data: {data.name!r} has {n} targets but extra[{key!r}] holds {got}; "
                f"redraw_targets draws each target from its pair's recorded law, so it needs "
                f"one entry per target"
            )


def _check_law_dim(data: PopulationPairs, law_dim: Callable[[int], int], where: str) -> None:
    """Refuse a target whose dimension is not that of pair ``i``'s recorded law,
    ``law_dim(i)``: B2 failed with torch's raw matmul error, B1, B3 and B4 returned draws of
    the law's dimension for targets of another."""
    for i, t in enumerate(data.target):
        d = int(law_dim(i))
        if t.ndim != 2 or int(t.shape[-1]) != d:
            raise ValueError(
                f"data: target {i} has shape {tuple(t.shape)} (dimension "
                f"{int(t.shape[-1]) if t.ndim else 0}), but {data.name!r} records a law of "
                f"dimension {d} ({where}); redraw_targets draws from that law, so each target "
                f"must be [m, {d}]"
            )


def make_population_problem(name: str, **kwargs: Any) -> PopulationPairs:
    """Build a benchmark by id: ``"B1"``, ``"B2"``, ``"B3"`` or ``"B4"`` (kwargs passed on)."""
    table = {"B1": letters, "B2": linear_map, "B3": interacting_particles, "B4": patient_screen}
    if not isinstance(name, str) or name not in table:
        raise ValueError(
            f"name: expected one of {sorted(table)}, received "
            f"{name!r}{did_you_mean(name, sorted(table))}"
        )
    make = table[name]
    known = sorted(inspect.signature(make).parameters)
    for key in kwargs:
        if key not in known:  # the generator's own "unexpected keyword argument" named no list
            raise TypeError(
                f"{key}: not a setting of {name} ({make.__name__}); expected one of {known}"
                f"{did_you_mean(key, known)}"
            )
    return make(**kwargs)
