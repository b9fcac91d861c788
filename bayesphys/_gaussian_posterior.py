"""The Gaussian posterior (re-exported by :mod:`bayesphys.posterior`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from linear_operator import to_dense, to_linear_operator
from linear_operator.operators import (
    DenseLinearOperator,
    DiagLinearOperator,
    LinearOperator,
    ZeroLinearOperator,
)
from torch import Tensor

from ._checks import check_bool, check_int
from ._device import check_finite, check_finite_input, model_device, same_device
from ._posterior_args import (
    _check_generator,
    _q_tensor,
    _sampling_generator,
    _shape_arg,
    _size,
    check_export_name,
)
from ._posterior_base import _PosteriorBase
from ._precision import own_precision
from ._repr import known_repr
from ._structured_root import diagonal, structured_parts, structured_root

__all__ = ["GaussianPosterior"]


def _check_symmetric(dense: Tensor) -> None:
    """Refuse a covariance whose asymmetry exceeds rounding *relative to its own scale*:
    ``max |C - C^T| <= tol * max |C|`` per batch element, ``tol = max(1e-6, 1000 eps)`` (float32
    GP covariances carry ~1e-6 of rounding; a fixed absolute tolerance accepted any asymmetry
    in a matrix of entries below 1e-10 and refused ordinary float32 ones)."""
    tol = max(1e-6, 1e3 * torch.finfo(dense.dtype).eps)
    # by square tiles, each pair once: the whole difference was two more [N, N] arrays (1.6 GB
    # at N = 10^4), and tiles stay in cache (about 8x faster than the whole at N = 4100)
    step, n = 512, dense.shape[-1]
    asym = torch.zeros(dense.shape[:-2], dtype=dense.dtype, device=dense.device)
    for i in range(0, n, step):
        for j in range(i, n, step):
            tile = (
                dense[..., i : i + step, j : j + step] - dense[..., j : j + step, i : i + step].mT
            )
            asym = torch.maximum(asym, tile.abs().amax(dim=(-2, -1)))
    scale = torch.maximum(dense.amax(dim=(-2, -1)), -dense.amin(dim=(-2, -1)))  # max |C|
    if bool((asym > tol * scale).any()):
        worst = float((asym / scale.clamp_min(torch.finfo(dense.dtype).tiny)).max())
        raise ValueError(
            f"covariance: expected a symmetric matrix (max |C - C^T| / max |C| <= {tol:.1e} "
            f"for {dense.dtype}), received {worst:.2e}"
        )


def move_root(root: Callable[[Tensor], Tensor], device: torch.device) -> Callable:
    """A custom ``root`` (see :class:`GaussianPosterior`) on ``device``, by its own
    ``to(device)`` method; ``ValueError`` naming the root when it has none."""
    mover = getattr(root, "to", None)
    if not callable(mover):
        raise ValueError(
            f"device: the posterior's custom root ({type(root).__name__}) has no to(device) "
            f"method, so its draws cannot move to {device}; build the posterior on {device}, "
            "or give the root a to(device) method that returns a copy on that device"
        )
    return mover(device)


class GaussianPosterior(_PosteriorBase):
    r"""Gaussian posterior :math:`\mathcal N(\mu, \Sigma)` over a field or parameter vector.

    Parameters
    ----------
    mean
        :math:`\mu`, ``[*batch, *event]``.
    covariance
        :math:`\Sigma`, a ``linear_operator`` or tensor ``[*batch, N, N]`` with
        ``N = prod(event_shape)``, flattened in C order. Use ``DiagLinearOperator``,
        ``LowRankRootAddedDiagLinearOperator`` or ``KroneckerProductLinearOperator`` (plus a
        constant diagonal) to keep structure; sampling, marginals and ``log_prob`` then never
        form an ``N x N`` matrix. Draws and ``log_prob`` of a batched Kronecker product, as of
        any other operator, use a dense Cholesky factor ``[*batch, N, N]``.
    event_shape
        shape of one draw; defaults to ``mean.shape`` (no batch).
    validate
        check shapes, finiteness, symmetry and (for dense covariances up to 4096 points)
        positive semi-definiteness now; a larger dense one is checked for finite values,
        symmetry and non-negative variances, and other non-PSD input fails at the first draw.
        The checks read values: a posterior built inside :func:`torch.func.vmap` needs
        ``validate=False`` (torch's "data-dependent control flow" error otherwise).
    root
        optional custom sampler: a callable mapping base noise ``[*, M]`` to correlated
        draws ``[*, *batch, N]`` with covariance :math:`\Sigma` (e.g. pathwise/Matheron
        updates), together with ``root_dim=M``. For :meth:`to` another device it needs a
        ``to(device)`` method returning a copy on that device.
    root_dim
        dimension ``M`` of the base noise of a custom ``root``.
    export_name
        the variable name of the draws in :meth:`to_inference_data` when its ``name`` is not
        given (default ``"u"``, a field; e.g. ``"z"`` for a posterior over parameters).

    Notes
    -----
    Sampling uses :math:`u = \mu + L z`, :math:`L L^\top = \Sigma`, :math:`z \sim \mathcal N(0, I)`.
    ``mean`` and ``covariance`` are kept as given, not copied (as in ``torch.distributions``):
    the factor :math:`L` is computed once and cached, so a covariance edited in place after
    the build gives draws and densities of the old one beside variances of the new one; build
    a new posterior instead (or pass clones).
    A covariance that requires grad is factorised once, with its graph: after a ``backward``
    through ``log_prob`` or ``rsample``, a second one through the same posterior fails with
    torch's "Trying to backward through the graph a second time" (as for
    :class:`torch.distributions.MultivariateNormal`): build the posterior again in each
    optimisation step, or pass ``retain_graph=True``.
    Inside a caller's ``torch.autocast`` block, construction, ``variance``, draws and
    ``log_prob`` run with autocast off: they compute in the posterior's dtype, as outside it
    (autocast ran :math:`Lz` in bfloat16 and failed in Kronecker solves).
    """

    @own_precision()  # its checks (symmetry, eigenvalues) in the mean's dtype
    def __init__(
        self,
        mean: Tensor,
        covariance: LinearOperator | Tensor,
        *,
        event_shape: torch.Size | tuple[int, ...] | None = None,
        validate: bool = True,
        root: Callable[[Tensor], Tensor] | None = None,
        root_dim: int | None = None,
        export_name: str = "u",
    ) -> None:
        self.export_name = check_export_name(export_name)
        if not isinstance(mean, Tensor):
            raise TypeError(f"mean: expected a torch.Tensor, received {type(mean).__name__}")
        if not mean.is_floating_point():
            raise TypeError(f"mean: expected a floating tensor, received dtype {mean.dtype}")
        if mean.dtype not in (torch.float32, torch.float64):
            # the roots (Cholesky, eigen) and the quantiles (ndtri) have no half kernels: a half
            # mean failed deep inside torch, or only at the first quantile of a diagonal one
            raise TypeError(
                f"mean: expected float32 or float64, received {mean.dtype} (convert with "
                "mean.float())"
            )
        if mean.ndim == 0 or mean.numel() == 0:
            # a 0-d mean failed at .variance, an empty one deep in torch
            raise ValueError(
                f"mean: expected at least one dimension and one element, received shape "
                f"{tuple(mean.shape)}" + (" (use mean.reshape(1))" if mean.ndim == 0 else "")
            )
        event_shape = mean.shape if event_shape is None else _shape_arg("event_shape", event_shape)
        nev = len(event_shape)
        if tuple(mean.shape[mean.ndim - nev :]) != tuple(event_shape) or mean.ndim < nev:
            raise ValueError(
                f"mean: expected trailing shape {tuple(event_shape)}, received {tuple(mean.shape)}"
            )
        self.event_shape = event_shape
        self.batch_shape = mean.shape[: mean.ndim - nev]
        n = math.prod(event_shape)
        validate = check_bool("validate", validate)
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
        # (a LinearOperator built without tensors, e.g. IdentityLinearOperator(n), has device
        # None: it failed here with "'NoneType' object has no attribute 'type'")
        if (
            isinstance(covariance, (Tensor, LinearOperator))
            and covariance.device is not None
            and covariance.device.type == "meta"
            and mean.device.type != "meta"
        ):  # shapes only: its move to the mean's device failed with "Cannot copy out of meta
            # tensor" (both on meta, as a device test's stand-in for a second device, is kept)
            raise ValueError("covariance: expected values, received one on the 'meta' device")
        if isinstance(covariance, Tensor):
            if covariance.is_complex():
                raise TypeError(
                    f"covariance: expected a real tensor, received dtype {covariance.dtype}"
                )
            covariance = covariance.to(dtype=mean.dtype, device=mean.device)
            # a 1 x 1 field's covariance [1, 1] has the mean's shape and is right
            if covariance.shape == mean.shape and covariance.shape != (*self.batch_shape, n, n):
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
        if covariance.device is None or not same_device(covariance.device, mean.device):
            # as a tensor covariance is moved (one without a device is put on the mean's)
            covariance = covariance.to(mean.device)
        if covariance.dtype != mean.dtype:
            # every covariance takes the mean's dtype, as a tensor one always did: a structured
            # one's root would otherwise meet noise of the mean's dtype and fail at the first
            # draw, and a diagonal one in another dtype gave variances and draws in its dtype
            # while ``dtype`` reported the mean's (float64 draws from a float32 posterior)
            covariance = covariance.to(mean.dtype)
        if (
            isinstance(covariance, ZeroLinearOperator)
            and covariance.shape[-1] == covariance.shape[-2]
        ):
            # a point mass: linear_operator's ZeroLinearOperator densifies to float32 whatever
            # its dtype, and the first draw failed with "expected m1 and m2 to have the same
            # dtype"; the same zero covariance as a diagonal one in the mean's dtype
            covariance = DiagLinearOperator(
                torch.zeros(covariance.shape[:-1], dtype=mean.dtype, device=mean.device)
            )
        expected = (*self.batch_shape, n, n)
        if tuple(covariance.shape) != expected:
            hint, cshape = "", tuple(covariance.shape)
            for k in range(1, mean.ndim):  # the covariance of a batch, the event left default
                batch, event = tuple(mean.shape[:k]), tuple(mean.shape[k:])
                tail = math.prod(event)
                given = k == mean.ndim - nev  # this split is the event_shape given
                pass_event = "" if given else f"pass event_shape={event} and "
                if not given and cshape == (*batch, tail, tail):
                    hint = (
                        f" (for a batch {batch} of posteriors over events {event}, pass "
                        f"event_shape={event})"
                    )
                elif cshape == (tail, tail):
                    dims = ", ".join(map(str, (*batch, tail, tail)))
                    hint = (
                        f" (for a batch {batch} of posteriors over events {event} sharing one "
                        f"covariance, {pass_event}expand it: covariance.expand({dims}))"
                    )
                if hint:
                    break
            raise ValueError(
                f"covariance: expected shape {expected} for mean {tuple(mean.shape)} with "
                f"event_shape {tuple(event_shape)}, received {cshape}{hint}"
            )
        self._mean = mean
        self.covariance = covariance
        self._root = None
        self._root_graph = False  # whether the cached root carries the covariance's graph
        self._root_inference = False  # whether it was factorised inside inference_mode
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
                        "covariance: expected non-negative variances, received min "
                        f"{float(d.min()):.3e}"
                    )
            elif root is None and (parts := structured_parts(covariance)) is not None:
                # low-rank / Kronecker structure: its pieces are checked, the N x N matrix is
                # never formed (it was, up to N = 4096: 0.5-1.2 GB for a batch of them)
                for label, piece, square in parts:
                    check_finite(f"covariance ({label})", piece)
                    if square:
                        _check_symmetric(piece)
                self._get_root()
            elif n <= 4096 and root is None:
                dense = to_dense(covariance)
                check_finite("covariance", dense)
                _check_symmetric(dense)
                self._get_root()
            elif root is None and isinstance(covariance, DenseLinearOperator):
                # a tensor too large for a Cholesky factor here: its O(N^2) checks (a NaN gave
                # NaN variances and intervals, a negative variance intervals of width 0, both
                # without a word, though validate promised finite values)
                dense = covariance.to_dense()
                lo, hi = torch.aminmax(dense)  # NaN / Inf show in one pass, no [N, N] mask
                if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
                    check_finite("covariance", dense)
                var = dense.diagonal(dim1=-2, dim2=-1)
                # below the rounding of the largest entry, as the symmetry check's tolerance: an
                # exactly constrained (conditioned) variance of 0 lands at -1e-17, which the
                # Cholesky of a smaller covariance accepts
                tol = max(1e-6, 1e3 * torch.finfo(dense.dtype).eps)
                scale = torch.maximum(hi, -lo)  # max |C| over the whole batch
                neg = var < -tol * scale
                if bool(neg.any()):
                    raise ValueError(
                        "covariance: expected a positive semi-definite matrix, received "
                        f"{int(neg.sum())} negative variances on its diagonal (min "
                        f"{float(var.min()):.3e})"
                    )
                _check_symmetric(dense)

    # -- properties -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Device of the mean (the covariance and draws live there too)."""
        return self._mean.device

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the mean (the covariance is cast to it; draws have it)."""
        return self._mean.dtype

    @property
    def mean(self) -> Tensor:
        """Posterior mean ``[*batch, *event]``: the stored tensor, not a copy (as in
        ``torch.distributions``; an in-place edit of it changes later draws and densities)."""
        return self._mean

    @property
    @own_precision()
    def variance(self) -> Tensor:
        """Marginal variances ``[*batch, *event]`` from the covariance's structured diagonal,
        clamped at 0 (an exact-limit conservation update leaves round-off negatives such as
        ``-9e-16`` on its constrained directions)."""
        var = diagonal(self.covariance).reshape(*self.batch_shape, *self.event_shape)
        return var.clamp_min(0)

    # -- sampling ---------------------------------------------------------------------------
    def _get_root(self):
        # a root factorised without autograd (by ``sample``, under ``torch.no_grad``, or
        # before the covariance required grad) is rebuilt once gradients are wanted: reused,
        # it made every later ``rsample`` / ``log_prob`` silently constant in the covariance
        wants_graph = torch.is_grad_enabled() and self.covariance.requires_grad
        # one factorised inside ``torch.inference_mode()`` (a posterior built in an evaluation
        # block) holds inference tensors: reused where autograd records (a log_prob or rsample
        # differentiated in the value or the mean), it failed with torch's "Inference tensors
        # cannot be saved for backward", far from the cause; it is factorised again there
        stale = getattr(self, "_root_inference", False) and torch.is_grad_enabled()
        if self._root is None or stale or (wants_graph and not getattr(self, "_root_graph", False)):
            old = self._root
            self._root = structured_root(self.covariance, "covariance")
            self._root_graph = wants_graph
            self._root_inference = torch.is_inference_mode_enabled()
            if old is not None:
                self._root.jitter_warned = old.jitter_warned
        return self._root

    def _base_dim(self) -> int:
        if self._custom_root is not None:
            return int(self._custom_root_dim)
        return self._get_root().base_dim

    @own_precision()  # a caller's autocast ran L z in bfloat16 (draws 3e-3 off, or bfloat16)
    def rsample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        base_samples: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Reparameterised draws ``[*sample_shape, *batch, *event]``.

        ``base_samples`` (``[*sample_shape, *batch, M]``, floating; cast to the posterior's
        dtype) fixes the standard-normal noise, for common random numbers across posteriors.
        Differentiable in the mean and the covariance (through its structured root) for the
        built-in roots; a custom ``root`` carries whatever graph it holds.

        A covariance singular to working precision is factorised with jitter on its diagonal
        (:math:`L L^\\top = \\Sigma + \\epsilon I`): its draws, as its ``log_prob``, are those of
        the jittered matrix. The first draw warns (``RuntimeWarning``, once per posterior;
        :meth:`sample` too) when :math:`\\epsilon` is at least ``1e-4`` of the mean variance
        (added noise of at least 1 % of the typical standard deviation: float32 only); a
        smaller jitter leaves draws silent, while ``log_prob`` warns at any jitter.
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
            base_samples = base_samples.to(self.dtype)  # draws in the posterior's dtype
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
        draws = flat.reshape(*flat.shape[:-1], *self.event_shape)
        graph = torch.is_grad_enabled() and (draws.requires_grad or self._mean.requires_grad)
        if self._custom_root is None and not graph:
            # a built-in root's L z is new memory of the draws' shape: the mean is added to it
            # in place, the same sums without a third array of the draws' size beside the noise
            # and L z (2.4 GB at the peak of 1000 float64 draws of 1e5 points, now 1.6 GB)
            return draws.add_(self._mean)
        return self._mean + draws

    def _check_base_samples(self, base: Tensor, shape: torch.Size, m: int) -> None:
        if not isinstance(base, Tensor):
            raise TypeError(
                f"base_samples: expected a torch.Tensor, received {type(base).__name__}"
            )
        if not base.is_floating_point():
            raise TypeError(f"base_samples: expected floating values, received {base.dtype}")
        if base.ndim == 0 or base.shape[-1] != m:
            raise ValueError(
                f"base_samples: expected last dimension {m}, received shape {tuple(base.shape)}"
            )
        if len(shape) and tuple(base.shape[: len(shape)]) != tuple(shape):
            raise ValueError(
                f"base_samples: expected leading dims sample_shape={tuple(shape)} "
                f"([*sample_shape, *batch, {m}]), received shape {tuple(base.shape)}"
            )
        nb = len(self.batch_shape)
        # the batch dims sit before the last one; with a sample_shape nothing else may follow it
        # (a missing batch dim gave draws of the wrong shape silently, or a reshape error)
        lead = len(shape) if len(shape) else base.ndim - 1 - nb
        if (
            lead < 0
            or base.ndim != lead + nb + 1
            or tuple(base.shape[lead:-1]) != tuple(self.batch_shape)
        ):
            want = (
                "[*sample_shape, *batch, M] = "
                f"[{', '.join(map(str, (*shape, *self.batch_shape, m)))}]"
            )
            if not len(shape):
                want = f"[*sample_shape, *batch, M] with batch {tuple(self.batch_shape)}, M = {m}"
            raise ValueError(f"base_samples: expected {want}, received shape {tuple(base.shape)}")
        if not same_device(base.device, self.device):
            raise ValueError(
                f"base_samples: expected a tensor on {self.device} (the posterior's device), "
                f"received one on {base.device}"
            )
        check_finite_input("base_samples", base)  # not read under a torch.func transform

    def sample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
    ) -> Tensor:
        """Draws ``[*sample_shape, *batch, *event]`` (no gradient); ``generator`` or ``seed``
        (not both) makes them reproducible. The first ``k`` of ``sample((n,), seed=s)`` are
        not ``sample((k,), seed=s)``: torch fills the standard normals in blocks (16 values
        on the CPU), so their number changes each one; draw the largest set once and slice."""
        generator = _sampling_generator(generator, seed, self.device)
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)

    def quantile(self, q: float | Sequence[float] | np.ndarray | Tensor) -> Tensor:
        """Marginal quantiles ``[*q.shape, *batch, *event]``: :math:`\\mu + \\sigma\\Phi^{-1}(q)`,
        in the posterior's dtype. :math:`\\Phi^{-1}(q)` is evaluated in float64 and then cast,
        so a float32 posterior's quantiles at ``q`` and ``1 - q`` stay symmetric about the mean
        (``q`` rounded to float32 first moved the upper tail: the upper end of
        ``interval(0.999999)`` lay 0.2% further from the mean than the lower one)."""
        qt = _q_tensor(q, self._mean)  # checks q, also in the posterior's dtype
        # on the CPU: not every accelerator has float64
        q64 = torch.as_tensor(q, dtype=torch.float64, device="cpu")
        z = torch.special.ndtri(q64).to(dtype=qt.dtype, device=qt.device)
        z = z.reshape(*qt.shape, *([1] * self._mean.ndim))
        return self._mean + self.stddev * z

    @own_precision()  # a Kronecker solve failed under autocast ("both inputs should have same
    # dtype"), a low-rank one lost accuracy
    def log_prob(self, value: Tensor) -> Tensor:
        r"""Gaussian log density of ``value`` ``[*, *batch, *event]`` -> ``[*, *batch]``, in the
        posterior's dtype (a floating ``value`` of another dtype is cast to it):
        :math:`-\tfrac12[(x-\mu)^\top\Sigma^{-1}(x-\mu) + \log|\Sigma| + N\log 2\pi]`,
        differentiable in ``value``, the mean and the covariance, and usable under
        :func:`torch.func.vmap` / ``grad`` over ``value`` (whose finite check is then skipped).
        ``NotImplementedError`` for a posterior given a custom ``root`` (its covariance need not
        be that of its draws)."""
        if self._custom_root is not None:
            # the covariance operator of such a posterior need not be that of its draws (the
            # GP PDE solver's grid posterior holds only the marginal variances beside its
            # sampler), so no joint density is computed from it
            raise NotImplementedError(
                "GaussianPosterior.log_prob: not available for a posterior that draws through a "
                "custom sampler (root=; the GP PDE solver's posterior and ProbConserv's updated "
                "ones do): its covariance operator need not be the joint covariance of its "
                "draws. Score the marginals instead: "
                "bayesphys.metrics.gaussian_nll(post.mean, post.variance, y) "
                "or crps_gaussian"
            )
        if not isinstance(value, Tensor):
            raise TypeError(f"value: expected a torch.Tensor, received {type(value).__name__}")
        nev = len(self.event_shape)
        if value.ndim < nev or tuple(value.shape[value.ndim - nev :]) != tuple(self.event_shape):
            raise ValueError(
                f"value: expected trailing shape {tuple(self.event_shape)}, received "
                f"{tuple(value.shape)}"
            )
        try:
            torch.broadcast_shapes(value.shape[: value.ndim - nev], self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"value: expected shape [*, *batch, *event] with batch dims broadcasting to "
                f"{tuple(self.batch_shape)}, received {tuple(value.shape)}"
            ) from None
        if not same_device(value.device, self.device):
            raise ValueError(
                f"value: expected a tensor on {self.device} (the posterior's device), received "
                f"one on {value.device}"
            )
        if not value.is_floating_point():
            raise TypeError(f"value: expected floating values, received {value.dtype}")
        # not read under a torch.func transform (vmap's wrapped values cannot be tested: its
        # "data-dependent control flow" error stopped vmap(post.log_prob) here)
        check_finite_input("value", value)
        value = value.to(self.dtype)  # the density in the posterior's dtype
        root = self._get_root()
        diff = value - self._mean  # [*, *batch, *event]: the batch dims broadcast
        n = math.prod(self.event_shape)
        # n, not -1: an empty batch of values [0, *batch, *event] could not be reshaped
        diff = diff.reshape(*diff.shape[: diff.ndim - nev], n)
        maha = (diff * root.solve(diff)).sum(-1)
        return -0.5 * (maha + root.logdet() + n * math.log(2 * math.pi))

    def _export_draws_fresh(self, num_chains: int | None, num_samples: int | None) -> bool:
        # mean + L z: new memory (a subclass may export draws it keeps: copied)
        return type(self) is GaussianPosterior

    def to(self, device: str | torch.device | None) -> GaussianPosterior:
        """A copy on ``device`` (as for a model: ``None`` is the CPU, ``"auto"`` CUDA when
        present); as ``Tensor.to``, on the posterior's own device it shares ``mean`` and
        ``covariance`` with this one (an in-place edit of one reaches the other). A custom root
        moves by its own ``to(device)`` method (the samplers of :mod:`bayesphys.gp_pde` and
        :mod:`bayesphys.probconserv` have one); a move to another device of a root without one
        is refused (``ValueError``): its draws would stay on the old device."""
        dev = model_device(device)
        root = self._custom_root
        if root is not None and not same_device(dev, self.device):
            root = move_root(root, dev)
        return GaussianPosterior(
            self._mean.to(dev),
            self.covariance.to(dev),
            event_shape=self.event_shape,
            validate=False,
            root=root,
            root_dim=self._custom_root_dim,
            export_name=self.export_name,
        )

    def __getstate__(self) -> dict[str, Any]:
        # the cached root holds closures, which do not pickle; it is rebuilt on first use
        return {**self.__dict__, "_root": None, "_root_graph": False, "_root_inference": False}

    def __repr__(self) -> str:
        # what is known of a half-built posterior (an __init__ that raised part-way): a repr
        # that raised hid the error it was printed for
        return known_repr(
            self,
            event_shape=lambda: tuple(self.event_shape),
            batch_shape=lambda: tuple(self.batch_shape),
            covariance=lambda: type(self.covariance).__name__,
            device=lambda: self.device,
            dtype=lambda: self.dtype,
        )
