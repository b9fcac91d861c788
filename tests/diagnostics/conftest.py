"""A conjugate normal-normal model whose posterior is exact, and deliberately wrong versions.

theta ~ N(0, I_2); y_j = theta + eps_j, eps_j ~ N(0, s^2 I_2), j = 1..n; posterior
N(sum y / (n + s^2), s^2 / (n + s^2) I). ``inflate`` scales the posterior sd, ``shift`` moves the
mean by ``shift`` posterior sds.
"""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior


class NormalNormal:
    def __init__(self, n_obs: int = 5, noise: float = 1.0, inflate: float = 1.0, shift=0.0):
        self.n_obs, self.noise, self.inflate, self.shift = n_obs, noise, inflate, shift

    def simulate(self, n: int, *, seed: int):
        gen = torch.Generator().manual_seed(seed)
        theta = torch.randn(n, 2, generator=gen, dtype=torch.float64)
        y = theta[:, None, :] + self.noise * torch.randn(
            n, self.n_obs, 2, generator=gen, dtype=torch.float64
        )
        return theta, y

    def infer(self, y: torch.Tensor) -> GaussianPosterior:
        s2 = self.noise**2
        prec = self.n_obs / s2 + 1.0
        var = torch.full((2,), 1.0 / prec, dtype=torch.float64)
        mean = y.sum(0) / s2 / prec + self.shift * var.sqrt()
        return GaussianPosterior(mean, DiagLinearOperator(var * self.inflate**2))


@pytest.fixture
def exact_model() -> NormalNormal:
    return NormalNormal()


@pytest.fixture
def overconfident_model() -> NormalNormal:
    return NormalNormal(inflate=0.5)


@pytest.fixture
def biased_model() -> NormalNormal:
    return NormalNormal(shift=1.5)
