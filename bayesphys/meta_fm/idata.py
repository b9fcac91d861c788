r"""ArviZ export of predicted populations and their :math:`W_2` distances to the truth
(Atanackovic et al. 2024, Meta Flow Matching).

:func:`w2_inference_data` turns a :class:`~bayesphys.SamplePosterior` of predicted populations
``[chain, draw, P, n, d]`` (an :class:`~bayesphys.meta_fm.MFMEnsemble`'s or a
:class:`~bayesphys.meta_fm.MetaFlowMatching`'s) into an ``InferenceData`` with, given the true
populations, the :math:`W_2` distance of every draw to its truth, the truth as
``observed_data`` and size-matched replicates as ``posterior_predictive``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .._checks import check_seed, stream_seed
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..inference_data import build_inference_data
from ..posterior import SamplePosterior
from ._validate import check_populations
from .evaluation import _check_max_points, _population_w2

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

__all__ = ["w2_inference_data"]

#: the dims of the exported populations ``[chain, draw, P, n, d]``
_DIMS = ("chain", "draw", "population_id", "cell", "feature")
_RESERVED = ("w2", *_DIMS)


def _replicates(draws: Tensor, m: int, seed: int) -> Tensor:
    """Draws ``[chain, draw, P, n, d]`` subsampled to ``[chain, draw, P, m, d]`` (``m <= n``):
    each predicted population keeps ``m`` of its points, without replacement, a fresh subset per
    chain, draw and population from a CPU generator seeded by ``seed``."""
    draws = draws.detach().cpu()
    if draws.shape[3] == m:
        return draws
    # a stream of its own (the same seed also fixes member 0's embedding subsample)
    gen = torch.Generator().manual_seed(stream_seed(seed, "mfm-replicates"))
    keys = torch.rand(draws.shape[:4], generator=gen, dtype=torch.float64)
    idx = keys.argsort(-1)[..., :m, None].expand(-1, -1, -1, -1, draws.shape[-1])
    return draws.gather(3, idx)


def _observed_and_replicates(
    draws: Tensor, truth: list[Tensor], name: str, seed: int
) -> tuple[dict[str, Tensor] | None, dict[str, Tensor] | None]:
    """``observed_data`` ``{name: [P, m, d]}`` and ``posterior_predictive``
    ``{name: [chain, draw, P, m, d]}`` for :func:`w2_inference_data`. Both are ``None``, with a
    ``UserWarning``, when the true sizes differ; only the replicates are, when the true size
    ``m`` exceeds the predicted size ``n``."""
    sizes = sorted({t.shape[0] for t in truth})
    n = draws.shape[3]
    if len(sizes) > 1:
        obs = None
        why = (
            f"observed_data and posterior_predictive left out (the true populations have "
            f"different sizes {sizes})"
        )
    elif sizes[0] > n:
        obs = {name: torch.stack(truth)}
        why = (
            f"posterior_predictive left out (the true populations have m={sizes[0]} points, "
            f"more than the n={n} of each predicted population: no replicate of size m "
            "without repeated points)"
        )
    else:
        return {name: torch.stack(truth)}, {name: _replicates(draws, sizes[0], seed)}
    warnings.warn(
        f"w2_inference_data: {why}; the posterior group (populations and w2) is complete",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )
    return obs, None


def w2_inference_data(
    post: SamplePosterior,
    truth: Tensor | Sequence[Tensor] | None = None,
    *,
    max_points: int | None = 500,
    name: str = "population",
    seed: int = 0,
) -> arviz.InferenceData | xr.DataTree:
    """ArviZ export of predicted populations ``[chain, draw, P, n, d]`` plus named ``w2`` draws.

    ``post``: a :class:`~bayesphys.SamplePosterior` of draws ``[chain, draw, P, n, d]`` (as
    :meth:`MFMEnsemble.posterior` and :meth:`MetaFlowMatching.posterior` return; chain =
    ensemble member, draw = embedding subsample). ``posterior`` holds ``name`` (dims
    ``population_id, cell, feature``; any name but ``w2`` and the dims' names) and, when ``truth``
    (``P`` populations ``[m_i, d]``) is given, ``w2 [chain, draw, population_id]`` -- the distance
    of each draw to the true population.

    When the true populations share one size ``m``, ``observed_data`` holds them as ``name``
    ``[P, m, d]`` and ``posterior_predictive`` their replicates ``name [chain, draw, P, m, d]``
    (same dims, so ``az.plot_ppc(idata)`` works): the predicted populations themselves when
    ``n = m``; when ``n > m``, ``m`` points of each predicted population drawn without
    replacement (a random ``m``-subset of an ``n``-point sample is an ``m``-point sample of the
    same predicted distribution), a fresh subset per chain, draw and population, seeded by
    ``seed``. With a ``UserWarning`` saying why, both groups are left out when the true
    populations differ in size (ArviZ arrays need one size), and ``posterior_predictive``
    alone when ``n < m`` (no replicate without repeated points); the ``posterior`` group is
    unaffected. ``seed`` is used only for that subsampling (``w2`` does not depend on it).
    """
    if not isinstance(post, SamplePosterior):
        raise TypeError(f"post: expected a SamplePosterior, received {type(post).__name__}")
    if post.draws.ndim != 5:
        raise ValueError(
            f"post: expected draws [chain, draw, P, n, d], received shape {tuple(post.draws.shape)}"
        )
    max_points = _check_max_points("max_points", max_points)
    if not isinstance(name, str) or not name or name in _RESERVED:
        # refused here, not by the export after every W2 was computed (a name equal to a dim
        # of the export cannot be a variable of it)
        raise ValueError(
            f"name: expected a non-empty variable name other than 'w2' (the distances) and "
            f"the dims {list(_DIMS)}, received {name!r}"
        )
    seed = check_seed("seed", seed)  # any seed, as every other seed of meta_fm
    draws = post.draws
    c, k, p = draws.shape[:3]
    vars_ = {name: draws}
    dims = {name: list(_DIMS[2:])}
    obs = ppc = None
    if truth is not None:
        tr = check_populations("truth", truth, draws.shape[-1])
        if len(tr) != p:
            raise ValueError(f"truth: expected {p} populations, received {len(tr)}")
        w2 = torch.empty(c, k, p, dtype=torch.float64)
        for a in range(c):
            for b in range(k):
                for i in range(p):
                    # population_metrics' w2, without its W1 and MMD (3x the w2's cost)
                    w2[a, b, i] = _population_w2(
                        draws[a, b, i], tr[i], max_points=max_points, seed=i
                    )
        vars_["w2"] = w2
        dims["w2"] = ["population_id"]
        obs, ppc = _observed_and_replicates(draws, tr, name, seed)
    return build_inference_data(
        posterior=vars_,
        posterior_predictive=ppc,
        observed_data=obs,
        dims=dims,
        coords={"population_id": np.arange(p)},
    )
