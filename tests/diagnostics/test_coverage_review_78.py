"""Coverage review 78 (diagnostics): paths of ``bayesphys.diagnostics`` that no test of the
default suite executed, driven through the public API.

- a ``simulate`` without a signature ``inspect`` can read (a compiled or wrapped callable):
  called as ``simulate(n, seed=seed)`` without the signature check, with the same record as
  the plain function (``simulate.simulated``, the ``sig = None`` fallback);
- a posterior whose declared ``batch_shape`` / ``event_shape`` match the simulated object but
  whose draws do not: the ``ValueError`` naming ``infer`` and the problem (the check after
  the draws are taken, in ``simulate_and_infer``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.diagnostics import run_sbc, simulate_and_infer

F64 = torch.float64
P = 3


def simulate(n: int, *, seed: int):
    """theta ~ N(0, I_P), y = theta + 0.5 eps (numpy, as a user's own)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n, P))
    return theta, theta + 0.5 * rng.normal(size=(n, P))


def infer(y) -> GaussianPosterior:
    """The conjugate posterior: mean y / 1.25, variance 0.2 (prior 1, noise 0.25)."""
    return GaussianPosterior(torch.as_tensor(y) / 1.25, 0.2 * torch.eye(P, dtype=F64))


class _Opaque:
    """A callable whose signature ``inspect`` cannot read (``inspect.signature`` raises
    ``TypeError``, as for some compiled callables)."""

    __signature__ = "opaque"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return simulate(*args, **kwargs)


def test_a_simulate_without_a_readable_signature_is_called_as_documented():
    import inspect

    opaque = _Opaque()
    with pytest.raises(TypeError):  # the fallback's premise
        inspect.signature(opaque)
    kw = dict(n_sims=6, n_draws=9, seed=4, progress=False)
    got = simulate_and_infer(opaque, infer, **kw)
    want = simulate_and_infer(simulate, infer, **kw)
    assert opaque.calls and all(a == (6,) and set(k) == {"seed"} for a, k in opaque.calls)
    torch.testing.assert_close(got.truth, want.truth, rtol=0, atol=0)
    torch.testing.assert_close(got.draws, want.draws, rtol=0, atol=0)


class _WideDraws(GaussianPosterior):
    """Says it is a posterior over ``[P]`` but draws ``[*sample, P + 1]``."""

    def sample(self, sample_shape=(), generator=None):
        return torch.zeros(*sample_shape, P + 1, dtype=F64)


def test_a_posterior_whose_draws_disagree_with_its_shape_is_named_by_problem():
    def wide(y):
        return _WideDraws(torch.as_tensor(y), torch.eye(P, dtype=F64))

    with pytest.raises(
        ValueError,
        match=r"^infer: expected posterior draws of the simulated object's shape \(3,\), "
        r"received draws \(9, 4\) \(problem 0\)",
    ):
        run_sbc(simulate, wide, n_sims=5, n_draws=9, progress=False)
