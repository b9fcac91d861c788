r"""Grid factors of the product kernel and the GP differentiation operators.

For each dimension :math:`j` with collocation points :math:`X_j` (``[n_j]``):

* :math:`C_j = k_j(X_j, X_j) + \epsilon I = L_j L_j^\top` (per-factor jitter, as in the paper);
* :math:`C_j^{(o)} = [k_j^{(o)}(x_a - x_b)]` for derivative order :math:`o \in \{0, .., 4\}`
  (:class:`LinearPDEOperator`; 2 for Poisson and Allen-Cahn, 1 for advection), without jitter;
* the GP differentiation matrix :math:`D_j = C_j^{(o)} C_j^{-1}`: derivatives of the
  conditional-mean interpolant :math:`m(x) = k(x, X) C^{-1} U` at the grid points;
* the whitened operator :math:`B_j = L_j^{-1} C_j^{(o)} L_j^{-\top} = Q_j \Lambda_j Q_j^\top`
  (symmetric for even :math:`o`), so that :math:`D_j = R_j \Lambda_j R_j^{-1}` with
  :math:`R_j = L_j Q_j`.

A linear operator on the grid is :math:`\mathcal A = \sum_j c_j\, (I \otimes \dots \otimes D_j
\otimes \dots \otimes I) + c_0 I` (a Kronecker sum); in the :math:`R`-basis it is diagonal,
:math:`\Lambda = \sum_j c_j \lambda_j \oplus \dots + c_0`, which makes the Sylvester-type solves
of :mod:`bayesphys.gp_pde.solve` exact in :math:`O(\sum_j n_j^3 + M \sum_j n_j)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_bool, check_increasing, check_int, check_real, did_you_mean
from .._device import AxisLike, as_tensor, check_on_device
from ._errors import NumericalFailure
from .kernels import SpectralMixture1d

__all__ = [
    "LinearPDEOperator",
    "Factor",
    "build_factors",
    "with_eigen",
    "apply_operator",
    "detach_factors",
    "check_factor_count",
]


@dataclass(frozen=True)
class LinearPDEOperator:
    r""":math:`\mathcal A u = \sum_j c_j \partial_{x_j}^{o_j} u + c_0 u` (plus :math:`u^3` if
    ``cubic``).

    Poisson: ``orders=(2,..)``, ``coefs=(1,..)``; Allen-Cahn adds ``c0=-1`` and ``cubic=True``
    (:math:`\Delta u + u^3 - u`); advection ``orders=(1, 1)``, ``coefs=(beta, 1)``.
    One order :math:`o_j \in \{0, .., 4\}` (the kernel's closed-form derivatives) and one finite
    coefficient :math:`c_j` per dimension, ``len(orders) == len(coefs) >= 1``; ``c0`` finite.
    """

    orders: tuple[int, ...]
    coefs: tuple[float, ...]
    c0: float = 0.0
    cubic: bool = False

    def __post_init__(self) -> None:
        seqs = []
        for name in ("orders", "coefs"):
            value = getattr(self, name)
            try:  # an int failed with "'int' object is not iterable"
                seqs.append(tuple(value))
            except TypeError:
                raise TypeError(
                    f"{name}: expected a sequence with one entry per dimension, e.g. (2, 2), "
                    f"received {type(value).__name__} {value!r}"
                ) from None
        orders, coefs = seqs
        if not orders or len(orders) != len(coefs):
            raise ValueError(
                "orders, coefs: expected one derivative order and one coefficient per dimension "
                f"(equal lengths >= 1), received {len(orders)} orders and {len(coefs)} "
                "coefficients"
            )
        orders = tuple(check_int("orders", o, minimum=0) for o in orders)
        if max(orders) > 4:
            raise ValueError(
                f"orders: expected derivative orders in 0..4 (the kernel's closed forms), "
                f"received {orders}"
            )
        object.__setattr__(self, "orders", orders)
        object.__setattr__(self, "coefs", tuple(check_real("coefs", c) for c in coefs))
        object.__setattr__(self, "c0", check_real("c0", self.c0))
        # "no" is truthy: it switched the cubic term on
        object.__setattr__(self, "cubic", check_bool("cubic", self.cubic))

    @property
    def dim(self) -> int:
        """``d``, the number of grid dimensions (one derivative order each)."""
        return len(self.orders)

    @property
    def symmetric(self) -> bool:
        """Whether every derivative order is even (a real eigenbasis; odd orders, advection,
        give a complex one)."""
        return all(o % 2 == 0 for o in self.orders)

    @classmethod
    def for_equation(cls, equation: str, dim: int, beta: float = 1.0) -> LinearPDEOperator:
        r"""The operator of a named equation on a ``dim``-dimensional grid: ``"poisson"``
        :math:`\Delta u`; ``"allencahn"`` :math:`\Delta u - u + u^3` (cubic); ``"advection"``
        (``dim = 2``, axes ``(x, t)``) :math:`\beta\,\partial_x u + \partial_t u`."""
        if equation == "poisson":
            return cls((2,) * dim, (1.0,) * dim)
        if equation == "allencahn":
            return cls((2,) * dim, (1.0,) * dim, c0=-1.0, cubic=True)
        if equation == "advection":
            if dim != 2:
                raise ValueError(f"equation: advection needs a 2-D grid (x, t), received dim {dim}")
            return cls((1, 1), (check_real("beta", beta), 1.0))
        raise ValueError(
            f"equation: expected 'poisson', 'allencahn' or 'advection', received {equation!r}"
            f"{did_you_mean(equation, ('poisson', 'allencahn', 'advection'))}"
        )


@dataclass
class Factor:
    """Per-dimension quantities: the grid ``x [n]``, the eigenvalues ``lam [n]``, the rest
    ``[n, n]``."""

    x: Tensor
    C: Tensor
    L: Tensor
    Cop: Tensor
    D: Tensor
    lam: Tensor | None = None
    Q: Tensor | None = None
    R: Tensor | None = None
    Rinv: Tensor | None = None


def _chol(c: Tensor, j: int) -> Tensor:
    L, info = torch.linalg.cholesky_ex(c)
    if bool(info.any()):
        hint = "increase jitter" if c.dtype == torch.float64 else "increase jitter, or use float64"
        raise NumericalFailure(
            f"kernel: the Gram factor of dimension {j} is not positive definite in "
            f"{c.dtype} ({hint})"
        )
    return L


def check_factor_count(factors: list, op: LinearPDEOperator, name: str = "factors") -> None:
    """``ValueError`` unless ``factors`` holds one entry per dimension of ``op`` (a shorter or
    longer list was truncated to the shorter of the two, dropping terms of the operator);
    ``TypeError`` unless it is a list, tuple or ``nn.ModuleList`` (``len`` of another failed
    unnamed)."""
    if not isinstance(factors, (list, tuple, torch.nn.ModuleList)):
        raise TypeError(
            f"{name}: expected a list with one entry per dimension of the operator, received "
            f"{type(factors).__name__}"
        )
    if len(factors) != op.dim:
        raise ValueError(
            f"{name}: expected {op.dim} (one per dimension of the operator), received "
            f"{len(factors)}"
        )


def build_factors(
    kernels: list[SpectralMixture1d],
    axes: list[AxisLike] | tuple[AxisLike, ...],
    op: LinearPDEOperator,
    *,
    jitter: float = 1e-6,
    eigen: bool = False,
) -> list[Factor]:
    r"""Per-dimension factors, one kernel and one axis ``[n_j]`` per dimension of ``op``;
    ``eigen=True`` adds the whitened eigenbasis (:func:`with_eigen`: real for even orders,
    complex for odd ones). ``jitter >= 0`` is added to each Gram diagonal.

    Each axis: a 1-D tensor (or an array or a sequence of numbers) of ``n_j >= 2`` finite,
    strictly increasing coordinates on its kernel's device; it is taken in the kernel's dtype.
    Anything else is refused naming ``axes[j]``: the solves read an axis's first and last
    entries as its boundary faces, so an unsorted one put the boundary values at interior
    points, a repeated point made the Gram singular, a NaN failed inside torch and a list of
    numbers failed with an ``AttributeError``.

    Returns one :class:`Factor` per dimension: ``x [n_j]``, ``C``, ``L``, ``Cop``, ``D``
    ``[n_j, n_j]`` (differentiable in the kernels' parameters). These are the inputs of
    :class:`~bayesphys.gp_pde.DenseSolve`, :func:`~bayesphys.gp_pde.objective` and, with
    ``eigen=True``, :class:`~bayesphys.gp_pde.KronSolve`.

    Example
    -------
    >>> import torch
    >>> from bayesphys.gp_pde import KronSolve, LinearPDEOperator, SpectralMixture1d, build_factors
    >>> op = LinearPDEOperator.for_equation("poisson", 1)
    >>> x = torch.linspace(0, 1, 16, dtype=torch.float64)
    >>> k = SpectralMixture1d(2)
    >>> fac = build_factors([k], [x], op, eigen=True, jitter=1e-6)
    >>> KronSolve(fac, op, tau2=1.0, gamma=1.0).shape
    (16,)
    """
    jitter = check_real("jitter", jitter, minimum=0.0)
    check_factor_count(kernels, op, "kernels")
    check_factor_count(axes, op, "axes")
    axes = [_checked_axis(f"axes[{j}]", a, k) for j, (a, k) in enumerate(zip(axes, kernels))]
    return grid_factors(kernels, axes, op, jitter=jitter, eigen=eigen)


def _checked_axis(name: str, axis: object, kernel: SpectralMixture1d) -> Tensor:
    """``axis`` as a checked 1-D tensor ``[n >= 2]`` of finite, strictly increasing
    coordinates in ``kernel``'s dtype, on its device (see :func:`build_factors`)."""
    ref = next(iter(kernel.parameters()), None) if isinstance(kernel, torch.nn.Module) else None
    dtype = ref.dtype if ref is not None else None
    if isinstance(axis, Tensor):
        if ref is not None:
            check_on_device(name, axis, ref.device, "its kernel's")
        if axis.is_complex():
            raise TypeError(f"{name}: expected real coordinates, received {axis.dtype}")
        a = as_tensor(name, axis, dtype=dtype or torch.float64, ndim=1)
    else:
        device = ref.device if ref is not None else None
        a = as_tensor(name, axis, dtype=dtype or torch.float64, device=device, ndim=1)
    if a.numel() < 2:
        raise ValueError(f"{name}: expected at least 2 grid points, received {a.numel()}")
    check_increasing(name, a, what="coordinates")
    return a


def grid_factors(
    kernels: list[SpectralMixture1d],
    axes: list[Tensor],
    op: LinearPDEOperator,
    *,
    jitter: float = 1e-6,
    eigen: bool = False,
) -> list[Factor]:
    """:func:`build_factors` without the checks of the axes ``[n_j]`` that read their values
    (no device synchronisation): for axes a solver has checked once, rebuilt every step."""
    jitter = check_real("jitter", jitter, minimum=0.0)
    check_factor_count(kernels, op, "kernels")
    check_factor_count(axes, op, "axes")
    out = []
    for j, (k, x) in enumerate(zip(kernels, axes)):
        n = x.shape[0]
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        C = k.gram(x, n=0) + jitter * eye
        L = _chol(C, j)
        Cop = k.gram(x, n=op.orders[j])
        D = torch.cholesky_solve(Cop.mT, L).mT  # Cop C^{-1}
        out.append(Factor(x, C, L, Cop, D))
    return with_eigen(out, op) if eigen else out


def with_eigen(factors: list[Factor], op: LinearPDEOperator) -> list[Factor]:
    r"""New, detached :class:`Factor` objects for ``factors`` with the whitened eigenbasis of
    :math:`B_j = L_j^{-1}C_j^{(o)}L_j^{-\top}`.

    ``factors``: one :class:`Factor` per dimension of ``op`` (from :func:`build_factors`).
    The new factors' ``x``, ``C``, ``L``, ``Cop`` and ``D`` are the given tensors detached, not
    copies (same memory: an in-place edit of one reaches the other); each gains
    ``lam [n_j]`` and ``Q``, ``R``, ``Rinv`` ``[n_j, n_j]``, which
    :class:`~bayesphys.gp_pde.KronSolve` needs.

    Even order: :math:`B_j` is symmetric, :math:`B_j = Q_j\Lambda_jQ_j^\top` (real).
    Odd order (advection): :math:`B_j` is antisymmetric, so :math:`iB_j` is Hermitian and
    :math:`B_j = Q_j\Lambda_jQ_j^H` with unitary complex :math:`Q_j` and imaginary
    :math:`\Lambda_j`; then ``Q``, ``R = L Q``, ``Rinv = Q^H L^{-1}`` and ``lam`` are complex.
    """
    check_factor_count(factors, op)
    out = []
    for fc, o in zip(factors, op.orders):
        L, Cop = fc.L.detach(), fc.Cop.detach()
        eye = torch.eye(L.shape[0], dtype=L.dtype, device=L.device)
        Linv = torch.linalg.solve_triangular(L, eye, upper=False)
        B = Linv @ Cop @ Linv.mT
        if o % 2 == 0:
            lam, Q = torch.linalg.eigh(0.5 * (B + B.mT))
            R, Rinv = L @ Q, Q.mT @ Linv
        else:
            ctype = torch.complex128 if B.dtype == torch.float64 else torch.complex64
            mu, Q = torch.linalg.eigh(1j * (0.5 * (B - B.mT)).to(ctype))
            lam = -1j * mu.to(ctype)
            R, Rinv = L.to(ctype) @ Q, Q.mH @ Linv.to(ctype)
        out.append(Factor(fc.x, fc.C.detach(), L, Cop, fc.D.detach(), lam, Q, R, Rinv))
    return out


def apply_operator(factors: list[Factor], op: LinearPDEOperator, u: Tensor) -> Tensor:
    r""":math:`\mathcal A U` on the grid via mode products, ``u`` ``[*batch, n_1..n_d]``."""
    check_factor_count(factors, op)
    d = len(factors)
    nb = u.ndim - d
    out = op.c0 * u if op.c0 else torch.zeros_like(u)
    for j, f in enumerate(factors):
        out = out + op.coefs[j] * torch.movedim(
            torch.tensordot(f.D, torch.movedim(u, nb + j, 0), dims=([1], [0])), 0, nb + j
        )
    if op.cubic:
        out = out + u**3
    return out


def detach_factors(factors: list[Factor]) -> list[Factor]:
    """Copies of ``factors`` cut from the autograd graph."""
    return [
        Factor(
            *(
                None if t is None else t.detach()
                for t in (f.x, f.C, f.L, f.Cop, f.D, f.lam, f.Q, f.R, f.Rinv)
            )
        )
        for f in factors
    ]
