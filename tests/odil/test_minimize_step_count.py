"""odil.minimize's GN/LM result counts the steps taken (accepted or rejected) in ``steps`` and
records the loss at x0 and after each accepted step in ``loss_history``, as its docstring says
(a docs page's run showed steps=25 beside 19 losses, which the docstring did not explain)."""

from __future__ import annotations

import torch

from bayesphys.odil import DiscreteProblem, minimize


def _rosenbrock() -> DiscreteProblem:
    def res(f, p):
        u = f["u"]
        return {"a": 10 * (u[1] - u[0] ** 2), "b": 1 - u[0]}

    return DiscreteProblem({"u": (2,)}, {}, res)


def test_lm_steps_count_rejected_steps_and_the_history_accepted_ones():
    accepted: list[int] = []
    x0 = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    _, r = minimize(
        _rosenbrock(),
        x0,
        method="lm",
        steps=40,
        damping=1e3,
        tol=None,
        callback=lambda k, x: accepted.append(k),
    )
    assert r.steps == len(r.extra["cg_iters"])
    assert len(r.loss_history) == 1 + len(accepted)
    assert len(accepted) < r.steps  # some steps were rejected here
    losses = torch.tensor(r.loss_history)
    assert bool((losses[1:] < losses[:-1]).all())  # accepted steps only: each lowers the loss
    doc = " ".join(minimize.__doc__.split())
    assert "accepted or rejected" in doc and "after each accepted step" in doc
