r"""Dense linear algebra of the shared core: positive semi-definite Cholesky factors with
escalating per-matrix jitter and eigen roots, any-rank least squares on every device, the
Kronecker matrix-vector product, and (preconditioned) conjugate gradients.

The structured roots of covariance operators built on these are in
:mod:`bayesphys._structured_root`. All Kronecker products use the row-major (C-order)
convention of ``torch.kron``: the last factor varies fastest, matching
``field.reshape(n_1, ..., n_m)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import check_int, check_real

__all__ = [
    "psd_cholesky",
    "psd_eigen_root",
    "lstsq_any_rank",
    "kron_matvec",
    "pcg",
    "pcg_with_breakdown",
]


def psd_eigen_root(a: Tensor) -> Tensor:
    r"""A root :math:`L = V\,\Lambda_+^{1/2}` ``[*, n, n]`` of a symmetric positive
    semi-definite ``a [*, n, n]`` (:math:`LL^\top = a` up to round-off; eigenvalues below 0,
    round-off of a singular matrix, are set to 0): no jitter, so a singular direction of ``a``
    stays exactly singular in :math:`L`. ``a`` is symmetrised first."""
    e, v = torch.linalg.eigh(0.5 * (a + a.mT))
    return v * e.clamp_min(0).sqrt().unsqueeze(-2)


def psd_cholesky(a: Tensor, name: str = "covariance", max_tries: int = 6) -> Tensor:
    """Cholesky factor of a symmetric PSD matrix ``a`` ``[*, n, n]`` with escalating jitter.

    Jitter starts at ``1e-10`` (float64) or ``1e-6`` (float32) times the mean diagonal (at
    least the dtype's smallest normal number, so a zero matrix gets a usable jitter) and grows
    tenfold per try, per matrix of a batch: a matrix that factorises without jitter gets none,
    and each other one the smallest try that works for it, so each matrix's factor is the one
    it gets alone. Raises ``ValueError`` naming ``name`` if ``a`` is not PSD.

    The factor is that of ``a + jitter * I``: draws through it have each variance raised by
    the jitter, a raise that is relative to the mean diagonal, not to each entry (a
    coordinate whose variance is 1e-12 of the mean's gets its variance raised by at least 100x
    its own in float64, more when the first jitter is not enough).
    """
    return _psd_cholesky_jitter(a, name, max_tries)[0]


def _psd_cholesky_jitter(
    a: Tensor, name: str = "covariance", max_tries: int = 6
) -> tuple[Tensor, float, float]:
    """:func:`psd_cholesky`, the jitter it added and that jitter relative to the mean
    diagonal (0.0, 0.0 when none was needed)."""
    if not isinstance(a, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, received {type(a).__name__}")
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{name}: expected a square matrix, received shape {tuple(a.shape)}")
    max_tries = check_int("max_tries", max_tries, minimum=1)
    a = a + a.mT
    a *= 0.5  # in place: the same numbers as 0.5 * (a + a.mT), one [*, n, n] array fewer
    l, info = torch.linalg.cholesky_ex(a)
    if not bool(info.any()):
        return l, 0.0, 0.0
    # only looked at once the plain factorisation has failed; no [n, n] mask kept alive
    # through the jittered tries below
    if not bool(torch.isfinite(a).all()):
        bad = int((~torch.isfinite(a)).sum())
        raise ValueError(f"{name}: expected finite values, received {bad} NaN/Inf entries")
    exponent = -10 if a.dtype == torch.float64 else -6
    base = 10.0**exponent
    # the floor keeps the first jitter a normal number of a's dtype: a subnormal jitter (a zero
    # matrix's, in float32 ~1e-44) is read as 0 by CPUs / LAPACK builds that flush denormals
    tiny = torch.finfo(a.dtype).tiny / base
    scale = a.diagonal(dim1=-2, dim2=-1).abs().mean(-1, keepdim=True).clamp_min(tiny)
    # per matrix of a batch: only those whose factorisation failed get jitter, each the
    # smallest that works for it (one singular member of a batch raised every member's
    # variances, draws and densities by the jitter it needed, so a posterior's numbers
    # depended on what it was batched with)
    pending = info != 0  # [*batch]
    jit = torch.zeros_like(scale)  # [*batch, 1]: 0 for the members factorised without it
    relative = 0.0
    for k in range(max_tries):
        trial = torch.where(pending[..., None], (base * 10**k) * scale, jit)
        # a + trial I with the jitter added to a copy's diagonal alone (the same numbers as
        # a + trial * eye: off the diagonal a + 0), the failed try's factor freed first: an
        # identity, its scaled copy, the sum, two factors and a mask were held at once, 5.2
        # [n, n] arrays above the input, now 3.4 (4.0 GB -> 2.6 GB at n = 10^4 in float64)
        del l
        shifted = a.clone()
        shifted.diagonal(dim1=-2, dim2=-1).add_(trial)
        l, info = torch.linalg.cholesky_ex(shifted)
        del shifted
        fixed = pending & (info == 0)
        if bool(fixed.any()):
            # 10.0 ** (exponent + k), not base * 10**k: float32's third try read
            # 9.999999999999999e-05, below DRAW_JITTER (1e-4), and its draws did not warn
            relative = 10.0 ** (exponent + k)
        jit = torch.where(fixed[..., None], trial, jit)
        pending = pending & (info != 0)
        if not bool(pending.any()):
            # every member's factor is that of its own a + jit I (the settled ones again)
            # detached: a jitter scaled by a differentiable matrix's diagonal warned in float()
            return l, float(jit.detach().max()), relative
    jit = trial
    eig_min = float(torch.linalg.eigvalsh(a.detach()).min())
    raise ValueError(
        f"{name}: expected a positive semi-definite matrix, received one with smallest "
        f"eigenvalue {eig_min:.3e} (Cholesky failed even with jitter "
        f"{float(jit.detach().max()):.1e})"
    )


def lstsq_any_rank(a: Tensor, b: Tensor) -> Tensor:
    r"""The minimum-norm least-squares solution ``x`` ``[k, r]`` of :math:`a x \approx b`
    (``a [m, k]``, ``b [m, r]``), right for rank-deficient ``a`` on every device.

    LAPACK's ``gelsd`` (SVD; singular values below :math:`\epsilon \max(m, k)` of the largest
    count as zero), on the CPU: ``torch.linalg.lstsq``'s CPU default ``gelsy`` can return a
    wrong rank and a non-solution for rank-deficient ``a`` (its pivot array is not zeroed,
    pytorch#92537), and CUDA's only driver ``gels`` assumes full rank. Off the CPU, a reduced
    QR :math:`a = QR` on the device first (tall ``a``), so only :math:`R x \approx Q^H b`
    (same minimisers) travels to the CPU; the solution is moved back.
    """
    if a.device.type == "cpu":
        return torch.linalg.lstsq(a, b, rcond=_lstsq_rcond(a), driver="gelsd").solution
    return _lstsq_qr_gelsd(a, b)


def _lstsq_rcond(a: Tensor) -> float:
    return torch.finfo(a.dtype).eps * max(a.shape[-2:])


def _lstsq_qr_gelsd(a: Tensor, b: Tensor) -> Tensor:
    """:func:`lstsq_any_rank` off the CPU: QR on ``a``'s device, ``gelsd`` on the CPU."""
    rcond = _lstsq_rcond(a)
    if a.shape[-2] > a.shape[-1]:
        q, r = torch.linalg.qr(a)
        a, b = r, q.mH @ b
    out = torch.linalg.lstsq(a.cpu(), b.cpu(), rcond=rcond, driver="gelsd").solution
    return out.to(a.device)


def kron_matvec(factors: list[Tensor], z: Tensor) -> Tensor:
    r"""Compute :math:`(A_1 \otimes \dots \otimes A_m) z` without forming the product.

    ``factors[i]`` is ``[p_i, q_i]``; ``z`` is ``[*, q_1 * ... * q_m]``; returns
    ``[*, p_1 * ... * p_m]``. Cost :math:`O(\sum_i p_i \prod_j q_j)`.
    """
    lead = z.shape[:-1]
    qs = [f.shape[-1] for f in factors]
    if z.ndim == 0 or z.shape[-1] != math.prod(qs):
        raise ValueError(
            f"z: expected last dim {math.prod(qs)} (the product of the factors' column counts "
            f"{qs}), received shape {tuple(z.shape)}"
        )
    x = z.reshape(*lead, *qs)
    nl = len(lead)
    for i, f in enumerate(factors):
        x = torch.movedim(torch.tensordot(x, f, dims=([nl + i], [1])), -1, nl + i)
    # the size spelled out: -1 is ambiguous for no vectors (sample((0,)) of a Kronecker one)
    return x.reshape(*lead, math.prod(f.shape[0] for f in factors))


def pcg(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    precond: Callable[[Tensor], Tensor] | None = None,
    x0: Tensor | None = None,
    tol: float = 1e-8,
    maxiter: int = 500,
    columns: bool = False,
) -> tuple[Tensor, int, float]:
    r"""Preconditioned conjugate gradients for a symmetric positive-definite :math:`Hx = b`.

    ``matvec`` and ``precond`` (an approximation of :math:`H^{-1}`; ``None`` = identity) act on
    tensors shaped like ``b``. With ``columns=False`` ``b`` (any shape) is one system; with
    ``columns=True`` ``b`` is ``[n, k]``, ``k`` independent systems sharing ``matvec`` (inner
    products over dim 0). Stops when :math:`\lVert b - Hx\rVert \le \mathrm{tol}\,
    \lVert b\rVert` (every column) after at most ``maxiter`` iterations, or on a
    non-positive curvature :math:`p^\top Hp \le 0` (breakdown in floating point), keeping the
    last iterate. With ``columns=True`` a breakdown is per column: that column keeps its last
    iterate and stops updating while the others go on (to ``tol``, ``maxiter``, or their own
    breakdown). Returns ``(x, iterations, relative residual)``: the iterations taken (matrix
    products with the search directions, shared by the columns) and the largest relative
    residual over the columns (a broken-down column's at its last iterate), the residual being
    the recursively updated one.

    Written out (rather than ``linear_operator.utils.linear_cg``) so that the stopping rule and
    the iteration count are exact and visible: callers report them, and no tolerance or
    iteration cap is set by a global setting.
    """
    x, it, rel, _ = pcg_with_breakdown(
        matvec, b, precond=precond, x0=x0, tol=tol, maxiter=maxiter, columns=columns
    )
    return x, it, rel


def pcg_with_breakdown(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    precond: Callable[[Tensor], Tensor] | None = None,
    x0: Tensor | None = None,
    tol: float = 1e-8,
    maxiter: int = 500,
    columns: bool = False,
) -> tuple[Tensor, int, float, Tensor]:
    r""":func:`pcg`, also returning which systems stopped on a breakdown: ``(x, iterations,
    relative residual, broken)``, ``broken`` a bool tensor ``[k]`` (``columns=True``, one per
    column of ``b [n, k]``) or ``[]`` (one system), true where :math:`p^\top Hp \le 0` stopped
    the system (more iterations would not move it) rather than ``tol`` or ``maxiter``."""
    if not isinstance(b, Tensor) or not b.is_floating_point():
        got = b.dtype if isinstance(b, Tensor) else type(b).__name__
        raise TypeError(f"b: expected a floating-point tensor, received {got}")
    tol = check_real("tol", tol, minimum=0.0)
    maxiter = check_int("maxiter", maxiter, minimum=0)
    if columns and b.ndim != 2:
        raise ValueError(
            f"b: expected [n, k] (k systems) with columns=True, received shape {tuple(b.shape)}"
        )
    if x0 is not None and (not isinstance(x0, Tensor) or x0.shape != b.shape):
        got = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"x0: expected the shape of b {tuple(b.shape)}, received {got}")
    dims = 0 if columns else tuple(range(b.ndim))

    def dot(u: Tensor, v: Tensor) -> Tensor:
        return (u * v).sum(dims)

    # floor representable in b's dtype (1e-300 is 0 in float32: 0/0 = NaN for a zero rhs)
    bnorm = dot(b, b).sqrt().clamp_min(max(1e-300, torch.finfo(b.dtype).tiny))
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b.clone() if x0 is None else b - matvec(x)
    rel = float((dot(r, r).sqrt() / bnorm).max())
    it = 0
    if rel <= tol:
        return x, it, rel, torch.zeros_like(bnorm, dtype=torch.bool)
    z = precond(r) if precond is not None else r
    p = z.clone()
    rz = dot(r, z)
    # columns that broke down (p^T H p <= 0): they keep their last iterate and stop updating
    # (one such column stopped every column of the block, the others unconverged)
    broken = torch.zeros_like(rz, dtype=torch.bool)
    while it < maxiter:
        hp = matvec(p)
        php = dot(p, hp)
        active = rz.abs() > 0  # columns already solved exactly have r = 0, p = 0
        broken = broken | ((php <= 0) & active)
        # stop once no column can move: each broke down or is solved exactly. A NaN column
        # (rz NaN, neither) goes on, and its iterate turns NaN (0 * NaN) for callers to see
        if bool((broken | (rz == 0)).all()):
            break
        live = active & ~broken
        alpha = torch.where(live, rz / torch.where(live, php, torch.ones_like(php)), 0.0)
        x = x + alpha * p
        r = r - alpha * hp
        it += 1
        res = dot(r, r).sqrt() / bnorm
        rel = float(res.max())
        if bool(((res <= tol) | broken).all()):
            break
        z = precond(r) if precond is not None else r
        rz_new = dot(r, z)
        beta = rz_new / torch.where(rz.abs() > 0, rz, torch.ones_like(rz))
        rz = rz_new
        # a broken-down column's direction is zero: H p = 0 there, no update, nothing grows
        p = torch.where(broken, 0.0, z + beta * p)
    return x, it, rel, broken
