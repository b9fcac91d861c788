r"""Samplers ("roots") of ProbConserv's Step-2 posteriors (:mod:`~bayesphys.probconserv.update`).

A root maps base noise ``z [..., base_dim]`` to a draw ``[..., N]`` of the field's centred
part. The updated posterior's root applies Matheron's rule to the prior's:
:math:`\tilde f = f - K(G f + \sigma_G\varepsilon)` with :math:`f = L z`. Each root is a
class, not a closure, so that posteriors pickle (worker processes) and move between devices
(``to``).
"""

from __future__ import annotations

import copy

import torch
from linear_operator.operators import LinearOperator
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
    """``z -> L z`` for a root of ``cov``: built at once (for ``base_dim``) unless ``root``, a
    structured root of ``cov`` already factorised (the prior's own), is given; dropped when
    pickled (the structured root holds closures) and rebuilt on first use after that."""

    def __init__(self, cov: LinearOperator, root=None) -> None:
        self.cov, self._root = cov, root
        self.base_dim = self._get().base_dim

    def _get(self):
        if self._root is None:
            self._root = structured_root(self.cov, "prior covariance")
        return self._root

    def __call__(self, z: Tensor) -> Tensor:
        return self._get().apply(z)

    def to(self, device: torch.device) -> CovarianceRoot:
        """A copy for the covariance on ``device`` (for :meth:`GaussianPosterior.to`); its
        root is rebuilt there on first use."""
        out = copy.copy(self)
        out.cov, out._root = self.cov.to(device), None
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_root": None}


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
