"""netCDF files of InferenceData: written atomically with provenance attributes, read back
into memory with files whose data live elsewhere refused.

:func:`save_netcdf` and :func:`load_netcdf` are re-exported by
:mod:`bayesphys.inference_data` and by :mod:`bayesphys`; both ArviZ series (0.x's
:class:`arviz.InferenceData`, 1.x's :class:`xarray.DataTree`) read and write the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arviz_version import ARVIZ_V1, group_names

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

__all__ = ["save_netcdf", "load_netcdf"]


def save_netcdf(
    idata: arviz.InferenceData | xr.DataTree,
    path: str | Path,
    *,
    attrs: Mapping[str, str | int | float] | None = None,
) -> Path:
    """Write ``idata`` to netCDF (h5netcdf engine); returns the path.

    ``attrs`` (names to strings, ints or floats, e.g. ``{"seed": 3}``; an int outside int64,
    such as a seed past ``2**63 - 1``, as its decimal string) are written as the file's
    top-level attributes beside those ``idata`` has (``load_netcdf(path).attrs``), so
    a file says how it was made; ``idata`` itself is left as it was. The file is written
    beside ``path`` first and renamed into place once complete, so a write that fails part-way
    leaves any previous file at ``path`` as it was (a symlink is written through; an existing
    file keeps its permissions)."""
    from ._files import atomic_write, user_path

    if not hasattr(idata, "to_netcdf"):
        raise TypeError(
            f"idata: expected InferenceData (or a DataTree on ArviZ >= 1), received "
            f"{type(idata).__name__}"
        )
    _check_coordinates(idata)
    if attrs is not None:
        idata = _with_attrs(idata, _file_attrs(attrs))
    path = user_path(path)  # "~" expanded; a folder name or a file in the way refused
    if path.is_dir():
        raise IsADirectoryError(f"path: expected a file path, received the folder {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: _write_netcdf(idata, tmp))


def _check_coordinates(idata: Any) -> None:
    """``ValueError`` naming the group and coordinate of ``idata`` whose values netCDF cannot
    store: an object coordinate holding anything but strings and numbers, such as the tuple
    problem ids ``fit_many`` takes (xarray failed deep in its encoder with "setting an array
    element with a sequence", after the temporary file was opened)."""
    for group in group_names(idata):
        ds = idata[group].dataset if ARVIZ_V1 else getattr(idata, group)
        for name, coord in ds.coords.items():
            if coord.dtype != object:
                continue
            for value in np.asarray(coord.values).ravel():
                if not isinstance(value, (str, bytes, int, float, np.generic)):
                    raise ValueError(
                        f"idata: the coordinate {name!r} of group {group!r} holds a "
                        f"{type(value).__name__} ({value!r}), which netCDF cannot store; use "
                        "strings or numbers (e.g. str(id) for tuple problem ids)"
                    )


def _file_attrs(attrs: Any) -> dict[str, str | int | float]:
    """``attrs`` checked for :func:`save_netcdf`: a mapping of non-empty names to values that
    netCDF stores as attributes (a string, an int, a finite or infinite float)."""
    if not isinstance(attrs, Mapping):
        raise TypeError(f"attrs: expected a mapping of names to values, received {attrs!r}")
    out: dict[str, str | int | float] = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"attrs: expected non-empty string names, received {key!r}")
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (str, int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"attrs[{key!r}]: expected a string, an int or a float, received "
                f"{type(value).__name__} {value!r}"
            )
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            # past netCDF's widest integer (a seed up to 2**64 - 1 is valid): its decimal
            # string, so that a run with such a seed is not lost at its final write
            value = str(value)
        out[key] = value
    return out


def _with_attrs(idata, attrs: dict[str, str | int | float]):
    """A shallow copy of ``idata`` (the same group datasets) with ``attrs`` added to its own
    top-level attributes; ``idata`` is left as it was."""
    merged = {**dict(idata.attrs or {}), **attrs}
    if ARVIZ_V1:  # pragma: no cover - exercised on Python >= 3.12 only
        tree = idata.copy(deep=False)
        tree.attrs = merged
        return tree
    from ._arviz_version import import_arviz

    az = import_arviz()

    groups = {g: getattr(idata, g) for g in idata.groups()}
    return az.InferenceData(attrs=merged, **groups)


def _write_netcdf(idata, path: Path) -> None:
    """Write ``idata`` to ``path`` itself (h5netcdf), not atomically: for callers that write
    to a temporary name of their own (:func:`save_netcdf`, ``fit_many``'s records)."""
    if ARVIZ_V1:  # pragma: no cover
        idata.to_netcdf(path, engine="h5netcdf")
    else:
        idata.to_netcdf(str(path), engine="h5netcdf")


def _refuse_outside_storage(path: Path) -> None:
    """Refuse a netCDF-4 (HDF5) file whose data live outside it: a dataset with external
    storage or a virtual dataset (its bytes read from other files named inside it: a file
    from someone else could pull any local file into the loaded posterior) or an external
    link. Neither netCDF nor :func:`save_netcdf` writes them. Refused too: a group linked
    (hard or soft) back to itself or one of the groups above it, a cycle that xarray's DataTree
    reader (ArviZ 1.x) walked without end."""
    import h5py

    seen: set[int] = set()

    def addr_of(obj) -> int:
        return h5py.h5o.get_info(obj.id).addr

    def walk(group, where: str, above: dict[int, str]) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            full = f"{where}/{name}"
            if isinstance(link, h5py.ExternalLink):
                raise ValueError(
                    f"path: {path} links {full!r} to another file ({link.filename}); refused: "
                    "an InferenceData file holds its data itself"
                )
            try:
                obj = group[name]
            except KeyError:  # a dangling soft link: no object, nothing to read
                continue
            addr = addr_of(obj)
            if isinstance(obj, h5py.Group) and addr in above:
                raise ValueError(
                    f"path: {path} links {full!r} back to the group {above[addr]!r} above it "
                    "(a cycle); refused: an InferenceData file's groups form a tree"
                )
            if isinstance(link, h5py.SoftLink) or addr in seen:
                continue  # an object of this file visited under its own name
            seen.add(addr)
            if isinstance(obj, h5py.Group):
                walk(obj, full, {**above, addr: full})
            elif isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
                raise ValueError(
                    f"path: {path} stores variable {full!r} in other files "
                    f"({'virtual dataset' if obj.is_virtual else 'external storage'}); "
                    "refused: an InferenceData file holds its data itself"
                )

    try:
        with h5py.File(path, "r") as f:
            walk(f, "", {addr_of(f): "/"})
    except OSError:
        return  # not HDF5 (e.g. netCDF-3), or damaged: the reader judges it
    except (KeyError, RuntimeError) as err:
        # an HDF5 file whose objects cannot be read (a failed metadata checksum, an address
        # past the file's end): h5py's KeyError or RuntimeError named neither the file nor
        # what was wrong with it, and the check cannot vouch for what it could not read
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: BaseException) -> ValueError:
    """The ``ValueError`` of :func:`load_netcdf` for a file that cannot be read as netCDF."""
    return ValueError(
        f"path: {path} is not a readable netCDF InferenceData file (corrupt, truncated or "
        f"another format): {type(err).__name__}: {err}"
    )


def load_netcdf(path: str | Path) -> arviz.InferenceData | xr.DataTree:
    """Read a file written by :func:`save_netcdf` (or any ArviZ netCDF file).

    The groups are read into memory and the file closed, so the same path can be written
    again; a file that is damaged, truncated or not netCDF is refused with a ``ValueError``
    naming it, as is a netCDF file without InferenceData groups, and so is
    one whose data live in other files (external storage, virtual datasets, external links:
    a file from elsewhere could otherwise read any local file into the posterior)."""
    from ._arviz_version import import_arviz

    az = import_arviz()

    from ._files import user_path

    path = user_path(path, file=False)
    if not path.exists():
        raise FileNotFoundError(f"path: no InferenceData file at {path}")
    if path.is_dir():
        raise IsADirectoryError(f"path: expected an InferenceData file, received the folder {path}")
    _refuse_outside_storage(path)
    try:
        if ARVIZ_V1:  # pragma: no cover - Python >= 3.12 only
            idata = az.from_netcdf(str(path), engine="h5netcdf")
            idata.load()  # a DataTree: into memory, then release the file
            idata.close()
        else:
            with az.rc_context({"data.load": "eager"}):
                idata = az.from_netcdf(str(path), engine="h5netcdf")
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        # h5py reports a damaged object as a KeyError or RuntimeError ("incorrect metadata
        # checksum", "Unspecified error in H5DSget_num_scales"), naming no file
        raise _unreadable(path, err) from err
    if not group_names(idata):
        raise ValueError(
            f"path: {path} is a netCDF file without InferenceData groups (posterior, "
            "observed_data, ...); read it with xarray.open_dataset instead"
        )
    return idata
