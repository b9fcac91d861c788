"""Failure paths of the shared core: a damaged netCDF file is refused by ``load_netcdf`` with a
``ValueError`` naming it (h5py's own ``KeyError`` / ``RuntimeError`` for a damaged object, e.g.
"incorrect metadata checksum", came out as they were, naming no file)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bayesphys.inference_data import build_inference_data, load_netcdf, save_netcdf


def test_a_damaged_netcdf_file_is_refused_naming_it(tmp_path):
    idata = build_inference_data(
        posterior={"a": np.arange(300.0).reshape(2, 50, 3)}, observed_data={"y": np.arange(5.0)}
    )
    good = save_netcdf(idata, tmp_path / "good.nc")
    raw = good.read_bytes()
    bad = tmp_path / "bad.nc"
    refused = 0
    # eight bytes overwritten at offsets across the whole file: headers, object tables, data
    for offset in range(0, len(raw), 193):
        damaged = bytearray(raw)
        damaged[offset : offset + 8] = b"\xa5" * 8
        bad.write_bytes(bytes(damaged))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # xarray's decoding warnings of damaged attrs
                load_netcdf(bad)
        except ValueError as err:
            assert str(err).startswith(f"path: {bad} is not a readable netCDF"), str(err)
            refused += 1
    assert refused > 0  # damage in the file's structure is found


def test_a_truncated_netcdf_file_is_refused_naming_it(tmp_path):
    idata = build_inference_data(posterior={"a": np.zeros((1, 20))})
    raw = save_netcdf(idata, tmp_path / "good.nc").read_bytes()
    bad = tmp_path / "cut.nc"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=f"path: {bad} is not a readable netCDF"):
        load_netcdf(bad)
