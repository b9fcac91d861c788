"""Population generators: held-out letters kept out of training, float64 particle targets,
target redraws (the sampling floor) of empty splits and of float64 particle data sets, shape
checks of the exact B2 field, letters that are not one DejaVu Sans glyph."""

from __future__ import annotations

import pytest
import torch

from bayesphys.problems.populations import (
    interacting_particles,
    letter_points,
    letters,
    linear_map,
    linear_map_exact_field,
    make_population_problem,
    particle_velocity,
    redraw_targets,
)
from bayesphys.problems.populations.b3_particles import _gmm_draw


def _rk4(x: torch.Tensor, steps: int) -> torch.Tensor:
    """The stated particle ODE integrated to t = 1 by RK4 in ``x``'s dtype (reference)."""
    h = 1.0 / steps
    for _ in range(steps):
        k1 = particle_velocity(x)
        k2 = particle_velocity(x + 0.5 * h * k1)
        k3 = particle_velocity(x + 0.5 * h * k2)
        k4 = particle_velocity(x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


@pytest.mark.parametrize(
    "kw, match",
    [
        (
            dict(train_letters="YA", test_letter="Y"),
            r"^test_letter: 'Y' shares 'Y' with train_letters 'YA'",
        ),
        (
            dict(train_letters="AX", val_letter="X"),
            r"^val_letter: 'X' shares 'X' with train_letters 'AX'",
        ),
        (
            dict(train_letters="AB", val_letter="b"),
            r"^val_letter: 'b' shares 'B' with train_letters",
        ),
        (
            dict(train_letters="A", val_letter="Y", test_letter="Y"),
            r"^test_letter: 'Y' shares 'Y' with val_letter",
        ),
    ],
)
def test_letters_refuses_a_held_out_letter_seen_in_training(kw, match):
    # each split reseeds with seed: the shared letter's pairs were bit-identical in both
    with pytest.raises(ValueError, match=match):
        letters(rotations=1, **kw)


def test_interacting_particles_simulates_in_float64_when_asked():
    kw = dict(n_train=2, n_cal=1, n_test=1, n_points=32, steps=20)
    d64 = interacting_particles(dtype=torch.float64, **kw)
    x = torch.stack(d64.source)
    assert x.dtype == torch.float64
    x = _rk4(x, 20)
    target = torch.stack(d64.target)
    assert target.dtype == torch.float64
    # was ~1e-6 off (simulated in float32, then cast)
    torch.testing.assert_close(target, x, rtol=0, atol=1e-12)
    # the default float32 targets are the float32 simulation, rounded as before
    d32 = interacting_particles(**kw)
    assert d32.target[0].dtype == torch.float32
    assert float((torch.stack(d32.target).double() - x).abs().max()) > 1e-8
    # the sources are the same draws in both (not overwritten by the float64 simulation)
    assert torch.equal(torch.stack(d64.source).float(), torch.stack(d32.source))


@pytest.mark.parametrize("name", ["B2", "B3"])
def test_redraw_targets_of_an_empty_split_is_empty(name):
    # n_cal=0 is allowed; the floor of that empty split raised an IndexError on B3 (B2 gave [])
    kw = dict(n_train=2, n_cal=0, n_test=1, n_points=8)
    if name == "B3":
        kw["steps"] = 2
    empty = make_population_problem(name, **kw).subset("cal")
    assert len(empty) == 0
    assert redraw_targets(empty, seed=1) == []


def test_redraw_targets_simulates_float64_particles_in_float64():
    kw = dict(n_train=2, n_cal=0, n_test=1, n_points=16, steps=10)
    d64 = interacting_particles(dtype=torch.float64, **kw)
    r64 = torch.stack(redraw_targets(d64, seed=3))
    # the same fresh mixture draws as redraw_targets makes (seeded generator, pair by pair)
    gen = torch.Generator().manual_seed(3)
    x = torch.stack([_gmm_draw(m, s, 16, gen) for m, s in d64.extra["mixture"]])
    x = _rk4(x, 10)
    # was the float32 simulation cast to float64 (~1e-6 off), unlike the data set's targets
    torch.testing.assert_close(r64, x, rtol=0, atol=1e-12)
    # float32 data sets keep the float32 simulation
    r32 = torch.stack(redraw_targets(interacting_particles(**kw), seed=3))
    assert r32.dtype == torch.float32
    assert float((r32.double() - x).abs().max()) > 1e-8


def test_linear_map_exact_field_refuses_shapes_that_broadcast():
    d = linear_map(n_train=1, n_cal=0, n_test=0, n_points=8, dtype=None)
    x, a, b = d.source[0], d.extra["A"][0], d.extra["b"][0]
    v = linear_map_exact_field(x, 0.25, a, b)
    assert v.shape == (8, 2)
    torch.testing.assert_close(linear_map_exact_field(x, torch.full((8,), 0.25), a, b), v)
    torch.testing.assert_close(linear_map_exact_field(x, torch.tensor([0.25]), a, b), v)
    for args, match in [
        ((x[0], 0.25, a, b), r"^x: expected points \[N, d\], received shape \(2,\)"),  # was [2, 2]
        ((x, 0.25, a, b[:1]), r"^b: expected \[2\] for x \[N, 2\], received \(1,\)"),  # was [8, 2]
        ((x, 0.25, d.extra["A"], b), r"^a: expected \[2, 2\]"),
        ((x, torch.rand(3), a, b), r"^t: expected a scalar or \[8\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            linear_map_exact_field(*args)
    with pytest.raises(TypeError, match="^a: expected a torch.Tensor, received list"):
        linear_map_exact_field(x, 0.25, a.tolist(), b)


@pytest.mark.parametrize(
    "char, match",
    [
        ("ß", r"'ß' upper-cases to 'SS', 2 glyphs"),  # was the two glyphs "SS"
        ("ﬀ", r"'ﬀ' upper-cases to 'FF', 2 glyphs"),
        ("中", r"DejaVu Sans has no glyph for '中'"),  # was the font's empty box
    ],
)
def test_letters_refuse_characters_that_are_not_one_glyph(char, match):
    with pytest.raises(ValueError, match=f"^letter: {match}"):
        letter_points(char)
    with pytest.raises(ValueError, match=f"^train_letters: {match}"):
        letters(rotations=1, train_letters="A" + char)
    # lower case, accented and Greek capitals have glyphs of their own
    assert torch.equal(letter_points("a"), letter_points("A"))
    assert letter_points("é").shape[1] == letter_points("Ω").shape[1] == 2
