"""ODIL's solver and Laplace posterior on a float32 problem inside a caller's
``torch.autocast("cpu", dtype=torch.bfloat16)`` block compute in the problem's dtype: the
residuals' products ran in bfloat16 (a minimiser 6e-2 off), and ``field_posterior`` called a
well-posed problem's Gauss-Newton matrix singular."""

from __future__ import annotations

import torch

from bayesphys.odil import DiscreteProblem, field_posterior, minimize, theta_covariance

F32 = torch.float32


def _run():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(30, 20, generator=gen, dtype=F32)
    y = torch.randn(30, generator=gen, dtype=F32)

    def residuals(f, p):
        u = f["u"]
        return {"data": a @ u + p["k"] - y, "smooth": 0.3 * (u[1:] - u[:-1]), "k": p["k"] - 1}

    prob = DiscreteProblem({"u": (20,)}, {"k": 1.0}, residuals, dtype=F32)
    x, _ = minimize(prob, method="lbfgs", steps=20)
    cov, _ = theta_covariance(prob, x)
    post = field_posterior(prob, x, "u")
    return x, cov, post.mean, post.variance


def test_minimize_and_laplace_under_autocast_match_the_ones_outside():
    want = _run()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _run()
    for g, w in zip(got, want, strict=True):
        assert g.dtype == F32
        torch.testing.assert_close(g, w)
