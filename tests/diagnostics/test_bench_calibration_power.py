"""benchmarks/calibration_power.py writes the rows of the tables it prints to a results file."""

from __future__ import annotations

import json
import math

import pytest

from bayesphys._bench import repo_root, script_module


def _script():
    return script_module(str(repo_root() / "benchmarks" / "calibration_power.py"))


def test_recal_table_rows_are_written_with_the_command(tmp_path, capsys):
    argv = ["--reps", "0", "--recal-reps", "1", "--name", "recal", "--out", str(tmp_path)]
    path = _script().main(argv)
    printed = capsys.readouterr().out
    payload = json.loads(path.read_text())
    assert path == tmp_path / "recal.json"
    assert payload["command"].endswith("python benchmarks/calibration_power.py " + " ".join(argv))
    assert (payload["reps"], payload["recal_reps"], payload["seed"]) == (0, 1, 0)
    assert payload["date"] and payload["seconds"] > 0
    rows = payload["rows"]
    assert [(r["n"], r["n_draws"], r["n_fit"], r["map"]) for r in rows] == [
        (n, k, f, m)
        for n, k, f in _script().RECAL_SIZES
        for m in ("none", "zscore", "affine", "shape")
    ]
    for r in rows:
        assert r["table"] == "recal" and r["reps"] == 1
        assert r["sbc_rejects"] in (0.0, 1.0) and r["coverage90_sd"] == 0.0
        assert 0 < r["coverage90_mean"] <= 1 and math.isfinite(r["coverage90_mean"])
        # the printed table's row is the file's
        line = (
            f"| {r['n']} | {r['n_draws']} | {r['n_fit']} | {r['map']} | {r['sbc_rejects']:.2f} | "
            f"{r['coverage90_mean']:.3f} | {r['coverage90_sd']:.3f} |"
        )
        assert line in printed


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--reps", "-1"], "--reps"),
        (["--reps", "0", "--recal-reps", "0"], "--reps, --recal-reps"),
        (["--crossfit", "--reps", "0"], "--crossfit"),
        (["--name", "a/b"], "--name"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch, argv, option):
    mod = _script()

    def boom(*a, **k):
        raise AssertionError("a simulation would run")

    for name in ("rates", "crossfit_rates", "recal_rates"):
        monkeypatch.setattr(mod, name, boom)
    with pytest.raises(SystemExit) as err:
        mod.main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2 and f"{option}: " in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
