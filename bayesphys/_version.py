"""The release number: one place that the package, its checkpoints, result files and
ArviZ exports read (and ``pyproject.toml`` through hatch's version source)."""

__version__ = "0.1.0"
