r"""B3 of the Meta Flow Matching benchmarks (Atanackovic et al., ICLR 2025, section 8):
interacting particles.

Gaussian-mixture populations pushed to :math:`T=1` by mean attraction plus kernel repulsion
(:func:`particle_velocity`, RK4, 50 steps by default: :func:`interacting_particles`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..._checks import check_int, check_real, check_seed
from ._common import _check_dtype, _check_sizes
from .pairs import PopulationPairs

__all__ = ["interacting_particles", "particle_velocity"]


def particle_velocity(x: Tensor, a: float = 1.0, b: float = 2.0, ell: float = 0.5) -> Tensor:
    r"""Interacting-particle velocity for populations ``x [P, n, d]`` -> ``[P, n, d]`` (B3 uses
    ``d = 2``).

    :math:`\dot x_j = -a(x_j - \bar x) - \frac{b}{n}\sum_k \nabla_{x_j}
    \exp(-\lVert x_j - x_k\rVert^2 / 2\ell^2)`: attraction to the population mean plus kernel
    repulsion (the minus sign makes the kernel term push particles apart). ``x`` floating;
    ``a``, ``b`` finite, ``ell > 0``. An ``ell`` whose square under- or overflows ``x``'s dtype
    gives the limit, no repulsion (as ``b = 0``).
    """
    if not isinstance(x, Tensor) or x.ndim != 3:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x: expected populations [P, n, d], received {got}")
    if not x.is_floating_point():  # torch's "expected scalar type Float but found Long"
        raise TypeError(f"x: expected floating points, received {x.dtype}")
    a, b = check_real("a", a), check_real("b", b)
    ell = check_real("ell", ell, minimum=0.0, strict=True)
    attraction = -a * (x - x.mean(1, keepdim=True))
    # ell**2 raised OverflowError past ell ~ 1.3e154: inf then gives the limit, a flat kernel
    # and no repulsion (K = 1, rep = 0)
    ell2 = ell**2 if ell < 1e150 else math.inf
    if float(torch.tensor(ell2, dtype=x.dtype)) == 0.0:
        # ell**2 underflows x's dtype (ell < ~1e-162 in float64, ~1e-23 in float32): the
        # kernel between distinct points is 0 and the self-terms cancel, so no repulsion
        # (computed, the kernel's 0 / 0 on its diagonal made every velocity NaN)
        return attraction
    sq = x.pow(2).sum(-1)
    # the kernel [P, n, n] built in two arrays, edited in place (the same operations in the
    # same order as (sq_j + sq_k - 2 x_j.x_k).clamp_min(0), then exp(-d2 / 2 ell^2): each
    # step of that expression was one more [P, n, n] array)
    gram = x @ x.mT
    ker = sq[:, :, None] + sq[:, None, :]
    ker.sub_(gram.mul_(2))
    del gram
    ker.clamp_min_(0).neg_().div_(2 * ell2).exp_()
    # sum_k (x_j - x_k) K_jk = x_j sum_k K_jk - (K x)_j
    rep = (x * ker.sum(-1, keepdim=True) - ker @ x) / (ell2 * x.shape[1])
    return attraction + b * rep


def _gmm_draw(means: Tensor, stds: Tensor, n: int, gen: torch.Generator) -> Tensor:
    comp = torch.randint(len(means), (n,), generator=gen)
    return means[comp] + stds[comp, None] * torch.randn(n, 2, generator=gen, dtype=torch.float64)


def _gmm_populations(p: int, n: int, gen: torch.Generator) -> tuple[Tensor, list]:
    out = torch.empty(p, n, 2, dtype=torch.float64)
    mix = []
    for i in range(p):
        k = int(torch.randint(2, 5, (), generator=gen))
        means = -3 + 6 * torch.rand(k, 2, generator=gen, dtype=torch.float64)
        stds = 0.2 + 0.4 * torch.rand(k, generator=gen, dtype=torch.float64)
        out[i] = _gmm_draw(means, stds, n, gen)
        mix.append((means, stds))
    return out, mix


#: populations simulated together: at most 64, and at most this many kernel entries
#: ``[chunk, n, n]`` (64 populations of B3's 256 points)
_CHUNK_POPS, _CHUNK_ENTRIES = 64, 64 * 256 * 256


def _particle_chunk(n: int) -> int:
    """Populations of ``n`` points simulated together: 64 up to 256 points, then fewer, so
    that the kernel ``[chunk, n, n]`` stays near 4M entries (64 populations of 1000 points
    held 64M, 256 MB in float32 for each of its arrays); each population's RK4 is its own,
    so the chunk does not change its values."""
    return max(1, min(_CHUNK_POPS, _CHUNK_ENTRIES // (n * n)))


def _simulate_particles(
    x0: Tensor, steps: int, a: float, b: float, ell: float, dtype: torch.dtype = torch.float32
) -> Tensor:
    """RK4 of :func:`particle_velocity` in ``dtype`` from ``x0 [P, n, 2]`` to T = 1, in chunks
    of :func:`_particle_chunk` populations."""
    x = x0.to(dtype, copy=True)  # written in place below: never x0 itself
    h = 1.0 / steps
    chunk = _particle_chunk(x.shape[1])
    for lo in range(0, x.shape[0], chunk):
        y = x[lo : lo + chunk]
        for _ in range(steps):
            k1 = particle_velocity(y, a, b, ell)
            k2 = particle_velocity(y + 0.5 * h * k1, a, b, ell)
            k3 = particle_velocity(y + 0.5 * h * k2, a, b, ell)
            k4 = particle_velocity(y + h * k3, a, b, ell)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        x[lo : lo + chunk] = y
    return x


def _check_simulated(
    x: Tensor, *, a: float, b: float, ell: float, steps: int, dtype: torch.dtype
) -> None:
    """Refuse targets ``x [P, n, 2]`` holding NaN/Inf: the explicit RK4 of stiff settings
    (a large ``|a|``, a tiny ``ell``) diverges, or finite values overflow ``dtype``; the
    targets were returned so, silently."""
    bad = ~torch.isfinite(x).flatten(1).all(1)
    if bool(bad.any()):
        raise ValueError(
            f"a, b, ell, steps: {int(bad.sum())} of {x.shape[0]} simulated target populations "
            f"hold NaN/Inf values (a={a}, b={b}, ell={ell}, steps={steps}, dtype={dtype}): the "
            "RK4 of step 1/steps diverged for these settings, or its values overflow the dtype; "
            "use more steps, a smaller |a| or |b|, a larger ell, or a wider dtype"
        )


def interacting_particles(
    *,
    n_train: int = 300,
    n_cal: int = 50,
    n_test: int = 100,
    n_points: int = 256,
    steps: int = 50,
    a: float = 1.0,
    b: float = 2.0,
    ell: float = 0.5,
    seed: int = 0,
    dtype: torch.dtype | str | None = torch.float32,
) -> PopulationPairs:
    """B3: 2-d Gaussian-mixture populations ``[n_points, 2]`` evolved to T=1 (RK4), index-paired.

    The anchor integrates with 200 RK4 steps; the default 50 steps agree with 200 to float32
    round-off at a quarter of the cost. ``n_points >= 2``, ``steps >= 1``; ``a``,
    ``b`` finite; ``ell > 0``. The simulation runs in float64 when ``dtype`` is float64 or
    ``None`` (the generator's float64 values; the targets were float32 then) -- RK4 error
    ~1e-8 at 50 steps (max-abs against 800 steps) instead of float32's ~1e-6 -- and in float32
    otherwise (float32 and narrower dtypes: the targets are rounded from float32). Settings whose
    simulation diverges (RK4 is explicit: a large ``|a|`` or a tiny ``ell`` for the ``steps``), or
    whose targets overflow ``dtype``, are refused (``ValueError``) rather than returned as NaN/Inf.

    Population ``i`` is drawn in order from one seeded stream, so it is the same whatever the
    split sizes, but the splits are index ranges (train first, test last): another ``n_train``
    or ``n_cal`` moves which populations are the test ones. To vary ``n_train`` against one
    test set, draw once with the largest sizes and shorten ``splits["train"]``.
    """
    n_points = check_int("n_points", n_points, minimum=2)
    steps = check_int("steps", steps, minimum=1)
    a, b = check_real("a", a), check_real("b", b)
    ell = check_real("ell", ell, minimum=0.0, strict=True)
    seed = check_seed("seed", seed)
    dtype = _check_dtype(dtype)
    p = _check_sizes(n_train=n_train, n_cal=n_cal, n_test=n_test)
    gen = torch.Generator().manual_seed(seed)
    x0, mix = _gmm_populations(p, n_points, gen)
    # float32 (50 vs 200 steps: round-off) unless float64 was asked for
    sim = torch.float64 if dtype in (None, torch.float64) else torch.float32
    x = _simulate_particles(x0, steps, a, b, ell, sim)
    _check_simulated(x.to(dtype), a=a, b=b, ell=ell, steps=steps, dtype=dtype or torch.float64)
    splits = {
        "train": list(range(n_train)),
        "cal": list(range(n_train, n_train + n_cal)),
        "test": list(range(n_train + n_cal, p)),
    }
    return PopulationPairs(
        name="B3-particles",
        source=list(x0.to(dtype)),
        target=list(x.to(dtype)),
        source_id=torch.arange(p),
        splits=splits,
        paired=True,
        extra={"mixture": mix, "params": {"steps": steps, "a": a, "b": b, "ell": ell}},
    )
