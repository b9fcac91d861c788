r"""Samplers ("roots") of ProbConserv's Step-2 posteriors (:mod:`~bayesphys.probconserv.update`).

A root maps base noise ``z [..., base_dim]`` to a draw ``[..., N]`` of the field's centred
part. The updated posterior's root applies Matheron's rule to the prior's:
:math:`\tilde f = f - K(G f + \sigma_G\varepsilon)` with :math:`f = L z`. Each root is a
class, not a closure, so that posteriors pickle (worker processes) and move between devices
(``to``).
"""

from __future__ import annotations

import copy
import weakref

import torch
from linear_operator.operators import LinearOperator, LowRankRootAddedDiagLinearOperator
from torch import Tensor

from .._gaussian_posterior import move_root
from .._structured_root import structured_root
from ..posterior import GaussianPosterior

__all__ = ["CastRoot", "CovarianceRoot", "UpdatedRoot", "prior_root"]

_F64 = torch.float64


def prior_root(prior: GaussianPosterior):
    """The prior's custom sampler (or ``None``) for float64 base noise: a custom root is
    written for the prior's own dtype, the update's draws are float64."""
    base = prior._custom_root
    if base is None or prior.dtype == _F64:
        return base
    return CastRoot(base, prior.dtype)


class CastRoot:
    """A custom root run in its own dtype on float64 noise (a class, so that it pickles
    whenever the wrapped root does)."""

    def __init__(self, base, dtype: torch.dtype) -> None:
        self.base, self.dtype = base, dtype

    def __call__(self, z: Tensor) -> Tensor:
        return self.base(z.to(self.dtype)).to(z.dtype)

    def to(self, device: torch.device) -> CastRoot:
        """A copy with the wrapped root on ``device`` (for :meth:`GaussianPosterior.to`)."""
        return CastRoot(move_root(self.base, device), self.dtype)


class CovarianceRoot:
    """``z -> L z`` for a root of ``cov``, factorised at the first draw, not before: ``root``,
    a structured root of ``cov`` already factorised (the prior's own), is used as it is;
    ``prior`` (a float64 posterior whose covariance is ``cov``, held by a weak reference) lends
    its own root, factorised and cached on it at the first draw while it lives. An updated
    posterior whose draws are never taken (its mean and variances scored, as in the hybrid
    calibration's held-out folds) factorises nothing: the eager factor was a dense Cholesky
    per function and slice (about a fifth of a meta-GP calibration) or the Woodbury
    capacitance of a low-rank one (an ``[*batch, N, k]`` copy of its root). ``base_dim`` is
    read off the operator's type. The root is dropped when pickled (it holds closures) and
    rebuilt on first use after that."""

    def __init__(self, cov: LinearOperator, root=None, prior: GaussianPosterior | None = None):
        # a given root is used as it is (as the eager update's was)
        self.cov, self._root, self._graph = cov, root, root is not None
        self._prior = None if prior is None else weakref.ref(prior)
        self.base_dim = root.base_dim if root is not None else root_dim(cov)

    def _get(self):
        prior = None if self._prior is None else self._prior()
        if self._root is None and prior is not None:
            # the prior's own (cached on it, so its draws reuse it), kept here
            self._root = prior._get_root()
            self._graph = getattr(prior, "_root_graph", False)
            self._prior = None
            return self._root
        # a root factorised without autograd is rebuilt once gradients are wanted (as the
        # posterior's own, GaussianPosterior._get_root)
        wants_graph = torch.is_grad_enabled() and self.cov.requires_grad
        if self._root is None or (wants_graph and not self._graph):
            self._root = structured_root(self.cov, "prior covariance")
            self._graph = wants_graph
        return self._root

    def __call__(self, z: Tensor) -> Tensor:
        return self._get().apply(z)

    def to(self, device: torch.device) -> CovarianceRoot:
        """A copy for the covariance on ``device`` (for :meth:`GaussianPosterior.to`); its
        root is rebuilt there on first use."""
        out = copy.copy(self)
        out.cov, out._root, out._prior = self.cov.to(device), None, None
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_root": None, "_prior": None}


def root_dim(cov: LinearOperator) -> int:
    """The number of base-noise columns of :func:`~bayesphys._structured_root.structured_root`
    of ``cov`` ``[*, N, N]`` without factorising it: ``k + N`` for a low-rank-plus-diagonal
    operator of rank ``k`` (the root ``[R, diag(sqrt d)]``), ``N`` for every other one
    (diagonal, Kronecker, dense)."""
    n = cov.shape[-1]
    if isinstance(cov, LowRankRootAddedDiagLinearOperator):
        return cov._linear_op.root.shape[-1] + n
    return n


class UpdatedRoot:
    r"""Draws of the updated field from base noise ``z [..., base_dim (+ m)]``:
    :math:`f - K(Gf + \sigma_G \varepsilon)` with :math:`f` = the prior root's draw
    ``[..., N]`` (``sig=None``: the limit :math:`\sigma_G = 0`, no extra noise). A class, not
    a closure, so that the updated posterior pickles."""

    def __init__(self, base_root, base_dim: int, n: int, G: Tensor, gain: Tensor, sig) -> None:
        self.base_root, self.base_dim, self.n = base_root, base_dim, n
        self.G, self.gain, self.sig = G, gain, sig

    def __call__(self, z: Tensor) -> Tensor:
        f = self.base_root(z[..., : self.base_dim]).reshape(*z.shape[:-1], self.n)
        gf = (self.G @ f.unsqueeze(-1)).squeeze(-1)
        if self.sig is not None:
            gf = gf + self.sig * z[..., self.base_dim :]
        return f - (self.gain @ gf.unsqueeze(-1)).squeeze(-1)

    def to(self, device: torch.device) -> UpdatedRoot:
        """A copy on ``device``, the prior's root included (for :meth:`GaussianPosterior.to`)."""
        return UpdatedRoot(
            move_root(self.base_root, device),
            self.base_dim,
            self.n,
            self.G.to(device),
            self.gain.to(device),
            None if self.sig is None else self.sig.to(device),
        )
