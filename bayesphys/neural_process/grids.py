r"""Random collocation grids: probability measures over point sets.

A grid measure :math:`\pi(X)` draws a set :math:`X = (x_1, \dots, x_N)` inside the box
:math:`\Omega = \prod_d [l_d, u_d]`. Training maximises
:math:`\mathbb E_{X \sim \pi}[\mathcal L(X)]` by Monte Carlo, one fresh grid per instance per step
(Vadeboncoeur et al., ICML 2023, sec. 3).

* :class:`UniformGrid` — :math:`x_i \overset{iid}{\sim} U(\Omega)` (the reference setting).
* :class:`SobolGrid` — a scrambled Sobol net (``torch.quasirandom.SobolEngine``), randomly
  shifted modulo 1 per instance (Cranley-Patterson), so each point is still marginally uniform
  (unbiased) while the set covers :math:`\Omega` more evenly (lower variance).
* :class:`AdaptiveGrid` — importance sampling: :math:`x_i \sim q = (1-\alpha)\,U(\Omega) +
  \alpha\,h`, with :math:`h` piecewise constant on bins, proportional to the running
  root-mean-square residual. Each point carries the weight :math:`\omega_i = p(x_i)/q(x_i)` (``p``
  uniform) so the weighted residual sum :math:`\sum_i \omega_i \ell(x_i)` has the same
  expectation as under the uniform measure (unbiased); the defensive mixture keeps
  :math:`\omega_i \le 1/(1-\alpha)`.

* :class:`LayoutMixture` — **not** a collocation measure (biased on purpose): observation
  layouts for training the inverse network on clustered / gappy point sets. Per instance, with
  probability ``p_uniform`` i.i.d. uniform points, otherwise a mixture of ``K ~ U{1..max_clusters}``
  Gaussian clusters with centres uniform in the box and sd log-uniform in ``[sd_min, sd_max]``
  (relative to the box side), clipped into the box. Weights are ones.

Every ``sample(batch, n)`` returns ``(points [batch, n, dim], weights [batch, n])``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_real, did_you_mean
from .._device import model_device, resolve_dtype
from .._process_state import sobol_engine

__all__ = [
    "check_box",
    "GridMeasure",
    "UniformGrid",
    "SobolGrid",
    "AdaptiveGrid",
    "LayoutMixture",
    "check_points",
    "make_grid",
]

MARGIN = 1e-5


def check_points(
    name: str,
    x: Tensor,
    lower: Sequence[float],
    upper: Sequence[float],
    *,
    strict: bool = False,
) -> Tensor:
    """Validate a point set ``[..., N, dim]`` inside ``[lower, upper]`` (closed; open if
    ``strict``); returns ``x`` itself, checked, not a copy.

    Raises ``TypeError`` for a non-tensor or boolean / complex coordinates, ``ValueError`` for
    a wrong last dimension, an empty set, NaN/Inf, or points outside the domain (naming how
    many and the first of them). The box is checked first (:func:`check_box`: equally long,
    finite, ``lower < upper``; a NaN bound passed every point, and bounds of unequal length
    were compared entry by entry as far as the shorter went).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, received {type(x).__name__}")
    strict = check_bool("strict", strict)
    check_box(lower, upper)
    if x.is_complex() or x.dtype == torch.bool:  # True/False compared as 1/0 with the box
        kind = "complex" if x.is_complex() else "boolean"
        raise TypeError(f"{name}: expected real coordinates, received {kind} ({x.dtype})")
    dim = len(lower)
    if x.ndim < 2 or x.shape[-1] != dim:
        raise ValueError(f"{name}: expected shape [..., N, {dim}], received {tuple(x.shape)}")
    if x.shape[-2] == 0:
        raise ValueError(f"{name}: expected a non-empty point set (N >= 1), received N = 0")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite coordinates, received NaN/Inf")
    lo = torch.as_tensor(lower, dtype=x.dtype, device=x.device)
    hi = torch.as_tensor(upper, dtype=x.dtype, device=x.device)
    out = (x <= lo) | (x >= hi) if strict else (x < lo) | (x > hi)
    if bool(out.any()):
        k = int(out.any(-1).sum())
        worst = x[out.any(-1)][0].tolist()
        raise ValueError(
            f"{name}: expected points inside the domain {list(lower)} .. {list(upper)}, "
            f"received {k} outside (e.g. {worst})"
        )
    return x


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def check_box(lower: Any, upper: Any, dim: int | None = None) -> tuple[list[float], list[float]]:
    """``lower``, ``upper`` as equally long (``dim``, when given) non-empty lists of finite
    floats with ``lower < upper`` (``TypeError``/``ValueError`` naming ``lower/upper``)."""
    got = f"received {lower!r}, {upper!r}"
    if isinstance(lower, (str, bytes)) or isinstance(upper, (str, bytes)):
        raise TypeError(f"lower/upper: expected sequences of numbers, {got}")
    try:
        lo, hi = [float(a) for a in lower], [float(b) for b in upper]
    except (TypeError, ValueError):
        raise TypeError(f"lower/upper: expected sequences of numbers, {got}") from None
    if dim is not None and (len(lo) != dim or len(hi) != dim):
        raise ValueError(f"lower/upper: expected {dim} bounds each (dim_x = {dim}), {got}")
    if len(lo) != len(hi) or not lo:
        raise ValueError(f"lower/upper: expected equal non-zero lengths, {got}")
    if not all(math.isfinite(v) for v in lo + hi) or any(a >= b for a, b in zip(lo, hi)):
        raise ValueError(f"lower/upper: expected finite bounds with lower < upper, {got}")
    return lo, hi


class GridMeasure:
    """Base class: a distribution over ``n``-point sets in the box ``[lower, upper]``."""

    def __init__(self, lower: Sequence[float], upper: Sequence[float], margin: float = MARGIN):
        self.lower, self.upper = check_box(lower, upper)
        margin = check_real("margin", margin, minimum=0.0)
        side = min(b - a for a, b in zip(self.lower, self.upper))
        if not 2 * margin < side:
            raise ValueError(
                f"margin: expected a number below half the shortest side ({side / 2}), "
                f"received {margin}"
            )
        self.margin = margin
        self.dim = len(self.lower)

    def _map(self, unit: Tensor) -> Tensor:
        lo = torch.as_tensor(self.lower, dtype=unit.dtype, device=unit.device) + self.margin
        hi = torch.as_tensor(self.upper, dtype=unit.dtype, device=unit.device) - self.margin
        return lo + (hi - lo) * unit

    def _unit(self, batch: int, n: int, *, generator, dtype, device) -> Tensor:
        raise NotImplementedError

    def sample(
        self,
        batch: int,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | str | None = torch.float32,
        device: torch.device | str | None = "cpu",
    ) -> tuple[Tensor, Tensor]:
        """Draw ``batch`` grids of ``n`` points: ``(points [batch, n, dim], weights [batch, n])``
        (``dtype`` floating; ``None`` the default float32, as the signature says; ``device``
        as for a model: ``None`` the CPU, an unknown or unavailable one a ``ValueError``;
        ``generator`` a ``torch.Generator`` or ``None``, torch's global stream: another is a
        ``TypeError``)."""
        dtype = resolve_dtype(dtype, default=torch.float32)  # None gave float64
        # an unknown device string failed inside torch.rand with torch's list of device types
        device = model_device(device)
        n = check_int("n", n)
        if n < 1:
            raise ValueError(f"n: expected at least one collocation point, received {n}")
        batch = check_int("batch", batch, minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            # a seed passed here failed inside torch.rand, or as "'int' object has no
            # attribute 'device'"
            raise TypeError(
                f"generator: expected a torch.Generator or None, received "
                f"{type(generator).__name__} (for a seed, pass "
                f"torch.Generator().manual_seed(seed))"
            )
        unit, wts = self._unit(batch, n, generator=generator, dtype=dtype, device=device)
        return self._map(unit), wts

    def update(self, points: Tensor, residual_sq: Tensor) -> None:  # noqa: B027
        """Feed back squared residuals ``residual_sq [B, N]`` at ``points [B, N, dim]`` (used
        by adaptive measures only; the others ignore them)."""


class UniformGrid(GridMeasure):
    """i.i.d. uniform points (the reference code's measure)."""

    def _unit(self, batch, n, *, generator, dtype, device):
        u = torch.rand((batch, n, self.dim), generator=generator, dtype=dtype, device=device)
        return u, torch.ones(batch, n, dtype=dtype, device=device)


class SobolGrid(GridMeasure):
    """Scrambled Sobol points with an independent uniform shift (mod 1) per grid."""

    def _unit(self, batch, n, *, generator, dtype, device):
        gd = _gen_device(generator)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=gd).item())
        eng = sobol_engine(self.dim, seed)
        base = eng.draw(n, dtype=torch.float64).to(dtype=dtype, device=device)
        shift = torch.rand((batch, 1, self.dim), generator=generator, dtype=dtype, device=gd)
        u = torch.remainder(base.unsqueeze(0) + shift.to(device), 1.0)
        return u, torch.ones(batch, n, dtype=dtype, device=device)


class AdaptiveGrid(GridMeasure):
    r"""Residual-driven importance sampling with a defensive uniform component (unbiased).

    Parameters
    ----------
    bins
        bins per dimension of the piecewise-constant proposal.
    alpha
        mixture weight of the residual-driven part (``0`` gives the uniform measure).
    decay
        exponential moving-average factor of the per-bin mean squared residual: the weight
        of the old score, :math:`s_b \leftarrow \text{decay}\, s_b + (1 - \text{decay})\,
        \overline{r^2}_b` for each bin :math:`b` the batch visits (others kept); the first
        :meth:`update` sets :math:`s_b = \overline{r^2}_b`, and the batch's overall mean
        in the bins it does not visit. Bins are numbered row-major (dimension 0 slowest).
    """

    def __init__(
        self,
        lower: Sequence[float],
        upper: Sequence[float],
        margin: float = MARGIN,
        *,
        bins: int = 16,
        alpha: float = 0.5,
        decay: float = 0.5,
    ):
        super().__init__(lower, upper, margin)
        alpha = check_real("alpha", alpha, minimum=0.0)
        if not alpha < 1.0:
            raise ValueError(f"alpha: expected a value in [0, 1), received {alpha}")
        bins = check_int("bins", bins, minimum=1)
        decay = check_real("decay", decay, minimum=0.0, maximum=1.0)
        self.bins, self.alpha, self.decay = bins, alpha, decay
        self.score = torch.ones(self.bins**self.dim, dtype=torch.float64)
        self.initialised = False

    def _bin_index(self, unit: Tensor) -> Tensor:
        idx = (unit * self.bins).long().clamp_(0, self.bins - 1)
        flat = torch.zeros(unit.shape[:-1], dtype=torch.long, device=unit.device)
        for d in range(self.dim):
            flat = flat * self.bins + idx[..., d]
        return flat

    def _probs(self) -> Tensor:
        s = self.score.sqrt()  # proportional to the RMS residual per bin
        return s / s.sum()

    def _unit(self, batch, n, *, generator, dtype, device):
        nb = self.bins**self.dim
        gd = _gen_device(generator)
        probs = self._probs().to(gd)
        f64 = torch.float64
        use_h = torch.rand((batch, n), generator=generator, dtype=f64, device=gd) < self.alpha
        cell = torch.multinomial(probs, batch * n, replacement=True, generator=generator)
        cell = cell.reshape(batch, n)
        jitter = torch.rand((batch, n, self.dim), generator=generator, dtype=f64, device=gd)
        digits = []
        rem = cell
        for _ in range(self.dim):
            digits.append(rem % self.bins)
            rem = rem // self.bins
        digits = torch.stack(digits[::-1], -1).to(torch.float64)
        from_h = (digits + jitter) / self.bins
        from_u = torch.rand((batch, n, self.dim), generator=generator, dtype=f64, device=gd)
        unit = torch.where(use_h.unsqueeze(-1), from_h, from_u)
        q = (1 - self.alpha) + self.alpha * nb * probs[self._bin_index(unit)]  # density on [0,1]^d
        return unit.to(dtype=dtype, device=device), (1.0 / q).to(dtype=dtype, device=device)

    def update(self, points: Tensor, residual_sq: Tensor) -> None:
        """EMA of the per-bin mean squared residual (``points`` ``[B, N, dim]`` in the domain,
        ``residual_sq`` ``[B, N]``). A batch with a non-finite residual (a diverging step, which
        the fit refuses) is skipped: it would leave NaN bin scores and no valid proposal."""
        if points.shape[-1:] != (self.dim,) or tuple(residual_sq.shape) != tuple(points.shape[:-1]):
            raise ValueError(
                f"points/residual_sq: expected shapes [..., N, {self.dim}] and [..., N], received "
                f"{tuple(points.shape)}, {tuple(residual_sq.shape)}"
            )
        if not bool(torch.isfinite(residual_sq).all()):
            return
        with torch.no_grad():
            lo = torch.as_tensor(self.lower, dtype=torch.float64) + self.margin
            hi = torch.as_tensor(self.upper, dtype=torch.float64) - self.margin
            unit = (points.detach().to("cpu", torch.float64) - lo) / (hi - lo)
            idx = self._bin_index(unit).reshape(-1)
            r = residual_sq.detach().to("cpu", torch.float64).reshape(-1)
            nb = self.bins**self.dim
            tot = torch.zeros(nb, dtype=torch.float64).index_add_(0, idx, r)
            cnt = torch.zeros(nb, dtype=torch.float64).index_add_(0, idx, torch.ones_like(r))
            seen = cnt > 0
            if not self.initialised:  # start from the first batch's level
                self.score = torch.full_like(self.score, float(r.mean()))
            mean = torch.where(seen, tot / cnt.clamp_min(1), self.score)
            if not self.initialised:
                self.initialised = True
                self.score = mean.clamp_min(1e-12)
                return
            self.score = torch.where(
                seen, self.decay * self.score + (1 - self.decay) * mean, self.score
            ).clamp_min(1e-12)

    def state_dict(self) -> dict:
        """``{"score": [bins**dim] bin scores (float64, a copy), "initialised": bool}``."""
        return {"score": self.score.clone(), "initialised": self.initialised}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s ``state``: ``score`` finite positive bin scores
        ``[bins**dim]`` (``ValueError`` otherwise), ``initialised``."""
        score = state["score"]
        if not isinstance(score, Tensor) or tuple(score.shape) != tuple(self.score.shape):
            got = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
            raise ValueError(
                f"state['score']: expected {self.bins**self.dim} bin scores (bins={self.bins}, "
                f"dim={self.dim}), received {got}"
            )
        if score.is_complex() or not bool((torch.isfinite(score) & (score > 0)).all()):
            # the proposal is proportional to sqrt(score): a NaN or negative one broke sampling
            raise ValueError("state['score']: expected finite positive bin scores")
        self.score = score.to(torch.float64).clone()
        self.initialised = bool(state["initialised"])


class LayoutMixture(GridMeasure):
    """Uniform or clustered observation layouts (see the module docstring; not unbiased)."""

    def __init__(
        self,
        lower: Sequence[float],
        upper: Sequence[float],
        margin: float = MARGIN,
        *,
        p_uniform: float = 0.3,
        max_clusters: int = 3,
        sd_min: float = 0.03,
        sd_max: float = 0.3,
    ):
        super().__init__(lower, upper, margin)
        p_uniform = check_real("p_uniform", p_uniform, minimum=0.0, maximum=1.0)
        max_clusters = check_int("max_clusters", max_clusters, minimum=1)
        sd_min = check_real("sd_min", sd_min, minimum=0.0, strict=True)
        sd_max = check_real("sd_max", sd_max, minimum=0.0, strict=True)
        if not sd_min <= sd_max:
            raise ValueError(
                f"sd_min/sd_max: expected 0 < sd_min <= sd_max, received {sd_min}, {sd_max}"
            )
        self.p_uniform, self.max_clusters = p_uniform, max_clusters
        self.sd_min, self.sd_max = sd_min, sd_max

    def _unit(self, batch, n, *, generator, dtype, device):
        gd, f = _gen_device(generator), torch.float64
        kmax, d = self.max_clusters, self.dim
        centres = torch.rand((batch, kmax, d), generator=generator, dtype=f, device=gd)
        lsd = torch.rand((batch, kmax, 1), generator=generator, dtype=f, device=gd)
        sd = self.sd_min * (self.sd_max / self.sd_min) ** lsd
        k = torch.randint(1, kmax + 1, (batch, 1), generator=generator, device=gd)
        pick = (torch.rand((batch, n), generator=generator, dtype=f, device=gd) * k).long()
        idx = pick.unsqueeze(-1).expand(-1, -1, d)
        noise = torch.randn((batch, n, d), generator=generator, dtype=f, device=gd)
        clus = centres.gather(1, idx) + sd.expand(-1, -1, d).gather(1, idx) * noise
        clus = clus.clamp(0.0, 1.0)
        uni = torch.rand((batch, n, d), generator=generator, dtype=f, device=gd)
        is_uni = torch.rand((batch, 1, 1), generator=generator, dtype=f, device=gd) < self.p_uniform
        unit = torch.where(is_uni, uni, clus)
        return unit.to(dtype=dtype, device=device), torch.ones(batch, n, dtype=dtype, device=device)


def make_grid(kind: str, lower: Sequence[float], upper: Sequence[float], **kw: Any) -> GridMeasure:
    """``"uniform"``, ``"sobol"``, ``"adaptive"`` or ``"layouts"`` -> a :class:`GridMeasure`."""
    kinds = {
        "uniform": UniformGrid,
        "sobol": SobolGrid,
        "adaptive": AdaptiveGrid,
        "layouts": LayoutMixture,
    }
    if kind not in kinds:
        raise ValueError(
            f"grid: expected one of {sorted(kinds)}, received "
            f"{kind!r}{did_you_mean(kind, sorted(kinds))}"
        )
    return kinds[kind](lower, upper, **kw)
