"""Input checks of the shared core: every bad argument fails early with an error naming it.

Each case used to be accepted silently (a wrong answer), or to fail later with an error that
did not say which argument was wrong (a raw torch, pickle, xarray or argparse traceback).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from linear_operator.operators import DenseLinearOperator, DiagLinearOperator

from bayesphys import (
    DivergenceGuard,
    GaussianPosterior,
    SamplePosterior,
    check_finite,
    load_checkpoint,
    optimize,
    save_checkpoint,
    seed_everything,
)
from bayesphys._device import as_tensor, resolve_device
from bayesphys._linalg import kron_matvec, pcg, psd_cholesky
from bayesphys._process_state import make_generator
from bayesphys.inference_data import (
    build_inference_data,
    group_dataset,
    hdi_bounds,
    load_netcdf,
    save_netcdf,
)
from bayesphys.metrics import (
    calibration_curve,
    conservation_error,
    crps_gaussian,
    crps_samples,
    gaussian_nll,
    interval_coverage,
    mmd,
    mse,
    relative_l2,
    wasserstein,
)

F64 = torch.float64


def _gauss(n: int = 3) -> GaussianPosterior:
    return GaussianPosterior(torch.zeros(n, dtype=F64), torch.eye(n, dtype=F64))


def _samples() -> SamplePosterior:
    return SamplePosterior(
        torch.randn(2, 10, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    )


# -- Posterior methods -----------------------------------------------------------------------


@pytest.mark.parametrize("make", [_gauss, _samples])
@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda p: p.sample(True), TypeError, "sample_shape: expected an int, a torch.Size"),
        (lambda p: p.sample((True, 2)), TypeError, "sample_shape"),
        (lambda p: p.sample(torch.tensor([True, False])), TypeError, "sample_shape"),
        (lambda p: p.sample((np.True_, 2)), TypeError, "sample_shape"),
        (lambda p: p.sample((2,), generator=3), TypeError, "generator: expected a torch.Generator"),
        (lambda p: p.quantile("a"), TypeError, "q: expected a probability"),
        (lambda p: p.quantile(None), TypeError, "q: expected a probability"),
        (lambda p: p.quantile(True), TypeError, "q: expected a probability"),
        (lambda p: p.quantile(0.5 + 0j), TypeError, "q: expected a probability"),
        (lambda p: p.interval("0.9"), TypeError, "level: expected a real number"),
        (lambda p: p.interval(None), TypeError, "level: expected a real number"),
        (lambda p: p.interval(torch.tensor([0.5, 0.9])), TypeError, "level"),
        (lambda p: p.to_inference_data(seed=1.5), TypeError, "seed: expected an int"),
        (lambda p: p.to_inference_data(seed=True), TypeError, "seed: expected an int"),
        (lambda p: p.to_inference_data(name=""), TypeError, "name: expected a non-empty string"),
        (lambda p: p.to_inference_data(name=3), TypeError, "name: expected a non-empty string"),
        (lambda p: p.to_inference_data(dims=[1]), TypeError, "dims: expected non-empty strings"),
        (lambda p: p.to_inference_data(dims=["chain"]), ValueError, "dims: 'chain' and 'draw'"),
        (lambda p: p.to_inference_data(params=[1]), TypeError, "params: expected a mapping"),
        (lambda p: p.to_inference_data(observed=[1]), TypeError, "observed: expected a mapping"),
        (lambda p: p.to_inference_data(coords=[1]), TypeError, "coords: expected a mapping"),
        (
            lambda p: p.to_inference_data(params={"u": np.zeros((1, 1000))}),
            ValueError,
            "params: 'u' is the name of the exported field",
        ),
    ],
)
def test_posterior_methods_refuse_bad_arguments(make, call, error, match):
    with pytest.raises(error, match=match):
        call(make())


@pytest.mark.parametrize("make", [_gauss, _samples])
def test_a_numpy_int_is_a_sample_shape(make):
    # np.int64(4) (e.g. from arr.shape arithmetic) was refused, though (np.int64(4),) was not
    post = make()
    expected = post.sample((4,), seed=0)
    for n in (np.int64(4), np.int32(4), (np.int64(4),), np.array([4])):
        assert torch.equal(post.sample(n, seed=0), expected)


def test_levels_given_as_numpy_or_0d_tensor_still_work():
    g = _gauss()
    lo, _ = g.interval(0.9)
    assert torch.equal(g.interval(np.float64(0.9))[0], lo)
    assert torch.equal(g.interval(torch.tensor(0.9, dtype=F64))[0], lo)


def test_gaussian_posterior_constructor_checks():
    m, eye = torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64)
    with pytest.raises(TypeError, match="event_shape: expected an int, a torch.Size"):
        GaussianPosterior(m, eye, event_shape=(3.0,))
    with pytest.raises(TypeError, match="event_shape: expected an int, a torch.Size"):
        GaussianPosterior(m, eye, event_shape="abc")
    with pytest.raises(ValueError, match="event_shape: expected non-negative"):
        GaussianPosterior(m, eye, event_shape=(-3,))
    assert GaussianPosterior(m, eye, event_shape=3).event_shape == (3,)  # an int is one dim
    with pytest.raises(TypeError, match="validate: expected True or False"):
        GaussianPosterior(m, eye, validate="no")
    with pytest.raises(TypeError, match="root: expected a callable"):
        GaussianPosterior(m, eye, root=3, root_dim=3)
    with pytest.raises(ValueError, match="root_dim: expected an int >= 1"):
        GaussianPosterior(m, eye, root=lambda z: z, root_dim=-1)
    with pytest.raises(TypeError, match="root_dim: expected an int"):
        GaussianPosterior(m, eye, root=lambda z: z, root_dim=2.5)
    with pytest.raises(ValueError, match="root_dim: only used with a custom root"):
        GaussianPosterior(m, eye, root_dim=4)  # used to be ignored silently
    with pytest.raises(TypeError, match="covariance: expected a real tensor"):
        GaussianPosterior(m, eye.to(torch.complex128))  # the imaginary part was dropped
    bad_root = GaussianPosterior(m, eye, root=lambda z: z[..., :2], root_dim=3)
    with pytest.raises(ValueError, match=r"root: expected draws \[..., 3\]"):
        bad_root.sample((2,))


def test_structured_covariance_takes_the_means_dtype():
    # a float32 dense operator with a float64 mean used to fail at the first draw
    # ("expected scalar type Float but found Double"), as a float32 tensor never did
    m = torch.zeros(3, dtype=F64)
    cov32 = torch.eye(3) * 2.0
    a = GaussianPosterior(m, DenseLinearOperator(cov32))
    b = GaussianPosterior(m, cov32)  # a tensor covariance: converted to the mean's dtype
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert a.covariance.dtype == F64
    assert torch.equal(a.sample((4,), generator=gen()), b.sample((4,), generator=gen()))
    assert torch.equal(a.log_prob(torch.ones(3, dtype=F64)), b.log_prob(torch.ones(3, dtype=F64)))
    # a diagonal operator takes it too (it was kept in its own dtype: float64 variances and
    # draws from a posterior whose dtype said float32)
    d = GaussianPosterior(m, DiagLinearOperator(torch.ones(3)))
    assert d.covariance.dtype == F64
    p32 = GaussianPosterior(torch.zeros(3), DiagLinearOperator(torch.ones(3, dtype=F64) * 2))
    assert p32.dtype == torch.float32
    assert p32.variance.dtype == torch.float32 and p32.stddev.dtype == torch.float32
    assert p32.sample((2,)).dtype == torch.float32
    assert torch.equal(p32.variance, torch.full((3,), 2.0))


def test_gaussian_variance_is_clamped_at_zero():
    """An exact-limit update leaves round-off negatives on the diagonal (-9e-16 was seen);
    ``.variance`` returned them while ``stddev`` / ``interval`` clamped."""
    from bayesphys.probconserv import conservation_update

    mean = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    cov = torch.tensor([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 3.0]], dtype=F64)
    prior = GaussianPosterior(mean, cov)
    g = torch.ones(1, 3, dtype=F64)
    post = conservation_update(prior, g, torch.tensor([3.0], dtype=F64))
    raw = post.covariance.diagonal()  # one constrained direction: round-off about 0 possible
    torch.testing.assert_close(post.variance, raw.clamp_min(0))
    # the clamp is what a raw negative diagonal shows (a structured one skips validation)
    neg = GaussianPosterior(
        torch.zeros(2, dtype=F64),
        torch.tensor([[1.0, 0.0], [0.0, -1e-15]], dtype=F64),
        validate=False,
    )
    assert torch.equal(neg.variance, torch.tensor([1.0, 0.0], dtype=F64))


def test_gaussian_log_prob_checks_and_broadcasts_batch_dims():
    mean = torch.zeros(2, 3, dtype=F64)
    post = GaussianPosterior(
        mean, DiagLinearOperator(torch.ones(2, 3, dtype=F64)), event_shape=(3,)
    )
    v = torch.randn(3, dtype=F64)
    # a value without the batch dims is broadcast over them (it used to fail in torch)
    assert torch.equal(post.log_prob(v), post.log_prob(v.expand(2, 3)))
    assert post.log_prob(torch.zeros(5, 1, 3, dtype=F64)).shape == (5, 2)
    with pytest.raises(ValueError, match=r"value: expected shape \[\*, \*batch, \*event\]"):
        post.log_prob(torch.zeros(4, 3, dtype=F64))
    with pytest.raises(TypeError, match="value: expected a torch.Tensor"):
        _gauss().log_prob([0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="value: expected finite values"):
        _gauss().log_prob(torch.tensor([0.0, math.nan, 0.0], dtype=F64))  # returned nan


def test_rsample_base_samples_checks():
    g = _gauss()
    with pytest.raises(TypeError, match="base_samples: expected a torch.Tensor"):
        g.rsample((2,), base_samples=[0.0] * 3)
    # the sample shape used to be ignored: 2 draws came back for sample_shape (5,)
    with pytest.raises(
        ValueError, match=r"base_samples: expected leading dims sample_shape=\(5,\)"
    ):
        g.rsample((5,), base_samples=torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="base_samples: expected finite values"):
        g.rsample(base_samples=torch.full((1, 3), math.nan, dtype=F64))
    z = torch.randn(4, 3, dtype=F64)
    assert torch.equal(g.rsample(base_samples=z), g.rsample((4,), base_samples=z))


def test_sample_posterior_checks():
    d = torch.randn(2, 10, 3, dtype=F64)
    with pytest.raises(TypeError, match="chains: expected True or False"):
        SamplePosterior(d, chains="no")  # a truthy string meant chains=True
    with pytest.raises(TypeError, match="draws: quantiles need float32 or float64"):
        SamplePosterior(d.half()).quantile(0.5)
    empty = SamplePosterior(torch.zeros(2, 5, 0, dtype=F64))
    assert empty.quantile([0.1, 0.9]).shape == (2, 0)


# -- checkpoints and the optimisation loop ---------------------------------------------------


def test_load_checkpoint_names_the_path_of_an_unreadable_file(tmp_path):
    good = save_checkpoint(
        tmp_path / "a.pt", kind="gp", config={"a": 1}, state={"w": torch.ones(2)}
    )
    raw = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "empty.pt").write_bytes(b"")
    path = tmp_path / "trunc.pt"  # a torch file cut short: corrupt or truncated
    with pytest.raises(ValueError, match=f"path: cannot load {path} as a 'gp' checkpoint"):
        load_checkpoint(path, kind="gp")
    for name in ("garbage.pt", "empty.pt"):  # not torch files at all
        path = tmp_path / name
        with pytest.raises(ValueError, match=f"path: {path} is not a bayesphys checkpoint"):
            load_checkpoint(path, kind="gp")
    with pytest.raises(ValueError, match=r"path: expected a 'np' checkpoint, received 'gp'"):
        load_checkpoint(good, kind="np")  # a checkpoint of another kind
    torch.save({"kind": "gp", "config": {}}, tmp_path / "nostate.pt")
    with pytest.raises(ValueError, match=r"path: the 'gp' checkpoint at .* lacks \['state'\]"):
        load_checkpoint(tmp_path / "nostate.pt", kind="gp")
    with pytest.raises(IsADirectoryError, match="path: expected a checkpoint file"):
        load_checkpoint(tmp_path, kind="gp")
    with pytest.raises(TypeError, match="kind: expected a non-empty string"):
        load_checkpoint(good, kind=None)
    with pytest.raises(ValueError, match="map_location: expected 'auto', 'cpu'"):
        load_checkpoint(good, kind="gp", map_location="tpu")
    assert load_checkpoint(good, kind="gp")["config"] == {"a": 1}


def test_save_checkpoint_checks_and_never_leaves_a_partial_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", kind="gp", config={}, state={"w": torch.ones(2)})
    before = path.read_bytes()
    with pytest.raises(AttributeError):  # an unpicklable state
        save_checkpoint(path, kind="gp", config={}, state={"f": lambda: 1})
    assert path.read_bytes() == before  # the previous checkpoint survives, not a torn file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary left
    with pytest.raises(TypeError, match="kind: expected a non-empty string"):
        save_checkpoint(tmp_path / "b.pt", kind=3, config={}, state={})
    with pytest.raises(TypeError, match="config: expected a dict"):
        save_checkpoint(tmp_path / "b.pt", kind="gp", config=[1], state={})
    with pytest.raises(IsADirectoryError, match="path: expected a file path"):
        save_checkpoint(tmp_path, kind="gp", config={}, state={})


def test_optimize_checks_the_step_and_its_loss():
    with pytest.raises(TypeError, match="step: expected a callable"):
        optimize(3, steps=2, progress=False)
    for loss, error in (("a", TypeError), (None, TypeError), (torch.ones(2), ValueError)):
        with pytest.raises(error, match="step: expected a scalar loss"):
            optimize(lambda loss=loss: loss, steps=2, progress=False)
    with pytest.raises(ValueError, match="loss: expected a scalar loss"):
        DivergenceGuard([torch.ones(2)]).admit(torch.ones(2))
    with pytest.raises(TypeError, match="params: expected tensors"):
        optimize(lambda: 1.0, steps=1, params=[1.0], progress=False)
    for bad in (3, "w"):  # a number used to fail with "'int' object is not iterable"
        with pytest.raises(TypeError, match="params: expected a tensor, an iterable"):
            optimize(lambda: 1.0, steps=1, params=bad, progress=False)


def test_a_single_tensor_is_accepted_as_params():
    # a 0-d parameter used to fail with "iteration over a 0-d tensor"
    x = torch.nn.Parameter(torch.tensor(3.0, dtype=F64))
    vals = iter([1.0, math.nan])

    def step():
        loss = next(vals)
        with torch.no_grad():
            x.add_(1.0)
        return loss

    res = optimize(step, steps=2, params=x, progress=False)
    # the loss 1.0 was that of x = 3 (before its update): the state restored
    assert "diverged" in res.message and float(x.detach()) == 3.0
    assert DivergenceGuard(x).steps == 0


# -- devices, seeds, linear algebra ----------------------------------------------------------


def test_seed_and_generator_checks():
    with pytest.raises(ValueError, match=r"seed: expected an int in \[-2\*\*63"):
        seed_everything(2**70)  # "Overflow when unpacking long long"
    for bad in (True, 1.5, "a"):
        with pytest.raises(TypeError, match="seed: expected an int"):
            make_generator(bad)  # True and 1.5 used to seed silently (with 1)
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu'"):
        make_generator(1, "tpu")
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu'"):
        as_tensor("x", [1.0], device="tpu")
    with pytest.raises(TypeError, match="x: expected numbers"):
        check_finite("x", "abc")
    a, b = make_generator(7), make_generator(7)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))


def test_linalg_argument_checks():
    with pytest.raises(ValueError, match="covariance: expected a square matrix"):
        psd_cholesky(torch.ones(3))
    with pytest.raises(ValueError, match="max_tries: expected an int >= 1"):
        psd_cholesky(-torch.eye(2, dtype=F64), max_tries=0)  # UnboundLocalError before
    with pytest.raises(ValueError, match="covariance: expected finite values"):
        psd_cholesky(torch.full((2, 2), math.nan, dtype=F64))
    mv = lambda v: 2 * v  # noqa: E731
    b = torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match="tol: expected a number >= 0.0"):
        pcg(mv, b, tol=-1.0)  # ran to maxiter silently
    with pytest.raises(ValueError, match="tol: expected a finite number"):
        pcg(mv, b, tol=math.nan)
    with pytest.raises(ValueError, match="maxiter: expected an int >= 0"):
        pcg(mv, b, maxiter=-1)  # returned x = 0 silently
    with pytest.raises(TypeError, match="maxiter: expected an int"):
        pcg(mv, b, maxiter=2.5)
    with pytest.raises(ValueError, match=r"x0: expected the shape of b \(3,\)"):
        pcg(mv, b, x0=torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match=r"b: expected \[n, k\]"):
        pcg(mv, b, columns=True)
    with pytest.raises(TypeError, match="b: expected a floating-point tensor"):
        pcg(mv, torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="z: expected last dim 6"):
        kron_matvec([torch.eye(2), torch.eye(3)], torch.ones(5))


# -- ArviZ export ----------------------------------------------------------------------------


def test_build_inference_data_checks_names_dims_and_groups():
    a = np.zeros((1, 5, 3))
    with pytest.raises(TypeError, match="posterior: expected a mapping"):
        build_inference_data(posterior=[1])
    with pytest.raises(ValueError, match=r"dims: expected names of variables \['a'\]"):
        build_inference_data(posterior={"a": a}, dims={"b": ["x"]})  # a typo was ignored
    with pytest.raises(ValueError, match=r"dims\['a'\]: expected distinct names"):
        build_inference_data(posterior={"a": np.zeros((1, 5, 3, 3))}, dims={"a": ["x", "x"]})
    with pytest.raises(ValueError, match=r"dims\['a'\]: 'chain' and 'draw'"):
        build_inference_data(posterior={"a": a}, dims={"a": ["chain"]})
    with pytest.raises(ValueError, match="dims: dimension 'x' of posterior.b has length 4"):
        build_inference_data(
            posterior={"a": a, "b": np.zeros((1, 5, 4))}, dims={"a": ["x"], "b": ["x"]}
        )
    with pytest.raises(ValueError, match=r"posterior.b: expected leading \(chain, draw\)"):
        build_inference_data(posterior={"a": a, "b": np.zeros((2, 5, 3))})
    with pytest.raises(ValueError, match="extra_groups: 'posterior' is a standard group"):
        build_inference_data(posterior={"a": a}, extra_groups={"posterior": {"b": a}})
    with pytest.raises(TypeError, match="posterior: expected non-empty strings as variable"):
        build_inference_data(posterior={3: a})
    # a string is one dim name (it used to be split into characters)
    with pytest.raises(ValueError, match=r"dims\['a'\]: expected 2 names"):
        build_inference_data(posterior={"a": np.zeros((1, 5, 2, 3))}, dims={"a": "xy"})
    idata = build_inference_data(posterior={"a": a}, dims={"a": "xy"})
    assert group_dataset(idata, "posterior")["a"].dims == ("chain", "draw", "xy")


def test_export_helpers_check_their_arguments(tmp_path):
    idata = build_inference_data(posterior={"a": np.random.default_rng(0).random((1, 50))})
    with pytest.raises(ValueError, match=r"prob: expected a probability in \(0, 1\]"):
        hdi_bounds(idata, "a", prob=1.5)
    with pytest.raises(KeyError, match="var_name: 'b' is not a posterior variable"):
        hdi_bounds(idata, "b")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(ValueError, match=f"path: {bad} is not a readable netCDF"):
        load_netcdf(bad)
    with pytest.raises(IsADirectoryError, match="path: expected a file path"):
        save_netcdf(idata, tmp_path)
    with pytest.raises(TypeError, match="idata: expected InferenceData"):
        save_netcdf({"a": 1}, tmp_path / "x.nc")


def test_a_single_dims_string_is_one_name():
    post = _gauss(3)
    idata = post.to_inference_data(dims="x", num_samples=4, seed=0)
    assert group_dataset(idata, "posterior")["u"].dims == ("chain", "draw", "x")


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_refuse_silent_broadcasting_and_nan():
    a, b = torch.randn(5, dtype=F64), torch.randn(5, dtype=F64)
    sd = torch.ones(5, dtype=F64)
    # mean [5, 1] against y [5] used to average a [5, 5] outer grid
    with pytest.raises(ValueError, match="mean/y: expected equal shapes"):
        crps_gaussian(a[:, None], sd, b)
    with pytest.raises(ValueError, match="std: expected a shape broadcasting"):
        crps_gaussian(a, sd[:, None], b)
    with pytest.raises(ValueError, match="y: expected finite values"):
        crps_gaussian(a, sd, b * math.nan)
    with pytest.raises(ValueError, match="var: expected strictly positive variances"):
        gaussian_nll(a, sd * math.nan, b)  # returned nan
    with pytest.raises(ValueError, match="y: expected no NaN entries"):
        interval_coverage(a - 1, a + 1, b * math.nan)  # counted as outside
    with pytest.raises(ValueError, match="samples: expected at least one draw"):
        crps_samples(torch.zeros(0, 5, dtype=F64), b)  # returned nan
    with pytest.raises(ValueError, match="samples: expected finite values"):
        crps_samples(torch.full((3, 5), math.nan, dtype=F64), b)
    # a scalar mean or std still broadcasts to y, as before
    assert crps_gaussian(0.0, 1.0, b).shape == ()


def test_metrics_refuse_non_tensors_and_integer_inputs():
    x = torch.ones(3, dtype=F64)
    with pytest.raises(TypeError, match="pred: expected a torch.Tensor"):
        relative_l2(np.ones(3), x)
    with pytest.raises(TypeError, match="pred: expected a floating-point tensor"):
        relative_l2(torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long))
    with pytest.raises(TypeError, match="truth: expected a floating-point tensor"):
        mse(x, torch.ones(3, dtype=torch.long))
    with pytest.raises(TypeError, match="y: expected a torch.Tensor"):
        gaussian_nll(x, 1.0, [0.0] * 3)
    with pytest.raises(TypeError, match="samples: expected a floating-point tensor"):
        crps_samples(torch.ones(4, 3, dtype=torch.long), x)


def test_calibration_curve_checks():
    s, y = torch.randn(50, 5, dtype=F64), torch.zeros(5, dtype=F64)
    with pytest.raises(TypeError, match="levels: expected a sequence of probabilities"):
        calibration_curve(s, y, levels=0.9)
    for single in (np.array(0.9), torch.tensor(0.9)):  # "iteration over a 0-d array"
        with pytest.raises(TypeError, match="levels: expected a sequence of probabilities"):
            calibration_curve(s, y, levels=single)
    with pytest.raises(ValueError, match="levels: expected at least one probability"):
        calibration_curve(s, y, levels=[])
    with pytest.raises(TypeError, match=r"levels\[0\]: expected a real number"):
        calibration_curve(s, y, levels=["0.9"])
    with pytest.raises(TypeError, match="posterior_or_samples: expected a Posterior or a tensor"):
        calibration_curve(s.numpy(), y)
    with pytest.raises(TypeError, match="posterior_or_samples: expected a floating-point"):
        calibration_curve(torch.ones(10, 5, dtype=torch.long), y)
    with pytest.raises(ValueError, match="posterior_or_samples: expected draws .* S >= 2"):
        calibration_curve(s[:1], y)  # one draw: every interval has width 0
    with pytest.raises(ValueError, match=r"y: expected shape \(5,\), received \(4,\)"):
        calibration_curve(s, torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match=r"y: expected shape \(3,\), received \(4,\)"):
        calibration_curve(_gauss(3), torch.zeros(4, dtype=F64))


def test_conservation_error_checks_target_weights_and_dtype():
    field = torch.randn(3, 5, dtype=F64)
    # target [3, 1] against one constraint per function [3] used to give a [3, 3] grid
    with pytest.raises(ValueError, match=r"target: expected a shape broadcasting to \(3,\)"):
        conservation_error(field, torch.ones(5, dtype=F64), torch.ones(3, 1, dtype=F64))
    with pytest.raises(ValueError, match=r"weights: expected \[n\] or \[m, n\]"):
        conservation_error(field, torch.ones(1, 2, 5, dtype=F64), torch.ones(2, dtype=F64))
    with pytest.raises(TypeError, match="weights: expected the field's dtype"):
        conservation_error(field, torch.ones(5), torch.ones(3, dtype=F64))
    with pytest.raises(TypeError, match="field: expected a torch.Tensor"):
        conservation_error([1.0, 2.0], torch.ones(2, dtype=F64), 3.0)
    ok = conservation_error(field, torch.ones(3, 5, dtype=F64), torch.ones(3, 1, dtype=F64))
    assert ok.shape == (3, 3)


def test_mmd_and_wasserstein_check_their_settings():
    x, y = torch.randn(5, 2), torch.randn(6, 2)
    for bw, error, match in (
        ((0.0,), ValueError, r"bandwidths\[0\]: expected a number > 0.0"),  # gave nan
        ((-1.0,), ValueError, r"bandwidths\[0\]: expected a number > 0.0"),  # gave garbage
        ((math.nan,), ValueError, r"bandwidths\[0\]: expected a finite number"),
        ((), ValueError, "bandwidths: expected at least one kernel scale"),
        (1.0, TypeError, "bandwidths: expected a sequence"),
    ):
        with pytest.raises(error, match=match):
            mmd(x, y, bandwidths=bw)
    with pytest.raises(TypeError, match="x: expected a floating-point point cloud"):
        mmd(torch.ones(5, 2, dtype=torch.long), torch.ones(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="p: expected 1 or 2, received True"):
        wasserstein(x, y, p=True)


def test_load_checkpoint_reads_map_location_auto(tmp_path):
    # "auto" passed the device check and then went to torch.load as a raw string, which
    # reported a healthy file as corrupt
    path = save_checkpoint(tmp_path / "c.pt", kind="k", config={"a": 1}, state={"w": torch.ones(2)})
    ck = load_checkpoint(path, kind="k", map_location="auto")
    assert ck["state"]["w"].device.type == resolve_device("auto").type  # CUDA where there is one
    assert torch.equal(ck["state"]["w"].cpu(), torch.ones(2))
