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
  densified to take marginals, nor to sample (except a Kronecker product with batch dims).
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

from ._gaussian_posterior import GaussianPosterior
from ._posterior_base import Posterior
from ._sample_posterior import SamplePosterior

__all__ = ["Posterior", "GaussianPosterior", "SamplePosterior"]

# documented and pickled under this public module
for _cls in (Posterior, GaussianPosterior, SamplePosterior):
    _cls.__module__ = __name__
del _cls
