"""A component's optional hook module, ``bayesphys.<component>.<hook>``, or ``None``.

The command line (``_demo``) and the calibration suite (``_calibration``) both look hooks up
here: a component that is not installed, a hook it does not define and a component package
that cannot be imported (a dependency missing) all read as "no hook".
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["component_hook"]


def component_hook(component: str, hook: str) -> ModuleType | None:
    """Import ``bayesphys.<component>.<hook>``; ``None`` if that component or its hook is
    absent, or its package cannot be imported (finding a submodule imports its package, whose
    own imports may fail with ``ModuleNotFoundError``)."""
    name = f"bayesphys.{component}.{hook}"
    try:
        if importlib.util.find_spec(f"bayesphys.{component}") is None:
            return None
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)
