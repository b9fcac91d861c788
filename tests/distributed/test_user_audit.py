"""Public scale-out helpers called directly: a bad argument is named as the caller wrote it."""

from __future__ import annotations

import pytest

from bayesphys.distributed import limit_threads


@pytest.mark.parametrize(("n", "err"), [(0, ValueError), (-2, ValueError), (True, TypeError)])
def test_limit_threads_names_its_own_argument(n, err):
    # the error named 'threads_per_worker', an argument of fit_many, not of this function
    with pytest.raises(err, match=r"^n: expected an int"):
        limit_threads(n)
