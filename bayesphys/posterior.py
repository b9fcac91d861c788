r"""The shared posterior/UQ interface.

Every bayesphys model returns a :class:`Posterior`. Shapes follow ``torch.distributions``:

* ``event_shape`` is the physical object: a field on a grid ``(nx,)``, ``(nx, ny)``,
  ``(nt, nx)``; a population ``(n, d)``; a parameter vector ``(p,)``.
* ``batch_shape`` holds independent problems (patients, test functions); ``()`` for one.
* ``sample(sample_shape)`` returns ``[*sample_shape, *batch_shape, *event_shape]``;
  ``quantile(q)`` returns ``[*q.shape, *batch_shape, *event_shape]``.

Two implementations cover every component:

* :class:`GaussianPosterior` — :math:`u \sim \mathcal N(\mu, \Sigma)` with :math:`\Sigma` held
  as a ``linear_operator`` (dense, diagonal, low-rank-plus-diagonal, Kronecker), never
  densified to sample or to take marginals.
* :class:`SamplePosterior` — draws ``[chain, draw, *batch, *event]`` (MCMC, ensembles,
  generative models) with empirical moments and quantiles.

Example
-------
>>> import torch
>>> from bayesphys import GaussianPosterior
>>> post = GaussianPosterior(torch.zeros(3), torch.eye(3))
>>> post.sample((5,)).shape
torch.Size([5, 3])
>>> lo, hi = post.interval(0.95)
>>> round(float(hi[0]), 3)
1.96
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
from linear_operator import to_dense, to_linear_operator
from linear_operator.operators import DiagLinearOperator, LinearOperator
from torch import Tensor

from ._checks import check_int
from ._device import check_finite, resolve_device
from ._linalg import diagonal, structured_root
from ._posterior_args import (
    _check_generator,
    _check_level,
    _q_tensor,
    _shape_arg,
    _size,
)

if TYPE_CHECKING:  # pragma: no cover
    import arviz

__all__ = ["Posterior", "GaussianPosterior", "SamplePosterior"]

SizeLike = "torch.Size | tuple[int, ...] | list[int] | int"


@runtime_checkable
class Posterior(Protocol):
    """Protocol every bayesphys posterior satisfies (see the module docstring for shapes)."""

    @property
    def event_shape(self) -> torch.Size: ...

    @property
    def batch_shape(self) -> torch.Size: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def mean(self) -> Tensor: ...

    @property
    def variance(self) -> Tensor: ...

    def sample(self, sample_shape=torch.Size(), generator=None) -> Tensor: ...

    def rsample(self, sample_shape=torch.Size()) -> Tensor: ...

    def quantile(self, q) -> Tensor: ...

    def interval(self, level: float = 0.95) -> tuple[Tensor, Tensor]: ...

    def log_prob(self, value: Tensor) -> Tensor: ...

    def to(self, device) -> Posterior: ...

    def to_inference_data(self, **kwargs: Any) -> arviz.InferenceData: ...


class _PosteriorBase:
    """Shared behaviour: stddev, interval, export."""

    event_shape: torch.Size
    batch_shape: torch.Size

    @property
    def stddev(self) -> Tensor:
        """Marginal standard deviation ``[*batch, *event]``."""
        return self.variance.clamp_min(0).sqrt()

    def interval(self, level: float = 0.95) -> tuple[Tensor, Tensor]:
        """Central marginal interval ``(lower, upper)``, each ``[*batch, *event]``."""
        level = _check_level(level)
        q = self.quantile([(1 - level) / 2, (1 + level) / 2])
        return q[0], q[1]

    def to_inference_data(
        self,
        *,
        dims: list[str] | tuple[str, ...] | None = None,
        coords: dict[str, Any] | None = None,
        observed: dict[str, Any] | None = None,
        num_samples: int = 1000,
        num_chains: int = 1,
        name: str = "u",
        seed: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> arviz.InferenceData:
        """Export posterior draws to :class:`arviz.InferenceData`.

        The field named ``name`` gets dims ``(chain, draw, *batch_dims, *dims)``. ``dims``
        names the batch dims followed by the event dims (default ``batch_0..``, ``name_dim_0..``);
        ``coords`` gives their coordinate values (a name that is no dim of the export raises a
        ``ValueError``). ``params`` adds named parameter draws
        ``[chain, draw, *shape]`` to the posterior group; ``observed`` fills ``observed_data``.
        ``seed`` (an int) makes the draws reproducible. A :class:`SamplePosterior` exports its
        stored chains as they are (``num_samples``, ``num_chains`` and ``seed`` do not apply).
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

    def _draws_for_export(self, num_chains: int, num_samples: int, seed: int | None) -> Tensor:
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(int(seed))
        return self.sample(torch.Size([num_chains, num_samples]), generator=gen)


class GaussianPosterior(_PosteriorBase):
    r"""Gaussian posterior :math:`\mathcal N(\mu, \Sigma)` over a field or parameter vector.

    Parameters
    ----------
    mean:
        :math:`\mu`, ``[*batch, *event]``.
    covariance:
        :math:`\Sigma`, a ``linear_operator`` or tensor ``[*batch, N, N]`` with
        ``N = prod(event_shape)``, flattened in C order. Use ``DiagLinearOperator``,
        ``LowRankRootAddedDiagLinearOperator`` or ``KroneckerProductLinearOperator`` to keep
        structure; sampling, marginals and ``log_prob`` then never form an ``N x N`` matrix.
    event_shape:
        shape of one draw; defaults to ``mean.shape`` (no batch).
    validate:
        check shapes, finiteness and (for dense covariances up to 4096) positive
        semi-definiteness now; otherwise non-PSD input fails at the first draw.
    root:
        optional custom sampler: a callable mapping base noise ``[*, M]`` to correlated
        draws ``[*, *batch, N]`` with covariance :math:`\Sigma` (e.g. pathwise/Matheron
        updates), together with ``root_dim=M``.
    root_dim:
        dimension ``M`` of the base noise of a custom ``root``.

    Notes
    -----
    Sampling uses :math:`u = \mu + L z`, :math:`L L^\top = \Sigma`, :math:`z \sim \mathcal N(0, I)`.
    """

    def __init__(
        self,
        mean: Tensor,
        covariance: LinearOperator | Tensor,
        *,
        event_shape: torch.Size | tuple[int, ...] | None = None,
        validate: bool = True,
        root=None,
        root_dim: int | None = None,
    ) -> None:
        if not isinstance(mean, Tensor):
            raise TypeError(f"mean: expected a torch.Tensor, received {type(mean).__name__}")
        if not mean.is_floating_point():
            raise TypeError(f"mean: expected a floating tensor, received dtype {mean.dtype}")
        event_shape = mean.shape if event_shape is None else _shape_arg("event_shape", event_shape)
        nev = len(event_shape)
        if tuple(mean.shape[mean.ndim - nev :]) != tuple(event_shape) or mean.ndim < nev:
            raise ValueError(
                f"mean: expected trailing shape {tuple(event_shape)}, received {tuple(mean.shape)}"
            )
        self.event_shape = event_shape
        self.batch_shape = mean.shape[: mean.ndim - nev]
        n = math.prod(event_shape)
        if not isinstance(validate, (bool, np.bool_)):
            raise TypeError(
                f"validate: expected True or False, received {type(validate).__name__} {validate!r}"
            )
        if root is not None and not callable(root):
            raise TypeError(
                f"root: expected a callable mapping base noise [*, M] to draws, received "
                f"{type(root).__name__}"
            )
        if root_dim is not None:
            if root is None:
                raise ValueError(
                    f"root_dim: only used with a custom root, received root_dim={root_dim!r} "
                    "and root=None"
                )
            root_dim = check_int("root_dim", root_dim, minimum=1)
        if isinstance(covariance, Tensor):
            if covariance.is_complex():
                raise TypeError(
                    f"covariance: expected a real tensor, received dtype {covariance.dtype}"
                )
            covariance = covariance.to(dtype=mean.dtype, device=mean.device)
            if covariance.ndim == mean.ndim and covariance.shape == mean.shape:
                raise ValueError(
                    "covariance: received a tensor with the mean's shape; pass "
                    "DiagLinearOperator(variance.flatten(...)) for a diagonal covariance"
                )
            covariance = to_linear_operator(covariance)
        if not isinstance(covariance, LinearOperator):
            raise TypeError(
                "covariance: expected a LinearOperator or a torch.Tensor, received "
                f"{type(covariance).__name__}"
            )
        if covariance.device != mean.device:  # as a tensor covariance is moved
            covariance = covariance.to(mean.device)
        if covariance.dtype != mean.dtype and not isinstance(covariance, DiagLinearOperator):
            # a tensor covariance takes the mean's dtype; so does a structured one (its root
            # would otherwise meet noise of the mean's dtype and fail at the first draw); a
            # diagonal one always worked in its own dtype and is kept as it is
            covariance = covariance.to(mean.dtype)
        expected = (*self.batch_shape, n, n)
        if tuple(covariance.shape) != expected:
            raise ValueError(
                f"covariance: expected shape {expected} for mean {tuple(mean.shape)} with "
                f"event_shape {tuple(event_shape)}, received {tuple(covariance.shape)}"
            )
        self._mean = mean
        self.covariance = covariance
        self._root = None
        self._custom_root = root
        self._custom_root_dim = root_dim
        if root is not None and root_dim is None:
            raise ValueError("root_dim: required when a custom root is given")
        if validate:
            check_finite("mean", mean)
            if isinstance(covariance, DiagLinearOperator):
                d = covariance.diagonal()
                check_finite("covariance", d)
                if bool((d < 0).any()):
                    raise ValueError(
                        f"covariance: expected non-negative variances, received min {float(d.min()):.3e}"
                    )
            elif n <= 4096 and root is None:
                dense = to_dense(covariance)
                check_finite("covariance", dense)
                if not torch.allclose(dense, dense.mT, rtol=1e-6, atol=1e-10):
                    raise ValueError("covariance: expected a symmetric matrix")
                self._get_root()

    # -- properties -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self._mean.dtype

    @property
    def mean(self) -> Tensor:
        """Posterior mean ``[*batch, *event]``."""
        return self._mean

    @property
    def variance(self) -> Tensor:
        """Marginal variances ``[*batch, *event]`` from the covariance's structured diagonal."""
        return diagonal(self.covariance).reshape(*self.batch_shape, *self.event_shape)

    # -- sampling ---------------------------------------------------------------------------
    def _get_root(self):
        if self._root is None:
            self._root = structured_root(self.covariance, "covariance")
        return self._root

    def _base_dim(self) -> int:
        if self._custom_root is not None:
            return int(self._custom_root_dim)
        return self._get_root().base_dim

    def rsample(
        self, sample_shape=torch.Size(), base_samples: Tensor | None = None, generator=None
    ) -> Tensor:
        """Reparameterised draws ``[*sample_shape, *batch, *event]``.

        ``base_samples`` (``[*sample_shape, *batch, M]``) fixes the standard-normal noise, for
        common random numbers across posteriors.
        """
        shape = _size(sample_shape)
        m = self._base_dim()
        if base_samples is None:
            _check_generator(generator, self.device)
            base_samples = torch.randn(
                (*shape, *self.batch_shape, m),
                dtype=self.dtype,
                device=self.device,
                generator=generator,
            )
        else:
            self._check_base_samples(base_samples, shape, m)
        if self._custom_root is not None:
            flat = self._custom_root(base_samples)
            n = math.prod(self.event_shape)
            if not isinstance(flat, Tensor) or flat.numel() != base_samples[..., 0].numel() * n:
                got = tuple(flat.shape) if isinstance(flat, Tensor) else type(flat).__name__
                raise ValueError(
                    f"root: expected draws [..., {n}] from base noise of shape "
                    f"{tuple(base_samples.shape)}, received {got}"
                )
        else:
            flat = self._get_root().apply(base_samples)
        flat = flat.reshape(*base_samples.shape[:-1], math.prod(self.event_shape))
        return self._mean + flat.reshape(*flat.shape[:-1], *self.event_shape)

    def _check_base_samples(self, base: Tensor, shape: torch.Size, m: int) -> None:
        if not isinstance(base, Tensor):
            raise TypeError(
                f"base_samples: expected a torch.Tensor, received {type(base).__name__}"
            )
        if base.ndim == 0 or base.shape[-1] != m:
            raise ValueError(
                f"base_samples: expected last dimension {m}, received shape {tuple(base.shape)}"
            )
        if len(shape) and tuple(base.shape[: len(shape)]) != tuple(shape):
            raise ValueError(
                f"base_samples: expected leading dims sample_shape={tuple(shape)} "
                f"([*sample_shape, *batch, {m}]), received shape {tuple(base.shape)}"
            )
        if base.device != self.device:
            raise ValueError(
                f"base_samples: expected a tensor on {self.device} (the posterior's device), "
                f"received one on {base.device}"
            )
        check_finite("base_samples", base)

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        """Draws ``[*sample_shape, *batch, *event]`` (no gradient)."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)

    def quantile(self, q) -> Tensor:
        """Marginal quantiles ``[*q.shape, *batch, *event]``: :math:`\\mu + \\sigma\\Phi^{-1}(q)`."""
        qt = _q_tensor(q, self._mean)
        z = torch.special.ndtri(qt)
        z = z.reshape(*qt.shape, *([1] * self._mean.ndim))
        return self._mean + self.stddev * z

    def log_prob(self, value: Tensor) -> Tensor:
        """Gaussian log density of ``value`` ``[*, *batch, *event]`` -> ``[*, *batch]``."""
        if self._custom_root is not None:
            raise NotImplementedError(
                "GaussianPosterior.log_prob: not available with a custom root"
            )
        if not isinstance(value, Tensor):
            raise TypeError(f"value: expected a torch.Tensor, received {type(value).__name__}")
        nev = len(self.event_shape)
        if value.ndim < nev or tuple(value.shape[value.ndim - nev :]) != tuple(self.event_shape):
            raise ValueError(
                f"value: expected trailing shape {tuple(self.event_shape)}, received {tuple(value.shape)}"
            )
        try:
            torch.broadcast_shapes(value.shape[: value.ndim - nev], self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"value: expected shape [*, *batch, *event] with batch dims broadcasting to "
                f"{tuple(self.batch_shape)}, received {tuple(value.shape)}"
            ) from None
        if value.device != self.device:
            raise ValueError(
                f"value: expected a tensor on {self.device} (the posterior's device), received "
                f"one on {value.device}"
            )
        check_finite("value", value)
        root = self._get_root()
        diff = value - self._mean  # [*, *batch, *event]: the batch dims broadcast
        diff = diff.reshape(*diff.shape[: diff.ndim - nev], -1)
        n = diff.shape[-1]
        maha = (diff * root.solve(diff)).sum(-1)
        return -0.5 * (maha + root.logdet() + n * math.log(2 * math.pi))

    def to(self, device) -> GaussianPosterior:
        """A copy on ``device`` (a custom root is not moved)."""
        dev = resolve_device(device)
        return GaussianPosterior(
            self._mean.to(dev),
            self.covariance.to(dev),
            event_shape=self.event_shape,
            validate=False,
            root=self._custom_root,
            root_dim=self._custom_root_dim,
        )

    def __repr__(self) -> str:
        return (
            f"GaussianPosterior(event_shape={tuple(self.event_shape)}, "
            f"batch_shape={tuple(self.batch_shape)}, covariance={type(self.covariance).__name__}, "
            f"device={self.device}, dtype={self.dtype})"
        )


class SamplePosterior(_PosteriorBase):
    """Empirical posterior from draws ``[chain, draw, *batch, *event]``.

    Parameters
    ----------
    draws:
        MCMC chains, ensemble members or generative-model samples; a single chain may be
        given as ``[draw, *batch, *event]`` with ``chains=False``.
    event_ndim:
        how many trailing dims form the event (the rest after ``chain, draw`` are batch);
        default: all of them.
    """

    def __init__(self, draws: Tensor, *, event_ndim: int | None = None, chains: bool = True):
        if not isinstance(draws, Tensor):
            raise TypeError(f"draws: expected a torch.Tensor, received {type(draws).__name__}")
        if not draws.is_floating_point():
            raise TypeError(
                f"draws: expected a floating tensor, received dtype {draws.dtype} "
                "(convert with draws.double() or draws.float())"
            )
        if not isinstance(chains, (bool, np.bool_)):
            raise TypeError(
                f"chains: expected True or False, received {type(chains).__name__} {chains!r}"
            )
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
        event_ndim = rest if event_ndim is None else check_int("event_ndim", event_ndim)
        if not 0 <= event_ndim <= rest:
            raise ValueError(f"event_ndim: expected 0..{rest}, received {event_ndim}")
        self.draws = draws
        self.event_shape = draws.shape[draws.ndim - event_ndim :]
        self.batch_shape = draws.shape[2 : draws.ndim - event_ndim]

    @property
    def device(self) -> torch.device:
        return self.draws.device

    @property
    def dtype(self) -> torch.dtype:
        return self.draws.dtype

    @property
    def num_chains(self) -> int:
        return self.draws.shape[0]

    @property
    def num_draws(self) -> int:
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

    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        """Resample stored draws with replacement: ``[*sample_shape, *batch, *event]``."""
        shape = _size(sample_shape)
        _check_generator(generator, self.device)
        flat = self._flat()
        idx = torch.randint(
            flat.shape[0], (math.prod(shape),), device=self.device, generator=generator
        )
        return flat[idx].reshape(*shape, *flat.shape[1:])

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        raise NotImplementedError(
            "SamplePosterior.rsample: empirical draws are not reparameterisable"
        )

    def quantile(self, q) -> Tensor:
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
        out = torch.quantile(flat, qt.reshape(-1), dim=0)
        return out.reshape((*qt.shape, *flat.shape[1:]))  # a tuple: () for a scalar q and event

    def log_prob(self, value: Tensor) -> Tensor:
        raise NotImplementedError("SamplePosterior.log_prob: no density for empirical draws")

    def to(self, device) -> SamplePosterior:
        return SamplePosterior(
            self.draws.to(resolve_device(device)), event_ndim=len(self.event_shape)
        )

    def _draws_for_export(self, num_chains: int, num_samples: int, seed: int | None) -> Tensor:
        # export the stored chains as they are (ESS and R-hat stay meaningful)
        return self.draws

    def __repr__(self) -> str:
        return (
            f"SamplePosterior(chains={self.num_chains}, draws={self.num_draws}, "
            f"event_shape={tuple(self.event_shape)}, batch_shape={tuple(self.batch_shape)}, "
            f"device={self.device})"
        )
