"""Edges of the shared core's public API met from the user's side: casts that would wrap,
arguments of the wrong type, scores of complex values, empty batches."""

from fractions import Fraction

import pytest
import torch

from bayesphys import GaussianPosterior, SamplePosterior, as_tensor, build_inference_data
from bayesphys.metrics import (
    calibration_curve,
    conservation_error,
    crps_gaussian,
    gaussian_nll,
    interval_coverage,
    mmd,
    mse,
    relative_l2,
    wasserstein,
)


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (torch.tensor([-1]), torch.uint8),  # gave 255
        ([300], torch.int8),  # gave 44
        (torch.tensor([2**40]), torch.int32),
    ],
)
def test_as_tensor_refuses_integer_casts_that_would_wrap(value, dtype):
    with pytest.raises(ValueError, match=r"^idx: expected values in .* \(the cast would wrap"):
        as_tensor("idx", value, dtype=dtype)


def test_as_tensor_keeps_integers_that_fit():
    assert as_tensor("idx", torch.tensor([0, 255]), dtype=torch.uint8).tolist() == [0, 255]
    assert as_tensor("idx", [2, 0], dtype=torch.bool).tolist() == [True, False]


def test_as_tensor_names_its_own_bad_options():
    with pytest.raises(TypeError, match=r"^x: expected real values"):
        as_tensor("x", [1j], dtype="float32")  # an AttributeError on the str
    with pytest.raises(TypeError, match=r"^dtype: expected torch.dtype, str or None, received int"):
        as_tensor("x", [1.0], dtype=3)
    with pytest.raises(TypeError, match=r"^ndim: expected an int"):
        as_tensor("x", [1.0], ndim="1")  # refused every tensor, "expected 1 dimensions"
    for flag in ("finite", "real"):
        with pytest.raises(TypeError, match=rf"^{flag}: expected True or False"):
            as_tensor("x", [1.0], **{flag: "no"})  # a truthy string switched the check on


C = torch.complex128


@pytest.mark.parametrize(
    ("metric", "args", "name"),
    [
        # gave a complex "NLL" (1.86+0j): (y - mean)**2 of complex values is not |y - mean|^2
        (gaussian_nll, (torch.ones(3, dtype=C), torch.ones(3), torch.zeros(3, dtype=C)), "mean"),
        (gaussian_nll, (torch.ones(3), torch.ones(3, dtype=C), torch.zeros(3)), "var"),
        (crps_gaussian, (torch.ones(3, dtype=C), torch.ones(3), torch.zeros(3, dtype=C)), "mean"),
        (interval_coverage, (-torch.ones(3, dtype=C), torch.ones(3), torch.zeros(3)), "lower"),
        (calibration_curve, (torch.randn(20, 3, dtype=C), torch.zeros(3)), "posterior_or_samples"),
        (calibration_curve, (torch.randn(20, 3), torch.zeros(3, dtype=C)), "y"),
    ],
    ids=["nll-mean", "nll-var", "crps", "coverage", "calibration-draws", "calibration-y"],
)
def test_scores_of_a_real_law_refuse_complex_values_by_name(metric, args, name):
    with pytest.raises(TypeError, match=rf"^{name}: expected real values"):
        metric(*args)


def test_wasserstein_refuses_complex_weights():
    x, y = torch.randn(4, 2), torch.randn(5, 2)
    with pytest.raises(TypeError, match=r"^weights_x: expected real values"):
        wasserstein(x, y, weights_x=torch.ones(4, dtype=torch.complex64))  # dropped 1j


@pytest.mark.parametrize("structure", ["diag", "dense", "low-rank"])
def test_gaussian_log_prob_of_an_empty_batch_of_values_is_empty(structure):
    from linear_operator.operators import (
        DiagLinearOperator,
        LowRankRootAddedDiagLinearOperator,
        LowRankRootLinearOperator,
    )

    f = torch.float64
    cov = {
        "diag": lambda: DiagLinearOperator(torch.ones(2, 3, dtype=f)),
        "dense": lambda: 2 * torch.eye(3, dtype=f).expand(2, 3, 3),
        "low-rank": lambda: LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(torch.ones(2, 3, 1, dtype=f)),
            DiagLinearOperator(torch.ones(2, 3, dtype=f)),
        ),
    }[structure]()
    post = GaussianPosterior(torch.zeros(2, 3, dtype=f), cov, event_shape=(3,))
    # [*, *batch, *event] -> [*, *batch]: a reshape error for an empty leading dim
    assert post.log_prob(torch.zeros(0, 2, 3, dtype=f)).shape == (0, 2)
    assert post.log_prob(torch.zeros(4, 0, 1, 3, dtype=f)).shape == (4, 0, 2)
    one = post.log_prob(torch.zeros(2, 3, dtype=f))
    assert one.shape == (2,) and bool(torch.isfinite(one).all())


@pytest.mark.parametrize("where", [0, 1.5, ["cpu"]])
def test_load_checkpoint_names_a_map_location_of_the_wrong_type(tmp_path, where):
    from bayesphys import load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path / "c.pt", kind="k", config={}, state={"w": torch.ones(2)})
    # was a ValueError calling the (sound) file corrupt: "'int' object is not callable"
    with pytest.raises(TypeError, match=r"^map_location: expected a device string"):
        load_checkpoint(path, kind="k", map_location=where)
    ck = load_checkpoint(path, kind="k", map_location=lambda storage, loc: storage)
    assert ck["state"]["w"].tolist() == [1.0, 1.0]
    assert load_checkpoint(path, kind="k", map_location={"cpu": "cpu"})["config"] == {}


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), Fraction(10**400, 3)], ids=["int", "-int", "Fraction"]
)
def test_check_real_names_a_number_beyond_floats_range(value):
    from bayesphys import check_real

    # float(value) raised OverflowError ("int too large to convert to float")
    with pytest.raises(ValueError, match=r"^lr: expected a finite number, received .* range"):
        check_real("lr", value, minimum=0.0)
    assert check_real("lr", 10**300) == 1e300


def test_resolve_dtype_checks_its_default():
    from bayesphys import resolve_dtype

    assert resolve_dtype(None, default="float32") is torch.float32  # was the str "float32"
    assert resolve_dtype("float16", default=torch.int64) is torch.float16
    with pytest.raises(ValueError, match=r"^default: expected a floating dtype"):
        resolve_dtype(None, default=torch.int64)  # was torch.int64, returned as it was
    with pytest.raises(TypeError, match=r"^default: expected torch.dtype, str or None"):
        resolve_dtype(None, default=3)


def _meta(*shape):
    return torch.zeros(*shape, device="meta")


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: relative_l2(_meta(3), torch.ones(3)), "pred"),
        (lambda: mse(torch.ones(3), _meta(3)), "truth"),
        (lambda: gaussian_nll(torch.zeros(3), _meta(3), torch.zeros(3)), "var"),
        (lambda: crps_gaussian(torch.zeros(3), _meta(3), torch.zeros(3)), "std"),
        (lambda: interval_coverage(_meta(3), torch.ones(3), torch.zeros(3)), "lower"),
        (lambda: interval_coverage(-torch.ones(3), _meta(3), torch.zeros(3)), "upper"),
        (lambda: calibration_curve(torch.randn(20, 3), _meta(3)), "y"),
        (lambda: conservation_error(torch.ones(2, 3), _meta(3), 0.0), "weights"),
        (lambda: conservation_error(torch.ones(2, 3), torch.ones(3), _meta(2)), "target"),
    ],
    ids=["rel_l2", "mse", "nll", "crps", "cov-lower", "cov-upper", "calib", "cons-w", "cons-b"],
)
def test_metrics_name_a_meta_tensor(call, name):
    # failed inside torch: "Tensor.item() cannot be called on meta tensors", "Cannot copy out
    # of meta tensor; no data!"
    with pytest.raises(
        ValueError, match=rf"^{name}: expected values, received a tensor on the 'meta'"
    ):
        call()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: build_inference_data(posterior={"a": _meta(1, 5)}), r"posterior\.a"),
        (lambda: build_inference_data(posterior={"a": [[1.0, 2.0], [1.0]]}), r"posterior\.a"),
        (
            lambda: build_inference_data(
                posterior={"a": torch.zeros(1, 5, 2)}, dims={"a": ["x"]}, coords={"x": [[1], []]}
            ),
            r"coords\['x'\]",
        ),
        (lambda: _sample_post().to_inference_data(observed={"y": _meta(3)}), "observed_data.y"),
        (lambda: _sample_post().to_inference_data(observed={"y": [[1.0], []]}), r"observed\['y'\]"),
        (
            lambda: _sample_post().to_inference_data(num_samples=5, params={"k": [[1.0], []]}),
            r"params\['k'\]",
        ),
    ],
    ids=["meta", "ragged", "ragged-coords", "observed-meta", "observed-ragged", "params-ragged"],
)
def test_inference_data_names_values_it_cannot_read(call, name):
    # torch's "Cannot copy out of meta tensor" or numpy's "inhomogeneous shape", naming nothing
    with pytest.raises(ValueError, match=rf"^{name}: expected (values|an array)"):
        call()


def _sample_post():
    return SamplePosterior(torch.randn(1, 10, 3, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("kind", ["gaussian", "samples"])
def test_quantile_names_levels_on_the_meta_device(kind):
    f = torch.float64
    post = (
        GaussianPosterior(torch.zeros(3, dtype=f), torch.eye(3, dtype=f))
        if kind == "gaussian"
        else SamplePosterior(torch.randn(1, 10, 3, dtype=f))
    )
    # was torch's "Tensor.item() cannot be called on meta tensors"
    with pytest.raises(ValueError, match=r"^q: expected values, received a tensor on the 'meta'"):
        post.quantile(torch.tensor([0.1, 0.9], device="meta"))
    assert post.quantile(torch.tensor([0.1, 0.9])).shape == (2, 3)


def test_optimize_reads_raise_on_divergence_as_a_bool():
    from bayesphys import optimize

    with pytest.raises(TypeError, match=r"^raise_on_divergence: expected True or False"):
        # "no" is truthy: the divergence below raised DivergenceError
        optimize(lambda: float("nan"), steps=2, progress=False, raise_on_divergence="no")
    res = optimize(lambda: float("nan"), steps=2, progress=False, raise_on_divergence=False)
    assert not res.converged


@pytest.mark.parametrize(
    ("loss", "error", "match"),
    [
        (torch.tensor(1.0 + 1.0j), TypeError, "expected a real loss"),
        (torch.tensor(1.0, device="meta"), ValueError, "expected a loss value"),
    ],
    ids=["complex", "meta"],
)
@pytest.mark.parametrize("with_optimizer", [False, True])
def test_optimize_names_a_loss_it_cannot_read(loss, error, match, with_optimizer):
    from bayesphys import optimize

    x = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.Adam([x])
    opt.state[x] = {"exp_avg": torch.zeros(1)}  # a state to read beside the loss
    kw = {"optimizer": opt} if with_optimizer else {}
    # was torch's "value cannot be converted to type double" / "Tensor.item() ... meta"
    with pytest.raises(error, match=rf"^step: {match}"):
        optimize(lambda: loss, steps=1, progress=False, **kw)


@pytest.mark.parametrize("structured", [False, True])
def test_gaussian_posterior_names_a_meta_covariance(structured):
    from linear_operator.operators import DiagLinearOperator

    f = torch.float64
    cov = torch.eye(2, dtype=f, device="meta")
    cov = DiagLinearOperator(torch.ones(2, dtype=f, device="meta")) if structured else cov
    # was torch's "Cannot copy out of meta tensor; no data!"
    with pytest.raises(
        ValueError, match=r"^covariance: expected values, received one on the 'meta'"
    ):
        GaussianPosterior(torch.zeros(2, dtype=f), cov)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        # torch's "new(): invalid data type 'str'", naming no argument
        (lambda: wasserstein(torch.zeros(3, 1), torch.ones(2, 1), weights_x="abc"), "weights_x"),
        (lambda: conservation_error(torch.ones(2, 3), torch.ones(3), "a"), "target"),
        # "a Tensor with 2 elements cannot be converted to Scalar"
        (
            lambda: mmd(torch.zeros(3, 1), torch.ones(2, 1), torch.tensor([[1.0, 2.0]])),
            r"bandwidths\[0\]",
        ),
    ],
    ids=["wasserstein-weights", "conservation-target", "mmd-bandwidth-row"],
)
def test_metrics_name_malformed_options(call, match):
    with pytest.raises(TypeError, match=rf"^{match}: expected"):
        call()
