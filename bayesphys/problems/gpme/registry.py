"""The GPME families of ProbConserv (Hansen et al., ICML 2023, §4) by id:
:data:`PROBLEM_CLASSES` and :func:`get_problem` (``"diffusion"``, ``"pme"``, ``"stefan"``).
"""

from __future__ import annotations

from ..._checks import did_you_mean
from .base import GPMEProblem
from .diffusion import Diffusion
from .porous_medium import PorousMedium
from .stefan import Stefan

__all__ = ["PROBLEM_CLASSES", "get_problem"]


_PROBLEMS = {"diffusion": Diffusion, "pme": PorousMedium, "stefan": Stefan}


#: the GPME families (a checkpoint rebuilds its problem from one of them by class name)
PROBLEM_CLASSES: tuple[type[GPMEProblem], ...] = (Diffusion, PorousMedium, Stefan)
"""The GPME problem classes: :class:`Diffusion`, :class:`PorousMedium`, :class:`Stefan`."""


def get_problem(name: str | GPMEProblem) -> GPMEProblem:
    """Problem by id: ``"diffusion"``, ``"pme"`` or ``"stefan"``."""
    if isinstance(name, GPMEProblem):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"problem: expected one of {sorted(_PROBLEMS)} or a GPMEProblem, received "
            f"{type(name).__name__} {name!r}"
        )
    if name not in _PROBLEMS:
        raise ValueError(
            f"problem: expected one of {sorted(_PROBLEMS)}, received "
            f"{name!r}{did_you_mean(name, sorted(_PROBLEMS))}"
        )
    return _PROBLEMS[name]()
