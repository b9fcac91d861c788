"""Where the benchmarks are: the bayesphys source checkout holding ``benchmarks/``
(:func:`repo_root`), and what counts as one (:func:`_is_checkout`)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def _is_checkout(folder: Path) -> bool:
    """Whether ``folder`` is a bayesphys source checkout: ``benchmarks/`` beside a
    ``pyproject.toml`` naming the project ``bayesphys`` (a ``benchmarks/`` folder alone, in the
    current directory or installed into site-packages by another package, is not run)."""
    pyproject = folder / "pyproject.toml"
    if not ((folder / "benchmarks").is_dir() and pyproject.is_file()):
        return False
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10: the [project] table's name line
        table = re.search(r"(?ms)^\s*\[project\]\s*$(.*?)(?=^\s*\[|\Z)", text)
        name = table and re.search(r"""(?m)^\s*name\s*=\s*["']([^"']*)["']""", table.group(1))
        return bool(name) and name.group(1) == "bayesphys"
    try:
        return tomllib.loads(text).get("project", {}).get("name") == "bayesphys"
    except tomllib.TOMLDecodeError:
        return False


def repo_root() -> Path:
    """The bayesphys source checkout holding ``benchmarks/``: the package's own (an editable
    install) or the current directory when it is one (:func:`_is_checkout`)."""
    here = Path(__file__).resolve().parents[2]  # <checkout>/bayesphys/_bench/paths.py
    for cand in (here, Path.cwd()):
        if _is_checkout(cand):
            return cand
    raise FileNotFoundError(
        "benchmarks/: no bayesphys source checkout next to the package or in the current "
        "directory (a folder with benchmarks/ and a pyproject.toml naming bayesphys); run "
        "benchmark commands from a source checkout"
    )


def checkout_write_problem(root: Path, *, figures: bool = False) -> str:
    """Why a full run without ``--out`` cannot write its committed files in the checkout
    ``root`` (``""`` when it can): ``benchmarks/results/``, the table in
    ``docs/benchmarks.md`` and, with ``figures``, ``docs/img/``. Checked before the work: a
    read-only checkout (a shared install) failed at the write, after hours of benchmarks."""
    targets = [root / "benchmarks" / "results", root / "docs" / "benchmarks.md"]
    if figures:
        targets.append(root / "docs" / "img")
    for path in targets:
        if path.exists() and not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
            what = "folder" if path.is_dir() else "file"
            return (
                f"out: the default {what} {path} cannot be written (not writable here); pass "
                "--out DIR (out=) to write the results elsewhere"
            )
    return ""
