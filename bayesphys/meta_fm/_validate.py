"""Input checks for populations and population pairs (clear errors naming the argument)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_int_sequence
from .._device import check_finite, check_fits_dtype
from ..problems.populations import PopulationPairs

__all__ = [
    "check_point_cloud",
    "check_cloud_pair",
    "check_populations",
    "check_pairs",
    "check_features",
    "as_list",
    "check_condition_ids",
    "training_split",
    "training_rows",
    "check_source_ids",
]


def check_point_cloud(
    name: str,
    x: Tensor,
    *,
    min_points: int = 1,
    dim: int | None = None,
    floating: bool = False,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``x`` as one point cloud ``[n, d]`` with ``n >= min_points`` (and ``d == dim`` when
    ``dim`` is given) of finite values, returned unchanged; errors name it ``name``. With
    ``dtype`` (the model's), finite values too large for it (1e300 for a float32 model) are a
    ``ValueError`` naming the overflow: they became Inf inside the model, and the refusal
    named its internal argument and "NaN/Inf entries".

    Checked in this order: a non-tensor is a ``TypeError``; a shape other than ``[n, d]`` a
    ``ValueError``; with ``floating``, a non-floating dtype a ``TypeError``; too few points,
    another dimension, NaN or Inf a ``ValueError``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor of points [n, d], received {_kind(x)}{_hint(x)}"
        )
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a population [n, d], received shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating tensor, received {x.dtype}")
    if x.shape[0] < min_points:
        why = " (empty and single-point populations cannot be embedded)" if min_points == 2 else ""
        raise ValueError(
            f"{name}: expected a population [n, d] of at least {min_points} "
            f"point{'s' * (min_points > 1)}, received shape {tuple(x.shape)}{why}"
        )
    if dim is not None and x.shape[1] != dim:
        raise ValueError(
            f"{name}: expected dimension {dim} (as the other populations/model), received "
            f"shape {tuple(x.shape)}"
        )
    check_finite(name, x)
    if dtype is not None and x.dtype != dtype:
        check_fits_dtype(name, x, dtype)
    return x


def check_cloud_pair(na: str, a: Tensor, nb: str, b: Tensor) -> tuple[Tensor, Tensor]:
    """Two finite point clouds ``a [n >= 1, d]`` and ``b [m >= 1, d]`` of one dimension ``d``
    (e.g. for an OT plan or a distance between them), returned unchanged. Each is checked by
    :func:`check_point_cloud` under its own name; differing dimensions are a ``ValueError``
    naming both (``"{na}/{nb}: ..."``)."""
    a, b = check_point_cloud(na, a), check_point_cloud(nb, b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{na}/{nb}: expected points of one dimension, received shapes {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    return a, b


def check_populations(
    name: str,
    pops: Tensor | Sequence[Tensor],
    dim: int | None = None,
    min_points: int = 2,
    *,
    floating: bool = True,
    dtype: torch.dtype | None = None,
) -> list[Tensor]:
    """Return ``pops`` as a list of ``[n_i, d]`` tensors, refusing bad input.

    Accepts one population ``[n, d]``, a batch ``[P, n, d]`` or a sequence of ``[n_i, d]``.
    Raises ``ValueError`` for empty or too-small populations, mixed or wrong dimensions and
    NaN/Inf points (and, with ``dtype``, points that overflow it); ``TypeError`` for
    non-tensors (and, with ``floating``, integer tensors).
    """
    if isinstance(pops, Tensor):
        if pops.ndim == 2:
            pops = [pops]
        elif pops.ndim == 3:
            pops = list(pops)
        else:
            raise ValueError(
                f"{name}: expected a population [n, d] or populations [P, n, d], received shape "
                f"{tuple(pops.shape)}"
            )
    if not isinstance(pops, (list, tuple)):
        # a numpy array read as "empty" (the message printed its values)
        raise TypeError(
            f"{name}: expected a torch.Tensor [n, d] / [P, n, d] or a list of tensors [n_i, d], "
            f"received {_kind(pops)}{_hint(pops)}"
        )
    if len(pops) == 0:
        raise ValueError(f"{name}: expected a non-empty list of populations [n, d], received none")
    out: list[Tensor] = []
    for i, p in enumerate(pops):
        d = dim if dim is not None else out[0].shape[1] if out else None
        out.append(
            check_point_cloud(
                f"{name}[{i}]", p, min_points=min_points, dim=d, floating=floating, dtype=dtype
            )
        )
    return out


def check_features(
    name: str, features: Sequence[Tensor] | None, pops: Sequence[Tensor], num: int
) -> list[Tensor] | None:
    """Per-point features ``[n_i, num]`` matching ``pops``; ``None`` when ``num == 0`` (a
    model that reads no features ignores any given)."""
    if num == 0:
        return None
    if features is None:
        raise ValueError(
            f"{name}: this model reads {num} features per point (its embedding, or its "
            "type_frame field); pass them "
            "(e.g. data.source_features)"
        )
    if isinstance(features, Tensor):
        features = [features] if features.ndim == 2 else list(features)
    if not isinstance(features, (list, tuple)):
        # a numpy array [n, f] was read as n populations' features ("one feature tensor per
        # population (1), received 40")
        raise TypeError(
            f"{name}: expected a tensor [n, f] / [P, n, f] or a list of tensors [n_i, f], "
            f"received {_kind(features)}{_hint(features)}"
        )
    if len(features) != len(pops):
        raise ValueError(
            f"{name}: expected one feature tensor per population ({len(pops)}), received "
            f"{len(features)}"
        )
    out = []
    for i, (f, p) in enumerate(zip(features, pops)):
        if not isinstance(f, Tensor):  # an array of the right shape read "expected shape"
            raise TypeError(
                f"{name}[{i}]: expected a torch.Tensor of shape ({p.shape[0]}, {num}), "
                f"received {_kind(f)}{_hint(f)}"
            )
        if f.shape != (p.shape[0], num):
            shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise ValueError(f"{name}[{i}]: expected shape ({p.shape[0]}, {num}), received {shape}")
        check_finite(f"{name}[{i}]", f)
        out.append(f)
    return out


def _kind(value: Any) -> str:
    """``value``'s type as ``module.Name`` (``numpy.ndarray``; builtins bare)."""
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    return kind.removeprefix("builtins.")


def _hint(value: Any) -> str:
    """How to convert an array-like ``value`` (one with a ``shape``), else ``""``: a pandas
    object through ``to_numpy()`` (``torch.as_tensor`` of a DataFrame raised ``KeyError: 2``,
    and of its read-only values warned), an array with ``torch.as_tensor``."""
    if not hasattr(value, "shape"):
        return ""
    if hasattr(value, "to_numpy"):
        return " (convert it with torch.tensor(x.to_numpy()))"
    strides = getattr(value, "strides", None) or ()
    flags = getattr(value, "flags", None)
    if any(st < 0 for st in strides) or (flags is not None and not flags.writeable):
        # torch.as_tensor refuses negative strides (np.flip) and warns at a read-only array
        # (a memmap opened with mode "r"): the hint failed when followed
        return " (convert it with torch.as_tensor(x.copy()))"
    return " (convert it with torch.as_tensor(x))"


def _is_index(i: object, n: int) -> bool:
    """``i`` is an integer (not a bool) in ``[0, n)``."""
    if isinstance(i, bool):
        return False
    try:
        k = operator.index(i)
    except TypeError:
        return False
    return 0 <= k < n


def check_pairs(
    data: PopulationPairs, dim: int | None = None, *, name: str = "data", min_points: int = 2
) -> None:
    """Validate a :class:`PopulationPairs` (dimensions, sizes, finiteness, treatments, splits);
    errors name it ``name`` (e.g. ``cal`` for a calibration split). Populations need
    ``min_points`` points (2, a kNN graph, for the models; 1 for the baselines)."""
    if not isinstance(data, PopulationPairs):
        raise TypeError(f"{name}: expected PopulationPairs, received {type(data).__name__}")
    if len(data.source) != len(data.target):
        raise ValueError(
            f"{name}: expected as many targets as sources, received {len(data.source)} and "
            f"{len(data.target)}"
        )
    # a truthy non-bool ("no") read as paired: index coupling of unpaired data, silently
    paired = check_bool(f"{name}.paired", data.paired)
    src = check_populations(f"{name}.source", data.source, dim, min_points)
    check_populations(f"{name}.target", data.target, src[0].shape[1], min_points)
    if paired:
        for i, (a, b) in enumerate(zip(data.source, data.target)):
            if a.shape[0] != b.shape[0]:
                raise ValueError(
                    f"{name}.target[{i}]: paired data need equal sizes, received {a.shape[0]} "
                    f"and {b.shape[0]}"
                )
    if data.treatment is not None:
        tr = data.treatment
        if not torch.is_tensor(tr):  # a list failed in subset() with Python's raw TypeError
            raise TypeError(
                f"{name}.treatment: expected a tensor [{len(data.source)}] of integer "
                f"treatment indices (or None), received {type(tr).__name__}"
            )
        check_finite(f"{name}.treatment", tr)  # a 'meta' tensor: no indices to read
        if tr.ndim and len(tr) != len(data.source):
            raise ValueError(
                f"{name}.treatment: expected {len(data.source)} entries, received {len(tr)}"
            )
        if tr.ndim != 1:
            raise ValueError(
                f"{name}.treatment: expected one index per pair, shape [{len(data.source)}], "
                f"received shape {tuple(tr.shape)}"
            )
        num = check_int(f"{name}.num_treatments", data.num_treatments, minimum=0)
        if tr.dtype == torch.bool:  # True/False compared as 1/0 with the bounds below
            raise ValueError(
                f"{name}.treatment: expected integer indices in [0, {num}), received "
                f"torch.bool values {tr.tolist()!r:.200}"
            )
        if num < 1:
            raise ValueError(
                f"{name}.treatment: treatments are given but {name}.num_treatments is "
                f"{num}; set num_treatments to the number of treatments (else they are ignored)"
            )
        if tr.is_floating_point() or tr.is_complex() or bool(((tr < 0) | (tr >= num)).any()):
            raise ValueError(
                f"{name}.treatment: expected integer indices in [0, {num}), received "
                f"{tr.tolist()!r:.200}"
            )
    sid = data.source_id
    if not torch.is_tensor(sid) or sid.ndim != 1 or len(sid) != len(data.source):
        got = f"shape {tuple(sid.shape)}" if torch.is_tensor(sid) else type(sid).__name__
        raise ValueError(
            f"{name}.source_id: expected a tensor [{len(data.source)}] of one id per pair, "
            f"received {got}"
        )
    check_finite(f"{name}.source_id", sid)  # a 'meta' tensor: no ids to read
    if sid.is_floating_point() or sid.is_complex() or sid.dtype == torch.bool:
        # CGFM's one-hot and the embedding cache key on int(id): 0.1 and 0.2 would merge
        raise ValueError(f"{name}.source_id: expected integer ids, received dtype {sid.dtype}")
    if not isinstance(data.splits, dict):
        raise TypeError(
            f"{name}.splits: expected a dict of split name -> pair indices, received "
            f"{type(data.splits).__name__}"
        )
    for split, idx in data.splits.items():
        bad = [i for i in idx if not _is_index(i, len(data))]
        if bad:
            raise ValueError(
                f"{name}.splits[{split!r}]: expected pair indices in [0, {len(data)}), received "
                f"{bad[:10]!r}"
            )
    if data.source_features is not None:
        f = data.source_features
        num = f[0].shape[-1] if len(f) and isinstance(f[0], Tensor) and f[0].ndim == 2 else -1
        if num < 1:
            if not len(f):
                got = f"an empty {type(f).__name__}"
            elif isinstance(f[0], Tensor):
                got = f"shape {tuple(f[0].shape)}"
            else:
                got = type(f[0]).__name__
            raise ValueError(
                f"{name}.source_features: expected tensors [n_i, f] with f >= 1, received {got}"
            )
        check_features(f"{name}.source_features", f, src, num)


def as_list(value: Any) -> Any:
    """``value`` as a plain list when it is a sequence or tensor (for comparisons)."""
    if isinstance(value, Tensor):
        return value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else value


def check_condition_ids(ids: Any) -> list[int]:
    """Training population ids of a CGFM model: distinct ints (``None``: none)."""
    if ids is None:
        return []
    out = list(check_int_sequence("condition_ids", ids, nonempty=False))
    if len(set(out)) != len(out):
        dup = sorted({v for v in out if out.count(v) > 1})
        raise ValueError(f"condition_ids: expected distinct ids, received duplicates {dup}")
    return out


def training_split(data: PopulationPairs) -> PopulationPairs:
    """The ``train`` split of ``data`` (all pairs when it has none), refused when empty."""
    train = data.subset("train") if "train" in data.splits else data
    if len(train) == 0:
        raise ValueError("data.splits['train']: expected at least one training pair, received none")
    return train


def training_rows(data: PopulationPairs) -> list[int]:
    """The index in ``data`` of each pair of :func:`training_split` ``(data)`` (for messages
    that name the user's pair ``data.source[i]``)."""
    if "train" in data.splits:
        return [int(i) for i in data.splits["train"]]
    return list(range(len(data)))


def check_source_ids(source_ids: Any, p: int, method: str) -> list[int | None] | None:
    """``source_ids`` of ``p`` populations (a CGFM model's, ``method``): ints or ``None``
    (unknown)."""
    if source_ids is None:
        return None
    if method != "CGFM":
        raise ValueError(f"source_ids: only CGFM models read population ids (this is {method})")
    ids = as_list(source_ids)
    if not isinstance(ids, list) or len(ids) != p:
        got = len(ids) if isinstance(ids, list) else type(source_ids).__name__
        raise ValueError(f"source_ids: expected one id per population ({p}), received {got}")
    return [None if v is None else check_int(f"source_ids[{k}]", v) for k, v in enumerate(ids)]
