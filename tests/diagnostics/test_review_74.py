"""Review 74 of the calibration diagnostics: the diagnostics' own random streams are not the
ones a simulator seeded with the run's seed draws, summaries of integer / bool fields, an
empty event, and field_coverage90 at a level 0.9 up to rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.diagnostics import (
    SimulationRecord,
    analyse,
    default_summaries,
    front_position,
    hdi_pit,
    run_sbc,
    sbc_joint_ranks,
    sbc_pit,
    sbc_ranks,
    simulate_and_infer,
    total_mass,
)

F64 = torch.float64


def _user_uniforms(seed: int, shape: tuple[int, ...]) -> list[torch.Tensor]:
    """The float64 uniforms a simulator draws from ``Generator().manual_seed(seed + k)``,
    ``k = 0..9`` (its parameters from ``seed``, its noise from ``seed + 1``, ...)."""
    return [
        torch.rand(shape, generator=torch.Generator().manual_seed(seed + k), dtype=F64)
        for k in range(10)
    ]


def _implied_uniforms(which: str, seed: int) -> torch.Tensor:
    """The uniforms ``[50, 1]`` that one randomisation of the diagnostics drew, read off
    inputs where its result is a function of them alone."""
    n, big = 50, 999
    zero = torch.zeros(n, 1, dtype=F64)
    if which == "sbc_ranks":  # every draw ties with the truth: rank = floor(u (L + 1))
        return sbc_ranks(zero, torch.zeros(n, big, 1, dtype=F64), seed=seed).double() / (big + 1)
    if which == "sbc_pit":  # rank 0: u = V / (L + 1)
        return sbc_pit(torch.zeros(n, 1, dtype=torch.long), big, seed=seed) * (big + 1)
    if which == "hdi_pit":  # L = 1: every depth ties, u = V
        return hdi_pit(zero, torch.ones(n, 1, 1, dtype=F64), seed=seed)
    # sbc_joint_ranks with K >= L: every leverage ties, rank = floor(v (L + 1))
    g = torch.Generator().manual_seed(1)
    truth, draws = torch.randn(n, 2, generator=g, dtype=F64), torch.randn(n, 2, 2, generator=g)
    return sbc_joint_ranks(truth, draws.double(), seed=seed).double()[:, None] / 3


@pytest.mark.parametrize("which", ["sbc_ranks", "sbc_pit", "hdi_pit", "sbc_joint_ranks"])
@pytest.mark.parametrize("seed", [0, 7])
def test_randomisations_do_not_draw_the_uniforms_of_a_simulator_seeded_from_the_seed(which, seed):
    """The tie-breaks of sbc_ranks and sbc_joint_ranks and the V of sbc_pit and hdi_pit were
    drawn from ``Generator().manual_seed(seed + k)``, k = 0, 1, 2, 3: the very uniforms of a
    simulator that seeds its generators with the run's seed (run_sbc passes the same seed to
    both), so the randomisation depended on the simulated data."""
    got = _implied_uniforms(which, seed)
    for k, mine in enumerate(_user_uniforms(seed, tuple(got.shape))):
        if which in ("sbc_ranks", "sbc_joint_ranks"):  # only floor(u (L + 1)) is seen
            l1 = 1000 if which == "sbc_ranks" else 3
            same = torch.equal(torch.floor(mine * l1) / l1, got)
        else:
            same = torch.allclose(mine, got, rtol=0, atol=1e-12)
        assert not same, f"{which}(seed={seed}) drew the uniforms of manual_seed(seed + {k})"


def test_sbc_of_an_exact_discrete_posterior_with_a_torch_seeded_prior_is_not_rejected():
    """A Bernoulli(1/2) prior drawn with torch.rand(float64) from Generator(seed) and its exact
    posterior (the prior: the data say nothing): the tie-breaks were those very uniforms, the
    ranks piled up in the middle (387, 1184, 429 of 2000) and SBC rejected, p = 1e-132."""

    def simulate(n, *, seed):
        gen = torch.Generator().manual_seed(seed)
        theta = (torch.rand(n, 1, generator=gen, dtype=F64) < 0.5).double()
        return theta, torch.zeros(n, 1)

    draw_gen = torch.Generator().manual_seed(12345)

    def infer(y):
        return (torch.rand(50, 1, generator=draw_gen, dtype=F64) < 0.5).double()

    res = run_sbc(
        simulate, infer, n_sims=2000, n_draws=2, seed=0, field_levels=None, progress=False
    )
    counts = torch.bincount(res.ranks[:, 0], minlength=3).double() / 2000
    assert torch.allclose(counts, torch.full((3,), 1 / 3, dtype=F64), atol=0.04), counts
    assert res.metrics()["sbc_pvalue"] > 1e-3


def test_coverage_of_an_exact_conjugate_posterior_with_noise_seeded_at_seed_plus_one():
    """theta ~ N(0, 1) from Generator(seed), y = theta + noise from Generator(seed + 1), the
    exact posterior N(y/2, 1/2): the PIT's V came from Generator(seed + 1), the noise's own
    stream, and coverage90 was 0.868 (3000 problems, 5.8 standard errors low) with a KS
    p-value of 2e-4."""

    def simulate(n, *, seed):
        theta = torch.randn(n, 1, generator=torch.Generator().manual_seed(seed), dtype=F64)
        noise = torch.randn(n, 1, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
        return theta, theta + noise

    def infer(y):
        return GaussianPosterior(y / 2, torch.eye(1, dtype=F64) / 2)

    res = run_sbc(
        simulate, infer, n_sims=3000, n_draws=4, seed=0, field_levels=None, progress=False
    )
    m = res.metrics()
    se = (0.9 * 0.1 / 3000) ** 0.5
    assert abs(m["coverage90"] - 0.9) < 3 * se, m["coverage90"]
    assert m["sbc_pvalue_ks"] > 1e-2


def test_total_mass_of_integer_and_bool_fields_keeps_fractional_weights():
    """The weights were cast to the field's dtype: 0.5 read as 0, every mass of a count field
    0."""
    counts = torch.tensor([[1, 3], [2, 2]])
    assert torch.equal(total_mass(0.5)(counts), torch.tensor([2.0, 2.0], dtype=F64))
    w = torch.tensor([0.25, 0.75])
    assert torch.allclose(total_mass(w)(counts), torch.tensor([2.5, 2.0], dtype=F64))
    occupied = torch.tensor([True, False])
    assert float(total_mass(w)(occupied)) == 0.25
    # floating fields as before: in their own dtype
    assert total_mass(w)(counts.float()).dtype == torch.float32


def test_front_position_of_integer_and_bool_fields_keeps_the_grid():
    """The grid was cast to the field's dtype (x = 0, 0.5, 1 read as 0, 0, 1: the front 0.5
    in place of 0.75), and a bool field failed in torch's subtraction."""
    x = torch.tensor([0.0, 0.5, 1.0])
    front = front_position(x, level=0.5)
    want = front(torch.tensor([1.0, 1.0, 0.0]))
    assert float(want) == 0.75
    assert float(front(torch.tensor([1, 1, 0]))) == 0.75
    assert float(front(torch.tensor([True, True, False]))) == 0.75


def test_a_count_field_is_summarised_by_its_mass_in_the_simulation_loop():
    """Integer fields and draws through simulate_and_infer: the recorded masses are the
    weighted counts (they were all 0)."""

    def simulate(n, *, seed):
        return torch.full((n, 2), 3), torch.zeros(n, 1)

    rec = simulate_and_infer(
        simulate,
        lambda y: torch.tensor([[1, 1], [2, 2], [1, 3]]),
        {"mass": total_mass(0.5)},
        n_sims=2,
        n_draws=3,
        field_levels=None,
        progress=False,
    )
    assert torch.equal(rec.truth, torch.full((2, 1), 3.0, dtype=F64))
    assert torch.equal(rec.draws[0, :, 0], torch.tensor([1.0, 2.0, 2.0], dtype=F64))


def test_an_event_without_elements_is_refused_by_name():
    """default_summaries of an empty event returned no summary, and the loop failed in torch
    with "stack expects a non-empty TensorList"."""
    with pytest.raises(ValueError, match="summaries: an event of shape \\(0,\\) has no"):
        default_summaries(torch.Size([0]))

    def simulate(n, *, seed):
        return torch.zeros(n, 0), torch.zeros(n, 1)

    with pytest.raises(ValueError, match="summaries: an event of shape \\(0,\\)"):
        simulate_and_infer(
            simulate, lambda y: torch.zeros(4, 0), n_sims=2, n_draws=3, progress=False
        )


def test_field_coverage90_is_read_at_a_level_equal_to_0_9_up_to_rounding():
    """Field levels np.linspace(0.5, 0.95, 10) hold 0.8999999999999999: coverage90 was read
    (its levels are matched within 1e-9) and field_coverage90 was None."""
    levels = tuple(float(v) for v in np.linspace(0.5, 0.95, 10))
    assert 0.9 not in levels
    g = torch.Generator().manual_seed(0)
    fc = torch.rand(6, 10, generator=g, dtype=F64)
    rec = SimulationRecord(
        names=["a"],
        truth=torch.randn(6, 1, generator=g, dtype=F64),
        draws=torch.randn(6, 4, 1, generator=g, dtype=F64),
        levels=levels,
        field_coverage=fc,
    )
    m = analyse(rec, levels=levels).metrics()
    assert m["coverage90"] is not None
    assert m["field_coverage90"] == pytest.approx(float(fc[:, 8].mean()), abs=0)


def test_from_z_takes_arrays_and_refuses_masks_and_complex_values_by_name():
    """Recalibrator.from_z failed on an array or a list with "'numpy.ndarray' object has no
    attribute 'double'", read a bool mask as z = 0 / 1 (scale 0.707 for [True, False]) and
    dropped the imaginary part of complex z with only torch's warning."""
    from bayesphys.diagnostics import Recalibrator

    want = Recalibrator.from_z(torch.tensor([1.0, 2.0, -1.0], dtype=F64)).scale
    assert Recalibrator.from_z(np.array([1.0, 2.0, -1.0])).scale == want
    assert Recalibrator.from_z([1.0, 2.0, -1.0]).scale == want
    with pytest.raises(TypeError, match="z: expected held-out z-scores"):
        Recalibrator.from_z(["a"])
    for bad in (torch.tensor([True, False]), torch.tensor([1j, 2.0])):
        with pytest.raises(TypeError, match="z: expected real numbers"):
            Recalibrator.from_z(bad)


def test_a_scale_given_as_a_string_is_refused():
    """Recalibrator("zscore", scale="2") was built with the scale 2.0 (float() parsed it)."""
    from bayesphys.diagnostics import Recalibrator

    with pytest.raises(TypeError, match="scale: expected a real number > 0"):
        Recalibrator("zscore", scale="2")
