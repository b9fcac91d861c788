r"""The treatments a :class:`~bayesphys.meta_fm.MetaFlowMatching` has trained on, and the
warning for a prediction under another one.

The field reads a treatment as a one-hot column of its condition :math:`c`. A treatment index
in ``[0, num_treatments)`` that no training pair carried has a column whose weights never
received a gradient: the field's response to it is that of the initial weights, and a
prediction under it was returned without a word (``num_treatments`` comes from the data's
labelling, which may list treatments held out of the training split).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch

from .._checks import check_int_sequence
from .._device import array_as_tensor
from .._model import in_untrained_warned
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..problems.populations import PopulationPairs

__all__ = ["data_treatments", "saved_treatments", "warn_untrained_treatments"]


def data_treatments(data: PopulationPairs) -> frozenset[int]:
    """The treatment indices the pairs of ``data`` carry (empty when it has none)."""
    if data.treatment is None:
        return frozenset()
    return frozenset(int(t) for t in torch.as_tensor(data.treatment).reshape(-1).tolist())


def saved_treatments(value: Any, num_treatments: int) -> frozenset[int] | None:
    """The trained treatments read from a checkpoint (``None``: not recorded, as in files
    written before they were), checked as indices in ``[0, num_treatments)``."""
    if value is None:
        return None
    out = check_int_sequence("trained_treatments", value, minimum=0, nonempty=False)
    bad = [t for t in out if t >= num_treatments]
    if bad:
        raise ValueError(
            f"trained_treatments: expected indices in [0, {num_treatments}), received {bad!r}"
        )
    return frozenset(out)


def warn_untrained_treatments(
    where: str, treatment: Any, trained: Iterable[frozenset[int] | None]
) -> None:
    """A ``UserWarning`` at the user's line when ``treatment`` (indices, one per population)
    names a treatment that a model of ``trained`` (each model's trained treatments; ``None``:
    not known) never trained on. Silent for a treatment argument that is not a sequence of
    integer indices (the prediction refuses it, naming it) and within
    :func:`~bayesphys._model.untrained_warned` (the caller warned once)."""
    if treatment is None or in_untrained_warned():
        return
    try:
        tr = array_as_tensor(treatment)
    except (TypeError, ValueError, RuntimeError):
        return
    if tr.is_floating_point() or tr.is_complex() or tr.dtype == torch.bool:
        return
    asked = {int(t) for t in tr.reshape(-1).tolist()}
    unseen = sorted({t for seen in trained if seen is not None for t in asked - seen})
    if not unseen:
        return
    warnings.warn(
        f"{where}: treatment {unseen} never occurred in the training pairs, so the field's "
        "weights for it were never trained and its prediction comes from their initial "
        "values (a one-hot treatment does not generalise to a treatment not trained on); "
        "fit on pairs with that treatment first",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )
