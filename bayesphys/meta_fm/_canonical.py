"""A canonical order of a population's rows, so that seeded subsamples of a population (a set)
do not depend on the order its rows come in."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["canonical_order"]


def canonical_order(points: Tensor, features: Tensor | None = None) -> Tensor:
    """Row indices ``[n]`` sorting ``points [n, d]`` (with their ``features [n, f]``)
    lexicographically, by the first coordinate, then the second, ..., then the features:
    the same sequence of rows for any permutation of the input (rows equal in every column
    are interchangeable). A seeded subsample drawn from this order picks the same points of a
    population however its rows are ordered (drawn by position, a permutation of the rows
    changed the subsample, and with it the embedding and every predicted point)."""
    key = points if features is None else torch.cat([points, features.to(points)], -1)
    key = key.reshape(key.shape[0], -1)
    order = torch.arange(key.shape[0], device=key.device)
    for col in reversed(range(key.shape[1])):  # stable sorts, least significant key first
        order = order[torch.sort(key[order, col], stable=True).indices]
    return order
