r"""The posterior that a fitted :class:`~bayesphys.diagnostics.Recalibrator` returns.

:class:`RecalibratedPosterior` wraps any :class:`~bayesphys.Posterior` ``base``: variance
scaling maps :math:`u' = \mu + s\,(u - \mu)`; the quantile map (Kuleshov, Fenner, Ermon 2018)
has the recalibrated CDF :math:`G = R \circ F` and maps draws by
:math:`F^{-1}(R^{-1}(F(x)))`, through a grid of base quantiles (see
:mod:`~bayesphys.diagnostics.recalibrate` for both maps and how they are fitted).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .._device import check_on_device
from .._posterior_args import (
    _central_quantiles,
    _check_interval_level,
    _q_tensor,
    _sampling_generator,
    _size,
)
from .._posterior_base import _PosteriorBase, is_posterior
from ..posterior import Posterior

if TYPE_CHECKING:  # pragma: no cover
    from .recalibrate import Recalibrator

__all__ = ["RecalibratedPosterior"]


def _interp_rows(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Row-wise linear interpolation: ``x [M, S]`` in increasing ``xp [M, G]`` -> ``fp [M, G]``
    values (clamped at the ends). Either of ``xp`` and ``fp`` may be one row ``[G]`` shared by
    every row (the probability grid), read in place: the same numbers as that row expanded to
    ``[M, G]``, without the ``[M, G]`` copy of it (1.9 GB for a field of 1e6 points)."""
    g = xp.shape[-1]
    idx = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, g - 1)
    x0, x1 = _at(xp, idx - 1), _at(xp, idx)
    f0, f1 = _at(fp, idx - 1), _at(fp, idx)
    t = ((x - x0) / (x1 - x0).clamp_min(torch.finfo(x.dtype).tiny)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def _at(table: Tensor, idx: Tensor) -> Tensor:
    """``table [M, G]`` (or one row ``[G]`` shared by every row) at the row-wise column indices
    ``idx [M, S]`` -> ``[M, S]``."""
    return table[idx] if table.ndim == 1 else table.gather(-1, idx)


def _interp_shared(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """:func:`_interp_rows` of one row of points ``x [S]``, the same for every row, in the
    shared increasing ``xp [G]`` -> ``fp [M, G]`` values: ``[M, S]``, the same numbers as
    ``_interp_rows(x.expand(M, S), xp.expand(M, G), fp)``, with the search and the weights
    computed once (not ``M`` times) and no ``[M, S]`` array of indices or weights."""
    g = xp.shape[-1]
    idx = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, g - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    t = ((x - x0) / (x1 - x0).clamp_min(torch.finfo(x.dtype).tiny)).clamp(0, 1)
    f0, f1 = fp.index_select(-1, idx - 1), fp.index_select(-1, idx)
    return f0 + t * (f1 - f0)


class RecalibratedPosterior:
    """A :class:`~bayesphys.Posterior` wrapping ``base`` through a fitted :class:`Recalibrator`.

    Shapes are those of ``base``: ``mean``/``variance [*batch, *event]``, ``sample`` ->
    ``[*sample, *batch, *event]``, ``quantile(q)`` -> ``[*q.shape, *batch, *event]``.
    ``heldout_coverage`` reports the recaliber's coverage on its held-out evaluation set.
    Variance scaling keeps ``log_prob`` (:math:`\\log p(\\mu + (u-\\mu)/s) - N\\log s`) and
    ``rsample``; the quantile map has moments from its quantile grid and no ``log_prob``.
    """

    def __init__(self, base: Posterior, recalibrator: Recalibrator):
        if not is_posterior(base):
            raise TypeError(f"base: expected a Posterior, received {type(base).__name__}")
        # what this wrapper reads of a Recalibrator (recalibrate imports this module, so the
        # class is not imported here)
        if not all(
            hasattr(recalibrator, a)
            for a in ("method", "scale", "heldout", "r_inverse", "_fitted_pits", "_base_quantiles")
        ):
            raise TypeError(
                f"recalibrator: expected a Recalibrator, received {type(recalibrator).__name__}"
            )
        if recalibrator.method == "quantile":
            # as Recalibrator.wrap: an unfitted map failed at the first mean or draw
            recalibrator._fitted_pits("recalibrator")
        self.base = base
        self.recalibrator = recalibrator
        self.event_shape = base.event_shape
        self.batch_shape = base.batch_shape
        self._quantile_table: tuple[Tensor, Tensor] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # the quantile table is a cache, recomputed on first use: pickling it sent ~2x the base
        return {**self.__dict__, "_quantile_table": None}

    @property
    def _scaled(self) -> bool:
        return self.recalibrator.method != "quantile"

    def _base_table(self) -> tuple[Tensor, Tensor]:
        """The base's quantile table ``(grid, Q)``, computed once (base and map are fixed: it
        was recomputed, a full sort of an empirical base, by every mean / quantile / draw)."""
        if self._quantile_table is None:
            self._quantile_table = self.recalibrator._base_quantiles(self.base)
        return self._quantile_table

    @property
    def heldout_coverage(self) -> dict[str, Any]:
        """Coverage before/after on the recaliber's held-out set (empty if not evaluated); a
        copy, its lists included."""
        # deep: a shallow copy shared the recalibrator's lists of levels and coverages, so an
        # edit of one wrapped posterior's report changed the recalibrator's and every other's
        return copy.deepcopy(self.recalibrator.heldout)

    @property
    def device(self) -> torch.device:
        """The base posterior's device."""
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        """The base posterior's dtype."""
        return self.base.dtype

    @property
    def export_name(self) -> str:
        """The base posterior's ``export_name`` (``"u"`` for a base without one): the variable
        name :meth:`to_inference_data` gives the draws when ``name`` is not given (a
        recalibrated posterior over a latent ``z`` exported its draws as ``u``)."""
        return getattr(self.base, "export_name", "u")

    def _recal_quantile_flat(self, u: Tensor) -> Tensor:
        """:math:`G^{-1}(u)` ``[M, S]`` at probabilities ``u [S]``, the same for every marginal
        (row ``m`` = marginal ``m``): :math:`R^{-1}` and the grid search are computed once for
        the ``S`` values (they were computed for each of the ``M`` marginals, an ``[M, S]``
        copy of ``u`` and ten more arrays of that size: 2.9 GB and 13 s for the mean of a field
        of 1e5 points)."""
        rec = self.recalibrator
        grid, q = self._base_table()
        return _interp_shared(rec.r_inverse(u), grid, q)

    def _uniform_mid(self, g: int = 400) -> Tensor:
        """Midpoints ``(k + 1/2)/g`` used to integrate moments of :math:`G^{-1}(u)`."""
        like = self.base.mean
        return (torch.arange(g, dtype=like.dtype, device=like.device) + 0.5) / g

    @property
    def mean(self) -> Tensor:
        """Recalibrated mean ``[*batch, *event]`` (unchanged by variance scaling: then the
        base's own ``mean``, for a :class:`~bayesphys.GaussianPosterior` its stored tensor, not
        a copy; clone it before an in-place edit, which would change the base)."""
        if self._scaled:
            return self.base.mean
        vals = self._recal_quantile_flat(self._uniform_mid())
        return vals.mean(-1).reshape(*self.batch_shape, *self.event_shape)

    @property
    def variance(self) -> Tensor:
        """Recalibrated marginal variance ``[*batch, *event]``."""
        if self._scaled:
            return self.base.variance * self.recalibrator.scale**2
        vals = self._recal_quantile_flat(self._uniform_mid())
        return vals.var(-1, correction=0).reshape(*self.batch_shape, *self.event_shape)

    @property
    def stddev(self) -> Tensor:
        """Recalibrated marginal standard deviations, ``[*batch, *event]``."""
        return self.variance.clamp_min(0).sqrt()

    def map_draws(self, x: Tensor) -> Tensor:
        r"""Map draws ``x [*S, *batch, *event]`` of the base posterior to recalibrated draws
        (same shape): :math:`\mu + s(x - \mu)` or :math:`F^{-1}(R^{-1}(F(x)))` marginally,
        which keeps the base draws' dependence (copula). ``x`` is checked as
        :meth:`log_prob`'s ``value`` (its batch dims broadcasting for variance scaling, equal
        to the posterior's for the quantile map), on the posterior's device: torch's
        broadcasting or device error came from inside the map, and the quantile map mapped
        draws ``[*S, 1, *event]`` of a posterior with batch ``(B,)`` through the marginals of
        batch members taken in turn (sample 0 through member 0's, sample 1 through member 1's)."""
        self._check_value(x, "x", exact_batch=not self._scaled)
        if self._scaled:
            mu = self.base.mean
            return mu + self.recalibrator.scale * (x - mu)
        rec = self.recalibrator
        shape = x.shape
        flat = x.reshape(-1, math.prod(self.batch_shape) * math.prod(self.event_shape)).mT
        grid, q = self._base_table()
        # the grid read as one shared row (its [M, G] copy was made twice per call)
        p = _interp_rows(flat.contiguous(), q, grid)
        out = _interp_rows(rec.r_inverse(p), grid, q)
        return out.mT.reshape(shape)

    def sample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
    ) -> Tensor:
        """Draws ``[*sample_shape, *batch, *event]``: base draws mapped by the recalibration
        (``generator`` or ``seed``, not both, as the base's)."""
        if seed is not None:  # a generator made here: a base of the older sample(shape,
            # generator) signature still works
            generator = _sampling_generator(generator, seed, self.base.mean.device)
        with torch.no_grad():
            draws = self.base.sample(_size(sample_shape), generator=generator)
            return self.map_draws(draws)

    def rsample(self, sample_shape: int | Sequence[int] = torch.Size()) -> Tensor:
        r"""Reparameterised draws ``[*sample_shape, *batch, *event]`` of a variance scaling (the
        base's, mapped: :math:`\mu + s\,(x - \mu)`); ``NotImplementedError`` for a quantile
        map."""
        if not self._scaled:
            raise NotImplementedError("RecalibratedPosterior.rsample: not with a quantile map")
        return self.map_draws(self.base.rsample(_size(sample_shape)))

    def quantile(self, q: float | Sequence[float] | np.ndarray | Tensor) -> Tensor:
        """Recalibrated marginal quantiles ``[*q.shape, *batch, *event]``."""
        qt = _q_tensor(q, self.base.mean)
        if self._scaled:
            mu = self.base.mean
            # q, not qt: the base evaluates it in float64 (qt is rounded to its dtype)
            return mu + self.recalibrator.scale * (self.base.quantile(q) - mu)
        vals = self._recal_quantile_flat(qt.reshape(-1))
        return vals.mT.reshape(*qt.shape, *self.batch_shape, *self.event_shape)

    def interval(self, level: float = 0.95) -> tuple[Tensor, Tensor]:
        """Central recalibrated interval ``(lower, upper)``, each ``[*batch, *event]``."""
        ((lo, hi),) = self._intervals([level])
        return lo, hi

    interval._from_quantiles = True  # type: ignore[attr-defined]  # see central_intervals

    def _intervals(self, levels: Sequence[float]) -> list[tuple[Tensor, Tensor]]:
        """:meth:`interval` at each of ``levels`` from one :meth:`quantile` call (a level whose
        upper tail probability rounds to 1 in the posterior's dtype is refused naming
        ``level``, as for the other posteriors: it failed in the quantile naming ``q``)."""
        checked = [_check_interval_level(lv, self.dtype) for lv in levels]
        return _central_quantiles(self.quantile, checked)

    def log_prob(self, value: Tensor) -> Tensor:
        r"""Log density ``[*, *batch]`` of ``value [*, *batch, *event]`` (variance scaling only):
        :math:`\log p_{base}(\mu + (v - \mu)/s) - N \log s`, ``N = prod(event)``, ``s`` the
        recalibration scale; ``NotImplementedError`` for a quantile map."""
        if not self._scaled:
            raise NotImplementedError(
                "RecalibratedPosterior.log_prob: no density for a quantile map"
            )
        self._check_value(value)
        s = self.recalibrator.scale
        mu = self.base.mean
        n = math.prod(self.event_shape)
        return self.base.log_prob(mu + (value - mu) / s) - n * math.log(s)

    def _check_value(self, value: Any, name: str = "value", *, exact_batch: bool = False) -> None:
        """``value`` of :meth:`log_prob` (or ``x`` of :meth:`map_draws`, named ``name``): a
        tensor ``[*, *batch, *event]`` whose batch dims broadcast to the posterior's (are the
        posterior's, with ``exact_batch``), on the posterior's device, checked before the map
        (a wrong shape failed there with torch's broadcasting error, a wrong device with
        torch's device error naming neither the argument nor the posterior, before the base's
        own check), worded as the base's."""
        if not isinstance(value, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, received {type(value).__name__}")
        if not value.is_floating_point():
            # as the base's check: an integer value was scored as if it were a float
            raise TypeError(f"{name}: expected floating values, received {value.dtype}")
        event, batch = tuple(self.event_shape), tuple(self.batch_shape)
        nev = len(event)
        if value.ndim < nev or tuple(value.shape[value.ndim - nev :]) != event:
            raise ValueError(
                f"{name}: expected trailing shape {event}, received {tuple(value.shape)}"
            )
        lead = tuple(value.shape[: value.ndim - nev])
        try:
            torch.broadcast_shapes(lead, batch)
            if exact_batch and lead[len(lead) - len(batch) :] != batch:
                raise RuntimeError  # the quantile map reads the batch dims as they are
        except RuntimeError:
            raise ValueError(
                f"{name}: expected shape [*, *batch, *event] with batch dims "
                f"{'equal' if exact_batch else 'broadcasting'} to {batch}, received "
                f"{tuple(value.shape)}"
            ) from None
        hint = f" (move it with {name}.to('{{device}}'), or the posterior with .to('{{got}}'))"
        check_on_device(name, value, self.device, "the posterior's", hint=hint)

    def to(self, device: str | torch.device | None) -> RecalibratedPosterior:
        """The same recalibrated posterior on ``device`` (its base moved there)."""
        return RecalibratedPosterior(self.base.to(device), self.recalibrator)

    # the shared export (argument checks, named dims, seeded draws): the base's methods
    to_inference_data = _PosteriorBase.to_inference_data
    _draws_for_export = _PosteriorBase._draws_for_export

    def __repr__(self) -> str:
        return f"RecalibratedPosterior({self.base!r}, {self.recalibrator!r})"
