r"""Structured square roots, solves and log-determinants of covariance operators.

The dense helpers it builds on (the jittered PSD Cholesky, the Kronecker matrix-vector
product) are in :mod:`bayesphys._linalg`.

The shared core never densifies a structured covariance to sample from it or to take its
marginals. This module dispatches on the ``linear_operator`` type:

=====================================  ==========================================================
operator                               root :math:`L` with :math:`L L^\top = \Sigma`
=====================================  ==========================================================
``DiagLinearOperator``                 :math:`\operatorname{diag}(\sqrt{d})`
``LowRankRootAddedDiagLinearOperator`` :math:`[R,\ \operatorname{diag}(\sqrt{d})]` (``N x (k+N)``)
``KroneckerProductLinearOperator``     :math:`L_1 \otimes \dots \otimes L_m`, per-factor Cholesky
``KroneckerProductAddedDiagLinearOperator`` (constant diagonal)
                                       :math:`(\otimes Q_i)(\otimes\Lambda_i + \sigma^2)^{1/2}`
dense / anything else                  Cholesky in the operator's dtype (float64 advised)
=====================================  ==========================================================

All Kronecker products use the row-major (C-order) convention of ``torch.kron``: the last
factor varies fastest, matching ``field.reshape(n_1, ..., n_m)``.
"""

from __future__ import annotations

import math
import warnings

import torch
from linear_operator import to_dense, to_linear_operator
from linear_operator.operators import (
    ConstantDiagLinearOperator,
    DiagLinearOperator,
    KroneckerProductAddedDiagLinearOperator,
    KroneckerProductLinearOperator,
    LinearOperator,
    LowRankRootAddedDiagLinearOperator,
)
from torch import Tensor

from ._linalg import _psd_cholesky_jitter, kron_matvec, psd_cholesky
from ._stack import user_stacklevel
from ._warning_types import BayesphysRuntimeWarning, BayesphysUserWarning

__all__ = [
    "StructuredRoot",
    "structured_root",
    "structured_parts",
    "diagonal",
    "DRAW_JITTER",
]


def diagonal(cov: LinearOperator) -> Tensor:
    """Diagonal ``[*batch, N]`` of a covariance operator, using its structure."""
    if isinstance(cov, LowRankRootAddedDiagLinearOperator):
        root = to_dense(cov._linear_op.root)
        return root.pow(2).sum(-1) + cov._diag_tensor.diagonal()
    return cov.diagonal()


class StructuredRoot:
    r"""A square root :math:`L` (``N x M``) of a covariance, with ``apply(z)`` = :math:`L z`.

    ``apply`` maps base draws ``[*, *batch, M]`` to ``[*, *batch, N]``; ``logdet`` and
    ``solve`` give :math:`\log|\Sigma|` and :math:`\Sigma^{-1} v` for Gaussian log densities.
    A root whose Cholesky factor needed jitter warns (``RuntimeWarning``), once per root, at
    its first ``logdet`` or ``solve``, or at its first ``apply`` when the jitter is at least
    ``DRAW_JITTER`` (1e-4) of the mean variance.
    """

    def __init__(self, apply, base_dim: int, logdet, solve):
        self.apply = apply
        self.base_dim = base_dim
        self.logdet = logdet
        self.solve = solve
        # whether the "jittered covariance" warning was given: once per root, not once per
        # solve and once per log determinant of every log density
        self.jitter_warned = False
        # whether a root factorised without jitter was checked for singularity to working
        # precision (a few triangular solves, once)
        self.singular_checked = False


def _cols(a: Tensor, z: Tensor):
    """``z [*lead, *batch, m]`` -> ``([*batch, m, L], undo)``: the leading (sample) dims of
    ``z`` beyond ``a``'s batch dims become matrix columns, so that ``a`` is not broadcast
    (materialised) over them; ``undo`` maps ``[*batch, n, L]`` back to ``[*lead, *batch, n]``."""
    extra = z.ndim - (a.ndim - 1)
    if extra <= 0:
        return z.unsqueeze(-1), lambda y: y.squeeze(-1)
    lead = z.shape[:extra]
    zz = z.reshape(math.prod(lead), *z.shape[extra:]).movedim(0, -1)  # -1: ambiguous if empty
    # contiguous, as the broadcast product was: a strided result made numpy sum the draws in
    # another order (last-bit differences between in-memory and reloaded exports)
    return zz, lambda y: y.movedim(-1, 0).reshape(*lead, *y.shape[:-2], y.shape[-2]).contiguous()


DRAW_JITTER = 1e-4
"""Jitter, relative to the mean variance, from which draws through a jittered factor warn:
the noise it adds has a standard deviation of at least 1 % of the root-mean-square one. Below
it (every jitter float64 reaches, 1e-10 to 1e-5, and float32's first two, 1e-6 and 1e-5) draws
are silent, as for any sampler that adds a nugget; log densities and solves warn at any jitter
(a singular covariance has no density)."""


def _warn_jittered(root: StructuredRoot, name: str, jitter: float) -> None:
    """Warn, once per ``root``, that a density, a solve or a draw is that of a jittered
    covariance (a singular one has no density)."""
    if not jitter or root.jitter_warned:
        return
    warnings.warn(
        f"{name}: singular to working precision (its Cholesky factor needed jitter "
        f"{jitter:.1e} on the diagonal); log densities, solves and draws are those of the "
        "jittered matrix: each variance is raised by the jitter, which is relative to the mean "
        "variance, so a coordinate of much smaller variance than the mean can be widened "
        "noticeably. Add a nugget (a small multiple of the identity, or scaled per coordinate) "
        "to it for a density of your own choosing",
        BayesphysRuntimeWarning,
        stacklevel=user_stacklevel(),
    )
    # set once the warning went through: under an "error" filter every call still raises
    root.jitter_warned = True


def _smallest_eigenvalue_bound(chol: Tensor, iters: int = 8) -> Tensor:
    r"""An upper bound ``[*batch]`` on the smallest eigenvalue of :math:`LL^\top` (``chol``
    ``[*batch, n, n]``), by inverse iteration from a fixed start: :math:`\lVert v\rVert /
    \lVert (LL^\top)^{-1} v\rVert` for any :math:`v \ne 0` is at least :math:`\lambda_{\min}`
    and approaches it; ``iters`` triangular solve pairs, :math:`O(n^2)` each."""
    with torch.no_grad():
        c = chol.detach()
        n = c.shape[-1]
        # a fixed, non-symmetric start (cosines of incommensurate frequencies): deterministic,
        # and not orthogonal to a near-null direction such as a mass row or a constant mode
        k = torch.arange(1, n + 1, dtype=c.dtype, device=c.device)
        v = torch.cos(k * 1.7320508 + 0.5) + 1.0 / k
        v = (v / v.norm()).expand(*c.shape[:-1]).unsqueeze(-1)
        bound = None
        for _ in range(iters):
            w = torch.cholesky_solve(v, c)
            norm = w.norm(dim=(-2, -1))
            ratio = 1.0 / norm  # ||v|| = 1
            # fmin: an overflowing solve (a pivot of ~0) gives a bound of 0 and NaN after it
            bound = ratio if bound is None else torch.fmin(bound, ratio)
            v = w / norm[..., None, None]
        return bound


def _warn_singular(root: StructuredRoot, name: str, chols: list[Tensor]) -> None:
    """Warn, once per ``root``, that a covariance factorised without jitter is singular to
    working precision (smallest eigenvalue below ``n eps`` of its largest variance): its log
    densities and solves are set by round-off along its near-null directions, as a jittered
    one's are by the jitter (which warns; whether a covariance needs the jitter is itself
    decided by round-off). ``chols``: the factor, or a Kronecker product's factors' factors
    (the product is singular to working precision when one of them is)."""
    if root.jitter_warned or root.singular_checked:
        return
    found = []  # (relative smallest eigenvalue, n eps) of the singular ones
    for chol in chols:
        n, eps = chol.shape[-1], torch.finfo(chol.dtype).eps
        with torch.no_grad():
            top = chol.detach().pow(2).sum(-1).amax(-1)  # the largest variance (diagonal)
            # the largest variance is at most the largest eigenvalue: a conservative round-off
            rel = _smallest_eigenvalue_bound(chol) / top.clamp_min(torch.finfo(chol.dtype).tiny)
        if bool((rel <= n * eps).any()):
            found.append((float(rel.min()), n * eps))
    if found:
        worst, floor = min(found)
        warnings.warn(
            f"{name}: singular to working precision (smallest eigenvalue about {worst:.1e} of "
            f"its largest variance, below the round-off n eps = {floor:.1e}, e.g. a covariance "
            "conditioned exactly on a constraint); log densities and solves along its "
            "near-null directions are set by round-off. Add a nugget (a small "
            "multiple of the identity, or scaled per coordinate) to it for a density of your "
            "own choosing",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
        root.jitter_warned = True
    root.singular_checked = True


def _dense_root(cov: LinearOperator | Tensor, name: str) -> StructuredRoot:
    a = to_dense(cov)
    chol, jitter, relative = _psd_cholesky_jitter(a, name)

    def apply(z):
        if relative >= DRAW_JITTER:  # draws are those of the jittered matrix too
            _warn_jittered(root, name, jitter)
        zz, undo = _cols(chol, z)
        return undo(chol @ zz)

    def logdet():
        _warn_jittered(root, name, jitter)
        if not jitter:
            _warn_singular(root, name, [chol])
        return 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def solve(v):
        _warn_jittered(root, name, jitter)
        if not jitter:
            _warn_singular(root, name, [chol])
        vv, undo = _cols(chol, v)
        return undo(torch.cholesky_solve(vv, chol))

    root = StructuredRoot(apply, a.shape[-1], logdet, solve)
    return root


def _diag_root(d: Tensor, name: str) -> StructuredRoot:
    if bool((d < 0).any()):
        raise ValueError(
            f"{name}: diagonal covariance has negative entries (min {float(d.min()):.3e})"
        )
    s = d.sqrt()

    def positive() -> Tensor:
        # a zero variance pins its coordinate: no density (log det -inf, v / 0); sampling works
        if bool((d == 0).any()):
            raise ValueError(
                f"{name}: {int((d == 0).sum())} diagonal variances are exactly 0 (pinned "
                "coordinates): the Gaussian is degenerate and has no density there; give them a "
                "small positive variance (a nugget) or leave them out"
            )
        return d

    return StructuredRoot(
        lambda z: s * z,
        d.shape[-1],
        lambda: positive().log().sum(-1),
        lambda v: v / positive(),
    )


def _lowrank_root(cov: LowRankRootAddedDiagLinearOperator, name: str) -> StructuredRoot:
    r = to_dense(cov._linear_op.root)  # [*batch, N, k]
    d = cov._diag_tensor.diagonal()  # [*batch, N]
    if bool((d <= 0).any()):
        raise ValueError(
            f"{name}: low-rank-plus-diagonal covariance needs a positive diagonal, received min "
            f"{float(d.min()):.3e}"
        )
    k = r.shape[-1]
    # Woodbury: (D + R R^T)^{-1} = D^{-1} - D^{-1} R C^{-1} R^T D^{-1}, C = I + R^T D^{-1} R
    rd = r / d.unsqueeze(-1)
    cap = torch.eye(k, dtype=r.dtype, device=r.device) + r.mT @ rd
    cap_chol = psd_cholesky(cap, name)

    def apply(z):
        zz, undo = _cols(r, z[..., :k])
        return undo(r @ zz) + d.sqrt() * z[..., k:]

    def logdet():
        return d.log().sum(-1) + 2 * cap_chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def solve(v):
        vv, undo = _cols(rd, v)
        w = torch.cholesky_solve(rd.mT @ vv, cap_chol)
        return v / d - undo(rd @ w)

    return StructuredRoot(apply, k + d.shape[-1], logdet, solve)


def _kron_root(factors: list[Tensor], name: str) -> StructuredRoot:
    done = [
        _psd_cholesky_jitter(f, f"{name} (Kronecker factor {i})") for i, f in enumerate(factors)
    ]
    chols = [c for c, _, _ in done]
    jitter = max(j for _, j, _ in done)
    relative = max(r for _, _, r in done)
    sizes = [f.shape[-1] for f in factors]
    n = math.prod(sizes)

    def apply(z):
        if relative >= DRAW_JITTER:  # draws are those of the jittered factors too
            _warn_jittered(root, name, jitter)
        return kron_matvec(chols, z)

    def logdet():
        _warn_jittered(root, name, jitter)
        if not jitter:
            _warn_singular(root, name, chols)
        return sum((n // s) * 2 * c.diagonal().log().sum() for s, c in zip(sizes, chols))

    inv: list[Tensor] = []  # the factors' inverses, formed at the first solve only

    def solve(v):
        _warn_jittered(root, name, jitter)
        if not jitter:
            _warn_singular(root, name, chols)
        # inverses formed without autograd (a solve under no_grad) are formed again when
        # gradients are wanted: reused, they dropped the solve's share of the gradient
        # (log_prob's gradient was that of its log-determinant alone)
        wants_graph = torch.is_grad_enabled() and any(c.requires_grad for c in chols)
        if inv and wants_graph and not inv[0].requires_grad:
            inv.clear()
        if not inv:
            eye = [torch.eye(s, dtype=c.dtype, device=c.device) for s, c in zip(sizes, chols)]
            inv.extend(torch.cholesky_solve(e, c) for e, c in zip(eye, chols))
        return kron_matvec(inv, v)

    root = StructuredRoot(apply, n, logdet, solve)
    return root


def _round_off_zero(eigenvalues: list[Tensor]) -> Tensor:
    r"""Eigenvalues of :math:`\otimes_i A_i` (``[prod n_i]``, C order) from those of the factors
    (``[n_i]`` each), each factor's values of magnitude at most :math:`n_i\,\epsilon\,
    \max|e_i|` (round-off of a singular factor's zero eigenvalues) set to 0 first."""
    lam = None
    for e in eigenvalues:
        tol = max(e.shape[-1], 1) * torch.finfo(e.dtype).eps * e.abs().amax(-1, keepdim=True)
        e = torch.where(e.abs() <= tol, torch.zeros_like(e), e)
        lam = e if lam is None else torch.kron(lam, e)
    return lam


def _warn_tied_eigenvalues(name: str, factors: list[Tensor], eigenvalues: list[Tensor]) -> None:
    """Warn where autograd records through a Kronecker factor ``[n_i, n_i]`` whose
    eigenvalues above round-off repeat (e.g. a multiple of the identity): the backward of
    ``torch.linalg.eigh`` divides by the gaps between them, so the gradients in that factor
    come out NaN, far from the cause."""
    if not torch.is_grad_enabled():
        return
    for i, (f, e) in enumerate(zip(factors, eigenvalues)):
        if not f.requires_grad or e.shape[-1] < 2:
            continue
        tol = e.shape[-1] * torch.finfo(e.dtype).eps * e.abs().amax(-1, keepdim=True)
        gaps = e[..., 1:] - e[..., :-1]  # ascending
        if bool(((gaps <= tol) & (e[..., 1:].abs() > tol)).any()):
            warnings.warn(
                f"{name}: Kronecker factor {i} requires grad and has repeated eigenvalues (e.g. a "
                "multiple of the identity): the Kronecker-plus-diagonal root is built from "
                "each factor's eigendecomposition, whose backward (torch.linalg.eigh) divides "
                "by the gaps between eigenvalues, so gradients in this factor will be NaN. For "
                "exact gradients pass the covariance densely (covariance.to_dense()), or without "
                "the added diagonal (a KroneckerProductLinearOperator, rooted by Cholesky)",
                BayesphysUserWarning,
                stacklevel=user_stacklevel(),
            )


def _kron_added_diag_root(cov: KroneckerProductAddedDiagLinearOperator, name: str):
    factors = [to_dense(f) for f in cov._linear_op.linear_ops]
    eigs = [torch.linalg.eigh(0.5 * (f + f.mT)) for f in factors]
    _warn_tied_eigenvalues(name, factors, [e.eigenvalues for e in eigs])
    # the product's eigenvalues are the products of the factors' (signs too); each factor's
    # eigenvalues within its round-off of 0 (n_i eps max|e_i|) are 0 to working precision: a
    # smooth kernel factor's (long length scale, fine grid) came back as about -1e-6 of its
    # largest in float32, and their products with the other factors' largest made a positive
    # definite K + d I (d > 0 the nugget) read as indefinite and refused
    lam = _round_off_zero([e.eigenvalues for e in eigs])
    # K + d I = Q (lam + d) Q^T exactly for any symmetric K (its sign included): only the sum
    # must be positive definite, as for a dense covariance
    d = cov._diag_tensor.diagonal()[..., 0]
    total = lam + d
    if bool((total <= 0).any()):
        raise ValueError(
            f"{name}: Kronecker-plus-diagonal covariance is not positive definite (smallest "
            f"eigenvalue {float(total.min()):.3e} with the constant diagonal "
            f"{float(d.min()):.3e}); its Kronecker part has eigenvalues below -{float(d.min()):.1e}"
            " beyond round-off: check that the factors are positive semi-definite (or that "
            "their product is) and raise the constant diagonal"
        )
    qs = [e.eigenvectors for e in eigs]
    qts = [q.mT for q in qs]

    def apply(z):
        return kron_matvec(qs, total.sqrt() * z)

    def logdet():
        return total.log().sum()

    def solve(v):
        return kron_matvec(qs, kron_matvec(qts, v) / total)

    return StructuredRoot(apply, total.shape[-1], logdet, solve)


def structured_parts(cov: LinearOperator) -> list[tuple[str, Tensor, bool]] | None:
    """The small pieces of a covariance that :func:`structured_root` handles without forming
    the ``N x N`` matrix, as ``(label, tensor, square)`` for validation (``square``: a factor
    that must be symmetric); ``None`` for a covariance without such structure."""
    if isinstance(cov, LowRankRootAddedDiagLinearOperator):
        return [
            ("low-rank root", to_dense(cov._linear_op.root), False),
            ("diagonal", cov._diag_tensor.diagonal(), False),
        ]
    if isinstance(cov, KroneckerProductLinearOperator) and cov.batch_shape == torch.Size():
        return [(f"Kronecker factor {i}", to_dense(f), True) for i, f in enumerate(cov.linear_ops)]
    if (
        isinstance(cov, KroneckerProductAddedDiagLinearOperator)
        and cov.batch_shape == torch.Size()
        and isinstance(cov._diag_tensor, ConstantDiagLinearOperator)
    ):
        parts = [
            (f"Kronecker factor {i}", to_dense(f), True)
            for i, f in enumerate(cov._linear_op.linear_ops)
        ]
        return [*parts, ("diagonal", cov._diag_tensor.diagonal(), False)]
    return None


def structured_root(cov: LinearOperator | Tensor, name: str = "covariance") -> StructuredRoot:
    """Pick the cheapest exact square root for ``cov`` (see the module table)."""
    if isinstance(cov, Tensor):
        cov = to_linear_operator(cov)
    if isinstance(cov, DiagLinearOperator):  # includes ConstantDiag
        return _diag_root(cov.diagonal(), name)
    if isinstance(cov, LowRankRootAddedDiagLinearOperator):
        return _lowrank_root(cov, name)
    if isinstance(cov, KroneckerProductLinearOperator) and cov.batch_shape == torch.Size():
        return _kron_root([to_dense(f) for f in cov.linear_ops], name)
    if (
        isinstance(cov, KroneckerProductAddedDiagLinearOperator)
        and cov.batch_shape == torch.Size()
        and isinstance(cov._diag_tensor, ConstantDiagLinearOperator)
    ):
        return _kron_added_diag_root(cov, name)
    return _dense_root(cov, name)
