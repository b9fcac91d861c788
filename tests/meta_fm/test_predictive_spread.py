"""The aleatoric (sampling-noise) part of the ensemble's predictive spread."""

import math

import pytest
import scipy.stats
import torch

from bayesphys.meta_fm import MFMEnsemble, sampling_noise_w2
from bayesphys.metrics import wasserstein
from bayesphys.problems.populations import linear_map
from tests.tiny_models import SMALL_MFM as SMALL

# tiny (often untrained) models on toy populations drive these tests: the package's warnings
# about them are expected here, not asserted (tests elsewhere assert them)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*has not been trained:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*far from every training source:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*calibration scores are too few:UserWarning"),
]


def test_sampling_noise_estimates_the_floor_of_the_predicted_law():
    # members that predict the true law exactly (an iid sample, up to tiny member noise): the
    # estimate is the W2 between two independent n-point samples of that law
    gen = torch.Generator().manual_seed(0)
    est, floor = [], []
    for rep in range(8):
        x = torch.randn(600, 2, generator=gen, dtype=torch.float64)
        members = [
            x + 1e-3 * torch.randn(600, 2, generator=gen, dtype=torch.float64) for _ in range(3)
        ]
        est.append(sampling_noise_w2(members, 300, seed=rep))
        a, b = (torch.randn(300, 2, generator=gen, dtype=torch.float64) for _ in range(2))
        floor.append(float(wasserstein(a, b, p=2)))
    ratio = sum(est) / sum(floor)
    assert 0.8 < ratio < 1.25, ratio
    # a wider law has a proportionally larger sampling noise
    wide = sampling_noise_w2([3 * m for m in members], 300, seed=7)
    assert wide == pytest.approx(3 * sampling_noise_w2(members, 300, seed=7), rel=1e-9)


def test_sampling_noise_shrinks_with_sample_size_and_checks_input():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 2, generator=gen, dtype=torch.float64)
    small = sampling_noise_w2([x, x], 50, seed=0)
    large = sampling_noise_w2([x, x], 2000, seed=0)  # capped at the 2000 points per half
    assert large < small
    assert sampling_noise_w2([x, x], 2000, max_points=50, seed=0) == pytest.approx(small)
    with pytest.raises(ValueError, match="at least one"):
        sampling_noise_w2([], 10)
    with pytest.raises(ValueError, match="one size >= 4"):
        sampling_noise_w2([x, x[:100]], 10)
    with pytest.raises(ValueError, match="one size >= 4"):
        sampling_noise_w2([x[:3]], 10)
    with pytest.raises(ValueError, match="splits"):
        sampling_noise_w2([x, x], 10, splits=0)
    with pytest.raises(ValueError, match="n: expected a sample size"):
        sampling_noise_w2([x, x], 1)


def test_more_splits_give_a_less_noisy_estimate():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(200, 2, generator=gen, dtype=torch.float64)
    one = torch.tensor([sampling_noise_w2([x, x], 100, seed=s) for s in range(12)])
    ten = torch.tensor([sampling_noise_w2([x, x], 100, seed=s, splits=10) for s in range(12)])
    assert float(ten.std()) < 0.6 * float(one.std())
    assert abs(float(ten.mean() - one.mean())) < 2 * float(one.std()) / 12**0.5


def test_uncertainty_combines_epistemic_and_aleatoric_spread():
    d = linear_map(n_train=10, n_cal=6, n_test=6, n_points=48)
    ens = MFMEnsemble(d, members=2, seed=0, **SMALL)
    ens.fit(steps=5, progress=False)
    cal, te = d.subset("cal"), d.subset("test")
    with_noise = ens.uncertainty(cal, te, max_points=48)
    epi_only = ens.uncertainty(cal, te, max_points=48, aleatoric=False)
    assert with_noise["test_spread_epistemic"] == epi_only["test_spread_epistemic"]
    assert epi_only["test_spread"] == epi_only["test_spread_epistemic"]
    assert epi_only["test_noise"] == [0.0] * 6
    for s, e, n in zip(
        with_noise["test_spread"], with_noise["test_spread_epistemic"], with_noise["test_noise"]
    ):
        assert n > 0 and s == pytest.approx(math.hypot(e, n))
    assert with_noise["test_error"] == epi_only["test_error"]
    # the rank correlations recomputed from the returned lists (scipy); without the aleatoric
    # part the predictive spread is the epistemic one, so both correlations coincide
    err = with_noise["test_error"]
    for out in (with_noise, epi_only):
        rho = scipy.stats.spearmanr(out["test_spread"], err).statistic
        rho_epi = scipy.stats.spearmanr(out["test_spread_epistemic"], err).statistic
        assert out["spearman"] == pytest.approx(rho, abs=1e-12)
        assert out["spearman_epistemic"] == pytest.approx(rho_epi, abs=1e-12)
    assert epi_only["spearman"] == epi_only["spearman_epistemic"]
    assert with_noise["spearman_epistemic"] == epi_only["spearman_epistemic"]
    # a bad noise_splits is rejected whether or not the aleatoric part is used
    for aleatoric in (True, False):
        with pytest.raises(ValueError, match="noise_splits"):
            ens.uncertainty(cal, te, max_points=48, aleatoric=aleatoric, noise_splits=0)


def test_ensemble_spread_of_identical_members_is_zero_when_subsampled():
    """Members were subsampled with seeds of their own: identical members compared different
    source rows and had a spread (0.10 on a 1244-point letter at max_points=1000)."""
    from bayesphys.meta_fm import ensemble_spread

    x = torch.randn(1244, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert ensemble_spread([x, x, x], max_points=1000) < 1e-6  # round-off of the OT cost
    assert ensemble_spread([x, x + 0.5], max_points=1000) == pytest.approx(0.5 * 2**0.5, rel=1e-6)
    # the seed picks the rows, the same for every member
    y = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    a = ensemble_spread([x, y], max_points=300, seed=0)
    b = ensemble_spread([x, y], max_points=300, seed=1)
    assert 0 < a < 0.02 and 0 < b < 0.02 and a != b
