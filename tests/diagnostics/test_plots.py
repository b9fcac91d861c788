"""``plot_component`` draws outside pyplot: the caller's backend and figure registry stay as
they were (it switched the process to Agg and leaked its figure when saving failed)."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from bayesphys.diagnostics.plots import plot_component
from bayesphys.diagnostics.result import analyse
from bayesphys.diagnostics.simulate import SimulationRecord


def _result():
    g = torch.Generator().manual_seed(0)
    record = SimulationRecord(
        names=["a", "b"],
        truth=torch.randn(20, 2, generator=g, dtype=torch.float64),
        draws=torch.randn(20, 30, 2, generator=g, dtype=torch.float64),
    )
    return analyse(record)


def test_the_figure_is_written_and_the_backend_kept(tmp_path):
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        path = plot_component("core", [], [_result()], tmp_path / "cal.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []


def test_a_failed_save_leaves_no_figure_open(tmp_path):
    import matplotlib.pyplot as plt

    (tmp_path / "notadir").write_text("x")
    with pytest.raises(OSError):
        plot_component("core", [], [_result()], tmp_path / "notadir" / "cal.png")
    assert plt.get_fignums() == []


def test_rows_without_results_get_a_bar_chart(tmp_path):
    rows = [{"problem": "p", "method": "m", "metrics": {"coverage90": 0.9}}]
    path = plot_component("hook", rows, [], tmp_path / "bars.png")
    assert path.stat().st_size > 0
