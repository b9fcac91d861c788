"""A canonical order of a population's rows, so that what is computed from a population (a set)
does not depend on the order its rows come in: its seeded subsamples, and the tie-breaking of
its kNN graph."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["canonical_order"]


def canonical_order(points: Tensor, features: Tensor | None = None) -> Tensor:
    """Row indices ``[*, n]`` sorting each population ``points [*, n, d]`` (with its
    ``features [*, n, f]``) lexicographically, by the first coordinate, then the second, ...,
    then the features: the same sequence of rows for any permutation of the input (rows equal
    in every column are interchangeable). A seeded subsample drawn from this order picks the
    same points of a population however its rows are ordered, and a kNN graph built on the
    rows in this order breaks its distance ties the same way (drawn by position, a
    permutation of the rows changed the subsample, and ties the neighbours)."""
    key = points if features is None else torch.cat([points, features.to(points)], -1)
    n = key.shape[-2]
    order = torch.arange(n, device=key.device).expand(key.shape[:-1]).contiguous()
    for col in reversed(range(key.shape[-1])):  # stable sorts, least significant key first
        vals = key[..., col].gather(-1, order)
        order = order.gather(-1, torch.sort(vals, dim=-1, stable=True).indices)
    return order
