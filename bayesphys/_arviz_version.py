"""Which ArviZ series is installed, and the one reading both series share.

``ARVIZ_V1`` is ``True`` on ArviZ >= 1 (groups in an :class:`xarray.DataTree`, Python >= 3.12),
``False`` on 0.x (:class:`arviz.InferenceData`); :func:`group_names` lists the groups of
either (re-exported by :mod:`bayesphys.inference_data`). :func:`import_arviz` is how the
package imports ArviZ.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from importlib.metadata import version
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

ARVIZ_V1: bool = int(version("arviz").split(".")[0]) >= 1


def group_names(idata: arviz.InferenceData | xr.DataTree) -> list[str]:
    """Names of the groups in ``idata`` on either ArviZ."""
    return list(idata.children) if ARVIZ_V1 else list(idata.groups())


_RETRY_LOCK = threading.Lock()
"""Held by :func:`import_arviz` while it repeats a failed import with ``XDG_CACHE_HOME`` set."""


def import_arviz() -> ModuleType:
    """``import arviz``, also where the user's cache folder cannot be written (a read-only or
    unwritable ``HOME`` on a cluster node): ArviZ 0.x writes a once-a-day warning stamp under
    that folder at its first import and failed there with an ``OSError``, ending every
    command and export that needed it. The import is then repeated with ``XDG_CACHE_HOME``
    pointing at a temporary folder for its duration (the variable is restored afterwards).

    The repeat holds a module lock, so threads that import ArviZ at once take turns: each
    restored the variable it had found, so the one that finished last set it back to another
    thread's temporary folder (deleted by then), and one thread dropped the module another had
    just imported. While the repeat runs, other code of the process reads the temporary folder
    from the environment: the variable is process-wide."""
    try:
        import arviz
    except OSError:
        with _RETRY_LOCK:
            try:  # another thread's repeat may have imported it while this one waited
                import arviz
            except OSError:
                arviz = _import_with_temporary_cache()
    return arviz


def _import_with_temporary_cache() -> ModuleType:
    """Import ArviZ with ``XDG_CACHE_HOME`` set to a temporary folder (call with
    ``_RETRY_LOCK`` held); the variable is restored, or removed, afterwards."""
    for key in [k for k in sys.modules if k == "arviz" or k.startswith("arviz.")]:
        del sys.modules[key]  # the half-imported package
    before = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="bayesphys-arviz-") as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        try:
            import arviz
        finally:
            if before is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = before
    return arviz
