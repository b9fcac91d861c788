"""dtype and device edge cases across the shared core and the components' constructors."""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys._device import as_tensor, resolve_dtype
from bayesphys._process_state import make_generator
from bayesphys.meta_fm.evaluation import gaussian_w2
from bayesphys.metrics import crps_gaussian, crps_samples, mmd
from bayesphys.odil import DiscreteProblem, minimize
from bayesphys.probconserv import ProbConserv
from bayesphys.problems import ConjugateGaussianField

F64 = torch.float64
NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("kind", ["dense", "diag"])
def test_a_float64_value_on_a_float32_posterior_is_read_in_its_dtype(kind):
    cov = torch.eye(4) * 2 if kind == "dense" else DiagLinearOperator(torch.full((4,), 2.0))
    post = GaussianPosterior(torch.zeros(4), cov)
    v = torch.tensor([0.1, -0.2, 0.3, 0.4], dtype=F64)
    lp = post.log_prob(v)
    assert lp.dtype == torch.float32
    assert float(lp) == pytest.approx(float(post.log_prob(v.float())))
    draws = post.rsample((2,), base_samples=torch.ones(2, 4, dtype=F64))
    assert draws.dtype == torch.float32
    with pytest.raises(TypeError, match="value: expected floating"):
        post.log_prob(torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="base_samples: expected floating"):
        post.rsample((2,), base_samples=torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_gaussian_posterior_is_refused_with_a_hint(dtype):
    with pytest.raises(TypeError, match=r"float32 or float64.*mean.float\(\)"):
        GaussianPosterior(torch.zeros(3, dtype=dtype), DiagLinearOperator(torch.ones(3)))


def test_bfloat16_draws_export_to_arviz():
    idata = SamplePosterior(torch.randn(1, 4, 2, dtype=torch.bfloat16)).to_inference_data()
    assert idata.posterior["u"].shape[-1] == 2


@pytest.mark.skipif(not NO_CUDA, reason="checks the error where CUDA is absent")
def test_device_objects_are_checked_like_device_strings():
    for fn in (
        lambda d: as_tensor("x", [1.0], device=d),
        lambda d: make_generator(0, d),
    ):
        with pytest.raises(ValueError, match="CUDA is not available"):
            fn(torch.device("cuda:7"))
    with pytest.raises(TypeError, match="device: expected str, torch.device or None"):
        as_tensor("x", [1.0], device=0)  # was silently ignored


def test_as_tensor_refuses_truncating_casts_and_reads_dtype_names():
    with pytest.raises(ValueError, match="whole numbers"):
        as_tensor("idx", [1.5, 2.0], dtype=torch.int64)
    for value, dtype in ((1e20, torch.int64), (300.0, torch.uint8), (-1.0, torch.uint8)):
        with pytest.raises(ValueError, match="would wrap"):
            as_tensor("idx", [value], dtype=dtype)
    assert as_tensor("idx", [1.0, 2.0], dtype=torch.int64).tolist() == [1, 2]
    assert as_tensor("x", [1], dtype="float32").dtype == torch.float32


def test_float8_is_not_a_usable_dtype():
    with pytest.raises(ValueError, match="float16, bfloat16, float32 or float64"):
        resolve_dtype("float8_e4m3fn")


def test_crps_samples_of_many_half_precision_draws_stays_finite():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(3000, 4, generator=g, dtype=F64)
    y = torch.zeros(4, dtype=F64)
    ref = float(crps_samples(d, y))
    for dtype in (torch.float16, torch.bfloat16):
        got = float(crps_samples(d.to(dtype), y.to(dtype)))
        assert got == pytest.approx(ref, rel=0.02), dtype


def test_crps_gaussian_reads_a_python_mean_in_the_tensors_dtype():
    s, y = torch.tensor(0.5, dtype=F64), torch.tensor(0.3, dtype=F64)
    assert float(crps_gaussian(0.1, s, y)) == float(
        crps_gaussian(torch.tensor(0.1, dtype=F64), s, y)
    )


def test_mmd_of_half_or_mixed_precision_clouds():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 2, generator=g, dtype=F64), torch.randn(30, 2, generator=g, dtype=F64)
    ref = float(mmd(x, y))
    assert float(mmd(x.half(), y.half())) == pytest.approx(ref, abs=5e-3)
    # the wider of the two dtypes: y keeps its float64 digits
    assert float(mmd(x.float(), y)) == pytest.approx(float(mmd(x.float().double(), y)), rel=1e-12)


def test_gaussian_w2_in_float64_for_any_floating_input():
    a = torch.randn(3, 3, generator=torch.Generator().manual_seed(2))
    s = a @ a.T + 3 * torch.eye(3)
    assert float(gaussian_w2(torch.zeros(3), s, torch.zeros(3), s)) < 1e-6  # float32: ~3e-3
    got = gaussian_w2(
        torch.zeros(2), torch.eye(2), torch.zeros(2, dtype=F64), 4 * torch.eye(2, dtype=F64)
    )
    assert got.dtype == F64 and float(got) == pytest.approx(2**0.5, rel=1e-12)
    with pytest.raises(TypeError, match="m1: expected floating"):
        gaussian_w2(torch.zeros(2, dtype=torch.long), torch.eye(2), torch.zeros(2), torch.eye(2))


def test_dense_gauss_newton_reads_a_float64_residual_in_the_problem_dtype():
    obs = torch.tensor([0.0, 0.25, 1.0], dtype=F64)
    pb = DiscreteProblem({"u": (3,)}, {}, lambda f, p: {"data": f["u"] - obs}, dtype=torch.float32)
    x, res = minimize(pb, method="gn", linear_solver="dense", steps=3)
    assert x.dtype == torch.float32 and torch.allclose(x.double(), obs, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_models_are_refused_at_construction(dtype):
    with pytest.raises(ValueError, match="float32 or torch.float64"):
        ProbConserv("diffusion", hidden=8, n_samples=2, dtype=dtype)
    with pytest.raises(ValueError, match="float32 or torch.float64"):
        ConjugateGaussianField(torch.linspace(0, 1, 5), [0, 2], [0.0, 1.0], dtype=dtype)


def test_crps_samples_works_in_the_wider_of_its_inputs_dtypes():
    g = torch.Generator().manual_seed(3)
    d = torch.randn(200, 4, generator=g, dtype=F64)
    y = torch.full((4,), 0.1234567890123, dtype=F64)
    got = crps_samples(d.float(), y)
    assert got.dtype == F64
    assert float(got) == pytest.approx(float(crps_samples(d.float().double(), y)), rel=1e-12)


def test_classes_of_private_modules_are_named_by_their_public_ones():
    import pickle

    from bayesphys.distributed import ddp, executors
    from bayesphys.probconserv import ProbConservConfig

    assert executors.TaskError.__module__ == "bayesphys.distributed.executors"
    assert ddp.DistContext.__module__ == "bayesphys.distributed.ddp"
    assert ProbConservConfig.__module__ == "bayesphys.probconserv.model"
    assert b"_task_errors" not in pickle.dumps(executors.TaskError("x"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_single_or_double_refuses_half_precision_naming_the_reason(dtype):
    from bayesphys._device import single_or_double

    assert single_or_double(torch.float32) is torch.float32
    assert single_or_double(torch.float64, "why") is torch.float64
    with pytest.raises(ValueError, match=r"^dtype: expected torch.float32 or torch.float64, "):
        single_or_double(dtype)
    with pytest.raises(ValueError, match=r"received torch\.\w+ \(Cholesky has none\)$"):
        single_or_double(dtype, "Cholesky has none")


def _glioma(dtype):
    from bayesphys.odil import GliomaModel
    from bayesphys.problems.glioma import brain_phantom

    ph = brain_phantom(16)
    return GliomaModel(ph["wm"], ph["gm"], torch.zeros(16, 16, dtype=torch.long), dtype=dtype)


@pytest.mark.parametrize(
    "build",
    [
        lambda d: DiscreteProblem({"u": (3,)}, {}, lambda u, p: [u["u"]], dtype=d),
        lambda d: ProbConserv(dtype=d),
        lambda d: ConjugateGaussianField([0.0, 0.5, 1.0], [0, 2], [0.0, 1.0], dtype=d),
        _glioma,
    ],
    ids=["DiscreteProblem", "ProbConserv", "ConjugateGaussianField", "GliomaModel"],
)
@pytest.mark.parametrize("dtype", [torch.int32, "int64", torch.float16, "bfloat16"])
def test_a_model_that_needs_float32_or_float64_names_only_those_for_any_other_dtype(build, dtype):
    # an integer dtype was refused listing float16 and bfloat16 as accepted, which the same
    # model then refused in a second message: one message now lists the two it takes
    with pytest.raises(ValueError, match=r"^dtype: expected torch.float32 or torch.float64, ") as e:
        build(dtype)
    assert "float16," not in str(e.value)


@pytest.mark.parametrize("name", ["nope", "float99"])
def test_an_unknown_dtype_name_lists_what_a_single_or_double_model_takes(name):
    from bayesphys._device import single_or_double

    with pytest.raises(
        ValueError,
        match=(
            rf"^dtype: unknown dtype '{name}' \(expected torch.float32 or torch.float64\) "
            r"\(why\)$"
        ),
    ):
        single_or_double(name, "why")
    assert single_or_double("float32") is torch.float32
    assert single_or_double(None) is torch.float64
    assert single_or_double(None, default=torch.float32) is torch.float32
