r"""Shifted fixed-point (Picard) iteration with Anderson acceleration for the cubic (Allen-Cahn)
operator.

The Allen-Cahn residual on the grid is :math:`r(U) = \mathcal A U + U^{3} - f`, with the linear
Kronecker-sum part :math:`\mathcal A = \sum_j D_j^{(\oplus)} + c_0` (:mod:`.operator`). Every
iteration is one *exact* structured solve of the linear prior-metric problem of :mod:`.solve`
(:class:`~.solve.KronSolve`: Kronecker sum + Woodbury, :math:`O(n^3)`) for the shifted operator
:math:`\mathcal A + \bar d\,I`, :math:`\bar d = \mathrm{mean}(3U_0^2)`, with the nonlinearity moved
to the source:

.. math:: U_{k+1} = \arg\min_U \tfrac12 U^\top C^{-1} U
   + \tfrac{\tau_2}2\|L^{-1}((\mathcal A + \bar d)U - f + U_k^3 - \bar d U_k)\|^2
   + \tfrac\gamma2\|SU - g\|^2 ,

accelerated by Anderson mixing (depth 5). The error propagates by
:math:`-(\mathcal A + \bar d)^{-1}(3U^2 - \bar d)` (with :math:`(\cdot)^{-1}` the penalised
solve). Measured on the 2-D multi-scale problem: contraction to :math:`10^{-13}` in 7 iterations
at the initial hyperparameters (100x100), but **no contraction at fitted ones** (the update
stalls at 1e-6..1e-2 on 100..400 grids); the iterate with the smallest update is then returned
(``step_norms`` records the updates). At the fixed point
:math:`U^\star` the residual is tested against :math:`(\mathcal A + \bar d)` instead of the
Gauss-Newton Jacobian :math:`\mathcal A + \mathrm{diag}(3U^{\star 2})`:

.. math:: C^{-1}U^\star + \tau_2 (\mathcal A + \bar d)^\top C^{-1} r(U^\star) + \gamma
   S^\top(SU^\star - g) = 0,

a Petrov-Galerkin variant of the GP-HM stationarity condition that coincides with it as
:math:`r(U^\star) \to 0` (the collocation limit :math:`\tau_2 \to \infty`). The exact minimiser of
the objective is computed by :class:`~.gauss_newton.GaussNewtonKronSolve` (matrix-free Gauss-Newton,
PCG with a Kronecker-Woodbury preconditioner; ``GPPDESolver(nonlinear_solver="gauss-newton")``).

Posterior: the Gaussian linearised at :math:`U^\star` with the structure-keeping Jacobian
:math:`\mathcal A + \bar d I` (the shifted solve's own covariance :math:`R P^{-1} R^\top`), so
variances and draws stay exact-structured; the spatial variation of :math:`3U^{\star2}` about its
mean is neglected in the covariance (an approximation, stated in the docs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from .._checks import check_int, check_real, check_scalar
from .._linalg import lstsq_any_rank
from ._errors import NumericalFailure
from ._inputs import check_grid_tensor
from ._kron import faces
from .operator import Factor, LinearPDEOperator, check_factor_count
from .solve import KronSolve, check_kron_grid

__all__ = ["PicardKronSolve", "gmres"]


def gmres(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    tol: float = 1e-10,
    restart: int = 60,
    maxiter: int = 300,
) -> tuple[Tensor, int, float]:
    r"""Restarted GMRES (modified Gram-Schmidt) for a nonsymmetric ``matvec`` on flat vectors.

    Stops when :math:`\|b - Ax\| \le \mathrm{tol}\,\|b\|`. Returns ``(x, iterations, relres)``.
    ``restart >= 1`` (the Krylov basis size between restarts), ``maxiter >= 0``, ``tol >= 0``.
    """
    restart = check_int("restart", restart, minimum=1)  # 0 failed with an UnboundLocalError
    maxiter = check_int("maxiter", maxiter, minimum=0)
    tol = check_real("tol", tol, minimum=0.0)
    x = torch.zeros_like(b)
    bn = float(b.norm()) or 1.0
    r = b.clone()
    it = 0
    res = 1.0
    while it < maxiter:
        beta = float(r.norm())
        res = beta / bn
        if res <= tol:
            break
        V = [r / beta]
        H = torch.zeros(restart + 1, restart, dtype=b.dtype, device=b.device)
        k_used = 0
        for k in range(restart):
            w = matvec(V[k])
            for i in range(k + 1):
                H[i, k] = torch.dot(w, V[i])
                w = w - H[i, k] * V[i]
            H[k + 1, k] = w.norm()
            k_used = k + 1
            it += 1
            e1 = torch.zeros(k + 2, dtype=b.dtype, device=b.device)
            e1[0] = beta
            y = lstsq_any_rank(H[: k + 2, : k + 1], e1.unsqueeze(-1)).squeeze(-1)
            res = float((e1 - H[: k + 2, : k + 1] @ y).norm()) / bn
            if res <= tol or float(H[k + 1, k]) <= 1e-300 or it >= maxiter:
                break
            V.append(w / H[k + 1, k])
        x = x + torch.stack(V[:k_used], 1) @ y
        r = b - matvec(x)
        if res <= tol:
            break
    return x, it, float(r.norm()) / bn


class PicardKronSolve:
    r"""Fixed point of the shifted Picard map for :math:`\mathcal A U + U^3 = f` (see module
    docstring).

    ``factors`` from :func:`~.operator.with_eigen` (1-D or 2-D, even orders; another grid is
    refused, ``NotImplementedError``); ``op.cubic`` must
    be true; ``tau2``, ``gamma``: finite numbers (or 0-d tensors) ``>= 0``. ``solve(f, g,
    u0=...)`` with ``f`` ``[n_1..n_d]`` and ``g`` ``[N_b]`` (finite) returns ``U`` ``[n_1..n_d]``
    and records ``iterations``, ``step_norms`` (relative update sizes), ``converged`` and
    ``stop_reason`` (as :class:`~.gauss_newton.GaussNewtonKronSolve`): ``converged`` is true only
    when the iteration met its own stopping rule (a relative update :math:`\le` ``tol``, or with
    ``newton=True`` the Newton phase at the round-off floor of the solve: updates below
    ``accept`` that no longer shrink); a solve that ran out of ``max_iter``, or whose updates
    began to grow, returns the iterate with the smallest update with ``converged`` false, and
    ``stop_reason`` says which and how large that update was.
    """

    def __init__(
        self,
        factors: list[Factor],
        op: LinearPDEOperator,
        tau2: Tensor | float,
        gamma: Tensor | float,
        *,
        shift: float | None = None,
        max_iter: int = 100,
        tol: float = 1e-12,
        depth: int = 5,
        newton: bool = False,
        max_newton: int = 30,
        accept: float = 1e-7,
    ):
        if not op.cubic:
            raise ValueError("op: PicardKronSolve is for the cubic (Allen-Cahn) operator")
        check_factor_count(factors, op)
        check_kron_grid(factors, "PicardKronSolve")
        o = self.check_options(
            dict(
                shift=shift,
                max_iter=max_iter,
                tol=tol,
                depth=depth,
                newton=newton,
                max_newton=max_newton,
                accept=accept,
            )
        )
        self.factors, self.op = factors, op
        self.lin_op = replace(op, cubic=False)
        self.tau2, self.gamma = (
            check_scalar("tau2", tau2, minimum=0.0),
            check_scalar("gamma", gamma, minimum=0.0),
        )
        self.shape = tuple(fc.x.shape[0] for fc in factors)
        self.shift, self.max_iter, self.depth = o["shift"], o["max_iter"], o["depth"]
        self.tol = o["tol"]
        self.newton, self.max_newton, self.accept = o["newton"], o["max_newton"], o["accept"]
        self.newton_steps, self.krylov_iters = 0, 0
        self.iterations, self.step_norms = 0, []
        self.converged, self.stop_reason = False, "not solved"
        self.pre: KronSolve | None = None
        self.used_shift: float | None = None  # the shift of the last solve / linearise

    @staticmethod
    def check_options(options: dict) -> dict:
        """Validated copy of keyword options (``GPPDESolver(solver_options=...)``): ``max_iter,
        max_newton >= 1`` and ``depth >= 0`` (ints; depth 0: no Anderson mixing), ``tol,
        accept >= 0``, ``shift`` ``None`` or finite, ``newton`` a bool. Other keys pass through
        (the constructor refuses unknown ones)."""
        out = dict(options)
        for k in ("max_iter", "max_newton"):
            if k in out:
                out[k] = check_int(k, out[k], minimum=1)
        if "depth" in out:
            out["depth"] = check_int("depth", out["depth"], minimum=0)
        for k in ("tol", "accept"):
            if k in out:
                out[k] = check_real(k, out[k], minimum=0.0)
        if out.get("shift") is not None:
            out["shift"] = check_real("shift", out["shift"])
        if "newton" in out and not isinstance(out["newton"], bool):
            raise TypeError(f"newton: expected a bool, received {type(out['newton']).__name__}")
        return out

    def _shifted(self, shift: float) -> KronSolve:
        op = replace(self.lin_op, c0=self.lin_op.c0 + shift)
        return KronSolve(self.factors, op, self.tau2, self.gamma)

    def solve(self, f: Tensor, g: Tensor, *, u0: Tensor | None = None) -> Tensor:
        """Anderson-accelerated Picard iterations from ``u0`` (default: the solve without ``U^3``).

        ``f [n_1..n_d]`` (the source on the grid), ``g [N_b]`` (boundary values in face
        order), ``u0 [n_1..n_d]`` -> the fixed point ``U [n_1..n_d]`` of the shifted update
        (module docstring).

        Without convergence in ``max_iter`` the iterate with the smallest update is returned
        (``converged`` false; the hyperparameter fit keeps going and the iteration converges as
        the kernel improves);
        with ``newton=True`` a stalled iteration is finished by Newton-GMRES on the fixed-point
        equation instead (exact but slow on 400x400 grids: hundreds of Krylov solves)."""
        dev = self.factors[0].L.device
        check_grid_tensor("f", f, self.shape, device=dev)
        nb = sum(math.prod(self.shape) // self.shape[j] for j, _ in faces(self.shape))
        check_grid_tensor("g", g, (nb,), device=dev, what="boundary-value tensor")
        if u0 is not None:
            check_grid_tensor("u0", u0, self.shape, device=dev)
        if u0 is None or not bool(u0.abs().sum() > 0):
            u = self._shifted(0.0).solve(f, g)
        else:
            u = u0.clone()
        # this solve's shift; self.shift stays the setting (a first solve's value was kept and
        # reused by every later solve and linearise)
        shift = float((3 * u * u).mean()) if self.shift is None else float(self.shift)
        self.used_shift = shift
        ks = self._shifted(shift)
        self.pre = ks
        self.iterations, self.step_norms, self.newton_steps, self.krylov_iters = 0, [], 0, 0
        self.converged, self.stop_reason = False, "not solved"

        def phi(v: Tensor) -> Tensor:
            return ks.solve(f - v**3 + shift * v, g)

        xs: list[Tensor] = []
        fs: list[Tensor] = []
        best, best_step = u, math.inf
        why = f"max_iter={self.max_iter} reached"
        for _ in range(self.max_iter):
            res = phi(u) - u
            step = float(res.norm()) / max(float(u.norm()), 1e-300)
            self.iterations += 1
            self.step_norms.append(step)
            if not math.isfinite(step) or step > 1e3 * best_step:
                if not math.isfinite(best_step):
                    self.stop_reason = "diverged: non-finite update"
                    raise NumericalFailure("PicardKronSolve: the fixed-point iteration diverged")
                why = f"the update grew to {step:.2e} after {self.iterations} iterations"
                break  # growing: keep the best iterate (or finish by Newton)
            if step < best_step:
                best, best_step = u, step
            if step <= self.tol:
                self.converged = True
                self.stop_reason = (
                    f"converged: relative update {step:.2e} <= tol={self.tol:.2e} after "
                    f"{self.iterations} iterations"
                )
                return u + res
            xs.append(u.reshape(-1))
            fs.append(res.reshape(-1))
            if len(xs) > self.depth + 1:
                xs.pop(0)
                fs.pop(0)
            if len(xs) > 1:  # Anderson mixing on the last `depth` differences
                dF = torch.stack([fs[i + 1] - fs[i] for i in range(len(fs) - 1)], 1)
                dX = torch.stack([xs[i + 1] - xs[i] for i in range(len(xs) - 1)], 1)
                coef = lstsq_any_rank(dF, fs[-1].unsqueeze(-1))  # dF may lose rank
                u = (xs[-1] + fs[-1] - ((dX + dF) @ coef).squeeze(-1)).reshape(self.shape)
            else:
                u = u + res
            if self.newton and len(self.step_norms) >= 8 and step > 0.5 * self.step_norms[-8]:
                why = f"stalled at a relative update {step:.2e}"
                break  # stalled: switch to Newton
        if not self.newton:
            # the iterate with the smallest update (see `step_norms`)
            self.stop_reason = (
                f"not converged: {why} without a relative update <= tol={self.tol:.2e}; "
                f"returned the iterate with the smallest update ({best_step:.2e})"
            )
            return best
        return self._newton(phi, ks, best, shift, torch.zeros_like(g))

    def _newton(self, phi, ks: KronSolve, u: Tensor, shift: float, zero_g: Tensor) -> Tensor:
        r"""Newton on :math:`F(U) = \Phi(U) - U`, :math:`\Phi'(U)v = -S((3U^2 - \bar d)v)` with
        :math:`S` the linear part of the shifted solve; each step by GMRES."""
        for _ in range(self.max_newton):
            F = phi(u) - u
            step = float(F.norm()) / max(float(u.norm()), 1e-300)
            self.step_norms.append(step)
            self.iterations += 1
            if not math.isfinite(step):
                self.stop_reason = "diverged: non-finite update in the Newton phase"
                raise NumericalFailure("PicardKronSolve: the fixed-point iteration diverged")
            floor = (
                self.newton_steps >= 2 and step > 0.3 * self.step_norms[-2] and step < self.accept
            )
            if step <= self.tol or floor:
                # converged, or at the round-off floor of the solve
                self.converged = True
                rule = (
                    f"relative update {step:.2e} <= tol={self.tol:.2e}"
                    if step <= self.tol
                    else f"relative update {step:.2e} < accept={self.accept:.2e} at the "
                    "round-off floor (no longer shrinking)"
                )
                self.stop_reason = f"converged: {rule} after {self.newton_steps} Newton steps"
                return u + F
            jv = self._newton_matvec(ks, u, shift, zero_g)
            # inexact Newton: Krylov tolerance tied to the current update size
            delta, it, _ = gmres(jv, F.reshape(-1), tol=min(1e-2, max(10 * step, 1e-9)))
            self.krylov_iters += it
            self.newton_steps += 1
            u = u + delta.reshape(self.shape)
        self.stop_reason = f"not converged: max_newton={self.max_newton} Newton steps reached"
        raise NumericalFailure(
            f"PicardKronSolve: Newton-GMRES did not converge (last relative update {step:.2e})"
        )

    def _newton_matvec(self, ks: KronSolve, u: Tensor, shift: float, zero_g: Tensor):
        r"""The Newton matrix :math:`I - \Phi'(U)` on flat vectors ``[prod(n)]``:
        :math:`v \mapsto v + S((3U^2 - \bar d)\,v)`, with :math:`S` the shifted solve at zero
        boundary values (the derivative of :math:`\Phi(V) = S(f - V^3 + \bar d V, g)`)."""
        dd = 3 * u * u - shift

        def jv(v: Tensor) -> Tensor:
            vv = v.reshape(self.shape)
            return (vv + ks.solve(dd * vv, zero_g)).reshape(-1)

        return jv

    def linearise(self, u: Tensor) -> Tensor:
        r"""Set the posterior's shifted solve at ``u`` ``[n_1..n_d]`` (no iteration); returns ``u``.

        The shift is ``shift`` if given, else :math:`\bar d = \mathrm{mean}(3U^2)` (what
        :meth:`solve` uses when started from ``u0=u``).
        """
        check_grid_tensor("u", u, self.shape, device=self.factors[0].L.device)
        shift = float((3 * u * u).mean()) if self.shift is None else float(self.shift)
        self.used_shift = shift
        self.pre = self._shifted(shift)
        return u

    # structured posterior of the linearisation with the mean-shift Jacobian
    def _linearised(self, name: str) -> KronSolve:
        if self.pre is None:
            raise ValueError(f"{name}: call solve() or linearise() first")
        return self.pre

    @property
    def root_dim(self) -> int:
        """Length of the standard-normal vector ``z`` that :meth:`sample_u` maps to one draw."""
        return self._linearised("root_dim").root_dim

    def sample_u(self, z: Tensor) -> Tensor:
        r"""Zero-mean draws of :math:`U` under the linearised posterior (shifted Jacobian
        :math:`\mathcal A + \bar d`): ``z [*, root_dim]`` standard normal -> ``[*, n_1..n_d]``
        (:meth:`KronSolve.sample_u` of the shifted solve; call :meth:`solve` or
        :meth:`linearise` first)."""
        return self._linearised("sample_u").sample_u(z)

    def test_variance(self, T: list[Tensor], chunk: int = 16) -> Tensor:
        r"""Posterior variances ``[p_1..p_d]`` (real) on a test grid under the linearised
        posterior: ``T[j] [p_j, n_j]`` the interpolation weights per axis, in chunks of
        ``chunk`` rows (:meth:`KronSolve.test_variance` of the shifted solve)."""
        return self._linearised("test_variance").test_variance(T, chunk)
