"""The posterior protocol and the behaviour its two implementations share (public names
re-exported by :mod:`bayesphys.posterior`)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ._posterior_args import (
    _central_quantiles,
    _check_interval_level,
)
from ._process_state import make_generator

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

__all__ = ["Posterior"]


@runtime_checkable
class Posterior(Protocol):
    """Protocol every bayesphys posterior satisfies (see the module docstring for shapes).

    A posterior over fields (or parameters) with ``batch_shape`` independent members, each an
    ``event_shape`` array; draws are ``[*sample_shape, *batch_shape, *event_shape]``.
    """

    @property
    def event_shape(self) -> torch.Size:
        """Shape of one draw of one batch member (e.g. the grid ``[n_t, n_x]``)."""
        ...

    @property
    def batch_shape(self) -> torch.Size:
        """Shape of the independent members (e.g. ``[B]`` test functions)."""
        ...

    @property
    def device(self) -> torch.device:
        """Device of the mean / stored draws."""
        ...

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the mean, variances and draws."""
        ...

    @property
    def mean(self) -> Tensor:
        """Posterior mean :math:`E[u]`, ``[*batch, *event]``."""
        ...

    @property
    def variance(self) -> Tensor:
        r"""Marginal variances :math:`\operatorname{Var}[u_i]`, ``[*batch, *event]``."""
        ...

    def sample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
    ) -> Tensor:
        """Draws ``[*sample_shape, *batch, *event]`` (``sample_shape`` an int or a sequence of
        ints) without gradient (``generator``: a :class:`torch.Generator` on the posterior's
        device for reproducible draws, or ``seed`` for one made here; not both)."""
        ...

    def rsample(self, sample_shape: int | Sequence[int] = torch.Size()) -> Tensor:
        """Reparameterised draws ``[*sample_shape, *batch, *event]`` (gradients flow to the
        parameters of the mean and covariance; not every posterior has them)."""
        ...

    def quantile(self, q: float | Sequence[float] | np.ndarray | Tensor) -> Tensor:
        """Marginal quantiles ``[*q.shape, *batch, *event]`` at levels ``q`` in (0, 1)."""
        ...

    def interval(self, level: float = 0.95) -> tuple[Tensor, Tensor]:
        """Central marginal interval ``(lower, upper)``, each ``[*batch, *event]``."""
        ...

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of ``value`` ``[*, *batch, *event]`` -> ``[*, *batch]`` (not every
        posterior has one)."""
        ...

    def to(self, device: str | torch.device | None) -> Posterior:
        """The same posterior on ``device`` (``None``: the CPU, as for a model)."""
        ...

    def to_inference_data(
        self,
        *,
        dims: list[str] | tuple[str, ...] | None = None,
        coords: dict[str, Any] | None = None,
        observed: dict[str, Any] | None = None,
        num_samples: int | None = None,
        num_chains: int | None = None,
        name: str | None = None,
        seed: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> arviz.InferenceData | xr.DataTree:
        """Posterior draws as :class:`arviz.InferenceData` (ArviZ 0.x) or an
        :class:`xarray.DataTree` (ArviZ >= 1); see ``_PosteriorBase.to_inference_data``."""
        ...


class _PosteriorBase:
    """Shared behaviour: stddev, interval, export."""

    event_shape: torch.Size
    batch_shape: torch.Size
    #: the variable name :meth:`to_inference_data` gives the draws when ``name`` is not given
    #: (``"u"``, a field; a posterior over parameters may carry another, e.g. ``"z"``)
    export_name: str = "u"

    @property
    def stddev(self) -> Tensor:
        """Marginal standard deviation ``[*batch, *event]``."""
        return self.variance.clamp_min(0).sqrt()

    def interval(self, level: float = 0.95) -> tuple[Tensor, Tensor]:
        """Central marginal interval ``(lower, upper)``, each ``[*batch, *event]``, at
        ``level`` in ``(0, 1)``: a number (a 0-d tensor or array is read as one, so the
        interval is not differentiated in it; one that requires grad is a ``UserWarning``)."""
        ((lo, hi),) = self._intervals([level])
        return lo, hi

    interval._from_quantiles = True  # type: ignore[attr-defined]  # see central_intervals

    def _intervals(self, levels: Sequence[float]) -> list[tuple[Tensor, Tensor]]:
        """:meth:`interval` at each of ``levels`` from one :meth:`quantile` call (quantiles
        are computed value by value: the same numbers as one call per level)."""
        dtype = getattr(self, "dtype", torch.float64)
        checked = [_check_interval_level(level, dtype) for level in levels]
        return _central_quantiles(self.quantile, checked)

    def to_inference_data(
        self,
        *,
        dims: list[str] | tuple[str, ...] | None = None,
        coords: dict[str, Any] | None = None,
        observed: dict[str, Any] | None = None,
        num_samples: int | None = None,
        num_chains: int | None = None,
        name: str | None = None,
        seed: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> arviz.InferenceData | xr.DataTree:
        """Export posterior draws to :class:`arviz.InferenceData` (ArviZ 0.x; an
        :class:`xarray.DataTree` of the same groups under ArviZ >= 1).

        The field named ``name`` (default the posterior's ``export_name``, ``"u"`` unless it
        was built with another) gets dims ``(chain, draw, *batch_dims, *event_dims)``. ``dims``
        names the batch dims followed by the event dims, or the event dims alone (the batch dims
        then keep their default names ``batch_0..``; default event names ``name_dim_0..``);
        ``coords`` gives their coordinate values (a name that is no dim of the export raises a
        ``ValueError``). ``params`` adds named parameter draws
        ``[chain, draw, *shape]`` to the posterior group; ``observed`` fills ``observed_data``:
        an array of the field's shape ``[*batch, *event]`` sits on the field's dims (and
        coordinates), one of its event shape on the event dims, so ``posterior.u -
        observed_data.y`` lines up point by point; other shapes get dims of their own
        (``<oname>_dim_0..``; ``<name>_obs_dim_0..`` for an array named like the field).
        ``num_samples`` draws (default 1000) in each of ``num_chains`` chains (default 1);
        ``seed`` (an int) makes the draws reproducible. A :class:`SamplePosterior` given
        neither ``num_samples`` nor ``num_chains`` exports its stored chains as they are (so
        ESS and R-hat describe the sampler; there is nothing to draw, so ``seed`` changes
        nothing); given either, it exports ``num_chains x num_samples`` of its stored draws
        picked without replacement (``seed`` seeds the pick; ``num_chains`` default 1,
        ``num_samples`` default all the stored draws shared among the chains), a
        ``ValueError`` naming ``num_samples`` when more are asked than it stores.
        """
        from .inference_data import to_inference_data

        return to_inference_data(
            self,
            dims=dims,
            coords=coords,
            observed=observed,
            num_samples=num_samples,
            num_chains=num_chains,
            name=name,
            seed=seed,
            params=params,
        )

    def _export_draws_fresh(self, num_chains: int | None, num_samples: int | None) -> bool:
        """Whether :meth:`_draws_for_export` returns new memory held nowhere else, which the
        export may take without a copy (``False``: it is copied, the safe default)."""
        return False

    def _draws_for_export(
        self, num_chains: int | None, num_samples: int | None, seed: int | None
    ) -> Tensor:
        gen = make_generator(seed, self.device)
        shape = [
            1 if num_chains is None else num_chains,
            1000 if num_samples is None else num_samples,
        ]
        return self.sample(torch.Size(shape), generator=gen)


def central_intervals(post: Any, levels: Sequence[float]) -> list[tuple[Tensor, Tensor]]:
    """``post.interval(level)`` for each of ``levels``: from one quantile call where the
    class keeps a quantile-based ``interval`` (the same numbers; a loop of ``interval`` calls
    sorted a ``SamplePosterior``'s draws once per level, ~9x the time at 10 levels), else one
    call per level."""
    # a wrapper that delegates through __getattr__ has no class attribute: the loop
    if getattr(getattr(type(post), "interval", None), "_from_quantiles", False):
        return post._intervals(levels)
    return [post.interval(lv) for lv in levels]


_ABSENT = object()
#: the members ``isinstance(value, Posterior)`` requires
_MEMBERS = (
    "event_shape",
    "batch_shape",
    "device",
    "dtype",
    "mean",
    "variance",
    "sample",
    "rsample",
    "quantile",
    "interval",
    "log_prob",
    "to",
    "to_inference_data",
)


def _has_member(value: Any, name: str) -> bool:
    if inspect.getattr_static(value, name, _ABSENT) is not _ABSENT:
        return True
    if inspect.getattr_static(type(value), "__getattr__", _ABSENT) is _ABSENT:
        return False
    try:  # a proxy that delegates through __getattr__: ask it, whatever it raises
        return hasattr(value, name)
    except Exception:
        return False


def missing_members(value: Any) -> str:
    """For an error message: `` (missing the Posterior members device, dtype)`` when ``value``
    has some but not all of the protocol's members, else ``""``."""
    # static lookups: hasattr ran the value's properties (a costly or failing variance
    # replaced the message), as Python >= 3.12's own protocol check does not
    missing = [m for m in _MEMBERS if not _has_member(value, m)]
    if not missing or len(missing) == len(_MEMBERS):
        return ""
    return f" (missing the Posterior member(s) {', '.join(missing)})"


def is_posterior(value: Any) -> bool:
    """Whether ``value`` has every member of :class:`Posterior`, the package's own classes
    first. Members are looked up statically, and a proxy that delegates through
    ``__getattr__`` is asked for them, so the answer is the same on every Python: Python
    3.12's ``isinstance(value, Posterior)`` no longer sees the members such a proxy provides
    (3.11's accepted it), and 3.11's reads every property of the value (a posterior's variance,
    three times per simulation in an SBC loop)."""
    return isinstance(value, _PosteriorBase) or all(_has_member(value, m) for m in _MEMBERS)
