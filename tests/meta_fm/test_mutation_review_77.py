"""Review 77 (mutation testing): tests that kill hand-made mutants of the math-critical lines
of ``meta_fm``, its population generators and the cloud distances which the suite let
survive. Each test checks the right answer against an independent oracle (a closed form, a
1-D monotone transport, a hand-built rotation, scipy) and names the mutant it kills."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import kstest, spearmanr

from bayesphys.meta_fm.coupling import ot_pairing, ot_pairing_rows
from bayesphys.meta_fm.evaluation import spearman
from bayesphys.meta_fm.field import FourierFeatures
from bayesphys.problems.populations import letter_points, letters

F64 = torch.float64


def _rot(theta: float) -> torch.Tensor:
    """Counter-clockwise rotation by ``theta`` acting on column vectors, built by hand."""
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=F64)


# ------------------------------------------------------------------------- exact-OT pairing


def test_ot_pairing_of_unequal_sizes_draws_pairs_of_the_monotone_1d_plan():
    """Kills ``ot_pairing_rows`` returning ``idx // len(a), idx % len(a)`` (the flat plan index
    unravelled by the source size instead of the target size; the same for ``n = m``, which
    is all the suite paired). In 1-D the squared-Euclidean plan between ``n`` sources and
    ``m = 2n`` targets of uniform mass is the unique monotone one: the source of rank ``r``
    sends its mass to the targets of ranks ``2r`` and ``2r + 1``."""
    n, m = 5, 10
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(n, 1, generator=gen, dtype=F64)
    b = 3 * torch.rand(m, 1, generator=gen, dtype=F64) - 1
    rank_a = torch.argsort(torch.argsort(a[:, 0]))
    rank_b = torch.argsort(torch.argsort(b[:, 0]))
    seen = set()
    for seed in range(20):
        i, j = ot_pairing_rows(a, b, torch.Generator().manual_seed(seed))
        assert i.shape == j.shape == (n,)
        assert bool(((i >= 0) & (i < n)).all()) and bool(((j >= 0) & (j < m)).all())
        assert torch.equal(rank_b[j] // 2, rank_a[i])  # every pair is in the plan's support
        seen.update(zip(i.tolist(), j.tolist()))
        x0, x1 = ot_pairing(a, b, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(x0, a[i], rtol=0, atol=0)
        torch.testing.assert_close(x1, b[j], rtol=0, atol=0)
    # pairs are drawn from the plan with replacement: over 20 draws every support entry (2n of
    # mass 1/(2n) each) turns up (missing one has probability < 2n (1 - 1/(2n))^(20 n) ~ 5e-21)
    assert len(seen) == 2 * n


def test_ot_pairing_draws_its_pairs_from_the_plan_with_replacement():
    """Kills ``torch.multinomial(..., replacement=False)`` in ``ot_pairing_rows``: the module
    docstring (and torchcfm's ``OTPlanSampler``) draws the ``n`` pairs independently from the
    plan, with replacement. For ``n = m`` random points the plan is a permutation of ``n``
    entries of mass ``1/n``, so the number of distinct sources among ``n`` draws has mean
    ``n (1 - (1 - 1/n)^n)`` (0.637 n at n = 40, sd 0.049 n per call; averaged over 20 calls the
    sd is 0.011 n), while drawing without replacement gives every source once (n)."""
    n = 40
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, 2, generator=gen, dtype=F64)
    b = torch.randn(n, 2, generator=gen, dtype=F64)
    frac = []
    for seed in range(20):
        i, _ = ot_pairing_rows(a, b, torch.Generator().manual_seed(seed))
        frac.append(len(set(i.tolist())) / n)
    expected = 1 - (1 - 1 / n) ** n
    assert abs(float(np.mean(frac)) - expected) < 0.08  # 7 sd of the mean


# --------------------------------------------------------------------- Fourier features


@pytest.mark.parametrize("sigma", [0.01, 3.0])
def test_fourier_frequencies_have_standard_deviation_sigma(sigma):
    """Kills ``B = sigma**2 * N(0, 1)`` in ``FourierFeatures`` (a variance where the docstring's
    :math:`B_{ij} \\sim \\mathcal N(0, \\sigma_B^2)` wants a standard deviation; the suite read
    ``B`` back from the module, so any scale passed). On 2 x 4000 entries the sample sd is
    within 2.5 % of sigma (its relative sd is 1/sqrt(2 * 8000) = 0.8 %: 3 sd) and the mean within
    3 sd of 0 (sd sigma / sqrt(8000))."""
    ff = FourierFeatures(2, 4000, sigma, generator=torch.Generator().manual_seed(0))
    b = ff.B.double()
    assert b.shape == (2, 4000)
    assert abs(float(b.std()) / sigma - 1) < 0.025
    assert abs(float(b.mean())) < 3 * sigma / math.sqrt(8000)


# ----------------------------------------------------------------------------- Spearman


def test_spearman_of_fewer_than_three_values_is_nan_and_matches_scipy_otherwise():
    """Kills ``spearman`` returning a correlation for 2 values (``len(a) < 2`` for the
    documented ``< 3``): two distinct pairs always rank-correlate to +-1, which says nothing."""
    assert math.isnan(spearman([1.0, 2.0], [3.0, 5.0]))
    assert math.isnan(spearman([1.0, 2.0], [5.0, 3.0]))
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=7), rng.normal(size=7)
    assert spearman(a, b) == pytest.approx(float(spearmanr(a, b).statistic), abs=1e-12)


# ------------------------------------------------------------------------------ letters


def test_letter_targets_are_the_glyph_rotated_counter_clockwise_by_the_recorded_theta():
    """Kills a rotation by ``-theta`` in the letters (``x1 @ R(theta)`` for
    ``x1 @ R(theta).T`` in ``_letter_split``, or a transposed ``_rotation``): the recorded
    ``extra["theta"]`` would then not be the angle of the targets. Without target noise each
    target is exactly the glyph's points turned counter-clockwise by ``theta``, row by row
    (float64: round-off only)."""
    d = letters(
        rotations=3,
        train_letters="L",
        val_letter="X",
        test_letter="Y",
        target_noise=0.0,
        seed=2,
        dtype=None,
    )
    for tgt, ch, theta in zip(d.target, d.extra["letter"], d.extra["theta"].tolist()):
        base = letter_points(ch)
        torch.testing.assert_close(tgt, base @ _rot(theta).mT, rtol=0, atol=1e-12)


def test_letter_rotation_angles_are_uniform_on_the_whole_circle():
    """Kills ``theta = pi * U[0, 1)`` (half the circle) in ``_letter_split``: "a random
    rotation" of a glyph (an isotropic population family) is uniform over the whole circle,
    theta ~ U[0, 2 pi). Kolmogorov-Smirnov against U[0, 2 pi) on 150 recorded angles (fixed
    seed): the right law gives p = O(0.1-1); half the circle gives D = 0.5, p ~ 1e-34."""
    d = letters(rotations=50, train_letters="I", val_letter="L", test_letter="T", seed=1)
    theta = d.extra["theta"].numpy()
    assert theta.shape == (150,) and bool(((theta >= 0) & (theta < 2 * math.pi)).all())
    assert kstest(theta, "uniform", args=(0.0, 2 * math.pi)).pvalue > 1e-3
