r"""The GP-HM solver model: fit, posterior, save/load (Fang et al., ICLR 2024, with our
improvements).

Two methods:

* ``method="gp-hm"`` (ours): the field :math:`U` is eliminated exactly at every step
  (:class:`~bayesphys.gp_pde.solve.KronSolve` for linear operators with ``weighting="prior"``,
  second-order in a real and first-order -- advection -- in a complex eigenbasis;
  for 2-D Allen-Cahn :class:`~bayesphys.gp_pde.gauss_newton.GaussNewtonKronSolve` (matrix-free
  Gauss-Newton, PCG preconditioned by the shifted Kronecker solve) or
  :class:`~bayesphys.gp_pde.nonlinear.PicardKronSolve` (``nonlinear_solver``);
  :class:`~bayesphys.gp_pde.dense_solve.DenseSolve` with Gauss-Newton for Allen-Cahn in 1-D)
  and only the kernel hyperparameters and :math:`\log\tau_{1,2}` are optimised (Adam, cosine-decayed
  learning rate), with gradients by the envelope theorem; frequencies start at the periodogram
  peaks of the source.
* ``method="ref"``: the paper's settings: :math:`U` is a free parameter (init 0) optimised jointly
  with the hyperparameters by Adam at a constant ``lr=0.01``, identity residual metric,
  :math:`\mu_q` = ``linspace(0, 1, Q) * freq_scale``, :math:`\log a_q = 0`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._built_settings import check_shape_settings
from .._checkpoint import save_checkpoint
from .._checks import check_bool
from .._detached import warn_detached
from .._device import ArrayLike, DeviceLike, DTypeLike
from .._model import FitResult, autograd_on
from ..metrics import relative_l2
from ..posterior import GaussianPosterior
from ..problems.gp_pde import PDEProblem
from ._eliminate import eliminator, resolve_field
from ._fit import fit_solver, objective_value, settle, steps_done
from ._inputs import check_test_axes
from ._kron import kron_apply
from ._persist import load_solver, solver_state
from ._setup import (
    METHODS,
    NONLINEAR_SOLVERS,
    check_built,
    check_loadable_config,
    init_solver,
)
from ._warm_start import copy_hyperparameters
from .operator import detach_factors, grid_factors
from .posterior import (
    check_field_points,
    check_posterior_memory,
    grid_field_posterior,
    test_grid_posterior,
)

__all__ = ["GPPDESolver", "METHODS", "NONLINEAR_SOLVERS"]


class GPPDESolver:
    r"""Spectral-mixture GP solver of a PDE on a tensor-product collocation grid.

    Parameters
    ----------
    problem
        a :class:`~bayesphys.problems.gp_pde.PDEProblem` or its id; supplies the grid
        (``n_col`` points per dimension unless ``n_col`` is given), source, boundary data, the
        equation and the exact solution used for error tracking. An ``n_col`` below the
        Nyquist rate of a registered problem's solution, :math:`n - 1 < 2 \nu_i L_i`
        (:func:`~bayesphys.problems.gp_pde.solution_frequencies`), is a ``UserWarning``: the
        solution is aliased on that grid and the posterior confidently wrong.
    x
        instead of ``problem`` (not with it): grid axes ``[n_j]`` (a single 1-D axis for a 1-D
        grid; strictly increasing) or tensor-product points ``[M, d]`` (in any order with
        callable ``source`` and ``boundary``; with either a tensor, in the row-major order of
        the grid of increasing axes, in which the tensor is read: another is refused).
    source
        :math:`f` as a callable ``f(x1, ..., xd)`` of the ``d`` coordinate tensors
        ``[n_1..n_d]`` or a tensor ``[n_1..n_d]`` (real, finite); a number (or a callable's
        0-d result) is the constant source of that value.
    boundary
        :math:`u` on the boundary, as a callable or a grid tensor (only faces are read,
        and only they must be finite: NaN inside marks "unknown"); a number is the constant
        boundary value (``boundary=0.0``: homogeneous Dirichlet).
    equation
        ``"poisson"`` (default), ``"allencahn"`` or ``"advection"`` (with ``beta``,
        default 1); with a problem, the problem's (a different value is refused). ``beta``
        is read by advection only: given with another equation, it is ignored with a
        ``UserWarning`` (it is no coefficient of the Poisson or Allen-Cahn operator).
    num_mixtures
        :math:`Q` per dimension.
    kind
        ``"stm"`` (Matern-5/2 x cos) or ``"gm"``.
    method
        ``"gp-hm"`` (ours) or ``"ref"`` (paper settings).
    weighting
        residual metric (default ``"identity"`` in 1-D and for ``ref``, ``"prior"`` for
        ``gp-hm`` in 2-D).
    jitter
        per-factor nugget :math:`\epsilon` (default 1e-10 for ``gp-hm`` with the identity
        metric, else the paper's 1e-6).
    lam_b
        boundary weight :math:`\lambda_b` (default the problem's, else 200).
    nugget
        collocation-likelihood noise variance :math:`\sigma^2`; ``None`` (default) learns
        :math:`\tau_1, \tau_2` (the paper's); a float fixes
        :math:`\tau_1 = \tau_2 = 1/\sigma^2` (not optimised), i.e. the boundary values and the PDE
        residuals are observed with noise variance :math:`\sigma^2` (boundary additionally
        weighted by :math:`\lambda_b`). The posterior's width is then set by :math:`\sigma^2`,
        but never below the floor of the per-factor ``jitter`` (a nugget on :math:`U` in the prior).
    zero_component
        start one component at :math:`\mu = 0` (trends); default: only when the
        source's dominant frequency makes fewer than 4 periods across the domain.
    nonlinear_solver
        2-D Allen-Cahn on the structured (prior-metric) path: ``"picard"``
        (default; Anderson-accelerated shifted fixed point, :class:`PicardKronSolve`) or
        ``"gauss-newton"`` (damped Gauss-Newton on the exact objective,
        :class:`GaussNewtonKronSolve`, started from the previous field, or from the Picard
        iterate when there is none). 1-D Allen-Cahn always uses dense Gauss-Newton.
    solver_options
        keyword arguments for that solver (e.g. ``dict(max_iter=5, cg_maxiter=300)``),
        checked here by the solver's ``check_options``; a ``UserWarning`` says when the model
        will not read them (a linear equation, a 3-D grid, or ``weighting="identity"``).
    seed
        recorded in ``config`` (the shared model API); the solver is deterministic and draws
        no random numbers, so it neither uses the seed nor touches the global random streams.
    device
        where the model lives (``None``: the CPU; ``"auto"``: CUDA when present).

    Notes
    -----
    Scalar settings are checked before any work (``TypeError``/``ValueError`` naming the
    setting; NaN, infinities and booleans refused, integral floats converted): ``n_col >= 4``
    (with a problem only), ``num_mixtures >= 1``, ``lam_b > 0``, ``nugget > 0``, ``jitter >= 0``,
    ``freq_scale >= 0``, ``beta`` finite; ``weighting`` ``None``, ``"identity"`` or ``"prior"``;
    ``zero_component`` ``None`` or a bool; ``solver_options`` keys of the chosen solver only;
    ``dtype`` ``None`` or float64 (lower precisions are refused). A problem's own settings are
    checked alike (``problem.domain`` 1 to 3 finite increasing ``(lo, hi)`` bounds,
    ``problem.n_col >= 4`` where ``n_col`` is not given, ``problem.llk_weight > 0``,
    ``problem.freq_scale >= 0``, ``problem.n_test >= 1``), and so are the settings read at
    every use (``lam_b``, ``jitter``, ``weighting``, ``method``, ``nonlinear_solver``,
    ``solver_options``) when ``config`` is edited, at each :meth:`fit`, :meth:`predict`,
    :meth:`posterior`. A ``num_mixtures`` whose kernels cannot fit in the device's memory is
    refused with a ``MemoryError`` naming it (at construction for the parameters, at
    :meth:`fit` for a step's kernel evaluations). ``x``, ``source`` and ``boundary`` are data:
    tensors that require grad are taken without their graph (a fit does not differentiate
    through them).
    """

    @autograd_on()  # built inside inference_mode / no_grad, it still trains
    def __init__(
        self,
        problem: PDEProblem | str | None = None,
        *,
        x: ArrayLike | list[ArrayLike] | None = None,
        source: ArrayLike | Callable[..., Tensor] | None = None,
        boundary: ArrayLike | Callable[..., Tensor] | None = None,
        equation: str | None = None,
        beta: float | None = None,
        n_col: int | None = None,
        num_mixtures: int = 30,
        kind: str = "stm",
        method: str = "gp-hm",
        weighting: str | None = None,
        lam_b: float | None = None,
        jitter: float | None = None,
        freq_scale: float | None = None,
        zero_component: bool | None = None,
        nugget: float | None = None,
        nonlinear_solver: str = "picard",
        solver_options: dict | None = None,
        device: DeviceLike = None,
        dtype: DTypeLike = None,
        seed: int | None = None,
    ) -> None:
        init_solver(
            self,
            problem,
            x=x,
            source=source,
            boundary=boundary,
            equation=equation,
            beta=beta,
            n_col=n_col,
            num_mixtures=num_mixtures,
            kind=kind,
            method=method,
            weighting=weighting,
            lam_b=lam_b,
            jitter=jitter,
            freq_scale=freq_scale,
            zero_component=zero_component,
            nugget=nugget,
            nonlinear_solver=nonlinear_solver,
            solver_options=solver_options,
            device=device,
            dtype=dtype,
            seed=seed,
        )

    # ------------------------------------------------------------------ internals
    @property
    def dim(self) -> int:
        """``d``, the number of grid dimensions (``len(axes)``)."""
        return len(self.axes)

    @property
    def can_eliminate(self) -> bool:
        """Whether :math:`U` is eliminated exactly (else it is optimised jointly, as in the
        paper)."""
        if self._structured:
            return True
        return math.prod(self.shape) <= 6000

    @property
    def _structured(self) -> bool:
        """Prior metric on a 1-/2-D grid: Kronecker solve (linear) or Picard-Kronecker (cubic)."""
        return self.config["weighting"] == "prior" and self.dim <= 2

    def _params(self) -> list[Tensor]:
        taus = [self.log_tau_b, self.log_tau_pde] if self.config.get("nugget") is None else []
        return [*self.kernels.parameters(), *taus]

    def _factors(self):
        return grid_factors(list(self.kernels), self.axes, self.op, jitter=self.config["jitter"])

    def _param_key(self) -> Tensor:
        ps = [*self.kernels.parameters(), self.log_tau_b, self.log_tau_pde]
        return torch.cat([p.detach().reshape(-1) for p in ps]).clone()

    def _fresh(self) -> bool:
        """Whether ``u`` is the eliminated field at the current hyperparameters (no solve due)."""
        if self._solved_key is None:
            return False
        key = self._param_key()
        return torch.equal(key, self._solved_key.to(key.device))

    def _set_field(self, u: Tensor) -> None:
        """Store ``u`` ``[n_1..n_d]``, the field eliminated at the current hyperparameters."""
        self.u = u
        self._solved_key = self._param_key()

    def _solver(self, factors, *, reuse: bool = False):
        """Exact eliminator of ``U`` for the current hyperparameters (detached): ``(solver, run)``.

        ``run()`` solves from the stored field and returns ``U`` ``[n_1..n_d]`` (it does not store
        it). ``reuse=True`` (posterior): when the stored field was solved at the current
        hyperparameters (:meth:`_fresh`), ``run()`` only linearises the solver at it and returns
        it, so an unconverged nonlinear solve is not continued (no second, different answer).
        """
        return eliminator(self, factors, reuse=reuse)

    def predict(self, test_axes: list[ArrayLike] | ArrayLike | None = None) -> Tensor:
        r"""Posterior mean :math:`W U` ``[p_1..p_d]`` on the tensor grid of ``test_axes``.

        ``test_axes``: one 1-D tensor ``[p_j]`` per dimension (for a 1-D problem also a single
        tensor, a flat list of numbers such as ``[0.1, 0.5]``, or one number). Points outside
        the collocation grid are an extrapolation of the kernel, unconstrained by the PDE: a
        ``UserWarning`` names them. Default: the test grid, ``p_j`` evenly spaced points spanning
        the collocation axis ``j``, ``p_j`` = the problem's ``n_test`` (300 for every registered
        problem; 300 also for a custom ``x=`` problem). The mean of :meth:`posterior`, so a stale
        field (after :meth:`warm_start_from`, or before any fit) is solved first, once, as there;
        for ``method="ref"`` it is the stored :math:`U` as it is (zero before a fit).
        Computed without gradient: the mean is detached from ``test_axes`` and the
        hyperparameters (axes that require grad are a ``UserWarning`` saying so)."""
        warn_detached("GPPDESolver.predict", test_axes=test_axes)
        check_built(self, "predict")
        return self._mean(test_axes, solve=True)

    def _mean(self, test_axes, *, solve: bool, checked: bool = False) -> Tensor:
        """``W U``; ``solve=False`` reads the stored field as it is (the fit's own reports);
        ``checked``: ``test_axes`` are already the checked axes (no second check or warning)."""
        if not checked:
            test_axes = self._test_axes(test_axes, "test_axes")
        with torch.no_grad():
            fac = self._factors()
            if solve:
                self._ensure_field(detach_factors(fac))
            W = [
                torch.cholesky_solve(k.gram(xt, fc.x, 0).mT, fc.L).mT
                for k, fc, xt in zip(self.kernels, fac, test_axes)
            ]
            return kron_apply(W, self.u)

    def _test_axes(self, test_axes, name: str = "test_axes"):
        """The test axes ``[p_j]`` (default grid for ``None``); ``name``: the caller's argument,
        named in the refusals."""
        return check_test_axes(
            test_axes, self.axes, self.problem, name=name, dtype=self.dtype, device=self.device
        )

    def rel_l2(self, test_axes: list[ArrayLike] | ArrayLike | None = None) -> float:
        r"""Relative L2 error :math:`\lVert\bar u - u\rVert_2 / \lVert u\rVert_2` of the mean
        :math:`\bar u` against the problem's exact solution :math:`u` on the test grid
        ``[p_1..p_d]``: ``test_axes`` one ``[p_j]`` tensor per dimension (a single tensor or a
        flat list of numbers: the axis of a 1-D grid; ``None``: the default test grid, ``n_test``
        points per axis). Where :math:`u` is zero on the test grid it is 0 for a zero mean and
        ``inf`` otherwise (:func:`~bayesphys.metrics.relative_l2`)."""
        check_built(self, "rel_l2")
        return self._rel_l2(test_axes, solve=True)

    def _rel_l2(self, test_axes=None, *, solve: bool) -> float:
        if self.problem is None:
            raise ValueError(
                "problem: no exact solution known (a custom problem, or a model loaded from a "
                "checkpoint of one: only a registered problem is saved by its id; set "
                "model.problem to reattach it)"
            )
        ta = self._test_axes(test_axes, "test_axes")
        pred = self._mean(ta, solve=solve, checked=True)
        ex = self.problem.solution(ta)
        ex = torch.as_tensor(ex.detach() if isinstance(ex, Tensor) else ex)
        if ex.shape != pred.shape:
            # a constant exact solution (a number or a 0-d tensor, as the boundary takes it)
            # divided by its one value, not by its norm over the grid (sqrt(p) too large)
            try:
                ex = ex.broadcast_to(pred.shape)
            except RuntimeError:
                raise ValueError(
                    f"problem.exact: expected values of shape {tuple(pred.shape)} on the test "
                    f"grid (or one number), received {tuple(ex.shape)}"
                ) from None
        # relative_l2: a zero exact solution gives 0 for a zero mean (0/0 gave NaN) and inf
        # otherwise, and norms whose squares underflow are taken scaled
        # in the promoted dtype, as the subtraction of the two always was (a float64 exact
        # solution is not rounded to a float32 mean's dtype)
        dt = torch.promote_types(pred.dtype, ex.dtype)
        return float(relative_l2(pred.to(dt), ex.to(dt)))

    # ------------------------------------------------------------------ fit
    @autograd_on()
    def fit(
        self,
        data: None = None,
        *,
        steps: int = 300,
        lr: float | None = None,
        progress: bool = True,
        eval_every: int = 0,
        max_seconds: float | None = None,
        tau_lr_mult: float | None = None,
        clock: str = "wall",
        keep_best: bool | None = None,
        time_limit: float | None = None,
        callback: Callable[[GPPDESolver, int], Any] | None = None,
        callback_every: int = 100,
    ) -> FitResult:
        r"""Optimise the hyperparameters (and :math:`U` for ``method="ref"``).

        ``lr`` defaults to 0.05 with cosine decay (``gp-hm``) or 0.01 constant (``ref``).
        ``eval_every > 0`` records the test-grid relative L2 error (problem with exact solution)
        in ``self.history`` (``step``, ``rel_l2``; ``fit_steps`` the steps of each fit call):
        it accumulates over fit calls, a later fit's steps counting on from the earlier ones';
        ``result.extra`` holds ``rel_l2_best`` (minimum over this fit's checkpoints and its
        final state, labelled as such). The step that ends a fit as a divergence (a failed
        solve, or an update that leaves Adam's state non-finite) records none and is not
        counted in :attr:`steps_done`, whatever ``eval_every``; nor is the step before it,
        whose starting hyperparameters are restored, its update undone (its checkpoint is
        dropped: the next fit records that state as its first step, numbered
        :attr:`steps_done`). So after a divergence at step ``k`` of the call
        (``result.steps == k``) :attr:`steps_done` has grown by ``max(k - 1, 0)``, the
        updates of the state kept (docs/concepts.md, "Models").
        ``max_seconds`` (s) stops early (asked after each step: at least one is taken),
        measured on ``clock`` (``"wall"`` or ``"cpu"``: process CPU time, for fair budgets on
        a shared machine; ``"cpu"`` only with a budget; it counts
        every thread of the process, torch's own worker threads as it must, but also any
        other work the process runs in threads meanwhile: give concurrent fits in threads a
        ``"wall"`` budget);
        ``time_limit`` is its former name
        (deprecated, warns). ``data`` is unused (the PDE data are set at construction).
        ``keep_best=None`` (default): ``True`` for ``gp-hm``, ``False`` for ``ref`` (as the
        reference code's loop). ``True``: the fit returns the iterate with the lowest objective
        :math:`\mathcal J` among those evaluated and kept (each recorded step's starting
        point, ``result.loss_history``, and the last iterate; not the start of a step that
        ends the fit as a divergence, which the fit discards even where its objective is
        finite, an update that left Adam's state non-finite), hyperparameters and field as
        they were evaluated (the field is not re-solved:
        a nonlinear solve depends on its warm start), not necessarily the last: late Adam steps
        can leave a basin of far lower objective (training data only, no test error involved).
        ``result.extra`` then holds ``best_step`` (the step whose starting point was kept, counted
        from 0 in this call; ``steps`` = the last iterate; ``history["step"]`` numbers it
        ``best_step`` plus the :attr:`steps_done` before the call), ``best_objective`` and
        ``final_objective`` (absent when no step's objective was recorded, e.g. ``steps=0``). For
        2-D Allen-Cahn :math:`\mathcal J` is evaluated at an inexact minimiser over :math:`U` (a
        Picard fixed-point iterate, or capped Gauss-Newton / CG steps). ``False``: the last iterate.
        Checked: ``steps >= 0`` and ``eval_every >= 0`` (ints), ``lr > 0``, ``max_seconds > 0``,
        ``tau_lr_mult >= 0`` (finite; only with learned precisions, ``nugget=None``), ``keep_best``
        a bool or ``None``. A numerical failure of a solve (non-finite iterate or precision, Gram
        factor not positive definite, diverged nonlinear iteration, failed factorisation) is
        reported as a divergence and the last good state restored; any other error raised inside a
        solve (or an interrupt) propagates, and the model keeps the hyperparameters of the last
        completed step (a joint fit, ``method="ref"``, also its field; an eliminated field is
        re-solved for them on next use), not those it started from. A second call continues from the
        current hyperparameters with a fresh Adam (``gp-hm``: and a fresh cosine decay).

        ``callback(model, step)`` runs after the update of every ``callback_every``-th step
        of this call (its steps ``c, 2c, ...`` up to ``steps``, ``c = callback_every``; not
        after a step whose solve failed, or whose update left Adam's state non-finite, which
        ends the fit). ``model`` is this model holding
        the hyperparameters of that update (the current iterate: ``keep_best`` picks its
        iterate at the end of the fit), ready to :meth:`save`, :meth:`predict` or give its
        :meth:`posterior`. Where :math:`U` is optimised jointly (``method="ref"``) the field
        is the one optimised with them; where it is eliminated, the stored field is that of
        the step's starting point, and a prediction in the callback first solves it at the
        current hyperparameters (as after :meth:`warm_start_from`) without changing the
        field the next step starts from. ``step`` is the model's total number of steps,
        :attr:`steps_done` at that moment (a second call counts on from the first;
        ``history["fit_steps"]`` counts this call's steps meanwhile). Its time is excluded
        from the result's ``seconds`` and ``extra["cpu_seconds"]`` and from ``max_seconds``
        (on ``clock``). An exception it raises (``KeyboardInterrupt`` and ``StopIteration``
        included) propagates and leaves the hyperparameters of that last completed step, as
        an error inside a step does. Checked before the first step with the others:
        ``callback_every >= 1`` (an int), ``callback`` ``None`` or callable as
        ``callback(model, step)``.
        """
        check_built(self, "fit")
        return fit_solver(
            self,
            data,
            steps=steps,
            lr=lr,
            progress=progress,
            eval_every=eval_every,
            max_seconds=max_seconds,
            tau_lr_mult=tau_lr_mult,
            clock=clock,
            keep_best=keep_best,
            time_limit=time_limit,
            callback=callback,
            callback_every=callback_every,
        )

    @property
    def steps_done(self) -> int:
        """Optimiser steps of every :meth:`fit` so far (the sum of ``history["fit_steps"]``,
        at least one past the last step ``history["step"]`` records; after a divergence, the
        updates of the restored hyperparameters: one fewer than ``result.steps``): the
        ``step`` a fit's callback receives, and where the next fit numbers its steps from."""
        return steps_done(self.history)

    def _settle(self, joint: bool, u_param: Tensor | None) -> Exception | None:
        """Make ``u`` consistent with the current hyperparameters (``u_param`` if joint);
        returns the numerical error of a failed solve (the last good field is kept)."""
        return settle(self, joint, u_param)

    def _objective_value(self, u: Tensor) -> float:
        r""":math:`\mathcal J` at the current hyperparameters and field ``u`` (``inf`` if a
        factorisation fails)."""
        return objective_value(self, u)

    # ------------------------------------------------------------------ posterior
    def posterior(self, x: list[ArrayLike] | ArrayLike | None = None) -> GaussianPosterior:
        r"""Gaussian posterior of :math:`u` on the tensor grid of the axes ``x`` (default test
        grid).

        ``x``: as ``test_axes`` of :meth:`predict` (one ``[p_j]`` axis per dimension; for a 1-D
        problem also a single axis or a flat list of numbers).

        Exact GP conditioning on the boundary and collocation likelihoods for linear PDEs;
        linearised at :math:`U^\star` (Gauss-Newton/Laplace) for Allen-Cahn. Event shape
        ``[p_1..p_d]``; variances exact, draws pathwise; no dense matrix over the full grid:
        the posterior's ``covariance`` is the diagonal of those variances (the draws, from its
        custom root, are correlated), so its ``log_prob`` raises ``NotImplementedError``.
        Exception: 2-D Allen-Cahn, where the variances use the constant-shift Jacobian
        :math:`\mathcal A + \bar d` (with ``nonlinear_solver="gauss-newton"`` the draws use the
        exact Jacobian, by PCG; with ``"picard"`` both use the shift).
        For ``method="ref"`` the mean is the fitted :math:`U` and the covariance that of the
        exact solve at the fitted hyperparameters (solved afresh from :math:`U` on every call).

        Idempotent: when :math:`U` was solved at the current hyperparameters (by :meth:`fit`,
        :meth:`solve_field` or an earlier call; restored by :meth:`load`) it is used as it is --
        a nonlinear solve that stopped unconverged is not continued here, and the model is not
        changed (call :meth:`solve_field` to iterate further). Only when the hyperparameters
        changed since the last solve (or after :meth:`warm_start_from`) is :math:`U` solved and
        stored first, once. A test grid whose posterior cannot fit in the device's memory is
        refused with a ``MemoryError`` naming ``x`` before any work (a warning above half).
        Computed without gradient, as :meth:`predict`: mean, variances and draws are detached
        from ``x`` and the hyperparameters (axes that require grad are a ``UserWarning``).
        """
        warn_detached("GPPDESolver.posterior", x=x)
        check_built(self, "posterior")
        ta = self._test_axes(x, "x")
        sizes = [int(a.numel()) for a in ta]
        check_posterior_memory(
            "x", sizes, [int(a.numel()) for a in self.axes], self.dtype, self.device
        )
        with torch.no_grad():
            fac = detach_factors(self._factors())
            self._ensure_field(fac)
            solver, run = self._solver(fac, reuse=True)  # linearised at the stored field
            run()
            return test_grid_posterior(
                list(self.kernels), fac, ta, self.u, solver, jitter=self.config["jitter"]
            )

    def field_posterior(self) -> GaussianPosterior:
        r"""Joint Gaussian posterior of the field :math:`U` on the collocation grid, with its
        dense covariance: :math:`\mathcal N(U^\star, \Sigma_U)`, event shape ``[n_1..n_d]``,
        covariance ``[M, M]`` (``M = n_1 \cdots n_d``, at most 6000; a larger grid is a
        ``ValueError``: use :meth:`posterior`).

        Where :meth:`posterior` keeps only marginal variances (its draws are correlated, its
        ``log_prob`` raises), this posterior has the full covariance, so ``log_prob`` works and
        linear functionals of the field (observations at grid points, sums, differences) have
        their exact joint law: e.g. ``post.mean.reshape(-1)[idx]`` and
        ``post.covariance.to_dense()[idx][:, idx]`` for the field at grid points ``idx`` (as
        the inverse-problem example reads it). Linearised at :math:`U^\star` for Allen-Cahn, as
        :meth:`posterior`; idempotent in the same way (it solves :math:`U` only when the
        hyperparameters changed since the last solve). Its covariance is that of the
        solver's draws: with ``nonlinear_solver="gauss-newton"`` the exact Jacobian's (formed
        densely, :math:`O(M^3)`), where :meth:`posterior`'s variances use the constant shift.
        """
        check_built(self, "field_posterior")
        check_field_points(self.shape, self.dtype, self.device)  # before any solve
        with torch.no_grad():
            fac = detach_factors(self._factors())
            self._ensure_field(fac)
            solver, run = self._solver(fac, reuse=True)  # linearised at the stored field
            run()
            return grid_field_posterior(self.u, solver)

    def _ensure_field(self, fac) -> None:
        """Solve :math:`U` once if it is stale (hyperparameters changed since the last solve,
        or :meth:`warm_start_from`) and the model eliminates it; a fresh field is left as is."""
        if self.config["method"] == "gp-hm" and self.can_eliminate and not self._fresh():
            _, run = self._solver(fac)  # stale field: solve once at these hyperparameters
            self._set_field(run())

    def solve_field(self, *, newton: bool = False) -> dict[str, Any]:
        r"""Re-solve :math:`U` at the current hyperparameters (no optimisation step).

        For Allen-Cahn on the structured path ``newton=True`` finishes a stalled Picard iteration
        by Newton-GMRES (:class:`~.nonlinear.PicardKronSolve`). Returns solver statistics:
        ``solver`` (its class name) and what the solver records of ``iterations``,
        ``newton_steps``, ``krylov_iters``, ``cg_iters``, ``last_update`` (the last relative
        update) and, for the 2-D Allen-Cahn solvers, ``converged`` and ``stop_reason`` (the
        stopping test that ended the solve; ``converged`` means that the solver's own relative
        test was met, not that the objective is small: see the solvers' docstrings).
        ``newton``: a bool (``TypeError`` otherwise); other solvers ignore it.
        """
        check_built(self, "solve_field")
        # "no" is truthy: it ran Newton-GMRES
        return resolve_field(self, newton=check_bool("newton", newton))

    def warm_start_from(self, other: GPPDESolver) -> GPPDESolver:
        r"""Copy the kernel hyperparameters and :math:`\tau_{1,2}` of ``other`` (any grid size).

        The kernels are functions of the continuous coordinates, so hyperparameters fitted on a
        coarse grid are a valid start on a fine one (coarse-to-fine continuation). The field is
        reset to zero: ``method="gp-hm"`` re-solves it on this grid at the next
        :meth:`fit`/:meth:`posterior` call; ``method="ref"`` starts it from zero (the paper's
        initialisation) and optimises it at the next :meth:`fit` (until then the posterior mean
        is zero). :math:`\tau_{1,2}` are copied only when this model learns them
        (``nugget=None``); a fixed ``nugget`` keeps its own. Returns ``self``.
        """
        if not isinstance(other, GPPDESolver):
            raise TypeError(f"other: expected a GPPDESolver, received {type(other).__name__}")
        copy_hyperparameters(self, other)
        return self

    def mixture_weights(self) -> list[Tensor]:
        """Per-dimension weights ``[Q]`` (sorted as the parameters)."""
        return [k.weights.detach() for k in self.kernels]

    # ------------------------------------------------------------------ persistence
    def __repr__(self) -> str:
        c = self.config
        return (
            f"GPPDESolver(problem={c['problem'] or c['equation']!r}, grid={list(self.shape)}, "
            f"Q={c['num_mixtures']}, kind={c['kind']!r}, method={c['method']!r}, "
            f"device={self.device}, dtype={str(self.dtype).replace('torch.', '')})"
        )

    def state(self) -> dict[str, Any]:
        """The tensors and history of the model (on the CPU) that :meth:`load` restores. As
        ``nn.Module.state_dict``, not copies: on the CPU its tensors and its ``history`` are
        the model's own (an in-place edit of them changes the model); copy before editing."""
        return solver_state(self)

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint that :meth:`load` restores exactly. A ``config["num_mixtures"]``
        or ``config["kind"]`` assigned after construction (the kernels keep the shapes they
        were built with), a ``config["problem"]``, ``["equation"]``, ``["beta"]``,
        ``["nugget"]``, ``["freq_scale"]`` or ``["zero_component"]`` assigned after it (read
        at construction only: :meth:`fit`,
        :meth:`predict`, :meth:`posterior` refuse them, and ``num_mixtures`` / ``kind``, too)
        and a value the constructor would refuse are refused before anything is written."""
        check_shape_settings(self.config, getattr(self, "_shape_settings", {}), "GPPDESolver")
        check_built(self, "save")
        check_loadable_config(self)
        return save_checkpoint(
            path, kind="gp_pde.GPPDESolver", config=dict(self.config), state=self.state()
        )

    @classmethod
    @autograd_on()
    def load(cls, path: str | Path, *, device: DeviceLike = None) -> GPPDESolver:
        """Restore a model written by :meth:`save` (on ``device``, default the CPU)."""
        return load_solver(cls, path, device=device)
