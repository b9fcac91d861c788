r"""Step 2 of ProbConserv: condition a Gaussian on a linear conservation constraint.

Prior (Step 1): :math:`u \sim \mathcal N(\mu, \Sigma)`, :math:`u \in \mathbb R^N` (one time
slice of a field, or any flattened event). Constraint model: :math:`b = G u + \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, \sigma_G^2 I_m)`, :math:`G \in \mathbb R^{m \times N}`.
Exact linear-Gaussian conditioning gives

.. math::
    S = G\Sigma G^\top + \sigma_G^2 I, \qquad K = \Sigma G^\top S^{-1},\\
    \tilde\mu = \mu - K (G\mu - b), \qquad \tilde\Sigma = \Sigma - K G \Sigma .

* ``sigma_g = 0`` is the paper's ProbConserv limit: :math:`G\tilde\mu = b` and
  :math:`\tilde\Sigma G^\top = 0`, so every posterior draw conserves mass exactly (float64
  round-off, amplified by the condition number of :math:`G\Sigma G^\top`; see ``rcond``).
  :math:`G\Sigma G^\top` must be invertible.
* finite ``sigma_g``: an absolute tolerance on the mass (physical units), or with
  ``relative=True`` a multiple of :math:`\sqrt{(G\Sigma G^\top)_{jj}}` (scale free: ``1`` halves
  the prior variance of the mass and the defect, ``0.1`` removes 99 % of the defect). ``inf``
  returns the prior.
* structure: only :math:`\Sigma G^\top` (``N x m``) is needed. Diagonal :math:`\Sigma`: ``O(N m)``;
  low-rank-plus-diagonal :math:`D + R R^\top`: :math:`D G^\top + R (R^\top G^\top)`,
  ``O(N k m)``; dense / Kronecker: one operator matmul. :math:`\tilde\Sigma` is kept as
  :math:`\Sigma + (-K)(G\Sigma)` (a rank-``m`` downdate, never densified), and draws use
  Matheron's rule (pathwise, valid for the singular limit):
  :math:`\tilde u = \mu + f - K (G f + \sigma_G \xi) - K(G\mu - b)` with :math:`f = L z`.

Shapes: ``mean [*batch, N]`` (the posterior's flattened event), ``G [m, N]`` or
``[*batch, m, N]``, ``b [*batch, m]`` (or broadcastable). Everything runs in float64 and the
result is float64.

:func:`hard_projection` is the HardC baseline: the Euclidean projection of the mean onto
:math:`\{u : G u = b\}` (:math:`\Sigma` replaced by :math:`I`), covariance left unchanged.
"""

from __future__ import annotations

import math

import torch
from linear_operator import to_linear_operator
from linear_operator.operators import (
    DiagLinearOperator,
    LinearOperator,
    LowRankRootAddedDiagLinearOperator,
    MatmulLinearOperator,
    SumLinearOperator,
)
from torch import Tensor

from .._checks import (
    check_bool,
    check_increasing,
    check_real,
    did_you_mean,
)
from .._device import ArrayLike, as_tensor, check_finite
from ..posterior import GaussianPosterior
from ._update_checks import (
    check_covariance,
    check_sigma_g,
    check_sigma_g_shape,
    check_slice_mass,
    refuse_not_pd,
)
from ._update_roots import CovarianceRoot, UpdatedRoot, prior_root

__all__ = [
    "trapezoid_weights",
    "conservation_update",
    "hard_projection",
    "conserve_slices",
    "cov_times_gt",
]

_F64 = torch.float64


def trapezoid_weights(x: ArrayLike, rule: str = "trapezoid") -> Tensor:
    r"""Quadrature weights ``g [*, N]`` (float64) with :math:`g^\top u \approx \int u\,dx` on
    grid ``x [*, N]`` (a tensor, array or list).

    ``"trapezoid"``: :math:`g_i = \tfrac12(x_{i+1}-x_{i-1})`, :math:`g_0 = \tfrac12(x_1-x_0)`,
    :math:`g_{N-1} = \tfrac12(x_{N-1}-x_{N-2})` (composite trapezoid, any non-uniform grid).
    ``"rhs"``: right Riemann sums :math:`g_i = x_i - x_{i-1}`, :math:`g_0 = 0`.
    """
    x = as_tensor("x", x, dtype=_F64)
    if x.ndim < 1 or x.shape[-1] < 2:
        raise ValueError(
            f"x: expected a grid with at least 2 points, received shape {tuple(x.shape)}"
        )
    check_increasing("x", x, what="grid", hint=" (sort the points and drop repeated ones)")
    dx = x.diff(dim=-1)
    zero = torch.zeros_like(x[..., :1])
    if rule == "trapezoid":
        return 0.5 * (torch.cat([dx, zero], -1) + torch.cat([zero, dx], -1))
    if rule == "rhs":
        return torch.cat([zero, dx], -1)
    raise ValueError(
        f"rule: expected 'trapezoid' or 'rhs', received {rule!r}"
        f"{did_you_mean(rule, ('trapezoid', 'rhs'))}"
    )


def _cov64(cov: LinearOperator | Tensor) -> LinearOperator:
    if isinstance(cov, Tensor):
        cov = to_linear_operator(cov)
    return cov.to(_F64)


def cov_times_gt(cov: LinearOperator | Tensor, gt: ArrayLike) -> Tensor:
    r""":math:`\Sigma G^\top` ``[*batch, N, m]`` using the covariance's structure.

    ``cov`` ``[*batch, N, N]`` (a ``LinearOperator`` or a tensor), ``gt`` ``[*, N, m]`` with
    batch dims broadcasting with ``cov``'s (an array or list is converted to float64 on ``cov``'s
    device). Diagonal: ``d * G^T``; low-rank-plus-diagonal:
    :math:`D G^\top + R(R^\top G^\top)`; otherwise the operator's own matmul (Kronecker stays
    factorised).
    """
    check_covariance("cov", cov)
    cov = _cov64(cov)
    gt = as_tensor("gt", gt, dtype=_F64, device=cov.device)
    if gt.ndim < 2 or gt.shape[-2] != cov.shape[-1]:
        raise ValueError(
            f"gt: expected shape [..., {cov.shape[-1]}, m] (G^T for a covariance of size "
            f"{cov.shape[-1]}), received {tuple(gt.shape)}"
        )
    try:
        torch.broadcast_shapes(cov.shape[:-2], gt.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"gt: expected batch dims that broadcast with the covariance's "
            f"{tuple(cov.shape[:-2])}, received shape {tuple(gt.shape)}"
        ) from None
    if isinstance(cov, DiagLinearOperator):
        return cov.diagonal().unsqueeze(-1) * gt
    if isinstance(cov, LowRankRootAddedDiagLinearOperator):
        r = cov._linear_op.root.to_dense()
        d = cov._diag_tensor.diagonal()
        return d.unsqueeze(-1) * gt + r @ (r.mT @ gt)
    return cov.matmul(gt)


def _prepare(prior: GaussianPosterior, G: Tensor, b: Tensor | float):
    if not isinstance(prior, GaussianPosterior):
        raise TypeError(f"prior: expected a GaussianPosterior, received {type(prior).__name__}")
    n = math.prod(prior.event_shape)
    G = as_tensor("G", G, dtype=_F64, device=prior.device)
    if G.ndim == 1:
        G = G.unsqueeze(0)
    if G.ndim < 2 or G.shape[-2] == 0:
        # a 0-d G failed with an IndexError; a G without rows returned the prior unchanged
        raise ValueError(
            f"G: expected constraint rows [m, {n}] (or one row [{n}]) with m >= 1, received "
            f"shape {tuple(G.shape)}"
        )
    if G.shape[-1] != n:
        raise ValueError(
            f"G: expected last dimension {n} (the size of the grid/event "
            f"{tuple(prior.event_shape)}), "
            f"received G of shape {tuple(G.shape)}"
        )
    batch = prior.batch_shape
    try:
        ok = torch.broadcast_shapes(G.shape[:-2], batch) == batch
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"G: expected shape [m, {n}] or [*batch, m, {n}] with batch dims broadcastable to "
            f"the prior's {tuple(batch)}, received {tuple(G.shape)}"
        )
    m = G.shape[-2]
    b = as_tensor("b", b, dtype=_F64, device=prior.device)
    try:
        b = b.expand(*batch, m)  # [*batch, m] or broadcastable to it ([*batch, 1], [m], ...)
    except RuntimeError:
        try:  # [*batch] (or broadcastable): one value per batch entry, the same for every row
            b = b.unsqueeze(-1).expand(*batch, m)
        except RuntimeError as err:
            raise ValueError(
                f"b: expected shape {(*batch, m)} (batch x constraints) or broadcastable, "
                f"or {tuple(batch)} (one value per batch entry), received {tuple(b.shape)}"
            ) from err
    mean = prior.mean.to(_F64).reshape(*batch, n)
    check_finite("prior mean", mean)
    return mean, G, b, n, m


def _sigma(sigma_g, s_prior: Tensor, relative: bool) -> Tensor:
    # sigma_g is checked (check_sigma_g: no NaN, nothing negative) by the one caller
    sig = torch.as_tensor(sigma_g, dtype=_F64, device=s_prior.device)
    if relative:
        # inf stays inf where the unit is 0 (inf * 0 = NaN): sigma_g = inf means no update
        unit = s_prior.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
        sig = torch.where(torch.isinf(sig), sig, sig * unit)
    return sig.expand(s_prior.shape[:-1])


def conservation_update(
    prior: GaussianPosterior,
    G: Tensor,
    b: Tensor | float,
    sigma_g: float | Tensor = 0.0,
    *,
    relative: bool = False,
    rcond: float = 1e-13,
) -> GaussianPosterior:
    r"""Condition ``prior`` :math:`\mathcal N(\mu, \Sigma)` on :math:`G u = b + \varepsilon`.

    Parameters
    ----------
    prior
        Step-1 posterior, ``batch_shape`` e.g. ``(functions, times)``, event ``(nx,)``;
        its covariance must be the joint covariance of its draws (``GPPDESolver.posterior``,
        which holds only the marginal variances, is refused: pass ``field_posterior()``).
    G
        ``[m, N]`` or ``[*batch, m, N]`` constraint rows (e.g. :func:`trapezoid_weights`).
    b
        ``[*batch, m]`` right-hand sides (total mass :math:`b(t)`), or any shape that
        broadcasts to it (e.g. ``[]``, ``[m]``, ``[*batch, 1]``); a ``b`` that does not but
        broadcasts to ``batch`` is one value per batch entry, the same for all ``m`` rows.
    sigma_g
        constraint noise sd :math:`\sigma_G` (``0`` = exact limit, ``inf`` = prior): a
        number ``>= 0`` or a real tensor whose shape broadcasts to exactly ``[*batch, m]``
        (``batch = prior.batch_shape``, ``m`` rows of ``G``; e.g. ``[]``, ``[m]``,
        ``[*batch, 1]``), per batch entry and constraint row. Zeros may mix with positive
        values (those rows exact); ``inf`` must be everywhere or nowhere.
    relative
        interpret ``sigma_g`` in units of :math:`\sqrt{(G\Sigma G^\top)_{jj}}`.
    rcond
        in the limit, refuse :math:`G\Sigma G^\top` whose smallest/largest eigenvalue ratio
        is below ``rcond``, or with a row whose variance :math:`g_j^\top\Sigma g_j` is below
        ``rcond`` times :math:`\sum_i G_{ji}^2\Sigma_{ii}` (its value without correlations;
        below that it is round-off, e.g. a prior already conditioned on the same row)
        (singular: the prior is certain about the constrained direction); ``0 <= rcond < 1``.
        An accepted but ill-conditioned one (ratio :math:`r` just above ``rcond``, e.g. two
        rows that differ by ``1e-6``) has its round-off amplified by up to :math:`1/r`: the
        draws meet the constraint to ``1e-10`` or worse instead of ``1e-15`` (the mean,
        refined once, usually to round-off); raise ``rcond`` to refuse such constraints
        instead.

    Returns
    -------
    GaussianPosterior
        float64, with mean ``[*batch, *event]`` and covariance :math:`\tilde\Sigma`
        ``[*batch, N, N]`` (structured, never densified) and a pathwise sampler. Its mean,
        variance and ``rsample`` are differentiable in the prior's mean and covariance, ``G``,
        ``b`` and ``sigma_g``. It holds the prior's covariance operator (and its factor), not
        copies, so an in-place edit of the prior's covariance tensors changes it; ``G`` is
        copied. The prior covariance's factor for the draws is taken at the first draw (the
        prior's own, shared with it), not by the update: a posterior scored only by its mean
        and variances factorises nothing.

        Applied again to its own result, the update conditions on a second, independent
        observation of the same constraint, so it is not idempotent. After the limit
        (``sigma_g = 0``) the posterior has no variance left along ``G`` and already satisfies
        it: a second exact update is refused (``ValueError``, see ``rcond``; use the posterior
        as it is), and one with a finite ``sigma_g`` leaves mean and covariance unchanged to
        round-off. After a finite ``sigma_g`` a second update counts the constraint twice and
        shrinks the mass variance again: with the same absolute ``sigma_g`` it equals one
        update with :math:`\sigma_G/\sqrt2`.
    """
    if isinstance(prior, GaussianPosterior) and getattr(
        prior._custom_root, "marginal_covariance", False
    ):
        # its covariance is the diagonal of the marginal variances beside a correlated sampler:
        # the gain from it gave a wrong mean and a covariance that disagreed with the draws
        # (hard_projection reads no covariance: it takes such a prior)
        raise ValueError(
            "prior: its covariance holds only the marginal variances of its correlated draws "
            "(GPPDESolver.posterior), so it cannot be conditioned on G u = b; pass "
            "GPPDESolver.field_posterior() (the joint covariance on the collocation grid) or a "
            "GaussianPosterior with the joint covariance"
        )
    check_sigma_g(sigma_g)
    relative = check_bool("relative", relative)
    rcond = check_real("rcond", rcond, minimum=0.0)
    if rcond >= 1.0:  # every eigenvalue ratio is <= 1: every G Sigma G^T would read as singular
        raise ValueError(f"rcond: expected a number in [0, 1), received {rcond!r}")
    mean, G, b, n, m = _prepare(prior, G, b)
    check_sigma_g_shape(sigma_g, (*prior.batch_shape, m))
    cov = _cov64(prior.covariance)
    sgt = cov_times_gt(cov, G.mT.expand(*prior.batch_shape, n, m))  # [*batch, N, m]
    s_prior = G @ sgt  # [*batch, m, m]
    s_prior = 0.5 * (s_prior + s_prior.mT)
    if not bool(torch.isfinite(s_prior).all()):
        raise ValueError(
            "G Sigma G^T: non-finite entries (NaN/Inf in the prior covariance, e.g. a "
            "posterior built with validate=False)"
        )
    sig = _sigma(sigma_g, s_prior, relative)
    if bool(torch.isinf(sig).all()):
        return GaussianPosterior(
            mean.reshape(prior.mean.shape),
            cov,
            event_shape=prior.event_shape,
            validate=False,
            root=prior_root(prior),
            root_dim=prior._custom_root_dim,
        )
    if bool(torch.isinf(sig).any()):
        raise ValueError("sigma_g: mixing infinite and finite values is not supported")
    limit = bool((sig == 0).all())
    s = s_prior + torch.diag_embed(sig * sig)
    # the exact rows (sigma_g = 0) of each batch entry: their block of G Sigma G^T must be well
    # conditioned on its own (the noisy rows' sigma_g^2 would inflate a whole-matrix ratio)
    zero = sig == 0
    if bool(zero.any()):
        flat_s, flat_z = s_prior.reshape(-1, m, m), zero.reshape(-1, m)
        full = flat_z.all(-1)
        # per batch entry (those without exact rows: never singular)
        lo = torch.full(full.shape, math.inf, dtype=_F64, device=s_prior.device)
        hi = torch.ones_like(lo)
        if bool(full.any()):
            ev = torch.linalg.eigvalsh(flat_s[full])
            lo[full], hi[full] = ev[:, 0], ev[:, -1]
        for k in (flat_z.any(-1) & ~full).nonzero().flatten().tolist():
            rows = flat_z[k]
            ev = torch.linalg.eigvalsh(flat_s[k][rows][:, rows])
            lo[k], hi[k] = ev[0], ev[-1]
        bad = (lo <= rcond * hi.clamp_min(1e-300)) | (hi <= 0)
        # an exact row's variance g_j^T Sigma g_j against sum_i G_ji^2 Sigma_ii, what it would
        # be without correlations: below rcond of that it is round-off (one row, where the
        # eigenvalue ratio is 1, was refused only when the round-off happened to be <= 0)
        scale = ((G * G) @ cov.diagonal().clamp_min(0).unsqueeze(-1)).squeeze(-1)
        var = s_prior.diagonal(dim1=-2, dim2=-1)
        row_bad = zero & (var <= rcond * scale.expand_as(var))
        bad = bad | row_bad.reshape(-1, m).any(-1)
        if bool(bad.any()):
            zero_rel = relative and bool(
                (torch.as_tensor(sigma_g, dtype=_F64, device=sig.device) != 0).all()
            )
            why = (
                "a relative sigma_g is in units of sqrt(G Sigma G^T), which is 0 here: give an "
                "absolute sigma_g (relative=False)"
                if zero_rel
                else "use a finite sigma_g or a prior with variance there (a posterior "
                "already conditioned exactly on these rows, e.g. by an earlier "
                "conservation_update, satisfies them: use it as it is)"
            )
            raise ValueError(
                "G Sigma G^T: singular in the limit sigma_g = 0 (the prior has no variance in the "
                f"constrained direction for {int(bad.sum())} batch entries; smallest eigenvalue "
                f"{float(lo[bad].min()):.3e}); {why}"
            )
    chol, info = torch.linalg.cholesky_ex(s)
    if bool(info.any()):
        refuse_not_pd(s_prior, sig, info)
    gain = torch.cholesky_solve(sgt.mT, chol).mT  # K [*batch, N, m]

    def gm(v: Tensor) -> Tensor:
        return (G @ v.unsqueeze(-1)).squeeze(-1)

    def km(v: Tensor) -> Tensor:
        return (gain @ v.unsqueeze(-1)).squeeze(-1)

    new_mean = mean - km(gm(mean) - b)
    if limit:  # one step of iterative refinement: G mu~ = b to round-off
        new_mean = new_mean - km(gm(new_mean) - b)
    new_cov = SumLinearOperator(cov, MatmulLinearOperator(-gain, sgt.mT))

    if prior._custom_root is not None:
        base_root, base_dim = prior_root(prior), int(prior._custom_root_dim)
    else:
        # a float64 prior's covariance is ``cov``: its own root (factorised when it was
        # validated, or at the first draw and kept by the prior) serves the draws, the same
        # factor to the bit; a second factorisation of the prior was ~97 % of the update's
        # time (1.5 s for 200 slices of 200 points). Factorised at the first draw, not here:
        # a posterior only scored (mean, variances) needs none
        f64 = prior.dtype == _F64
        own = prior._root if f64 and prior._root is not None else None
        if own is not None:
            own = prior._get_root()  # the cached one (rebuilt if stale, as before)
        base_root = CovarianceRoot(cov, own, prior if f64 and own is None else None)
        base_dim = base_root.base_dim
    extra = 0 if limit else m
    # a sigma_g whose square overflows (> ~1.3e154) has a zero gain column, so capping it
    # changes no draw; uncapped, sigma_g * xi overflowed near 1e308 and 0 * inf made NaN draws
    # G copied (its graph kept): the sampler held the caller's tensor, so an in-place edit of G
    # after the update (a buffer reused for the next slice) changed the draws, not the mean
    root = UpdatedRoot(
        base_root, base_dim, n, G.clone(), gain, sig.clamp_max(1e300) if extra else None
    )

    return GaussianPosterior(
        new_mean.reshape(*prior.batch_shape, *prior.event_shape),
        new_cov,
        event_shape=prior.event_shape,
        validate=False,
        root=root,
        root_dim=base_dim + extra,
    )


def hard_projection(prior: GaussianPosterior, G: Tensor, b: Tensor | float) -> GaussianPosterior:
    r"""HardC baseline: :math:`\tilde\mu = \mu - G^\top(GG^\top)^{-1}(G\mu - b)`,
    :math:`\tilde\Sigma = \Sigma`.

    ``G``: ``[m, N]`` or ``[*batch, m, N]`` constraint rows (one row ``[N]`` accepted), ``b``
    ``[*batch, m]`` or any shape broadcasting to it (as :func:`conservation_update`); the
    prior has event ``(N,)``. The mean conserves mass; the variance (and so the draws) are
    not updated: the result holds the prior's own ``covariance`` operator (and custom root),
    not a copy, so an in-place edit of one posterior's covariance tensors changes the other's.
    Several rows
    are projected through a QR factorisation :math:`G^\top = QR`
    (:math:`G^\top(GG^\top)^{-1} r = Q R^{-\top} r`): the constraint is then met to round-off
    however close to parallel the rows are (solving with :math:`GG^\top`, whose condition
    number is the square of :math:`G`'s, left a mass defect of 2e-7 for two rows 1e-8 apart).
    Rows that are linearly dependent to working precision are refused (``ValueError``).
    """
    mean, G, b, n, m = _prepare(prior, G, b)
    singular = ValueError(
        f"G: expected linearly independent constraint rows (G G^T is singular), received "
        f"G of shape {tuple(G.shape)}"
    )
    if m > n:  # more rows than unknowns are linearly dependent (the QR solve failed in torch)
        raise ValueError(
            f"G: expected at most {n} linearly independent constraint rows (the size of the "
            f"event), received G of shape {tuple(G.shape)} with {m} rows"
        )
    if m == 1:  # one row: G G^T is a positive number (or 0)
        ggt = G @ G.mT

        def step(resid: Tensor) -> Tensor:
            return G.mT @ torch.linalg.solve(ggt, resid)

    else:
        q, r = torch.linalg.qr(G.mT)  # [*, N, m], [*, m, m]
        d = r.diagonal(dim1=-2, dim2=-1).abs()
        tol = torch.finfo(_F64).eps * max(n, m)
        if bool((d.amin(-1) <= tol * d.amax(-1)).any()):
            raise singular

        def step(resid: Tensor) -> Tensor:
            return q @ torch.linalg.solve_triangular(r.mT, resid, upper=False)

    def project(v: Tensor) -> Tensor:
        resid = G @ v.unsqueeze(-1) - b.unsqueeze(-1)  # [*batch, m, 1]
        return v - step(resid).squeeze(-1)

    try:
        new_mean = project(project(mean))  # second pass: iterative refinement
    except torch.linalg.LinAlgError as err:
        raise singular from err
    return GaussianPosterior(
        new_mean.reshape(*prior.batch_shape, *prior.event_shape),
        _cov64(prior.covariance),
        event_shape=prior.event_shape,
        validate=False,
        root=prior_root(prior),
        root_dim=prior._custom_root_dim,
    )


def conserve_slices(
    prior: GaussianPosterior,
    x: Tensor,
    mass: Tensor,
    sigma_g: float | Tensor = 0.0,
    *,
    relative: bool = False,
    method: str = "probconserv",
) -> GaussianPosterior:
    r"""One mass constraint per time slice: :math:`\int u(t_j, x)\,dx = b(t_j)` for every slice.

    ``prior`` has event ``(nx,)`` and batch ``(*, nt)`` (or ``(*,)`` for a single slice);
    ``x [nx]`` the (possibly non-uniform) grid, ``mass [*, nt]`` the values :math:`b(t_j)`;
    ``sigma_g`` and ``relative`` as in :func:`conservation_update` with one row per slice, so a
    tensor ``sigma_g`` broadcasts to ``[*, nt, 1]`` (one sd per slice: ``[*, nt, 1]``, not
    ``mass``'s ``[*, nt]``).
    ``method``: ``"probconserv"`` (:func:`conservation_update`) or ``"hardc"``
    (:func:`hard_projection`). All slices are updated in one batched solve.
    """
    if not isinstance(prior, GaussianPosterior):
        raise TypeError(f"prior: expected a GaussianPosterior, received {type(prior).__name__}")
    if method not in ("probconserv", "hardc"):
        raise ValueError(
            f"method: expected 'probconserv' or 'hardc', received {method!r}"
            f"{did_you_mean(method, ('probconserv', 'hardc'))}"
        )
    if method == "hardc":
        check_sigma_g(sigma_g)
        relative = check_bool("relative", relative)
        if relative or bool((torch.as_tensor(sigma_g) != 0).any()):
            raise ValueError(
                "sigma_g, relative: only with method='probconserv' (the HardC projection has no "
                f"constraint noise), received sigma_g={sigma_g!r}, relative={relative!r}"
            )
    if len(prior.event_shape) != 1:
        raise ValueError(f"prior: expected event shape (nx,), received {tuple(prior.event_shape)}")
    g = trapezoid_weights(x).to(prior.device)
    if g.ndim != 1 or g.shape[-1] != prior.event_shape[0]:
        raise ValueError(
            f"x: expected {prior.event_shape[0]} grid points (the prior's event), received "
            f"shape {tuple(g.shape)}"
        )
    mass = check_slice_mass(mass, prior.batch_shape, _F64, prior.device)
    b = mass.unsqueeze(-1) if mass.ndim else mass
    if method == "probconserv":
        return conservation_update(prior, g.unsqueeze(-2), b, sigma_g, relative=relative)
    return hard_projection(prior, g.unsqueeze(-2), b)
