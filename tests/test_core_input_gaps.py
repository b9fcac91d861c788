"""Input gaps of the shared core noticed in review: each case below was accepted silently,
read wrongly or refused with a message that did not say why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bayesphys
from bayesphys import metrics
from bayesphys._checks import check_real
from bayesphys._device import as_tensor, check_finite
from bayesphys.distributed._problem_task import problem_seed

# -- metrics: a boolean mask was scored as 0 / 1 ------------------------------------------


def test_gaussian_nll_refuses_boolean_var_and_y() -> None:
    z = torch.zeros(3)
    mask = torch.ones(3, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"^var: expected numbers, received booleans"):
        metrics.gaussian_nll(z, mask, z)
    with pytest.raises(TypeError, match=r"^y: expected numbers, received booleans"):
        metrics.gaussian_nll(z, torch.ones(3), mask)
    with pytest.raises(TypeError, match=r"^mean: expected numbers, received booleans"):
        metrics.gaussian_nll(mask, torch.ones(3), z)
    with pytest.raises(TypeError, match=r"^var: expected numbers, received booleans"):
        metrics.gaussian_nll(z, True, z)


def test_crps_refuses_boolean_std_and_y() -> None:
    z = torch.zeros(3)
    mask = torch.ones(3, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"^std: expected numbers, received booleans"):
        metrics.crps_gaussian(z, mask, z)
    with pytest.raises(TypeError, match=r"^y: expected numbers, received booleans"):
        metrics.crps_gaussian(z, torch.ones(3), np.ones(3, dtype=bool))
    with pytest.raises(TypeError, match=r"^y: expected numbers, received booleans"):
        metrics.crps_samples(torch.zeros(10, 3), mask)


def test_metrics_still_take_numbers_and_integer_truth() -> None:
    z = torch.zeros(3, dtype=torch.float64)
    assert torch.isclose(
        metrics.gaussian_nll(z, torch.ones(3, dtype=torch.float64), z),
        torch.tensor(0.5 * np.log(2 * np.pi), dtype=torch.float64),
    )
    y = torch.tensor([0, 1, 2])
    got = metrics.crps_samples(torch.zeros(4, 3), y)
    assert torch.isclose(got, torch.tensor(1.0))


# -- check_real: a NaN bound bounded nothing ---------------------------------------------


@pytest.mark.parametrize("bound", ["minimum", "maximum"])
def test_check_real_refuses_nan_bound(bound: str) -> None:
    with pytest.raises(ValueError, match=rf"the {bound} is NaN"):
        check_real("x", 5.0, **{bound: float("nan")})
    assert check_real("x", 5.0, **{bound: 5.0}) == 5.0


# -- problem_seed: torch reads a seed modulo 2**64 -----------------------------------------


def test_problem_seed_reads_negative_seeds_as_torch_does() -> None:
    assert problem_seed(-1, "p") == problem_seed(2**64 - 1, "p")
    assert problem_seed(-(2**63), ("a", 1)) == problem_seed(2**63, ("a", 1))
    assert problem_seed(0, "p") != problem_seed(1, "p")
    with torch.random.fork_rng():
        torch.manual_seed(-1)
        a = torch.rand(2)
        torch.manual_seed(2**64 - 1)
        assert torch.equal(a, torch.rand(2))


# -- optimize: desc is the bar's label ----------------------------------------------------


def test_optimize_refuses_non_string_desc() -> None:
    w = torch.zeros(1, requires_grad=True)

    def step() -> torch.Tensor:
        return (w**2).sum()

    with pytest.raises(TypeError, match=r"^desc: expected a str"):
        bayesphys.optimize(step, steps=1, params=[w], progress=False, desc=1)
    res = bayesphys.optimize(step, steps=2, params=[w], progress=False, desc="warm-up")
    assert res.steps == 2 and len(res.loss_history) == 2


# -- build_inference_data: strings and '/' names -----------------------------------------


def test_inference_data_refuses_strings_as_values() -> None:
    with pytest.raises(TypeError, match=r"^posterior\.a: expected numbers .* received str"):
        bayesphys.build_inference_data(posterior={"a": "abc"})
    with pytest.raises(TypeError, match=r"^posterior\.a: expected numbers .* dtype object"):
        bayesphys.build_inference_data(posterior={"a": np.array([[object()]])})


def test_inference_data_refuses_slash_in_names() -> None:
    draws = np.zeros((1, 5, 2))
    with pytest.raises(ValueError, match=r"^posterior: expected names without '/'.*'a/b'"):
        bayesphys.build_inference_data(posterior={"a/b": draws})
    with pytest.raises(ValueError, match=r"expected names without '/'.*'x/y'"):
        bayesphys.build_inference_data(posterior={"a": draws}, dims={"a": ["x/y"]})


def test_inference_data_slash_free_names_still_save(tmp_path) -> None:
    idata = bayesphys.build_inference_data(
        posterior={"a b": np.zeros((1, 5, 2))},
        coords={"x": ["p/q", "r"]},
        dims={"a b": ["x"]},
    )
    path = bayesphys.save_netcdf(idata, tmp_path / "ok.nc")
    assert path.exists()


# -- as_tensor / check_finite say why a value has no tensor --------------------------------


def test_as_tensor_names_integers_beyond_int64() -> None:
    for value in ([2**70], [2**63], [1, -(2**70)]):
        with pytest.raises(TypeError, match=r"^x: .*integers beyond int64's range"):
            as_tensor("x", value)
    assert as_tensor("x", [-(2**63)]).item() == -(2**63)


@pytest.mark.skipif(
    np.dtype(np.longdouble).itemsize <= 8, reason="np.longdouble is float64 on this platform"
)
def test_as_tensor_and_check_finite_name_longdouble() -> None:
    with pytest.raises(TypeError, match=r"^x: .*torch has no dtype.*astype\(np\.float64\)"):
        check_finite("x", np.ones(3, dtype=np.longdouble))
    with pytest.raises(TypeError, match=r"^x: .*astype\(np\.float64\)"):
        as_tensor("x", np.ones(3, dtype=np.clongdouble))
    # the message's advice works
    t = as_tensor("x", np.ones(3, dtype=np.longdouble).astype(np.float64))
    assert t.dtype == torch.float64


def test_as_tensor_says_strings_and_ragged_lists() -> None:
    with pytest.raises(TypeError, match=r"^x: .*received str of dtype <U3 \(not numbers\)"):
        as_tensor("x", "abc")
    with pytest.raises(TypeError, match=r"^x: .*received list \(.*inhomogeneous"):
        as_tensor("x", [1, [2, 3]])
