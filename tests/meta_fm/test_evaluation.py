import math
from fractions import Fraction

from bayesphys.meta_fm import conformal_coverage, conformal_radius


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
