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
    # what set the thread counts (torch's own; the BLAS variables when set)
    assert payload["threading"]["torch_num_threads"] == payload["threads"]
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


def test_recal_rows_give_the_fitted_maps_scale_and_shift(tmp_path):
    """One repetition: each map's scale and shift are those of its definition on the fit
    record that ``recal_rates`` draws after its test record (same generator, seed 0)."""
    import torch

    from bayesphys.diagnostics import standardised_residuals

    mod = _script()
    path = mod.main(["--reps", "0", "--recal-reps", "1", "--out", str(tmp_path)])
    rows = {(r["n"], r["map"]): r for r in json.loads(path.read_text())["rows"]}
    for n, n_draws, n_fit in mod.RECAL_SIZES:
        g = torch.Generator().manual_seed(0)  # each size's repetitions start from the seed
        mod.record("exact", n, n_draws, g)  # the test record
        fit = mod.record("exact", n_fit, n_draws, g)
        draws, truth = fit.draws[:, :, 0], fit.truth[:, 0]
        z = standardised_residuals(draws, truth)
        bias = float((truth - draws.mean(1)).sum() / draws.std(1).sum())
        want = {"zscore": (float(z.square().mean().sqrt()), 0.0), "affine": (float(z.std()), bias)}
        for m, (scale, shift) in want.items():
            r = rows[(n, m)]
            assert r["scale_mean"] == pytest.approx(scale, rel=1e-6)
            assert r["shift_mean"] == pytest.approx(shift, abs=1e-9)
            assert r["scale_sd"] == 0.0 and r["shift_sd"] == 0.0
        assert rows[(n, "shape")]["shift_mean"] == pytest.approx(bias, abs=1e-9)
        assert rows[(n, "none")]["scale_mean"] is None


def test_draws_gaussian_rank_is_the_brute_force_one_and_size_case_restrict(tmp_path, monkeypatch):
    """``--draws-gaussian --size N L --case C``: one row, and its rank is the truth's count of
    draws nearer in the Mahalanobis distance of the draws' own mean and covariance (numpy)."""
    import numpy as np
    import torch

    mod = _script()
    seen = []
    original = mod.sbc_uniformity

    def spy(ranks, n_draws, **kw):
        seen.append(ranks.clone())
        return original(ranks, n_draws, **kw)

    monkeypatch.setattr(mod, "sbc_uniformity", spy)
    argv = ["--draws-gaussian", "--reps", "1", "--size", "30", "9", "--case", "exact K=2"]
    path = mod.main([*argv, "--out", str(tmp_path)])
    rows = json.loads(path.read_text())["rows"]
    assert [(r["table"], r["n"], r["n_draws"], r["posterior"]) for r in rows] == [
        ("draws_gaussian", 30, 9, "exact K=2")
    ]
    rec = mod.record("exact K=2", 30, 9, torch.Generator().manual_seed(0))
    want = []
    for t, d in zip(rec.truth.numpy(), rec.draws.numpy()):
        prec = np.linalg.inv(np.cov(d.T))
        dist = [float((x - d.mean(0)) @ prec @ (x - d.mean(0))) for x in (t, *d)]
        want.append(sum(v < dist[0] for v in dist[1:]))
    assert seen[0].tolist() == want  # the first call: the draws-alone rank


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--crossfit", "--draws-gaussian"], "--crossfit, --draws-gaussian: expected one"),
        (["--crossfit", "--case", "exact"], "--case: --crossfit needs a K >= 2 posterior"),
        (["--draws-gaussian", "--case", "wide x1.5"], "--draws-gaussian needs a K >= 2"),
        (["--size", "0", "9"], "argument --size: expected a positive int, received '0'"),
    ],
)
def test_bad_new_options_are_refused_before_anything_runs(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as err:
        _script().main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
