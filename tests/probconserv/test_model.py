"""ProbConserv model API: fit, posterior, save/load, ArviZ export, shock posterior, device."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys import FitResult, GaussianPosterior
from bayesphys.inference_data import group_dataset
from bayesphys.probconserv import (
    ProbConserv,
    shock_position,
    shock_posterior,
    slice_scores,
    trapezoid_weights,
)
from bayesphys.problems.gpme import make_dataset
from tests.calibration_checks import stale_calibration_messages
from tests.fit_callback_checks import callbacks_around_a_nan_gradient

F64 = torch.float64


@pytest.fixture(scope="module")
def anp_model():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = ProbConserv("stefan", step1="anp", hidden=16, n_samples=8, seed=0)
        res = m.fit(steps=15, progress=False)
        yield m, res
    finally:
        torch.set_num_threads(n)


def test_anp_fit_posterior_conserves(anp_model):
    model, res = anp_model
    assert isinstance(res, FitResult) and res.steps == 15 and len(res.loss_history) == 15
    test = make_dataset("stefan", params=[0.6, 0.55], seed=3)
    prior = model.step1(test)
    assert isinstance(prior, GaussianPosterior)
    assert prior.batch_shape == (2, 1) and prior.event_shape == (201,)
    x = model.problem.grid(201)
    g = trapezoid_weights(x)
    b = model.mass(test)
    for cov in ("lowrank", "diag"):
        model.config.covariance = cov
        post = model.posterior(test)
        torch.testing.assert_close(post.mean @ g, b, rtol=0, atol=1e-10)
        draws = post.sample((20,), generator=torch.Generator().manual_seed(0))
        assert float((draws @ g - b).abs().max()) < 1e-10
        assert bool((post.variance <= prior.variance + 1e-12).all())
    model.config.covariance = "lowrank"
    hard = model.posterior(test, method="hardc")
    torch.testing.assert_close(hard.variance, prior.variance)
    # several time slices at once, each conserved
    multi = model.posterior(test, t=torch.tensor([0.02, 0.05, 0.08]))
    assert multi.batch_shape == (2, 3)
    torch.testing.assert_close(
        multi.mean @ g, model.mass(test, torch.tensor([0.02, 0.05, 0.08])), rtol=0, atol=1e-10
    )
    scores = slice_scores(post, model.problem.solution(0.05, x, test.params[:, None, None]), x, b)
    assert float(scores["ce"].abs().max()) < 1e-10
    shocks = shock_posterior(post, x, 30, seed=1)
    assert shocks.shape == (30, 2, 1)
    # the documented draw: 30 samples of post from a generator seeded with ``seed``, each read
    # at its first grid point <= 0 (x[-1] where none is)
    draws = post.sample((30,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(shocks, shock_position(draws, x), rtol=0, atol=0)
    below = draws <= 0
    first = torch.where(below.any(-1), below.to(torch.int8).argmax(-1), len(x) - 1)
    torch.testing.assert_close(shocks, x.to(draws)[first], rtol=0, atol=0)
    assert torch.equal(shock_posterior(post, x, 30, seed=1), shocks)  # the seed repeats
    assert not torch.equal(shock_posterior(post, x, 30, seed=2), shocks)  # another differs


def test_calibrate_variance_scale(anp_model):
    model, _ = anp_model
    val = make_dataset("stefan", 6, seed=9)
    before = model.step1(val)
    c = model.calibrate(val)
    after = model.step1(val)
    torch.testing.assert_close(after.variance, c * before.variance)
    torch.testing.assert_close(after.mean, before.mean)
    truth = model.problem.solution(0.05, model.problem.grid(201), val.params[:, None, None])
    z2 = (truth - after.mean).pow(2) / after.variance
    assert float(z2.mean()) == pytest.approx(1.0, rel=1e-6)
    c90 = model.calibrate(val, objective="coverage90")
    lo, hi = model.step1(val).interval(0.9)
    cover = float(((truth >= lo) & (truth <= hi)).double().mean())
    assert c90 > 0 and cover == pytest.approx(0.9, abs=0.01)
    with pytest.raises(ValueError, match="objective"):
        model.calibrate(val, objective="crps")
    model.var_scale = c


def test_save_load_round_trip(anp_model, tmp_path):
    model, _ = anp_model
    test = make_dataset("stefan", params=[0.6], seed=1)
    path = model.save(tmp_path / "pc.pt")
    back = ProbConserv.load(path)
    # left ready to predict, as a fit leaves it (a loaded network was in training mode)
    assert not model.net.training and not back.net.training
    a, b = model.posterior(test, seed=4), back.posterior(test, seed=4)
    assert torch.equal(a.mean, b.mean)
    assert torch.equal(a.variance, b.variance)
    # the updated draws repeat bit for bit with the same generator seed
    da = a.sample((6,), generator=torch.Generator().manual_seed(5))
    db = b.sample((6,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(da, db)
    assert back.config == model.config
    assert back.var_scale == model.var_scale


def test_inference_data_export(anp_model):
    model, _ = anp_model
    test = make_dataset("stefan", params=[0.6], seed=1)
    post = model.posterior(test)
    x = model.problem.grid(201)
    idata = post.to_inference_data(
        dims=["function", "t", "x"], coords={"x": x.numpy()}, num_samples=10, seed=0
    )
    u = group_dataset(idata, "posterior")["u"]
    assert u.shape == (1, 10, 1, 1, 201)


def test_gp_step1_dense_and_softc():
    torch.set_num_threads(1)
    gp = ProbConserv("pme", step1="gp", gp_width=8, seed=1)
    res = gp.fit(steps=5, progress=False)
    assert res.steps == 5 and all(torch.isfinite(torch.tensor(res.loss_history)))
    test = make_dataset("pme", params=[3.0], seed=2)
    post = gp.posterior(test)
    assert post.covariance.shape == (1, 1, 201, 201)
    g = trapezoid_weights(gp.problem.grid(201))
    torch.testing.assert_close(post.mean @ g, gp.mass(test), rtol=0, atol=1e-10)
    soft = ProbConserv("pme", step1="anp", hidden=16, softc_weight=1.0, softc_points=8, seed=0)
    r = soft.fit(steps=2, progress=False)
    assert r.steps == 2
    # the SoftC penalty changes training: with the same seed and no penalty, the first loss
    # (same batch, same latent noise) lacks the penalty's non-negative term, and the
    # trained weights differ
    plain = ProbConserv("pme", step1="anp", hidden=16, softc_weight=0.0, softc_points=8, seed=0)
    r0 = plain.fit(steps=2, progress=False)
    assert r.loss_history[0] > r0.loss_history[0]
    assert not all(torch.equal(a, b) for a, b in zip(soft.net.parameters(), plain.net.parameters()))


def test_model_bad_input():
    with pytest.raises(ValueError, match="step1"):
        ProbConserv("pme", step1="fno")
    with pytest.raises(ValueError, match="softc_weight"):
        ProbConserv("pme", step1="gp", softc_weight=-1.0)
    # SoftC-GP: the penalty on the meta-GP's predictive mean (tests/probconserv/test_softc_gp.py)
    assert ProbConserv("pme", step1="gp", softc_weight=1.0).config.softc_weight == 1.0
    m = ProbConserv("pme", hidden=16)
    with pytest.raises(TypeError, match="context"):
        m.posterior(torch.zeros(3))
    bad = make_dataset("pme", params=[2.0], seed=0)
    bad.y_context[0, 3] = float("nan")
    with pytest.raises(ValueError, match="y_context: expected finite"):
        m.posterior(bad)


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("hidden", 0, ValueError),  # was accepted (a zero-width network)
        ("hidden", -3, ValueError),  # was torch's "negative dimension"
        ("hidden", 2.5, TypeError),
        ("batch_size", 0, ValueError),
        ("gp_width", -1, ValueError),
        ("softc_points", 0, ValueError),
        ("n_samples", 1, ValueError),
        ("n_samples", True, TypeError),
        ("noise_std", -0.1, ValueError),
        ("noise_std", float("nan"), ValueError),
        ("softc_weight", float("nan"), ValueError),  # NaN passed both comparisons
        ("lr", -1e-3, ValueError),
        ("lr", 0.0, ValueError),
        ("sigma_g", -1.0, ValueError),
        ("sigma_g", float("nan"), ValueError),
    ],
)
def test_model_settings_are_checked(name, value, error):
    with pytest.raises(error, match=name):
        ProbConserv("pme", **{name: value})


def test_valid_settings_are_converted_and_fit_steps_checked():
    m = ProbConserv("pme", hidden=16.0, n_samples=4, sigma_g=math.inf, seed=0)
    assert m.config.hidden == 16 and isinstance(m.config.hidden, int)
    with pytest.raises(TypeError, match="steps: expected an int"):
        m.fit(steps=2.5, progress=False)
    with pytest.raises(ValueError, match="steps: expected an int >= 0"):
        m.fit(steps=-1, progress=False)
    with pytest.raises(ValueError, match="lr"):
        m.fit(steps=1, lr=float("nan"), progress=False)
    m.fit(steps=2, progress=False)
    d = make_dataset("pme", 2, seed=0)
    with pytest.raises(TypeError, match="seed: expected an int"):
        m.posterior(d, seed=2.5)  # was torch's "manual_seed expected a long"
    with pytest.raises(ValueError, match="neighbours: expected an int >= 0"):
        m.calibrate(n_functions=4, neighbours=(-1,))
    with pytest.raises(TypeError, match="n_functions: expected an int"):
        m.calibrate(n_functions=2.5)
    # analog sizes that do not fit the validation halves: was "min() arg is an empty sequence"
    with pytest.raises(ValueError, match="neighbours: every analog size"):
        m.calibrate(n_functions=12, objective="hybrid", neighbours=(100,))


@pytest.mark.gpu
def test_cuda_update_and_model(cuda_device):
    m = ProbConserv("diffusion", hidden=16, n_samples=4, device=cuda_device, seed=0)
    m.fit(steps=3, progress=False)
    test = make_dataset("diffusion", params=[5.0], seed=0)
    post = m.posterior(test)
    assert post.device.type == "cuda"
    g = trapezoid_weights(m.problem.grid(201)).to(cuda_device)
    assert float((post.mean @ g).abs().max()) < 1e-10
    # the hybrid calibration with the conditional scale and the mass check, on the device
    m.calibrate(make_dataset("diffusion", 12, seed=5), objective="hybrid", local_functions=8)
    assert m.calibration.mass_kappa is not None
    far = m.mass(test) + 1.0
    post = m.posterior(test, mass=far)
    assert post.device.type == "cuda" and m.mass_discrepancy(test, mass=far).device.type == "cuda"
    assert float((post.mean @ g - far).abs().max()) < 1e-10
    # a user's mass on the CPU is moved to the model's device
    post = m.posterior(test, mass=far.cpu())
    assert post.device.type == "cuda" and m.mass_discrepancy(test, mass=far.cpu()).is_cuda
    assert float((post.mean @ g - far).abs().max()) < 1e-10


# the model is untrained (the query checks do not need a trained one): its posteriors'
# untrained warning is not what the test checks
@pytest.mark.filterwarnings("ignore:ProbConserv.posterior. the model has not been trained")
def test_bad_queries_get_clear_errors():
    """Times / points outside the problem's domain, another problem's functions, and an empty
    or mismatched shock query are refused with messages that say what was expected."""
    from bayesphys.probconserv import shock_position

    torch.set_num_threads(1)
    m = ProbConserv("stefan", step1="anp", hidden=16, n_samples=4, seed=0)
    d = make_dataset("stefan", params=[0.6], seed=1)
    with pytest.raises(ValueError, match=r"t: expected values in the stefan domain \[0.0, 0.1\]"):
        m.posterior(d, t=0.5)
    with pytest.raises(ValueError, match="x: expected values in the stefan domain"):
        m.posterior(d, x=torch.linspace(0, 2, 11, dtype=torch.float64))
    with pytest.raises(ValueError, match="'pme' problem, but this model was trained on 'stefan'"):
        m.posterior(make_dataset("pme", 1, seed=1))
    post = m.posterior(d)
    x = m.problem.grid(201)
    with pytest.raises(ValueError, match="num_samples: expected an int >= 1"):
        shock_posterior(post, x, 0)
    with pytest.raises(ValueError, match=r"x: expected shape \(201,\)"):
        shock_position(post.mean, x[:-1])
    # the domain's own ends are fine
    assert (
        m.posterior(d, t=0.1, x=torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)).mean.shape[-1]
        == 3
    )
    # empty grids / contexts and a mass of the wrong shape: said in the query's own terms
    with pytest.raises(ValueError, match="at least one time and two points"):
        m.posterior(d, t=[])
    with pytest.raises(ValueError, match="at least one function"):
        m.posterior(d.subset(torch.tensor([], dtype=torch.long)))
    with pytest.raises(ValueError, match=r"mass: expected shape \[B, nt\] = \(1, 1\)"):
        m.posterior(d, mass=torch.ones(1))
    assert m.posterior(d, mass=m.mass(d, torch.tensor([0.05]))).mean.shape == (1, 1, 201)


def test_sigma_g_inf_returns_the_calibrated_step1_posterior():
    """posterior(sigma_g=inf) is 'no update' (docs: "inf returns the prior"): after a hybrid
    calibration it must carry the Step-1 ("prior") calibration, not the covariance calibrated
    for the updated posterior."""
    torch.set_num_threads(1)
    m = ProbConserv("stefan", step1="anp", hidden=16, n_samples=8, seed=0)
    m.fit(steps=5, progress=False)
    m.calibrate(n_functions=8, objective="hybrid")
    cal = m.calibration
    assert cal.prior_scale != pytest.approx(cal.post_scale, rel=1e-3)
    test = make_dataset("stefan", params=[0.6, 0.55], seed=1)
    none = m.posterior(test, method="none")
    inf = m.posterior(test, sigma_g=math.inf)
    torch.testing.assert_close(inf.mean, none.mean)
    torch.testing.assert_close(inf.variance, none.variance)


def test_a_setting_assigned_after_construction_is_checked_before_use(anp_model, tmp_path):
    """An unknown ``config.covariance`` assigned to a built model was read as "lowrank" by
    every prediction (a silent other covariance), and ``save`` wrote a checkpoint that
    ``load`` then refused: both now refuse it by name (nothing is written)."""
    model, _ = anp_model
    test = make_dataset("stefan", params=[0.6], seed=1)
    before = model.config.covariance
    try:
        model.config.covariance = "diagonal"
        with pytest.raises(
            ValueError, match="config.covariance: expected 'diag', 'lowrank' or 'mixture'"
        ):
            model.posterior(test)
        with pytest.raises(ValueError, match="config.covariance: .*did you mean 'diag'"):
            model.step1(test)
        with pytest.raises(ValueError, match="save: config covariance: expected 'diag'"):
            model.save(tmp_path / "bad.pt")
        assert not (tmp_path / "bad.pt").exists()
        model.config.covariance = "lowrank"
        model.config.n_samples = 1  # the constructor and load need >= 2
        with pytest.raises(ValueError, match="save: config n_samples: expected an int >= 2"):
            model.save(tmp_path / "bad.pt")
        model.config.n_samples = 8
        # a valid assignment is saved and restored
        model.config.covariance = "diag"
        back = ProbConserv.load(model.save(tmp_path / "diag.pt"))
        assert back.config == model.config
        assert torch.equal(back.posterior(test).variance, model.posterior(test).variance)
    finally:
        model.config.covariance, model.config.n_samples = before, 8


def test_save_load_keeps_a_customised_problem(tmp_path):
    """A model built on a customised problem (train range, table time) is restored with it."""
    from bayesphys.problems.gpme import PorousMedium

    torch.set_num_threads(1)
    prob = PorousMedium(train_range=(2.0, 4.0), table_time=0.25)
    m = ProbConserv(prob, step1="anp", hidden=8, n_samples=4, seed=0)
    m.fit(steps=2, progress=False)
    back = ProbConserv.load(m.save(tmp_path / "custom.pt"))
    assert back.problem == prob
    test = make_dataset(prob, params=[3.0], seed=1)
    assert torch.equal(back.posterior(test).mean, m.posterior(test).mean)


def test_save_load_keeps_a_renamed_problem_and_refuses_unknown_families(tmp_path):
    """A renamed problem failed to load ("problem: expected one of ..."): it is rebuilt from
    its family's class now; a problem of a class no checkpoint can rebuild is refused at save,
    before anything is written."""
    from dataclasses import dataclass, replace

    from bayesphys.problems.gpme import Diffusion, get_problem

    prob = replace(get_problem("diffusion"), name="diffusion-wide", train_range=(0.5, 6.0))
    m = ProbConserv(prob, hidden=8, n_samples=4, seed=0)
    back = ProbConserv.load(m.save(tmp_path / "renamed.pt"))
    assert back.problem == prob and type(back.problem) is Diffusion

    @dataclass(frozen=True)
    class MyDiffusion(Diffusion):
        name: str = "mine"

    m = ProbConserv(MyDiffusion(), hidden=8, n_samples=4, seed=0)
    with pytest.raises(ValueError, match="problem: a MyDiffusion cannot be saved"):
        m.save(tmp_path / "mine.pt")
    assert not (tmp_path / "mine.pt").exists()


def test_gp_step1_refuses_float32_up_front():
    """The meta-GP runs in float64: another ``dtype`` is refused when the model is built (it
    used to train and then fail at the first prediction with a dtype mismatch)."""
    with pytest.raises(ValueError, match="dtype: step1='gp' runs in torch.float64"):
        ProbConserv("stefan", step1="gp", gp_width=8, dtype=torch.float32)
    assert ProbConserv("stefan", step1="gp", gp_width=8, dtype=F64).dtype == F64


def test_fit_refuses_another_problems_functions():
    """fit(data) checks the problem as posterior/calibrate do (it used to train on them)."""
    m = ProbConserv("pme", step1="anp", hidden=8, n_samples=4, seed=0)
    with pytest.raises(ValueError, match="data: functions of the 'stefan' problem"):
        m.fit(make_dataset("stefan", 4, seed=0), steps=1, progress=False)
    assert m.steps_done == 0


@pytest.mark.parametrize("sigma_g", [0.0, 0.1])
def test_updated_posterior_pickles(anp_model, sigma_g):
    # the updated posterior's sampler was a closure (so were the prior roots it wraps):
    # pickling it failed; the copy now draws the same conserving fields
    import pickle

    model, _ = anp_model
    test = make_dataset("stefan", params=[0.6], seed=3)
    old = model.config.sigma_g
    model.config.sigma_g = sigma_g
    try:
        post = model.posterior(test)
    finally:
        model.config.sigma_g = old
    back = pickle.loads(pickle.dumps(post))
    a = post.sample((3,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, back.sample((3,), generator=torch.Generator().manual_seed(1)))


@pytest.fixture
def training_params(monkeypatch) -> list[torch.Tensor]:
    """The parameters ``[B]`` of every training batch ``ProbConserv.fit`` draws, in order."""
    import bayesphys.probconserv._train as pc_train

    seen: list[torch.Tensor] = []
    real = pc_train.make_dataset

    def spy(*args, **kw):
        data = real(*args, **kw)
        seen.append(data.params)
        return data

    monkeypatch.setattr(pc_train, "make_dataset", spy)
    return seen


def test_train_margin_widens_the_training_parameters(training_params):
    seen = training_params
    wide = ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=64, train_margin=0.2)
    wide.fit(steps=3, progress=False)
    p = torch.cat(seen)
    assert float(p.min()) < 1.0 and float(p.max()) > 5.0  # k ~ U(0.2, 5.8): past both ends
    assert float(p.min()) >= 0.2 and float(p.max()) <= 5.8
    seen.clear()
    ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=64).fit(steps=3, progress=False)
    p = torch.cat(seen)
    assert 1.0 <= float(p.min()) and float(p.max()) <= 5.0  # the paper's U(1, 5)
    with pytest.raises(ValueError, match=r"train_margin = 0.5: expected m in \(0, inf\)"):
        ProbConserv("pme", train_margin=0.5)
    with pytest.raises(ValueError, match="train_margin: expected a number >= 0"):
        ProbConserv("pme", train_margin=-0.1)


def test_shock_position_reads_draws_without_a_front_as_asked():
    from bayesphys.probconserv import shock_position

    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    draws = torch.tensor([[1.0, 0.5, -0.1, -1.0, -2.0], [1.0, 1.0, 1.0, 1.0, 1.0]], dtype=x.dtype)
    assert shock_position(draws, x).tolist() == [0.5, 1.0]  # default: censored at the end
    assert shock_position(draws, x, missing="first").tolist() == [0.5, 0.0]
    got = shock_position(draws, x, missing="nan")
    assert float(got[0]) == 0.5 and bool(torch.isnan(got[1]))
    with pytest.raises(ValueError, match="missing"):
        shock_position(draws, x, missing="end")


def test_shock_position_refuses_a_decreasing_grid():
    """The front is the first crossing along x: on a reversed grid (one step1 and
    posterior(method="none") accept) the first crossing in array order read the far end of
    the domain (x = 1 for a front at 0.5); a decreasing x is now refused, before any draw,
    and repeated positions are still read."""
    from bayesphys.probconserv import shock_position, shock_posterior

    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    draws = torch.tensor([[1.0, 0.5, -0.1, -1.0, -2.0]], dtype=x.dtype)
    assert shock_position(draws, x).tolist() == [0.5]
    with pytest.raises(ValueError, match=r"^x: expected non-decreasing positions") as err:
        shock_position(draws.flip(-1), x.flip(0))
    assert "x[0] = 1 then x[1] = 0.75" in str(err.value)
    with pytest.raises(ValueError, match=r"x\[2\] = 0.5 then x\[3\] = 0.25"):
        shock_position(draws, x[[0, 1, 2, 1, 4]])
    flat = torch.tensor([0.0, 0.5, 0.5, 1.0], dtype=x.dtype)  # a repeated position
    assert shock_position(torch.tensor([1.0, 1.0, -1.0, -1.0]), flat).tolist() == 0.5
    post = GaussianPosterior(draws, 1e-6 * torch.eye(5, dtype=x.dtype)[None], event_shape=(5,))
    with pytest.raises(ValueError, match="^x: expected non-decreasing"):
        shock_posterior(post, x.flip(0), 3)


def test_shock_position_of_integer_draws_keeps_the_positions():
    from bayesphys.probconserv import shock_position

    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    draws = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])  # an indicator field, int64
    got = shock_position(draws, x, missing="nan")
    assert got.dtype == torch.float64  # was int64: x cast to the draws' dtype
    assert got[0].item() == 0.5 and bool(torch.isnan(got[1]))  # x = 0.5 was read as 0
    assert shock_position(draws.float(), x).dtype == torch.float32  # floating draws' dtype
    idx = shock_position(draws, torch.arange(5))  # integer positions: the default dtype
    assert idx.tolist() == [2.0, 4.0] and idx.dtype == torch.get_default_dtype()


def test_training_batches_are_no_dataset_a_user_can_seed(training_params):
    # the batches' seeds were seed * 1_000_003 + step: a seed-0 model trained on
    # make_dataset(seed=k) for k = 0, 1, ..., so the benchmark's calibration (seed 777) and SoftC
    # validation (seed 555) sets were training batches #777 and #555
    seen = training_params
    m = ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=0)
    m.fit(steps=4, progress=False)
    m.fit(steps=2, progress=False)  # resumes the stream: six distinct batches
    assert len(seen) == 6 and len({tuple(p.tolist()) for p in seen}) == 6
    user = {tuple(make_dataset("diffusion", 8, seed=k).params.tolist()) for k in range(0, 1000)}
    assert not user & {tuple(p.tolist()) for p in seen}
    # the stream is the seed's: another model seed draws other batches, the same one the same
    seen_0 = list(seen)
    seen.clear()
    ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=0).fit(
        steps=6, progress=False
    )
    assert all(torch.equal(a, b) for a, b in zip(seen, seen_0, strict=True))
    seen.clear()
    ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=1).fit(
        steps=2, progress=False
    )
    assert not torch.equal(seen[0], seen_0[0])


def test_minibatches_of_data_continue_across_fits(monkeypatch):
    # fit(data) seeded its subset stream from the step count at the start of each call, so
    # fit(4) + fit(2) drew other minibatches than fit(6) (the make_dataset path continued)
    from bayesphys.problems.gpme import GPMEData

    seen: list[tuple[int, ...]] = []
    real = GPMEData.subset

    def spy(self, idx):
        seen.append(tuple(torch.as_tensor(idx).tolist()))
        return real(self, idx)

    monkeypatch.setattr(GPMEData, "subset", spy)
    data = make_dataset("diffusion", 40, seed=3)
    kw = dict(hidden=8, n_samples=4, batch_size=8, seed=0)
    m = ProbConserv("diffusion", **kw)
    m.fit(data, steps=4, progress=False)
    m.fit(data, steps=2, progress=False)
    split = list(seen)
    seen.clear()
    ProbConserv("diffusion", **kw).fit(data, steps=6, progress=False)
    assert split == seen and len(set(seen)) == 6


def test_posterior_on_a_window_of_the_domain_conserves_the_window_mass():
    """A grid spanning only [0, 0.3] of the PME domain [0, 1] had the domain's total mass
    forced into it (updated mean integral 0.429 where the truth holds 0.303; MSE 44x the
    prior's). The analytic b(t) is now the window's."""
    import warnings

    from bayesphys.probconserv import ProbConserv, trapezoid_weights
    from bayesphys.problems.gpme import make_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ProbConserv("pme", step1="gp", gp_width=8, seed=0)
        m.fit(steps=3, progress=False)
    test = make_dataset("pme", params=[3.0], seed=1)
    x = torch.linspace(0.0, 0.3, 61, dtype=torch.float64)
    g = trapezoid_weights(x)
    truth = m.problem.solution(0.5, x, 3.0)
    post = m.posterior(test, x=x)
    assert abs(float(post.mean.reshape(-1) @ g) - float(truth @ g)) < 1e-3
    prior = m.posterior(test, x=x, method="none")
    mse = float((post.mean.reshape(-1) - truth).pow(2).mean())
    assert mse < float((prior.mean.reshape(-1) - truth).pow(2).mean())
    # a grid spanning the domain keeps the domain's mass
    full = m.posterior(test, x=m.problem.grid(101))
    torch.testing.assert_close(
        full.mean.reshape(-1) @ trapezoid_weights(m.problem.grid(101)),
        m.mass(test).reshape(()),
        rtol=1e-10,
        atol=1e-12,
    )


def test_predict_decodes_the_draws_as_the_concatenated_decoder():
    """predict's factored first layer (point part once, each draw adds W_z z) equals the
    decoder on the [S, B, Nt, 3H] concatenation to float round-off."""
    from bayesphys.probconserv.anp import AttentiveNP

    torch.manual_seed(0)
    net = AttentiveNP((0.0, 0.0), (1.0, 2.0), hidden=16).eval()
    xc, yc, xt = torch.rand(3, 7, 2), torch.randn(3, 7), torch.rand(3, 11, 2)
    with torch.no_grad():
        mz, sz = net.latent(xc, yc)
        z = mz + sz * torch.randn(5, *mz.shape)
        r = net.deterministic(xc, yc, xt)
        mu, sd = net.decode(r.unsqueeze(0), z, xt)
        mu2, sd2 = net._decode_draws(r, z, xt)
        gen = torch.Generator().manual_seed(3)
        mu3, _ = net.predict(xc, yc, xt, n_samples=5, generator=gen)
    assert mu2.shape == sd2.shape == (5, 3, 11)
    torch.testing.assert_close(mu2, mu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sd2, sd, rtol=1e-5, atol=1e-6)
    gen = torch.Generator().manual_seed(3)
    eps = torch.randn((5, *mz.shape), generator=gen)
    torch.testing.assert_close(
        mu3, net.decode(r.unsqueeze(0), mz + sz * eps, xt)[0], rtol=1e-5, atol=1e-6
    )


def test_softc_points_with_the_meta_gp_are_its_penalty_points():
    """SoftC-GP: ``softc_points`` sets the meta-GP's penalty targets too (it was refused
    while SoftC was the ANP's only); not a positive integer is refused for either."""
    assert ProbConserv("pme", step1="gp", softc_points=8).config.softc_points == 8
    assert ProbConserv("pme", step1="gp").config.softc_points == 32  # the default
    with pytest.raises(ValueError, match="softc_points"):
        ProbConserv("pme", step1="gp", softc_points=0)


class _FieldNet:
    """A stand-in for the ANP whose decoded mean is ``fn(xt)`` (for :func:`softc_penalty`)."""

    def __init__(self, fn):
        self.fn = fn

    def latent(self, xc, yc):
        return None, None

    def deterministic(self, xc, yc, xt):
        return None

    def decode(self, r, z, xt):
        return self.fn(xt), None


def _softc(problem, fn, xt, params):
    from types import SimpleNamespace

    from bayesphys.probconserv._train import softc_penalty

    model = SimpleNamespace(
        net=_FieldNet(fn),
        config=SimpleNamespace(softc_points=xt.shape[1]),
        _train_rng=None,
        problem=problem,
    )
    return float(softc_penalty(model, None, None, xt, params).detach())


def test_softc_penalty_is_the_mean_squared_pde_residual():
    """The SoftC penalty vanishes on the exact solution of u_t = (k(u) u_x)_x (the constant k of
    diffusion and the nonlinear k(u) = u^m of the PME, behind its front) and equals the mean
    squared residual of a field that is no solution (the loss-difference test only saw that
    some non-negative term was added)."""
    from bayesphys.problems.gpme import Diffusion, PorousMedium

    g = torch.Generator().manual_seed(0)
    xt = torch.rand(2, 40, 2, dtype=F64, generator=g) * torch.tensor([1.0, 2 * math.pi], dtype=F64)
    k = torch.tensor([1.5, 4.0], dtype=F64)

    def heat(rate):
        return lambda z: torch.sin(z[..., 1]) * torch.exp(-rate[:, None] * z[..., 0])

    assert _softc(Diffusion(), heat(k), xt, k) < 1e-24
    # the decay rate 2k instead of k: r = u_t - k u_xx = -2k u + k u = -k u
    u = heat(2 * k)(xt)
    want = float((k[:, None] * u).pow(2).mean())
    assert _softc(Diffusion(), heat(2 * k), xt, k) == pytest.approx(want, rel=1e-10)
    # PME behind the front x < t: u = (m (t - x))^{1/m}; its residual vanishes only with the
    # flux k(u) u_x differentiated as a whole (k(u) u_xx alone leaves a residual)
    t = 0.5 + 0.5 * torch.rand(2, 30, 1, dtype=F64, generator=g)
    x = t * torch.rand(2, 30, 1, dtype=F64, generator=g) * 0.9
    pts, m = torch.cat([t, x], -1), torch.tensor([1.0, 3.0], dtype=F64)

    def pme(z):
        return (m[:, None] * (z[..., 0] - z[..., 1])).pow(1 / m[:, None])

    assert _softc(PorousMedium(), pme, pts, m) < 1e-20
    assert _softc(PorousMedium(), lambda z: 2 * pme(z), pts, m) > 1e-2


def test_slice_scores_are_the_paper_formulas():
    """MSE, LL, CE, 90 % coverage and CRPS of slice_scores against the formulas written out
    (scipy's normal density and the closed-form Gaussian CRPS), on a non-uniform grid."""
    import scipy.stats
    from linear_operator.operators import DiagLinearOperator

    g = torch.Generator().manual_seed(1)
    x = torch.sort(torch.rand(9, dtype=F64, generator=g)).values
    mu = torch.randn(2, 3, 9, dtype=F64, generator=g)
    var = 0.05 + torch.rand(2, 3, 9, dtype=F64, generator=g)
    truth = mu + var.sqrt() * 2.0 * torch.randn(2, 3, 9, dtype=F64, generator=g)
    mass = torch.randn(2, 3, dtype=F64, generator=g)
    post = GaussianPosterior(mu, DiagLinearOperator(var), event_shape=(9,))
    sc = slice_scores(post, truth, x, mass)
    torch.testing.assert_close(sc["mse"], (mu - truth).pow(2).mean(-1), rtol=1e-12, atol=0)
    ll = scipy.stats.norm.logpdf(truth.numpy(), mu.numpy(), var.sqrt().numpy()).mean(-1)
    torch.testing.assert_close(sc["ll"], torch.from_numpy(ll), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sc["ce"], torch.trapezoid(mu, x) - mass, rtol=1e-12, atol=1e-14)
    lo, hi = scipy.stats.norm.interval(0.9, mu.numpy(), var.sqrt().numpy())
    cover = ((truth.numpy() >= lo) & (truth.numpy() <= hi)).mean(-1)
    torch.testing.assert_close(sc["coverage90"], torch.from_numpy(cover))
    assert 0 < float(sc["coverage90"].mean()) < 1  # some points inside, some outside
    z = ((truth - mu) / var.sqrt()).numpy()
    crps = var.sqrt().numpy() * (
        z * (2 * scipy.stats.norm.cdf(z) - 1) + 2 * scipy.stats.norm.pdf(z) - 1 / math.sqrt(math.pi)
    )
    torch.testing.assert_close(sc["crps"], torch.from_numpy(crps.mean(-1)), rtol=1e-10, atol=0)


def test_meta_gp_predicts_the_exact_gp_conditional():
    """MetaGP.predict returns the latent GP conditional of its learned kernel, mean and full
    covariance: c + K_tc (K_cc + s^2 I)^{-1} (y - c) and K_tt - K_tc (K_cc + s^2 I)^{-1} K_ct."""
    from bayesphys.probconserv import MetaGP

    torch.manual_seed(0)
    gp = MetaGP((0.0, 0.0), (1.0, 2.0), width=4)
    with torch.no_grad():
        gp.gp.mean_module.constant.fill_(0.3)
        gp.lik.noise = 0.05
    g = torch.Generator().manual_seed(2)
    xc = torch.rand(2, 7, 2, dtype=F64, generator=g) * torch.tensor([1.0, 2.0], dtype=F64)
    yc = torch.randn(2, 7, dtype=F64, generator=g)
    xt = torch.rand(2, 5, 2, dtype=F64, generator=g) * torch.tensor([1.0, 2.0], dtype=F64)
    mean, cov = gp.predict(xc, yc, xt)
    assert mean.shape == (2, 5) and cov.shape == (2, 5, 5)
    m = gp.gp
    lo, hi = m.feats.lo, m.feats.hi

    def kern(a, b):
        with torch.no_grad():
            deep = m.k_deep(m.feats(a), m.feats(b)).to_dense()
            return deep + m.k_raw((a - lo) / (hi - lo), (b - lo) / (hi - lo)).to_dense()

    kcc = kern(xc, xc) + float(gp.lik.noise.detach()) * torch.eye(7, dtype=F64)
    ktc, ktt = kern(xt, xc), kern(xt, xt)
    want_mean = 0.3 + (ktc @ torch.linalg.solve(kcc, (yc - 0.3).unsqueeze(-1))).squeeze(-1)
    want_cov = ktt - ktc @ torch.linalg.solve(kcc, ktc.mT)
    torch.testing.assert_close(mean, want_mean, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(cov, want_cov, rtol=1e-7, atol=1e-9)
    # a full covariance: the off-diagonal correlations are those of the kernel, not zero
    assert float((cov - torch.diag_embed(cov.diagonal(dim1=-2, dim2=-1))).abs().max()) > 1e-3


def test_anp_predict_checks_the_number_of_draws():
    """``n_samples = 0`` returned empty draws (whose moments are NaN) and a negative one failed
    inside torch.randn; both are refused by name."""
    from bayesphys.probconserv import AttentiveNP

    torch.manual_seed(0)
    net = AttentiveNP((0.0, 0.0), (1.0, 1.0), hidden=8, heads=2)
    xc, yc, xt = torch.rand(1, 3, 2), torch.rand(1, 3), torch.rand(1, 4, 2)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="n_samples: expected an int >= 1"):
            net.predict(xc, yc, xt, bad)
    with pytest.raises(TypeError, match="n_samples: expected an int"):
        net.predict(xc, yc, xt, 2.5)
    mu, sig = net.predict(xc, yc, xt, 1)
    assert mu.shape == sig.shape == (1, 1, 4)


@pytest.mark.parametrize("hidden, heads", [(64, 4), (24, 3)])
def test_anp_attention_is_scaled_dot_product_attention(hidden, heads):
    """softmax(Q K^T / sqrt d) V per head, then the output projection; with sqrt d a power of
    two (d = 16) the queries' scaling gives the scores' numbers bit for bit."""
    from bayesphys.probconserv.anp import _Attention

    torch.manual_seed(0)
    att = _Attention(hidden, heads)
    q, k = torch.randn(2, 5, hidden), torch.randn(2, 7, hidden)
    v = torch.randn(2, 7, hidden)

    def heads_of(z):
        return z.reshape(2, -1, heads, hidden // heads).transpose(1, 2)

    qh, kh, vh = heads_of(att.q(q)), heads_of(att.k(k)), heads_of(att.v(v))
    d = hidden // heads
    w = torch.softmax(qh @ kh.transpose(-1, -2) / d**0.5, -1)
    want = att.o((w @ vh).transpose(1, 2).reshape(2, 5, hidden))
    got = att(q, k, v)
    if d == 16:
        assert torch.equal(got, want)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    sdpa = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh)
    torch.testing.assert_close(got, att.o(sdpa.transpose(1, 2).reshape(2, 5, hidden)))


def test_a_calibration_of_earlier_weights_warns_after_a_refit_and_a_load(tmp_path):
    # calibrate() then fit() again: the variance calibration of the old Step-1 weights was
    # applied to the new ones without a word (after a save and load too)
    m = ProbConserv("pme", hidden=8, n_samples=4, batch_size=2, seed=0)
    m.fit(steps=2, progress=False)
    test = make_dataset("pme", 2, seed=1)
    m.calibrate(n_functions=4, objective="ll")
    assert not stale_calibration_messages(lambda: m.posterior(test))
    m.fit(steps=1, progress=False)
    for call in (lambda: m.posterior(test), lambda: m.step1(test)):
        got = stale_calibration_messages(call)
        # the calibration's step, not the current one (which changed the message at each fit)
        assert len(got) == 1 and "at step 2" in got[0] and "trained since" in got[0]
        assert "calibrate(...) again" in got[0]
    back = ProbConserv.load(m.save(tmp_path / "m.pt"))
    assert stale_calibration_messages(lambda: back.posterior(test))
    back.calibrate(n_functions=4, objective="ll")  # recalibrated: quiet again
    assert not stale_calibration_messages(lambda: back.posterior(test))
    # saved right after calibrate: loaded quiet, and a fit after the load warns
    loaded = ProbConserv.load(back.save(tmp_path / "again.pt"))
    assert not stale_calibration_messages(lambda: loaded.posterior(test))
    loaded.fit(steps=1, progress=False)
    assert stale_calibration_messages(lambda: loaded.posterior(test))


@pytest.mark.parametrize("step1", ["anp", "gp"])
def test_fit_leaves_no_gradients_on_the_weights(step1):
    """The last step's gradients were kept on every weight after fit (memory nothing reads:
    each step clears them first); a fit ended by an error releases them too."""
    if step1 == "gp":
        m = ProbConserv("diffusion", step1="gp", gp_width=8, batch_size=4, seed=0)
    else:
        m = ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=0)
    assert m.fit(steps=3, progress=False).steps == 3
    assert all(p.grad is None for p in m.net.parameters())

    def stop(model, step):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        m.fit(steps=3, progress=False, callback=stop, callback_every=1)
    assert all(p.grad is None for p in m.net.parameters())


@pytest.mark.parametrize("step1", ["anp", "gp"])
def test_a_nan_gradient_of_a_finite_loss_is_a_divergence(step1):
    """A NaN gradient (e.g. sqrt at 0) at the third step of a finite loss: clipping spread it
    to every gradient, Adam to every weight, and the next step raised torch's "Expected
    parameter loc ... to satisfy the constraint Real()" (the GP: a NaN Cholesky) out of fit,
    leaving a model whose every later fit raised too. Now the fit stops there, reports the
    divergence and keeps finite weights; a next fit trains."""
    if step1 == "gp":
        m = ProbConserv("diffusion", step1="gp", gp_width=8, batch_size=4, seed=0)
    else:
        m = ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=0)
    p = next(m.net.parameters())
    calls = []

    def hook(g):
        calls.append(1)
        return g * math.nan if len(calls) == 3 else g

    h = p.register_hook(hook)
    res = m.fit(steps=6, progress=False)
    h.remove()
    assert not res.converged and res.steps == 2, res.message
    assert res.message.startswith("diverged at step 2") and "optimizer state" in res.message
    assert all(bool(torch.isfinite(q).all()) for q in m.net.parameters())
    assert m.fit(steps=2, progress=False).converged


@pytest.mark.parametrize("kind", ["nan-gradient", "nan-loss"])
@pytest.mark.parametrize("step1", ["anp", "gp"])
def test_steps_done_counts_the_updates_the_restored_weights_carry(step1, kind):
    """A divergence at this call's fourth step (a NaN gradient of a finite loss, or a NaN
    loss) restores the weights after its second update (those the third step started from:
    the last whose loss was finite), yet steps_done counted three steps (every recorded
    one), one more than those weights had taken. It counts the updates they carry, as Meta
    FM's fit does."""
    if step1 == "gp":
        m = ProbConserv("diffusion", step1="gp", gp_width=8, batch_size=4, seed=0)
    else:
        m = ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=0)
    m.fit(steps=1, progress=False)  # a second call counts on from the first
    p = next(m.net.parameters())
    calls, seen = [], []

    def hook(g):
        calls.append(1)
        return g * math.nan if len(calls) == 4 and kind == "nan-gradient" else g

    loss = m.net.loss

    def nan_loss(*args, **kwargs):
        out = loss(*args, **kwargs)
        if len(calls) == 3 and kind == "nan-loss":  # the fourth step's loss
            return (out[0] * math.nan, *out[1:]) if isinstance(out, tuple) else out * math.nan
        return out

    h = p.register_hook(hook)
    m.net.loss = nan_loss
    res = m.fit(
        steps=8,
        progress=False,
        callback=lambda model, step: seen.append((step, p.detach().clone())),
        callback_every=1,
    )
    del m.net.loss
    h.remove()
    assert res.message.startswith("diverged at step 3"), res.message  # 0-based, this call
    assert res.steps == 3 and [s for s, _ in seen] == [2, 3, 4]
    assert torch.equal(p.detach(), seen[1][1])  # after this call's second update
    assert m.steps_done == 1 + 2
    assert m.fit(steps=2, progress=False).converged and m.steps_done == 5


@pytest.mark.parametrize(
    ("step1", "name", "value"),
    [
        ("anp", "problem", "stefan"),
        ("anp", "step1", "gp"),
        ("anp", "hidden", 16),
        ("gp", "step1", "anp"),
        ("gp", "gp_width", 16),
    ],
)
def test_a_setting_read_at_construction_assigned_afterwards_is_refused_at_use(
    tmp_path, step1, name, value
):
    """config.problem assigned to a built model was ignored by fit and the posteriors (they
    read model.problem) and saved as if it applied; a network size was ignored by fit and
    the posteriors (refused only at save), config.step1 failed inside torch ("AttentiveNP.loss()
    missing 2 required positional arguments"). All are refused by name at every use."""
    if step1 == "gp":
        m = ProbConserv("diffusion", step1="gp", gp_width=8, batch_size=4, seed=0)
    else:
        m = ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=0)
    m.fit(steps=1, progress=False)
    test = make_dataset("diffusion", params=[2.0], seed=1)
    before = getattr(m.config, name)
    setattr(m.config, name, value)
    uses = {
        "fit": lambda: m.fit(steps=1, progress=False),
        "posterior": lambda: m.posterior(test),
        "step1": lambda: m.step1(test),
        "calibrate": lambda: m.calibrate(n_functions=4),
        "save": lambda: m.save(tmp_path / "m.pt"),
    }
    for where, use in uses.items():
        with pytest.raises(ValueError, match=f"{where}: config {name}={value!r} was assigned"):
            use()
    assert not (tmp_path / "m.pt").exists() and m.steps_done == 1
    setattr(m.config, name, before)  # set back: usable again
    back = ProbConserv.load(m.save(tmp_path / "m.pt"))
    assert torch.equal(back.posterior(test).mean, m.posterior(test).mean)


def test_a_meta_gp_ignores_an_assigned_anp_covariance():
    """covariance is the ANP's (the GP's constructor refuses it, and changing it on a GP
    model is allowed, as it has no effect); "mixture" assigned to a GP model sent its
    posterior into the ANP's latent draws: TypeError "MetaGP.predict() got an unexpected
    keyword argument 'generator'"."""
    m = ProbConserv("diffusion", step1="gp", gp_width=8, batch_size=4, seed=0)
    m.fit(steps=1, progress=False)
    test = make_dataset("diffusion", params=[2.0], seed=1)
    ref = m.posterior(test)
    m.config.covariance = "mixture"
    got = m.posterior(test)
    assert torch.equal(got.mean, ref.mean) and torch.equal(got.variance, ref.variance)


def test_no_callback_after_the_update_that_ends_the_fit():
    """The callback ran after the third step's update, whose NaN gradient (finite loss) had
    made the weights NaN, at the step the fit then reported as its divergence."""
    m = ProbConserv("diffusion", hidden=8, n_samples=4, batch_size=8, seed=0)
    p = next(m.net.parameters())
    res, seen = callbacks_around_a_nan_gradient(m.fit, p, 3, steps=6)
    assert res.message.startswith("diverged at step 2"), res.message
    assert seen == [(1, True), (2, True)]


def test_slice_scores_and_shock_position_refuse_what_they_cannot_score():
    from linear_operator.operators import DiagLinearOperator

    x = torch.linspace(0, 1, 4, dtype=F64)
    post = GaussianPosterior(
        torch.zeros(2, 4, dtype=F64),
        DiagLinearOperator(torch.ones(2, 4, dtype=F64)),
        event_shape=(4,),
    )
    with pytest.raises(TypeError, match=r"^post: expected a GaussianPosterior, received str$"):
        slice_scores("post", torch.zeros(2, 4), x, torch.zeros(2))
    field = GaussianPosterior(torch.zeros(2, 4, dtype=F64), torch.eye(8, dtype=F64))
    with pytest.raises(
        ValueError, match=r"^post: expected event shape \(nx,\), received \(2, 4\)$"
    ):
        slice_scores(field, torch.zeros(2, 4), x, torch.zeros(()))
    with pytest.raises(ValueError, match=r"^truth: expected shape \(2, 4\), received \(4,\)$"):
        slice_scores(post, torch.zeros(4), x, torch.zeros(2))
    with pytest.raises(
        ValueError, match=r"^draws: expected shape \[\*, nx\] with nx >= 1, received \(\)$"
    ):
        shock_position(torch.tensor(0.5), x)


def test_set_softc_weight_switches_the_penalty_of_either_model():
    anp = ProbConserv("pme", step1="anp", hidden=16, n_samples=4, seed=0)
    anp.set_softc_weight(0.5)
    assert anp.config.softc_weight == 0.5
    gp = ProbConserv("pme", step1="gp", seed=0)
    gp.set_softc_weight(0.5)  # SoftC-GP
    assert gp.config.softc_weight == 0.5
    gp.set_softc_weight(0)  # off again
    assert gp.config.softc_weight == 0.0
    with pytest.raises(ValueError, match=r"^weight: expected a finite"):
        anp.set_softc_weight(math.nan)


def test_fit_checks_its_data_and_the_softc_parameter_domain():
    m = ProbConserv("pme", step1="anp", hidden=16, n_samples=4, seed=0, softc_weight=0.1)
    with pytest.raises(TypeError, match=r"^data: expected GPMEData or None, received dict$"):
        m.fit({"params": torch.ones(2)}, steps=1, progress=False)
    data = make_dataset("pme", params=[2.0, 3.0], seed=0)
    data.params[1] = -1.0  # a porous-medium exponent m <= 0: no solution, no SoftC residual
    with pytest.raises(ValueError, match=r"^data\.params: expected m in \(0, inf\) for pme"):
        m.fit(data, steps=1, progress=False)


def test_a_checkpoint_without_the_problem_class_loads_its_registered_problem(tmp_path):
    """Checkpoints written before the problem's class was recorded rebuild the registered
    problem of the saved name, with the saved fields where there are any."""
    from dataclasses import replace

    m = ProbConserv("diffusion", hidden=8, n_samples=4, seed=0)
    m.fit(steps=1, progress=False)
    path = m.save(tmp_path / "new.pt")
    test = make_dataset("diffusion", params=[2.0], seed=1)
    for keep_fields in (True, False):
        ck = torch.load(path, weights_only=False)
        del ck["state"]["problem_class"]
        if not keep_fields:
            ck["state"]["problem"] = None
        torch.save(ck, tmp_path / "old.pt")
        back = ProbConserv.load(tmp_path / "old.pt")
        assert back.problem == m.problem
        assert torch.equal(back.posterior(test).mean, m.posterior(test).mean)
    wide = replace(m.problem, train_range=(0.5, 6.0))
    path = ProbConserv(wide, hidden=8, n_samples=4, seed=0).save(tmp_path / "wide.pt")
    ck = torch.load(path, weights_only=False)
    del ck["state"]["problem_class"]
    torch.save(ck, tmp_path / "old_wide.pt")
    assert ProbConserv.load(tmp_path / "old_wide.pt").problem == wide


def test_calibrate_needs_an_analog_size():
    m = ProbConserv("pme", hidden=16, n_samples=4, seed=0)
    with pytest.raises(
        ValueError, match=r"^neighbours: expected at least one analog size \(0: all errors\)$"
    ):
        m.calibrate(n_functions=4, neighbours=())


def test_attention_width_must_split_into_the_heads():
    from bayesphys.probconserv import AttentiveNP

    with pytest.raises(ValueError, match=r"^hidden: expected a multiple of heads=4, received 10$"):
        AttentiveNP((0.0, 0.0), (1.0, 1.0), hidden=10, heads=4)
    assert AttentiveNP((0.0, 0.0), (1.0, 1.0), hidden=12, heads=4).det_self[0] is not None


def test_a_calibration_reset_by_hand_is_not_reported_as_stale():
    """After calibrate() and a refit, resetting the calibration (var_scale = 1, no hybrid)
    leaves none in force: nothing stale to warn about."""
    m = ProbConserv("pme", hidden=8, n_samples=4, batch_size=2, seed=0)
    m.fit(steps=2, progress=False)
    test = make_dataset("pme", 2, seed=1)
    m.calibrate(n_functions=4, objective="ll")
    m.fit(steps=1, progress=False)
    assert stale_calibration_messages(lambda: m.posterior(test))
    m.var_scale = 1.0
    assert m.calibration is None and not stale_calibration_messages(lambda: m.posterior(test))
