r"""Trivial baselines (anchor 1.7 / 8): *identity* and the *sampling floor*.

* identity: predict the source population itself, :math:`\hat p_1 = p_0`;
* floor: the distance between two independent draws of the true target law — the smallest
  value any sample-based metric can reach at this population size. It needs an independent
  redraw of the target, which :func:`bayesphys.problems.populations.redraw_targets` provides.
"""

from __future__ import annotations

from torch import Tensor

from ..problems.populations import PopulationPairs, redraw_targets

__all__ = ["identity_prediction", "floor_prediction"]


def identity_prediction(data: PopulationPairs) -> list[Tensor]:
    """The sources, as predictions of the targets."""
    if not isinstance(data, PopulationPairs):
        raise TypeError(f"data: expected PopulationPairs, received {type(data).__name__}")
    return [s.clone() for s in data.source]


def floor_prediction(data: PopulationPairs, seed: int = 12345) -> list[Tensor]:
    """An independent draw of each target population (same law, same size)."""
    return redraw_targets(data, seed=seed)
