"""Checks of saved calibration states (``HybridCalibration.from_state``,
``LocalScale.from_state``): the keys and the types of their values, each named.

A missing or unknown key failed with the dataclass constructor's ``TypeError`` ("missing 1
required positional argument") or a bare ``KeyError``; a value of the wrong type (a list for
``t``, a string for ``beta``) was stored and failed at the first prediction, far from the
checkpoint. Values are checked, not converted: a valid state rebuilds exactly.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from torch import Tensor

from .._checks import check_keys

#: what each kind of field holds, for the messages
_KINDS = {
    "tensor": "a tensor",
    "number": "a real number",
    "int": "an int >= 0",
    "dict": "a dict",
    "str": "a str",
}


def _is(kind: str, value: Any) -> bool:
    if kind == "tensor":
        return isinstance(value, Tensor)
    if kind == "number":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
    if kind == "dict":
        return isinstance(value, Mapping)
    return isinstance(value, str)


def check_state(
    name: str, d: Any, cls: type, kinds: Mapping[str, str], nullable: tuple[str, ...] = ()
) -> dict:
    """``d`` as a dict of the dataclass ``cls``'s fields: every field without a default
    present, no other key, and each value of its kind in ``kinds`` (``"tensor"``,
    ``"number"``, ``"int"``, ``"dict"``, ``"str"``; ``None`` also where the field is in
    ``nullable``). A non-dict is a ``TypeError``; missing or unknown keys a ``ValueError``
    naming them; a value of another kind a ``TypeError`` naming ``name['key']``. Returns a
    shallow copy of ``d``."""
    own = fields(cls)
    required = [f.name for f in own if f.default is MISSING and f.default_factory is MISSING]
    optional = [f.name for f in own if f.name not in required]
    check_keys(name, d, required, optional, hint=f"a saved {cls.__name__}")
    for key, value in d.items():
        kind = kinds.get(key)
        if kind is None or (value is None and key in nullable) or _is(kind, value):
            continue
        what = _KINDS[kind] + (" or None" if key in nullable else "")
        raise TypeError(
            f"{name}['{key}']: expected {what} (a saved {cls.__name__}), received "
            f"{type(value).__name__}"
        )
    return dict(d)
