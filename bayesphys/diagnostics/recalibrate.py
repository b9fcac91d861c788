r"""Post-hoc recalibration of any :class:`~bayesphys.Posterior`, fitted on held-out simulations.

Off by default: nothing in bayesphys wraps a posterior unless asked. Two maps, both fitted on
pairs (posterior :math:`p_i`, true field :math:`u_i`) from simulations the model was not
trained on, and both evaluated on a *further* held-out set whose coverage is reported:

* **variance scaling** — :math:`u' = \mu + s\,(u - \mu)`, so :math:`\sigma' = s\sigma` and the
  quantiles scale about the mean. ``method="zscore"`` takes
  :math:`s^2 = \overline{z^2}` with :math:`z = (u - \mu)/\sigma` over all held-out points
  (the Gaussian maximum-likelihood scale); ``method="conformal"`` takes
  :math:`s = \hat q_{\lceil (n+1)\alpha\rceil/n}(|z|) / \Phi^{-1}((1+\alpha)/2)`, the
  split-conformal scale that makes the central :math:`\alpha` interval cover at least :math:`\alpha`
  of exchangeable new points (a ``ValueError`` when :math:`\lceil (n+1)\alpha\rceil > n`, e.g.
  fewer than 9 scores at :math:`\alpha = 0.9`: no finite scale has that guarantee). The
  guarantee is exact for a base whose central interval is :math:`\mu \pm
  \Phi^{-1}((1+\alpha)/2)\,\sigma` (Gaussian); for an empirical base with ``L`` draws the
  scores are divided by the draw-count factor :math:`c_L` and its interval is read from the
  draws, so the guarantee is only approximate: with few draws (``L = 5``) an exact
  posterior's recalibrated coverage can fall about 0.01 below :math:`\alpha`.
* **quantile recalibration** (Kuleshov, Fenner, Ermon 2018, "Accurate uncertainties for deep
  learning using calibrated regression", ICML) — with PIT values :math:`p = F_i(u_i)` over the
  held-out points, the isotonic map :math:`R(p) = \hat P(\mathrm{PIT} \le p)` (the empirical CDF of
  the PITs, monotone by construction) gives the recalibrated CDF :math:`G = R \circ F`, i.e.
  :math:`G^{-1}(q) = F^{-1}(R^{-1}(q))`, with :math:`R^{-1}` linear through
  :math:`(k/(P+1), p_{(k)})` of the ``P`` sorted PITs (unbiased positions: the sample quantile
  at position :math:`(P - 1)q` under-covers by about :math:`(1 - 2q)/(P+1)` per tail), and
  :math:`R` (``r_forward``) its inverse, linear through :math:`(p_{(k)}, k/(P+1))`.
  Marginals are handled through a grid of base quantiles at ``n_grid`` probabilities
  :math:`\Phi(z)`, ``z`` equispaced in :math:`[-7, 7]` (:math:`[-5, 5]` for a float32
  posterior; linear interpolation); draws are mapped
  by :math:`F^{-1}(R^{-1}(F(x)))`, which keeps the base posterior's dependence structure (its
  copula).

  For an empirical base (:class:`~bayesphys.SamplePosterior`, ``L`` draws per marginal) the
  base CDF is the one under which a truth exchangeable with the draws has a uniform PIT:
  :math:`F(x_{(j)}) = j/(L+1)` at the sorted draws (the position of the ``j``-th of ``L``
  exchangeable draws, :math:`E[F_{\rm true}(x_{(j)})] = j/(L+1)`), linear in between, and
  Gaussian tails of the draws' sd :math:`\hat\sigma` beyond them,
  :math:`F^{-1}(p) = x_{(1)} + \hat\sigma\,(\Phi^{-1}(p) - \Phi^{-1}(\tfrac1{L+1}))` for
  :math:`p < 1/(L+1)` (mirrored above :math:`x_{(L)}`). A truth of SBC rank ``r`` among the
  draws then has :math:`F(u) \in (r/(L+1), (r+1)/(L+1))`, so :math:`R(j/(L+1)) = P(r < j)`:
  a calibrated base keeps its draws (:math:`R(j/(L+1)) = j/(L+1)`), and for any base the
  mapped draw :math:`x'_{(j)} = F^{-1}(R^{-1}(j/(L+1)))` has
  :math:`P(u < x'_{(j)}) = j/(L+1)`, i.e. the truth's rank among the mapped draws is uniform
  (up to the error of ``R`` fitted on finitely many PITs), whatever the tails. The tails
  only decide where an outer draw goes when it must move outwards (an overconfident base).
  (The interpolated sample quantiles of ``torch.quantile`` put :math:`x_{(j)}` at
  :math:`(j-1)/(L-1)`, the extreme draws at probabilities 0 and 1: those never moved, so the
  truth's chance of falling outside the draws stayed that of the base, and even an exact base
  was distorted.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_seed, did_you_mean, offset_seed
from .._device import check_finite, values_as_tensor
from .._posterior_args import _check_level, _check_levels
from .._posterior_base import is_posterior, missing_members
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..metrics import calibration_curve
from ..posterior import Posterior, SamplePosterior
from .conformal import conformal_min_scores, conformal_rank
from .recalibrated import RecalibratedPosterior, _interp_rows
from .simulate import _pit_coverage

__all__ = ["conformal_rank", "conformal_min_scores", "Recalibrator"]

_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: quantile-table entries per block of :meth:`Recalibrator._base_quantiles` (8 MB in float64)
_TABLE_BLOCK = 2**20


def _check_method(method: Any) -> str:
    if method not in ("zscore", "conformal", "quantile"):
        raise ValueError(
            f"method: expected 'zscore', 'conformal' or 'quantile', received {method!r}"
            f"{did_you_mean(method, ('zscore', 'conformal', 'quantile'))}"
        )
    return method


def _c_l(n_draws: int) -> float:
    r"""The finite-draw factor :math:`c_L = \sqrt{(L+1)(L-1)/(L(L-3))}` for ``L > 3`` draws
    (1 for ``L <= 3``, where :math:`E[1/\mathrm{sd}^2]` is infinite and no factor helps).

    With :math:`\bar x` and :math:`\mathrm{sd}(x)` (``correction=1``) estimated from ``L``
    Gaussian draws and a truth :math:`t` exchangeable with them,
    :math:`E[(t - \bar x)^2/\mathrm{sd}(x)^2] = \frac{L+1}{L}\cdot\frac{L-1}{L-3} = c_L^2`
    (:math:`t - \bar x \sim N(0, \sigma^2 (1 + 1/L))` independent of
    :math:`\mathrm{sd}(x)^2 \sim \sigma^2\chi^2_{L-1}/(L-1)`), not 1: :math:`c_L^2 = 1.364`
    at ``L = 11``, 1.184 at ``L = 19``, 1.114 at ``L = 29``. Held-out z-scores of an empirical
    posterior are divided by :math:`c_L` so that an exact posterior gets the scale 1.
    """
    if n_draws <= 3:
        return 1.0
    return ((n_draws + 1) * (n_draws - 1) / (n_draws * (n_draws - 3))) ** 0.5


def _draws_factor(post: Posterior) -> float:
    """:func:`_c_l` of an empirical posterior's draw count (chains times draws); 1 for any
    other posterior, whose mean and sd are not estimated from draws."""
    if isinstance(post, SamplePosterior):
        return _c_l(post.num_chains * post.num_draws)
    return 1.0


def _check_pairs(posteriors: Sequence[Posterior], truths: Sequence[Tensor]) -> list[Tensor]:
    """A sequence of ``Posterior`` (draws refused by name: they lack ``batch_shape``), equal
    non-zero lengths; each truth finite and of its posterior's ``batch + event`` shape
    (a broadcastable truth such as ``[1]`` for an event ``(101,)`` would be used silently).
    Returns the truths as tensors in their posterior's dtype and device (arrays accepted)."""
    if is_posterior(posteriors) or not isinstance(posteriors, Sequence):
        raise TypeError(
            f"posteriors: expected a sequence (list) of Posterior, one per held-out problem, "
            f"received {type(posteriors).__name__}"
        )
    if len(posteriors) != len(truths) or not posteriors:
        raise ValueError(
            f"posteriors/truths: expected equal non-zero lengths, received "
            f"{len(posteriors)} and {len(truths)}"
        )
    for i, p in enumerate(posteriors):
        # draws (what fit_recalibration and run_sbc take from infer) failed here with
        # "'Tensor' object has no attribute 'batch_shape'"
        if isinstance(p, (Tensor, np.ndarray)) or not is_posterior(p):
            hint = (
                "; wrap draws [L, *event] as SamplePosterior(draws[None])"
                if isinstance(p, (Tensor, np.ndarray))
                else missing_members(p)
            )
            raise TypeError(
                f"posteriors[{i}]: expected a Posterior, received {type(p).__name__}{hint}"
            )
    # (a flipped or read-only array is copied: torch refused the one and warned of the other)
    # (a list of Python floats through numpy: torch.as_tensor rounded it to float32, so a
    # float64 posterior's truth was off by float32's rounding)
    truths = [t if isinstance(t, Tensor) else values_as_tensor(t) for t in truths]
    for i, (p, t) in enumerate(zip(posteriors, truths)):
        expected = (*p.batch_shape, *p.event_shape)
        if tuple(t.shape) != expected:
            raise ValueError(
                f"truths[{i}]: expected shape {expected} (the posterior's batch + event), "
                f"received {tuple(t.shape)}"
            )
        check_finite(f"truths[{i}]", t)
    return [t.to(p.mean) for p, t in zip(posteriors, truths)]


class Recalibrator:
    """A fitted recalibration map (see the module docstring); ``wrap`` applies it.

    Attributes: ``method`` (``"zscore"``, ``"conformal"`` or ``"quantile"``), ``scale``
    (:math:`s`, variance methods), ``pits`` (sorted held-out PITs ``[P]``, quantile method),
    ``heldout`` (coverage on the evaluation set, filled by :meth:`evaluate`). Built by
    hand, ``pits`` is a 1-d set ``[P]`` of values in ``[0, 1]`` (sorted here), for the
    quantile method only.
    """

    def __init__(
        self,
        method: str,
        *,
        scale: float | None = None,
        pits: Tensor | None = None,
        n_grid: int = 241,
    ):
        _check_method(method)
        if method != "quantile" and pits is not None:  # kept unchecked, and never read
            raise ValueError(
                f"pits: only the quantile method reads held-out PITs; the {method} method "
                "takes a scale (leave pits=None, or pass method='quantile')"
            )
        if method == "quantile" and pits is not None:  # fit() sets them after construction
            # through numpy, not torch.as_tensor: a list of Python floats was rounded to
            # float32 before the float64 cast below
            pits = pits if isinstance(pits, Tensor) else values_as_tensor(pits)
            if pits.ndim != 1:  # a [P] set; one of any shape was flattened without a word
                raise ValueError(
                    f"pits: expected a 1-d set of held-out PITs [P], received shape "
                    f"{tuple(pits.shape)} (flatten it first if its entries are all PITs)"
                )
            if pits.numel() == 0 or not bool(((pits >= 0) & (pits <= 1)).all()):
                raise ValueError("pits: expected a non-empty set of values in [0, 1]")
            # the maps read them as sorted order statistics (only fit() sorted them)
            pits = pits.double().sort().values.cpu()
        if method == "quantile" and scale is not None:  # was kept, and never read
            raise ValueError(
                f"scale: the quantile method maps by held-out PITs, not a scale; received "
                f"scale={scale!r} (leave scale=None, or pass method='zscore' or 'conformal')"
            )
        if isinstance(scale, (bool, str, bytes)):  # True was taken as the scale 1.0, and
            # float() read the string "2" as the scale 2.0
            raise TypeError(f"scale: expected a real number > 0, received {scale!r}")
        if method != "quantile" and (
            scale is None or not (math.isfinite(float(scale)) and float(scale) > 0)
        ):
            raise ValueError(
                f"scale: the {method} method needs a finite scale > 0 (the factor applied to "
                f"the posterior's spread; 0 would collapse it to its mean), received {scale}"
            )
        self.method = method
        self.scale = None if scale is None else float(scale)
        self.pits = pits
        self.n_grid = check_int("n_grid", n_grid, minimum=2)
        self.heldout: dict[str, Any] = {}

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        posteriors: Sequence[Posterior],
        truths: Sequence[Tensor],
        *,
        method: str = "zscore",
        level: float = 0.9,
        n_grid: int = 241,
    ) -> Recalibrator:
        r"""Fit on held-out pairs: ``posteriors[i]`` (batch ``batch_i``, event ``E_i``) and
        ``truths[i] [*batch_i, *E_i]`` (exactly that shape; ``[*E_i]`` when unbatched).

        Points where the posterior standard deviation is zero are left out of the fit (a
        ``ValueError`` when no point is left). For ``"zscore"`` and ``"conformal"`` the
        held-out z-scores are :math:`z = (u - \mu)/\sigma` pointwise; for a
        :class:`~bayesphys.SamplePosterior` of ``L`` draws (chains times draws), whose
        :math:`\mu` and :math:`\sigma` are the draws' mean and sd, they are divided by the
        finite-draw factor :math:`c_L = \sqrt{(L+1)(L-1)/(L(L-3))}` (``L > 3``; 1.088 at
        ``L = 19``), as :func:`~bayesphys.diagnostics.standardised_residuals` does: without it
        an exact empirical posterior of 19 draws got the scale 1.10 instead of 1.
        """
        _check_method(method)  # an unknown one was fitted as "quantile"
        truths = _check_pairs(posteriors, truths)
        # points with zero posterior spread (pinned boundary values) carry no information
        # the protocol's variance (a user's Posterior need not have a stddev)
        sds = [p.variance.clamp_min(0).sqrt() for p in posteriors]
        keep = [(sd > 0).flatten() for sd in sds]
        if not any(bool(k.any()) for k in keep):
            raise ValueError(
                f"posteriors: every held-out point has zero posterior spread (stddev 0), so "
                f"there is nothing to fit a {method} map on; pass held-out posteriors whose "
                f"draws vary, or leave these quantities unrecalibrated"
            )
        if method in ("zscore", "conformal"):
            z = torch.cat(
                [
                    ((t - p.mean) / sd).flatten()[k] / _draws_factor(p)
                    for p, t, k, sd in zip(posteriors, truths, keep, sds)
                ]
            ).double()
            return cls.from_z(z, method=method, level=level, n_grid=n_grid)
        rec = cls("quantile", n_grid=n_grid)
        pits = torch.cat(
            [rec._base_cdf(p, t[None]).flatten()[k] for p, t, k in zip(posteriors, truths, keep)]
        )
        rec.pits = pits.double().sort().values.cpu()
        return rec

    @classmethod
    def from_z(
        cls, z: Tensor, *, method: str = "zscore", level: float = 0.9, n_grid: int = 241
    ) -> Recalibrator:
        """The variance-scaling map of held-out z-scores ``z [P]`` (``"zscore"`` or
        ``"conformal"``; see the module docstring): a tensor or an array of real numbers
        (bool and complex values are a ``TypeError``), flattened."""
        if method not in ("zscore", "conformal"):
            raise ValueError(
                f"method: expected 'zscore' or 'conformal', received {method!r}"
                f"{did_you_mean(method, ('zscore', 'conformal'))}"
            )
        level = _check_level(level)  # also for zscore, which does not read it (2.0 passed)
        if not isinstance(z, Tensor):  # an array or a list failed with an AttributeError
            try:
                z = values_as_tensor(z)
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(
                    f"z: expected held-out z-scores [P] (a tensor or an array of numbers), "
                    f"received {type(z).__name__} ({err})"
                ) from None
        if z.dtype == torch.bool or z.is_complex():
            # a mask was read as z = 0 / 1, a complex z lost its imaginary part (a warning)
            raise TypeError(f"z: expected real numbers, received dtype {z.dtype}")
        z = z.double().flatten()
        if z.numel() == 0:
            raise ValueError("z: expected at least one held-out z-score, received none")
        check_finite("z", z)
        if method == "zscore":
            if not bool((z != 0).any()):
                raise ValueError(
                    f"z: all {z.numel()} held-out z-scores are 0 (every truth equals its "
                    f"posterior mean), so the zscore scale would be 0 and collapse every "
                    f"posterior to its mean; check that truths and posteriors are paired "
                    f"correctly"
                )
            return cls(method, scale=float(z.pow(2).mean().sqrt()), n_grid=n_grid)
        n = z.numel()
        k = conformal_rank(n, level)
        if k is None:  # no order statistic has the guarantee: the conformal interval is unbounded
            raise ValueError(
                f"z: expected at least {conformal_min_scores(level)} held-out z-scores for a "
                f"finite conformal scale at level {level}, received {n}"
            )
        qz = float(z.abs().sort().values[k - 1])
        if qz == 0:
            raise ValueError(
                f"z: the split-conformal order statistic at level {level} (the {k}-th smallest "
                f"of {n} held-out |z|) is 0 ({int((z == 0).sum())} z-scores are 0: truths equal "
                f"to their posterior means), so the conformal scale would be 0 and collapse "
                f"every posterior to its mean; check that truths and posteriors are paired "
                f"correctly, or fit on held-out points whose truths vary about the posterior"
            )
        # the quantile made on the CPU explicitly (a default device set by the caller is not ours)
        q = torch.tensor((1 + level) / 2, dtype=torch.float64, device="cpu")
        s = qz / float(torch.special.ndtri(q))
        return cls(method, scale=s, n_grid=n_grid)

    # -- quantile-map helpers ----------------------------------------------------------------
    def _grid(self, like: Tensor) -> Tensor:
        """Probability grid ``[G]``: :math:`\\Phi(z)` at ``G`` equispaced ``z`` in
        :math:`[-z_{max}, z_{max}]` (7 in float64, 5 in float32), so tails are resolved."""
        zmax = 7.0 if like.dtype == torch.float64 else 5.0
        z = torch.linspace(-zmax, zmax, self.n_grid, dtype=like.dtype, device=like.device)
        return torch.special.ndtr(z)

    def _base_quantiles(self, post: Posterior) -> tuple[Tensor, Tensor]:
        """``(grid [G], Q [M, G])``: base marginal quantiles, ``M = prod(batch + event)``."""
        if isinstance(post, SamplePosterior):
            return self._sample_quantiles(post)
        grid = self._grid(post.mean)
        qg = post.quantile(grid).reshape(len(grid), -1)  # [G, M]
        # rows [M, G] written block by block into the table, each the running maximum of its
        # quantiles (guards monotonicity of empirical ones): the same numbers as the cummax of
        # the whole transposed copy, which held that copy, the maxima and their int64 indices
        # at once (three [M, G] arrays, 1.9 GB each for 1e6 points in float64; now two)
        q = qg.new_empty((qg.shape[1], qg.shape[0]))
        block = max(1, _TABLE_BLOCK // max(len(grid), 1))
        for j in range(0, q.shape[0], block):
            q[j : j + block] = torch.cummax(qg[:, j : j + block].mT, dim=-1).values
        return grid, q

    def _sample_quantiles(self, post: SamplePosterior) -> tuple[Tensor, Tensor]:
        r"""``(grid [G'], Q [M, G'])`` of an empirical base with ``L`` draws per marginal: the
        ``L`` sorted draws at :math:`j/(L+1)`, ``j = 1..L``, and the grid points
        :math:`\Phi(z)` outside :math:`[1/(L+1), L/(L+1)]` with Gaussian tails
        :math:`x_{(1)} + \hat\sigma (z - \Phi^{-1}(1/(L+1)))` below (mirrored above);
        :math:`\hat\sigma` ``[M]`` is each marginal's sample sd (see the module docstring)."""
        flat = post._flat()
        n = flat.shape[0]
        x = flat.reshape(n, -1).mT.sort(-1).values  # [M, L]
        knots = torch.arange(1, n + 1, dtype=x.dtype, device=x.device) / (n + 1)  # [L]
        zmax = 7.0 if x.dtype == torch.float64 else 5.0
        z = torch.linspace(-zmax, zmax, self.n_grid, dtype=x.dtype, device=x.device)
        z1 = torch.special.ndtri(knots[:1])  # Phi^{-1}(1/(L+1)) < 0; the upper end is -z1
        z_lo, z_hi = z[z < z1], z[z > -z1]
        sd = x.std(-1, keepdim=True)  # [M, 1]
        q = torch.cat([x[:, :1] + sd * (z_lo - z1), x, x[:, -1:] + sd * (z_hi + z1)], -1)
        grid = torch.cat([torch.special.ndtr(z_lo), knots, torch.special.ndtr(z_hi)])
        return grid, q

    def _base_cdf(self, post: Posterior, x: Tensor) -> Tensor:
        """Base marginal CDF of ``x [S, *batch, *event]`` -> ``[S, *batch, *event]``."""
        grid, q = self._base_quantiles(post)
        xs = x.reshape(x.shape[0], -1).mT
        p = _interp_rows(xs, q, grid)  # the grid as one shared row: no [M, G] copy
        return p.mT.reshape(x.shape)

    def _fitted_pits(self, what: str) -> Tensor:
        """The sorted held-out PITs ``[P]`` of a fitted quantile map; ``ValueError`` naming
        ``what`` (the method called) for a variance-scaling map (it has no PIT map) or an
        unfitted one (both read ``None`` and failed with an ``AttributeError``)."""
        if self.method != "quantile":
            raise ValueError(
                f"{what}: the PIT map of the quantile method; this is a {self.method!r} map "
                f"(variance scaling by {self.scale})"
            )
        if self.pits is None:
            raise ValueError(
                f"{what}: this quantile map was never fitted (it holds no held-out PITs); build "
                "it with Recalibrator.fit(posteriors, truths), or with Recalibrator('quantile', "
                "pits=...) from PITs of held-out problems"
            )
        return self.pits

    def r_inverse(self, q: Tensor) -> Tensor:
        r""":math:`R^{-1}(q)` for ``q [*]`` of any shape (same shape out, ``[*]``): the
        ``q``-quantile of the
        ``P`` sorted held-out PITs :math:`p_{(k)}`, linear through :math:`(k/(P+1), p_{(k)})`
        (:math:`E[R_{\rm true}(p_{(k)})] = k/(P+1)` for any continuous PIT law, so the mapped
        quantiles carry no :math:`O(1/P)` bias), constant beyond the extreme PITs, clamped to
        the grid."""
        pits = self._fitted_pits("Recalibrator.r_inverse").to(q)
        n = pits.numel()
        pos = (q.clamp(0, 1) * (n + 1) - 1).flatten().clamp(0, n - 1)
        lo = pos.floor().long().clamp(0, n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        w = pos - lo.to(pos)
        out = (pits[lo] * (1 - w) + pits[hi] * w).reshape(q.shape)
        grid = self._grid(q)
        return out.clamp(float(grid[0]), float(grid[-1]))

    def r_forward(self, p: Tensor) -> Tensor:
        r""":math:`R(p)` for ``p [*]`` of any shape (same shape out, ``[*]``): the CDF of the
        held-out PITs
        that :meth:`r_inverse` inverts, linear through :math:`(p_{(k)}, k/(P+1))` of the ``P``
        sorted PITs and through :math:`(0, 0)` and :math:`(1, 1)` at the ends, so
        ``r_forward(r_inverse(q)) = q`` for :math:`q \in [1/(P+1), P/(P+1)]` and
        ``r_inverse(r_forward(p)) = p`` for :math:`p \in [p_{(1)}, p_{(P)}]` (distinct PITs;
        a run of tied PITs takes the rank of its last one).
        (The step empirical CDF :math:`\#\{k: p_{(k)} \le p\}/P` was not the inverse of the
        map applied: :math:`R(R^{-1}(0.2)) = 0.25` for PITs 0.1, 0.3, 0.6, 0.9.)"""
        pits = self._fitted_pits("Recalibrator.r_forward").to(p)
        n = pits.numel()
        ends = pits.new_tensor([0.0, 1.0])
        xp = torch.cat([ends[:1], pits, ends[1:]])
        fp = torch.cat([ends[:1], torch.arange(1, n + 1).to(pits) / (n + 1), ends[1:]])
        # tied PITs (0 and 1 are common with few draws) take the rank of the last of their run,
        # as the empirical CDF does (interpolation read the first: R(1) = 0.75 for PITs ending
        # in 1, 1)
        xp, counts = torch.unique_consecutive(xp, return_counts=True)
        fp = fp[counts.cumsum(0) - 1]
        out = _interp_rows(p.clamp(0, 1).reshape(1, -1), xp[None], fp[None])
        return out.reshape(p.shape)

    # -- application ---------------------------------------------------------------------------
    def _same_map(self, other: Any) -> bool:
        """Whether ``other`` is this map or a :class:`Recalibrator` equal to it (the same
        method, scale, held-out PITs and grid): wrapping with either gives the same
        posterior."""
        if other is self:
            return True
        if not isinstance(other, Recalibrator):
            return False
        if (self.method, self.scale, self.n_grid) != (other.method, other.scale, other.n_grid):
            return False
        if self.pits is None or other.pits is None:
            return self.pits is None and other.pits is None
        return self.pits.shape == other.pits.shape and torch.equal(
            self.pits, other.pits.to(self.pits)
        )

    def wrap(self, posterior: Posterior) -> RecalibratedPosterior:
        """The recalibrated posterior of ``posterior``; an unfitted quantile map is a
        ``ValueError`` naming ``Recalibrator.wrap``.

        Not idempotent: a recalibrated posterior wrapped again gets the map applied on top of
        the one it has (the maps compose: variance scaling twice spreads by :math:`s^2`).
        That is the way to stack a second map fitted on recalibrated posteriors; wrapping with
        this map (or an equal one: the same method, scale, held-out PITs and grid) a posterior
        it already wraps, as a rerun notebook cell ``post = rec.wrap(post)`` does, is a
        ``UserWarning`` (wrap ``post.base``, the unrecalibrated posterior, instead)."""
        if self.method == "quantile":
            self._fitted_pits("Recalibrator.wrap")
        inner = posterior
        while isinstance(inner, RecalibratedPosterior):
            if self._same_map(inner.recalibrator):
                warnings.warn(
                    f"posterior: already recalibrated by this map ({self!r}); wrapping it "
                    "again applies the map twice (the maps compose). Wrap the unrecalibrated "
                    "posterior (its .base) instead",
                    BayesphysUserWarning,
                    stacklevel=user_stacklevel(),
                )
                break
            inner = inner.base
        return RecalibratedPosterior(posterior, self)

    def evaluate(
        self,
        posteriors: Sequence[Posterior],
        truths: Sequence[Tensor],
        levels: Sequence[float] = _LEVELS,
        *,
        seed: int = 0,
    ) -> dict[str, Any]:
        r"""Pointwise coverage before and after recalibration on a held-out evaluation set.

        ``truths[i]``: ``[*batch_i, *E_i]``, the batch + event shape of ``posteriors[i]``.
        Returns (and stores in ``self.heldout``) ``{"levels", "coverage_before",
        "coverage_after", "n_problems"}`` (lists, one entry per level): the stored dict itself,
        not a copy (an edit of it changes what :attr:`RecalibratedPosterior.heldout_coverage`
        reports later; that property returns a copy).

        A posterior's central ``interval`` decides coverage, except for an empirical posterior
        (:class:`~bayesphys.SamplePosterior`, ``S`` draws pooled over chains): before, the
        randomised PIT of the truth among its ``S`` draws; after, among the same draws mapped by
        the recalibration (:meth:`RecalibratedPosterior.map_draws`), :math:`|u - 1/2| \le
        \alpha/2` with :math:`u = (\#\{x < t\} + V(\#\{x = t\} + 1))/(S+1)`,
        :math:`V \sim U(0, 1)` seeded by ``seed`` (the same :math:`V` before and after), as
        :func:`~bayesphys.diagnostics.field_calibration_curve` does: exactly nominal in
        expectation for draws exchangeable with the truth, where interpolated empirical
        quantiles under-cover by about :math:`2\alpha/(S+1)` (0.82 for 0.9 at ``S = 19``).
        """

        truths = _check_pairs(posteriors, truths)
        levels = _check_levels(levels)
        seed = check_seed("seed", seed)
        if self.method == "quantile":  # before the uncalibrated curves, not after them
            self._fitted_pits("Recalibrator.evaluate")

        def curve(p: Posterior, t: Tensor, recal: bool, gen: torch.Generator) -> Tensor:
            if not isinstance(p, SamplePosterior):
                return calibration_curve(self.wrap(p) if recal else p, t, levels)[1]
            d = p._flat()  # [S, *batch, *event]
            return _pit_coverage(self.wrap(p).map_draws(d) if recal else d, t, levels, gen)

        rows = {}
        for recal in (False, True):
            gen = torch.Generator().manual_seed(offset_seed(seed, 104723))
            rows[recal] = torch.stack(
                [curve(p, t, recal, gen) for p, t in zip(posteriors, truths)]
            ).mean(0)
        before, after = rows[False], rows[True]
        self.heldout = {
            "levels": list(levels),
            "coverage_before": before.tolist(),
            "coverage_after": after.tolist(),
            "n_problems": len(posteriors),
        }
        return self.heldout

    def __repr__(self) -> str:
        if self.scale is not None:
            extra = f"scale={self.scale:.4g}"
        else:
            extra = "pits=None" if self.pits is None else f"pits={len(self.pits)}"
        return f"Recalibrator(method={self.method!r}, {extra})"
