r"""The data container of the population-pair benchmarks: :class:`PopulationPairs`.

A list of source populations :math:`p_0^{(i)}` (tensors ``[n_i, d]``), a list of target
populations :math:`p_1^{(i)}` (``[m_i, d]``), an optional treatment index per pair, a source id
per pair and named splits, as built by the generators of the Meta Flow Matching benchmarks
(Atanackovic et al., ICLR 2025, section 8) in :mod:`bayesphys.problems.populations`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..._checks import check_int_sequence, did_you_mean
from ..._repr import fields_repr

__all__ = ["PopulationPairs"]


@dataclass
class PopulationPairs:
    """Pairs of populations ``(source[i] [n_i, d], target[i] [m_i, d])``.

    Attributes
    ----------
    source, target
        lists of float tensors, one population per pair.
    treatment
        ``[num_pairs]`` long tensor of treatment indices, or ``None``.
    source_id
        ``[num_pairs]`` long tensor; pairs with the same source population share an id.
    splits
        split name -> list of pair indices (``train``, ``test`` and possibly ``val``,
        ``cal``); calibration populations are used for split-conformal radii. An index
        listed twice weighs twice wherever its split is used (a bootstrap resample of the
        training pairs, for instance).
    paired
        ``True`` when ``target[i][j]`` is the image of ``source[i][j]`` (index coupling).
    num_treatments
        number of treatments (0 when there are none).
    extra
        problem-specific exact answers (e.g. B2 Gaussian parameters).
    source_features
        per-point features ``[n_i, f]`` of each source population (e.g. a
        cell-type one-hot), read by the MFM population embedding only (not transported);
        ``None`` when there are none.
    """

    name: str
    source: list[Tensor]
    target: list[Tensor]
    source_id: Tensor
    splits: dict[str, list[int]]
    paired: bool
    treatment: Tensor | None = None
    num_treatments: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    source_features: list[Tensor] | None = None

    def __post_init__(self) -> None:
        # a population viewing part of a larger tensor (one slice of a stacked [P, n, d] draw)
        # pickled that whole tensor once per population: pickle, multiprocessing, Ray and
        # Dask sent a data set (and a model holding it) 50-160x its size; each gets its own
        for name in ("source", "target", "source_features"):
            pops = getattr(self, name)
            if isinstance(pops, list):
                setattr(self, name, [_own_storage(t) for t in pops])

    @property
    def dim(self) -> int:
        """``d``, the points' dimension (``source[i] [n_i, d]``); ``ValueError`` for a data
        set without populations or whose first source is no ``[n, d]`` tensor."""
        if not len(self.source):
            raise ValueError(f"data: {self.name!r} holds no populations, so no dimension")
        first = self.source[0]
        if not isinstance(first, Tensor) or first.ndim != 2:  # shape[1] raised IndexError
            got = tuple(first.shape) if isinstance(first, Tensor) else type(first).__name__
            raise ValueError(f"data.source[0]: expected a population [n, d], received {got}")
        return int(first.shape[1])

    def __repr__(self) -> str:
        # sizes, not points (a letters data set printed 2.5 million characters)
        def sizes(pops: list[Tensor]) -> int | str | None:
            ns = [int(p.shape[0]) for p in pops]
            if not ns:
                return None
            return ns[0] if min(ns) == max(ns) else f"{min(ns)}..{max(ns)}"

        sf = self.source_features
        feats = int(sf[0].shape[-1]) if sf is not None and len(sf) else None
        return fields_repr(
            self,
            ("name",),
            pairs=len(self.source),
            dim=int(self.source[0].shape[-1]) if self.source else None,
            source_points=sizes(self.source),
            target_points=sizes(self.target),
            splits={k: len(v) for k, v in self.splits.items()},
            paired=self.paired,
            num_treatments=self.num_treatments,
            features=feats,
        )

    def __len__(self) -> int:
        return len(self.source)

    def same_populations(self, other: PopulationPairs) -> bool:
        """Whether ``other`` holds bit-identical pairs: sources, targets, source features,
        treatments, source ids and every tensor entry of ``extra`` the two share (names and
        splits may differ, e.g. one screen under two splits)."""
        if not isinstance(other, PopulationPairs):
            raise TypeError(f"other: expected PopulationPairs, received {type(other).__name__}")

        def same(a, b) -> bool:
            if a is None or b is None:
                return a is None and b is None
            if isinstance(a, Tensor):
                return isinstance(b, Tensor) and a.shape == b.shape and torch.equal(a, b)
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))

        shared = [k for k in self.extra if k in other.extra]
        return (
            len(self) == len(other)
            and same(self.source, other.source)
            and same(self.target, other.target)
            and same(self.source_features, other.source_features)
            and same(self.treatment, other.treatment)
            and same(self.source_id, other.source_id)
            and all(
                same(self.extra[k], other.extra[k])
                for k in shared
                if isinstance(self.extra[k], Tensor)
            )
        )

    def subset(self, split: str) -> PopulationPairs:
        """The pairs of one split (ids and treatments kept; ``extra`` entries indexed). Its
        populations are this object's tensors, not copies (an in-place edit reaches both).

        The split's indices may be a list, a tuple, a tensor or an array of ints in
        ``[0, len(self))``; others are a ``TypeError``/``ValueError`` naming ``splits[split]``."""
        if split not in self.splits:
            raise KeyError(
                f"split: expected one of {sorted(self.splits)}, received {split!r}"
                f"{did_you_mean(split, sorted(self.splits))}"
            )
        # a split held as a tensor or array (torch.tensor([0, 1, 2])) gave 0-d tensors, which
        # indexed source_id as "too many indices for tensor of dimension 1"
        name = f"splits[{split!r}]"
        idx = list(check_int_sequence(name, self.splits[split], minimum=0, nonempty=False))
        bad = [i for i in idx if i >= len(self)]
        if bad:
            raise ValueError(
                f"{name}: expected pair indices in [0, {len(self)}), received {bad[:10]!r}"
            )
        ex = {}
        for k, v in self.extra.items():
            if isinstance(v, (list, Tensor)) and len(v) == len(self):
                ex[k] = [v[i] for i in idx] if isinstance(v, list) else v[idx]
            else:
                ex[k] = v
        return PopulationPairs(
            name=f"{self.name}/{split}",
            source=[self.source[i] for i in idx],
            target=[self.target[i] for i in idx],
            source_id=self.source_id[idx],
            splits={"all": list(range(len(idx)))},
            paired=self.paired,
            treatment=None if self.treatment is None else self.treatment[idx],
            num_treatments=self.num_treatments,
            extra=ex,
            source_features=None
            if self.source_features is None
            else [self.source_features[i] for i in idx],
        )


def _own_storage(t: Any) -> Any:
    """``t`` itself, or a copy when it views part of a larger storage (see
    :meth:`PopulationPairs.__post_init__`)."""
    if isinstance(t, Tensor) and t.untyped_storage().nbytes() > t.numel() * t.element_size():
        return t.clone()
    return t
