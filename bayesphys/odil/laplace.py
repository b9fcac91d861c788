r"""Laplace posterior of the discrete loss, from the Gauss-Newton matrix.

Reading :math:`L(x) = \tfrac12\lVert r(x)\rVert^2` as :math:`-\log p(x \mid y)` with
:math:`x = (u, \theta)`, the Gauss-Newton matrix :math:`H = J^\top J` at the minimiser :math:`x^*`
is the Laplace precision: :math:`p(x\mid y) \approx \mathcal N(x^*, H^{-1})`. For residuals
linear in :math:`x` (linear-Gaussian problems) this is the exact posterior.

* **Parameter marginal** (:func:`theta_covariance`): with :math:`H` split into the block of the
  chosen parameters :math:`\theta` and the rest :math:`u` (fields, nuisance parameters),

  .. math:: \Sigma_\theta = \big(H_{\theta\theta} - H_{\theta u} H_{uu}^{-1} H_{u\theta}\big)^{-1},

  computed by one matrix-free CG with :math:`H_{uu}` for the :math:`p = \dim\theta` columns
  together (in blocks of 16) (batched products :math:`J_u^\top J_u V` by jvp/vjp): the field block
  is never formed.
* **Field marginal** (:func:`field_posterior`): exact dense :math:`H^{-1}` block for small
  problems; otherwise exact pathwise draws :math:`\delta = H^{-1} J^\top z`,
  :math:`z\sim\mathcal N(0, I_m)` (covariance :math:`H^{-1}J^\top J H^{-1} = H^{-1}`), each one CG
  solve, summarised as a low-rank-plus-diagonal :class:`~bayesphys.GaussianPosterior`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from linear_operator.operators import (
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)
from torch import Tensor

from .._checks import check_bool, check_int, check_real, check_seed, did_you_mean, seed_or_draw
from .._device import as_tensor
from .._inference_tensors import inference_tensors_named
from .._precision import own_precision
from .._renamed import renamed_kwargs
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning
from ..posterior import GaussianPosterior
from ._cg_shortfall import _cg_shortfall, _short_reasons
from ._cg_solve import cg_with_breakdown
from ._jacobian import check_dense_gn_memory, dense_jacobian, jvp_vjp
from .problem import DiscreteProblem
from .sparse import ColouredJacobian, sparse_schur_covariance

__all__ = ["gn_matvec", "theta_covariance", "field_posterior", "dense_gn_matrix"]


def _checked(problem: DiscreteProblem, x: Tensor) -> Tensor:
    """``x`` as a finite tensor ``[n]`` of unknowns of ``problem`` (errors name the argument), in
    the problem's dtype and device (a float32 tensor for a float64 problem failed inside the
    user's residual, or gave a float32 covariance), detached."""
    if not isinstance(problem, DiscreteProblem):
        raise TypeError(f"problem: expected a DiscreteProblem, received {type(problem).__name__}")
    x = as_tensor("x", x, dtype=problem.dtype, device=problem.device).detach()
    if x.shape != (problem.n,):
        raise ValueError(f"x: expected shape ({problem.n},), received {tuple(x.shape)}")
    return x


def gn_matvec(problem: DiscreteProblem, x: Tensor) -> Callable[[Tensor], Tensor]:
    r"""Closure :math:`v \mapsto J^\top J v` at ``x [n]`` (matrix-free; :math:`J` ``[m, n]`` the
    Jacobian of ``problem.residual``): ``v [n]`` -> ``[n]``, or a batch ``v [k, n]`` ->
    ``[k, n]`` in one pass (another shape is a ``ValueError`` naming ``v``)."""
    x = _checked(problem, x)
    _, jv, jtw = jvp_vjp(problem.residual, x)
    n = problem.n

    def matvec(v: Tensor) -> Tensor:
        # a v of another length failed inside autograd ("Mismatch in shape: grad_output[0]
        # ..."), a list with AttributeError
        if not isinstance(v, Tensor):
            v = as_tensor("v", v, dtype=x.dtype, device=x.device, finite=False)
        if v.ndim not in (1, 2) or v.shape[-1] != n:
            raise ValueError(f"v: expected [{n}] or [k, {n}], received {tuple(v.shape)}")
        return jtw(jv(v))

    return matvec


def dense_gn_matrix(problem: DiscreteProblem, x: Tensor) -> Tensor:
    r"""Dense :math:`J^\top J` ``[n, n]`` (small problems / tests); a ``MemoryError`` before
    any work when the Jacobian and the matrix cannot fit in memory."""
    x = _checked(problem, x)
    with torch.no_grad():
        m = problem.residual(x).numel()
    check_dense_gn_memory(
        "x", m, x, "use gn_matvec (matrix-free products) or a ColouredJacobian (sparse)"
    )
    return _dense_gn(problem, x)


def _dense_gn(problem: DiscreteProblem, x: Tensor) -> Tensor:
    """:func:`dense_gn_matrix` of checked ``x`` without the memory check (its callers' own)."""
    jac = dense_jacobian(problem.residual, x)
    return jac.T @ jac


#: the default CG tolerance of the Laplace solves in float32: float32's true relative residual
#: stops near 1e-7 or above (1e-7 to 3e-6 on the 200-unknown linear-Gaussian problem of
#: tests/odil/test_laplace_degenerate.py), so the float64 defaults (1e-10, 1e-8) were never
#: met and every float32 solve warned
_FLOAT32_CG_TOL = 1e-5


def _cg_tol(cg_tol: float | None, problem: DiscreteProblem, float64_tol: float) -> float:
    """``cg_tol`` (checked by the caller), or its default for the (checked) problem's dtype
    when ``None``: ``float64_tol`` in float64, :data:`_FLOAT32_CG_TOL` in float32."""
    if cg_tol is None:
        return float64_tol if problem.dtype == torch.float64 else _FLOAT32_CG_TOL
    return cg_tol


def _index(problem: DiscreteProblem, names: Sequence[str]) -> Tensor:
    idx = []
    if not names:
        raise ValueError(f"params: expected at least one name of {list(problem.slices)}")
    if len(set(names)) != len(names):
        raise ValueError(f"params: expected distinct names, received {names}")
    for k in names:
        if k not in problem.slices:
            raise ValueError(f"params: unknown name {k!r}; expected some of {list(problem.slices)}")
        s = problem.slices[k]
        idx.extend(range(s.start, s.stop))
    return torch.tensor(idx, dtype=torch.long, device=problem.device)


@inference_tensors_named("theta_covariance", "data or an index the residual function captures")
@own_precision()
def theta_covariance(
    problem: DiscreteProblem,
    x: Tensor,
    params: Sequence[str] | None = None,
    *,
    cg_tol: float | None = None,
    cg_maxiter: int = 2000,
    dense: bool = False,
    sparse: bool = False,
    stencil_radius: int | None = None,
    warn_inexact: bool = True,
) -> tuple[Tensor, dict]:
    r"""Laplace marginal covariance ``[p, p]`` of ``params`` (default: all parameters).

    As for :func:`~bayesphys.odil.minimize`, residual data created inside
    ``torch.inference_mode()`` is a ``RuntimeError`` naming the remedy.

    Uses the Schur complement of the Gauss-Newton matrix (module docstring). ``dense=True``
    forms :math:`H` and inverts it (reference for tests; a ``MemoryError`` before the
    Jacobian when it and :math:`H` cannot fit in memory). ``sparse=True`` assembles :math:`J`
    by column colouring (:class:`~bayesphys.odil.ColouredJacobian`, stencil of
    ``stencil_radius`` cells, default 1, given only with ``sparse``; float64 plain-grid problems)
    and solves with the field block of :math:`J^\top J` by sparse LU instead of CG
    (:func:`~bayesphys.odil.sparse.sparse_schur_covariance`). The matrix-free path solves the
    parameters' columns together, 16 to a CG, which stops when all of them reach ``cg_tol``: a
    parameter's entries then move with the other ``params`` asked for, within the solve's tolerance
    (``cg_tol``-sized, not round-off; ``dense`` and ``sparse`` do not). Returns ``(cov, info)`` with
    the CG iteration count (one per parameter, shared: the columns are solved together), each
    column's true relative residual, whether its CG broke down (``cg_breakdown``) and whether it
    reached ``cg_maxiter`` (``cg_capped``) in ``info`` (a ``RuntimeWarning`` if a residual stays
    above ``cg_tol``, saying per column whether CG reached ``cg_maxiter`` or broke down on a
    non-positive curvature, which more iterations do not mend; unless ``warn_inexact=False``: a
    caller that reports it itself). ``cg_tol``: CG's tolerance on each column's relative
    residual, ``>= 0``;
    ``None`` (default): ``1e-10`` in float64 and ``1e-5`` in float32, where a true residual below
    about ``1e-7`` (float32's resolution) is out of reach and ``1e-10`` made every float32
    covariance warn. ``cg_maxiter >= 1``; ``params`` distinct names
    of unknowns (a single name may be given as a string); a field's name stands for its
    fine-grid values, in C order, whether or not the field is held in the multigrid
    decomposition. A field block that is singular (a field mode no residual fixes, e.g. the
    constant of a periodic field whose data do not see it) still has a parameter marginal,
    which float64 gets on every path; in float32 it comes back inaccurate (0.4x to 2x on
    small grids) or refused as not positive definite: use float64 there.
    """
    if cg_tol is not None:
        cg_tol = check_real("cg_tol", cg_tol, minimum=0.0)
    cg_maxiter = check_int("cg_maxiter", cg_maxiter, minimum=1)
    x = _checked(problem, x)
    cg_tol = _cg_tol(cg_tol, problem, 1e-10)
    dense, sparse = check_bool("dense", dense), check_bool("sparse", sparse)
    warn_inexact = check_bool("warn_inexact", warn_inexact)
    if dense and sparse:
        raise ValueError("dense, sparse: choose one of them (both were True)")
    if stencil_radius is not None and not sparse:
        raise ValueError(
            f"stencil_radius: only used with sparse=True, received stencil_radius="
            f"{stencil_radius!r} (it would be ignored)"
        )
    if isinstance(params, str):
        params = [params]
    names = list(problem.param_names if params is None else params)
    if problem.multigrid and (dense or sparse or any(k in problem.multigrid for k in names)):
        # the multigrid coefficients are redundant (H singular in their directions): the
        # parameters' marginal does not depend on the field's parameterisation, so the dense
        # and sparse paths work on the plain grid (dense returned a variance of -0.0), and so
        # does CG for a multigrid field's own marginal, which is one of its fine-grid values
        # (CG indexed its redundant coefficients and refused them as "not determined")
        x, problem = problem.to_plain(x), problem.plain()
    t_idx = _index(problem, names)
    try:
        cov, info = _theta_covariance(
            problem, x, t_idx, dense, sparse, stencil_radius, cg_tol, cg_maxiter, warn_inexact
        )
        if not bool(torch.isfinite(cov).all()):  # every path (NaN residuals pass CG's test)
            raise ValueError(
                "x: the Gauss-Newton matrix at x is not finite (a residual or its Jacobian is "
                "NaN or infinite there), so no covariance can be formed"
            )
        # a parameter the field can absorb has a Schur complement of round-off size: its
        # inverse came back negative or ~1e16 on every path, silently
        evals = torch.linalg.eigvalsh(cov)
        if bool((evals <= 0).any()):
            raise torch.linalg.LinAlgError("the Schur complement is not positive definite")
        # the Schur complement S = cov^-1 in the parameters' own units: D^-1/2 S D^-1/2 with
        # D = diag(H_tt) (S <= H_tt, so its eigenvalues lie in (0, p]); round-off size means the
        # field absorbs a parameter. Scale-free: parameters of very different precision pass
        d = info.pop("h_tt_diag", None)
        if d is None:
            d = _unit_columns(problem, x, t_idx)[t_idx].diagonal()
        dinv = d.clamp_min(torch.finfo(cov.dtype).tiny).rsqrt()
        scaled = torch.linalg.inv(cov) * dinv[:, None] * dinv[None, :]
        if (
            float(torch.linalg.eigvalsh(0.5 * (scaled + scaled.T)).min())
            <= 1e3 * torch.finfo(cov.dtype).eps
        ):
            raise torch.linalg.LinAlgError("the Schur complement is singular to working precision")
        return cov, info
    except (torch.linalg.LinAlgError, np.linalg.LinAlgError) as err:
        # a raw "diagonal element 2 is zero" / "Singular matrix" named nothing
        diag = _unit_columns(problem, x, t_idx)[t_idx].diagonal()
        flat = [k for k, v in zip(names, diag.tolist()) if v <= 0.0]
        what = (
            f"no residual depends on {flat}"
            if flat
            else f"the parameters {names} are not determined jointly by the residuals"
        )
        raise ValueError(
            f"params: the Gauss-Newton matrix is singular, {what}; add a prior residual or "
            f"leave them out of params ({err})"
        ) from err


def _theta_covariance(
    problem, x, t_idx, dense, sparse, stencil_radius, cg_tol, cg_maxiter, warn_inexact=True
):
    mask = torch.ones(problem.n, dtype=torch.bool, device=problem.device)
    mask[t_idx] = False
    u_idx = mask.nonzero().squeeze(-1)
    if dense:
        with torch.no_grad():
            m = problem.residual(x).numel()
        check_dense_gn_memory("dense", m, x, "use dense=False (CG) or sparse=True")
        h = _dense_gn(problem, x)
        # field unknowns no residual reads (e.g. masked cells) have empty rows and columns and
        # no bearing on the parameters: dropped, as the sparse path does
        active = h.diagonal() > 0
        active[t_idx] = True
        keep = active.nonzero().squeeze(-1)
        where = torch.full((problem.n,), -1, dtype=torch.long, device=keep.device)
        where[keep] = torch.arange(keep.numel(), device=keep.device)
        tk = where[t_idx]
        cov = torch.linalg.inv(h[keep][:, keep])[tk][:, tk]
        return 0.5 * (cov + cov.T), {"cg_iters": []}
    if sparse:
        r, jv, _ = jvp_vjp(problem.residual, x)
        radius = 1 if stencil_radius is None else stencil_radius
        jac = ColouredJacobian(problem, radius)(jv, r.numel())
        cov = sparse_schur_covariance(jac, t_idx).to(device=x.device, dtype=x.dtype)
        return cov, {"cg_iters": [], "jacobian_nnz": int(jac.nnz)}
    _, jv, jtw = jvp_vjp(problem.residual, x)

    def mv(v: Tensor) -> Tensor:  # v [n, k]: k products in one batched pass each way
        return jtw(jv(v.mT)).mT

    h_t = mv(_unit_matrix(problem, x, t_idx))  # columns H e_j [n, p], one batched pass
    h_tt = h_t[t_idx]
    h_ut = h_t[u_idx]

    def mv_uu(v: Tensor) -> Tensor:  # v [n_u, p]
        full = torch.zeros((problem.n, v.shape[1]), dtype=v.dtype, device=v.device)
        full[u_idx] = v
        return mv(full)[u_idx]

    # the p systems H_uu s_j = h_uj solved together as the columns of one CG (a loop of p solves
    # paid the graph overhead p times); each column's true relative residual is reported
    # at most _DRAW_BLOCK columns per CG: memory of a few [n, block] tensors, not [n, p]
    parts, its, broken, capped = [], 0, [], []
    for i in range(0, h_ut.shape[1], _DRAW_BLOCK):
        rhs = h_ut[:, i : i + _DRAW_BLOCK]
        part, k, _, bad = cg_with_breakdown(mv_uu, rhs, tol=cg_tol, maxiter=cg_maxiter)
        parts.append(part)
        its = max(its, k)
        broken += bad.tolist()
        capped += [k >= cg_maxiter] * rhs.shape[1]
    sols = torch.cat(parts, 1)
    bnorm = h_ut.norm(dim=0)
    rel = (h_ut - mv_uu(sols)).norm(dim=0) / torch.where(bnorm > 0, bnorm, 1.0)
    resids = [float(v) for v in rel]
    short = _cg_shortfall(resids, broken, capped, cg_tol)
    if warn_inexact and short:
        reasons = _short_reasons(short, cg_maxiter, _H_UU, columns=True)
        warnings.warn(
            f"theta_covariance: CG did not reach cg_tol={cg_tol:g} (relative residuals "
            f"{[f'{r:.1e}' for r in resids]}; columns: the unknowns of params in order): "
            f"{reasons}; the covariance may be off",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    schur = h_tt - h_ut.T @ sols
    schur = 0.5 * (schur + schur.T)
    cov = torch.linalg.inv(schur)
    info = {
        "cg_iters": [its] * len(t_idx),
        "cg_residuals": resids,
        "cg_breakdown": broken,
        "cg_capped": capped,
    }
    return 0.5 * (cov + cov.T), {**info, "h_tt_diag": h_tt.diagonal()}


_H_UU = "the field block H_uu of the Gauss-Newton matrix"
_H = "the Gauss-Newton matrix H"


def _unit_matrix(problem: DiscreteProblem, x: Tensor, t_idx: Tensor) -> Tensor:
    """Columns ``e_j`` ``[n, p]`` of the unknowns ``t_idx``."""
    e = torch.zeros((problem.n, len(t_idx)), dtype=x.dtype, device=x.device)
    e[t_idx, torch.arange(len(t_idx), device=x.device)] = 1.0
    return e


def _unit_columns(problem: DiscreteProblem, x: Tensor, t_idx: Tensor) -> Tensor:
    r"""Columns :math:`H e_j` ``[n, p]`` of the Gauss-Newton matrix, in one batched pass."""
    _, jv, jtw = jvp_vjp(problem.residual, x)
    return jtw(jv(_unit_matrix(problem, x, t_idx).mT)).mT


_DRAW_BLOCK = 16  # columns one CG solves together (field_posterior's draws, Schur columns)

_NOT_FINITE = (
    "x: the Gauss-Newton matrix at x is not finite (a residual or its Jacobian is NaN or "
    "infinite there), so no Laplace posterior can be formed"
)


def _check_constrained(problem: DiscreteProblem, x: Tensor, r: Tensor, jtw) -> None:
    r"""Refuse a non-finite residual ``r`` at ``x``, and unknowns with a zero column of
    :math:`J` there (no residual depends on them, or every derivative vanishes there): their
    Gauss-Newton precision is 0, so no Laplace variance exists (the dense path failed inside
    ``inv``; the sampling path reported the jitter as their sd). ``jtw``: :math:`v \mapsto
    J^\top v` from :func:`~bayesphys.odil.solvers.jvp_vjp`."""
    if not bool(torch.isfinite(r).all()):
        raise ValueError(
            "x: the residuals at x are not finite (NaN or infinite), so no Laplace posterior "
            "can be formed"
        )
    # column k of J is zero iff (J^T v)_k = 0 for every v; two Gaussian probes tell (a non-zero
    # column gives a zero entry with probability 0)
    gen = torch.Generator(device=x.device).manual_seed(0)
    touched = torch.zeros(problem.n, dtype=torch.bool, device=x.device)
    for _ in range(2):
        v = torch.randn(r.shape, dtype=x.dtype, device=x.device, generator=gen)
        touched |= jtw(v) != 0
    parts = []
    for name, sl in problem.slices.items():
        free = (~touched[sl]).nonzero().squeeze(-1)
        if not free.numel():
            continue
        if name in problem.field_shapes:
            shape = problem.field_shapes[name]
            first = [tuple(int(i) for i in torch.unravel_index(k, shape)) for k in free[:5]]
            parts.append(f"{free.numel()} cell(s) of field {name!r} (e.g. {first})")
        else:
            parts.append(f"parameter {name!r}")
    if parts:
        raise ValueError(
            f"x: {'; '.join(parts)} have a zero Jacobian column at x (no residual depends on "
            "them, or every derivative vanishes there), so their Laplace variance is infinite; "
            "add a prior or smoothness residual that covers them"
        )


@renamed_kwargs(num_draws="num_samples")
@inference_tensors_named("field_posterior", "data or an index the residual function captures")
@own_precision()
def field_posterior(
    problem: DiscreteProblem,
    x: Tensor,
    field: str,
    *,
    dense_max: int = 4096,
    num_samples: int = 64,
    seed: int | None = 0,
    cg_tol: float | None = None,
    cg_maxiter: int = 1000,
    jitter: float | None = None,
) -> GaussianPosterior:
    r"""Laplace marginal of one field as a :class:`~bayesphys.GaussianPosterior` (event = its grid).

    ``x [n]``: the unknowns at the mode (e.g. :func:`minimize`'s); the posterior's event is
    the field's plain grid, ``[*shape]`` (``problem.field_shapes[field]``). As for
    :func:`minimize`, residual data created inside ``torch.inference_mode()`` is a
    ``RuntimeError`` naming the remedy.

    If the number of unknowns ``n <= dense_max``: exact block of :math:`H^{-1}` (dense
    covariance; a ``MemoryError`` naming ``dense_max`` before the Jacobian when it and
    :math:`H` cannot fit in memory). Otherwise ``num_samples`` exact pathwise draws (module
    docstring) give the low-rank covariance :math:`S S^\top / K` plus ``jitter`` on the diagonal
    (a Monte-Carlo estimate with ``K = num_samples``; marginal variances have relative error ~
    :math:`\sqrt{2/K}`).
    ``jitter`` is a variance in the field's squared units; ``None`` (default): ``1e-12`` times
    the mean sampled variance (an absolute ``1e-12`` floored every sd at ``1e-6``: on a field of
    order ``1e-6`` the reported sds were the size of the field).
    The dense path raises ``ValueError`` when :math:`H` is singular to working precision: some
    unknown's Schur complement in its own units, :math:`1 / (H_{ii} (H^{-1})_{ii})`, is at most
    :math:`n\varepsilon` (:math:`\varepsilon` the dtype's machine epsilon; a rank tolerance, as
    :func:`theta_covariance` refuses a parameter the field absorbs). The sampled path cannot
    tell: on a singular :math:`H` its CG draws have the pseudo-inverse's covariance, which
    leaves out the undetermined directions. Draws whose CG stopped above ``cg_tol`` give a
    ``RuntimeWarning`` counting those that reached ``cg_maxiter`` and those that broke down (a
    non-positive curvature: more iterations do not mend it). ``cg_tol``: the draws' CG
    tolerance on the relative residual; ``None`` (default): ``1e-8`` in float64 and ``1e-5``
    in float32, where a true residual below about ``1e-7`` is out of reach (``1e-8`` made
    every sampled float32 posterior warn).
    Settings: ``dense_max >= 0``, ``num_samples >= 1``, ``cg_tol >= 0`` or ``None``,
    ``cg_maxiter >= 1``, ``jitter >= 0`` or ``None``, ``seed`` an int or ``None`` (a seed drawn from
    torch's global stream).
    """
    dense_max = check_int("dense_max", dense_max, minimum=0)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    if cg_tol is not None:
        cg_tol = check_real("cg_tol", cg_tol, minimum=0.0)
    cg_maxiter = check_int("cg_maxiter", cg_maxiter, minimum=1)
    if jitter is not None:
        jitter = check_real("jitter", jitter, minimum=0.0)
    if seed is not None:
        seed = check_seed("seed", seed)
    x = _checked(problem, x)
    cg_tol = _cg_tol(cg_tol, problem, 1e-8)
    if not isinstance(field, str) or field not in problem.field_shapes:
        raise ValueError(
            f"field: expected one of {problem.field_names}, received "
            f"{field!r}{did_you_mean(field, problem.field_names)}"
        )
    if problem.multigrid:
        raise ValueError("problem: use problem.plain() / to_plain(x) for the Laplace posterior")
    shape = problem.field_shapes[field]
    sl = problem.slices[field]
    fields, _ = problem.unpack(x)
    # a copy: the mean was a view of the caller's x, so an in-place edit of post.mean changed
    # x (and an edit of x, e.g. the next solver step written into it, moved the posterior)
    mean = fields[field].detach().clone()
    r, jv, jtw = jvp_vjp(problem.residual, x)
    _check_constrained(problem, x, r, jtw)
    if problem.n <= dense_max:
        check_dense_gn_memory(
            "dense_max",
            r.numel(),
            x,
            f"use a dense_max below the {problem.n} unknowns (pathwise CG draws)",
        )
        h = _dense_gn(problem, x)
        if not bool(torch.isfinite(h).all()):
            raise ValueError(_NOT_FINITE)
        singular = (
            "x: the Gauss-Newton matrix at x is singular (a combination of unknowns no "
            "residual determines, e.g. a field's constant mode): its variance is infinite; "
            "add a prior or boundary residual"
        )
        try:
            inv = torch.linalg.inv(h)
        except torch.linalg.LinAlgError as err:  # a raw "diagonal element 4 is zero"
            raise ValueError(singular) from err
        # a numerically singular H meets no exact zero pivot: its "inverse" gave variances of
        # 1e15 or negative ones, silently. Each unknown's Schur complement in its own units,
        # 1 / (H_ii (H^-1)_ii) in (0, 1], at round-off size means the rest absorbs it; the
        # tolerance is the usual rank one, n eps (singular H of up to 4097 unknowns gave at
        # most 155 eps; well-posed float32 smoothing problems a few hundred eps)
        schur = 1.0 / (inv.diagonal() * h.diagonal())
        if not bool((schur > h.shape[0] * torch.finfo(h.dtype).eps).all()):  # NaN included
            raise ValueError(singular)
        cov = inv[sl, sl]
        return GaussianPosterior(mean, 0.5 * (cov + cov.T), event_shape=shape)
    # None: a seed drawn from torch's global stream, as everywhere (it was OS entropy)
    gen = torch.Generator(device=x.device).manual_seed(seed_or_draw("seed", seed))

    def mv(v):  # v [n, K]: the K systems' products in one batched pass each way
        return jtw(jv(v.mT)).mT

    # the K right-hand sides J^T z_k (z_k drawn in turn, as one draw per solve drew them) solved
    # together as the columns of one CG (a loop of K solves paid the graph overhead K times)
    z = torch.stack(
        [
            torch.randn(r.shape, dtype=x.dtype, device=x.device, generator=gen)
            for _ in range(num_samples)
        ]
    )
    # at most _DRAW_BLOCK columns per CG: memory of a few [n, block] tensors, not [n, K]
    sols, rels, broken, capped = [], [], [], []
    for i in range(0, num_samples, _DRAW_BLOCK):
        b = jtw(z[i : i + _DRAW_BLOCK]).mT.contiguous()  # right-hand sides [n, block]
        part, k, _, bad = cg_with_breakdown(mv, b, tol=cg_tol, maxiter=cg_maxiter)
        bnorm = b.norm(dim=0)  # each column's true relative residual, for the warning below
        rels.append((b - mv(part)).norm(dim=0) / torch.where(bnorm > 0, bnorm, 1.0))
        sols.append(part)
        broken += bad.tolist()
        capped += [k >= cg_maxiter] * b.shape[1]
    sol, rel = torch.cat(sols, 1), torch.cat(rels)
    if not bool(torch.isfinite(sol).all()):  # a NaN Jacobian behind a finite residual
        raise ValueError(_NOT_FINITE)
    resids = [float(v) for v in rel]
    draws = [sol[sl, k] for k in range(num_samples)]
    short = _cg_shortfall(resids, broken, capped, cg_tol)
    if short:
        bad = [resids[j] for idx in short.values() for j in idx]
        reasons = _short_reasons(short, cg_maxiter, _H)
        warnings.warn(
            f"field_posterior: CG did not reach cg_tol={cg_tol:g} for {len(bad)} of "
            f"{num_samples} draws (relative residuals up to {max(bad):.1e}): {reasons}; the "
            "draws, and the spread they give, may be off",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    s = torch.stack(draws, 1) / num_samples**0.5
    if jitter is None:  # relative to the field's own scale (its units)
        jitter = max(1e-12 * float(s.square().sum(1).mean()), torch.finfo(s.dtype).tiny)
    cov = LowRankRootAddedDiagLinearOperator(
        LowRankRootLinearOperator(s),
        DiagLinearOperator(torch.full((s.shape[0],), jitter, dtype=x.dtype, device=x.device)),
    )
    return GaussianPosterior(mean, cov, event_shape=shape, validate=False)
