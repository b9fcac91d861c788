"""The license pyproject.toml declares is the one the repository ships (hatchling puts
``LICENSE`` into the wheel's ``dist-info/licenses``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_declared_license_is_the_shipped_one():
    # tomllib is Python >= 3.11; on 3.10, tomli (the same parser, which pytest installs there)
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("not a source checkout")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole text, not a stub
