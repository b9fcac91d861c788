"""Moved: :class:`GradientSync` and :func:`rank_generator_seed` live in the shared core
(``bayesphys._data_parallel``); import them from :mod:`bayesphys.distributed`. This module
keeps the old import path working."""

from .._data_parallel import GradientSync, rank_generator_seed

__all__ = ["GradientSync", "rank_generator_seed"]
