"""The failure summary of fit_many names the first failed problem as the user wrote its id."""

from __future__ import annotations

import warnings

from bayesphys.distributed import fit_many

from . import _toy


def test_an_integer_id_is_shown_as_written_in_the_failure_summary():
    # a list of problems has ids 0..N-1, kept in an int64 index: the summary read
    # "(first, np.int64(1): ..." under numpy 2
    probs = list(_toy.problems(3, fail=(1,)).values())
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = fit_many(
            probs, _toy.build, executor="sequential", seed=0, num_samples=4, progress=False
        )
    assert res.failed == [1]
    # the ids as Python ints (not numpy scalars out of the table's int64 index)
    assert [type(i) for i in res.failed + res.ok] == [int, int, int]
    (msg,) = [str(w.message) for w in rec if "problems failed" in str(w.message)]
    assert "1 of 3 problems failed (first, 1: RuntimeError: boom" in msg, msg
