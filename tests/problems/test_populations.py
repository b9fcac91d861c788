"""Population generators (letters, the B2 linear map, B3 particles, patient screens): glyph
sizes and held-out letters, float64 particle targets against an RK4 reference, target redraws
(the sampling floor) of empty splits, float64 data sets and targets of another dimension than
the recorded law, shape checks of the exact B2 field, letters that are not one DejaVu Sans
glyph."""

from __future__ import annotations

import dataclasses

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
    patient_screen,
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


def test_letter_glyph_sizes_match_anchor():
    # anchor 2.1: DejaVu Sans point counts A = 1773, X = 1676, Y = 1244
    assert letter_points("A").shape == (1773, 2)
    assert letter_points("X").shape == (1676, 2)
    assert letter_points("Y").shape == (1244, 2)
    a = letter_points("A")
    assert float(a.abs().max()) <= 3.0 + 1e-9


def test_letter_glyph_orientation():
    # upright glyphs: column 0 is x (to the right), column 1 is y (up)
    el = letter_points("L")
    assert float(el[:, 1].max() - el[:, 1].min()) > float(el[:, 0].max() - el[:, 0].min())
    assert abs(float(el[:, 1].abs().max()) - 3.0) < 1e-9  # the taller axis spans [-3, 3]
    # "F": the top bar reaches to the right, the foot is only the stem on the left
    f = letter_points("F")
    top, foot = f[f[:, 1] > 2.5], f[f[:, 1] < -2.5]
    assert float(top[:, 0].max()) > float(foot[:, 0].max()) + 1.0


def test_letters_splits_and_pairing():
    d = letters(rotations=2)
    assert len(d.splits["train"]) == 48 and len(d.splits["test"]) == 2
    i = d.splits["test"][0]
    noise = d.source[i] - d.target[i]
    assert abs(float(noise.std()) - 0.5) < 0.05
    d2 = letters(rotations=2)
    assert torch.equal(d.source[5], d2.source[5])


def test_linear_map_exact_law_and_field():
    d = linear_map(dim=5, n_train=3, n_cal=0, n_test=2, n_points=4000, seed=1)
    a, b = d.extra["A"], d.extra["b"]
    x0, x1 = d.source[0].double(), d.target[0].double()
    torch.testing.assert_close(x1, x0 @ a[0].mT + b[0], atol=1e-5, rtol=1e-5)
    # empirical moments of the target approach the exact Gaussian law
    assert torch.allclose(x1.mean(0), d.extra["target_mean"][0], atol=0.1)
    assert torch.allclose(torch.cov(x1.T), d.extra["target_cov"][0], atol=0.1)
    # exact field at t: the velocity at x_t is x1 - x0
    t = torch.rand(x0.shape[0], dtype=torch.float64)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    v = linear_map_exact_field(xt, t, a[0], b[0])
    torch.testing.assert_close(v, x1 - x0, atol=1e-4, rtol=1e-4)


def test_particles_and_velocity():
    d = interacting_particles(n_train=3, n_cal=1, n_test=2, n_points=32, steps=10)
    assert len(d) == 6 and d.source[0].shape == (32, 2) and d.paired
    # the mean is conserved (attraction to the mean and pairwise-antisymmetric repulsion)
    torch.testing.assert_close(d.source[0].mean(0), d.target[0].mean(0), atol=1e-4, rtol=0)
    x = torch.randn(2, 16, 2)
    v = particle_velocity(x)
    assert v.shape == x.shape and torch.allclose(v.sum(1), torch.zeros(2, 2), atol=1e-4)


def test_patient_screen_splits():
    d = patient_screen(n_cells=50, dim=4)
    assert len(d) == 8 * 5 * 3 and not d.paired and d.num_treatments == 5
    pat = d.extra["patient"]
    assert set(pat[d.splits["test"]].tolist()) == {0, 1}
    assert set(pat[d.splits["cal"]].tolist()) == {2}
    assert len(set(d.splits["train"]) & set(d.splits["test"])) == 0
    d3 = patient_screen(n_cells=50, dim=4, fold=3)
    assert set(d3.extra["patient"][d3.splits["test"]].tolist()) == {6, 7}


def test_too_few_patients_or_negative_sizes_are_refused():
    import pytest

    # 2 patients: the calibration patient (2k + 2) % 2 = 0 was also a test patient;
    # 3 patients: no training patient at all
    for n in (2, 3):
        with pytest.raises(ValueError, match="n_patients"):
            patient_screen(n_patients=n, n_cells=20, n_replicates=1)
    d = patient_screen(n_patients=4, n_cells=20, n_replicates=1, n_treatments=1, fold=1)
    pat = d.extra["patient"]
    parts = [set(pat[d.splits[k]].tolist()) for k in ("train", "cal", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    # negative counts gave overlapping splits (cal = [-1], the same pair as test = [0])
    with pytest.raises(ValueError, match="n_train"):
        linear_map(n_train=-1, n_cal=1, n_test=1)
    with pytest.raises(ValueError, match="n_cal"):
        interacting_particles(n_train=2, n_cal=-1, n_test=1, n_points=8)
    with pytest.raises(ValueError, match="at least one pair"):
        linear_map(n_train=0, n_cal=0, n_test=0)


def test_redraw_targets_all_problems():
    for name, kw in [
        ("B1", dict(rotations=1, train_letters="AB")),
        ("B2", dict(n_train=2, n_cal=0, n_test=2, n_points=64)),
        ("B3", dict(n_train=2, n_cal=0, n_test=2, n_points=16, steps=5)),
        ("B4", dict(n_cells=40, dim=3)),
    ]:
        d = make_population_problem(name, **kw).subset("test")
        r = redraw_targets(d, seed=3)
        assert [x.shape for x in r] == [x.shape for x in d.target]
        assert not torch.equal(r[0], d.target[0])
        # seeded: the same seed repeats every pair's draw, another seed draws others
        again, other = redraw_targets(d, seed=3), redraw_targets(d, seed=4)
        assert all(torch.equal(a, b) for a, b in zip(r, again)), name
        assert not any(torch.equal(a, b) for a, b in zip(r, other)), name


@pytest.mark.parametrize(
    "name, kw, law_dim",
    [
        ("B1", dict(rotations=1, train_letters="A", val_letter="B", test_letter="C"), 2),
        ("B2", dict(n_train=2, n_cal=0, n_test=1, n_points=8), 2),
        ("B3", dict(n_train=2, n_cal=0, n_test=1, n_points=8, steps=2), 2),
        ("B4", dict(n_cells=8, dim=4, n_treatments=1, n_replicates=1), 4),
    ],
)
def test_redraw_targets_refuses_targets_of_another_dimension_than_the_law(name, kw, law_dim):
    # sources and targets agree with each other (d = law_dim + 1) but not with the recorded
    # law: B2 failed with torch's raw matmul error, B1, B3 and B4 returned law_dim-d draws
    d = make_population_problem(name, **kw)
    gen = torch.Generator().manual_seed(0)
    pops = [torch.randn(t.shape[0], law_dim + 1, generator=gen) for t in d.target]
    other = dataclasses.replace(d, source=pops, target=[p.clone() for p in pops])
    msg = rf"^data: target 0 has shape \({pops[0].shape[0]}, {law_dim + 1}\) \(dimension "
    msg += rf"{law_dim + 1}\), but '{d.name}' records a law of dimension {law_dim} "
    with pytest.raises(ValueError, match=msg):
        redraw_targets(other, seed=1)
    # one pair of another dimension among lawful ones is named by its index
    last = len(d.target) - 1
    one = dataclasses.replace(d, target=d.target[:-1] + [pops[-1]])
    with pytest.raises(ValueError, match=rf"^data: target {last} has shape"):
        redraw_targets(one, seed=1)


def test_patient_screen_replica_split():
    n_rep = 3
    kw = dict(n_cells=30, dim=4, n_treatments=2, n_replicates=n_rep, seed=7)
    patient = patient_screen(fold=1, **kw)
    assert patient.name == "B4-screen-fold1"
    assert patient.same_populations(patient_screen(fold=1, split="patient", **kw))
    pat = patient.extra["patient"]
    rep = patient.source_id % n_rep  # source_id = patient * n_replicates + replicate
    assert torch.equal(patient.extra["replicate"], rep)
    # same_populations can say no: another seed, or one changed target point
    assert not patient.same_populations(patient_screen(fold=1, **{**kw, "seed": 8}))
    other = patient_screen(fold=1, **kw)
    other.target[5] = other.target[5].clone()
    other.target[5][0, 0] += 1e-6
    assert not patient.same_populations(other)
    with pytest.raises(TypeError, match="^other: "):
        patient.same_populations(patient.source)
    for fold in range(n_rep):
        d = patient_screen(fold=fold, split="replica", **kw)
        assert d.name == f"B4-screen-replica{fold}"
        # the same populations as the patient split (only splits and name differ)
        assert d.same_populations(patient)
        parts = [d.splits[k] for k in ("train", "cal", "test")]
        assert sorted(i for p in parts for i in p) == list(range(len(d)))  # disjoint, covering
        assert set(rep[d.splits["test"]].tolist()) == {fold}
        assert set(rep[d.splits["cal"]].tolist()) == {(fold + 1) % n_rep}
        assert set(rep[d.splits["train"]].tolist()) == set(range(n_rep)) - {
            fold,
            (fold + 1) % n_rep,
        }
        # test: exactly one replicate of every (patient, treatment)
        keys = [(int(pat[i]), int(d.treatment[i])) for i in d.splits["test"]]
        assert sorted(keys) == [(p, t) for p in range(8) for t in range(2)]
        # the pairs of a test replicate share its source population (one control per replicate)
        for i in d.splits["test"]:
            j = int(pat[i]) * n_rep * 2 + fold * 2  # the pair of treatment 0 of that replicate
            assert torch.equal(d.source[i], d.source[j])
    # the cal replicate wraps around: 4 replicates, fold 3 -> test 3, cal 0, train 1 and 2
    d4 = patient_screen(fold=3, split="replica", **{**kw, "n_replicates": 4})
    rep4 = d4.source_id % 4
    got = [set(rep4[d4.splits[k]].tolist()) for k in ("test", "cal", "train")]
    assert got == [{3}, {0}, {1, 2}]


def test_patient_screen_split_refusals():
    import pytest

    kw = dict(n_cells=20, dim=3, n_treatments=1)
    with pytest.raises(ValueError, match="split: expected 'patient' or 'replica', received 'rep'"):
        patient_screen(split="rep", **kw)
    with pytest.raises(TypeError, match="split"):
        patient_screen(split=None, **kw)
    for n in (1, 2):
        with pytest.raises(ValueError, match="n_replicates: .*needs n_replicates >= 3"):
            patient_screen(split="replica", n_replicates=n, **kw)
    # replica folds run over the replicates, patient folds over patient pairs
    with pytest.raises(ValueError, match=r"fold: expected 0\.\.2 \(replica split\), received 3"):
        patient_screen(split="replica", fold=3, **kw)
    with pytest.raises(ValueError, match=r"fold: expected 0\.\.3 \(patient split\), received 4"):
        patient_screen(fold=4, **kw)
    with pytest.raises(ValueError, match="fold"):
        patient_screen(split="replica", fold=-1, **kw)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("B1", dict(rotations=1, train_letters="AB")),
        ("B2", dict(n_train=2, n_cal=0, n_test=1, n_points=32)),
        ("B3", dict(n_train=2, n_cal=0, n_test=1, n_points=16, steps=5)),
        ("B4", dict(n_cells=30, dim=3)),
    ],
)
def test_generators_are_seeded_and_ignore_the_global_stream(name, kw):
    """The same seed gives the same populations whatever torch's global stream holds; another
    seed gives other populations (the data sets are generated on the fly, never downloaded)."""
    torch.manual_seed(1)
    a = make_population_problem(name, seed=5, **kw)
    torch.manual_seed(2)
    b = make_population_problem(name, seed=5, **kw)
    c = make_population_problem(name, seed=6, **kw)
    assert len(a) == len(b) == len(c) and len(a) > 0
    for x, y in zip(a.source + a.target, b.source + b.target):
        assert torch.equal(x, y), name
    assert not all(torch.equal(x, y) for x, y in zip(a.source + a.target, c.source + c.target))


@pytest.mark.parametrize(
    ("name", "kw", "key"),
    [
        ("B1", dict(rotations=1, train_letters="A", val_letter="B", test_letter="C"), "letter"),
        ("B2", dict(n_train=2, n_cal=0, n_test=1, n_points=8), "A"),
        ("B3", dict(n_train=2, n_cal=0, n_test=1, n_points=8, steps=2), "mixture"),
        ("B4", dict(n_cells=8, dim=4, n_treatments=1, n_replicates=1), "offset"),
    ],
)
def test_redraw_targets_refuses_per_pair_laws_that_do_not_number_the_targets(name, kw, key):
    # extra held one law entry fewer than the targets: B2 failed with a raw IndexError, B1
    # and B3 returned one draw fewer (zip stopped at the shortest), B4 an IndexError too
    d = make_population_problem(name, **kw)
    n = len(d.target)
    short = dataclasses.replace(d, extra={**d.extra, key: d.extra[key][:-1]})
    msg = rf"^data: '{d.name}' has {n} targets but extra\['{key}'\] holds {n - 1} entries"
    with pytest.raises(ValueError, match=msg):
        redraw_targets(short, seed=1)
    assert len(redraw_targets(d, seed=1)) == n  # the recorded laws number the targets


def test_a_data_set_without_pairs_prints_no_sizes_and_subsets_name_their_splits():
    d = interacting_particles(n_train=4, n_cal=2, n_test=2, n_points=8, steps=2)
    empty = dataclasses.replace(d, source=[], target=[], splits={}, extra={})
    text = repr(empty)
    assert "pairs=0" in text and "source_points=None" in text and "dim=None" in text
    with pytest.raises(KeyError, match=r"split: expected one of \['cal', 'test', 'train'\]"):
        d.subset("validation")


def test_same_populations_tells_features_from_none():
    d = interacting_particles(n_train=4, n_cal=2, n_test=2, n_points=8, steps=2)
    assert d.same_populations(dataclasses.replace(d))
    with_features = dataclasses.replace(d, source_features=[torch.zeros(3) for _ in d.source])
    assert not d.same_populations(with_features) and not with_features.same_populations(d)


def test_redraw_targets_and_letter_points_refuse_what_they_do_not_know():
    d = interacting_particles(n_train=4, n_cal=2, n_test=2, n_points=8, steps=2)
    with pytest.raises(ValueError, match=r"^data: no target sampler for problem 'mine'$"):
        redraw_targets(dataclasses.replace(d, name="mine"), seed=1)
    for bad in ("AB", "1", ""):
        with pytest.raises(ValueError, match=r"^letter: expected a single letter, received"):
            letter_points(bad)
    with pytest.raises(
        TypeError, match=r"^letter: expected a str \(a single letter\), received int$"
    ):
        letter_points(3)  # a ValueError before
