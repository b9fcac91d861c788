"""Construction of a :class:`~.model.GPPDESolver`: argument checks, the problem or custom grid,
the settings and the initial spectral-mixture kernels.

Fang et al., ICLR 2024 (GP-HM): the mixture frequencies start on the paper's grid
``linspace(0, 1, Q) * freq_scale``; ``method="gp-hm"`` puts the source's periodogram peaks first.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._built_settings import check_built_settings, shape_settings
from .._checkpoint_rebuild import in_quiet_rebuild
from .._checks import check_int, check_range, check_real, check_seed, did_you_mean
from .._device import ArrayLike, DeviceLike, DTypeLike, check_finite, model_device, resolve_dtype
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..problems.gp_pde import PROBLEMS, PDEProblem, get_problem
from ._inputs import eval_on_grid, parse_grid, periodogram_peaks
from ._kron import face_values
from ._memory import check_kernel_memory
from ._resolution import warn_unresolved
from .gauss_newton import GaussNewtonKronSolve
from .kernels import SpectralMixture1d
from .nonlinear import PicardKronSolve
from .operator import LinearPDEOperator

if TYPE_CHECKING:
    from .model import GPPDESolver

METHODS = ("gp-hm", "ref")
"""``method`` of :class:`GPPDESolver`: ``"gp-hm"`` (ours: the field eliminated exactly at every
step) and ``"ref"`` (the paper's settings: the field a free parameter optimised with the kernel)."""
NONLINEAR_SOLVERS = ("picard", "gauss-newton")
"""``nonlinear_solver`` of :class:`GPPDESolver` (2-D Allen-Cahn): ``"picard"`` and
``"gauss-newton"``."""


#: the start of the warning for a ``beta`` given with an equation that does not read it
BETA_IGNORED = "beta: only equation='advection' reads it"


def checked_args(
    *,
    problem,
    x,
    n_col,
    num_mixtures,
    beta,
    weighting,
    zero_component,
    lam_b,
    jitter,
    freq_scale,
    nugget,
    method,
    nonlinear_solver,
    solver_options,
) -> dict[str, Any]:
    """Check the constructor's arguments; returns the normalised values (same names).

    ``n_col >= 4`` (with a problem only), ``num_mixtures >= 1``, ``lam_b > 0``, ``jitter >= 0``,
    ``freq_scale >= 0``, ``nugget > 0``; ``solver_options`` keys must be keyword options of the
    chosen nonlinear solver. Raises ``ValueError`` / ``TypeError`` naming the argument.
    """
    if method not in METHODS:
        raise ValueError(
            f"method: expected one of {METHODS}, received {method!r}{did_you_mean(method, METHODS)}"
        )
    if nonlinear_solver not in NONLINEAR_SOLVERS:
        raise ValueError(
            f"nonlinear_solver: expected one of {NONLINEAR_SOLVERS}, received {nonlinear_solver!r}"
            f"{did_you_mean(nonlinear_solver, NONLINEAR_SOLVERS)}"
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
        raise ValueError(f"weighting: expected None, 'identity' or 'prior', received {weighting!r}")
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

    return dict(
        n_col=n_col,
        num_mixtures=num_mixtures,
        beta=beta,
        lam_b=lam_b,
        jitter=jitter,
        freq_scale=freq_scale,
        nugget=nugget,
        solver_options=solver_options,
    )


def init_solver(
    model: GPPDESolver,
    problem: PDEProblem | str | None,
    *,
    x: ArrayLike | list[ArrayLike] | None,
    source: ArrayLike | Callable[..., Tensor] | None,
    boundary: ArrayLike | Callable[..., Tensor] | None,
    equation: str | None,
    beta: float | None,
    n_col: int | None,
    num_mixtures: int,
    kind: str,
    method: str,
    weighting: str | None,
    lam_b: float | None,
    jitter: float | None,
    freq_scale: float | None,
    zero_component: bool | None,
    nugget: float | None,
    nonlinear_solver: str,
    solver_options: dict | None,
    device: DeviceLike,
    dtype: DTypeLike,
    seed: int | None,
) -> None:
    """Build ``model`` from the arguments of :class:`~.model.GPPDESolver` (its docstring states
    them and their checks): the grid, source and boundary face values, operator, ``config``,
    initial kernels and precisions, a zero field and an empty history."""
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
    beta_given = beta  # the caller's, before a problem's or the default replaces it
    lam_b, jitter, freq_scale = args["lam_b"], args["jitter"], args["freq_scale"]
    nugget, solver_options = args["nugget"], args["solver_options"]
    model.device = model_device(device)
    model.dtype = resolve_dtype(dtype)
    if model.dtype != torch.float64:
        # the Gram factors (nugget 1e-10 for gp-hm) are not positive definite in float32:
        # fit() failed with NumericalFailure after the set-up
        raise ValueError(f"dtype: GPPDESolver runs in torch.float64, received {model.dtype}")
    # the solver draws no random numbers: ``seed`` is checked and recorded (the shared model
    # API), never used to reseed the caller's global streams
    if seed is not None:
        seed = check_seed("seed", seed)
    if isinstance(problem, str):
        problem = get_problem(problem, argument="problem")
    model.problem = problem
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
        check_problem(problem, n_col)
        axes = problem.axes(n_col, device=model.device, dtype=model.dtype)
        if source is None and not in_quiet_rebuild():
            warn_unresolved(problem, axes)
        source = problem.source(axes) if source is None else source
        boundary = problem.exact if boundary is None else boundary
        lam_b = problem.llk_weight if lam_b is None else lam_b
        freq_scale = problem.freq_scale if freq_scale is None else freq_scale
    else:
        if x is None or source is None or boundary is None:
            raise ValueError("problem: give a problem, or all of x, source and boundary")
        equation = "poisson" if equation is None else equation
        beta = 1.0 if beta is None else beta
        # a tensor source or boundary is read on the sorted grid: points must be in its order
        tensors = [n for n, v in (("source", source), ("boundary", boundary)) if not callable(v)]
        axes = parse_grid(x, dtype=model.dtype, device=model.device, grid_tensors="/".join(tensors))
    if beta_given is not None and equation != "advection" and not in_quiet_rebuild():
        # beta=5 with the Poisson equation (read as a coefficient, D u'' = f) was kept in
        # config and changed nothing, without a word
        warnings.warn(
            f"{BETA_IGNORED} (equation {equation!r} is solved as stated; beta={beta_given:g} is "
            "not a coefficient of it)",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )
    model.axes = axes
    model.shape = tuple(a.numel() for a in axes)
    model.f = eval_on_grid("source", source, axes)
    # only the faces are read: interior values may be anything, NaN included ("unknown")
    bvals = eval_on_grid("boundary", boundary, axes, finite=False)
    model.g = face_values(bvals, model.shape)
    check_finite("boundary (its face values)", model.g)
    model.op = LinearPDEOperator.for_equation(equation, len(axes), beta)
    if weighting is None:  # the paper's metric where a dense solve is cheap (1-D)
        weighting = "identity" if (method == "ref" or len(axes) == 1) else "prior"
    if jitter is None:
        jitter = 1e-10 if (method == "gp-hm" and weighting == "identity") else 1e-6
    warn_unused_solver_options(solver_options, model.op, len(axes), weighting)
    model.config = dict(
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
    # the settings the kernels' parameters come from (save refuses them changed)
    model._shape_settings = shape_settings(model.config, ("num_mixtures", "kind"))
    # the settings the operator, the exact solution, the precisions and the kernels' initial
    # frequencies come from: read at construction only
    model._built = shape_settings(model.config, BUILT_SETTINGS)
    check_kernel_memory(axes, int(num_mixtures), model.dtype, model.device, fit=False)
    model.kernels = initial_kernels(
        axes,
        model.f,
        model.g,
        bvals,
        num_mixtures=int(num_mixtures),
        kind=kind,
        method=method,
        freq_scale=model.config["freq_scale"],
        zero_component=zero_component,
        dtype=model.dtype,
        device=model.device,
    )
    lt0 = 0.0 if nugget is None else -math.log(float(nugget))
    learn_tau = nugget is None
    model.log_tau_b = torch.full((), lt0, dtype=model.dtype, device=model.device)
    model.log_tau_pde = torch.full((), lt0, dtype=model.dtype, device=model.device)
    model.log_tau_b.requires_grad_(learn_tau)
    model.log_tau_pde.requires_grad_(learn_tau)
    model.u = torch.zeros(model.shape, dtype=model.dtype, device=model.device)
    # hyperparameters at which ``u`` is the eliminated field (see ``_set_field``)
    model._solved_key = None
    model.history = {"step": [], "rel_l2": []}


def warn_unused_solver_options(
    solver_options: dict, op: LinearPDEOperator, dim: int, weighting: str
) -> None:
    """Warn that ``solver_options`` will not be read: they configure the nonlinear
    structured solve only (a cubic equation with ``weighting="prior"`` on a 1-/2-D grid);
    linear equations, 1-D Allen-Cahn's default dense Gauss-Newton and 3-D grids ignored them
    without a word."""
    if in_quiet_rebuild() or not solver_options or (op.cubic and weighting == "prior" and dim <= 2):
        return
    why = (
        "the equation is linear (one exact solve)"
        if not op.cubic
        else f"they configure the structured nonlinear solve (weighting='prior' on a 1-/2-D "
        f"grid), which this {dim}-D model with weighting={weighting!r} does not use"
    )
    warnings.warn(
        f"solver_options {sorted(solver_options)} will be ignored: {why}",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )


def check_problem(problem: PDEProblem, n_col: int | None) -> None:
    """Refuse (naming the field) a problem whose grid or settings the solver could not use,
    as it refuses them given as arguments: a domain of other than 1 to 3 dimensions (a 4-D
    grid was built) or whose bounds are not finite and increasing (a reversed one failed
    with "math domain error", an empty one with a ``ZeroDivisionError``), fewer than 4
    points per axis (``n_col`` of the problem when the
    solver's ``n_col`` is ``None``: a 2-point grid was built), ``llk_weight`` (the default
    ``lam_b``) not positive, ``freq_scale`` negative or ``n_test`` (the default test grid) not
    positive (an empty one was predicted)."""
    if not 1 <= len(problem.domain) <= 3:  # as parse_grid refuses such an x
        raise ValueError(
            f"problem: expected a 1-, 2- or 3-D domain, received {len(problem.domain)} "
            f"dimensions ({problem.domain!r})"
        )
    for j, bounds in enumerate(problem.domain):  # finite (lo, hi) with lo < hi
        check_range(f"problem.domain[{j}]", bounds)
    if n_col is None:
        check_int("problem.n_col", problem.n_col, minimum=4)
    check_real("problem.llk_weight", problem.llk_weight, minimum=0.0, strict=True)
    check_real("problem.freq_scale", problem.freq_scale, minimum=0.0)
    check_int("problem.n_test", problem.n_test, minimum=1)


#: the settings a solver reads at construction only: its PDE operator is built from the
#: equation and beta, its problem (the exact solution) attached from the id, its
#: precisions set (and learned or not) from the nugget, and its kernels' initial
#: frequencies from freq_scale and zero_component
BUILT_SETTINGS = ("problem", "equation", "beta", "nugget", "freq_scale", "zero_component")


def check_built(model, where: str) -> None:
    """Refuse (``ValueError`` naming ``where`` and the setting) a ``model.config`` whose
    settings read at construction (:data:`BUILT_SETTINGS`, and ``num_mixtures`` / ``kind``,
    which fixed the kernels' parameters) were assigned afterwards: the model kept the operator
    of the old equation while a checkpoint rebuilt it from the new one (the loaded model's
    posterior differed from the one that saved it); fit, predict and the posterior went on
    with the built kernels and problem; a nugget set afterwards neither fixed nor freed the
    precisions (a load rebuilt them with it: learned by one model, fixed in the other); a
    ``freq_scale`` or ``zero_component`` set afterwards changed nothing (the kernels had
    started from the old one) while the model and its checkpoint recorded the new one."""
    built = {**getattr(model, "_built", {}), **getattr(model, "_shape_settings", {})}
    check_built_settings(model.config, built, "GPPDESolver", where)
    if where != "save":  # save gives its own reason (the checkpoint would not load)
        check_loadable_config(model, where)


def check_loadable_config(model, where: str = "save") -> None:
    """Refuse (naming ``where`` and the setting) a ``model.config`` the constructor, and so a
    load, would refuse (e.g. ``config["nonlinear_solver"] = "newton"``): the checkpoint would
    be written and never load. The settings read at every use (``lam_b``, ``jitter``,
    ``weighting``, ``method``, ``nonlinear_solver``, ``solver_options``) are checked so by
    :func:`check_built` too: ``config["lam_b"] = 0`` made a fit report a divergence (a failed
    solve) and ``method="rfe"`` fitted as ``"gp-hm"``."""
    c = model.config
    try:
        checked_args(
            problem=None,
            x=None,
            n_col=None,
            num_mixtures=c["num_mixtures"],
            beta=c["beta"],
            weighting=c["weighting"],
            zero_component=c.get("zero_component"),
            lam_b=c["lam_b"],
            jitter=c["jitter"],
            freq_scale=c["freq_scale"],
            nugget=c.get("nugget"),
            method=c["method"],
            nonlinear_solver=c.get("nonlinear_solver", "picard"),
            solver_options=c.get("solver_options"),
        )
    except (TypeError, ValueError) as err:
        why = (
            "a checkpoint with these settings could not be loaded"
            if where == "save"
            else "the constructor refuses it; set a value it takes"
        )
        raise type(err)(f"{where}: config {err}; {why}") from None


def initial_kernels(
    axes: list[Tensor],
    f: Tensor,
    g: Tensor,
    bvals: Tensor,
    *,
    num_mixtures: int,
    kind: str,
    method: str,
    freq_scale: float,
    zero_component: bool | None,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.nn.ModuleList:
    r"""One :class:`~.kernels.SpectralMixture1d` of ``Q = num_mixtures`` components per axis.

    ``axes``: the ``d`` grid axes ``[n_j]``; ``f`` the source ``[n_1..n_d]``; ``g`` the boundary
    face values; ``bvals`` the boundary grid tensor ``[n_1..n_d]`` (faces read only). ``ref``:
    :math:`\mu_q` = ``linspace(0, 1, Q) * freq_scale``, :math:`\log a_q = 0` (the paper).
    ``gp-hm``: the periodogram peaks of the source (of the boundary lines when the source
    vanishes) first, a zero frequency for smooth solutions, then the paper's grid;
    :math:`\log a_q = -\log L_j`.
    """
    q = int(num_mixtures)
    kernels = []
    # frequencies come from the source's periodogram; a vanishing source (advection) has
    # none, so the boundary data on the faces are used instead (lines along each dimension)
    spec_src = f
    if float(f.abs().max()) <= 1e-12 * max(float(g.abs().max()), 1e-300):
        spec_src = None
    for j, a in enumerate(axes):
        fs = freq_scale
        lin = torch.linspace(0, 1, q, dtype=dtype) * fs
        if method == "gp-hm":
            # the source's periodogram peaks first, then the paper's linspace grid
            src = spec_src if spec_src is not None else _face_lines(bvals, j)
            pk = periodogram_peaks(src, a, -1 if spec_src is None else j, q).cpu()
            length = (a[-1] - a[0]).item()
            # smooth solutions (< 4 periods of the dominant frequency across the domain) also
            # get a zero-frequency component for trends (it hurts high-frequency problems)
            low = pk.numel() == 0 or float(pk[0]) * length < 4.0
            want = low if zero_component is None else bool(zero_component)
            head = [torch.zeros(1, dtype=dtype)] if want and not bool((pk == 0).any()) else []
            mu = torch.cat([*head, pk, lin])[:q]
            log_a = math.log(1.0 / length)
        else:
            mu, log_a = lin, 0.0
        kernels.append(SpectralMixture1d(q, kind=kind, mu=mu, log_a=log_a, dtype=dtype))
    return torch.nn.ModuleList(kernels).to(device)


def registered(problem: PDEProblem | None) -> bool:
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
