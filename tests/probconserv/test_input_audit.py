"""Bad inputs to the ProbConserv API fail early with errors that name the argument.

Each case here used to be accepted silently (a NaN, a setting the chosen mode ignores, a
string taken as ``True``), or failed deep inside torch with a message that named nothing.
"""

from __future__ import annotations

import math

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

import bayesphys.probconserv._train as pc_train
from bayesphys.posterior import GaussianPosterior
from bayesphys.probconserv import (
    AttentiveNP,
    HybridCalibration,
    MetaGP,
    ProbConserv,
    add_discrepancy,
    conservation_update,
    conserve_slices,
    cov_times_gt,
    discrepancy_roots,
    discrepancy_variance,
    fit_hybrid,
    fit_mass_kappa,
    fit_parameter_map,
    gated_discrepancy_variance,
    hard_projection,
    hybrid_covariance,
    local_coverage_scale,
    mass_residual,
    monotone_posterior,
    nonnegative_posterior,
    project_nonnegative,
    select_candidate,
    shock_position,
    shock_posterior,
    slice_scores,
    trapezoid_weights,
)
from bayesphys.probconserv.conditional import binned_coverage_error, choose_bandwidth
from bayesphys.problems.gpme import (
    eval_grid,
    get_problem,
    make_dataset,
    mass_from_fluxes,
    sample_parameters,
    stefan_constants,
)

F64 = torch.float64
NAN = float("nan")

# many models here are untrained (the input checks do not need trained ones): the untrained
# warning of their posteriors is not what these tests check
pytestmark = pytest.mark.filterwarnings("ignore:ProbConserv.posterior. the model has not been")


@pytest.fixture(scope="module")
def anp():
    """An untrained tiny ANP (validation does not need a trained one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield ProbConserv("stefan", step1="anp", hidden=8, n_samples=4, seed=0)
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    return make_dataset("stefan", params=[0.6, 0.55], seed=1)


@pytest.fixture(scope="module")
def prior(anp, data):
    """Step-1 posterior, batch (2, 1), event (11,)."""
    return anp.step1(data, x=anp.problem.grid(11))


# -- construction ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step1", "kw", "match"),
    [
        ("gp", {"hidden": 16}, "hidden: only used with step1='anp'"),
        ("gp", {"n_samples": 8}, "n_samples: only used with step1='anp'"),
        ("gp", {"covariance": "diag"}, "covariance: only used with step1='anp'"),
        ("anp", {"gp_width": 8}, "gp_width: only used with step1='gp'"),
    ],
)
def test_settings_of_the_other_step1_model_are_refused(step1, kw, match):
    # they were silently ignored (a meta-GP with covariance="diag" is still dense)
    with pytest.raises(ValueError, match=match):
        ProbConserv("stefan", step1=step1, seed=0, **kw)


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"sigma_g": "0.5"}, TypeError, "sigma_g: expected a number"),  # was taken as 0.5
        ({"sigma_g": None}, TypeError, "sigma_g: expected a number"),
        ({"sigma_g": True}, TypeError, "sigma_g: expected a number"),  # was a ValueError
        ({"relative": "no"}, TypeError, "relative: expected True or False"),  # was True
        ({"seed": 2**64}, ValueError, "seed: expected an int in"),  # torch's "Overflow"
        ({"seed": -(2**63) - 1}, ValueError, "seed: expected an int in"),
        (
            {"dtype": torch.int32},
            ValueError,
            "dtype: expected torch.float32 or torch.float64, received torch.int32",
        ),
        ({"dtype": "float16x"}, ValueError, "dtype: unknown dtype"),
    ],
)
def test_constructor_checks_its_settings(kw, err, match):
    with pytest.raises(err, match=match):
        ProbConserv("stefan", hidden=8, n_samples=4, **kw)


def test_seeds_across_torchs_range_train(data):
    # the batches' seeds were seed * 1_000_003 + step (hence a bound 2**43); now a stream
    for seed in (2**64 - 1, -(2**63), 2**43):
        m = ProbConserv("stefan", hidden=8, n_samples=4, batch_size=2, seed=seed)
        assert m.fit(steps=1, progress=False).steps == 1


def test_constructor_refuses_an_unknown_problem_type():
    with pytest.raises(TypeError, match="problem: expected one of"):
        ProbConserv(["pme"])  # was "unhashable type: 'list'"


@pytest.mark.parametrize(
    ("build", "err", "match"),
    [
        (lambda: AttentiveNP((0, 0), (1, 1), hidden=8, heads=0), ValueError, "heads: expected"),
        (lambda: AttentiveNP((0, 0), (1, 1), hidden=0), ValueError, "hidden: expected an int"),
        (lambda: AttentiveNP((0, 0), (1, 1), hidden=8, n_self=-1), ValueError, "n_self"),
        (lambda: AttentiveNP((0, 0), (0, 1), hidden=8), ValueError, "lo, hi: expected lo < hi"),
        (lambda: AttentiveNP((0, 0, 0), (1, 1, 1)), ValueError, r"lo: expected \(t, x\)"),
        (lambda: MetaGP((0, 0), (1, 1), width=0), ValueError, "width: expected an int >= 1"),
        (lambda: MetaGP((0, 0), (1, 1), noise_floor=-1.0), ValueError, "noise_floor"),
        (lambda: MetaGP((0, 0), (1, NAN)), ValueError, r"hi\[1\]: expected a finite"),
    ],
)
def test_step1_networks_check_their_settings(build, err, match):
    # heads=0 was a ZeroDivisionError; lo == hi gave inf inputs; the others built silently
    with pytest.raises(err, match=match):
        build()


@pytest.mark.parametrize("net", ["anp", "gp"])
def test_step1_network_predictions_check_their_sets(net):
    # a NaN context gave NaN predictions (the GP's whole posterior) without a word; complex
    # values and mismatched shapes failed inside torch or gpytorch
    model = AttentiveNP((0, 0), (1, 1), hidden=8) if net == "anp" else MetaGP((0, 0), (1, 1), 4)
    dt = torch.float32 if net == "anp" else F64
    gen = torch.Generator().manual_seed(0)
    xc, yc = torch.rand(2, 5, 2, dtype=dt, generator=gen), torch.rand(2, 5, dtype=dt, generator=gen)
    xt = torch.rand(2, 3, 2, dtype=dt, generator=gen)
    assert model.predict(xc, yc, xt)[0].shape[-2:] == (2, 3)  # valid sets still predict
    bad_y = yc.clone()
    bad_y[1, 2] = NAN
    cases = [
        ((xc, bad_y, xt), ValueError, r"^yc: expected finite values, received 1 NaN/Inf"),
        ((xc, yc, xt * math.inf), ValueError, r"^xt: expected finite values"),
        ((xc, yc.to(torch.complex64), xt), TypeError, r"^yc: expected a real floating tensor"),
        ((xc, yc[:, :3], xt), ValueError, r"^yc: expected shape \(2, 5\) \(as xc\)"),
        ((xc[..., :1], yc, xt), ValueError, r"^xc: expected shape \[B, Nc, 2\]"),
        ((xc, yc, xt[:1]), ValueError, r"^xt: expected shape \[2, Nt, 2\]"),
    ]
    for args, err, match in cases:
        with pytest.raises(err, match=match):
            model.predict(*args)


@pytest.mark.parametrize("net", ["anp", "gp"])
def test_step1_network_losses_check_their_sets_structurally(net):
    """The training losses check shapes, dtypes and devices (no value: no device sync per
    step). Before, MetaGP.loss broadcast a ``yc`` of one point ``[B, 1]``, one without the
    batch axis ``[Nc]`` and an ``xc`` of one function over the batch and returned a number;
    both read a one-coordinate ``x`` as ``(x, x)``; integer targets were promoted; an empty
    set gave NaN (GP) or a reshape error (ANP)."""
    gen = torch.Generator().manual_seed(0)
    if net == "anp":
        model, dt = AttentiveNP((0, 0), (1, 1), hidden=8), torch.float32
    else:
        model, dt = MetaGP((0, 0), (1, 1), 4), F64
    xc, yc = torch.rand(2, 5, 2, dtype=dt, generator=gen), torch.rand(2, 5, dtype=dt, generator=gen)
    xt, yt = torch.rand(2, 3, 2, dtype=dt, generator=gen), torch.rand(2, 3, dtype=dt, generator=gen)

    def loss(xc=xc, yc=yc, xt=xt, yt=yt):
        out = model.loss(xc, yc, xt, yt) if net == "anp" else model.loss(xc, yc)
        return out[0] if net == "anp" else out

    assert loss().ndim == 0 and bool(torch.isfinite(loss()))
    cases = [
        (
            dict(yc=yc[:, :1]),
            ValueError,
            r"^yc: expected shape \(2, 5\) \(as xc\), received \(2, 1\)",
        ),
        (dict(yc=yc[0]), ValueError, r"^yc: expected shape \(2, 5\) \(as xc\), received \(5,\)"),
        (dict(xc=xc[:1]), ValueError, r"^yc: expected shape \(1, 5\) \(as xc\), received \(2, 5\)"),
        (dict(xc=xc[..., :1]), ValueError, r"^xc: expected shape \[B, Nc, 2\]"),
        (dict(xc=xc[:, :0], yc=yc[:, :0]), ValueError, r"^xc: .* B, Nc >= 1, received \(2, 0, 2\)"),
        (dict(yc=yc.long()), TypeError, r"^yc: expected a real floating tensor, received dtype"),
        (dict(yc=yc.to("meta")), ValueError, r"^yc: expected a tensor on the .*'s device cpu"),
    ]
    if net == "anp":
        cases += [
            (dict(xt=xt[..., :1]), ValueError, r"^xt: expected shape \[2, Nt, 2\]"),
            (dict(yt=yt[:, :1]), ValueError, r"^yt: expected shape \(2, 3\) \(as xt\)"),
            (dict(yt=yt.long()), TypeError, r"^yt: expected a real floating tensor"),
            (dict(xt=xt[:, :0], yt=yt[:, :0]), ValueError, r"^xt: .* with Nt >= 1"),
            (dict(xt=xt.double()), TypeError, r"^xt: expected the AttentiveNP's dtype"),
        ]
    for kw, err, match in cases:
        with pytest.raises(err, match=match):
            loss(**kw)


def test_dtype_names_are_accepted():
    assert ProbConserv("stefan", hidden=8, n_samples=4, dtype="float32").dtype == torch.float32
    gp = ProbConserv("stefan", step1="gp", gp_width=4, dtype="float64")  # was refused
    assert gp.dtype == F64


# -- fit ------------------------------------------------------------------------------------
def test_fit_checks_steps_and_progress(anp):
    with pytest.raises(TypeError, match="steps: expected an int"):
        anp.fit(steps="3", progress=False)  # was "'>' not supported ... 'int' and 'str'"
    with pytest.raises(TypeError, match="progress: expected True or False"):
        anp.fit(steps=1, progress="no")
    assert anp.steps_done == 0


def _with(d, **fields):
    out = d.subset(slice(0, len(d)))
    for k, v in fields.items():
        setattr(out, k, v)
    return out


def test_fit_checks_its_data(anp, data):
    bad_y = data.y_context.clone()
    bad_y[0, 0] = NAN
    cases = [
        (data.subset(slice(0, 0)), "data: expected at least one function"),  # randint error
        (_with(data, y_context=bad_y), "data.y_context: expected finite"),  # Normal(loc) error
        (_with(data, x_context=data.x_context[..., :1]), r"data.x_context: expected shape"),
        (_with(data, y_target=data.y_target[:, :3]), r"data.y_target: expected shape"),
        (_with(data, params=data.params[:1]), r"data.x_context: expected shape"),
    ]
    for d, match in cases:
        with pytest.raises(ValueError, match=match):
            anp.fit(d, steps=1, progress=False)
    with pytest.raises(TypeError, match="data.y_target: expected a torch.Tensor"):
        anp.fit(_with(data, y_target=data.y_target.numpy()), steps=1, progress=False)
    assert anp.steps_done == 0


def test_complex_or_untyped_functions_are_refused_by_field(anp, data):
    # a complex context lost its imaginary part in the model's dtype and predicted from the
    # real part; a complex y_target trained without a word; complex or listed params failed
    # inside torch ("min_all" not implemented, list indices must be integers)
    cases = [
        ("y_context", data.y_context.to(torch.complex128) + 1j, "expected real values"),
        ("x_context", data.x_context.to(torch.complex128), "expected real values"),
        ("params", data.params.to(torch.complex128), "expected real values"),
        ("params", torch.ones(2, dtype=torch.bool), "expected real values"),
        ("params", data.params.tolist(), "expected a torch.Tensor, received list"),
        ("y_context", data.y_context.numpy(), "expected a torch.Tensor, received ndarray"),
    ]
    for field, value, match in cases:
        bad = _with(data, **{field: value})
        x = anp.problem.grid(11)
        for method, kw in (("posterior", {"x": x}), ("step1", {"x": x}), ("mass", {})):
            with pytest.raises(TypeError, match=rf"^context\.{field}: {match}"):
                getattr(anp, method)(bad, **kw)
    with pytest.raises(TypeError, match=r"^data\.y_target: expected real values"):
        anp.fit(_with(data, y_target=data.y_target.to(torch.complex128)), steps=1, progress=False)
    assert anp.steps_done == 0


def test_set_softc_weight_checks_the_weight(anp):
    with pytest.raises(ValueError, match="weight: expected a finite number"):
        anp.set_softc_weight(NAN)  # was stored, and trained on as NaN
    with pytest.raises(TypeError, match="weight: expected a real number"):
        anp.set_softc_weight("1")
    assert anp.config.softc_weight == 0.0


def test_an_interrupted_fit_counts_its_steps_and_stays_usable(monkeypatch, data):
    torch.set_num_threads(1)
    m = ProbConserv("stefan", hidden=8, n_samples=4, seed=0)
    calls = {"n": 0}
    real = pc_train.make_dataset

    def interrupt_third(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(pc_train, "make_dataset", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        m.fit(steps=5, progress=False)
    assert m.steps_done == 2  # was 0: the next fit repeated the same training batches
    monkeypatch.setattr(pc_train, "make_dataset", real)
    post = m.posterior(data)
    assert bool(torch.isfinite(post.mean).all())


def test_a_diverging_fit_restores_the_last_good_weights(data):
    torch.set_num_threads(1)
    m = ProbConserv("stefan", hidden=8, n_samples=4, seed=0)
    real = m.net.loss
    calls = {"n": 0}

    def nan_second(*args, **kw):
        calls["n"] += 1
        loss, mu, sig = real(*args, **kw)
        return (loss * NAN if calls["n"] == 2 else loss), mu, sig

    m.net.loss = nan_second
    start = [p.detach().clone() for p in m.net.parameters()]
    res = m.fit(steps=4, progress=False)
    assert res.message.startswith("diverged at step 1") and res.steps == 1
    # the last weights with a finite loss are the start (the loss of step 0 is theirs):
    # restored, with no update counted (steps_done was 1)
    assert all(torch.equal(p, q) for p, q in zip(m.net.parameters(), start))
    assert m.steps_done == 0
    assert all(bool(torch.isfinite(p).all()) for p in m.net.parameters())
    assert bool(torch.isfinite(m.posterior(data).mean).all())


# -- posterior ------------------------------------------------------------------------------
def test_posterior_checks_method_and_noise_settings(anp, data):
    with pytest.raises(ValueError, match="method: expected 'probconserv', 'hardc' or 'none'"):
        anp.posterior(data, method="HardC")
    for method in ("none", "hardc"):  # the noise was silently ignored by these methods
        with pytest.raises(ValueError, match="sigma_g, relative: only with method='probconserv'"):
            anp.posterior(data, method=method, sigma_g=0.3)
        with pytest.raises(ValueError, match="sigma_g, relative: only with method='probconserv'"):
            anp.posterior(data, method=method, relative=True)
    with pytest.raises(TypeError, match="sigma_g: expected a number"):
        anp.posterior(data, sigma_g="a")  # was "new(): invalid data type 'str'"
    with pytest.raises(TypeError, match="sigma_g: expected a number"):
        anp.posterior(data, sigma_g=True)  # was taken as 1
    with pytest.raises(TypeError, match="relative: expected True or False"):
        anp.posterior(data, sigma_g=0.5, relative="no")  # was taken as True
    # a tensor [B, nt, 1] (one sd per function and slice) is still accepted
    sd = torch.tensor([[[0.1]], [[0.2]]], dtype=F64)
    assert anp.posterior(data, sigma_g=sd).mean.shape == (2, 1, 201)
    with pytest.raises(ValueError, match="sigma_g: expected non-negative values"):
        anp.posterior(data, sigma_g=sd * NAN)
    with pytest.raises(ValueError, match=r"sigma_g: expected a number or values broadcastable"):
        anp.posterior(data, sigma_g=sd[:, 0])  # was torch's "expanded size" error


def test_posterior_checks_the_context(anp, data):
    with pytest.raises(ValueError, match=r"context.x_context: expected shape"):
        anp.posterior(_with(data, params=data.params[:1]))  # was a reshape error
    with pytest.raises(ValueError, match=r"context.y_context: expected shape"):
        anp.posterior(_with(data, y_context=data.y_context[:, :5]))
    with pytest.raises(ValueError, match=r"context.params: expected shape \[B\]"):
        anp.posterior(_with(data, params=data.params[:, None]))


def test_analytic_mass_needs_valid_parameters(anp, data):
    nan = _with(data, params=torch.tensor([0.6, NAN], dtype=F64))
    with pytest.raises(ValueError, match="context.params: expected finite parameters"):
        anp.mass(nan)  # was NaN
    with pytest.raises(ValueError, match="context.params: expected finite parameters"):
        anp.posterior(nan)
    # with a given mass the parameters are not used
    post = anp.posterior(nan, mass=anp.mass(data), method="hardc")
    assert bool(torch.isfinite(post.mean).all())


def test_mass_discrepancy_checks_the_context(anp):
    with pytest.raises(TypeError, match="context: expected GPMEData"):
        anp.mass_discrepancy([1], mass=torch.zeros(1, 1))


# -- calibrate ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"data": [1]}, TypeError, "data: expected GPMEData"),  # said "context"
        ({"neighbours": 3}, TypeError, "neighbours: expected a sequence"),
        ({"neighbours": (0, 2)}, ValueError, "neighbours: only with objective='hybrid'"),
        ({"selection": "min"}, ValueError, "selection: only with objective='hybrid'"),
        ({"range_margin": 0.0}, ValueError, "range_margin: only with objective='hybrid'"),
        ({"seed": "a"}, TypeError, "seed: expected an int"),
        ({"seed": 1.5}, TypeError, "seed: expected an int"),
        ({"local_seed": 3}, ValueError, "local_seed: only with local_functions > 0"),
        ({"mass_check": "no"}, TypeError, "mass_check: expected True or False"),
        ({"mass_floor": True}, TypeError, "mass_floor: expected a real number"),
        ({"mass_length": "a"}, TypeError, "mass_length: expected a real number"),
        ({"mass_gate": NAN}, ValueError, "mass_gate: expected a finite number"),
        ({"objective": "hybrid", "mass_length": 0.1}, ValueError, "mass_length: only with"),
        ({"objective": "hybrid", "mass_gate": None}, ValueError, "mass_gate: only with"),
    ],
)
def test_calibrate_checks_its_settings(anp, kw, err, match):
    before = (anp.calibration, anp.var_scale)
    with pytest.raises(err, match=match):
        anp.calibrate(n_functions=8, **kw)
    assert (anp.calibration, anp.var_scale) == before


def test_calibrate_refuses_settings_that_data_makes_unused(anp):
    val = make_dataset("stefan", 12, seed=5)
    with pytest.raises(ValueError, match="n_functions: only without data"):
        anp.calibrate(val, n_functions=8)
    with pytest.raises(ValueError, match="seed: only used to draw validation functions"):
        anp.calibrate(val, seed=3)
    # with data and no local functions calibrate draws no functions for the margin to widen
    # (it was accepted and had no effect)
    with pytest.raises(ValueError, match="range_margin: only widens the functions calibrate"):
        anp.calibrate(val, objective="hybrid", range_margin=0.2)
    with pytest.raises(ValueError, match="mass_gate: expected a finite number"):
        anp.calibrate(val, objective="hybrid", local_functions=4, mass_gate=math.inf)
    with pytest.raises(ValueError, match="mass_floor: only with a gate"):
        anp.calibrate(val, objective="hybrid", local_functions=4, mass_gate=None, mass_floor=0.5)
    # n_functions equal to len(data) is consistent, and accepted
    assert anp.calibrate(val, n_functions=12) > 0
    anp.var_scale = 1.0


def test_calibrate_with_seed_none_draws_its_local_functions():
    torch.set_num_threads(1)
    m = ProbConserv("stefan", hidden=8, n_samples=4, seed=0)
    # was "unsupported operand type(s) for +: 'NoneType' and 'int'" after the hybrid fit
    beta = m.calibrate(n_functions=10, objective="hybrid", local_functions=4, seed=None)
    assert 0 < beta <= 1 and m.calibration.local is not None
    # seed=None: fresh functions on every call; a seed: the same ones
    first = m.calibration.err_root.clone()
    m.calibrate(n_functions=10, objective="hybrid", local_functions=4, seed=None)
    assert not torch.equal(first, m.calibration.err_root)
    m.calibrate(n_functions=10, objective="hybrid", local_functions=4, seed=5)
    fixed = m.calibration.err_root.clone()
    m.calibrate(n_functions=10, objective="hybrid", local_functions=4, seed=5)
    assert torch.equal(fixed, m.calibration.err_root)


# -- save / load ----------------------------------------------------------------------------
def test_load_refuses_unknown_settings(tmp_path):
    m = ProbConserv("stefan", hidden=8, n_samples=4, seed=0)
    path = m.save(tmp_path / "m.pt")
    ck = torch.load(path, weights_only=False)
    ck["config"]["width_multiplier"] = 2
    torch.save(ck, path)
    with pytest.raises(ValueError, match=r"path: .* holds settings \['width_multiplier'\]"):
        ProbConserv.load(path)  # was "unexpected keyword argument"


def test_load_refuses_a_variance_scale_or_step_count_no_fit_writes(tmp_path):
    """var_scale=-4 loaded and the posterior then failed with a bare "math domain error"."""
    m = ProbConserv("stefan", hidden=8, n_samples=4, seed=0)
    path = m.save(tmp_path / "m.pt")
    for name, entry, value, error in (
        ("negative", "var_scale", -4.0, r"var_scale: expected a number > 0, received -4\.0"),
        ("zero", "var_scale", 0.0, r"var_scale: expected a number > 0"),
        ("nan", "var_scale", math.nan, r"var_scale: expected a finite number"),
        ("inf", "var_scale", math.inf, r"var_scale: expected a finite number"),
        ("steps", "steps_done", -1, r"steps_done: expected an int >= 0, received -1"),
        ("half", "steps_done", 2.5, r"steps_done: expected an int"),
    ):
        ck = torch.load(path, weights_only=False)
        ck["state"][entry] = value
        torch.save(ck, tmp_path / f"{name}.pt")
        with pytest.raises(ValueError, match=rf"^path: .*{name}\.pt: .*{error}"):
            ProbConserv.load(tmp_path / f"{name}.pt")
    back = ProbConserv.load(path)  # as written: loads
    assert back.var_scale == 1.0 and back.steps_done == 0


def test_a_gp_checkpoint_with_anp_settings_still_loads(tmp_path, data):
    # older versions stored the ANP settings a meta-GP was given (and ignored)
    gp = ProbConserv("stefan", step1="gp", gp_width=4, sigma_g=math.inf, relative=True, seed=None)
    gp.fit(steps=1, progress=False)
    path = gp.save(tmp_path / "gp.pt")
    ck = torch.load(path, weights_only=False)
    ck["config"].update(hidden=16, n_samples=8, covariance="diag")
    torch.save(ck, tmp_path / "old.pt")
    for back in (ProbConserv.load(path), ProbConserv.load(tmp_path / "old.pt")):
        assert back.config == gp.config and back.steps_done == 1
        a, b = gp.posterior(data), back.posterior(data)
        assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)


def test_a_gp_checkpoint_with_softc_points_still_loads(tmp_path, data):
    # files written before softc_points was refused with step1="gp" stored it (and ignored it)
    gp = ProbConserv("stefan", step1="gp", gp_width=4, seed=0)
    gp.fit(steps=1, progress=False)
    ck = torch.load(gp.save(tmp_path / "gp.pt"), weights_only=False)
    ck["config"]["softc_points"] = 8
    torch.save(ck, tmp_path / "old.pt")
    back = ProbConserv.load(tmp_path / "old.pt")
    assert back.config == gp.config and back.config.softc_points == 32
    a, b = gp.posterior(data), back.posterior(data)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)


# -- Step 2 ---------------------------------------------------------------------------------
def test_conservation_update_checks_its_settings(prior, anp, data):
    g = trapezoid_weights(anp.problem.grid(11))
    b = anp.mass(data).unsqueeze(-1)
    for kw, err, match in (
        ({"rcond": NAN}, ValueError, "rcond: expected a finite number"),  # never refused
        ({"rcond": -1.0}, ValueError, "rcond: expected a number >= 0"),
        ({"rcond": 1.0}, ValueError, r"rcond: expected a number in \[0, 1\)"),  # all singular
        ({"rcond": "a"}, TypeError, "rcond: expected a real number"),
        ({"sigma_g": 0.1, "relative": "no"}, TypeError, "relative: expected True or False"),
        ({"sigma_g": True}, TypeError, "sigma_g: expected a number >= 0 or a tensor"),
        ({"sigma_g": "a"}, TypeError, "sigma_g: expected a tensor or array"),
    ):
        with pytest.raises(err, match=match):
            conservation_update(prior, g, b, **kw)
    with pytest.raises(ValueError, match=r"G: expected shape \[m, 11\] or \[\*batch, m, 11\]"):
        conservation_update(prior, torch.ones(3, 1, 11), b)  # was torch's expand error
    with pytest.raises(ValueError, match="G: expected linearly independent constraint rows"):
        hard_projection(prior, torch.ones(2, 11), torch.ones(2))  # was _LinAlgError
    with pytest.raises(ValueError, match=r"gt: expected shape \[\.\.\., 11, m\]"):
        cov_times_gt(prior.covariance, torch.ones(5, 1))


def test_conserve_slices_checks_its_inputs(prior, anp, data):
    x, mass = anp.problem.grid(11), anp.mass(data)
    with pytest.raises(TypeError, match="prior: expected a GaussianPosterior"):
        conserve_slices(3, x, mass)  # was AttributeError
    with pytest.raises(ValueError, match=r"mass: expected shape \(2, 1\)"):
        conserve_slices(prior, x, torch.ones(3))  # named "b"
    with pytest.raises(ValueError, match="sigma_g, relative: only with method='probconserv'"):
        conserve_slices(prior, x, mass, 0.5, method="hardc")  # was ignored
    with pytest.raises(ValueError, match="sigma_g, relative: only with method='probconserv'"):
        conserve_slices(prior, x, mass, relative=True, method="hardc")
    with pytest.raises(ValueError, match="method: expected 'probconserv' or 'hardc'"):
        conserve_slices(prior, x, mass, method="none")


# -- evaluation and the inequality step -------------------------------------------------------
def test_shock_posterior_checks_its_inputs(prior):
    x = torch.linspace(0, 1, 11, dtype=F64)
    assert shock_posterior(prior, x.tolist(), 5).shape == (5, 2, 1)  # a list: AttributeError
    with pytest.raises(ValueError, match="threshold: expected a finite number"):
        shock_posterior(prior, x, 5, threshold=NAN)  # gave x[-1] for every draw
    with pytest.raises(TypeError, match="seed: expected an int"):
        shock_posterior(prior, x, 5, seed=1.5)  # was "manual_seed expected a long"
    with pytest.raises(ValueError, match=r"x: expected shape \(11,\)"):
        shock_posterior(prior, x[:5], 5)
    with pytest.raises(TypeError, match="post: expected a Posterior, received Tensor"):
        shock_posterior(prior.mean, x, 5)
    with pytest.raises(ValueError, match="draws: expected finite values"):
        shock_position(torch.full((2, 11), NAN), x)  # gave x[-1]


def test_slice_scores_checks_its_inputs(prior, anp, data):
    x, mass, truth = anp.problem.grid(11), anp.mass(data), prior.mean
    ce = slice_scores(prior, truth.tolist(), x, mass)["ce"]  # a list: AttributeError
    assert ce.shape == (2, 1)
    with pytest.raises(ValueError, match=r"mass: expected shape \(2, 1\)"):
        slice_scores(prior, truth, x, mass[:, 0])  # broadcast to a (2, 2) "ce" silently
    with pytest.raises(ValueError, match=r"x: expected shape \(11,\)"):
        slice_scores(prior, truth, x[:5], mass)  # was a matmul size mismatch
    with pytest.raises(ValueError, match="var_floor: expected a finite number"):
        slice_scores(prior, truth, x, mass, var_floor=NAN)
    with pytest.raises(ValueError, match="var_floor"):  # the CRPS failed naming std
        slice_scores(prior, truth, x, mass, var_floor=0.0)


def test_scores_and_fronts_refuse_complex_values_and_an_empty_grid(prior, anp, data):
    x, mass, truth = anp.problem.grid(11), anp.mass(data), prior.mean
    c128 = torch.complex128
    # a complex truth was scored on its real part (a warning only), complex positions were
    # read by their real part, complex draws failed inside torch ("le_cpu")
    with pytest.raises(TypeError, match=r"^truth: expected real values"):
        slice_scores(prior, truth.to(c128) + 1j, x, mass)
    with pytest.raises(TypeError, match=r"^x: expected real values"):
        slice_scores(prior, truth, x.to(c128), mass)
    with pytest.raises(TypeError, match=r"^draws: expected real values"):
        shock_position(torch.zeros(2, 11, dtype=c128), x)
    with pytest.raises(TypeError, match=r"^x: expected real values"):
        shock_position(torch.zeros(2, 11), x.to(c128) + 1j)
    # draws on an empty grid failed in argmax with an IndexError
    with pytest.raises(ValueError, match=r"^draws: expected shape \[\*, nx\] with nx >= 1"):
        shock_position(torch.zeros(3, 0), torch.zeros(0))


def test_nonnegative_step_checks_its_inputs(prior, anp, data):
    x, mass = anp.problem.grid(11), anp.mass(data)
    with pytest.raises(ValueError, match="num_samples: expected an int >= 2"):
        nonnegative_posterior(prior, x, mass, -1)
    with pytest.raises(ValueError, match=r"mass: expected shape \(2, 1\)"):
        nonnegative_posterior(prior, x, torch.ones(3), 4)  # was torch's expand error
    with pytest.raises(ValueError, match=r"x: expected shape \(11,\)"):
        nonnegative_posterior(prior, x[:5], mass, 4)
    draws, g = torch.rand(2, 3, dtype=F64), torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match=r"g: expected shape \(3,\)"):
        project_nonnegative(draws, torch.ones(4), torch.ones(2))
    with pytest.raises(ValueError, match=r"b: expected shape \(2,\)"):
        project_nonnegative(draws, g, torch.ones(3))
    with pytest.raises(ValueError, match="draws: expected finite values"):
        project_nonnegative(draws * NAN, g, torch.ones(2))  # gave NaN draws
    with pytest.raises(TypeError, match="iters: expected an int"):
        project_nonnegative(draws, g, torch.ones(2), iters="3")


# -- calibration building blocks --------------------------------------------------------------
def test_mass_check_functions_check_their_inputs(prior, anp, data):
    x = anp.problem.grid(11)
    g = trapezoid_weights(x)
    with pytest.raises(ValueError, match="mass: expected finite values"):
        mass_residual(prior.mean, prior.covariance, g, torch.full((2, 1), NAN))  # NaN residual
    with pytest.raises(TypeError, match="length: expected a real number"):
        discrepancy_roots(x, g, "a")
    with pytest.raises(ValueError, match="length: expected a finite number"):
        discrepancy_roots(x, g, math.inf)
    with pytest.raises(ValueError, match=r"g: expected shape \(11,\)"):
        discrepancy_roots(x, g[:3], 0.1)
    r, v = torch.ones(2, 1), torch.ones(2, 1)
    with pytest.raises(ValueError, match="kappa: expected a finite number"):
        discrepancy_variance(r, v, math.inf, 1.0)  # gave zeros
    with pytest.raises(TypeError, match="floor: expected a real number"):
        gated_discrepancy_variance(r, v, 1.0, 1.0, torch.ones(2, dtype=torch.bool), "a")
    root = torch.ones(11, 2, dtype=F64)
    with pytest.raises(ValueError, match="sd2: expected variances >= 0"):
        add_discrepancy(prior.covariance, torch.tensor([[-1.0], [1.0]]), root)  # NaN covariance
    with pytest.raises(ValueError, match="sd2: expected finite values"):
        add_discrepancy(prior.covariance, torch.full((2, 1), NAN), root)  # returned unchanged
    with pytest.raises(ValueError, match=r"root: expected shape \[11, R\]"):
        add_discrepancy(prior.covariance, torch.ones(2, 1), torch.ones(5, 2))


def test_mass_check_functions_refuse_complex_values_and_bad_variances(prior, anp):
    g = trapezoid_weights(anp.problem.grid(11))
    r, v, c128 = torch.ones(2, 1), torch.ones(2, 1), torch.complex128
    # complex values were cast to their real part (a complex residual 1 + 1j scored as 1, a
    # complex g gave the residual of its real part)
    with pytest.raises(TypeError, match=r"^g: expected real values"):
        mass_residual(prior.mean, prior.covariance, g.to(c128) + 1j, torch.ones(2, 1))
    with pytest.raises(TypeError, match=r"^residual: expected real values"):
        fit_mass_kappa(torch.ones(4, 1, dtype=c128) + 1j, torch.ones(4, 1))
    with pytest.raises(TypeError, match=r"^residual: expected real values"):
        discrepancy_variance(r.to(c128) + 1j, v, 1.0, 1.0)
    with pytest.raises(TypeError, match=r"^outside: expected real values"):
        gated_discrepancy_variance(r, v, 1.0, 1.0, torch.ones(2, dtype=c128), 1.0)
    with pytest.raises(TypeError, match=r"^sd2: expected real values"):  # failed in torch ("lt")
        add_discrepancy(prior.covariance, torch.ones(2, 1, dtype=c128), torch.ones(11, 2))
    with pytest.raises(TypeError, match=r"^root: expected real values"):
        add_discrepancy(prior.covariance, torch.ones(2, 1), torch.ones(11, 2, dtype=c128))
    # a variance of another shape failed in torch's broadcast; a negative one raised the
    # discrepancy (max(0, r^2 - kappa v)) or pulled kappa down, without a word
    with pytest.raises(ValueError, match=r"^variance: expected shape \(2, 1\)"):
        discrepancy_variance(r, torch.ones(3, 1), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"^variance: expected values >= 0"):
        discrepancy_variance(r, -v, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"^variance: expected values >= 0"):
        gated_discrepancy_variance(r, -v, 1.0, 1.0, torch.ones(2, dtype=torch.bool), 1.0)
    with pytest.raises(ValueError, match=r"^variance: expected values > 0"):
        fit_mass_kappa(torch.ones(4, 1), -torch.ones(4, 1))


def test_conditional_scale_functions_check_their_settings():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(12, 1, 5, dtype=F64, generator=gen)
    mass, theta = torch.randn(12, 1, dtype=F64, generator=gen), torch.rand(12, dtype=F64)
    for kw, err, match in (
        ({"rank": 2.5}, TypeError, "rank: expected an int"),
        ({"rank": True}, TypeError, "rank: expected an int"),  # was rank 1
        ({"ridge": NAN}, ValueError, "ridge: expected a finite number"),  # NaN coefficients
        ({"ridge": -1.0}, ValueError, "ridge: expected a number >= 0"),
        ({"train_range": (0.0, math.inf)}, ValueError, r"train_range\[1\]: expected a finite"),
        ({"train_range": (0.0, 1.0, 2.0)}, ValueError, r"train_range: expected \(lo, hi\)"),
    ):
        args = {"train_range": (0.0, 1.0)} | kw
        with pytest.raises(err, match=match):
            fit_parameter_map(mean, mass, theta, **args)
    absz, u = torch.rand(4, 1, 3, dtype=F64), torch.rand(4, dtype=F64)
    with pytest.raises(TypeError, match="bandwidth: expected a number > 0"):
        local_coverage_scale(absz, u, u[:2], "a")
    with pytest.raises(TypeError, match="level: expected a real number"):
        local_coverage_scale(absz, u, u[:2], 0.1, level="a")
    with pytest.raises(ValueError, match="bins: expected an int >= 1"):
        binned_coverage_error(absz, torch.ones(4, 1), u, 0.0, 1.0, bins=0)  # gave 0.0
    with pytest.raises(ValueError, match="bandwidths: expected at least one bandwidth"):
        choose_bandwidth(absz, u, u, 0.0, 1.0, bandwidths=())  # "min() arg is an empty ..."


def _hybrid_inputs(x):
    """``fit_hybrid``'s inputs on the grid ``x [11]``: means ``[8, 1, 11]``, their diagonal
    covariance, one time and a per-slice ProbConserv update."""
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(8, 1, 11, dtype=F64, generator=gen)
    cov = DiagLinearOperator(torch.ones(8, 1, 11, dtype=F64))
    t = torch.tensor([0.05], dtype=F64)

    def update(p, idx):
        return conserve_slices(p, x, torch.zeros(len(idx), 1))

    return mean, cov, t, update


def test_hybrid_calibration_functions_check_their_inputs(prior):
    x = torch.linspace(0, 1, 11, dtype=F64)
    root = torch.randn(1, 11, 3, dtype=F64)
    with pytest.raises(ValueError, match="beta: expected a number <= 1"):
        hybrid_covariance(prior.covariance, root, 1.5, 1.0, 1.0)  # a negative error weight
    with pytest.raises(ValueError, match="scale: expected a number >= 0"):
        hybrid_covariance(prior.covariance, root, 0.5, 1.0, -1.0)  # NaN variances
    with pytest.raises(ValueError, match=r"err_root: expected shape \[nt, 11, V\]"):
        hybrid_covariance(prior.covariance, root[:, :5], 0.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="per_function: expected the per-function MSEs"):
        select_candidate({(0, 1.0): 1.0, (0, 0.5): 2.0}, {(0, 1.0): torch.ones(3)}, "one_se")
    mean, cov, t, update = _hybrid_inputs(x)

    for args, kw, err, match in (
        ((lambda p: p,), {}, TypeError, r"update: expected a callable update\(prior, idx\) of"),
        ((None,), {}, TypeError, r"update: expected a callable update\(prior, idx\)"),
        ((lambda p, i: p.mean,), {}, TypeError, "update: expected update.* to return"),
        ((update,), {"betas": (1.5,)}, ValueError, "betas: expected a number <= 1"),
        ((update,), {"betas": ()}, ValueError, "betas: expected at least one"),
        ((update,), {"neighbours": (-1,)}, ValueError, "neighbours: expected an int >= 0"),
    ):
        with pytest.raises(err, match=match):
            fit_hybrid(mean, cov, mean + 0.1, *args, t, x, **kw)
    with pytest.raises(ValueError, match="truth: expected finite values"):
        fit_hybrid(mean, cov, mean * NAN, update, t, x)  # "not positive definite"
    with pytest.raises(ValueError, match=r"truth: expected shape \(8, 1, 11\)"):
        fit_hybrid(mean, cov, mean[..., :5], update, t, x)
    with pytest.raises(ValueError, match=r"x: expected shape \(11,\)"):
        fit_hybrid(mean, cov, mean + 0.1, update, t, x[:5])  # said "mean"
    cal = fit_hybrid(mean, cov, mean + 0.1, update, t, x, betas=(1.0,))
    assert isinstance(cal, HybridCalibration)
    with pytest.raises(ValueError, match="stage: expected 'prior' or 'post'"):
        cal.scale_for(mean, "posterior")  # gave the post-update scale


def test_calibration_building_blocks_refuse_complex_values(prior):
    # each was cast to float64 keeping the real part (a complex truth failed in torch's
    # index_put instead)
    c128 = torch.complex128
    x = torch.linspace(0, 1, 11, dtype=F64)
    with pytest.raises(TypeError, match=r"^err_root: expected real values"):
        hybrid_covariance(prior.covariance, torch.ones(1, 11, 3, dtype=c128), 0.5, 1.0, 1.0)
    mean, cov, t, update = _hybrid_inputs(x)

    for args, name in (
        ((mean, cov, (mean + 0.1).to(c128) + 1j, update, t, x), "truth"),
        ((mean, cov, mean + 0.1, update, t.to(c128), x), "t"),
        ((mean, cov, mean + 0.1, update, t, x.to(c128) + 1j), "x"),
    ):
        with pytest.raises(TypeError, match=rf"^{name}: expected real values"):
            fit_hybrid(*args, betas=(1.0,))
    gen = torch.Generator().manual_seed(1)
    mass, theta = torch.randn(12, 1, dtype=F64, generator=gen), torch.rand(12, dtype=F64)
    mean12 = torch.randn(12, 1, 5, dtype=F64, generator=gen)
    for args, name in (
        ((mean12.to(c128), mass, theta), "mean"),
        ((mean12, mass.to(c128), theta), "mass"),
        ((mean12, mass, theta.to(c128) + 1j), "theta"),
    ):
        with pytest.raises(TypeError, match=rf"^{name}: expected real values"):
            fit_parameter_map(*args, (0.0, 1.0))
    absz, u = torch.rand(4, 1, 3, dtype=F64), torch.rand(4, dtype=F64)
    with pytest.raises(TypeError, match=r"^query: expected real values"):
        local_coverage_scale(absz, u, u[:2].to(c128) + 1j, 0.1)


def test_step2_outputs_stay_gaussian_posteriors(prior, anp, data):
    post = conserve_slices(prior, anp.problem.grid(11), anp.mass(data))
    assert isinstance(post, GaussianPosterior)
    idata = post.to_inference_data(num_samples=3, dims=["function", "time", "x"], seed=0)
    assert dict(idata.posterior["u"].sizes) == {
        "chain": 1,
        "draw": 3,
        "function": 2,
        "time": 1,
        "x": 11,
    }


# -- the GPME problem generators ---------------------------------------------------------------
def test_problem_generators_check_their_arguments():
    pme = get_problem("pme")
    with pytest.raises(TypeError, match="problem: expected one of"):
        get_problem(["pme"])  # was "unhashable type: 'list'"
    assert sample_parameters("pme", 3, seed=0).shape == (3,)  # a name: AttributeError
    with pytest.raises(ValueError, match="n: expected an int >= 0"):
        sample_parameters(pme, -1)  # "Trying to create tensor with negative dimension"
    with pytest.raises(TypeError, match="seed: expected an int"):
        sample_parameters(pme, 2, seed="a")
    with pytest.raises(TypeError, match="seed: expected an int"):
        make_dataset("pme", 2, seed=1.5)  # was seed 1
    with pytest.raises(ValueError, match="n_functions: give either params"):
        make_dataset("pme", 5, params=[2.0])  # n_functions was ignored: 1 function
    with pytest.raises(ValueError, match=r"params: expected a 1-D sequence"):
        make_dataset("pme", params=[[2.0, 3.0], [4.0, 5.0]])  # was flattened to 4 functions
    with pytest.raises(ValueError, match="t: expected a finite number"):
        eval_grid("pme", NAN)  # a NaN time column
    with pytest.raises(ValueError, match="t: expected a number >= 0"):
        eval_grid("pme", -0.5)
    assert float(eval_grid("pme", torch.tensor(0.25))[0, 0]) == 0.25
    with pytest.raises(ValueError, match=r"param: expected m in \(0, inf\)"):
        mass_from_fluxes(pme, 0.5, -1.0)  # was NaN
    assert mass_from_fluxes("pme", 0.5, 2.0) == pytest.approx(float(pme.mass(0.5, 2.0)))
    with pytest.raises(TypeError, match="m: expected a real number"):
        pme.setting("a")


@pytest.mark.parametrize(
    ("name", "method", "param", "match"),
    [
        ("pme", "solution", -1.0, r"m: expected values in \(0, inf\) for pme"),  # was -3.33
        ("pme", "mass", 0.0, r"m: expected values in \(0, inf\) for pme"),  # was 0
        ("pme", "boundary_flux", NAN, r"m: expected values .*received 1 NaN"),
        ("diffusion", "solution", -1.0, r"k: expected values in \(0, inf\)"),  # growing "heat"
        ("diffusion", "mass", NAN, r"k: expected values .*received 1 NaN"),
        ("stefan", "solution", NAN, r"u_star: expected values in \(0, 1\), received 1 NaN"),
    ],
)
def test_closed_forms_refuse_parameters_outside_their_family(name, method, param, match):
    prob = get_problem(name)
    args = (0.5, 0.2, param) if method == "solution" else (0.5, param)
    with pytest.raises(ValueError, match=match):
        getattr(prob, method)(*args)


def test_stefan_constants_check_iters():
    with pytest.raises(ValueError, match="iters: expected an int >= 1"):
        stefan_constants(0.6, iters=0)  # gave alpha = 30


def test_a_finished_fit_leaves_the_network_in_eval_mode():
    m = ProbConserv("diffusion", hidden=8, n_samples=4, seed=0)
    m.fit(steps=1, progress=False)
    assert not m.net.training  # was left in train mode after a successful fit


def test_front_and_nonnegative_steps_take_any_posterior(prior):
    """They only draw from the posterior: a recalibrated or empirical one was refused."""
    from bayesphys import SamplePosterior
    from bayesphys.diagnostics import Recalibrator

    x = torch.linspace(0, 1, 11, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    truths = [prior.mean + 2 * prior.stddev * torch.randn(prior.mean.shape, generator=gen)]
    recal = Recalibrator.fit([prior], truths, method="zscore").wrap(prior)
    empirical = SamplePosterior(prior.sample((40,), seed=1)[None], event_ndim=1)
    mass = torch.full((2, 1), 0.5, dtype=F64)
    for post in (recal, empirical):
        fronts = shock_posterior(post, x, 5)
        assert fronts.shape == (5, 2, 1) and bool(((fronts >= 0) & (fronts <= 1)).all())
        fields = nonnegative_posterior(post, x, mass, 6)
        assert fields.draws.shape == (1, 6, 2, 1, 11) and bool((fields.draws >= 0).all())
        mono = monotone_posterior(post, x, mass, 6, nonnegative=True)
        d = mono.draws
        assert d.shape == (1, 6, 2, 1, 11) and bool((d >= 0).all())
        assert bool((d[..., 1:] <= d[..., :-1]).all())  # non-increasing along x
    # the shock draws are those of the posterior's own draws (same seed, same sampler)
    assert torch.equal(
        shock_posterior(empirical, x, 5, seed=3),
        shock_position(empirical.sample((5,), seed=3), x),
    )
