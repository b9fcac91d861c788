"""The empirical (draws) posterior (re-exported by :mod:`bayesphys.posterior`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ._checks import check_bool, check_int
from ._device import check_finite, model_device
from ._posterior_args import (
    _q_tensor,
    _sampling_generator,
    _size,
    check_export_name,
)
from ._posterior_base import _PosteriorBase
from ._process_state import make_generator
from ._quantile import draw_quantiles
from ._repr import known_repr
from ._stack import user_stacklevel
from ._warning_types import BayesphysUserWarning

__all__ = ["SamplePosterior"]


class SamplePosterior(_PosteriorBase):
    """Empirical posterior from draws ``[chain, draw, *batch, *event]``.

    Parameters
    ----------
    draws
        MCMC chains, ensemble members or generative-model samples; a single chain may be
        given as ``[draw, *batch, *event]`` with ``chains=False``. Kept as given, not copied
        (stored as ``draws``; a view of it with ``chains=False``): an in-place edit of the
        tensor afterwards changes the posterior's moments, quantiles and draws.
    event_ndim
        how many trailing dims form the event (the rest after ``chain, draw`` are batch);
        default: all of them. Default draws ``[C, S]`` with more chains than draws
        (``C > S``: likely ``[draw, point]`` draws of one chain, which need
        ``chains=False``) warn; ``event_ndim=0`` keeps that reading without a warning.
    export_name
        the variable name of the draws in :meth:`to_inference_data` when its ``name`` is not
        given (default ``"u"``).
    """

    def __init__(
        self,
        draws: Tensor,
        *,
        event_ndim: int | None = None,
        chains: bool = True,
        export_name: str = "u",
    ):
        self.export_name = check_export_name(export_name)
        if not isinstance(draws, Tensor):
            raise TypeError(f"draws: expected a torch.Tensor, received {type(draws).__name__}")
        if not draws.is_floating_point():
            raise TypeError(
                f"draws: expected a floating tensor, received dtype {draws.dtype} "
                "(convert with draws.double() or draws.float())"
            )
        chains = check_bool("chains", chains)
        if not chains:
            draws = draws.unsqueeze(0)
        if draws.ndim < 2:
            raise ValueError(
                f"draws: expected shape [chain, draw, *event], received {tuple(draws.shape)}"
            )
        if draws.shape[0] * draws.shape[1] < 2:
            raise ValueError("draws: need at least two draws for empirical moments")
        check_finite("draws", draws)
        rest = draws.ndim - 2
        if event_ndim is None and chains and rest == 0 and draws.shape[0] > draws.shape[1]:
            # [draw, point] draws of one chain (a numpy array of S draws of a field) read as
            # S chains of a few draws of one scalar: a scalar mean, and an export whose chains
            # were the draws, without a word
            warnings.warn(
                f"SamplePosterior: draws of shape {tuple(draws.shape)} are read as "
                f"{draws.shape[0]} chains of {draws.shape[1]} draws of a scalar (event shape "
                "()); for draws [draw, *event] of one chain pass chains=False, and pass "
                "event_ndim=0 to keep this reading without this warning",
                BayesphysUserWarning,
                stacklevel=user_stacklevel(),
            )
        event_ndim = rest if event_ndim is None else check_int("event_ndim", event_ndim)
        if not 0 <= event_ndim <= rest:
            raise ValueError(f"event_ndim: expected 0..{rest}, received {event_ndim}")
        self.draws = draws
        self.event_shape = draws.shape[draws.ndim - event_ndim :]
        self.batch_shape = draws.shape[2 : draws.ndim - event_ndim]

    @property
    def device(self) -> torch.device:
        """Device of the stored draws."""
        return self.draws.device

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the stored draws."""
        return self.draws.dtype

    @property
    def num_chains(self) -> int:
        """``C``, the leading dimension of the stored draws ``[C, S, *batch, *event]``."""
        return self.draws.shape[0]

    @property
    def num_draws(self) -> int:
        """``S``, draws per chain."""
        return self.draws.shape[1]

    def _flat(self) -> Tensor:
        return self.draws.reshape(self.draws.shape[0] * self.draws.shape[1], *self.draws.shape[2:])

    @property
    def mean(self) -> Tensor:
        """Empirical mean over chains and draws, ``[*batch, *event]``."""
        return self._flat().mean(0)

    @property
    def variance(self) -> Tensor:
        """Empirical (unbiased) variance, ``[*batch, *event]``."""
        return self._flat().var(0, correction=1)

    def sample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
    ) -> Tensor:
        """Resample stored draws with replacement: ``[*sample_shape, *batch, *event]``, without
        gradient (as every posterior's ``sample``: stored draws that require grad gave draws
        holding their whole graph); ``generator`` or ``seed`` (not both) makes them
        reproducible."""
        shape = _size(sample_shape)
        generator = _sampling_generator(generator, seed, self.device)
        flat = self._flat().detach()
        idx = torch.randint(
            flat.shape[0], (math.prod(shape),), device=self.device, generator=generator
        )
        return flat[idx].reshape(*shape, *flat.shape[1:])

    def rsample(self, sample_shape: int | Sequence[int] = torch.Size()) -> Tensor:
        """Not available: stored draws are not a function of parameters (``NotImplementedError``;
        :meth:`sample` resamples them, ``[*sample_shape, *batch, *event]``)."""
        raise NotImplementedError(
            "SamplePosterior.rsample: empirical draws are not reparameterisable"
        )

    def quantile(self, q: float | Sequence[float] | np.ndarray | Tensor) -> Tensor:
        """Empirical marginal quantiles ``[*q.shape, *batch, *event]`` (linear interpolation)."""
        qt = _q_tensor(q, self.draws)
        if self.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"draws: quantiles need float32 or float64 draws, received {self.dtype} "
                "(convert with draws.float())"
            )
        flat = self._flat()
        if flat[0].numel() == 0:  # an empty event: torch.quantile refuses empty input
            return flat.new_empty((*qt.shape, *flat.shape[1:]))
        out = draw_quantiles(flat, qt.reshape(-1))  # torch.quantile's, by blocks of points
        return out.reshape((*qt.shape, *flat.shape[1:]))  # a tuple: () for a scalar q and event

    def log_prob(self, value: Tensor) -> Tensor:
        """Not available: empirical draws have no density (``NotImplementedError``; a
        ``value [*, *batch, *event]`` would have given ``[*, *batch]``)."""
        raise NotImplementedError("SamplePosterior.log_prob: no density for empirical draws")

    def to(self, device: str | torch.device | None) -> SamplePosterior:
        """A copy on ``device`` (as for a model: ``None`` is the CPU, ``"auto"`` CUDA when
        present). As ``Tensor.to``, on the posterior's own device the new object shares the
        stored ``draws`` (no second copy of them): an in-place edit of one reaches the other."""
        return SamplePosterior(
            self.draws.to(model_device(device)),
            event_ndim=len(self.event_shape),
            export_name=self.export_name,
        )

    def _export_draws_fresh(self, num_chains: int | None, num_samples: int | None) -> bool:
        # a pick of the stored draws is new memory; the stored chains themselves are not
        return type(self) is SamplePosterior and (num_chains, num_samples) != (None, None)

    def _draws_for_export(
        self, num_chains: int | None, num_samples: int | None, seed: int | None
    ) -> Tensor:
        """The stored chains as they are (neither count given: ESS and R-hat stay the
        sampler's), else ``[num_chains, num_samples, *batch, *event]`` of the stored draws
        picked without replacement, ``seed`` seeding the pick (``num_chains`` default 1;
        ``num_samples`` default the stored draws shared evenly among the chains)."""
        if num_chains is None and num_samples is None:
            return self.draws
        stored = self.num_chains * self.num_draws
        chains = 1 if num_chains is None else num_chains
        per_chain = stored // chains if num_samples is None else num_samples
        if per_chain < 1:
            raise ValueError(
                f"num_chains: {chains} chains of the {stored} stored draws leave none per "
                f"chain; pass num_chains <= {stored}"
            )
        if chains * per_chain > stored:
            raise ValueError(
                f"num_samples: {per_chain} draws in each of {chains} chain(s) need "
                f"{chains * per_chain} distinct draws, but this SamplePosterior stores "
                f"{stored} ({self.num_chains} chain(s) x {self.num_draws}); pass num_samples "
                f"<= {stored // chains} (or leave num_samples and num_chains unset to export "
                "the stored chains as they are)"
            )
        gen = make_generator(seed, self.device)
        pick = torch.randperm(stored, generator=gen, device=self.device)[: chains * per_chain]
        return self._flat()[pick].reshape(chains, per_chain, *self.draws.shape[2:])

    def __repr__(self) -> str:
        # what is known of a half-built posterior (an __init__ that raised part-way)
        return known_repr(
            self,
            chains=lambda: self.num_chains,
            draws=lambda: self.num_draws,
            event_shape=lambda: tuple(self.event_shape),
            batch_shape=lambda: tuple(self.batch_shape),
            device=lambda: self.device,
        )
