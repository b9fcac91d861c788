"""Which ArviZ series is installed, and the one reading both series share.

``ARVIZ_V1`` is ``True`` on ArviZ >= 1 (groups in an :class:`xarray.DataTree`, Python >= 3.12),
``False`` on 0.x (:class:`arviz.InferenceData`); :func:`group_names` lists the groups of
either (re-exported by :mod:`bayesphys.inference_data`).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

ARVIZ_V1: bool = int(version("arviz").split(".")[0]) >= 1


def group_names(idata: arviz.InferenceData | xr.DataTree) -> list[str]:
    """Names of the groups in ``idata`` on either ArviZ."""
    return list(idata.children) if ARVIZ_V1 else list(idata.groups())
