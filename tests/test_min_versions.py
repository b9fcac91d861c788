"""The lower-bound check (``.ci/min-versions``) pins every dependency at the floor that
pyproject.toml declares, so a raised floor or a new dependency cannot leave it testing other
versions than those the package promises to work with."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: pins above the declared floor, each for the reason .ci/min-versions.txt gives
ABOVE_FLOOR = {"pillow": ("9", "9.2.0"), "pytest-timeout": ("2.3", "2.3.1")}
#: not pinned there: torch is the main run's CPU build
UNPINNED = {"torch"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def _declared() -> dict[str, str]:
    """``{name: floor}`` of the project's dependencies and its dev extra as the CI's Python
    (3.11: ArviZ's ``python_version < '3.12'`` line) reads them."""
    # tomllib is Python >= 3.11; on 3.10, tomli (the same parser, which pytest installs there)
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floors = {}
    for req in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        if "python_version >= '3.12'" in req:
            continue
        m = re.search(r">=\s*([0-9][0-9.]*)", req)
        assert m, f"pyproject.toml: {req!r} declares no floor"
        floors[_name(req)] = m.group(1)
    return floors


def _pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "min-versions.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_name(name)] = version.strip()
    return pins


def test_every_declared_floor_is_the_pinned_version():
    declared, pinned = _declared(), _pinned()
    assert "numpy" in declared and "ruff" in declared  # the parse read both lists
    missing = sorted(set(declared) - set(pinned) - UNPINNED - {"ruff"})
    assert not missing, f".ci/min-versions.txt: no pin for {missing}"
    for name, floor in declared.items():
        if name in UNPINNED or name == "ruff":
            continue
        if name in ABOVE_FLOOR:
            assert (floor, pinned[name]) == ABOVE_FLOOR[name], name
            continue
        # "1.13" pins as 1.13 or 1.13.0
        assert pinned[name].split(".")[: len(floor.split("."))] == floor.split("."), (
            f"{name}: declared floor {floor}, pinned {pinned[name]}"
        )
    assert not set(pinned) - set(declared), "a pin for a package that is no dependency"
