"""Argument checks shared by the posterior classes and the diagnostics: sample shapes,
quantile levels ``q`` in ``(0, 1)``, interval levels and generators (errors name the argument)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ._checks import check_real
from ._detached import warn_detached
from ._device import same_device
from ._process_state import make_generator


def _shape_arg(name: str, shape) -> torch.Size:
    """``shape`` (an int, numpy's included, or a sequence of ints, each ``>= 0``) as a
    :class:`torch.Size`; a ``bool`` (Python's, numpy's or a bool tensor's entry), a float or a
    string is refused with an error naming ``name``."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)  # np.int64(3) was refused, though (np.int64(3),) was not
    if isinstance(shape, (str, bytes, bool)) or isinstance(shape, Tensor) and shape.ndim == 0:
        raise TypeError(
            f"{name}: expected an int, a torch.Size or a sequence (tuple, list) of ints >= 0, "
            f"received {shape!r}"
        )
    try:
        items = tuple(shape)
        if any(_is_bool(n) for n in items):  # torch.tensor([True, False]) gave (1, 0)
            raise TypeError
        size = torch.Size(items)
    except TypeError as err:
        raise TypeError(
            f"{name}: expected an int, a torch.Size or a sequence (tuple, list) of ints >= 0, "
            f"received {shape!r}"
        ) from err
    if any(n < 0 for n in size):
        raise ValueError(f"{name}: expected non-negative sizes, received {tuple(size)}")
    return size


def _is_bool(value) -> bool:
    """Whether ``value`` is a boolean: Python's, numpy's or a 0-d bool tensor."""
    return isinstance(value, (bool, np.bool_)) or (
        isinstance(value, Tensor) and value.dtype == torch.bool
    )


def _size(sample_shape) -> torch.Size:
    return _shape_arg("sample_shape", sample_shape)


def _q_tensor(q, like: Tensor) -> Tensor:
    if isinstance(q, Tensor):
        real = q.is_floating_point() or (not q.is_complex() and q.dtype != torch.bool)
    else:
        try:
            real = np.asarray(q).dtype.kind in "fiu"
        except (TypeError, ValueError):
            real = False
    if not real:
        raise TypeError(f"q: expected a probability or an array of probabilities, received {q!r}")
    if isinstance(q, Tensor) and q.device.type == "meta":  # its values cannot be checked
        raise ValueError("q: expected values, received a tensor on the 'meta' device")
    q64 = torch.as_tensor(q, dtype=torch.float64)
    if bool(((q64 <= 0) | (q64 >= 1)).any()) or bool(torch.isnan(q64).any()):
        raise ValueError(f"q: expected probabilities strictly inside (0, 1), received {q!r}")
    qt = torch.as_tensor(q, dtype=like.dtype, device=like.device)
    if bool(((qt <= 0) | (qt >= 1)).any()):
        # inside (0, 1), but not in the posterior's dtype
        raise ValueError(
            f"q: {q!r} rounds to 0 or 1 in the posterior's dtype {like.dtype} (whose quantile "
            f"there is infinite); use a probability further from 0 and 1, or a float64 posterior"
        )
    return qt


def _check_level(level: float, name: str = "level") -> float:
    if isinstance(level, Tensor) and level.ndim == 0 and level.dtype != torch.bool:
        # read as a number: an interval is not differentiated in its level (its gradient in a
        # level that requires grad was dropped without a word)
        warn_detached("central interval", **{name: level})
        level = level.item()  # a 0-d tensor holding the level
    elif isinstance(level, np.ndarray) and level.ndim == 0:
        level = level.item()
    level = check_real(name, level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name}: expected a probability in (0, 1), received {level!r}")
    return level


def _check_interval_level(level: float, dtype: torch.dtype) -> float:
    """:func:`_check_level`, and a ``ValueError`` naming ``level`` when the upper tail
    probability ``(1 + level) / 2`` rounds to 1 in a floating ``dtype`` (the posterior's)."""
    level = _check_level(level)
    if dtype.is_floating_point and torch.tensor((1 + level) / 2, dtype=dtype) >= 1:
        raise ValueError(
            f"level: {level!r} is too close to 1 for a {dtype} posterior (its upper "
            f"quantile (1 + level)/2 rounds to 1)"
        )
    return level


def _check_levels(levels, name: str = "levels") -> list[float]:
    """A non-empty sequence of probabilities in ``(0, 1)`` as floats (a single number, a 0-d
    array or tensor included, or a string is refused: pass ``[level]``)."""
    if (
        isinstance(levels, (str, bytes))
        or not isinstance(levels, (Sequence, np.ndarray, Tensor))
        or (isinstance(levels, (np.ndarray, Tensor)) and levels.ndim == 0)
    ):  # a 0-d array or tensor failed in list() with "iteration over a 0-d array"
        raise TypeError(
            f"{name}: expected a sequence of probabilities in (0, 1), received "
            f"{type(levels).__name__} {levels!r}"
        )
    out = [_check_level(lv, f"{name}[{i}]") for i, lv in enumerate(list(levels))]
    if not out:
        raise ValueError(f"{name}: expected at least one probability, received none")
    return out


def _central_quantiles(
    quantile: Callable[[list[float]], Tensor], levels: Sequence[float]
) -> list[tuple[Tensor, Tensor]]:
    """``(lower, upper)`` central quantiles at each of ``levels`` (already checked) from one
    call of ``quantile`` on the ``2 L`` probabilities ``(1 -+ level) / 2`` (one sort of stored
    draws for every level)."""
    q = quantile([v for lv in levels for v in ((1 - lv) / 2, (1 + lv) / 2)])
    return [(q[2 * k], q[2 * k + 1]) for k in range(len(levels))]


def _sampling_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device
) -> torch.Generator | None:
    """``sample``'s source of randomness: ``generator``, or a fresh one on ``device`` seeded
    with ``seed`` (not both); ``None`` for torch's global stream."""
    if seed is not None:
        if generator is not None:
            raise ValueError("seed, generator: give one of them, not both")
        return make_generator(seed, device)
    _check_generator(generator, device)
    return generator


def _check_generator(generator, device: torch.device) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        hint = (
            " (for a seed, pass seed=...)"
            if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool)
            else ""
        )
        raise TypeError(
            f"generator: expected a torch.Generator or None, received "
            f"{type(generator).__name__}{hint}"
        )
    if not same_device(generator.device, device):  # cuda:0 vs cuda:1 too, not just the type
        raise ValueError(
            f"generator: expected a generator on the posterior's device ({device}), "
            f"received one on {generator.device}"
        )


def check_export_name(name: str) -> str:
    """``export_name`` of a posterior: a non-empty string (``TypeError`` naming it)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"export_name: expected a non-empty string, received {name!r}")
    return name
