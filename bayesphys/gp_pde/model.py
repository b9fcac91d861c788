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

import inspect
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_real, check_seed
from .._device import as_tensor, check_finite, model_device, resolve_dtype
from .._model import (
    FitResult,
    _refresh,
    _restore,
    _snapshot,
    load_checkpoint,
    optimize,
    save_checkpoint,
)
from ..posterior import GaussianPosterior
from ..problems.gp_pde import PROBLEMS, PDEProblem, get_problem
from ._errors import NumericalFailure
from ._inputs import eval_on_grid, parse_grid, periodogram_peaks
from ._kron import face_values, kron_apply
from .gauss_newton import GaussNewtonKronSolve
from .kernels import SpectralMixture1d
from .nonlinear import PicardKronSolve
from .operator import LinearPDEOperator, build_factors, detach_factors, with_eigen
from .posterior import test_grid_posterior
from .solve import DenseSolve, KronSolve, objective

__all__ = ["GPPDESolver", "METHODS", "NONLINEAR_SOLVERS"]

METHODS = ("gp-hm", "ref")
NONLINEAR_SOLVERS = ("picard", "gauss-newton")
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
        x=None,
        source=None,
        boundary=None,
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
        device=None,
        dtype=None,
        seed: int | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, received {method!r}")
        if nonlinear_solver not in NONLINEAR_SOLVERS:
            raise ValueError(
                f"nonlinear_solver: expected one of {NONLINEAR_SOLVERS}, received {nonlinear_solver!r}"
            )
        if solver_options is not None and not isinstance(solver_options, dict):
            raise TypeError(
                f"solver_options: expected a dict or None, received {type(solver_options).__name__}"
            )
        if problem is not None and not isinstance(problem, (str, PDEProblem)):
            raise TypeError(
                "problem: expected a PDEProblem, a problem id (str) or None, received "
                f"{type(problem).__name__}"
            )
        if problem is not None and x is not None:
            raise ValueError(
                "x: the grid comes from the problem (n_col points per dimension); give either a "
                "problem or x, not both"
            )
        if n_col is not None:
            if problem is None:
                raise ValueError(
                    "n_col: only used with a problem (without one the grid is x); received "
                    f"n_col={n_col!r} and no problem"
                )
            # collocation points per axis; at least 4, as for a grid given by x (a checkpoint
            # restores the model from its axes)
            n_col = check_int("n_col", n_col, minimum=4)
        num_mixtures = check_int("num_mixtures", num_mixtures, minimum=1)
        if beta is not None:
            beta = check_real("beta", beta)
        if weighting is not None and weighting not in ("identity", "prior"):
            raise ValueError(
                f"weighting: expected None, 'identity' or 'prior', received {weighting!r}"
            )
        if zero_component is not None and not isinstance(zero_component, bool):
            raise TypeError(
                "zero_component: expected None or a bool, received "
                f"{type(zero_component).__name__} {zero_component!r}"
            )
        if lam_b is not None:
            lam_b = check_real("lam_b", lam_b, minimum=0.0, strict=True)
        if jitter is not None:
            jitter = check_real("jitter", jitter, minimum=0.0)
        if freq_scale is not None:
            freq_scale = check_real("freq_scale", freq_scale, minimum=0.0)
        if nugget is not None:
            nugget = check_real("nugget", nugget, minimum=0.0, strict=True)
        solver_cls = GaussNewtonKronSolve if nonlinear_solver == "gauss-newton" else PicardKronSolve
        known = [
            p.name
            for p in inspect.signature(solver_cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        unknown = sorted(set(solver_options or {}) - set(known))
        if unknown:
            raise ValueError(
                f"solver_options: unknown option(s) {unknown} for {solver_cls.__name__} "
                f"(nonlinear_solver={nonlinear_solver!r}); expected some of {known}"
            )
        solver_options = solver_cls.check_options(solver_options or {})
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
            problem = get_problem(problem)
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
            problem=problem.name if _registered(problem) else None,
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
        q = int(num_mixtures)
        kernels = []
        # frequencies come from the source's periodogram; a vanishing source (advection) has
        # none, so the boundary data on the faces are used instead (lines along each dimension)
        spec_src = self.f
        if float(self.f.abs().max()) <= 1e-12 * max(float(self.g.abs().max()), 1e-300):
            spec_src = None
        for j, a in enumerate(axes):
            fs = self.config["freq_scale"]
            lin = torch.linspace(0, 1, q, dtype=self.dtype) * fs
            if method == "gp-hm":
                # the source's periodogram peaks first, then the paper's linspace grid
                src = spec_src if spec_src is not None else _face_lines(bvals, j)
                pk = periodogram_peaks(src, a, -1 if spec_src is None else j, q).cpu()
                length = (a[-1] - a[0]).item()
                # smooth solutions (< 4 periods of the dominant frequency across the domain) also
                # get a zero-frequency component for trends (it hurts high-frequency problems)
                low = pk.numel() == 0 or float(pk[0]) * length < 4.0
                want = low if zero_component is None else bool(zero_component)
                head = (
                    [torch.zeros(1, dtype=self.dtype)] if want and not bool((pk == 0).any()) else []
                )
                mu = torch.cat([*head, pk, lin])[:q]
                log_a = math.log(1.0 / length)
            else:
                mu, log_a = lin, 0.0
            kernels.append(SpectralMixture1d(q, kind=kind, mu=mu, log_a=log_a, dtype=self.dtype))
        self.kernels = torch.nn.ModuleList(kernels).to(self.device)
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
        tau2 = float(self.log_tau_pde.detach().exp())
        gamma = self.config["lam_b"] * float(self.log_tau_b.detach().exp())
        # exp over/underflow of log tau: inf, or 0 (which GaussNewtonKronSolve refuses)
        if not all(math.isfinite(v) and v > 0 for v in (tau2, gamma)):
            raise NumericalFailure(
                f"tau: expected finite positive precisions, received tau2={tau2}, gamma={gamma}"
            )
        fd = detach_factors(factors)
        keep = reuse and self._fresh()
        if self._structured:
            fe = with_eigen(fd, self.op)
            if self.op.cubic:
                opts = dict(self.config.get("solver_options") or {})
                if self.config.get("nonlinear_solver", "picard") == "gauss-newton":
                    gs = GaussNewtonKronSolve(fe, self.op, tau2, gamma, **opts)

                    def run_gn():
                        u0 = self.u
                        if keep:
                            gs.linearise(u0)
                            return u0
                        if not bool(u0.abs().sum() > 0):  # no previous field: Picard start
                            u0 = PicardKronSolve(fe, self.op, tau2, gamma).solve(self.f, self.g)
                        return gs.solve(self.f, self.g, u0=u0)

                    return gs, run_gn
                ps = PicardKronSolve(fe, self.op, tau2, gamma, **opts)
                if keep:
                    return ps, lambda: ps.linearise(self.u)
                return ps, lambda: ps.solve(self.f, self.g, u0=self.u)
            ks = KronSolve(fe, self.op, tau2, gamma)
            if keep:  # linear: the covariance does not depend on U
                return ks, lambda: self.u
            return ks, lambda: ks.solve(self.f, self.g)
        if math.prod(self.shape) > 6000:
            # reached from posterior()/solve_field() only (fit() then optimises U jointly), and
            # for method='ref' too: naming method='ref' as the remedy would be wrong
            raise NotImplementedError(
                f"no exact solver for {self.config['equation']} with weighting "
                f"{self.config['weighting']!r} on a {self.shape} grid "
                f"({math.prod(self.shape)} > 6000 points; the dense solve is limited to 6000 and "
                "the Kronecker solve needs weighting='prior' on a 1-D or 2-D grid): fit() optimises "
                "U jointly, but posterior() and solve_field() need an exact solver; use "
                "weighting='prior' or a grid of at most 6000 points"
            )
        ds = DenseSolve(fd, self.op, self.config["weighting"])
        if keep:
            return ds, lambda: ds.linearise(self.u, tau2, gamma)
        return ds, lambda: ds.solve(self.f, self.g, tau2, gamma, u0=self.u)

    def predict(self, test_axes: list[Tensor] | None = None) -> Tensor:
        r"""Posterior mean :math:`W U` on the tensor grid of ``test_axes`` (default: the problem's
        test grid), ``[n_1, ..., n_d]``: the mean of :meth:`posterior`, so a stale field (after
        :meth:`warm_start_from`, or before any fit) is solved first, once, as there."""
        return self._mean(test_axes, solve=True)

    def _mean(self, test_axes, *, solve: bool) -> Tensor:
        """``W U``; ``solve=False`` reads the stored field as it is (the fit's own reports)."""
        test_axes = self._test_axes(test_axes)
        with torch.no_grad():
            fac = self._factors()
            if solve:
                self._ensure_field(detach_factors(fac))
            W = [
                torch.cholesky_solve(k.gram(xt, fc.x, 0).mT, fc.L).mT
                for k, fc, xt in zip(self.kernels, fac, test_axes)
            ]
            return kron_apply(W, self.u)

    def _test_axes(self, test_axes):
        if test_axes is None:
            n = self.problem.n_test if self.problem is not None else 300
            return [
                torch.linspace(float(a[0]), float(a[-1]), n, dtype=self.dtype, device=self.device)
                for a in self.axes
            ]
        test_axes = list(test_axes) if isinstance(test_axes, list | tuple) else [test_axes]
        if len(test_axes) != len(self.axes):
            raise ValueError(
                f"x: expected {len(self.axes)} test axes (one 1-D tensor per dimension), "
                f"received {len(test_axes)}"
            )
        out = []
        for j, t in enumerate(test_axes):
            a = as_tensor(f"x[{j}]", t, dtype=self.dtype, device=self.device, ndim=1)
            if a.numel() == 0:
                raise ValueError(f"x[{j}]: expected a non-empty axis")
            out.append(a)
        return out

    def rel_l2(self, test_axes=None) -> float:
        """Relative L2 error of the mean against the problem's exact solution on the test grid."""
        return self._rel_l2(test_axes, solve=True)

    def _rel_l2(self, test_axes=None, *, solve: bool) -> float:
        if self.problem is None:
            raise ValueError(
                "problem: no exact solution known (a custom problem, or a model loaded from a "
                "checkpoint of one: only a registered problem is saved by its id; set "
                "model.problem to reattach it)"
            )
        ta = self._test_axes(test_axes)
        pred = self._mean(ta, solve=solve)
        ex = self.problem.solution(ta)
        return float((pred - ex).norm() / ex.norm())

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        data=None,
        *,
        steps: int = 300,
        lr: float | None = None,
        progress: bool = True,
        eval_every: int = 0,
        time_limit: float | None = None,
        tau_lr_mult: float | None = None,
        clock: str = "wall",
        keep_best: bool | None = None,
    ) -> FitResult:
        r"""Optimise the hyperparameters (and :math:`U` for ``method="ref"``).

        ``lr`` defaults to 0.05 with cosine decay (``gp-hm``) or 0.01 constant (``ref``).
        ``eval_every > 0`` records the test-grid relative L2 error (problem with exact solution);
        ``result.extra`` holds ``rel_l2_best`` (minimum over those checkpoints, labelled as such).
        ``time_limit`` (s) stops early, measured on ``clock`` (``"wall"`` or ``"cpu"``: process
        CPU time, for fair budgets on a shared machine). ``data`` is unused (the PDE data are set at construction).
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
        Checked: ``steps >= 0`` and ``eval_every >= 0`` (ints), ``lr > 0``, ``time_limit > 0``,
        ``tau_lr_mult >= 0`` (finite), ``keep_best`` a bool or ``None``. A numerical failure
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
        if time_limit is not None:
            time_limit = check_real("time_limit", time_limit, minimum=0.0, strict=True)
        if tau_lr_mult is not None:
            tau_lr_mult = check_real("tau_lr_mult", tau_lr_mult, minimum=0.0)
        if clock not in ("wall", "cpu"):
            raise ValueError(f"clock: expected 'wall' or 'cpu', received {clock!r}")
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
            if time_limit is not None and now() - c0 > time_limit:
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
                self.history["step"].append(k)
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
            if joint:
                self._settle(joint, u_param)
            raise
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
            if self.history["rel_l2"]:
                res.extra["rel_l2_best"] = min(self.history["rel_l2"] + [res.extra["rel_l2"]])
        res.extra["tau_b"] = float(self.log_tau_b.detach().exp())
        res.extra["tau_pde"] = float(self.log_tau_pde.detach().exp())
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
        ta = self._test_axes(x)
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
    def state(self) -> dict[str, Any]:
        return {
            "kernels": {k: v.detach().cpu() for k, v in self.kernels.state_dict().items()},
            "log_tau_b": self.log_tau_b.detach().cpu(),
            "log_tau_pde": self.log_tau_pde.detach().cpu(),
            "u": self.u.detach().cpu(),
            "axes": [a.cpu() for a in self.axes],
            "f": self.f.cpu(),
            "g": self.g.cpu(),
            "history": self.history,
            # whether ``u`` was solved at these hyperparameters (posterior() then linearises at
            # ``u`` instead of re-solving; a loaded model must do the same)
            "solved": self._fresh(),
        }

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint that :meth:`load` restores exactly."""
        return save_checkpoint(
            path, kind="gp_pde.GPPDESolver", config=dict(self.config), state=self.state()
        )

    @classmethod
    def load(cls, path: str | Path, *, device=None) -> GPPDESolver:
        ck = load_checkpoint(path, kind="gp_pde.GPPDESolver", map_location="cpu")
        c, s = ck["config"], ck["state"]
        axes = s["axes"]
        shape = tuple(a.numel() for a in axes)
        bgrid = torch.zeros(shape, dtype=s["g"].dtype)
        # boundary values are restored directly below; the grid tensor only fixes shapes
        model = cls(
            None,
            x=axes,
            source=s["f"],
            boundary=bgrid,
            equation=c["equation"],
            beta=c["beta"],
            num_mixtures=c["num_mixtures"],
            kind=c["kind"],
            method=c["method"],
            weighting=c["weighting"],
            lam_b=c["lam_b"],
            jitter=c["jitter"],
            freq_scale=c["freq_scale"],
            zero_component=c.get("zero_component"),
            nugget=c.get("nugget"),
            nonlinear_solver=c.get("nonlinear_solver", "picard"),
            solver_options=c.get("solver_options"),
            device=device,
            dtype=s["f"].dtype,
        )
        dev = model.device
        model.problem = None if c["problem"] is None else get_problem(c["problem"])
        model.config = dict(c)
        model.g = s["g"].to(dev)
        model.kernels.load_state_dict(s["kernels"])
        with torch.no_grad():
            model.log_tau_b.copy_(s["log_tau_b"])
            model.log_tau_pde.copy_(s["log_tau_pde"])
        model.u = s["u"].to(dev)
        model.history = s["history"]
        if s.get("solved"):
            model._solved_key = model._param_key()
        return model


def _registered(problem: PDEProblem | None) -> bool:
    """Whether ``problem`` is the registered problem of its name (not a modified copy)."""
    return problem is not None and PROBLEMS.get(problem.name) is problem


def _face_lines(u: Tensor, j: int) -> Tensor:
    """Boundary lines of the grid tensor ``u`` running along dimension ``j``: ``[L, n_j]``.

    Only faces of the other dimensions are read (no interior value is used).
    """
    d = u.ndim
    lines = []
    for k in range(d):
        if k == j:
            continue
        for i in (0, u.shape[k] - 1):
            lines.append(torch.movedim(u.select(k, i), j - (j > k), -1).reshape(-1, u.shape[j]))
    if not lines:  # 1-D: no line along the only dimension is on the boundary
        return torch.zeros(1, u.shape[j], dtype=u.dtype, device=u.device)
    return torch.cat(lines, 0)


def _run(step, steps, params, progress) -> FitResult:
    """:func:`optimize` with a time limit signalled by ``StopIteration`` from ``step``
    (an early stop, not a divergence: the current hyperparameters are kept)."""
    res = optimize(step, steps=steps, params=params, progress=progress, desc="gp_pde")
    if res.message.startswith("stopped by step()"):
        res.message = f"time limit reached after {res.steps} steps"
    return res
