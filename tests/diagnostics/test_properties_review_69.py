"""Property tests of the rank-based calibration checks' exact invariances: the SBC ranks,
central coverage, HDI ranks and TARP values depend on the draws as a set (their order is
irrelevant) and on the data only up to an increasing affine map (checked exactly with
integer data, ties included, scaled by powers of two and shifted by integers); TARP's
coverage curve runs from 0 to 1, never falls, and its ATC lies in [-3/8, 1/8]."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.diagnostics import central_coverage, hdi_pit, sbc_ranks, tarp

F64 = torch.float64


def _data(n: int, l: int, k: int, levels: int, g: torch.Generator):
    truth = torch.randint(-levels, levels + 1, (n, k), generator=g).to(F64)
    draws = torch.randint(-levels, levels + 1, (n, l, k), generator=g).to(F64)
    return truth, draws


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 6),
    l=st.integers(1, 12),
    k=st.integers(1, 3),
    levels=st.integers(1, 6),
    scale=st.sampled_from([0.25, 1.0, 8.0]),
    shift=st.sampled_from([0.0, -5.0, 64.0]),
    seed=st.integers(0, 10_000),
)
def test_rank_checks_see_the_draws_as_a_set_and_the_data_up_to_affine_maps(
    n, l, k, levels, scale, shift, seed
):
    """Permuting each simulation's draws, or mapping truth and draws by x -> s x + c (s > 0),
    leaves sbc_ranks, central_coverage, hdi_pit and TARP's f unchanged to the bit (their random
    tie-breaks come from the seed, not from the data's order)."""
    g = torch.Generator().manual_seed(seed)
    truth, draws = _data(n, l, k, levels, g)
    perm = torch.randperm(l, generator=g)
    moved_t, moved_d = scale * truth + shift, scale * draws + shift
    for fn in (
        lambda t, d: sbc_ranks(t, d, seed=3),
        lambda t, d: central_coverage(t, d, 0.6, seed=3),
        lambda t, d: hdi_pit(t, d, seed=3),
    ):
        ref = fn(truth, draws)
        assert torch.equal(fn(truth, draws[:, perm]), ref)
        assert torch.equal(fn(moved_t, moved_d), ref)
    ref = tarp(truth, draws, seed=3)["f"]
    assert torch.equal(tarp(truth, draws[:, perm], seed=3)["f"], ref)
    assert torch.equal(tarp(moved_t, moved_d, seed=3)["f"], ref)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 30),
    l=st.integers(1, 15),
    k=st.integers(1, 3),
    n_alpha=st.integers(2, 60),
    discrete=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_tarp_coverage_curve_is_a_distribution_function(n, l, k, n_alpha, discrete, seed):
    """f lies in [0, 1); ECP(alpha) = #{f < alpha} / N is 0 at alpha = 0, 1 at alpha = 1 and
    non-decreasing between, so ATC = int_{1/2}^1 (ECP - alpha) lies between the integrals of
    -alpha and 1 - alpha: [-3/8, 1/8]."""
    g = torch.Generator().manual_seed(seed)
    if discrete:
        truth, draws = _data(n, l, k, 2, g)
    else:
        truth = torch.randn(n, k, generator=g, dtype=F64)
        draws = torch.randn(n, l, k, generator=g, dtype=F64)
    out = tarp(truth, draws, seed=seed, n_alpha=n_alpha)
    f, ecp = out["f"], out["ecp"]
    assert f.shape == (n,) and bool((f >= 0).all()) and bool((f < 1).all())
    assert ecp.shape == (n_alpha,) and float(ecp[0]) == 0.0 and float(ecp[-1]) == 1.0
    assert bool((ecp[1:] >= ecp[:-1]).all())
    assert -3 / 8 - 1e-12 <= out["atc"] <= 1 / 8 + 1e-12
