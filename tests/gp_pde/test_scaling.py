"""The scaling benchmark (Kronecker vs dense exact solve): measured rows and the figure."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("gp_pde_bench", ROOT / "benchmarks" / "gp_pde.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scaling_rows_measured_and_plotted(tmp_path):
    mod = _bench()
    rows = mod.scaling_rows([12], dense_max=12, device="cpu")
    assert [r["method"] for r in rows] == ["exact-solve-kron", "exact-solve-dense"]
    for r in rows:
        m = r["metrics"]
        assert m["cpu_seconds"] >= 0 and m["peak_mem_mb"] >= 0 and m["model_mem_mb"] > 0
        assert r["setting"] == {"n": 12, "M": 144}
    png = mod.scaling_plot(rows, tmp_path / "img" / "s.png")
    assert png.exists() and png.stat().st_size > 1000


if not (ROOT / "benchmarks" / "gp_pde.py").exists():  # pragma: no cover
    pytest.skip("benchmarks not present", allow_module_level=True)
