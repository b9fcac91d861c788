"""Which ArviZ series is installed: ``ARVIZ_V1`` is ``True`` on ArviZ >= 1 (groups in an
:class:`xarray.DataTree`, Python >= 3.12), ``False`` on 0.x (:class:`arviz.InferenceData`)."""

from importlib.metadata import version

ARVIZ_V1: bool = int(version("arviz").split(".")[0]) >= 1
