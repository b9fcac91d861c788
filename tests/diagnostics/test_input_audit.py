"""Input checks of the public diagnostics: a bad argument fails early with an error naming it.

Each case used to be accepted silently (a PIT above 1, a TARP ATC of 0, a summary summed over
every dim, a string split into names) or to fail later in torch, numpy or xarray.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.diagnostics import (
    CoreFamily,
    analyse,
    calibration_rows,
    central_coverage,
    ecdf_band,
    expected_coverage,
    field_calibration_curve,
    front_position,
    is_calibrated,
    pit_ecdf,
    plot_pit_ecdf,
    posterior_draws,
    probe,
    ranks_inference_data,
    sbc_pit,
    sbc_ranks,
    sbc_uniformity,
    score_summary,
    simulate_and_infer,
    tarp,
    total_mass,
)

F64 = torch.float64


@pytest.fixture
def record():
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(20, 2, dtype=F64, generator=g)
    draws = torch.randn(20, 9, 2, dtype=F64, generator=g)
    return truth, draws


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda t, d: sbc_ranks(t, d, seed=1.5), TypeError, "seed: expected an int"),
        (lambda t, d: sbc_ranks(t, d, seed=True), TypeError, "seed: expected an int"),
        (lambda t, d: sbc_ranks(t.numpy(), d.numpy()), TypeError, "truth: expected a torch.Tensor"),
        (lambda t, d: sbc_ranks(t, d[:, :0]), ValueError, "truth/draws: expected N >= 1"),
        (lambda t, d: sbc_ranks(t[:0], d[:0]), ValueError, "truth/draws: expected N >= 1"),
        (lambda t, d: central_coverage(t, d, "0.9"), TypeError, "level: expected a real number"),
        (lambda t, d: central_coverage(t, d, 0.9, seed=1.5), TypeError, "seed: expected an int"),
        (lambda t, d: expected_coverage(t, d, 0.9), TypeError, "levels: expected a sequence"),
        (lambda t, d: expected_coverage(t, d, []), ValueError, "levels: expected at least one"),
        (
            lambda t, d: expected_coverage(t, d, kind="eti"),
            ValueError,
            "kind: expected 'central' or 'hdi', received 'eti'",
        ),
        (lambda t, d: tarp(t, d, n_alpha=1), ValueError, "n_alpha: expected an int >= 2"),
        (lambda t, d: tarp(t, d, n_alpha=2.5), TypeError, "n_alpha: expected an int"),
        (lambda t, d: tarp(t, d, seed=1.5), TypeError, "seed: expected an int"),
        (lambda t, d: score_summary(t, d[:, :1]), ValueError, r"draws: expected at least 2 draws"),
    ],
)
def test_rank_and_coverage_functions_refuse_bad_arguments(record, call, error, match):
    with pytest.raises(error, match=match):
        call(*record)


def test_rank_consumers_check_ranks_against_n_draws(record):
    ranks = sbc_ranks(*record)  # values in 0..9
    for fn in (
        lambda: sbc_pit(ranks, 3),  # used to give PIT values above 1
        lambda: pit_ecdf(ranks, 3),  # a wrong ECDF
        lambda: ranks_inference_data(ranks, ["a", "b"], 3),  # a wrong stored L
    ):
        with pytest.raises(ValueError, match=r"ranks: expected values in 0..3"):
            fn()
    with pytest.raises(ValueError, match="n_draws: expected an int >= 1"):
        sbc_pit(ranks, -1)  # gave inf
    with pytest.raises(TypeError, match="n_draws: expected an int"):
        sbc_pit(ranks, True)
    with pytest.raises(ValueError, match="ranks: expected integer values"):
        sbc_pit(ranks.double() + 0.5, 9)
    with pytest.raises(ValueError, match=r"ranks: expected \[N, K\]"):
        sbc_uniformity(ranks[None], 9)
    with pytest.raises(ValueError, match=r"ranks: expected \[N, K\]"):
        sbc_uniformity(ranks[:0], 9)
    for dtype in (torch.bool, torch.complex64):
        with pytest.raises(
            TypeError, match=rf"^ranks: expected integer values in 0..L, received dtype {dtype}"
        ):
            sbc_uniformity(ranks.to(dtype), 9)
    with pytest.raises(TypeError, match="ranks: expected a torch.Tensor"):
        sbc_uniformity(ranks.numpy(), 9)
    for bad, error in ((0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)):
        # 0 meant the default, -3 and True meant 2, 2.5 meant 2
        with pytest.raises(error, match="n_bins"):
            sbc_uniformity(ranks, 9, n_bins=bad)
    with pytest.raises(ValueError, match=r"names: expected 2 names \(one per summary\)"):
        plot_pit_ecdf(ranks, 9, ["a"])  # an IndexError after the band was computed


def test_ranks_inference_data_checks_names_and_group(record):
    ranks = sbc_ranks(*record)
    with pytest.raises(TypeError, match="names: expected a list of 2 summary names"):
        ranks_inference_data(ranks, "ab", 9)  # was split into the names 'a' and 'b'
    with pytest.raises(ValueError, match="names: expected distinct names"):
        ranks_inference_data(ranks, ["a", "a"], 9)  # one of the two variables was lost
    with pytest.raises(ValueError, match="names: 'sbc_n_draws' is the name of the stored L"):
        ranks_inference_data(ranks, ["sbc_n_draws", "a"], 9)
    with pytest.raises(ValueError, match="group: expected a group of its own"):
        ranks_inference_data(ranks, ["a", "b"], 9, group="posterior")
    for names in (["a", ""], ["a", 3]):
        with pytest.raises(TypeError, match=r"^names: expected non-empty strings, received \["):
            ranks_inference_data(ranks, names, 9)
    for group in ("", 3):
        with pytest.raises(TypeError, match="^group: expected a non-empty string, received"):
            ranks_inference_data(ranks, ["a", "b"], 9, group=group)
    first = ranks_inference_data(ranks, ["a", "b"], 9)
    with pytest.raises(ValueError, match="group: 'prior_sbc' is already a group of idata"):
        ranks_inference_data(ranks, ["a", "b"], 9, idata=first)


def test_ranks_inference_data_checks_attrs_as_the_file_writer_does(record, tmp_path):
    # attrs a netCDF file cannot hold (a list, None) were stored on the group, and the write
    # of the file failed later; a non-mapping failed in dict.update
    from bayesphys.inference_data import group_dataset, load_netcdf, save_netcdf

    ranks = sbc_ranks(*record)
    with pytest.raises(TypeError, match=r"attrs\['bad'\]: expected a string, an int or a float"):
        ranks_inference_data(ranks, ["a", "b"], 9, attrs={"bad": [1, 2]})
    with pytest.raises(TypeError, match=r"attrs\['none'\]: expected a string"):
        ranks_inference_data(ranks, ["a", "b"], 9, attrs={"none": None})
    with pytest.raises(TypeError, match="attrs: expected a mapping"):
        ranks_inference_data(ranks, ["a", "b"], 9, attrs=[("problem", "p")])
    idata = ranks_inference_data(ranks, ["a", "b"], 9, attrs={"problem": "p", "seed": 2**64 - 1})
    back = group_dataset(load_netcdf(save_netcdf(idata, tmp_path / "r.nc")), "prior_sbc")
    assert back.attrs["problem"] == "p" and back.attrs["seed"] == str(2**64 - 1)


def test_ecdf_band_checks():
    with pytest.raises(ValueError, match="n_sims: expected an int >= 1"):
        ecdf_band(0, np.array([0.5]))  # gave a NaN band
    with pytest.raises(
        ValueError, match=r"eval_points: expected a 1-D array of values in \[0, 1\]"
    ):
        ecdf_band(20, np.array([1.5]))
    with pytest.raises(ValueError, match=r"prob: expected a probability in \(0, 1\)"):
        ecdf_band(20, np.array([0.5]), prob=1.5)


def test_field_calibration_curve_checks():
    g = GaussianPosterior(torch.zeros(5, dtype=F64), torch.eye(5, dtype=F64))
    with pytest.raises(TypeError, match="posteriors: expected a sequence of Posterior"):
        field_calibration_curve(g, [torch.zeros(5, dtype=F64)])
    with pytest.raises(ValueError, match=r"truths\[0\]: expected shape \(5,\) .*received \(4,\)"):
        field_calibration_curve([g], [torch.zeros(4, dtype=F64)])
    with pytest.raises(ValueError, match=r"levels\[0\]: expected a probability"):
        field_calibration_curve([g], [torch.zeros(5, dtype=F64)], levels=[1.5])
    with pytest.raises(TypeError, match="^truths: expected a sequence of fields .*received float"):
        field_calibration_curve([g], 0.0)
    for posteriors, truths, got in (([g], [torch.zeros(5)] * 2, "1 and 2"), ([], [], "0 and 0")):
        with pytest.raises(
            ValueError,
            match=rf"^posteriors/truths: expected equal non-zero lengths, received {got}",
        ):
            field_calibration_curve(posteriors, truths)


def test_summaries_check_their_settings():
    u = torch.ones(3, 5, dtype=F64)
    with pytest.raises(ValueError, match="event_ndim: expected an int >= 1"):
        total_mass(1.0, event_ndim=0)  # summed every dim: one number for 3 fields
    with pytest.raises(ValueError, match=r"weights: expected a shape broadcasting to the event"):
        total_mass(torch.ones(5, 1, dtype=F64))(u[0])  # a [5, 5] grid summed silently
    with pytest.raises(
        ValueError,
        match=r"^weights: expected a shape broadcasting to the event \(5,\) .*received \(3,\)",
    ):
        total_mass(torch.ones(3, dtype=F64))(u)  # no broadcast at all
    with pytest.raises(TypeError, match=r"index\[0\]: expected an int"):
        probe(True)  # indexed with True: added a dim
    with pytest.raises(TypeError, match="index: expected an int or a tuple of ints"):
        probe(1.5)
    for empty in ((), [], torch.tensor([], dtype=torch.long)):
        with pytest.raises(
            ValueError, match=r"^index: expected at least one grid index, received \(\)"
        ):
            probe(empty)
    x = torch.linspace(0, 1, 5, dtype=F64)
    with pytest.raises(ValueError, match="level: expected a finite number"):
        front_position(x, level=math.nan)  # every front was x[0]
    with pytest.raises(ValueError, match="x: expected a 1-D grid of n >= 2 points"):
        front_position(x[:1])
    with pytest.raises(ValueError, match="x: expected strictly increasing"):
        front_position(x.flip(0))
    with pytest.raises(ValueError, match=r"u: expected fields \[\*S, 4\] on the grid x"):
        front_position(x[:4])(u)
    assert torch.equal(probe(torch.tensor([1]))(u), probe(1)(u))  # integer tensors still work
    assert torch.equal(front_position(x.tolist())(u), front_position(x)(u))


def test_simulation_loop_checks():
    fam = CoreFamily()
    run = lambda **kw: simulate_and_infer(  # noqa: E731
        kw.pop("simulate", fam.simulate),
        kw.pop("infer", fam.infer),
        kw.pop("summaries", fam.summaries()),
        **{"n_sims": 3, "n_draws": 3, **kw},
    )
    for kw, error, match in (
        ({"n_sims": 2.5}, TypeError, "n_sims: expected an int"),
        ({"n_sims": True}, TypeError, "n_sims: expected an int"),
        ({"n_draws": True}, TypeError, "n_draws: expected an int"),
        ({"seed": 1.5}, TypeError, "seed: expected an int"),  # used to run with seed 1
        ({"field_levels": 0.9}, TypeError, "field_levels: expected a sequence"),
        ({"field_levels": [1.5]}, ValueError, r"field_levels\[0\]: expected a probability"),
        ({"summaries": [1]}, TypeError, "summaries: expected a dict"),
        ({"summaries": {}}, ValueError, "summaries: expected at least one summary"),
        ({"summaries": {"a": 3}}, TypeError, "summaries: expected callables"),
        ({"summaries": {"a": lambda u: u}}, ValueError, r"summaries\['a'\]: expected one value"),
        ({"simulate": lambda n, seed: torch.zeros(n, 2)}, TypeError, "simulate: expected"),
        ({"infer": 3}, TypeError, "^infer: expected a callable, received int"),
        (
            {"simulate": lambda n, seed: (torch.tensor(1.0), torch.zeros(n, 2))},
            ValueError,
            r"^simulate: expected theta with leading dim 3, received \(\)",
        ),
        (
            {"simulate": lambda n, seed: (torch.zeros(n + 1, 2), torch.zeros(n, 2))},
            ValueError,
            r"^simulate: expected theta with leading dim 3, received \(4, 2\)",
        ),
        (
            {"infer": lambda y: None},
            TypeError,
            r"infer \(problem 0\): expected a Posterior .*NoneType",
        ),
    ):
        with pytest.raises(error, match=match):
            run(**kw)
    for bad, error in ((0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="n_draws"):
            posterior_draws(torch.randn(10, 3), bad)


def test_calibration_row_settings_are_checked():
    with pytest.raises(ValueError, match=r"alpha: expected a number <= 1.0"):
        is_calibrated({"sbc_pvalue": 0.5, "coverage90": 0.9}, alpha=2)  # was always False
    # a row without either metric (a run without level 0.9, a failed row) is not calibrated
    assert is_calibrated({"sbc_pvalue": 0.5, "coverage90": 0.9})
    assert not is_calibrated({"coverage90": 0.9})
    assert not is_calibrated({"sbc_pvalue": 0.5, "coverage90": None})
    fam = CoreFamily()
    with pytest.raises(ValueError, match="recalibrate: expected 0/None"):
        calibration_rows(fam.simulate, fam.infer, problem="p", method="m", recalibrate=1)
    with pytest.raises(TypeError, match="recalibrate: expected an int"):
        calibration_rows(fam.simulate, fam.infer, problem="p", method="m", recalibrate=True)


def test_analyse_and_plot_refuse_wrong_objects(tmp_path):
    from bayesphys.diagnostics.plots import plot_component

    with pytest.raises(TypeError, match="record: expected a SimulationRecord"):
        analyse({"truth": torch.zeros(3, 1)})
    with pytest.raises(TypeError, match="results: expected CalibrationResult objects"):
        plot_component("core", [], [{"method": "m"}], tmp_path / "f.png")


@pytest.mark.gpu
def test_rank_diagnostics_take_cuda_tensors(record):
    truth, draws = record
    cpu_ranks = sbc_ranks(truth, draws, seed=3)
    cu = torch.device("cuda")
    ranks = sbc_ranks(truth.to(cu), draws.to(cu), seed=3)
    assert torch.equal(ranks.cpu(), cpu_ranks)
    assert torch.equal(sbc_pit(ranks, 9, seed=1).cpu(), sbc_pit(cpu_ranks, 9, seed=1))
    assert sbc_uniformity(ranks, 9)["pvalue"] == sbc_uniformity(cpu_ranks, 9)["pvalue"]
    a, b = tarp(truth.to(cu), draws.to(cu), seed=2), tarp(truth, draws, seed=2)
    assert a["atc"] == pytest.approx(b["atc"]) and a["pvalue"] == pytest.approx(b["pvalue"])


def _mixed_device_calls():
    """Every diagnostic of ``truth [N, K]`` and ``draws [N, L, K]``, as ``(name, call)``;
    each call returns tensors and numbers to compare."""
    from bayesphys.diagnostics import hdi_coverage, hdi_pit, sbc_joint_crossfit, sbc_joint_ranks

    return [
        ("sbc_ranks", lambda t, d: sbc_ranks(t, d, seed=3)),
        ("central_coverage", lambda t, d: central_coverage(t, d, 0.8, seed=3)),
        ("hdi_pit", lambda t, d: hdi_pit(t, d, seed=3)),
        ("hdi_coverage", lambda t, d: hdi_coverage(t, d, 0.8, seed=3)),
        ("expected_coverage", lambda t, d: expected_coverage(t, d, (0.5, 0.9), seed=3)),
        ("expected_coverage_hdi", lambda t, d: expected_coverage(t, d, (0.5, 0.9), "hdi")),
        ("tarp", lambda t, d: tarp(t, d, seed=3)),
        ("score_summary", score_summary),
        ("sbc_joint_ranks", lambda t, d: sbc_joint_ranks(t, d, seed=3)),
        ("sbc_joint_crossfit", lambda t, d: sbc_joint_crossfit(t, d, seed=3)),
    ]


def _values_on_cpu(result):
    """``result`` (a tensor, a tuple or dict of them, numbers, lists) with tensors on the CPU."""
    if isinstance(result, torch.Tensor):
        return result.cpu()
    if isinstance(result, dict):
        return {k: _values_on_cpu(v) for k, v in result.items()}
    if isinstance(result, (tuple, list)):
        return type(result)(_values_on_cpu(v) for v in result)
    return result


@pytest.mark.gpu
@pytest.mark.parametrize("truth_on_cuda", [True, False])
@pytest.mark.parametrize("name, call", _mixed_device_calls())
def test_diagnostics_move_the_truth_to_the_draws_device(record, name, call, truth_on_cuda):
    # a truth on another device than its draws was refused with torch's "Expected all tensors
    # to be on the same device"; field_calibration_curve moved it to the draws' device
    truth, draws = record
    cu = torch.device("cuda")
    t, d = (truth.to(cu), draws) if truth_on_cuda else (truth, draws.to(cu))
    expected = call(truth.to(d.device), d)  # both on the draws' device
    got = call(t, d)
    torch.testing.assert_close(_values_on_cpu(got), _values_on_cpu(expected), rtol=0, atol=0)
    if isinstance(got, torch.Tensor):  # ranks, PITs and indicators: on the draws' device
        assert got.device.type == d.device.type, name


def test_truth_on_draws_device_moves_only_the_truth():
    from bayesphys.diagnostics.sbc import truth_on_draws_device

    truth = torch.arange(6.0).reshape(3, 2)
    draws = torch.empty(3, 4, 2, device="meta")
    moved = truth_on_draws_device(truth, draws)
    assert moved.device == torch.device("meta")
    assert moved.shape == truth.shape and moved.dtype == truth.dtype
    here = torch.zeros(3, 4, 2)
    assert truth_on_draws_device(truth, here) is truth  # already there: no copy
    # the checked pair comes back with the truth on the draws' device
    from bayesphys.diagnostics.sbc import check_truth_draws

    t, d = check_truth_draws(truth.to(F64), here.to(torch.float32))
    assert t.dtype == F64 and d.dtype == torch.float32 and torch.equal(t, truth.to(F64))
