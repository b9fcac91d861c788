"""Benchmark problems and data generators with exact or reference solutions.

Each component's problems live in a module of this package (``gp_pde``, ``gpme``, ``rgnp``,
``glioma``, ``populations``); the most used names are re-exported here.
"""

__all__: list[str] = []
