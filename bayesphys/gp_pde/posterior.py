r"""Gaussian posterior of the solution on a test grid, with Kronecker structure kept.

Under the model, :math:`u(\cdot) \sim \mathcal{GP}(0, \kappa)` and the data (boundary values, PDE
residuals) depend on the grid values :math:`U = u(X)` only, so for test points :math:`X_*`

.. math::
   u(X_*) \mid \text{data} = W U + \varepsilon_*, \quad W = \otimes_j K_j(X_{*j}, X_j)
   C_j^{-1},\quad U \sim \mathcal N(U^\star, \Sigma_U),\quad \varepsilon_* \sim \mathcal N(0,
   K_{**} - W C W^\top).

Marginal variances are computed exactly from the factors; draws are pathwise
(:math:`W(U_s - f_X) + f_*` with :math:`(f_*, f_X)` a joint prior draw on the union of the test and
collocation axes, built from per-axis eigen-roots), so no :math:`M \times M` or
:math:`M_* \times M_*` matrix is formed. The eigen-roots are formed at the first draw (the
mean and variances do not read them), and draws are mapped a block of base noise
(``_DRAW_BYTES``) at a time.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from .._checks import check_dense_memory
from .._linalg import psd_eigen_root
from ..posterior import GaussianPosterior
from ._kron import kron_apply, kron_dense
from .kernels import SpectralMixture1d, mixture_values
from .operator import Factor

if TYPE_CHECKING:
    from .solve import KronSolve

__all__ = ["grid_field_posterior", "test_grid_posterior"]


#: largest block of base noise (bytes) that :class:`_GridRoot` maps to draws at once; its
#: Kronecker temporaries are about three times as large
_DRAW_BYTES = 2**25

#: largest block of rows of the dense test-to-grid map :math:`W` (bytes) that
#: :func:`dense_test_variance` forms at once
_BLOCK_BYTES = 2**28


def dense_test_variance(W: list[Tensor], cov_u: Tensor) -> Tensor:
    r""":math:`\operatorname{diag}(W \Sigma_U W^\top)` ``[P]`` for
    :math:`W = W_1 \otimes \dots \otimes W_d` (``W[j]`` ``[p_j, n_j]``, ``P = prod p_j``,
    ``M = prod n_j``) and a dense ``cov_u`` ``[M, M]``, row-major over the test grid.

    :math:`W` ``[P, M]`` is formed whole (as :func:`kron_dense`) only when it holds at most
    ``_BLOCK_BYTES``; otherwise a block of its rows at a time, so the peak is two blocks, not
    three ``[P, M]`` matrices (a 300 x 300 test grid over 32 x 32 collocation points took
    2.2 GB; one over 77 x 77 points, the dense solve's largest 2-D grid, about 12 GB).
    """
    rows = math.prod(w.shape[0] for w in W)
    m = cov_u.shape[-1]
    block = max(1, _BLOCK_BYTES // max(1, m * cov_u.element_size()))
    if rows <= block:
        wd = kron_dense(W)
        return (wd @ cov_u).mul_(wd).sum(-1)
    sizes = [w.shape[0] for w in W]
    out = []
    for start in range(0, rows, block):
        idx = torch.arange(start, min(start + block, rows), device=cov_u.device)
        # the rows of kron_dense(W) with these flat indices: the same products, in its order
        parts = torch.unravel_index(idx, sizes)
        wd = W[0][parts[0]]
        for w, i in zip(W[1:], parts[1:]):
            wd = (wd[:, :, None] * w[i][:, None, :]).reshape(len(idx), -1)
        out.append((wd @ cov_u).mul_(wd).sum(-1))
    return torch.cat(out)


def check_posterior_memory(
    name: str, test_sizes: list[int], train_sizes: list[int], dtype: torch.dtype, device: Any
) -> None:
    r"""Refuse (``MemoryError`` naming ``name``, before any work) a test grid
    ``[p_1..p_d]`` whose posterior cannot fit on ``device``: per axis the joint prior
    covariance of test and collocation points ``[p_j + n_j, p_j + n_j]`` and its eigen root
    (about four such matrices), and over the whole grid the mean, variances and their
    Kronecker temporaries (about six ``[p_1 \cdots p_d]`` arrays)."""
    es = torch.empty((), dtype=dtype).element_size()
    per_axis = sum(4 * (p + n) ** 2 for p, n in zip(test_sizes, train_sizes))
    grid = 6 * math.prod(test_sizes)
    check_dense_memory(
        name,
        (per_axis + grid) * es,
        what=(
            f"the posterior on a {tuple(test_sizes)} test grid ({dtype}; per axis the joint "
            f"covariance with the {tuple(train_sizes)} collocation grid and its root)"
        ),
        alternative="ask for fewer test points per axis, or for the posterior on a few "
        "sub-grids in turn",
        device=device,
    )


def test_grid_posterior(
    kernels: list[SpectralMixture1d],
    factors: list[Factor],
    test_axes: list[Tensor],
    u_mean: Tensor,
    solver: KronSolve | Any,
    *,
    jitter: float,
) -> GaussianPosterior:
    r"""``GaussianPosterior`` with event shape ``[p_1..p_d]`` on the tensor grid of ``test_axes``.

    ``solver`` is a :class:`~bayesphys.gp_pde.solve.KronSolve` (or a
    :class:`~bayesphys.gp_pde.nonlinear.PicardKronSolve` or
    :class:`~bayesphys.gp_pde.gauss_newton.GaussNewtonKronSolve`, linearised) or a
    :class:`~bayesphys.gp_pde.dense_solve.DenseSolve` after its ``solve`` (it supplies
    :math:`\Sigma_U` draws and variances; of a ``DenseSolve`` the posterior keeps only its
    :meth:`~bayesphys.gp_pde.dense_solve.DenseSolve.sampler`).
    """
    W, var_prior, joints, sizes = [], None, [], []
    for k, fc, xt in zip(kernels, factors, test_axes):
        kxs = k.gram(xt, fc.x, 0)
        w = torch.cholesky_solve(kxs.mT, fc.L).mT  # [p, n]
        W.append(w)
        kss = k.deriv(torch.zeros((), dtype=xt.dtype, device=xt.device), 0).expand(xt.numel())
        wcw = (w * kxs).sum(-1)  # diag(W C W^T) = diag(K_*X C^{-1} K_X*)
        pair = (kss, wcw)
        var_prior = [pair] if var_prior is None else var_prior + [pair]
        # what the joint prior root of test and collocation points [p + n, p + n] is made of,
        # factored at the first draw (the mean, variances and intervals need none of it: its
        # eigendecomposition and [p, p] Gram were most of the time of a posterior on a fine
        # 1-D grid, 7.5 of 8 CPU-s at p = 2000)
        with torch.no_grad():
            mix = tuple(t.detach() for t in k.mixture())
        joints.append((k.kind, *mix, xt, kxs.detach(), fc.C.detach()))
        sizes.append((xt.numel(), fc.x.numel()))
    kss_full = kron_vec([p[0] for p in var_prior])
    wcw_full = kron_vec([p[1] for p in var_prior])
    shape_t = tuple(xt.numel() for xt in test_axes)
    shape_x = tuple(fc.x.numel() for fc in factors)
    with torch.no_grad():
        mean = kron_apply(W, u_mean)
        if hasattr(solver, "test_variance"):
            var_u = solver.test_variance(W)
        else:
            var_u = dense_test_variance(W, solver.cov_u()).reshape(shape_t)
        var = (var_u + (kss_full - wcw_full).reshape(shape_t)).clamp_min(0)
    du = solver.root_dim if hasattr(solver, "root_dim") else math.prod(shape_x)
    dj = math.prod(p + n for p, n in sizes)  # the roots are square
    # a dense solver's draws need only its two factors, not its [M, M] operator matrix
    sampler = solver.sampler() if hasattr(solver, "sampler") else solver

    return GaussianPosterior(
        mean.detach(),
        DiagLinearOperator(var.reshape(-1)),
        root=_GridRoot(sampler, W, joints, sizes, shape_x, du),
        root_dim=du + dj,
    )


class _GridRoot:
    r"""Draws of the test-grid field from base noise ``z [..., du + dj]``: :math:`\Sigma_U`
    draws (``solver.sample_u`` of ``z[..., :du]``) plus the joint test/collocation prior of
    each axis (Kronecker roots of ``z[..., du:]``), combined as
    :math:`f_* + W(u - f_X)` -> ``[..., p_1 \cdots p_d]``. A class, not a closure, so that the
    posterior pickles."""

    # the posterior's covariance operator beside this root is the diagonal of the marginal
    # variances, not the joint covariance of the draws: a conditioning on it (ProbConserv's
    # conservation_update) would be silently wrong, so it reads this flag and refuses
    marginal_covariance = True

    def __init__(self, solver, W, joints, sizes, shape_x, du) -> None:
        self.solver, self.W = solver, W
        # per axis (kind, a, 2 pi mu, w, x_test, K_*X, C): the joint prior covariance of the
        # axis's test and collocation points, whose eigen-root is formed at the first draw
        self._joints, self._roots = joints, None
        self.sizes, self.shape_x, self.du = sizes, shape_x, du

    @property
    def roots(self) -> list[Tensor]:
        r"""Per axis the eigen-root ``[p_j + n_j, p_j + n_j]`` of the joint prior covariance
        :math:`\begin{pmatrix}K_{**} & K_{*X}\\ K_{X*} & C\end{pmatrix}` of its test and
        collocation points, formed on first use (the first draw)."""
        if self._roots is None:
            with torch.no_grad():
                self._roots = [_joint_root(*parts) for parts in self._joints]
            self._joints = None
        return self._roots

    def __call__(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        rows = math.prod(lead)
        block = max(1, _DRAW_BYTES // max(1, z.shape[-1] * z.element_size()))
        if rows <= block:
            return self._draws(z)
        # a block of draws at a time: the temporaries of the Kronecker products (the joint prior
        # draw [..., (p_1 + n_1)..(p_d + n_d)], the field draws and their copies, about three
        # times the noise) were formed for every draw at once
        flat = z.reshape(rows, z.shape[-1])
        first = self._draws(flat[:block])
        out = first.new_empty(rows, first.shape[-1])
        out[:block] = first
        del first
        for start in range(block, rows, block):
            out[start : start + block] = self._draws(flat[start : start + block])
        return out.reshape(*lead, out.shape[-1])

    def _draws(self, z: Tensor) -> Tensor:
        """:meth:`__call__` on all of ``z [..., du + dj]`` at once."""
        lead, du = z.shape[:-1], self.du
        us = self.solver.sample_u(z[..., :du]).reshape(*lead, *self.shape_x)
        fj = kron_apply(self.roots, z[..., du:].reshape(*lead, *(r.shape[1] for r in self.roots)))
        fs, fx = fj, fj
        for j, (p, n) in enumerate(self.sizes):
            fs = fs.narrow(len(lead) + j, 0, p)
            fx = fx.narrow(len(lead) + j, p, n)
        out = kron_apply(self.W, us - fx) + fs
        # the event size spelled out: -1 is ambiguous for no draws (sample(0) failed)
        return out.reshape(*lead, math.prod(out.shape[len(lead) :]))

    def to(self, device: torch.device) -> _GridRoot:
        """A copy with the solver, factors and roots on ``device`` (for
        :meth:`GaussianPosterior.to`)."""
        return _moved(self, torch.device(device), {})


def _joint_root(
    kind: str, a: Tensor, m: Tensor, w: Tensor, xt: Tensor, kxs: Tensor, c: Tensor
) -> Tensor:
    """The eigen-root of the joint prior covariance of one axis's test points ``xt [p]`` and
    collocation points (``kxs [p, n]``, ``c [n, n]``), the kernel given by its mixture
    ``a, m, w [Q]`` (:func:`~.kernels.mixture_values`; ``k.gram(xt, xt, 0)`` bit for bit)."""
    kss = mixture_values(kind, xt[:, None] - xt[None, :], a, m, w)
    return psd_eigen_root(torch.cat([torch.cat([kss, kxs], 1), torch.cat([kxs.mT, c], 1)], 0))


def _moved(obj: Any, device: torch.device, memo: dict[int, Any]) -> Any:
    """A copy of ``obj`` with every tensor it holds on ``device``: tensors, lists, tuples,
    dicts and the objects of :mod:`bayesphys.gp_pde` (solvers, factors; not modules) are
    copied, recursively; anything else (numbers, strings) is shared. ``memo`` keeps an
    object held twice (a factor in two solvers) one object."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, Tensor):
        out = obj.to(device)
    elif type(obj) in (list, tuple):
        out = type(obj)(_moved(v, device, memo) for v in obj)
    elif type(obj) is dict:
        out = {k: _moved(v, device, memo) for k, v in obj.items()}
    elif (
        type(obj).__module__.startswith(__package__ + ".")
        and hasattr(obj, "__dict__")
        and not isinstance(obj, torch.nn.Module)
    ):
        out = copy.copy(obj)
        memo[key] = out  # before its attributes: an object may refer back to itself
        vars(out).update({k: _moved(v, device, memo) for k, v in vars(obj).items()})
    else:
        out = obj
    memo[key] = out
    return out


def kron_vec(vs: list[Tensor]) -> Tensor:
    out = vs[0]
    for v in vs[1:]:
        out = torch.kron(out, v)
    return out


#: largest collocation grid whose dense field covariance :func:`grid_field_posterior` forms
#: (``[M, M]`` float64: 288 MB at 6000 points, the dense solver's limit)
MAX_FIELD_POINTS = 6000


def check_field_points(
    shape: tuple[int, ...], dtype: torch.dtype = torch.float64, device: Any = None
) -> int:
    """``M = prod(shape)``, refused (``ValueError`` naming the remedy) above
    :data:`MAX_FIELD_POINTS`, and refused (``MemoryError``; a warning above half) when the
    about six dense ``[M, M]`` arrays of the covariance's assembly (Gauss-Newton's Hessian,
    its Cholesky factor and the triangular solve's) do not fit in ``device``'s memory."""
    m = math.prod(shape)
    alternative = (
        "use posterior(), whose marginal variances and correlated draws need no M x M matrix"
    )
    if m > MAX_FIELD_POINTS:
        raise ValueError(
            f"field_posterior: the grid has {m} points (shape {shape}); the dense field "
            f"covariance is formed up to {MAX_FIELD_POINTS} points ({alternative})"
        )
    check_dense_memory(
        "field_posterior",
        6 * m * m * torch.empty((), dtype=dtype).element_size(),
        what=f"the dense field covariance of a {shape} grid (about six [{m}, {m}] arrays)",
        alternative=alternative,
        device=device,
    )
    return m


def grid_field_posterior(u: Tensor, solver: Any, *, chunk: int = 512) -> GaussianPosterior:
    r"""Joint posterior :math:`\mathcal N(U^\star, \Sigma_U)` of the field on the collocation
    grid, with the dense covariance ``[M, M]`` (``M = n_1 \cdots n_d``).

    ``u`` ``[n_1..n_d]``: the solved field :math:`U^\star`; ``solver``: a solved (or linearised)
    solver. A dense solve gives :math:`\Sigma_U = L P^{-1} L^\top` directly; the Kronecker
    linear and Picard solvers give it from their perturb-and-solve draws of unit noise,
    :math:`\Sigma_U = S^\top S` with :math:`S` = ``sample_u(I)`` ``[root_dim, M]`` (exact),
    in blocks of ``chunk`` rows; Gauss-Newton forms its exact-Jacobian :math:`R H^{-1}
    R^\top` densely (``cov_u``). The result is symmetrised. Event shape ``[n_1..n_d]``.
    """
    shape = tuple(u.shape)
    m = check_field_points(shape, u.dtype, u.device)
    if hasattr(solver, "cov_u"):
        cov = solver.cov_u()
    else:
        k = solver.root_dim
        cov = torch.zeros(m, m, dtype=u.dtype, device=u.device)
        for i in range(0, k, chunk):
            rows = min(chunk, k - i)  # unit noise e_i..e_{i+rows-1}, not a [k, k] identity
            eye = torch.zeros(rows, k, dtype=u.dtype, device=u.device)
            eye[:, i : i + rows].fill_diagonal_(1.0)
            s = solver.sample_u(eye).reshape(-1, m)
            # accumulated in place: a new [M, M] product and sum per block took as long as the
            # products themselves (4096 points, 9 blocks: 4.2 s, now 2.1 s, one thread)
            cov.addmm_(s.mT, s)
    cov = 0.5 * (cov + cov.mT)
    return GaussianPosterior(u.detach().clone(), cov, event_shape=shape)
