import math
import re
from fractions import Fraction

import pytest
import torch

from bayesphys.meta_fm import (
    conformal_coverage,
    conformal_radius,
    population_metrics,
    sampling_noise_w2,
)
from bayesphys.meta_fm._canonical import canonical_order


def test_conformal_radius_rank_is_exact_despite_float_rounding():
    # ceil((n + 1)(1 - alpha)) with alpha = 0.95, n = 19 is ceil(1) = 1: the smallest score;
    # in floats 20 * (1 - 0.95) = 1.0000000000000009 -> rank 2
    scores = [float(i) for i in range(1, 20)]
    assert conformal_radius(scores, 0.95) == 1.0
    assert conformal_radius([float(i) for i in range(1, 100)], 0.99) == 1.0
    assert conformal_radius([float(i) for i in range(1, 10)], 0.7) == 3.0
    assert conformal_coverage(scores, [1.5], 0.95) == (1.0, 0.0)
    for n in range(1, 200):
        for a in range(1, 100):
            alpha = a / 100
            k = math.ceil((n + 1) * (1 - Fraction(a, 100)))
            want = float(k) if k <= n else math.inf
            assert conformal_radius([float(i) for i in range(1, n + 1)], alpha) == want, (n, alpha)


def test_conformal_radius_of_a_tiny_alpha_is_infinite():
    # 1 - 1e-17 rounds to 1.0 in floats: the rank was refused as a "level" of 1.0
    assert conformal_radius([1.0, 2.0], 1e-17) == math.inf
    assert conformal_radius([float(i) for i in range(1, 20)], 1e-300) == math.inf


def _needed(message: str) -> int:
    return int(re.search(r"needs at least (\d+)", message).group(1))


@pytest.mark.parametrize("alpha", [1 / k for k in range(3, 40)] + [0.1, 0.05, 0.3, 0.15, 0.49])
def test_conformal_coverage_warning_names_the_fewest_scores_with_a_finite_radius(alpha):
    # 1 / (1/3) is 3.0 in floats: the warning asked for 2 scores while 2 gave an infinite radius
    with pytest.warns(UserWarning, match="too few") as rec:
        conformal_coverage([0.0], [0.5], alpha)
    need = _needed(str(rec[0].message))
    assert need >= 2
    assert conformal_radius([float(i) for i in range(need - 1)], alpha) == math.inf
    assert conformal_radius([float(i) for i in range(need)], alpha) == float(need - 1)


def test_conformal_coverage_with_an_infinite_score_does_not_call_the_scores_too_few():
    scores = [float(i) for i in range(1, 9)] + [math.inf, math.inf]  # rank 10 of 10 at 0.1
    with pytest.warns(UserWarning, match="rank 10 of 10 is infinite"):
        assert conformal_coverage(scores, [0.5, 50.0], 0.1) == (math.inf, 1.0)


def test_metrics_take_the_largest_seed_and_derive_their_streams_modulo_2_64():
    # seed + 1 (and seed + 2r + 2) overflowed torch's seed range: a valid seed 2**64 - 1 was
    # refused with "seed: ... received 18446744073709551616", a seed the caller never passed
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 2, generator=gen), torch.randn(12, 2, generator=gen)
    top = 2**64 - 1
    met = population_metrics(x, y, max_points=5, seed=top)
    # the target's subsample comes from seed + 1 wrapped: 0 (each drawn from the points in
    # their canonical order)
    x, y = x[canonical_order(x)], y[canonical_order(y)]
    q = y[torch.randperm(12, generator=torch.Generator().manual_seed(0))[:5]]
    p = x[torch.randperm(12, generator=torch.Generator().manual_seed(top))[:5]]
    assert met == population_metrics(p, q)
    noise = sampling_noise_w2([x, y], 4, seed=top, splits=2)
    assert math.isfinite(noise) and noise > 0


def test_mmd_anchor_is_the_rbf_mmd_averaged_over_the_gammas():
    """mmd_anchor = mean over gamma in MMD_GAMMAS of the biased MMD^2 with the kernel
    exp(-gamma |a - b|^2) (bandwidth h = 1 / gamma), against numpy."""
    import numpy as np

    from bayesphys.meta_fm.evaluation import MMD_GAMMAS, mmd_anchor

    g = torch.Generator().manual_seed(0)
    x = torch.randn(25, 3, generator=g, dtype=torch.float64)
    y = 0.5 + 1.3 * torch.randn(20, 3, generator=g, dtype=torch.float64)

    def kmean(a, b, gamma):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-gamma * d2).mean()

    a, b = x.numpy(), y.numpy()
    want = np.mean([kmean(a, a, gm) + kmean(b, b, gm) - 2 * kmean(a, b, gm) for gm in MMD_GAMMAS])
    assert mmd_anchor(x, y) == pytest.approx(float(want), rel=1e-10)


def test_correlation_of_correlations_uses_the_strictly_upper_entries():
    """r = Pearson correlation of the d(d-1)/2 strictly upper-triangular feature correlations
    of the two populations (the unit diagonal is no information), against numpy."""
    import numpy as np

    from bayesphys.meta_fm.evaluation import correlation_of_correlations

    g = torch.Generator().manual_seed(1)
    mix = torch.randn(5, 5, generator=g, dtype=torch.float64)
    p = torch.randn(60, 5, generator=g, dtype=torch.float64) @ mix
    q = torch.randn(80, 5, generator=g, dtype=torch.float64) @ (
        mix + 0.5 * torch.randn(5, 5, generator=g, dtype=torch.float64)
    )
    iu = np.triu_indices(5, k=1)
    cp, cq = np.corrcoef(p.numpy().T)[iu], np.corrcoef(q.numpy().T)[iu]
    want = np.corrcoef(cp, cq)[0, 1]
    assert correlation_of_correlations(p, q) == pytest.approx(float(want), rel=1e-10)


def test_conformal_coverage_counts_a_test_score_equal_to_the_radius_as_covered():
    """The conformal set is {s <= radius}: a test score equal to the radius is inside."""
    from bayesphys.meta_fm.evaluation import conformal_coverage

    cal = [float(v) for v in range(1, 20)]  # 19 scores, alpha 0.1: rank 18, radius 18
    q, cov = conformal_coverage(cal, [18.0, 18.5, 1.0, 30.0], alpha=0.1)
    assert q == 18.0 and cov == 0.5


def test_w2_metrics_beyond_memory_name_max_points_before_any_solve(
    memory_limit, no_dense_allocation
):
    """population_metrics, ensemble_spread and sampling_noise_w2 solve exact OT on at most
    ``max_points`` points (``None``: every point). Beyond the memory the refusal came from
    wasserstein, naming its own ``x/y``, which these functions do not have; it now names
    ``max_points``, the argument that sizes the solve, before any solve. A ``max_points``
    that fits passes."""
    from bayesphys.meta_fm import ensemble_spread

    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(40, 2, generator=g, dtype=torch.float64) for _ in range(2))
    memory_limit(4000)  # 40 x 40 pairs (about 52 kB) do not fit, 5 x 5 do
    fits = population_metrics(a, b, max_points=5)
    assert all(math.isfinite(v) for v in fits.values())
    no_dense_allocation("bayesphys.meta_fm.evaluation.wasserstein")
    want = r"^max_points: exact optimal transport between 40 and 40 points \(max_points=None"
    with pytest.raises(MemoryError, match=want + r".* pass a smaller max_points"):
        population_metrics(a, b)
    with pytest.raises(MemoryError, match=want):
        ensemble_spread([a, b])
    with pytest.raises(MemoryError, match=want):
        sampling_noise_w2([a, b], 40)
