"""benchmarks/reference/poisson_ground_truth.py writes the P1 test set in the notebook format."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from bayesphys.problems.rgnp import poisson_test_set

SCRIPT = (
    Path(__file__).resolve().parents[2] / "benchmarks" / "reference" / "poisson_ground_truth.py"
)


def _load():
    spec = importlib.util.spec_from_file_location("poisson_ground_truth", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_files_round_trip_to_the_benchmark_test_set(tmp_path):
    out = _load().main([str(tmp_path / "gt")])
    d = poisson_test_set(1000, seed=0)
    u = np.loadtxt(out / "allGroundTruthU.dat")
    z = np.loadtxt(out / "allGroundTruthZ.dat")
    w = np.loadtxt(out / "allGroundTruthW.dat")
    x = np.loadtxt(out / "FenicsMeshX.dat")
    assert u.shape == (1000, 201) and z.shape == (1000, 5) and w.shape == (1000,)
    np.testing.assert_allclose(u, d["u"], rtol=1e-15, atol=1e-17)
    np.testing.assert_allclose(z, d["z"], rtol=1e-15)
    np.testing.assert_allclose(w, d["w"][:, 0], rtol=1e-15)
    np.testing.assert_allclose(x, d["x"], rtol=1e-15)


def test_usage_error_without_output_dir(capsys):
    with pytest.raises(SystemExit) as info:
        _load().main([])
    assert info.value.code == 2 and "usage" in capsys.readouterr().err


def test_help_makes_no_folder(tmp_path, monkeypatch, capsys):
    # --help was taken for the output folder: a folder named --help with the 5 MB test set
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        _load().main(["--help"])
    assert info.value.code == 0 and "out_dir" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
