r"""The GP-HM solver model: fit, posterior, save/load (Fang et al., ICLR 2024, with our improvements).

Two methods:

* ``method="gp-hm"`` (ours): the field :math:`U` is eliminated exactly at every step
  (:class:`~bayesphys.gp_pde.solve.KronSolve` for linear operators with ``weighting="prior"``,
  second-order in a real and first-order -- advection -- in a complex eigenbasis;
  for 2-D Allen-Cahn :class:`~bayesphys.gp_pde.gauss_newton.GaussNewtonKronSolve` (matrix-free
  Gauss-Newton, PCG preconditioned by the shifted Kronecker solve) or
  :class:`~bayesphys.gp_pde.nonlinear.PicardKronSolve` (``nonlinear_solver``);
  :class:`~bayesphys.gp_pde.solve.DenseSolve` with Gauss-Newton for Allen-Cahn in 1-D) and only
  the kernel hyperparameters and :math:`\log\tau_{1,2}` are optimised (Adam, cosine-decayed
  learning rate), with gradients by the envelope theorem; frequencies start at the periodogram
  peaks of the source.
* ``method="ref"``: the paper's settings: :math:`U` is a free parameter (init 0) optimised jointly
  with the hyperparameters by Adam at a constant ``lr=0.01``, identity residual metric,
  :math:`\mu_q` = ``linspace(0, 1, Q) * freq_scale``, :math:`\log a_q = 0`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_real, check_seed
from .._device import (
    ArrayLike,
    DeviceLike,
    DTypeLike,
    as_tensor,
    check_finite,
    model_device,
    resolve_dtype,
)
from .._model import (
    FitResult,
    _refresh,
    _restore,
    _snapshot,
    autograd_on,
    optimize,
    save_checkpoint,
)
from .._stack import user_stacklevel
from .._time_budget import check_max_seconds
from ..posterior import GaussianPosterior
from ..problems.gp_pde import PDEProblem, get_problem
from ._eliminate import eliminator
from ._errors import NumericalFailure
from ._inputs import eval_on_grid, parse_grid
from ._kron import face_values, kron_apply
from ._persist import load_solver, solver_state
from ._setup import METHODS, NONLINEAR_SOLVERS, checked_args, initial_kernels, registered
from ._units import warn_axes, warn_field_scale
from .nonlinear import PicardKronSolve
from .operator import LinearPDEOperator, build_factors, detach_factors
from .posterior import test_grid_posterior
from .solve import objective

__all__ = ["GPPDESolver", "METHODS", "NONLINEAR_SOLVERS"]

# failures of a solve that fit() reports as a divergence (restoring the last good state); any
# other error inside a solve (a bug, a bad input) propagates with its own traceback
_NUMERICAL = (NumericalFailure, torch.linalg.LinAlgError)


class GPPDESolver:
    r"""Spectral-mixture GP solver of a PDE on a tensor-product collocation grid.

    Parameters
    ----------
    problem: a :class:`~bayesphys.problems.gp_pde.PDEProblem` or its id; supplies the grid
        (``n_col`` points per dimension unless ``n_col`` is given), source, boundary data, the
        equation and the exact solution used for error tracking.
    x: instead of ``problem`` (not with it): grid axes ``[n_j]`` (a single 1-D axis for a 1-D
        grid) or tensor-product points ``[M, d]``.
    source: :math:`f` as a callable ``f(x1, ..., xd)`` of the ``d`` coordinate tensors
        ``[n_1..n_d]`` or a tensor ``[n_1..n_d]`` (real, finite).
    boundary: :math:`u` on the boundary, as a callable or a grid tensor (only faces are read,
        and only they must be finite: NaN inside marks "unknown").
    equation: ``"poisson"`` (default), ``"allencahn"`` or ``"advection"`` (with ``beta``,
        default 1); with a problem, the problem's (a different value is refused).
    num_mixtures: :math:`Q` per dimension; kind: ``"stm"`` (Matern-5/2 x cos) or ``"gm"``.
    method: ``"gp-hm"`` (ours) or ``"ref"`` (paper settings); weighting: residual metric
        (default ``"identity"`` in 1-D and for ``ref``, ``"prior"`` for ``gp-hm`` in 2-D).
    jitter: per-factor nugget :math:`\epsilon` (default 1e-10 for ``gp-hm`` with the identity
        metric, else the paper's 1e-6).
    lam_b: boundary weight :math:`\lambda_b` (default the problem's, else 200).
    nugget: collocation-likelihood noise variance :math:`\sigma^2`; ``None`` (default) learns
        :math:`\tau_1, \tau_2` (the paper's); a float fixes
        :math:`\tau_1 = \tau_2 = 1/\sigma^2` (not optimised), i.e. the boundary values and the PDE
        residuals are observed with noise variance :math:`\sigma^2` (boundary additionally
        weighted by :math:`\lambda_b`). The posterior's width is then set by :math:`\sigma^2`,
        but never below the floor of the per-factor ``jitter`` (a nugget on :math:`U` in the prior).
    zero_component: start one component at :math:`\mu = 0` (trends); default: only when the
        source's dominant frequency makes fewer than 4 periods across the domain.
    nonlinear_solver: 2-D Allen-Cahn on the structured (prior-metric) path: ``"picard"``
        (default; Anderson-accelerated shifted fixed point, :class:`PicardKronSolve`) or
        ``"gauss-newton"`` (damped Gauss-Newton on the exact objective,
        :class:`GaussNewtonKronSolve`, started from the previous field, or from the Picard
        iterate when there is none). 1-D Allen-Cahn always uses dense Gauss-Newton.
    solver_options: keyword arguments for that solver (e.g. ``dict(max_iter=5, cg_maxiter=300)``),
        checked here by the solver's ``check_options``.
    seed: recorded in ``config`` (the shared model API); the solver is deterministic and draws
        no random numbers, so it neither uses the seed nor touches the global random streams.
    device: where the model lives (``None``: the CPU; ``"auto"``: CUDA when present).

    Notes
    -----
    Scalar settings are checked before any work (``TypeError``/``ValueError`` naming the
    setting; NaN, infinities and booleans refused, integral floats converted): ``n_col >= 4``
    (with a problem only), ``num_mixtures >= 1``, ``lam_b > 0``, ``nugget > 0``, ``jitter >= 0``,
    ``freq_scale >= 0``, ``beta`` finite; ``weighting`` ``None``, ``"identity"`` or ``"prior"``;
    ``zero_component`` ``None`` or a bool; ``solver_options`` keys of the chosen solver only;
    ``dtype`` ``None`` or float64 (lower precisions are refused).
    """

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
        args = checked_args(
            problem=problem,
            x=x,
            n_col=n_col,
            num_mixtures=num_mixtures,
            beta=beta,
            weighting=weighting,
            zero_component=zero_component,
            lam_b=lam_b,
            jitter=jitter,
            freq_scale=freq_scale,
            nugget=nugget,
            method=method,
            nonlinear_solver=nonlinear_solver,
            solver_options=solver_options,
        )
        n_col, num_mixtures, beta = args["n_col"], args["num_mixtures"], args["beta"]
        lam_b, jitter, freq_scale = args["lam_b"], args["jitter"], args["freq_scale"]
        nugget, solver_options = args["nugget"], args["solver_options"]
        self.device = model_device(device)
        self.dtype = resolve_dtype(dtype)
        if self.dtype != torch.float64:
            # the Gram factors (nugget 1e-10 for gp-hm) are not positive definite in float32:
            # fit() failed with NumericalFailure after the set-up
            raise ValueError(f"dtype: GPPDESolver runs in torch.float64, received {self.dtype}")
        # the solver draws no random numbers: ``seed`` is checked and recorded (the shared model
        # API), never used to reseed the caller's global streams
        if seed is not None:
            seed = check_seed("seed", seed)
        if isinstance(problem, str):
            problem = get_problem(problem, argument="problem")
        self.problem = problem
        if problem is not None:
            checks = [("equation", equation, problem.equation)]
            if problem.equation == "advection":  # beta is unused by the other equations
                checks.append(("beta", beta, problem.beta))
            for name, given, own in checks:
                if given is not None and given != own:
                    raise ValueError(
                        f"{name}: problem {problem.name!r} has {name} {own!r}, received "
                        f"{given!r} (give a custom problem by x, source and boundary instead)"
                    )
            equation, beta = problem.equation, problem.beta
            axes = problem.axes(n_col, device=self.device, dtype=self.dtype)
            source = problem.source(axes) if source is None else source
            boundary = problem.exact if boundary is None else boundary
            lam_b = problem.llk_weight if lam_b is None else lam_b
            freq_scale = problem.freq_scale if freq_scale is None else freq_scale
        else:
            if x is None or source is None or boundary is None:
                raise ValueError("problem: give a problem, or all of x, source and boundary")
            equation = "poisson" if equation is None else equation
            beta = 1.0 if beta is None else beta
            axes = parse_grid(x, dtype=self.dtype, device=self.device)
        self.axes = axes
        self.shape = tuple(a.numel() for a in axes)
        self.f = eval_on_grid("source", source, axes)
        # only the faces are read: interior values may be anything, NaN included ("unknown")
        bvals = eval_on_grid("boundary", boundary, axes, finite=False)
        self.g = face_values(bvals, self.shape)
        check_finite("boundary (its face values)", self.g)
        self.op = LinearPDEOperator.for_equation(equation, len(axes), beta)
        if weighting is None:  # the paper's metric where a dense solve is cheap (1-D)
            weighting = "identity" if (method == "ref" or len(axes) == 1) else "prior"
        if jitter is None:
            jitter = 1e-10 if (method == "gp-hm" and weighting == "identity") else 1e-6
        self.config: dict[str, Any] = dict(
            # the id only of a registered problem: a checkpoint rebuilds the problem from it, and
            # a custom one (its own exact solution, a callable) cannot be saved
            problem=problem.name if registered(problem) else None,
            equation=equation,
            beta=float(beta),
            num_mixtures=int(num_mixtures),
            kind=kind,
            method=method,
            weighting=weighting,
            lam_b=float(200.0 if lam_b is None else lam_b),
            jitter=jitter,
            freq_scale=float(20.0 if freq_scale is None else freq_scale),
            zero_component=zero_component,
            nugget=None if nugget is None else float(nugget),
            nonlinear_solver=nonlinear_solver,
            solver_options=solver_options,
            seed=seed,
        )
        self.kernels = initial_kernels(
            axes,
            self.f,
            self.g,
            bvals,
            num_mixtures=int(num_mixtures),
            kind=kind,
            method=method,
            freq_scale=self.config["freq_scale"],
            zero_component=zero_component,
            dtype=self.dtype,
            device=self.device,
        )
        lt0 = 0.0 if nugget is None else -math.log(float(nugget))
        learn_tau = nugget is None
        self.log_tau_b = torch.full((), lt0, dtype=self.dtype, device=self.device)
        self.log_tau_pde = torch.full((), lt0, dtype=self.dtype, device=self.device)
        self.log_tau_b.requires_grad_(learn_tau)
        self.log_tau_pde.requires_grad_(learn_tau)
        self.u = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        # hyperparameters at which ``u`` is the eliminated field (see ``_set_field``)
        self._solved_key: Tensor | None = None
        self.history: dict[str, list] = {"step": [], "rel_l2": []}

    # ------------------------------------------------------------------ internals
    @property
    def dim(self) -> int:
        return len(self.axes)

    @property
    def can_eliminate(self) -> bool:
        """Whether :math:`U` is eliminated exactly (else it is optimised jointly, as in the paper)."""
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
        return build_factors(list(self.kernels), self.axes, self.op, jitter=self.config["jitter"])

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

    def predict(self, test_axes: list[Tensor] | None = None) -> Tensor:
        r"""Posterior mean :math:`W U` ``[p_1..p_d]`` on the tensor grid of ``test_axes``.

        ``test_axes``: one 1-D tensor ``[p_j]`` per dimension (a single tensor for a 1-D
        problem). Default: the test grid, ``p_j`` evenly spaced points spanning the collocation
        axis ``j``, ``p_j`` = the problem's ``n_test`` (300 for every registered problem; 300
        also for a custom ``x=`` problem). The mean of :meth:`posterior`, so a stale field
        (after :meth:`warm_start_from`, or before any fit) is solved first, once, as there."""
        return self._mean(test_axes, solve=True)

    def _mean(self, test_axes, *, solve: bool) -> Tensor:
        """``W U``; ``solve=False`` reads the stored field as it is (the fit's own reports)."""
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
        if test_axes is None:
            n = self.problem.n_test if self.problem is not None else 300
            return [
                torch.linspace(float(a[0]), float(a[-1]), n, dtype=self.dtype, device=self.device)
                for a in self.axes
            ]
        test_axes = list(test_axes) if isinstance(test_axes, list | tuple) else [test_axes]
        if len(test_axes) != len(self.axes):
            raise ValueError(
                f"{name}: expected {len(self.axes)} test axes (one 1-D tensor per dimension), "
                f"received {len(test_axes)}"
            )
        out = []
        for j, t in enumerate(test_axes):
            a = as_tensor(f"{name}[{j}]", t, dtype=self.dtype, device=self.device, ndim=1)
            if a.numel() == 0:
                raise ValueError(f"{name}[{j}]: expected a non-empty axis")
            out.append(a)
        return out

    def rel_l2(self, test_axes: list[Tensor] | Tensor | None = None) -> float:
        """Relative L2 error of the mean against the problem's exact solution on the test grid."""
        return self._rel_l2(test_axes, solve=True)

    def _rel_l2(self, test_axes=None, *, solve: bool) -> float:
        if self.problem is None:
            raise ValueError(
                "problem: no exact solution known (a custom problem, or a model loaded from a "
                "checkpoint of one: only a registered problem is saved by its id; set "
                "model.problem to reattach it)"
            )
        ta = self._test_axes(test_axes, "test_axes")
        pred = self._mean(ta, solve=solve)
        ex = self.problem.solution(ta)
        return float((pred - ex).norm() / ex.norm())

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
    ) -> FitResult:
        r"""Optimise the hyperparameters (and :math:`U` for ``method="ref"``).

        ``lr`` defaults to 0.05 with cosine decay (``gp-hm``) or 0.01 constant (``ref``).
        ``eval_every > 0`` records the test-grid relative L2 error (problem with exact solution)
        in ``self.history`` (``step``, ``rel_l2``; ``fit_steps`` the steps of each fit call):
        it accumulates over fit calls, a later fit's steps counting on from the earlier ones';
        ``result.extra`` holds ``rel_l2_best`` (minimum over this fit's checkpoints and its
        final state, labelled as such).
        ``max_seconds`` (s) stops early, measured on ``clock`` (``"wall"`` or ``"cpu"``: process
        CPU time, for fair budgets on a shared machine; ``"cpu"`` only with a budget);
        ``time_limit`` is its former name
        (deprecated, warns). ``data`` is unused (the PDE data are set at construction).
        ``keep_best=None`` (default): ``True`` for ``gp-hm``, ``False`` for ``ref`` (as the
        reference code's loop). ``True``: the fit returns the iterate with the lowest objective
        :math:`\mathcal J` among those evaluated (each step's starting point and the last
        iterate), hyperparameters and field as they were evaluated (the field is not re-solved:
        a nonlinear solve depends on its warm start), not necessarily the last: late Adam steps
        can leave a basin of far lower objective (training data only, no test error involved). ``result.extra`` then holds ``best_step`` (the step whose starting point was
        kept; ``steps`` = the last iterate), ``best_objective`` and ``final_objective`` (absent
        when no step returned a finite objective, e.g. ``steps=0``). For 2-D Allen-Cahn
        :math:`\mathcal J` is evaluated at an inexact minimiser over :math:`U` (a Picard
        fixed-point iterate, or capped Gauss-Newton / CG steps). ``False``: the last iterate.
        Checked: ``steps >= 0`` and ``eval_every >= 0`` (ints), ``lr > 0``, ``max_seconds > 0``,
        ``tau_lr_mult >= 0`` (finite; only with learned precisions, ``nugget=None``), ``keep_best`` a bool or ``None``. A numerical failure
        of a solve (non-finite iterate or precision, Gram factor not positive definite,
        diverged nonlinear iteration, failed factorisation) is reported as a divergence and
        the last good state restored; any other error raised inside a solve (or an interrupt)
        propagates, and the model keeps the hyperparameters of the last completed step (a
        joint fit, ``method="ref"``, also its field; an eliminated field is re-solved for them
        on next use), not those it started from. A second call continues from the current
        hyperparameters with a fresh Adam (``gp-hm``: and a fresh cosine decay).
        """
        if data is not None:
            raise ValueError("data: the source and boundary data are given at construction")
        steps = check_int("steps", steps, minimum=0)
        if lr is not None:
            lr = check_real("lr", lr, minimum=0.0, strict=True)
        eval_every = check_int("eval_every", eval_every, minimum=0)
        if time_limit is not None:  # the former name of max_seconds (the other models' name)
            if max_seconds is not None:
                raise ValueError("time_limit, max_seconds: give max_seconds only (one budget)")
            warnings.warn(
                "fit: time_limit is renamed max_seconds (as in the other models' fit); "
                "time_limit will be removed",
                DeprecationWarning,
                stacklevel=user_stacklevel(),
            )
            max_seconds = check_real("time_limit", time_limit, minimum=0.0, strict=True)
        max_seconds = check_max_seconds(max_seconds)
        if tau_lr_mult is not None:
            tau_lr_mult = check_real("tau_lr_mult", tau_lr_mult, minimum=0.0)
            if self.config.get("nugget") is not None:  # it was accepted and had no effect
                raise ValueError(
                    f"tau_lr_mult: only with learned precisions (nugget=None); this model's "
                    f"nugget={self.config['nugget']!r} fixes them, received {tau_lr_mult!r}"
                )
        if clock not in ("wall", "cpu"):
            raise ValueError(f"clock: expected 'wall' or 'cpu', received {clock!r}")
        if clock != "wall" and max_seconds is None:  # it measures max_seconds only
            raise ValueError(
                f"clock: only with max_seconds (the clock the budget is measured on), "
                f"received clock={clock!r} and max_seconds=None"
            )
        warn_axes(self.axes)  # at fit, not construction: a load builds the model too
        ref = self.config["method"] == "ref"
        keep_best = not ref if keep_best is None else check_bool("keep_best", keep_best)
        joint = ref or not self.can_eliminate
        if tau_lr_mult is None:
            tau_lr_mult = 1.0 if ref else 4.0
        lr = (0.01 if ref else 0.05) if lr is None else float(lr)
        params = self._params()
        u_param = None
        if joint:
            u_param = torch.nn.Parameter(self.u.clone())
            params = params + [u_param]
        kparams = list(self.kernels.parameters())
        groups = [{"params": kparams, "lr": lr}]
        if self.config.get("nugget") is None:
            groups.append({"params": [self.log_tau_b, self.log_tau_pde], "lr": lr * tau_lr_mult})
        if u_param is not None:
            groups.append({"params": [u_param], "lr": lr})
        opt = torch.optim.Adam(groups, lr=lr)
        sched = (
            None
            if ref
            else torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr * 0.01)
        )
        now = time.perf_counter if clock == "wall" else time.process_time
        t0 = time.perf_counter()
        c0 = now()
        cpu0 = time.process_time()
        state = {"k": 0}
        # a later fit continues the history: its steps count on from the last recorded one
        # and rel_l2_best is this fit's (a second fit restarted at step 0 and took the best
        # of every earlier fit's checkpoints)
        first_eval = len(self.history["rel_l2"])
        done = self.history.setdefault("fit_steps", [])  # steps of each earlier fit
        # past the last recorded step too: an interrupt after a step's checkpoint counts
        # that step as not done
        step_offset = max(sum(done), self.history["step"][-1] + 1 if self.history["step"] else 0)
        # the lowest-objective starting point: its loss, step, hyperparameters and field
        best = {"loss": math.inf, "step": -1, "field": None}
        best["values"] = _snapshot(params) if keep_best else None
        w = self.config["weighting"]

        def closure():
            opt.zero_grad()
            try:
                fac = self._factors()
            except _NUMERICAL:
                return torch.tensor(float("nan"), dtype=self.dtype)
            if joint:
                u = u_param
            else:
                try:
                    with torch.no_grad():
                        _, run = self._solver(fac)
                        u = run()
                except _NUMERICAL:
                    return torch.tensor(float("nan"), dtype=self.dtype)
                self._set_field(u)
            loss = objective(
                fac,
                self.op,
                u,
                self.f,
                self.g,
                self.log_tau_b,
                self.log_tau_pde,
                self.config["lam_b"],
                w,
            )
            if torch.isfinite(loss):
                loss.backward()
            return loss

        def step():
            k = state["k"]
            state["k"] += 1
            if max_seconds is not None and now() - c0 > max_seconds:
                raise StopIteration
            loss = closure()
            if keep_best and torch.isfinite(loss) and float(loss.detach()) < best["loss"]:
                # the hyperparameters and the field this loss was computed at (the field is not
                # re-solved on restore: a nonlinear solve depends on its warm start)
                _refresh(best["values"])
                best.update(
                    loss=float(loss.detach()), step=k, field=None if joint else self.u.clone()
                )
            if eval_every and self.problem is not None and k % eval_every == 0:
                if joint:
                    self.u = u_param.detach().clone()
                    self._solved_key = None  # optimised jointly, not eliminated
                self.history["step"].append(step_offset + k)
                self.history["rel_l2"].append(self._rel_l2(solve=False))
            if torch.isfinite(loss):
                opt.step()
                if sched is not None:
                    sched.step()
            return loss.detach()

        try:
            res = _run(step, steps, params, progress)
        except BaseException:
            # a bug or an interrupt inside a step: the hyperparameters are those of the last
            # completed step; a joint fit keeps its field too, an eliminated one is re-solved
            # for them on next use (its key no longer matches)
            done.append(max(state["k"] - 1, 0))
            if joint:
                self._settle(joint, u_param)
            raise
        done.append(res.steps)
        # final state consistent with the final hyperparameters
        failed = self._settle(joint, u_param)
        if keep_best and best["step"] >= 0:
            # the last iterate's objective (inf if its solve failed). After a divergence the
            # last iterate is the restored good state, already evaluated: the evaluated best
            # is kept even if re-solving it (a nonlinear solve, warm-started elsewhere) scored
            # lower; when it is that very state (step steps - 1) the message says so once.
            final = math.inf if failed else self._objective_value(u_param if joint else self.u)
            res.extra.update(best_objective=best["loss"], final_objective=final)
            diverged = res.message.startswith("diverged")
            if best["loss"] <= final or diverged:
                _restore(params, best["values"])
                if joint:
                    self._settle(joint, u_param)
                else:
                    self._set_field(best["field"])
                res.extra["best_step"] = best["step"]
                if failed:
                    res.message += f"; final solve failed ({failed})"
                if failed or not (diverged and best["step"] == res.steps - 1):
                    res.message += (
                        f"; kept the lowest-objective iterate (start of step {best['step']})"
                    )
                failed = None
            else:
                res.extra["best_step"] = res.steps
        if failed:
            res.message += f"; final solve failed ({failed}), kept the last field"
        res.seconds = time.perf_counter() - t0
        res.extra["cpu_seconds"] = time.process_time() - cpu0
        if self.problem is not None:
            res.extra["rel_l2"] = self._rel_l2(solve=False)
            if self.history["rel_l2"][first_eval:]:
                res.extra["rel_l2_best"] = min(
                    self.history["rel_l2"][first_eval:] + [res.extra["rel_l2"]]
                )
        res.extra["tau_b"] = float(self.log_tau_b.detach().exp())
        res.extra["tau_pde"] = float(self.log_tau_pde.detach().exp())
        if res.steps:
            warn_field_scale(self.u)
        return res

    def _settle(self, joint: bool, u_param: Tensor | None) -> Exception | None:
        """Make ``u`` consistent with the current hyperparameters (``u_param`` if joint);
        returns the numerical error of a failed solve (the last good field is kept)."""
        if joint:
            self.u = u_param.detach().clone()
            self._solved_key = None  # optimised jointly, not eliminated
            return None
        try:
            with torch.no_grad():
                _, run = self._solver(self._factors())
                self._set_field(run())
        except _NUMERICAL as err:  # keep the last good field
            return err
        return None

    def _objective_value(self, u: Tensor) -> float:
        r""":math:`\mathcal J` at the current hyperparameters and field ``u`` (``inf`` if a
        factorisation fails)."""
        with torch.no_grad():
            try:
                fac = self._factors()
            except _NUMERICAL:
                return math.inf
            val = objective(
                fac,
                self.op,
                u.detach(),
                self.f,
                self.g,
                self.log_tau_b,
                self.log_tau_pde,
                self.config["lam_b"],
                self.config["weighting"],
            )
        return float(val) if torch.isfinite(val) else math.inf

    # ------------------------------------------------------------------ posterior
    def posterior(self, x: list[Tensor] | None = None) -> GaussianPosterior:
        r"""Gaussian posterior of :math:`u` on the tensor grid of the axes ``x`` (default test grid).

        Exact GP conditioning on the boundary and collocation likelihoods for linear PDEs;
        linearised at :math:`U^\star` (Gauss-Newton/Laplace) for Allen-Cahn. Event shape
        ``[p_1..p_d]``; variances exact, draws pathwise; no dense matrix over the full grid.
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
        stored first, once.
        """
        ta = self._test_axes(x, "x")
        with torch.no_grad():
            fac = detach_factors(self._factors())
            self._ensure_field(fac)
            solver, run = self._solver(fac, reuse=True)  # linearised at the stored field
            run()
            return test_grid_posterior(
                list(self.kernels), fac, ta, self.u, solver, jitter=self.config["jitter"]
            )

    def _ensure_field(self, fac) -> None:
        """Solve :math:`U` once if it is stale (hyperparameters changed since the last solve,
        or :meth:`warm_start_from`) and the model eliminates it; a fresh field is left as is."""
        if self.config["method"] == "gp-hm" and self.can_eliminate and not self._fresh():
            _, run = self._solver(fac)  # stale field: solve once at these hyperparameters
            self._set_field(run())

    def solve_field(self, *, newton: bool = False) -> dict[str, Any]:
        r"""Re-solve :math:`U` at the current hyperparameters (no optimisation step).

        For Allen-Cahn on the structured path ``newton=True`` finishes a stalled Picard iteration
        by Newton-GMRES (:class:`~.nonlinear.PicardKronSolve`). Returns solver statistics.
        """
        with torch.no_grad():
            fac = detach_factors(self._factors())
            solver, run = self._solver(fac)
            if isinstance(solver, PicardKronSolve):
                solver.newton = newton
            self._set_field(run())
        stats = {"solver": type(solver).__name__}
        for k in ("iterations", "newton_steps", "krylov_iters", "cg_iters", "converged"):
            if hasattr(solver, k):
                stats[k] = getattr(solver, k)
        if getattr(solver, "step_norms", None):
            stats["last_update"] = solver.step_norms[-1]
        return stats

    def warm_start_from(self, other: GPPDESolver) -> GPPDESolver:
        r"""Copy the kernel hyperparameters and :math:`\tau_{1,2}` of ``other`` (any grid size).

        The kernels are functions of the continuous coordinates, so hyperparameters fitted on a
        coarse grid are a valid start on a fine one (coarse-to-fine continuation); the field is
        re-solved on this grid at the next :meth:`fit`/:meth:`posterior` call. Returns ``self``.
        """
        if not isinstance(other, GPPDESolver):
            raise TypeError(f"other: expected a GPPDESolver, received {type(other).__name__}")
        if len(other.kernels) != len(self.kernels):
            raise ValueError(f"other: expected a {self.dim}-D solver, received a {other.dim}-D one")
        q, qo = self.config["num_mixtures"], other.config["num_mixtures"]
        if qo != q:
            raise ValueError(
                f"other: expected a solver with num_mixtures={q} (this one's), received "
                f"num_mixtures={qo}"
            )
        k, ko = self.config["kind"], other.config["kind"]
        if ko != k:  # same parameter names, different meaning (e.g. a length scale's form)
            raise ValueError(
                f"other: expected a solver with kind={k!r} (this one's), received kind={ko!r}"
            )
        self.kernels.load_state_dict(other.kernels.state_dict())
        with torch.no_grad():
            if self.config.get("nugget") is None:
                self.log_tau_b.copy_(other.log_tau_b.detach())
                self.log_tau_pde.copy_(other.log_tau_pde.detach())
        self.u = torch.zeros_like(self.u)
        self._solved_key = None
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
        """Write a checkpoint that :meth:`load` restores exactly."""
        return save_checkpoint(
            path, kind="gp_pde.GPPDESolver", config=dict(self.config), state=self.state()
        )

    @classmethod
    def load(cls, path: str | Path, *, device: DeviceLike = None) -> GPPDESolver:
        """Restore a model written by :meth:`save` (on ``device``, default the CPU)."""
        return load_solver(cls, path, device=device)


def _run(step, steps, params, progress) -> FitResult:
    """:func:`optimize` with a time limit signalled by ``StopIteration`` from ``step``
    (an early stop, not a divergence: the current hyperparameters are kept)."""
    res = optimize(step, steps=steps, params=params, progress=progress, desc="gp_pde")
    if res.message.startswith("stopped by step()"):
        res.message = f"time limit reached after {res.steps} steps"
    return res
