r"""Exact elimination of the grid field :math:`U` and the GP-HM objective.

The objective of GP-HM (Fang et al. 2024, poster 2) is

.. math::
   \mathcal J(U, \theta, \tau) = -\log\mathcal N(\mathrm{vec}\,U \mid 0, C)
   - \lambda_b \log\mathcal N(g \mid S U, \tau_1^{-1} I)
   - \log\mathcal N(0 \mid \mathcal A U - f, \tau_2^{-1} W),

with :math:`C = \otimes_j C_j`, :math:`S` the boundary selector, :math:`\mathcal A` the PDE operator
built from GP differentiation matrices (:mod:`.operator`) and residual metric :math:`W = I`
(``weighting="identity"``, the paper's) or :math:`W = C` (``weighting="prior"``, ours: the
residual is measured in the prior's whitened metric, which keeps the problem exactly solvable on
Kronecker grids).

For a linear :math:`\mathcal A` and fixed :math:`(\theta,\tau)`, :math:`\mathcal J` is quadratic in
:math:`U`: with :math:`U = L v` (:math:`L = \otimes L_j`) the minimiser solves

.. math:: \big(I + \tau_2 G^\top G + \gamma (S L)^\top S L\big) v = \tau_2 G^\top \tilde f + \gamma
   (S L)^\top g, \qquad \gamma = \lambda_b\tau_1,

with :math:`G = \mathcal A L,\ \tilde f = f` (identity) or
:math:`G = L^{-1}\mathcal A L,\ \tilde f = L^{-1} f` (prior). With ``weighting="prior"`` and a
Kronecker-sum :math:`\mathcal A`, :math:`G = Q\Lambda Q^\top` is diagonal in :math:`w = Q^\top v`,
so the system is :math:`\mathrm{diag}(1 + \tau_2\Lambda^2) + \gamma B^\top B` with a
rank-:math:`N_b` boundary term, solved exactly by Woodbury with an :math:`N_b \times N_b`
capacitance matrix assembled face by face in :math:`O(n^3)` (:class:`KronSolve`). The same matrix is
the posterior precision of :math:`w`, so the solve also gives the Gaussian posterior of :math:`U`
(perturb-and-solve draws are exact).

Because :math:`U^\star(\theta)` minimises :math:`\mathcal J`, :math:`\nabla_\theta
\mathcal J(U^\star(\theta), \theta) = \partial_\theta \mathcal J(U, \theta)|_{U = U^\star}`
(envelope theorem): :func:`objective` is evaluated at a detached :math:`U^\star`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_int, check_real, check_scalar, did_you_mean
from .._device import check_on_device
from ._inputs import check_grid_tensor
from ._kron import face_values, faces, kron_apply, scatter_faces
from .operator import Factor, LinearPDEOperator, apply_operator, check_factor_count

__all__ = ["KronSolve", "objective"]


def _tri_solve_modes(factors: list[Factor], u: Tensor) -> Tensor:
    r""":math:`L^{-1}\,\mathrm{vec}(U)` mode by mode (lower-triangular solves)."""
    d = len(factors)
    nb = u.ndim - d
    for j, f in enumerate(factors):
        x = torch.movedim(u, nb + j, -1)
        shp = x.shape
        x = torch.linalg.solve_triangular(f.L, x.reshape(-1, shp[-1]).mT, upper=False).mT
        u = torch.movedim(x.reshape(shp), -1, nb + j)
    return u


def check_noise(z: Tensor, dim: int, ref: Tensor, *, same_dtype: bool = False) -> None:
    """``ValueError`` unless ``z`` is a tensor ``[*, dim]`` (the base noise of ``sample_u``) on
    the device of the factor ``ref``; with ``same_dtype``, ``TypeError`` unless it is in
    ``ref``'s dtype (a solver that does not promote). Torch's own errors came from inside a
    triangular solve or a matrix product without naming ``z``."""
    if not isinstance(z, Tensor) or z.ndim < 1 or z.shape[-1] != dim:
        got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"z: expected standard-normal noise of shape [*, {dim}], received {got}")
    check_on_device("z", z, ref.device, "the factors'", what="noise")
    if same_dtype and z.dtype != ref.dtype:
        raise TypeError(f"z: expected dtype {ref.dtype} (the factors'), received {z.dtype}")


def _log_precision(name: str, value: Tensor | float, ref: Tensor) -> Tensor:
    """A log precision as a 0-d tensor: a tensor is used as it is (a graph kept; one of
    another shape broadcast into the objective silently), a number converted to ``ref``'s
    dtype and device (``float.exp`` raised ``AttributeError``)."""
    if isinstance(value, Tensor):
        if value.ndim != 0 or not value.dtype.is_floating_point:
            raise ValueError(
                f"{name}: expected a number or a 0-d floating tensor, received a {value.dtype} "
                f"tensor of shape {tuple(value.shape)}"
            )
        return value
    return torch.tensor(check_real(name, value), dtype=ref.dtype, device=ref.device)


def objective(
    factors: list[Factor],
    op: LinearPDEOperator,
    u: Tensor,
    f: Tensor,
    g: Tensor,
    log_tau_b: Tensor,
    log_tau_pde: Tensor,
    lam_b: float,
    weighting: str = "identity",
) -> Tensor:
    r"""The negative log joint :math:`\mathcal J(U, \theta, \tau)` (constants dropped).

    ``u``, ``f``: grid tensors ``[n_1..n_d]`` (``f`` also flat ``[M]``, as
    :class:`~bayesphys.gp_pde.KronSolve` and :class:`~bayesphys.gp_pde.DenseSolve` take it;
    ``u`` in the factors' dtype); ``g``: boundary values ``[N_b]`` in face order; the shapes are
    checked (``ValueError`` naming the argument: a ``g`` of one value or an ``f`` of one grid line
    was broadcast). ``log_tau_b``, ``log_tau_pde``: numbers or 0-d tensors ``[]``; ``lam_b >= 0``.
    Cost :math:`O(\sum_j n_j^3 + M\sum_j n_j)`; differentiable in the factors and the taus.
    """
    check_factor_count(factors, op)
    shape = tuple(fc.x.shape[0] for fc in factors)
    dev = factors[0].L.device
    log_tau_b = _log_precision("log_tau_b", log_tau_b, factors[0].L)
    log_tau_pde = _log_precision("log_tau_pde", log_tau_pde, factors[0].L)
    lam_b = check_real("lam_b", lam_b, minimum=0.0)
    # u in the factors' dtype: a triangular solve against them failed with torch's error
    check_grid_tensor("u", u, shape, dtype=factors[0].L.dtype, device=dev, finite=False)
    f = check_grid_tensor("f", f, shape, device=dev, finite=False, flat_ok=True).reshape(shape)
    n_b = sum(2 * math.prod(shape) // n for n in shape)
    check_grid_tensor("g", g, (n_b,), device=dev, finite=False, what="boundary-value tensor")
    m = u.numel()
    v = _tri_solve_modes(factors, u)
    logdet = sum((m // fc.L.shape[0]) * 2 * fc.L.diagonal().log().sum() for fc in factors)
    prior = 0.5 * (v * v).sum() + 0.5 * logdet
    r = apply_operator(factors, op, u) - f
    tau2 = log_tau_pde.exp()
    if weighting == "prior":
        rw = _tri_solve_modes(factors, r)
        pde = 0.5 * tau2 * (rw * rw).sum() - 0.5 * m * log_tau_pde + 0.5 * logdet
    elif weighting == "identity":
        pde = 0.5 * tau2 * (r * r).sum() - 0.5 * m * log_tau_pde
    else:
        raise ValueError(
            f"weighting: expected 'identity' or 'prior', received {weighting!r}"
            f"{did_you_mean(weighting, ('identity', 'prior'))}"
        )
    e = face_values(u, shape) - g
    nb = e.numel()
    bd = lam_b * (0.5 * log_tau_b.exp() * (e * e).sum() - 0.5 * nb * log_tau_b)
    return prior + pde + bd


def check_kron_grid(factors: list[Factor], who: str) -> None:
    """Refuse (``NotImplementedError``, naming ``who``) a grid of other than 1 or 2 dimensions:
    the solvers built on :class:`KronSolve` solve through it, which takes no other."""
    if len(factors) not in (1, 2):
        raise NotImplementedError(
            f"{who}: 1-D and 2-D grids only (its linear solves are KronSolves), received a "
            f"{len(factors)}-D grid"
        )


class KronSolve:
    r"""Exact structured solve for ``weighting="prior"`` and a Kronecker-sum operator.

    ``factors``: one per dimension (grid ``x [n_j]``, ``L [n_j, n_j]``); the field is
    ``U [n_1..n_d]`` and the boundary values ``g [N_b]``. Needs factors built with
    ``eigen=True`` (:func:`~.operator.with_eigen`); grids of dimension
    1 or 2. Even derivative orders give a real eigenbasis; odd ones (advection) a complex one
    with imaginary :math:`\Lambda_j`, and :math:`G^H G = |\Lambda|^2` is still diagonal, so the
    same Woodbury solve applies in complex arithmetic (the field :math:`U = Rw` is real up to
    round-off; its real part is returned). Never forms an :math:`M \times M` matrix: cost
    :math:`O(n^3)` per dimension plus an :math:`N_b \times N_b` Cholesky
    (:math:`N_b = 2\sum_{j} \prod_{k\ne j} n_k`). ``tau2``, ``gamma``: finite numbers (or 0-d
    tensors) ``>= 0`` (``gamma = 0`` drops the boundary term, as in :class:`DenseSolve`).
    ``dprec`` ``[n_1..n_d]`` (optional): a positive diagonal in place of
    :math:`1 + \tau_2|\Lambda|^2`, as :meth:`set_diagonal` sets it (the capacitance is then
    factored once, for that diagonal only).
    """

    def __init__(
        self,
        factors: list[Factor],
        op: LinearPDEOperator,
        tau2: Tensor | float,
        gamma: Tensor | float,
        *,
        dprec: Tensor | None = None,
    ):
        check_factor_count(factors, op)
        if len(factors) not in (1, 2):
            raise NotImplementedError("KronSolve: 1-D and 2-D grids only")
        if op.cubic:
            raise NotImplementedError(
                "KronSolve: linear operators only (see PicardKronSolve, GaussNewtonKronSolve)"
            )
        check_scalar("tau2", tau2, minimum=0.0)
        check_scalar("gamma", gamma, minimum=0.0)
        if any(fc.lam is None for fc in factors):
            raise ValueError(
                "factors: KronSolve needs the factors' eigendecomposition; build them with "
                "eigen=True (or pass them through with_eigen)"
            )
        self.factors, self.op = factors, op
        self.shape = tuple(fc.x.shape[0] for fc in factors)
        self.complex = any(fc.lam.is_complex() for fc in factors)
        rdt = factors[0].L.dtype
        lam = torch.as_tensor(op.c0, dtype=rdt, device=factors[0].L.device)
        for j, fc in enumerate(factors):
            view = [1] * len(factors)
            view[j] = -1
            lam = lam + op.coefs[j] * fc.lam.reshape(view)
        self.lam = lam.expand(self.shape)
        self.tau2 = torch.as_tensor(tau2, dtype=rdt)
        self.gamma = torch.as_tensor(gamma, dtype=rdt)
        self.dprec = 1 + self.tau2 * self.lam.abs() ** 2  # diagonal precision: prior + PDE terms
        self.delta = 1 / self.dprec
        self.cdtype = self.lam.dtype
        self.R = [fc.R.to(self.cdtype) for fc in factors]
        self.Rt = [r.mH for r in self.R]
        self.Rinv = [fc.Rinv.to(self.cdtype) for fc in factors]
        if dprec is not None:  # the capacitance of this diagonal only (set_diagonal factored
            # a second one, of the diagonal 1 + tau2 |Lambda|^2 it replaced)
            self.set_diagonal(dprec)
        else:
            self.cap_chol = self._cap_factor()

    def _cap_factor(self) -> Tensor | None:
        r"""Cholesky factor of the capacitance :math:`K`, or ``None`` when :math:`\gamma = 0`:
        the boundary term is then absent and the precision is the diagonal alone (``K``'s
        :math:`I/\gamma` is infinite; its factor gave NaN solves in complex arithmetic)."""
        if not bool(self.gamma > 0):
            return None
        return torch.linalg.cholesky(self._capacitance())

    def _c(self, x: Tensor) -> Tensor:
        return x.to(self.cdtype)

    def set_diagonal(self, dprec: Tensor) -> KronSolve:
        r"""Replace :math:`\mathrm{diag}(1 + \tau_2|\Lambda|^2)` by any positive diagonal ``dprec``
        ``[n_1..n_d]``.

        The solve is then :math:`(\mathrm{diag}(\mathrm{dprec}) + \gamma B^H B)^{-1}`, still exact
        by Woodbury (the capacitance assembly only needs a diagonal); used for preconditioners.
        ``dprec`` is copied (a later edit of the caller's tensor leaves the solver as it is).
        Returns ``self``.
        """
        want = f"dprec: expected a positive tensor of shape {self.shape}, received"
        if not isinstance(dprec, Tensor):  # a list or an array failed with AttributeError
            raise TypeError(f"{want} {type(dprec).__name__}")
        if tuple(dprec.shape) != self.shape:
            raise ValueError(f"{want} shape {tuple(dprec.shape)}")
        if not bool((dprec > 0).all()):  # NaN too
            raise ValueError(f"{want} min {float(dprec.min()):g}")
        # a copy: the caller's tensor was kept, and sample_u reads it at each draw while the
        # solve's delta and capacitance were formed here, so an in-place edit of it after the
        # call gave draws of another diagonal than the solve's
        self.dprec = dprec.clone()
        self.delta = 1 / self.dprec
        self.cap_chol = self._cap_factor()
        return self

    # B w = boundary values of R w; B^H e = R^H scatter(e)
    def B(self, w: Tensor) -> Tensor:
        r""":math:`B w`: boundary values ``[*batch, N_b]`` (face order) of the field :math:`R w`,
        ``w [*batch, n_1..n_d]`` in the solver's dtype (complex in the advection case)."""
        return face_values(kron_apply(self.R, w), self.shape)

    def Bt(self, e: Tensor) -> Tensor:
        r""":math:`B^H e = R^H\,\mathrm{scatter}(e)`: ``e [*batch, N_b]`` -> ``[*batch, n_1..n_d]``
        in the solver's dtype (complex in the advection case)."""
        return kron_apply(self.Rt, self._c(scatter_faces(e, self.shape)))

    def _face_rows(self):
        return [(j, self.R[j][i]) for j, i in faces(self.shape)]

    def _capacitance(self) -> Tensor:
        r""":math:`K = I/\gamma + B\,\Delta\,B^H` assembled by face blocks (Hermitian)."""
        dl = self._c(self.delta)
        rows = self._face_rows()
        if len(self.shape) == 1:
            Rb = torch.stack([r for _, r in rows])  # [2, n]
            K = (Rb * dl) @ Rb.mH
        else:
            R1, R2 = self.R
            blocks = []
            for ja, ra in rows:
                line = []
                for jb, rb in rows:
                    if ja == jb == 0:  # rows indexed by y
                        blk = (R2 * ((ra * rb.conj()) @ dl)) @ R2.mH
                    elif ja == jb == 1:
                        blk = (R1 * (dl @ (ra * rb.conj()))) @ R1.mH
                    elif ja == 0:  # [n2, n1]
                        blk = R2 @ (dl * torch.outer(ra, rb.conj())).mT @ R1.mH
                    else:  # [n1, n2]
                        blk = R1 @ (dl * torch.outer(rb.conj(), ra)) @ R2.mH
                    line.append(blk)
                blocks.append(torch.cat(line, dim=1))
            K = torch.cat(blocks, dim=0)
        K = 0.5 * (K + K.mH)
        K.diagonal().add_(1 / self.gamma)
        return K

    def precision_solve(self, rhs: Tensor) -> Tensor:
        r""":math:`(\mathrm{diag}(d) + \gamma B^H B)^{-1}` applied to ``rhs`` ``[*, n_1..n_d]``
        (Woodbury).

        Returns ``w [*, n_1..n_d]`` in the solver's dtype: complex (``complex128`` for float64
        factors) when an odd derivative order makes the eigenbasis complex (advection)."""
        w0 = self.delta * self._c(rhs)
        if self.cap_chol is None:  # gamma = 0: no boundary term
            return w0
        e = self.B(w0)
        y = torch.cholesky_solve(e.unsqueeze(-1), self.cap_chol).squeeze(-1)
        return w0 - self.delta * kron_apply(self.Rt, scatter_faces(y, self.shape))

    def rhs(self, f: Tensor, g: Tensor) -> Tensor:
        r""":math:`\tau_2\bar\Lambda\,R^{-1} f + \gamma B^H g` (the normal-equation right-hand side
        in :math:`w`).

        ``f [*batch, n_1..n_d]``, ``g [N_b]`` -> ``[*batch, n_1..n_d]``, complex (``complex128``
        for float64 factors) in the advection case, as :meth:`precision_solve`."""
        ft = kron_apply(self.Rinv, self._c(f))
        return self.tau2 * self.lam.conj() * ft + self.gamma * self.Bt(g)

    def to_field(self, w: Tensor) -> Tensor:
        r"""The field :math:`U = R w` ``[*batch, n_1..n_d]`` of ``w [*batch, n_1..n_d]``; its real
        part (real dtype) in the advection case."""
        u = kron_apply(self.R, w)
        return u.real if u.is_complex() else u

    def solve(self, f: Tensor, g: Tensor) -> Tensor:
        """The minimiser ``U`` ``[n_1..n_d]`` of the objective with ``weighting='prior'``.

        ``f`` ``[*batch, n_1..n_d]`` (or flat ``[M]``): the source on the grid (a batch of
        sources gives ``[*batch, n_1..n_d]``); ``g`` ``[N_b]``: the boundary values in face
        order; both finite, on the factors' device (checked, as :class:`DenseSolve` does)."""
        dev = self.factors[0].L.device
        d = len(self.shape)
        if not (isinstance(f, Tensor) and f.ndim > d and tuple(f.shape[-d:]) == self.shape):
            f = check_grid_tensor("f", f, self.shape, device=dev, flat_ok=True)
            f = f.reshape(self.shape)
        else:
            check_grid_tensor("f", f.reshape(-1), (f.numel(),), device=dev)
        n_b = sum(2 * math.prod(self.shape) // self.shape[j] for j in range(len(self.shape)))
        check_grid_tensor("g", g, (n_b,), device=dev, what="boundary-value tensor")
        self.w = self.precision_solve(self.rhs(f, g))
        return self.to_field(self.w)

    @property
    def root_dim(self) -> int:
        """Length of the standard-normal ``z`` of one :meth:`sample_u` draw: ``M + N_b``, twice
        that in the complex (advection) case (real and imaginary parts)."""
        m = math.prod(self.shape)
        n = m + sum(m // self.shape[j] for j, _ in faces(self.shape))
        return 2 * n if self.complex else n

    def sample_u(self, z: Tensor) -> Tensor:
        r"""Zero-mean draws of :math:`U` with covariance :math:`R P^{-1} R^H` (perturb-and-solve).

        ``z`` ``[*, root_dim]`` standard normal -> ``[*, n_1..n_d]``:
        :math:`w = P^{-1}(d^{1/2} z_1 + \gamma^{1/2} B^H z_2)` has covariance :math:`P^{-1}`.
        Complex basis: ``z`` holds real and imaginary parts (each :math:`\mathcal N(0, 1)`), and
        :math:`\mathrm{Re}(Rw)` has covariance :math:`R P^{-1} R^H` (real) exactly.
        """
        check_noise(z, self.root_dim, self.factors[0].L)
        m = math.prod(self.shape)
        if self.complex:
            h = z.shape[-1] // 2
            z = torch.complex(z[..., :h], z[..., h:])
        z1 = z[..., :m].reshape(*z.shape[:-1], *self.shape)
        z2 = z[..., m:]
        w = self.precision_solve(
            self.dprec.sqrt() * z1
            + self.gamma.sqrt() * kron_apply(self.Rt, scatter_faces(self._c(z2), self.shape))
        )
        return self.to_field(w)

    def test_variance(self, T: list[Tensor], chunk: int = 16) -> Tensor:
        r"""Diagonal of :math:`(\otimes T_j) R P^{-1} R^H (\otimes T_j)^\top` on a test grid.

        ``T[j]`` ``[p_j, n_j]`` (e.g. the interpolation weights :math:`K_{*X} C^{-1}`);
        the factors are combined with :math:`R_j` here. Cost :math:`O(p_1 p_2 n N_b)` in 2-D,
        in chunks of ``chunk`` rows; returns ``[p_1..p_d]`` (real).
        """
        # one [p_j, n_j] matrix per dimension (zip cut a short list; a wrong width failed in
        # a matmul naming nothing)
        if not isinstance(T, (list, tuple)) or len(T) != len(self.shape):
            got = len(T) if isinstance(T, (list, tuple)) else type(T).__name__
            raise ValueError(
                f"T: expected {len(self.shape)} matrices (one per dimension), received {got}"
            )
        for j, (t, n) in enumerate(zip(T, self.shape)):
            if not isinstance(t, Tensor) or t.ndim != 2 or t.shape[1] != n:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"T[{j}]: expected a matrix [p_{j}, {n}], received {got}")
        chunk = check_int("chunk", chunk, minimum=1)
        TR = [self._c(t) @ r for t, r in zip(T, self.R)]
        sq = [(tr * tr.conj()).real for tr in TR]
        dl = self.delta
        cdl = self._c(dl)
        if len(self.shape) == 1:
            base = sq[0] @ dl
            if self.cap_chol is None:  # gamma = 0: no boundary term
                return base
            G = (TR[0] * cdl) @ torch.stack([r for _, r in self._face_rows()]).mH  # [p, 2]
            corr = (G * torch.cholesky_solve(G.mH, self.cap_chol).mT).sum(-1).real
            return base - corr
        base = sq[0] @ dl @ sq[1].mT
        if self.cap_chol is None:  # gamma = 0: no boundary term
            return base
        R1, R2 = self.R
        T1, T2 = TR
        out = torch.empty_like(base)
        rows = self._face_rows()
        for p0 in range(0, T1.shape[0], chunk):
            t1 = T1[p0 : p0 + chunk]
            cols = []
            for j, r in rows:
                if j == 0:  # B^H e_y = conj(outer(r, R2[y]))
                    Y = (t1 * r.conj()) @ cdl
                    cols.append(torch.einsum("pb,qb,yb->pqy", Y, T2, R2.conj()))
                else:  # B^H e_x = conj(outer(R1[x], r))
                    Y = cdl @ (T2 * r.conj()).mT  # [a, q]
                    cols.append(torch.einsum("pa,aq,xa->pqx", t1, Y, R1.conj()))
            G = torch.cat(cols, dim=-1)  # [c, p2, N_b]
            Gm = G.reshape(-1, G.shape[-1])
            sol = torch.cholesky_solve(Gm.mH, self.cap_chol).mT
            out[p0 : p0 + chunk] = base[p0 : p0 + chunk] - (Gm * sol).sum(-1).real.reshape(
                G.shape[:2]
            )
        return out
