"""Field summaries and the simulation loop."""

from __future__ import annotations

import pytest
import torch

from bayesphys import SamplePosterior
from bayesphys.diagnostics import (
    default_summaries,
    front_position,
    posterior_draws,
    probe,
    simulate_and_infer,
    total_mass,
)


def test_probe_mass_front():
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    u = torch.stack([1 - x, 2 * (1 - x)])  # [2, 11] fronts where u = 0.5: x = 0.5 and 0.75
    assert probe(3)(u).tolist() == pytest.approx([0.7, 1.4])
    assert total_mass(0.1)(u).tolist() == pytest.approx([0.1 * 5.5, 0.1 * 11.0])
    torch.testing.assert_close(
        front_position(x, 0.5)(u), torch.tensor([0.5, 0.75], dtype=torch.float64)
    )
    assert float(front_position(x, 5.0)(u[0])) == 0.0  # never above the level
    u2 = torch.ones(2, 3, 4)
    assert probe((1, 2))(u2).shape == (2,)
    assert total_mass(1.0, event_ndim=2)(u2).tolist() == [12.0, 12.0]


def test_default_summaries():
    names = list(default_summaries(torch.Size([2, 2])))
    assert names == ["theta_0_0", "theta_0_1", "theta_1_0", "theta_1_1"]
    with pytest.raises(ValueError, match="summaries"):
        default_summaries(torch.Size([100]))
    # a scalar parameter is its own summary, named theta
    ((name, f),) = default_summaries(torch.Size([])).items()
    u = torch.tensor([0.5, -1.0])
    assert name == "theta" and torch.equal(f(u), u)


def test_posterior_draws_thin_stored_draws():
    draws = torch.arange(20, dtype=torch.float64).reshape(2, 10, 1)
    d = posterior_draws(SamplePosterior(draws), 5)
    assert d.shape == (5, 1) and len(set(d.flatten().tolist())) == 5
    with pytest.raises(ValueError, match="n_draws"):
        posterior_draws(draws[0], 11)
    # numpy draws as a tensor; anything else refused by the argument's name
    torch.testing.assert_close(posterior_draws(draws[0].numpy(), 5), posterior_draws(draws[0], 5))
    with pytest.raises(
        TypeError, match="post: expected a Posterior or an array of draws, received list"
    ):
        posterior_draws([1, 2], 2)


def test_loop_accepts_raw_draws(exact_model):
    def infer(y):
        return exact_model.infer(y).sample((50,))

    rec = simulate_and_infer(exact_model.simulate, infer, n_sims=20, n_draws=30, seed=1)
    assert rec.truth.shape == (20, 2) and rec.draws.shape == (20, 30, 2)
    assert rec.field_coverage.shape == (20, len(rec.levels))
    with pytest.raises(ValueError, match="infer"):
        simulate_and_infer(exact_model.simulate, lambda y: torch.zeros(5, 3), n_sims=3, n_draws=4)
    with pytest.raises(ValueError, match="n_sims"):
        simulate_and_infer(exact_model.simulate, infer, n_sims=1, n_draws=3)


def test_thinning_more_than_2_24_stored_draws_keeps_every_draw_once():
    """Indices from a float32 linspace: with 2**24 + 4 stored draws, all of them asked for,
    the last index rounded past the end (IndexError); at 2**24 + 2 one draw was repeated."""
    n = 2**24 + 4
    stored = torch.arange(n, dtype=torch.int32)
    out = posterior_draws(stored, n)
    assert out.shape == (n,) and bool((out[1:] > out[:-1]).all()) and int(out[-1]) == n - 1


def test_a_float_truth_among_integer_draws_is_recorded_unrounded():
    """The truth was cast to the draws' dtype: a float truth among integer draws (a discrete
    posterior's ``Categorical.sample``) was truncated, 3.88 recorded as 3, and its ranks and
    field coverage read off the truncated value."""
    theta = torch.tensor([[3.88], [0.25], [1.5]], dtype=torch.float64)

    def simulate(n, *, seed):
        return theta[:n], theta[:n]

    def infer(y):
        return torch.arange(4).repeat(5)[:, None]  # integer draws 0..3, five of each

    rec = simulate_and_infer(simulate, infer, n_sims=3, n_draws=20, progress=False)
    torch.testing.assert_close(rec.truth, theta)
    # the truth 1.5 has 10 draws (0s and 1s) below it and none tied: central 50 % interval
    # of the PIT u = (10 + V)/21 in [0.476, 0.524) is inside at every level
    assert rec.field_coverage[2].tolist() == [1.0] * len(rec.levels)
    # a float truth among float32 draws is still compared in float32, as before
    rec32 = simulate_and_infer(
        simulate,
        lambda y: torch.linspace(0, 4, 20)[:, None],
        n_sims=3,
        n_draws=20,
        progress=False,
    )
    torch.testing.assert_close(rec32.truth, theta.float().double())


def test_a_nan_in_drawn_fields_is_refused_by_the_field_calibration_curve():
    """A NaN at an element that no summary reads passed the summaries' finiteness check, and
    the field calibration curve compared it as a draw above the truth: field coverage was
    lowered without an error."""

    def simulate(n, *, seed):
        theta = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
        return theta.double(), theta.double()

    def infer(y):
        d = torch.randn(30, 4, dtype=torch.float64)
        d[:, 3] = float("nan")  # the element no summary reads
        return d

    with pytest.raises(ValueError, match=r"infer: posterior draws \(problem 0.*NaN"):
        simulate_and_infer(simulate, infer, {"a": probe(0)}, n_sims=4, n_draws=9, progress=False)
    # without the field curve, only the summaries are read (and they are finite)
    rec = simulate_and_infer(
        simulate, infer, {"a": probe(0)}, n_sims=4, n_draws=9, field_levels=None, progress=False
    )
    assert rec.field_coverage is None and bool(rec.draws.isfinite().all())


def test_stored_draws_are_thinned_evenly_from_first_to_last():
    stored = torch.arange(20, dtype=torch.float64)
    d = posterior_draws(stored, 5)
    gaps = torch.diff(d).tolist()
    assert d[0] == 0 and d[-1] == 19 and all(g in (4.0, 5.0) for g in gaps)
    assert posterior_draws(stored, 20).tolist() == stored.tolist()  # all of them, in order


def test_field_coverage_is_seeded_by_the_run_not_the_global_stream(exact_model):
    def run():
        gen = torch.Generator().manual_seed(9)  # the user's draws: one seeded stream per run

        def infer(y):  # integer-valued draws: ties with the truth, where the PIT's V decides
            return exact_model.infer(y).sample((40,), generator=gen).round()

        return simulate_and_infer(
            exact_model.simulate, infer, n_sims=6, n_draws=20, seed=4, progress=False
        )

    torch.manual_seed(0)
    a = run()
    torch.manual_seed(1)
    b = run()
    assert torch.equal(a.field_coverage, b.field_coverage)


def test_front_position_at_the_ends_of_the_grid_and_summary_argument_bounds():
    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    front = front_position(x, 0.5)
    rising = torch.tensor([0.6, 0.7, 0.8, 0.9, 1.0], dtype=torch.float64)
    assert float(front(rising)) == 1.0  # above the level everywhere: the last point
    below = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.45], dtype=torch.float64)
    assert float(front(below)) == 0.0  # nowhere above it (rising towards it): x[0]
    with pytest.raises(ValueError, match=r"weights: expected a shape broadcasting to the event"):
        total_mass(torch.ones(2, 5), event_ndim=1)(torch.ones(2, 5))
    assert len(default_summaries(torch.Size([16]))) == 16  # at max_elements: still fine
    with pytest.raises(ValueError, match=r"\(17 elements\) needs explicit field summaries"):
        default_summaries(torch.Size([17]))


def test_a_run_without_field_levels_records_no_levels(exact_model):
    rec = simulate_and_infer(
        exact_model.simulate, exact_model.infer, n_sims=3, n_draws=5, field_levels=None,
        progress=False,
    )  # fmt: skip
    assert rec.levels == () and rec.field_coverage is None
