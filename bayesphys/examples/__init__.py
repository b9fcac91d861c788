"""Runnable examples: ``bayesphys run NAME [--smoke]`` or ``python -m bayesphys.examples.NAME``.

Each module defines ``DESCRIPTION`` and ``main(argv) -> dict`` with ``--smoke``, ``--device``,
``--out`` and ``--seed`` flags.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

__all__ = ["available", "load"]


def available() -> dict[str, str]:
    """Example name -> one-line description."""
    out = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"{__name__}.{info.name}")
        except ImportError as err:  # a component not installed/landed
            out[info.name.replace("_", "-")] = f"(unavailable: {err})"
            continue
        out[info.name.replace("_", "-")] = getattr(mod, "DESCRIPTION", "")
    return out


def load(name: str) -> ModuleType:
    """Import the example module ``name`` (dashes or underscores)."""
    mod = name.replace("-", "_")
    names = [i.name for i in pkgutil.iter_modules(__path__)]
    if mod not in names:
        raise ValueError(f"EXAMPLE: unknown example {name!r}; available: {sorted(available())}")
    return importlib.import_module(f"{__name__}.{mod}")
