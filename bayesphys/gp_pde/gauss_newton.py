r"""Matrix-free Gauss-Newton on the grid field for the cubic (Allen-Cahn) operator,
Kronecker-preconditioned.

Objective at fixed hyperparameters (``weighting="prior"``, the same as
:func:`~.solve.objective` up to terms that do not depend on :math:`U`):

.. math::
   \mathcal J(U) = \tfrac12 U^\top C^{-1} U + \tfrac{\tau_2}2\, r(U)^\top C^{-1} r(U)
   + \tfrac\gamma2 \|SU - g\|^2, \qquad r(U) = \mathcal A U + U^{3} - f,

with :math:`\mathcal A = \sum_j c_j D_j^{(\oplus)} + c_0` (Allen-Cahn: :math:`\Delta - 1`),
:math:`C = \otimes_j L_jL_j^\top` and :math:`\gamma = \lambda_b\tau_1`. In the whitened eigen
coordinates :math:`U = Rw`, :math:`R = \otimes_j L_jQ_j` (:func:`~.operator.with_eigen`),
:math:`R^{-1}\mathcal A R = \Lambda` is diagonal and

.. math::
   \mathcal J(w) = \tfrac12\|w\|^2 + \tfrac{\tau_2}2\|\rho(w)\|^2 + \tfrac\gamma2\|Bw - g\|^2,
   \qquad \rho(w) = \Lambda w + R^{-1}(Rw)^{3} - R^{-1} f,\quad B = SR .

**Gauss-Newton step.** With the exact Jacobian :math:`G = \Lambda + K`
(i.e. :math:`G = R^{-1}(\mathcal A + \mathrm{diag}(3U^2))R`), where
:math:`K = R^{-1}\,\mathrm{diag}(3U^2)\,R`,

.. math:: H\delta = -\nabla\mathcal J,\qquad H = I + \tau_2 G^\top G + \gamma B^\top B,

is solved by preconditioned conjugate gradients (float64), matrix-free: one :math:`H` product is
four Kronecker products (:math:`R`, :math:`R^{-1}`, :math:`R^{-\top}`, :math:`R^\top`, each
:math:`d` mode products), :math:`O(M\sum_j n_j)`; no :math:`M\times M` matrix is formed.
Preconditioners (both exact structured inverses by :class:`~.solve.KronSolve`: a diagonal plus
the rank-:math:`N_b` boundary term, Woodbury): ``precond="shift"``, the constant-coefficient
system :math:`P = I + \tau_2(\Lambda + \bar d)^2 + \gamma B^\top B`,
:math:`\bar d = \mathrm{mean}(3U^2)`, which equals :math:`H` when :math:`3U^2` is constant; and
``precond="diag"`` (default), the same with the diagonal replaced by the exact diagonal
:math:`1 + \tau_2\,\mathrm{diag}(G^\top G)` (:meth:`GaussNewtonKronSolve.gtg_diagonal`, from
a separable SVD expansion of :math:`3U^2`; also equal to :math:`H` for constant :math:`3U^2`).
Measured on the 2-D multi-scale problem at fitted hyperparameters (PCG on the Gauss-Newton system
at the Picard iterate): relative residual 1e-4 in 241 iterations on 400x400 with ``"diag"``,
not reached in 1500 with ``"shift"`` (2e-4); 1e-6 is not reached in 1500 by either (4.5e-6).
The slow part is the coupling by :math:`K` of smooth modes into the modes the GP Laplacian
hardly sees (:math:`|\Lambda|` small: 255 of 400 per dimension on the 400 grid), which a
diagonal cannot represent. PCG is invariant under the change of
variables :math:`U \leftrightarrow w` (the same preconditioner transformed), so the choice of
variable does not change the iteration; :math:`w` is used because :math:`P` is diagonal plus
boundary rank there. Inexact Newton: CG stops at the relative residual
:math:`\eta_k = \min(\eta_{\max}, \sqrt{\|\nabla\mathcal J_k\|/\|\nabla\mathcal J_0\|})` (floored at
``cg_tol_min``) or after ``cg_maxiter`` iterations (any truncated CG iterate is a descent
direction). Globalisation: backtracking (Armijo) line search on :math:`\mathcal J`, so the
objective decreases monotonically (up to round-off); a search that finds no acceptable step in
``max_backtrack`` halvings stops the iteration unconverged (``converged`` false), except in the
round-off regime below. Stops when the relative step
:math:`\|\delta U\|/\|U\| \le` ``tol`` or :math:`\|\nabla\mathcal J\| \le` ``gtol``
:math:`\|\nabla\mathcal J_0\|`. **What "converged" means:** one of these tests was met (or the
round-off floor below); both are relative, not absolute: the gradient test compares with the
gradient at the *start of this solve* (:math:`\nabla\mathcal J_0`, which depends on ``u0``),
so from a poor start the gradient can have fallen by ``gtol`` while :math:`\mathcal J` and
:math:`\|\nabla\mathcal J\|` are still large in absolute terms, and the step test is met by
any step that moves :math:`U` by less than ``tol`` relatively (a heavily damped line-search step
too). ``converged`` is not a certificate of a small objective or an absolute tolerance on the
gradient: read ``objective`` and ``grad_norms`` for those, and ``stop_reason`` for the test that
ended the solve. **Round-off regime:** when the predicted decrease
:math:`-\nabla\mathcal J^\top\delta \le 100\,\epsilon_{\rm mach}|\mathcal J|`, the Armijo test
can only compare round-off (it used to reject full steps 1e3x closer to the optimum and stop on
a tiny backtracked step); since a CG direction has
:math:`\|\delta\|^2 \le \delta^\top H\delta = -\nabla\mathcal J^\top\delta` (:math:`H \succeq I`),
the step changes :math:`\mathcal J` only at that round-off scale and is taken in full when
:math:`\mathcal J` rises by at most that round-off (else the Armijo search runs as usual); the
iteration then also stops (converged) once :math:`\|\nabla\mathcal J\|` no longer decreases (its
round-off floor).

**Posterior** (linearised at :math:`U^\star`, Laplace/Gauss-Newton): draws of :math:`U` are exact
for the linearisation with the exact Jacobian, by perturb-and-solve through the same PCG:
:math:`w = H^{-1}(z_1 + \sqrt{\tau_2}G^\top z_2 + \sqrt\gamma B^\top z_3)` has covariance
:math:`H^{-1}`. Marginal variances on a test grid stay on the constant-shift approximation
(:math:`H \approx P`, :meth:`~.solve.KronSolve.test_variance`): the variation of
:math:`3U^{\star 2}` about its mean is neglected there (an approximation). Both Kronecker
solves of the posterior (:attr:`GaussNewtonKronSolve.pre` and the draws' preconditioner) are
formed at their first use, not by every :meth:`~GaussNewtonKronSolve.solve` of a fit.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from .._checks import check_int, check_real, check_scalar, did_you_mean
from .._linalg import pcg
from ._errors import NumericalFailure
from ._inputs import check_grid_tensor
from ._kron import face_values, faces, kron_apply, scatter_faces
from .operator import Factor, LinearPDEOperator, check_factor_count
from .solve import KronSolve, check_kron_grid, check_noise

__all__ = ["GaussNewtonKronSolve"]

# a predicted decrease below this many machine epsilons of |J| is round-off (line search off)
_ROUNDOFF = 100.0


class GaussNewtonKronSolve:
    r"""Damped Gauss-Newton minimiser of the Allen-Cahn GP-HM objective (see the module docstring).

    ``factors`` from :func:`~.operator.with_eigen` (real eigenbasis: even orders) of a 1-D or
    2-D grid (the start and the preconditioner are :class:`~.solve.KronSolve` solves; another
    grid is refused, ``NotImplementedError``);
    ``op.cubic`` must be true; ``tau2`` :math:`>0`, ``gamma`` :math:`>0` (numbers or 0-d
    tensors). ``solve(f, g, u0=...)``
    with ``f`` ``[n_1..n_d]`` and ``g`` ``[N_b]`` returns ``U`` ``[n_1..n_d]`` and records
    ``iterations`` (Gauss-Newton steps), ``cg_iters`` (total CG iterations), ``objective``
    (:math:`\mathcal J` per iterate, non-increasing up to round-off), ``step_norms`` (relative
    steps), ``grad_norms``, ``converged`` and ``stop_reason`` (which test ended the solve, with the
    numbers it compared). ``converged`` is true when a stopping test was met: the relative step
    :math:`\le` ``tol``, the gradient norm :math:`\le` ``gtol`` times the *first gradient norm of
    this solve* (relative to the start, not an absolute tolerance: see the module docstring), or
    the round-off floor; false after ``max_iter`` steps or a failed line search.
    """

    def __init__(
        self,
        factors: list[Factor],
        op: LinearPDEOperator,
        tau2: Tensor | float,
        gamma: Tensor | float,
        *,
        max_iter: int = 50,
        tol: float = 1e-10,
        gtol: float = 1e-12,
        cg_tol: float = 1e-2,
        cg_tol_min: float = 1e-10,
        cg_maxiter: int = 200,
        shift: float | None = None,
        max_backtrack: int = 30,
        precond: str = "diag",
        precond_rank: int = 20,
    ):
        if not op.cubic:
            raise ValueError("op: GaussNewtonKronSolve is for the cubic (Allen-Cahn) operator")
        if precond not in ("diag", "shift"):
            raise ValueError(
                f"precond: expected 'diag' or 'shift', received {precond!r}"
                f"{did_you_mean(precond, ('diag', 'shift'))}"
            )
        if not op.symmetric:
            raise ValueError(
                "op: GaussNewtonKronSolve needs even derivative orders (real eigenbasis)"
            )
        check_factor_count(factors, op)
        check_kron_grid(factors, "GaussNewtonKronSolve")
        if any(fc.lam is None for fc in factors):
            raise ValueError("factors: build them with eigen=True (operator.with_eigen)")
        tau2 = check_scalar("tau2", tau2, minimum=0.0, strict=True)
        gamma = check_scalar("gamma", gamma, minimum=0.0, strict=True)
        o = self.check_options(
            dict(
                max_iter=max_iter,
                tol=tol,
                gtol=gtol,
                cg_tol=cg_tol,
                cg_tol_min=cg_tol_min,
                cg_maxiter=cg_maxiter,
                shift=shift,
                max_backtrack=max_backtrack,
                precond_rank=precond_rank,
            )
        )
        self.factors, self.op = factors, op
        self.lin_op = replace(op, cubic=False)
        self.tau2, self.gamma = float(tau2), float(gamma)
        self.shape = tuple(fc.x.shape[0] for fc in factors)
        self.R = [fc.R for fc in factors]
        self.Rt = [fc.R.mT for fc in factors]
        self.Rinv = [fc.Rinv for fc in factors]
        self.Rinvt = [fc.Rinv.mT for fc in factors]
        ref = factors[0].L
        lam = torch.as_tensor(op.c0, dtype=ref.dtype, device=ref.device)
        for j, fc in enumerate(factors):
            view = [1] * len(factors)
            view[j] = -1
            lam = lam + op.coefs[j] * fc.lam.reshape(view)
        self.lam = lam.expand(self.shape)
        self.max_iter, self.tol, self.gtol = o["max_iter"], o["tol"], o["gtol"]
        self.cg_tol, self.cg_tol_min = o["cg_tol"], o["cg_tol_min"]
        self.cg_maxiter = o["cg_maxiter"]
        self.shift, self.max_backtrack = o["shift"], o["max_backtrack"]
        self.precond, self.precond_rank = precond, o["precond_rank"]
        # the posterior's solves at the linearisation point, built on first use (pre: its
        # variances; _cg_pre: the preconditioner of its draws); a fit step's solve needs neither
        self._pre: KronSolve | None = None
        self._pre_shift: float | None = None
        self._cg_pre: KronSolve | None = None
        self.w: Tensor | None = None
        self.d: Tensor | None = None
        self._reset_stats()

    @staticmethod
    def check_options(options: dict) -> dict:
        """Validated copy of keyword options (``GPPDESolver(solver_options=...)``): ``max_iter,
        cg_maxiter, max_backtrack, precond_rank >= 1`` (ints), ``tol, gtol, cg_tol,
        cg_tol_min >= 0``, ``shift`` ``None`` or finite, ``precond`` ``"diag"`` or ``"shift"``.
        Other keys pass through (the constructor refuses unknown ones)."""
        out = dict(options)
        if "precond" in out and out["precond"] not in ("diag", "shift"):
            raise ValueError(f"precond: expected 'diag' or 'shift', received {out['precond']!r}")
        for k in ("max_iter", "cg_maxiter", "max_backtrack", "precond_rank"):
            if k in out:
                out[k] = check_int(k, out[k], minimum=1)
        for k in ("tol", "gtol", "cg_tol", "cg_tol_min"):
            if k in out:
                out[k] = check_real(k, out[k], minimum=0.0)
        if out.get("shift") is not None:
            out["shift"] = check_real("shift", out["shift"])
        return out

    def _reset_stats(self) -> None:
        self.iterations, self.cg_iters, self.converged = 0, 0, False
        self.stop_reason = "not solved"
        self.objective, self.step_norms, self.grad_norms, self.cg_history = [], [], [], []

    # ------------------------------------------------------------------ pieces
    def _field(self, w: Tensor) -> Tensor:
        return kron_apply(self.R, w)

    def _parts(self, w: Tensor):
        """``(U, rho, e)``: field, whitened PDE residual, boundary misfit."""
        u = self._field(w)
        rho = self.lam * w + kron_apply(self.Rinv, u**3) - self.ft
        e = face_values(u, self.shape) - self.g
        return u, rho, e

    def _value(self, w: Tensor, rho: Tensor, e: Tensor) -> float:
        return 0.5 * float(
            (w * w).sum() + self.tau2 * (rho * rho).sum() + self.gamma * (e * e).sum()
        )

    def _gt(self, rho: Tensor, d: Tensor, e: Tensor) -> Tensor:
        r""":math:`\tau_2 G^\top\rho + \gamma B^\top e` with
        :math:`G^\top = \Lambda + R^\top\mathrm{diag}(d)R^{-\top}`."""
        t = self.tau2 * (d * kron_apply(self.Rinvt, rho))
        t = t + self.gamma * scatter_faces(e, self.shape)
        return self.tau2 * self.lam * rho + kron_apply(self.Rt, t)

    def hessian_matvec(self, v: Tensor, d: Tensor) -> Tensor:
        r""":math:`Hv = v + \tau_2 G^\top G v + \gamma B^\top B v` for ``v`` ``[n_1..n_d]`` (any
        batch)."""
        rv = self._field(v)
        gv = self.lam * v + kron_apply(self.Rinv, d * rv)
        return v + self._gt(gv, d, face_values(rv, self.shape))

    def _gradient(self, w: Tensor, u: Tensor, rho: Tensor, e: Tensor) -> Tensor:
        return w + self._gt(rho, 3 * u * u, e)

    def _preconditioner(self, shift: float, dprec: Tensor | None = None) -> KronSolve:
        op = replace(self.lin_op, c0=self.lin_op.c0 + shift)
        return KronSolve(self.factors, op, self.tau2, self.gamma, dprec=dprec)

    def gtg_diagonal(self, d: Tensor) -> Tensor:
        r"""Diagonal of :math:`G^\top G`, :math:`G = \Lambda + R^{-1}\mathrm{diag}(d)R`,
        ``[n_1..n_d]``.

        :math:`\|Ge_k\|^2 = \Lambda_k^2 + 2\Lambda_kK_{kk} + \|Ke_k\|^2`. In 2-D ``d`` is expanded
        by its SVD, :math:`d \approx \sum_{t\le T} a_t(x)b_t(y)` (``precond_rank``; singular values
        below 1e-12 of the largest dropped), so :math:`K = \sum_t K^{(1)}_t\otimes K^{(2)}_t`,
        :math:`K^{(j)}_t = R_j^{-1}\mathrm{diag}(\cdot)R_j`, and the diagonal costs
        :math:`O(T n^3 + T^2 n^2)`: exact for separable-rank-:math:`\le T` fields (the
        multi-scale solution :math:`h(x)h(y)` has rank 1).
        """
        lam = self.lam
        if len(self.shape) == 1:
            K = self.Rinv[0] @ (d.reshape(-1, 1) * self.R[0])
            return lam**2 + 2 * lam * K.diagonal() + (K * K).sum(0)
        Us, S, Vh = torch.linalg.svd(d)
        T = max(1, min(self.precond_rank, int((S > 1e-12 * S[0]).sum())))
        a, b = Us[:, :T] * S[:T], Vh[:T].mT
        K1 = torch.stack([self.Rinv[0] @ (a[:, t : t + 1] * self.R[0]) for t in range(T)])
        K2 = torch.stack([self.Rinv[1] @ (b[:, t : t + 1] * self.R[1]) for t in range(T)])
        kdiag = torch.einsum("ti,tj->ij", K1.diagonal(dim1=1, dim2=2), K2.diagonal(dim1=1, dim2=2))
        G1 = torch.einsum("tai,sai->tsi", K1, K1)
        G2 = torch.einsum("taj,saj->tsj", K2, K2)
        return lam**2 + 2 * lam * kdiag + torch.einsum("tsi,tsj->ij", G1, G2)

    def _cg_preconditioner(self, d: Tensor) -> KronSolve:
        r"""PCG preconditioner for :math:`H(d)`: ``"shift"``: :math:`P(\bar d)`; ``"diag"``: the
        same Woodbury solve with the diagonal :math:`1 + \tau_2\,\mathrm{diag}(G^\top G)` (exact
        diagonal of the non-boundary part of :math:`H`; equal to :math:`P` when ``d`` is
        constant)."""
        shift = float(d.mean()) if self.shift is None else float(self.shift)
        if self.precond == "diag":  # one capacitance, of this diagonal (not also the shift's)
            return self._preconditioner(
                shift, dprec=1 + self.tau2 * self.gtg_diagonal(d).clamp_min(0)
            )
        return self._preconditioner(shift)

    # ------------------------------------------------------------------ solve
    def solve(self, f: Tensor, g: Tensor, *, u0: Tensor | None = None) -> Tensor:
        r"""Damped Gauss-Newton from ``u0`` (default: the linear solve without ``U^3``).

        ``f [n_1..n_d]`` (the source on the grid), ``g [N_b]`` (boundary values in face
        order), ``u0 [n_1..n_d]`` -> the minimiser ``U [n_1..n_d]`` of :math:`\mathcal J`
        (module docstring), each step solving :math:`H\delta = -\nabla\mathcal J` by PCG."""
        ref = self.factors[0].L
        check_grid_tensor("f", f, self.shape, dtype=ref.dtype, device=ref.device)
        nb = sum(math.prod(self.shape) // self.shape[j] for j, _ in faces(self.shape))
        check_grid_tensor(
            "g", g, (nb,), dtype=ref.dtype, device=ref.device, what="boundary-value tensor"
        )
        if u0 is not None:
            check_grid_tensor("u0", u0, self.shape, dtype=ref.dtype, device=ref.device)
        self._reset_stats()
        self.ft = kron_apply(self.Rinv, f)
        self.g = g
        if u0 is None or not bool(u0.abs().sum() > 0):
            ks0 = self._preconditioner(0.0)
            ks0.solve(f, g)
            w = ks0.w.real if ks0.w.is_complex() else ks0.w
        else:
            w = kron_apply(self.Rinv, u0)
        u, rho, e = self._parts(w)
        J = self._value(w, rho, e)
        self.objective.append(J)
        g0 = None
        flat = False  # the last step was taken in the round-off regime (see below)
        for _ in range(self.max_iter):
            d = 3 * u * u
            grad = self._gradient(w, u, rho, e)
            gn = float(grad.norm())
            g0 = gn if g0 is None else g0
            self.grad_norms.append(gn)
            if not math.isfinite(gn):
                self.stop_reason = "diverged: non-finite gradient"
                raise NumericalFailure("GaussNewtonKronSolve: non-finite gradient")
            if gn <= self.gtol * max(g0, 1e-300):
                self.converged = True
                self.stop_reason = (
                    f"converged: gradient norm {gn:.2e} <= gtol={self.gtol:.2e} x the first "
                    f"gradient norm of this solve ({g0:.2e}; a relative test, not an absolute "
                    f"one); objective {J:.6e}"
                )
                break
            if flat and gn >= self.grad_norms[-2]:  # the gradient is at its round-off floor
                self.converged = True
                self.stop_reason = (
                    f"converged: gradient norm {gn:.2e} at its round-off floor (no longer "
                    f"decreasing); objective {J:.6e}"
                )
                break
            pre = self._cg_preconditioner(d)
            eta = max(self.cg_tol_min, min(self.cg_tol, math.sqrt(gn / max(g0, 1e-300))))
            delta, it, _ = pcg(
                lambda v, d=d: self.hessian_matvec(v, d),
                -grad,
                precond=pre.precision_solve,
                tol=eta,
                maxiter=self.cg_maxiter,
            )
            self.cg_iters += it
            self.cg_history.append(it)
            self.iterations += 1
            slope = float((grad * delta).sum())
            if not slope < 0:  # CG made no progress (should not happen for SPD H)
                delta = -pre.precision_solve(grad)
                slope = float((grad * delta).sum())
            # round-off regime: the predicted decrease -slope is below the accuracy of J, so the
            # Armijo test only compares round-off (it rejected full steps that were 1e3x closer
            # to the optimum, then stopped on a tiny backtracked step); -slope bounds
            # ||delta||^2 (H >= I), so the step is tiny and is taken in full
            flat = -slope <= _ROUNDOFF * torch.finfo(w.dtype).eps * abs(J)
            alpha, accepted = 1.0, False
            for _ in range(self.max_backtrack):
                w_new = w + alpha * delta
                u_new, rho_new, e_new = self._parts(w_new)
                J_new = self._value(w_new, rho_new, e_new)
                if math.isfinite(J_new) and (
                    J_new <= J + 1e-4 * alpha * slope
                    # round-off regime: an increase of J at round-off level is accepted
                    or (flat and J_new <= J + _ROUNDOFF * torch.finfo(w.dtype).eps * abs(J))
                ):
                    accepted = True
                    break
                alpha *= 0.5
            if not accepted:
                # in the round-off regime no decrease is possible: stationary to working
                # precision; otherwise the search failed (e.g. too few backtracks, or non-finite
                # trial objectives) and the iterate is not a minimum (it was reported converged)
                self.converged = flat
                self.stop_reason = (
                    f"converged: no decrease possible at round-off (stationary to working "
                    f"precision); gradient norm {gn:.2e}, objective {J:.6e}"
                    if flat
                    else f"not converged: the line search found no acceptable step in "
                    f"max_backtrack={self.max_backtrack} halvings; gradient norm {gn:.2e}, "
                    f"objective {J:.6e}"
                )
                break
            du = float((u_new - u).norm()) / max(float(u_new.norm()), 1e-300)
            w, u, rho, e, J = w_new, u_new, rho_new, e_new, J_new
            self.objective.append(J)
            self.step_norms.append(du)
            if du <= self.tol:
                self.converged = True
                self.stop_reason = (
                    f"converged: relative step {du:.2e} <= tol={self.tol:.2e} (step length "
                    f"{alpha:g} of the Gauss-Newton step); gradient norm before it {gn:.2e} "
                    f"(first of this solve {g0:.2e}), objective {J:.6e}"
                )
                break
        else:
            self.stop_reason = (
                f"not converged: max_iter={self.max_iter} steps reached; gradient norm "
                f"{self.grad_norms[-1]:.2e} before the last step (first of this solve "
                f"{g0:.2e}), objective {J:.6e}"
            )
        self.linearise(u, w)
        return u

    def linearise(self, u: Tensor, w: Tensor | None = None) -> None:
        r"""Set the linearisation point :math:`U^\star` ``[n_1..n_d]`` for the posterior (no
        iteration).

        ``w`` (optional): its whitened coordinates :math:`R^{-1}U^\star`, same shape.
        """
        ref = self.factors[0].L
        check_grid_tensor("u", u, self.shape, dtype=ref.dtype, device=ref.device)
        if w is not None:
            check_grid_tensor("w", w, self.shape, dtype=ref.dtype, device=ref.device)
        self.w = kron_apply(self.Rinv, u) if w is None else w
        self.d = 3 * u * u
        # their Kronecker solves (two or three capacitance factorisations and, for "diag", the
        # exact diagonal) are formed by the posterior's first use (pre, sample_u): the solve
        # that ends every step of a fit needed none of them
        self._pre_shift = float(self.d.mean()) if self.shift is None else self.shift
        self._pre, self._cg_pre = None, None

    @property
    def pre(self) -> KronSolve | None:
        r"""The constant-shift :class:`~.solve.KronSolve` :math:`P` at the linearisation point
        (its variances, :meth:`test_variance`), formed on first use; ``None`` before
        :meth:`solve` or :meth:`linearise`."""
        if self._pre is None and self._pre_shift is not None:
            self._pre = self._preconditioner(self._pre_shift)
        return self._pre

    def _draw_preconditioner(self) -> KronSolve:
        """The PCG preconditioner of :meth:`sample_u` at the linearisation point (formed once)."""
        if self._cg_pre is None:
            self._cg_pre = self._cg_preconditioner(self.d) if self.precond == "diag" else self.pre
        return self._cg_pre

    # ------------------------------------------------------------------ posterior
    @property
    def root_dim(self) -> int:
        """The width of :meth:`sample_u`'s noise ``z [*, root_dim]``: ``2 M + N_b`` (``M`` grid
        points, ``N_b`` boundary values)."""
        m = math.prod(self.shape)
        return 2 * m + sum(m // self.shape[j] for j, _ in faces(self.shape))

    def sample_u(self, z: Tensor, *, tol: float = 1e-8) -> Tensor:
        r"""Zero-mean draws of :math:`U` with covariance :math:`R H^{-1} R^\top` (exact Jacobian).

        ``z`` ``[*, root_dim]`` standard normal -> ``[*, n_1..n_d]``; perturb-and-solve
        :math:`w = H^{-1}(z_1 + \sqrt{\tau_2}G^\top z_2 + \sqrt\gamma B^\top z_3)` by PCG (one solve
        per draw, to relative residual ``tol``; ``z`` in the factors' dtype and on their device,
        as ``f`` and ``g``). Call after :meth:`solve`.
        """
        if self.w is None:
            raise ValueError("sample_u: call solve() first")
        check_noise(z, self.root_dim, self.factors[0].L, same_dtype=True)
        m = math.prod(self.shape)
        lead = z.shape[:-1]
        z1 = z[..., :m].reshape(*lead, *self.shape)
        z2 = z[..., m : 2 * m].reshape(*lead, *self.shape)
        z3 = z[..., 2 * m :]
        d = self.d
        rhs = z1 + math.sqrt(self.tau2) * (
            self.lam * z2 + kron_apply(self.Rt, d * kron_apply(self.Rinvt, z2))
        )
        rhs = rhs + math.sqrt(self.gamma) * kron_apply(self.Rt, scatter_faces(z3, self.shape))
        flat = rhs.reshape(-1, *self.shape)
        out = torch.empty_like(flat)
        cg_pre = self._draw_preconditioner() if flat.shape[0] else None
        for i in range(flat.shape[0]):
            x, _, _ = pcg(
                lambda v: self.hessian_matvec(v, d),
                flat[i],
                precond=cg_pre.precision_solve,
                tol=tol,
                maxiter=10 * self.cg_maxiter,
            )
            out[i] = self._field(x)
        return out.reshape(*lead, *self.shape)

    def cov_u(self) -> Tensor:
        r"""The covariance :math:`R H^{-1} R^\top` ``[M, M]`` of :meth:`sample_u`'s draws
        (exact Jacobian at the linearisation point), formed densely: :math:`H` ``[M, M]`` from
        ``M`` batched :meth:`hessian_matvec` columns, then one Cholesky factorisation
        :math:`H = L L^\top` and :math:`X = L^{-1} R^\top`, :math:`\Sigma_U = X^\top X`.
        Call after :meth:`solve` or :meth:`linearise`. Costs :math:`O(M^3)` and a few dense
        ``[M, M]`` matrices (for ``M`` up to a few thousand), where :math:`R H^{-1} R^\top`
        from :meth:`sample_u` of unit noise took ``2 M + N_b`` sequential PCG solves (20 s
        on a 12 x 12 grid)."""
        if self.w is None:
            raise ValueError("cov_u: call solve() or linearise() first")
        m = math.prod(self.shape)
        ref = self.factors[0].L
        eye = torch.eye(m, dtype=ref.dtype, device=ref.device).reshape(m, *self.shape)
        h = self.hessian_matvec(eye, self.d).reshape(m, m)  # rows H e_k: H (symmetric)
        rt = self._field(eye).reshape(m, m)  # rows R e_k: R^T
        del eye
        chol = torch.linalg.cholesky(0.5 * (h + h.mT))
        del h
        x = torch.linalg.solve_triangular(chol, rt, upper=False)
        return x.mT @ x

    def test_variance(self, T: list[Tensor], chunk: int = 16) -> Tensor:
        r"""Marginal variances ``[p_1..p_d]`` from the constant-shift system :math:`P`
        (approximation, see module): the diagonal of :math:`(\otimes T_j) R P^{-1} R^\top
        (\otimes T_j)^\top` for ``T[j]`` ``[p_j, n_j]`` (:meth:`KronSolve.test_variance`)."""
        if self.pre is None:
            raise ValueError("test_variance: call solve() or linearise() first")
        return self.pre.test_variance(T, chunk)
