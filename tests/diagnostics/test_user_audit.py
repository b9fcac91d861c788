"""What a user meets when one of many inferences fails, or a public diagnostic gets a wrong input:
the error names the problem or the argument, before the work where it can."""

from __future__ import annotations

import types

import pytest
import torch

from bayesphys.diagnostics import (
    Recalibrator,
    SimulationRecord,
    analyse,
    calibration_rows,
    field_calibration_curve,
    fit_recalibration,
    recalibrated_rows,
    run_sbc,
    simulate_and_infer,
    suite,
)


def _notes(err: BaseException) -> str:
    return " ".join(getattr(err, "__notes__", []))


def _failing_in(model, bad: int):
    """``infer`` that raises the user's own error in its ``bad``-th call."""
    calls = []

    def infer(y):
        calls.append(1)
        if len(calls) == bad + 1:
            raise RuntimeError("solver diverged")
        return model.infer(y)

    return infer


@pytest.mark.parametrize("entry", [simulate_and_infer, run_sbc])
def test_an_inference_failing_in_one_problem_names_it(exact_model, entry):
    # the user's RuntimeError came alone: which of the N problems raised it was not said
    with pytest.raises(RuntimeError, match="solver diverged") as info:
        entry(
            exact_model.simulate,
            _failing_in(exact_model, 3),
            n_sims=6,
            n_draws=5,
            seed=11,
            progress=False,
        )
    assert "problem 3 of 6" in _notes(info.value)
    assert "seed=11" in _notes(info.value)


def test_data_shorter_than_n_sims_names_the_problem(exact_model):
    # data[i] past the end of the simulated data was a bare IndexError
    def simulate(n, *, seed):
        theta, y = exact_model.simulate(n, seed=seed)
        return theta, y[:2]

    with pytest.raises(IndexError) as info:
        simulate_and_infer(simulate, exact_model.infer, n_sims=4, n_draws=5, progress=False)
    assert "problem 2 of 4" in _notes(info.value)


@pytest.mark.parametrize(("bad", "where"), [(2, "fit problem 2 of 4"), (5, "evaluation problem 1")])
def test_fit_recalibration_names_the_problem_that_failed(exact_model, bad, where):
    with pytest.raises(RuntimeError, match="solver diverged") as info:
        fit_recalibration(exact_model.simulate, _failing_in(exact_model, bad), n_fit=4, n_eval=3)
    assert where in _notes(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_fit": 0}, "n_fit: expected an int >= 1, received 0"),
        ({"n_eval": 0}, "n_eval: expected an int >= 1, received 0"),
        ({"n_fit": True}, "n_fit: expected an int"),
        ({"levels": [0.5, 2.0]}, r"levels\[1\]: expected a probability"),
        ({"level": 1.5}, "level: expected a probability"),
        ({"seed": None}, "seed: expected an int"),
    ],
)
def test_fit_recalibration_checks_its_arguments_before_simulating(exact_model, kwargs, match):
    # n_fit = 0 was refused after the simulation naming 'posteriors/truths'; a bad levels
    # only after the n_fit and n_eval inferences
    calls = []

    def simulate(n, *, seed):
        calls.append(n)
        return exact_model.simulate(n, seed=seed)

    args = {"n_fit": 3, "n_eval": 3, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        fit_recalibration(simulate, exact_model.infer, **args)
    assert calls == []


def test_fit_recalibration_refuses_an_infer_that_is_not_callable(exact_model):
    with pytest.raises(TypeError, match="infer: expected a callable, received int"):
        fit_recalibration(exact_model.simulate, 3, n_fit=3, n_eval=3)


def _held_out(model, n=4):
    theta, y = model.simulate(n, seed=3)
    return [model.infer(y[i]) for i in range(n)], theta


@pytest.mark.parametrize("as_array", [False, True])
def test_recalibrator_refuses_draws_in_place_of_posteriors_by_name(exact_model, as_array):
    # draws [L, *event] (what infer may return to run_sbc) failed with "'Tensor' object has
    # no attribute 'batch_shape'"
    posts, theta = _held_out(exact_model)
    draws = [p.sample((20,), generator=torch.Generator().manual_seed(0)) for p in posts]
    if as_array:
        draws = [d.numpy() for d in draws]
    with pytest.raises(TypeError, match=r"posteriors\[0\]: expected a Posterior.*SamplePosterior"):
        Recalibrator.fit(draws, theta)
    rec = Recalibrator.fit(posts, theta)
    with pytest.raises(TypeError, match=r"posteriors\[0\]: expected a Posterior"):
        rec.evaluate(draws, theta)


def test_recalibrator_refuses_one_posterior_in_place_of_a_list(exact_model):
    posts, theta = _held_out(exact_model)
    with pytest.raises(TypeError, match="posteriors: expected a sequence .* GaussianPosterior"):
        Recalibrator.fit(posts[0], theta[0])
    with pytest.raises(TypeError, match="posteriors: expected a sequence .* generator"):
        Recalibrator.fit((p for p in posts), theta)


def _record(**kw):
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(10, 2, generator=g, dtype=torch.float64)
    draws = torch.randn(10, 9, 2, generator=g, dtype=torch.float64)
    return SimulationRecord(**{"names": ["a", "b"], "truth": truth, "draws": draws, **kw})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # metrics came out for one name and two summaries; the export refused it later
        ({"names": ["a"]}, r"record.names: expected 2 names .* received 1"),
        ({"names": "ab"}, "record.names: expected a list of summary names, received str"),
        # an IndexError in metrics(), or another level's column read without a word
        ({"field_coverage": torch.zeros(3)}, r"record.field_coverage: expected .* \[10, 6\]"),
        ({"field_coverage": torch.zeros(10, 3)}, r"received \(10, 3\)"),
        ({"field_coverage": torch.zeros(4, 6)}, r"received \(4, 6\)"),
        # field_coverage90 = nan without a word
        ({"field_coverage": torch.full((10, 6), float("nan"))}, "expected finite values"),
        ({"levels": (1.5,), "field_coverage": torch.zeros(10, 1)}, r"record.levels\[0\]"),
    ],
)
def test_analyse_checks_the_record_it_is_given(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        analyse(_record(**kwargs))


def test_analyse_reads_a_well_formed_field_coverage():
    res = analyse(_record(field_coverage=torch.full((10, 6), 0.25, dtype=torch.float64)))
    assert res.metrics()["field_coverage90"] == 0.25
    assert analyse(_record()).metrics()["field_coverage90"] is None


def test_field_calibration_curve_names_a_posterior_problems_truth(exact_model):
    # the posterior branch's errors named metrics.calibration_curve's own 'y' and
    # 'posterior_or_samples', and it refused the numpy truths the draws branch takes
    posts, theta = _held_out(exact_model, n=3)
    nan = theta.clone()
    nan[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"truths\[1\]: expected finite values"):
        field_calibration_curve(posts, nan)
    with pytest.raises(ValueError, match=r"truths\[0\]: expected shape \(2,\)"):
        field_calibration_curve(posts, theta[:, :1])
    with pytest.raises(TypeError, match=r"posteriors\[2\]: expected a Posterior"):
        field_calibration_curve([*posts[:2], {"mean": 0}], theta)
    _, as_arrays = field_calibration_curve(posts, [t.numpy() for t in theta])
    _, as_tensors = field_calibration_curve(posts, theta)
    assert torch.equal(as_arrays, as_tensors)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        # a truthy string ran the quick suite: quick="no" was a quick run
        ({"quick": "no"}, TypeError, "^quick: expected True or False"),
        # reached the hook, which may train for minutes before its first use of the seed
        ({"seed": None}, TypeError, "^seed: expected an int"),
        ({"seed": 1.5}, TypeError, "^seed: expected an int"),
    ],
)
def test_run_calibration_checks_its_arguments_before_the_hook(
    tmp_path, monkeypatch, kwargs, err, match
):
    calls = []

    def calibrate_rows(quick, seed):
        calls.append((quick, seed))
        raise RuntimeError("the hook ran")

    hook = types.SimpleNamespace(calibrate_rows=calibrate_rows)
    monkeypatch.setattr(suite, "load_hook", lambda component: hook)
    with pytest.raises(err, match=match):
        suite.run_calibration("odil", **{"quick": True, "out": tmp_path / "out", **kwargs})
    assert calls == []
    assert not (tmp_path / "out").exists()


def test_run_calibration_refuses_an_unknown_component_before_making_its_folder(tmp_path):
    # the out folder was made first and left behind, empty
    with pytest.raises(ValueError, match="^component: expected one of"):
        suite.run_calibration("nope", quick=True, out=tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # failed after the N inferences: "cannot convert dictionary update sequence element"
        ({"setting": [("n", 1), 2]}, "^setting: expected a dict"),
        ({"problem": 3}, "^problem: expected a str, received int 3"),
        ({"method": None}, "^method: expected a str, received NoneType"),
        ({"note": 3}, "^note: expected a str or None, received int"),
    ],
)
def test_calibration_rows_checks_the_row_labels_before_simulating(exact_model, kwargs, match):
    calls = []

    def simulate(n, *, seed):
        calls.append(n)
        return exact_model.simulate(n, seed=seed)

    args = {"n_sims": 4, "n_draws": 5, "problem": "p", "method": "m", **kwargs}
    with pytest.raises(TypeError, match=match):
        calibration_rows(simulate, exact_model.infer, **args)
    assert calls == []


def test_recalibrated_rows_checks_base_and_setting_before_simulating(exact_model):
    calls = []

    def simulate(n, *, seed):
        calls.append(n)
        return exact_model.simulate(n, seed=seed)

    base = run_sbc(exact_model.simulate, exact_model.infer, n_sims=4, n_draws=5, progress=False)
    row = {"problem": "p", "method": "m", "metrics": base.metrics()}
    # AttributeError: 'dict' object has no attribute 'record'
    with pytest.raises(TypeError, match="^base: expected the CalibrationResult .* received dict"):
        recalibrated_rows(row, simulate, exact_model.infer, None, n_fit=3, seed=0)
    # failed after the n_fit inferences
    with pytest.raises(TypeError, match="^setting: expected a dict"):
        recalibrated_rows(base, simulate, exact_model.infer, None, n_fit=3, seed=0, setting=[1])
    assert calls == []


@pytest.mark.parametrize(
    ("args", "err", "match"),
    [
        ((float("nan"), 1.0), ValueError, r"^shift: expected a finite number, received nan"),
        ((0.0, -1.0), ValueError, r"^scale: expected a number > 0.0, received -1.0"),
        ((0.0, 0.0), ValueError, r"^scale: expected a number > 0.0, received 0.0"),
        ((0.0, float("inf")), ValueError, r"^scale: expected a finite number"),
        ((None, 1.0), TypeError, r"^shift: expected a real number, received NoneType"),
    ],
)
def test_affine_map_built_directly_refuses_a_bad_shift_or_scale(args, err, match):
    # accepted: AffineMap(nan, 1) mapped every draw to NaN, AffineMap(0, -1) flipped them
    from bayesphys.diagnostics import AffineMap

    with pytest.raises(err, match=match):
        AffineMap(*args)


@pytest.mark.parametrize(
    ("args", "err", "match"),
    [
        (("normal", 0.0, 0.0, 1.0), ValueError, r"^family: expected one of .*'normal'"),
        (("t", 0.0, 0.0, 1.0), ValueError, r"^shape: expected a number > 0.0, received 0.0"),
        (("gennorm", -2.0, 0.0, 1.0), ValueError, r"^shape: expected a number > 0.0"),
        (("norm", float("nan"), 0.0, 1.0), ValueError, r"^shape: expected a finite number"),
        (("t", 5.0, float("nan"), 1.0), ValueError, r"^shift: expected a finite number"),
        (("t", 5.0, 0.0, -1.0), ValueError, r"^scale: expected a number > 0.0, received -1.0"),
    ],
)
def test_shape_map_built_directly_refuses_a_bad_setting(args, err, match):
    # accepted: a NaN shift gave NaN draws, a negative scale flipped them, and an unknown
    # family failed only in map() with scipy's AttributeError
    from bayesphys.diagnostics import ShapeMap

    with pytest.raises(err, match=match):
        ShapeMap(*args)


@pytest.mark.parametrize(
    ("cls_name", "args", "method", "err", "match"),
    [
        ("AffineMap", (0.0, 1.0), "afine", ValueError, r"^method: expected one of \('affine', "),
        ("AffineMap", (0.0, 1.0), 3, TypeError, r"^method: expected a str, .* received int"),
        ("AffineMap", (0.5, 1.0), "identity", ValueError, r"^method: 'identity' labels the map"),
        ("ShapeMap", ("t", 5.0, 0.0, 1.0), "affine", ValueError, r"^method: .*\('shape',\)"),
        ("ShapeMap", ("t", 5.0, 0.0, 1.0), None, TypeError, r"^method: .* received NoneType"),
    ],
)
def test_map_method_label_is_checked(cls_name, args, method, err, match):
    # any label was stored and shown by the repr: AffineMap(0.5, 1, method="identity") said
    # it was the identity while it shifted every draw
    import bayesphys.diagnostics as diag

    with pytest.raises(err, match=match):
        getattr(diag, cls_name)(*args, method=method)


@pytest.mark.parametrize("cls_name", ["AffineMap", "ShapeMap"])
@pytest.mark.parametrize(
    ("x", "err", "match"),
    [
        (torch.tensor([0.3]), ValueError, r"^x: expected the draws \[L\] of one problem, L >= 2"),
        (torch.zeros(3, 4), ValueError, r"^x: expected the draws \[L\] .* received shape \(3, 4\)"),
        (torch.tensor([0.0, float("nan"), 1.0]), ValueError, r"^x: expected finite values"),
        (torch.tensor([1, 2, 3]), TypeError, r"^x: expected a floating-point .* torch.int64"),
        ([0.0, 1.0], TypeError, r"^x: expected a floating-point torch.Tensor, received list"),
    ],
)
def test_map_refuses_what_is_not_one_problems_draws(cls_name, x, err, match):
    # one draw came back NaN (its sd), a NaN draw made all NaN, [N, L] was mapped about its
    # overall mean as one problem, a list or int tensor failed inside torch
    import bayesphys.diagnostics as diag

    m = diag.AffineMap(0.2, 1.5) if cls_name == "AffineMap" else diag.ShapeMap("t", 5.0, 0.2, 1.5)
    with pytest.raises(err, match=match):
        m.map(x)
    assert m.map(torch.tensor([0.0, 1.0, 3.0])).isfinite().all()


@pytest.mark.parametrize("fit", ["AffineMap.fit", "ShapeMap.fit", "standardised_residuals"])
def test_map_fits_refuse_no_held_out_problems(fit):
    # the fits returned the identity map and the residuals an empty tensor, without a word
    import bayesphys.diagnostics as diag

    owner, _, attr = fit.rpartition(".")
    fn = getattr(getattr(diag, owner), attr) if owner else getattr(diag, attr)
    with pytest.raises(ValueError, match=r"^draws/truth: expected N >= 1 held-out problems"):
        fn(torch.zeros(0, 5), torch.zeros(0))


def test_maps_built_as_the_fits_and_identities_build_them_are_accepted():
    from bayesphys.diagnostics import AffineMap, ShapeMap

    x = torch.tensor([0.0, 1.0, 3.0])
    assert torch.equal(AffineMap(0.0, 1.0, method="identity").map(x), x)
    assert AffineMap(1, 2).scale == 2.0  # an int is taken as the float it is
    assert ShapeMap("norm", 0.0, 0.0, 1.0).family == "norm"
    assert ShapeMap("t", 1e3, -0.5, 0.3).shape == 1e3
    assert ShapeMap("gennorm", 8.0, 0.1, 2.0).map(x).isfinite().all()
    torch.manual_seed(0)
    draws = torch.randn(20, 9, dtype=torch.float64)
    truth = draws.mean(1) + 0.3 * torch.randn(20, dtype=torch.float64)
    for cls in (AffineMap, ShapeMap):
        fitted = cls.fit(draws, truth)
        assert fitted.scale > 0 and fitted.shift == fitted.shift


@pytest.mark.parametrize("cls_name", ["AffineMap", "ShapeMap"])
def test_map_fit_refuses_residuals_that_are_all_equal(cls_name):
    # five problems with the same draws and the same truth: the fitted scale was 0, a map
    # that collapsed every problem's draws to one value
    import bayesphys.diagnostics as diag

    torch.manual_seed(0)
    draws = torch.randn(10, dtype=torch.float64).expand(5, 10)
    truth = torch.full((5,), 0.7, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^draws/truth: the 5 standardised residuals .* equal"):
        getattr(diag, cls_name).fit(draws, truth)


@pytest.mark.parametrize("cls_name", ["AffineMap", "ShapeMap"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_map_fit_refuses_residuals_equal_up_to_rounding(cls_name, dtype):
    # each problem's draws are one pattern scaled and shifted, and its truth the same point of
    # that pattern: the residuals are equal but for rounding, and the fit kept a scale of
    # 4e-16 (float64) or 2e-7 (float32), a map that collapsed every problem's draws
    import bayesphys.diagnostics as diag

    gen = torch.Generator().manual_seed(0)
    pattern = torch.randn(10, generator=gen, dtype=torch.float64)
    a = 0.1 + 3 * torch.rand(6, 1, generator=gen, dtype=torch.float64)
    b = 5 * torch.randn(6, 1, generator=gen, dtype=torch.float64)
    draws, truth = (pattern * a + b).to(dtype), (0.7 * a + b)[:, 0].to(dtype)
    cls = getattr(diag, cls_name)
    with pytest.raises(ValueError, match=r"^draws/truth: the 6 standardised residuals .* equal"):
        cls.fit(draws, truth)
    # truths off that point by a tenth of an sd are fitted
    truth += (0.1 * a[:, 0] * torch.randn(6, generator=gen, dtype=torch.float64)).to(dtype)
    assert cls.fit(draws, truth).scale > 1e-3


def _recal_gaussian(batch: tuple[int, ...] = ()):
    from bayesphys import GaussianPosterior

    mean = torch.zeros(*batch, 3, dtype=torch.float64)
    cov = torch.eye(3, dtype=torch.float64).expand(*batch, 3, 3)
    base = GaussianPosterior(mean, cov, event_shape=(3,))
    return Recalibrator("zscore", scale=1.7).wrap(base)


@pytest.mark.parametrize(
    ("batch", "shape", "match"),
    [
        ((), (4, 2), r"^value: expected trailing shape \(3,\), received \(4, 2\)"),
        ((), (5,), r"^value: expected trailing shape \(3,\), received \(5,\)"),
        ((2,), (4, 3), r"^value: expected shape \[\*, \*batch, \*event\] with batch dims "),
    ],
)
def test_recalibrated_log_prob_names_a_wrongly_shaped_value(batch, shape, match):
    # torch's "The size of tensor a (3) must match the size of tensor b (2)" RuntimeError,
    # from the map, before the base's own check of value
    post = _recal_gaussian(batch)
    with pytest.raises(ValueError, match=match):
        post.log_prob(torch.zeros(shape, dtype=torch.float64))
    # the shapes it takes: [*, *batch, *event], batch dims broadcasting
    assert post.log_prob(torch.zeros(7, *batch, 3, dtype=torch.float64)).shape == (7, *batch)
    assert post.log_prob(torch.zeros(1, 3, dtype=torch.float64)).shape == (max(batch, (1,)))


def test_recalibrated_log_prob_refuses_what_is_not_a_tensor():
    # TypeError: unsupported operand type(s) for -: 'list' and 'Tensor', from the map
    with pytest.raises(TypeError, match=r"^value: expected a torch.Tensor, received list"):
        _recal_gaussian().log_prob([0.0, 0.0, 0.0])


def test_recalibrated_log_prob_names_a_value_on_another_device():
    # RuntimeError: Tensor on device cpu is not on the expected device meta!, from the map
    post = _recal_gaussian()
    with pytest.raises(
        ValueError,
        match=r"^value: expected a tensor on the posterior's device cpu, received one on meta "
        r"\(move it with value.to\('cpu'\), or the posterior with .to\('meta'\)\)",
    ):
        post.log_prob(torch.zeros(3, dtype=torch.float64, device="meta"))


@pytest.mark.parametrize(
    ("x", "err", "match"),
    [
        (torch.zeros(5, 2, dtype=torch.float64), ValueError, r"^x: expected trailing shape \(3,\)"),
        ([0.0, 0.0, 0.0], TypeError, r"^x: expected a torch.Tensor, received list"),
        (
            torch.zeros(5, 3, dtype=torch.float64, device="meta"),
            ValueError,
            r"^x: expected a tensor on the posterior's device cpu, received one on meta",
        ),
    ],
)
def test_recalibrated_map_draws_names_a_wrong_x(x, err, match):
    # torch's broadcasting or device error, or "unsupported operand type(s)", from the map
    with pytest.raises(err, match=match):
        _recal_gaussian().map_draws(x)


def test_recalibrated_quantile_map_draws_needs_the_batch_dims_as_they_are():
    # draws [S, 1, 3] of a posterior with batch (2,) went through member 0's and member 1's
    # marginals in turn, sample by sample
    from bayesphys import GaussianPosterior

    cov = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    base = GaussianPosterior(torch.zeros(2, 3, dtype=torch.float64), cov, event_shape=(3,))
    pits = torch.rand(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    post = Recalibrator("quantile", pits=pits).wrap(base)
    with pytest.raises(ValueError, match=r"^x: expected .* batch dims equal to \(2,\)"):
        post.map_draws(torch.zeros(4, 1, 3, dtype=torch.float64))
    assert post.map_draws(torch.zeros(4, 2, 3, dtype=torch.float64)).shape == (4, 2, 3)
    # variance scaling broadcasts: the same draws are mapped about each batch's mean
    scaled = _recal_gaussian((2,)).map_draws(torch.zeros(4, 1, 3, dtype=torch.float64))
    assert scaled.shape == (4, 2, 3)


@pytest.mark.parametrize(
    ("weights", "err", "match"),
    [
        (float("nan"), ValueError, r"^weights: expected finite values, received 1 NaN/Inf"),
        (torch.tensor([1.0, float("inf"), 1.0]), ValueError, r"^weights: expected finite"),
        ("abc", TypeError, r"^weights: expected numbers \(a tensor or array\), received str"),
        (torch.ones(3, device="meta"), ValueError, r"^weights: expected values, .* 'meta'"),
    ],
)
def test_total_mass_refuses_weights_that_are_not_finite_numbers(weights, err, match):
    # a NaN weight gave NaN summaries (refused only later, as draws), a string failed in torch
    # at the first field, a meta tensor with "Cannot copy out of meta tensor"
    from bayesphys.diagnostics import total_mass

    with pytest.raises(err, match=match):
        total_mass(weights)
    summary = total_mass(torch.tensor([0.5, 1.0, 0.5]))
    assert torch.equal(summary(torch.ones(2, 3)), torch.full((2,), 2.0))


def test_ecdf_band_names_non_finite_eval_points():
    # reported as "range [0.5, 0.5]": the NaN was left out of the range without a word
    import numpy as np

    from bayesphys.diagnostics import ecdf_band

    with pytest.raises(ValueError, match=r"range \[0.5, 0.5\] and 1 NaN/Inf value\(s\)$"):
        ecdf_band(20, np.array([float("nan"), 0.5]))
    with pytest.raises(ValueError, match=r"range n/a and 2 NaN/Inf value\(s\)$"):
        ecdf_band(20, np.array([float("nan"), float("inf")]))
    with pytest.raises(ValueError, match=r"received shape \(2,\) with range \[-1.0, 2.0\]$"):
        ecdf_band(20, np.array([-1.0, 2.0]))


@pytest.mark.parametrize("ranks", [torch.tensor([3]), torch.tensor([[3, 9]])])
def test_sbc_uniformity_refuses_one_problem(ranks):
    # a p-value came back without a word: the chi-square's was 0.317 whatever the rank
    from bayesphys.diagnostics import sbc_uniformity

    with pytest.raises(ValueError, match=r"^ranks: expected N >= 2 problems .* received N = 1"):
        sbc_uniformity(ranks, 9)
    two = sbc_uniformity(torch.cat([ranks, ranks]), 9)  # the minimum run_sbc takes
    assert 0.0 <= two["pvalue"] <= 1.0 and len(two["chi2"]) == ranks.reshape(1, -1).shape[1]


def test_is_calibrated_names_metrics_that_are_not_a_mapping():
    # AttributeError: 'CalibrationResult' object has no attribute 'get'
    from bayesphys.diagnostics import is_calibrated

    torch.manual_seed(0)
    result = analyse(SimulationRecord(["a"], torch.zeros(4, 1), torch.randn(4, 9, 1)))
    with pytest.raises(
        TypeError, match=r"^metrics: expected a mapping .* CalibrationResult; pass its"
    ):
        is_calibrated(result)
    with pytest.raises(TypeError, match=r"^metrics: expected a mapping .* received list$"):
        is_calibrated([0.5, 0.9])
    assert is_calibrated({"sbc_pvalue": 0.5, "coverage90": 0.9})
    assert not is_calibrated({"sbc_pvalue": float("nan"), "coverage90": 0.9})


def test_analyse_refuses_a_record_of_one_problem():
    # its metrics came back, sbc_pvalue 0.317 from one rank
    torch.manual_seed(0)
    record = SimulationRecord(["a"], torch.zeros(1, 1), torch.randn(1, 9, 1))
    with pytest.raises(ValueError, match=r"^record: expected N >= 2 simulated problems"):
        analyse(record)
    record2 = SimulationRecord(["a"], torch.zeros(2, 1), torch.randn(2, 9, 1))
    assert 0.0 <= analyse(record2).metrics()["sbc_pvalue"] <= 1.0
