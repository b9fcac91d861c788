r"""The dense GP-HM solve (Fang et al., ICLR 2024): the objective of :mod:`.solve` minimised
over the grid field :math:`U` with every matrix formed (``[M, M]``, :math:`M = \prod_j n_j`).

For a linear operator the minimiser in :math:`v` (:math:`U = L v`) solves the stacked least
squares :math:`\min_v \lVert Z v - r\rVert^2` with
:math:`Z = [I;\ \sqrt{\tau_2} G;\ \sqrt\gamma\, S L]` (one QR); a cubic operator
(Allen-Cahn) is solved by Gauss-Newton on the same stack. The triangular factor :math:`R` of
:math:`Z` is the posterior precision's Cholesky factor, so :class:`DenseSampler` gives exact
draws :math:`U = L R^{-1} z`. Any operator and either weighting; memory :math:`O(M^2)`, time
:math:`O(M^3)`: for large grids use :class:`~bayesphys.gp_pde.solve.KronSolve`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_dense_memory, check_int, check_real, check_scalar, did_you_mean
from ._inputs import check_grid_tensor
from ._kron import face_values, kron_dense
from .operator import Factor, LinearPDEOperator, check_factor_count
from .solve import check_noise

__all__ = ["DenseSolve", "DenseSampler"]


def _qr(Z: Tensor) -> tuple[Tensor, Tensor]:
    """Householder QR ``Z = QR`` ``[m, k]`` with the diagonal of ``R`` made non-negative."""
    Qz, R = torch.linalg.qr(Z)
    sgn = torch.sign(R.diagonal())
    sgn[sgn == 0] = 1
    return Qz * sgn[None, :], R * sgn[:, None]


class DenseSolve:
    r"""Dense elimination of :math:`U` for small grids (any operator; Gauss-Newton if cubic).

    Forms :math:`M \times M` matrices (about eight): use for 1-D grids and for tests; a grid
    whose matrices cannot fit on the factors' device is refused with a ``MemoryError`` at
    construction. ``solve`` returns the
    minimiser ``U`` ``[n_1..n_d]``; ``cov_u`` is the Laplace/Gaussian posterior covariance of
    :math:`\mathrm{vec}\,U` (exact for linear operators; for the cubic one linearised at the
    last Gauss-Newton iterate, which is :math:`U^\star` to ``tol`` once the solve converged,
    so call :meth:`linearise` at the returned ``U`` when ``iters`` ran out, as
    ``GPPDESolver.posterior`` does). ``weighting`` is ``"identity"`` or ``"prior"``; ``tau2`` and
    ``gamma`` (of :meth:`solve` and :meth:`linearise`) are finite numbers (or 0-d tensors) ``>= 0``
    (0: the PDE, resp. the boundary, term is dropped).
    """

    def __init__(self, factors: list[Factor], op: LinearPDEOperator, weighting: str = "identity"):
        if weighting not in ("identity", "prior"):
            raise ValueError(
                f"weighting: expected 'identity' or 'prior', received {weighting!r}"
                f"{did_you_mean(weighting, ('identity', 'prior'))}"
            )
        check_factor_count(factors, op)
        self.factors, self.op, self.weighting = factors, op, weighting
        self.shape = tuple(fc.x.shape[0] for fc in factors)
        self.m = math.prod(self.shape)
        ref = factors[0].L
        # L, the identity, A and a Kronecker temporary here; the stacked system [2M + N_b, M],
        # its Q and R in solve: about eight [M, M] matrices
        check_dense_memory(
            "factors",
            8 * self.m * self.m * ref.element_size(),
            what=f"the dense solve on a {self.shape} grid ([{self.m}, {self.m}] matrices, "
            f"{ref.dtype})",
            alternative="use KronSolve (weighting='prior' on a 1-D or 2-D grid) or a coarser grid",
            device=ref.device,
        )
        self.L = kron_dense([fc.L for fc in factors])
        eye = torch.eye(self.m, dtype=ref.dtype, device=ref.device)
        self.A = op.c0 * eye
        for j, fc in enumerate(factors):
            mats = [
                fc.D if i == j else torch.eye(n, dtype=ref.dtype, device=ref.device)
                for i, n in enumerate(self.shape)
            ]
            self.A = self.A + op.coefs[j] * kron_dense(mats)
        self.S = face_values(eye.reshape(self.m, *self.shape), self.shape).mT  # [N_b, M]
        self.chol_p = None

    def _stacked(self, A: Tensor, f: Tensor, g: Tensor, tau2: float, gamma: float):
        r"""Least-squares form :math:`\min_v \|Z v - b\|`,
        :math:`Z = [I;\ \sqrt{\tau_2} G;\ \sqrt\gamma SL]`."""
        G = A @ self.L
        ft = f
        if self.weighting == "prior":
            G = torch.linalg.solve_triangular(self.L, G, upper=False)
            ft = torch.linalg.solve_triangular(self.L, f.unsqueeze(-1), upper=False).squeeze(-1)
        SL = self.S @ self.L
        eye = torch.eye(self.m, dtype=G.dtype, device=G.device)
        Z = torch.cat([eye, math.sqrt(tau2) * G, math.sqrt(gamma) * SL], 0)
        b = torch.cat(
            [
                torch.zeros(self.m, dtype=G.dtype, device=G.device),
                math.sqrt(tau2) * ft,
                math.sqrt(gamma) * g,
            ]
        )
        return Z, b

    def solve(
        self,
        f: Tensor,
        g: Tensor,
        tau2: Tensor | float,
        gamma: Tensor | float,
        *,
        u0: Tensor | None = None,
        iters: int = 30,
        tol: float = 1e-12,
    ) -> Tensor:
        r"""Minimiser ``U [n_1..n_d]`` of :math:`\mathcal J` at :math:`\tau_2 =` ``tau2`` and
        :math:`\gamma = \lambda_b\tau_1 =` ``gamma`` (numbers or 0-d tensors, ``>= 0``).

        ``f [n_1..n_d]`` (or flat ``[M]``): the source on the grid; ``g [N_b]``: the boundary
        values in face order. Householder QR of the stacked system (stable for huge ``tau2``).
        Cubic operators: at most ``iters >= 1`` Gauss-Newton steps from ``u0 [n_1..n_d]``
        (default zero), stopping at relative change ``tol >= 0``."""
        iters = check_int("iters", iters, minimum=1)
        tol = check_real("tol", tol, minimum=0.0)
        tau2, gamma = (
            check_scalar("tau2", tau2, minimum=0.0),
            check_scalar("gamma", gamma, minimum=0.0),
        )
        dev = self.L.device
        check_grid_tensor("f", f, self.shape, device=dev, flat_ok=True)
        check_grid_tensor("g", g, (self.S.shape[0],), device=dev, what="boundary-value tensor")
        if u0 is not None:  # the Gauss-Newton start (cubic operators only)
            check_grid_tensor("u0", u0, self.shape, device=dev, flat_ok=True, finite=self.op.cubic)
        fv = f.reshape(-1)
        u = (
            torch.zeros(self.m, dtype=fv.dtype, device=fv.device)
            if u0 is None
            else u0.reshape(-1).clone()
        )
        for _ in range(iters if self.op.cubic else 1):
            A, t = self.A, fv
            if self.op.cubic:  # Gauss-Newton: A(U) ~ A U_k + U_k^3 + (A + 3 diag U_k^2)(U - U_k)
                A = self.A + torch.diag(3 * u * u)
                t = fv + 2 * u**3
            Z, b = self._stacked(A, t, g, tau2, gamma)
            Qz, R = _qr(Z)
            v = torch.linalg.solve_triangular(R, (Qz.mT @ b).unsqueeze(-1), upper=True).squeeze(-1)
            new = self.L @ v
            # a stopping test, no graph (float() of a tensor that requires grad warned)
            step, size = (new - u).detach().norm(), new.detach().norm()
            done = float(step) <= tol * max(float(size), 1e-300)
            u = new
            self.chol_p = R.mT  # P = Z^T Z = R^T R
            if done:
                break
        return u.reshape(self.shape)

    def linearise(self, u: Tensor, tau2: Tensor | float, gamma: Tensor | float) -> Tensor:
        r"""Factorise the posterior precision :math:`P = Z^\top Z` at ``u`` ``[n_1..n_d]`` without
        solving (cubic operators: Jacobian :math:`\mathcal A + \mathrm{diag}(3U^2)`; linear: the
        factor of :meth:`solve`, bit for bit); returns ``u``. For :meth:`cov_u`, :meth:`sample_u`.
        """
        check_grid_tensor("u", u, self.shape, device=self.L.device)
        tau2, gamma = (
            check_scalar("tau2", tau2, minimum=0.0),
            check_scalar("gamma", gamma, minimum=0.0),
        )
        A = self.A
        if self.op.cubic:
            A = self.A + torch.diag(3 * u.reshape(-1) ** 2)
        f0 = torch.zeros(self.m, dtype=A.dtype, device=A.device)
        g0 = torch.zeros(self.S.shape[0], dtype=A.dtype, device=A.device)
        Z, _ = self._stacked(A, f0, g0, tau2, gamma)  # P does not depend on f, g
        self.chol_p = _qr(Z)[1].mT
        return u

    def _require_factor(self, name: str) -> None:
        if self.chol_p is None:
            raise ValueError(f"{name}: call solve() or linearise() first")

    def cov_u(self) -> Tensor:
        r""":math:`\Sigma_U = L P^{-1} L^\top` ``[M, M]`` (call after :meth:`solve`)."""
        self._require_factor("cov_u")
        return _dense_cov_u(self.L, self.chol_p)

    def sample_u(self, z: Tensor) -> Tensor:
        r"""Draws ``[*, M]`` of :math:`\Sigma_U^{1/2} z`: :math:`L\,L_P^{-\top} z`, ``z``
        ``[*, M]``."""
        self._require_factor("sample_u")
        return _dense_sample_u(self.L, self.chol_p, z)

    def sampler(self) -> DenseSampler:
        r"""What :meth:`sample_u` and :meth:`cov_u` read, and nothing else (call after
        :meth:`solve` or :meth:`linearise`): the two ``[M, M]`` factors :math:`L` and
        :math:`L_P`, shared, not copied. A posterior keeps this instead of the solver, which
        also holds the operator matrix :math:`\mathcal A` ``[M, M]`` (288 MB in float64 at
        ``M = 6000``) and the boundary selector ``[N_b, M]``, needed only to solve."""
        self._require_factor("sampler")
        return DenseSampler(self.L, self.chol_p)


def _dense_cov_u(L: Tensor, chol_p: Tensor) -> Tensor:
    r""":math:`\Sigma_U = L P^{-1} L^\top` ``[M, M]`` from ``L`` and the precision's Cholesky
    factor ``chol_p`` (both ``[M, M]``)."""
    X = torch.linalg.solve_triangular(chol_p, L.mT, upper=False)
    return X.mT @ X


def _dense_sample_u(L: Tensor, chol_p: Tensor, z: Tensor) -> Tensor:
    r"""Draws ``[*, M]`` of :math:`\Sigma_U^{1/2} z = L\,L_P^{-\top} z` from noise ``z``
    ``[*, M]``."""
    m = L.shape[0]
    check_noise(z, m, L)
    x = torch.linalg.solve_triangular(chol_p.mT, z.reshape(-1, m).mT, upper=True).mT
    return (x @ L.mT).reshape(*z.shape[:-1], m)


class DenseSampler:
    r"""The posterior of :math:`\mathrm{vec}\,U` of a solved :class:`DenseSolve`
    (:meth:`DenseSolve.sampler`), for sampling only: ``L`` ``[M, M]`` (:math:`\otimes L_j`) and
    ``chol_p`` ``[M, M]`` (the Cholesky factor of the precision :math:`P`). :meth:`sample_u`
    and :meth:`cov_u` are :class:`DenseSolve`'s, bit for bit."""

    def __init__(self, L: Tensor, chol_p: Tensor) -> None:
        self.L, self.chol_p = L, chol_p
        self.m = L.shape[0]

    def cov_u(self) -> Tensor:
        r""":math:`\Sigma_U = L P^{-1} L^\top` ``[M, M]``."""
        return _dense_cov_u(self.L, self.chol_p)

    def sample_u(self, z: Tensor) -> Tensor:
        r"""Draws ``[*, M]`` of :math:`\Sigma_U^{1/2} z`: :math:`L\,L_P^{-\top} z`, ``z``
        ``[*, M]``."""
        return _dense_sample_u(self.L, self.chol_p, z)
