"""Inside a caller's ``torch.autocast("cpu", dtype=torch.bfloat16)`` block, the shared core
computes in the dtype it chose: GaussianPosterior's draws and densities (Kronecker solves
failed with "both inputs should have same dtype", dense draws came back in bfloat16, low-rank
ones 3e-3 off) and ``metrics.conservation_error`` (bfloat16, 2e-2 off) are those computed
outside the block; the caller's autocast is in force again afterwards."""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import (
    DiagLinearOperator,
    KroneckerProductLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

from bayesphys import GaussianPosterior
from bayesphys.metrics import conservation_error


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _kernel(n: int) -> torch.Tensor:
    x = torch.linspace(0, 1, n)
    return torch.exp(-((x[:, None] - x[None]) ** 2) / 0.05) + 1e-3 * torch.eye(n)


def _covariances():
    gen = torch.Generator().manual_seed(0)
    lowrank = LowRankRootAddedDiagLinearOperator(
        LowRankRootLinearOperator(torch.randn(40, 3, generator=gen)),
        DiagLinearOperator(torch.rand(40, generator=gen) + 0.1),
    )
    kron = KroneckerProductLinearOperator(_kernel(8), _kernel(5))
    return {"dense": _kernel(40), "lowrank": lowrank, "kron": kron}


@pytest.mark.parametrize("kind", ["dense", "lowrank", "kron"])
def test_gaussian_posterior_under_autocast_matches_the_float32_result(kind):
    cov = _covariances()[kind]
    mean = torch.sin(3 * torch.linspace(0, 1, 40))
    value = mean + 0.1
    post = GaussianPosterior(mean, cov)
    want = (post.log_prob(value), post.sample((3,), seed=0), post.variance)
    with _bf16():
        inside = GaussianPosterior(mean, cov)
        got = (inside.log_prob(value), inside.sample((3,), seed=0), inside.variance)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w)


def test_conservation_error_under_autocast_stays_in_the_field_dtype():
    gen = torch.Generator().manual_seed(0)
    field = torch.randn(4, 60, generator=gen)
    weights = torch.rand(2, 60, generator=gen)
    want = conservation_error(field, weights, 0.5)
    with _bf16():
        got = conservation_error(field, weights, 0.5)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


def test_own_precision_turns_autocast_off_inside_and_back_on_after():
    from bayesphys._precision import own_precision

    @own_precision()
    def product(a: torch.Tensor) -> torch.Tensor:
        return a @ a

    a = torch.rand(3, 3)
    with _bf16():
        assert (a @ a).dtype == torch.bfloat16  # the caller's autocast
        with own_precision():
            assert not torch.is_autocast_enabled("cpu")
            assert (a @ a).dtype == torch.float32
        assert product(a).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")
        assert (a @ a).dtype == torch.bfloat16
    with own_precision():  # no autocast to turn off: nothing changes
        assert not torch.is_autocast_enabled("cpu")
    assert not torch.is_autocast_enabled("cpu")
