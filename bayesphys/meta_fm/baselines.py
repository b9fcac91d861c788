r"""Trivial baselines (anchor 1.7 / 6.4 / 8): *identity*, *floor*, *shift* and *ideal shift*.

* identity: predict the source population itself, :math:`\hat p_1 = p_0`;
* floor: the distance between two independent draws of the true target law — the smallest
  value any sample-based metric can reach at this population size. It needs an independent
  redraw of the target, which :func:`bayesphys.problems.populations.redraw_targets` provides.
* shift: centre the source and add the mean of the training targets,
  :math:`\hat x_j = x_j - \bar x + \bar y_{\text{train}}` (the reference's ``TrellisDummy``;
  it averages the per-population target means, we pool the points, which is the same for
  populations of one size, as B4's); optionally the mean of the training targets of the
  pair's own treatment.
* ideal shift (an oracle): centre the source and add the observed target's own mean,
  :math:`\hat x_j = x_j - \bar x + \bar y`. Since
  :math:`W_2^2(p, q) = \lVert \bar p - \bar q\rVert^2 + W_2^2(p - \bar p, q - \bar q)`, no
  translate of the source is closer to the observed target in :math:`W_2`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_bool
from ..problems.populations import PopulationPairs, redraw_targets
from ._validate import check_pairs

__all__ = [
    "identity_prediction",
    "floor_prediction",
    "shift_prediction",
    "ideal_shift_prediction",
]


def identity_prediction(data: PopulationPairs) -> list[Tensor]:
    """The sources, as predictions of the targets: one ``[n_i, d]`` copy of
    ``data.source[i]`` per pair."""
    if not isinstance(data, PopulationPairs):
        raise TypeError(f"data: expected PopulationPairs, received {type(data).__name__}")
    return [s.clone() for s in data.source]


def floor_prediction(data: PopulationPairs, seed: int = 12345) -> list[Tensor]:
    """An independent draw of each target population (same law, same size): one
    ``[m_i, d]`` tensor per pair, as ``data.target[i]`` (``[]`` for an empty split).

    Raises ``TypeError``/``ValueError`` (naming ``data``) for invalid pairs, e.g. targets of
    another dimension ``d`` than their sources, as :func:`ideal_shift_prediction` does."""
    if not isinstance(data, PopulationPairs):
        raise TypeError(f"data: expected PopulationPairs, received {type(data).__name__}")
    if len(data):  # an empty split has no pairs to check (and nothing to draw)
        check_pairs(data, name="data")
    return redraw_targets(data, seed=seed)


def _shifted(source: Tensor, mean: Tensor) -> Tensor:
    """``source [n, d]`` centred on ``mean [d]`` (float64 ``mean``), in the source's dtype."""
    x = source.detach().double()
    return (x - x.mean(0) + mean.to(x.device)).to(source.dtype)


def _pooled_mean(pops: list[Tensor]) -> Tensor:
    """Mean ``[d]`` (float64) of all points of ``pops`` pooled (each point weighs the same)."""
    return torch.cat([p.detach().double().cpu() for p in pops]).mean(0)


def shift_prediction(
    data: PopulationPairs, train: PopulationPairs, *, by_treatment: bool = False
) -> list[Tensor]:
    r"""Each source of ``data``, centred, plus the mean of ``train``'s targets (anchor 1.7).

    For source :math:`x \in \mathbb R^{n \times d}` of pair :math:`i`:
    :math:`\hat x_j = x_j - \bar x + \mu`, with :math:`\mu` the mean of every point of every
    target population of ``train`` pooled (populations of different sizes weigh by their
    points) or, with ``by_treatment``, of the training targets of pair :math:`i`'s treatment
    only. Pass the training split itself (e.g. ``pairs.subset("train")``): all of ``train``'s
    targets are used, whatever its ``splits``.

    Parameters
    ----------
    data
        the pairs to predict (sources ``[n_i, d]``; its targets are not read).
    train
        the training pairs (targets ``[m_k, d]`` of the same ``d``).
    by_treatment
        use the training targets of the same treatment (``data`` and ``train`` must
        both carry treatments, and every treatment of ``data`` must occur in ``train``).

    Returns
    -------
    list[Tensor]
        One predicted population ``[n_i, d]`` per pair of ``data``, in each source's dtype.

    Raises
    ------
    TypeError
        For a ``data``/``train`` that is not :class:`PopulationPairs` or a non-bool
        ``by_treatment``.
    ValueError
        (naming the argument) For invalid pairs, differing dimensions, ``by_treatment``
        without treatments or with a treatment absent from ``train``.
    """
    # a population of one point has a mean: no 2-point minimum (that of the embedding's graph)
    check_pairs(data, name="data", min_points=1)
    check_pairs(train, dim=data.dim, name="train", min_points=1)
    by_treatment = check_bool("by_treatment", by_treatment)
    if not by_treatment:
        mu = _pooled_mean(train.target)
        return [_shifted(s, mu) for s in data.source]
    for name, d in (("data", data), ("train", train)):
        if d.treatment is None:
            raise ValueError(
                f"by_treatment: {name} has no treatments (treatment is None); use "
                "by_treatment=False"
            )
    trt_train = [int(t) for t in train.treatment]
    trt_data = [int(t) for t in data.treatment]
    missing = sorted(set(trt_data) - set(trt_train))
    if missing:
        raise ValueError(
            f"train: no training target for treatment(s) {missing} of data (train holds "
            f"treatments {sorted(set(trt_train))}), so by_treatment has no mean for them"
        )
    means = {
        t: _pooled_mean([y for y, u in zip(train.target, trt_train) if u == t])
        for t in set(trt_data)
    }
    return [_shifted(s, means[t]) for s, t in zip(data.source, trt_data)]


def ideal_shift_prediction(data: PopulationPairs) -> list[Tensor]:
    r"""Each source centred on its own observed target's mean: the "ideal shift" oracle.

    For pair :math:`i` with source :math:`x \in \mathbb R^{n \times d}` and target
    :math:`y \in \mathbb R^{m \times d}`: :math:`\hat x_j = x_j - \bar x + \bar y`. The
    prediction has exactly the target's mean and the source's shape; it reads the test target,
    so it is a reference line, not a method. Returns ``[n_i, d]`` per pair, in each source's
    dtype. ``TypeError``/``ValueError`` (naming ``data``) for invalid pairs.
    """
    check_pairs(data, name="data", min_points=1)  # one point has a mean too
    return [_shifted(s, _pooled_mean([y])) for s, y in zip(data.source, data.target)]
