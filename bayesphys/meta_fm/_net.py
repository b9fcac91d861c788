r"""The modules of a :class:`~bayesphys.meta_fm.MetaFlowMatching` and the condition rows they
read (Atanackovic et al. 2024, Meta Flow Matching).

:func:`build_net` builds the vector field :math:`v_\theta(t, x \mid c)` (with its Fourier
features), the population embedding :math:`\varphi` (MFM only) and the normalisation buffers
``shift`` ``[d]`` and ``scale`` ``[]``. The condition :math:`c` of ``P`` populations is
``[P, cond_dim]`` (:func:`cond_dim`): the embedding (MFM) or the training population's one-hot
(CGFM, :func:`population_onehots`), then the treatment's one-hot
(:func:`treatment_onehot`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .._checks import seed_or_draw
from .._device import array_as_tensor, single_or_double
from .._process_state import seeded_build
from ._validate import as_list
from .config import MFMConfig
from .embedding import PopulationEmbedding
from .field import VectorField

__all__ = ["net_dtype", "cond_dim", "build_net", "treatment_onehot", "population_onehots"]


def net_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """The dtype of a model's modules: ``dtype`` (default float32), float32 or float64."""
    # half precision failed deep inside torch (cdist of the kNN graph has no Half kernel)
    return single_or_double(dtype, default=torch.float32)


def cond_dim(config: MFMConfig, num_treatments: int, num_ids: int) -> int:
    """Width of the field's condition: the treatments' one-hot, plus the embedding (MFM) or
    the one-hot of ``num_ids`` training populations (CGFM)."""
    c = num_treatments
    if config.method == "MFM":
        c += config.gnn_hidden
    elif config.method == "CGFM":
        c += num_ids
    return c


def build_net(
    config: MFMConfig,
    dim: int,
    cond: int,
    seed: int | None,
    device: torch.device,
    dtype: torch.dtype,
) -> nn.ModuleDict:
    """The modules ``field`` (condition width ``cond``; with ``type_frame`` it also reads the
    ``node_features`` one-hot types) and, for MFM, ``embed`` of a model of dimension ``dim``,
    with the buffers ``shift`` (zeros) and ``scale`` (one), on ``device`` in ``dtype``. The
    initial weights and Fourier features are drawn from ``seed`` without reseeding the
    caller's global streams (``None``: from torch's global streams)."""
    cfg = config
    # initial weights from ``seed``, without reseeding the caller's global streams
    with seeded_build(seed, device):
        # seed=None: the Fourier features' stream too from torch's global stream (every
        # unseeded model, and every member of an unseeded ensemble, shared seed 0's)
        gen = torch.Generator().manual_seed(
            seed_or_draw("seed", None) if seed is None else int(seed)
        )
        field = VectorField(
            dim,
            cond,
            width=cfg.width,
            layers=cfg.layers,
            time_dim=cfg.time_dim,
            fourier=cfg.fourier,
            fourier_sigma=cfg.fourier_sigma,
            residual=cfg.residual,
            conditioning=cfg.conditioning,
            # the type frame's field reads each point's one-hot type beside x
            features=int(cfg.node_features or 0) if cfg.type_frame else 0,
            generator=gen,
        )
        mods: dict[str, nn.Module] = {"field": field}
        if cfg.method == "MFM":
            mods["embed"] = PopulationEmbedding(
                dim, cfg.gnn_hidden, cfg.gnn_layers, cfg.knn_k, features=cfg.node_features
            )
        net = nn.ModuleDict(mods).to(device=device, dtype=dtype)
        net.register_buffer("shift", torch.zeros(dim, device=device, dtype=dtype))
        net.register_buffer("scale", torch.ones((), device=device, dtype=dtype))
    return net


def treatment_onehot(
    treatment: Tensor | Sequence[int] | None,
    p: int,
    num_treatments: int,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor | None:
    """One-hots ``[p, num_treatments]`` of ``p`` treatment indices (``None`` for a model
    without treatments, which refuses any)."""
    if not num_treatments:
        if treatment is not None:
            raise ValueError(
                "treatment: this model was built without treatments (num_treatments=0), "
                f"received {as_list(treatment)!r:.200}"
            )
        return None
    if treatment is None:
        raise ValueError(
            f"treatment: this model needs one of {num_treatments} treatments per population"
        )
    if isinstance(treatment, Tensor) and treatment.device.type == "meta":
        raise ValueError("treatment: expected values, received a tensor on the 'meta' device")
    try:  # a str, or None entries, raised torch's own unnamed error (a flipped numpy array,
        # which torch.as_tensor refuses, is copied first: it was refused as not indices)
        tr = array_as_tensor(treatment, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"treatment: expected integer indices in [0, {num_treatments}), one per "
            f"population, received {type(treatment).__name__} {treatment!r:.200}"
        ) from err
    if tr.is_floating_point() or tr.is_complex() or tr.dtype == torch.bool:
        raise ValueError(
            f"treatment: expected integer indices in [0, {num_treatments}), received "
            f"{tr.dtype} values {tr.reshape(-1).tolist()!r:.200}"
        )
    if tr.ndim > 1:  # [1, P] or [P, 1] was flattened without a word
        raise ValueError(
            f"treatment: expected {p} indices in [0, {num_treatments}) as a flat sequence "
            f"[P], received shape {tuple(tr.shape)}"
        )
    tr = tr.reshape(-1).long()
    if tr.numel() != p or bool(((tr < 0) | (tr >= num_treatments)).any()):
        raise ValueError(
            f"treatment: expected {p} indices in [0, {num_treatments}), received {tr.tolist()}"
        )
    return torch.nn.functional.one_hot(tr, num_treatments).to(dtype)


def population_onehots(
    source_ids: Sequence[int | None] | None,
    p: int,
    index: Mapping[int, int],
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """CGFM conditions ``[p, len(index)]``: the one-hot of each known training population id
    (``index``: id -> column), the uniform average of the one-hots for an unknown or ``None``
    id (and for all ``p`` populations when ``source_ids`` is ``None``)."""
    c = len(index)
    out = torch.full((p, c), 1.0 / c, device=device, dtype=dtype)
    for i, sid in enumerate(source_ids or []):
        k = index.get(int(sid)) if sid is not None else None
        if k is not None:
            out[i] = 0
            out[i, k] = 1
    return out
