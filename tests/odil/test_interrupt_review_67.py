"""A Gauss-Newton / Levenberg-Marquardt minimize whose residuals fail at the start (Ctrl-C, or
an error of the user's residual function) closes its progress bar: it stayed registered with
tqdm for as long as the traceback lived (a notebook keeps the last one), and the next bars were
drawn a line below it."""

from __future__ import annotations

import pytest
from tqdm.std import tqdm

from bayesphys.odil import DiscreteProblem, minimize


@pytest.mark.parametrize("method", ["gn", "lm"])
@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_a_failure_at_the_start_leaves_no_bar_open(method, error):
    failing = {"on": False}

    def residuals(fields, params):
        if failing["on"]:
            raise error("stop")
        return {"r": fields["u"] - params["a"]}

    prob = DiscreteProblem({"u": (4,)}, {"a": 1.0}, residuals)
    failing["on"] = True
    before = set(tqdm._instances)
    with pytest.raises(error, match="stop") as info:
        minimize(prob, method=method, steps=3, progress=True, linear_solver="dense")
    assert info.value is not None  # the traceback (and its frames) alive, as in a notebook
    assert set(tqdm._instances) - before == set()
