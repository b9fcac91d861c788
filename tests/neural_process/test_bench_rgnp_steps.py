"""Smoke test of benchmarks/neural_process_rgnp_steps.py (P2's RGNP row trained for a fixed
number of steps, compared with the committed row)."""

from __future__ import annotations

import json
import math

import pytest

from bayesphys._bench import repo_root, script_module

# the benchmark script's main sets torch's thread count for its process
pytestmark = pytest.mark.usefixtures("restore_threads")


def _script():
    return script_module(str(repo_root() / "benchmarks" / "neural_process_rgnp_steps.py"))


def test_smoke_writes_the_row_and_the_command(tmp_path):
    path = _script().main(["--smoke", "--out", str(tmp_path)])
    payload = json.loads(path.read_text())
    assert path == tmp_path / "neural_process_rgnp_steps.json"
    assert payload["command"].endswith(
        f"python benchmarks/neural_process_rgnp_steps.py --smoke --out {tmp_path}"
    )
    assert payload["smoke"] is True and payload["steps"] == 3 and payload["compared_with"] is None
    got = {r["metric"]: r["rerun"] for r in payload["rows"]}
    committed = _script().committed_row()["metrics"]
    assert set(got) == set(committed)  # the benchmark's P2 RGNP figures, every one
    assert got["steps"] == 3 and all(math.isfinite(v) for v in got.values())
    assert got["var_scale_z"] == 1.0  # the field's variance only is calibrated on P2


def test_compare_flags_each_figure_and_leaves_out_steps_and_timings():
    mod = _script()
    ref = {"nse_u": 2.0, "nse_z": 0.0, "steps": 5.0, "seconds": 1.0, "steps_per_second": 5.0}
    got = {"nse_u": 2.5, "nse_z": 0.0, "steps": 5.0, "seconds": 9.0, "steps_per_second": 1.0}
    rows = mod.compare(got, ref)
    assert [r["metric"] for r in rows] == ["nse_u", "nse_z"]
    assert rows[0]["identical"] is False and rows[0]["rel_diff"] == pytest.approx(0.25)
    assert rows[1]["identical"] is True and rows[1]["rel_diff"] == 0.0
    assert mod.committed_row()["metrics"]["steps"] == 3095  # the default --steps


@pytest.mark.parametrize(
    "argv, option", [(["--steps", "0"], "--steps"), (["--name", "x.json"], "--name")]
)
def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch, argv, option):
    mod = _script()

    def boom(*a, **k):
        raise AssertionError("training would run")

    monkeypatch.setattr(mod, "p2_rgnp", boom)
    with pytest.raises(SystemExit) as err:
        mod.main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2 and f"{option}: " in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
