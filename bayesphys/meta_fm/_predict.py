r"""Prediction pieces of :class:`~bayesphys.meta_fm.MetaFlowMatching` (Atanackovic et al. 2024,
Meta Flow Matching).

A prediction embeds each source population through a seeded subsample
(:func:`embed_populations`, MFM only) and integrates the flow of the field from the whole
source population (:func:`push_populations`): each population on its own, so that its
prediction does not depend on the other populations of the call, or (``batch=True``)
populations of equal size together as one batch ``[G, n, d]`` (:func:`integration_batches`).
:func:`check_solver` reads the solver arguments of ``predict``; :func:`check_draw_populations`
the populations of ``posterior``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .._checks import check_int, offset_seed
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..posterior import SamplePosterior
from ._canonical import canonical_order
from ._train import subsample
from ._type_frame import type_centres
from .config import MFMConfig
from .sampling import SOLVERS, integrate

__all__ = [
    "check_solver",
    "check_draw_populations",
    "canonical_order",
    "embed_populations",
    "same_size_groups",
    "integration_batches",
    "push_populations",
    "predictive_draws",
    "draws_array",
    "fill_draw",
]


def check_solver(solver: str | None, steps: int | None, default: str) -> tuple[str, int | None]:
    """The ODE solver of a prediction (``solver``, else the config's ``default``) and its rk4
    ``steps`` (``None``: the config's; refused for an adaptive solver)."""
    if solver is not None and solver not in SOLVERS:
        raise ValueError(f"solver: expected None or one of {SOLVERS}, received {solver!r}")
    method = default if solver is None else solver
    if steps is not None:
        steps = check_int("steps", steps, minimum=1)
        if method != "rk4":
            raise ValueError(
                f"steps: only the fixed-step 'rk4' solver takes steps; {method!r} is "
                f"adaptive (config atol/rtol), received steps={steps}"
            )
    return method, steps


def check_draw_populations(pops: Sequence[Tensor], method: str, points: int) -> None:
    """Refuse populations ``[n_i, d]`` of different sizes (a posterior's draws are
    ``[..., P, n, d]``) and warn when an MFM model (``method``) embeds them whole (``n <=
    points``, the embedding's subsample): every draw is then identical."""
    if len({q.shape[0] for q in pops}) != 1:
        raise ValueError(
            f"x: posterior needs equal population sizes, received {[q.shape[0] for q in pops]}"
        )
    if method == "MFM" and pops[0].shape[0] <= points:
        warnings.warn(
            f"posterior: populations of {pops[0].shape[0]} points are no larger than the "
            f"embedding's subsample (config.points={points}), so they are "
            "embedded whole and every draw is identical (zero spread); use MFMEnsemble for "
            "a spread over weights",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


def embed_populations(
    embed: nn.Module,
    pops: Sequence[Tensor],
    feats: Sequence[Tensor] | None,
    n: int,
    seed: int,
    norm: Callable[[Tensor], Tensor],
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """Embeddings ``[P, h]`` of populations ``[n_i, d]`` (mapped by ``norm`` into the model's
    frame) with their point features ``feats`` ``[n_i, f]``: a population of more than ``n``
    points through ``n`` of them, drawn by a generator of its own seeded with ``seed`` from
    the points in :func:`canonical_order`, so that the subsample is the same set of points
    whatever the order of the population's rows (a population is a set)."""
    out = []
    for i, p in enumerate(pops):
        gen = torch.Generator().manual_seed(seed)
        if p.shape[0] <= n:
            rows: slice | Tensor = slice(None)
        else:
            order = canonical_order(p, None if feats is None else feats[i])
            rows = order[subsample(p, n, gen).to(order.device)]
        f = None if feats is None else feats[i][rows].to(device=device, dtype=dtype)
        out.append(embed(norm(p[rows]), f))
    return torch.stack(out)


def same_size_groups(sizes: Sequence[int]) -> list[list[int]]:
    """Indices of ``sizes`` grouped by value, groups in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(sizes):
        groups.setdefault(int(n), []).append(i)
    return list(groups.values())


def integration_batches(sizes: Sequence[int], chunk: int, batch: bool) -> list[list[int]]:
    """The populations (indices into ``sizes``, the populations' point counts) integrated
    together, one list per ODE solve.

    ``batch=False``: one population per solve, so no population's result depends on the
    others (dopri5 adapts one step size to the error norm of everything it integrates, and a
    BLAS may round a row of a matrix product by its place in the batch). ``batch=True``:
    populations of equal size together, at most ``max(1, chunk // n)`` populations of ``n``
    points per solve, groups in order of first appearance.
    """
    if not batch:
        return [[i] for i in range(len(sizes))]
    out: list[list[int]] = []
    for ids in same_size_groups(sizes):
        per = max(1, chunk // int(sizes[ids[0]]))
        out += [ids[lo : lo + per] for lo in range(0, len(ids), per)]
    return out


def push_populations(
    field: nn.Module,
    pops: Sequence[Tensor],
    cond: Tensor | None,
    frame: tuple[Callable[[Tensor], Tensor], Tensor, Tensor],
    config: MFMConfig,
    solver: str,
    steps: int | None,
    chunk: int,
    batch: bool = False,
    types: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """Each population ``[n_i, d]`` pushed through the flow of ``field`` -> list of
    ``[n_i, d]``.

    ``frame = (norm, shift, scale)``: points are mapped by ``norm`` into the model's frame and
    back by ``* scale + shift``. Population ``i`` reads condition row ``cond[i]`` (``[P, c]``).
    Each population is integrated on its own as ``[1, n_i, d]`` (its result is the one it
    gives alone, bit for bit), or with ``batch`` populations of equal size together as one
    batch ``[G, n, d]``, at most ``chunk`` points at a time (a larger population whole; see
    :func:`integration_batches`), by ``solver``: ``"rk4"`` with ``steps`` steps (``None``:
    ``config.solver_steps``), else adaptively to the config's ``atol``/``rtol``. With
    ``config.centered`` the flow is integrated in each population's source-centred frame.
    With ``config.type_frame`` each point ``x`` of type ``k`` (``types``: one-hot rows
    ``[n_i, f]`` per population) is integrated as :math:`z = x - c_k` in its type's frame
    (:math:`c_k` the mean of the population's points of type ``k``, constant along the path),
    the field reading the point's type, and shifted back by :math:`c_k`.
    """
    norm, shift, scale = frame
    cfg = config
    out: list[Tensor | None] = [None] * len(pops)
    # each solve integrates [g, n, d] (g = 1 unless batch), each population reading its own
    # condition row [g, 1, c]
    for sel in integration_batches([q.shape[0] for q in pops], chunk, batch):
        x = torch.stack([norm(pops[i]) for i in sel])  # [g, n, d]
        c = None if cond is None else cond[sel][:, None, :]
        ctr, ty = None, None
        if cfg.centered:  # integrate in each population's source-centred frame
            ctr = torch.stack([norm(pops[i].mean(0)) for i in sel])[:, None, :]
            x = x - ctr
        elif cfg.type_frame:  # each point in its type's frame [g, n, d], reading its type
            ctr = torch.stack([norm(type_centres(pops[i], types[i])) for i in sel])
            ty = torch.stack([types[i] for i in sel]).to(x)
            x = x - ctr
        if ty is None:
            f = lambda t, z, c=c: field(t, z, c)  # noqa: E731
        else:
            f = lambda t, z, c=c, ty=ty: field(t, z, c, ty)  # noqa: E731
        if solver == "rk4":
            y = integrate(f, x, steps=cfg.solver_steps if steps is None else steps)
        else:
            y = integrate(f, x, method=solver, atol=cfg.atol, rtol=cfg.rtol)
        if ctr is not None:
            y = y + ctr
        y = y * scale + shift
        for i, yi in zip(sel, y):
            # its own storage: a view kept the whole batch alive, and pickled it whole
            out[i] = yi.clone() if len(sel) > 1 else yi
    return out


def predictive_draws(
    predict: Callable[[int], list[Tensor]], num_samples: int, seed: int, same: bool
) -> SamplePosterior:
    """Draws ``[1, num_samples, P, n, d]`` of the ``P`` populations ``[n, d]`` that
    ``predict(seed)`` returns: draw ``k`` predicted with seed ``seed + k``, or (``same``: no
    subsample to vary) the one prediction of ``seed`` repeated. Each prediction is written
    into the draws' one array as it comes (stacked at the end, the draws were held twice)."""
    first = predict(seed if same else offset_seed(seed, 0))
    out = draws_array((1, num_samples), first)
    fill_draw(out[0, 0], first)
    for k in range(1, num_samples):
        if same:
            out[0, k] = out[0, 0]
        else:
            fill_draw(out[0, k], predict(offset_seed(seed, k)))
    # batch = the P populations, event = one population (n, d)
    return SamplePosterior(out, event_ndim=2)


def draws_array(lead: tuple[int, ...], pops: Sequence[Tensor]) -> Tensor:
    """An empty array ``[*lead, P, n, d]`` for draws of the ``P`` populations ``pops``
    (``[n, d]`` each, one size), in their dtype and on their device."""
    return pops[0].new_empty((*lead, len(pops), *pops[0].shape))


def fill_draw(out: Tensor, pops: Sequence[Tensor]) -> None:
    """Write the populations ``pops`` (``[n, d]`` each) into one draw ``out [P, n, d]``."""
    for i, y in enumerate(pops):
        out[i] = y
