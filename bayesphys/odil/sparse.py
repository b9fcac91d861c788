r"""Sparse Jacobians of stencil residuals by column colouring, and the sparse normal-equation solve.

A residual written on a finite-difference / finite-volume stencil of radius :math:`\rho` depends,
row by row, on field values inside a box of :math:`2\rho + 1` cells per axis (plus any scalar
parameter). Colour the unknowns of a field on its grid by

.. math:: c(i_1, \dots, i_d) = \sum_{k=1}^{d} (i_k \bmod w_k) \prod_{l<k} w_l,
   \qquad w_k \ge 2\rho + 1,

give every field its own colours and every parameter a colour of its own
(:math:`C = \sum_{\text{fields}} \prod_k w_k + n_\theta` colours). Two unknowns of one colour
are then at least :math:`2\rho + 1` cells apart along some axis, so no residual row depends on
two of them, and the columns of one colour can be recovered from two Jacobian-vector products:
with :math:`s_c = \mathbb 1[\mathrm{colour} = c]` and :math:`s'_c = s_c \odot (j + 1)`,

.. math:: (J s_c)_i = J_{ij}, \qquad (J s'_c)_i = (j + 1) J_{ij}

for the one column :math:`j` of colour :math:`c` that row :math:`i` touches. A third product
with :math:`s''_c = s_c \odot (j + 1)^2` confirms it: one column gives ratios :math:`q_1 = j + 1`
and :math:`q_2 = q_1^2` to rounding (float64), while a row mixing several columns of one colour
gives weighted means with :math:`q_2 \ne q_1^2`. The ratios only locate the columns: every
assembled :math:`J` is then checked row by row against one more product with a random tangent,
which also catches mixtures the ratios cannot see (same-colour columns whose three products all
cancel); a failed check (a stencil wider than :math:`\rho`) refines the colouring instead of
returning a wrong :math:`J`. Entries at rounding level of their row (a zero computed as a
difference) are dropped. Each axis' modulus is chosen so that windows wrapping around its ends
are separated too (:func:`column_colours`), so periodic stencils need no refinement.
:math:`3C` products replace the :math:`n` columns of a dense Jacobian (B0's periodic 62 x 64
grid: 3 x (7 x 4 + 3) products and one check for 3 971 unknowns).

The damped normal equations :math:`(J^\top J + \lambda I)\,\delta = -J^\top r` are then solved by
a sparse LU factorisation (SciPy's SuperLU, on the CPU; the products run on the unknowns'
device). Reference for the discrete-loss method: Karnakov, Litvinov & Koumoutsakos, "Solving
inverse problems in physics by optimizing a discrete loss", PNAS Nexus 2024.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_real
from .._device import check_finite
from .problem import DiscreteProblem

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse

__all__ = ["ColouredJacobian", "column_colours", "sparse_normal_solve", "sparse_schur_covariance"]


def _modulus(size: int, radius: int) -> int:
    r"""The smallest modulus :math:`w \ge 2\rho + 1` whose colours :math:`i \bmod w` differ inside
    every window of :math:`2\rho + 1` cells of an axis of ``size`` cells, including windows that
    wrap around its ends (periodic stencils): ``size mod w`` must not lie in
    :math:`\{1, \dots, 2\rho\}`. ``size`` itself when no smaller one exists."""
    for w in range(2 * radius + 1, size):
        if not 1 <= size % w <= 2 * radius:
            return w
    return size


def column_colours(problem: DiscreteProblem, radius: int, level: int = 0) -> Tensor:
    r"""Colour of every unknown, ``[n]`` (int64, on the CPU), for a stencil of ``radius``.

    Field values are coloured by their grid index modulo :math:`w_k` per axis, the smallest
    :math:`w_k \ge 2\rho_L + 1` that also separates windows wrapping around the axis' ends
    (periodic stencils), with :math:`\rho_L = (\rho + 1)2^L - 1` at ``level`` :math:`L`
    (module docstring); each field has colours of its own, every parameter entry its own. Fields
    held in the multigrid decomposition are refused (their unknowns are not local): use
    ``problem.plain()``.
    """
    if not isinstance(problem, DiscreteProblem):
        raise TypeError(f"problem: expected a DiscreteProblem, received {type(problem).__name__}")
    radius = check_int("stencil_radius", radius, minimum=0)
    level = check_int("level", level, minimum=0)
    if problem.multigrid:
        raise ValueError(
            f"problem: fields {sorted(problem.multigrid)} are held in the multigrid decomposition, "
            "whose unknowns are not local; a sparse Jacobian needs plain grid values "
            "(problem.plain()) or the matrix-free linear_solver='cg'"
        )
    colours = torch.empty(problem.n, dtype=torch.int64)
    base = 0
    for name, shape in problem.field_shapes.items():
        reach = (radius + 1) * 2**level - 1  # level L: the radius the colouring separates
        ws = [_modulus(s, reach) for s in shape]
        grids = torch.meshgrid(*[torch.arange(s) % w for s, w in zip(shape, ws)], indexing="ij")
        local, stride = torch.zeros(shape, dtype=torch.int64), 1
        for g, w in zip(grids, ws):
            local += g * stride
            stride *= w
        colours[problem.slices[name]] = base + local.reshape(-1)
        base += stride
    for name in problem.param_names:
        sl = problem.slices[name]
        colours[sl] = base + torch.arange(sl.stop - sl.start)
        base += sl.stop - sl.start
    return colours


def _products(jv: Callable[[Tensor], Tensor], tangents: Tensor) -> Tensor:
    """``J t`` for each row ``t`` of ``tangents [k, n]`` -> ``[k, m]`` (one batched call when the
    residual supports it, else one call per tangent)."""
    try:
        out = jv(tangents)
        if out.ndim == 2 and out.shape[0] == tangents.shape[0]:
            return out
    except (RuntimeError, NotImplementedError):  # an op without a batching rule
        pass
    return torch.stack([jv(t) for t in tangents])


#: colours probed per batched product call (bounds the tangents' memory at 3 x this x n)
_CHUNK = 64
#: entries below this fraction of their row's largest are rounding noise: dropped
_NOISE = 1e-12
#: entries below this fraction whose index ratios do not check out are dropped as negligible
#: (their ratios carry the cancellation error of the paths that sum to them); larger ones fail
_NEGLIGIBLE = 1e-9
#: relative tolerance of the index ratios (an entry that is a sum of several paths of the
#: residual's graph carries their cancellation error; the final check below arbitrates)
_RATIO_RTOL = 1e-6
#: row-wise tolerance of the check against a product with a random tangent
_CHECK_RTOL = 1e-7


class NonFiniteJacobian(ValueError):
    """Jacobian-vector products with NaN/Inf entries (a residual with an infinite derivative
    at the iterate): no colouring can assemble the Jacobian."""


def _decompress(jv, colours: Tensor, dtype, device):
    """``(rows, cols, vals)`` of the Jacobian, or ``None`` when some row mixes two unknowns of
    one colour. Three products per colour: indicator, index and squared index; entries at the
    rounding level of their row (a zero computed as a difference) are dropped."""
    n = colours.numel()
    n_col = int(colours.max()) + 1 if n else 0
    index = torch.arange(1, n + 1, dtype=dtype)
    ys, y1s, y2s = [], [], []
    for lo in range(0, n_col, _CHUNK):
        ids = torch.arange(lo, min(lo + _CHUNK, n_col))
        onehot = (colours[None, :] == ids[:, None]).to(dtype)  # [k, n]
        tangents = torch.cat([onehot, onehot * index, onehot * index**2]).to(device)
        prods = _products(jv, tangents).to("cpu")
        k = len(ids)
        ys.append(prods[:k])
        y1s.append(prods[k : 2 * k])
        y2s.append(prods[2 * k :])
    y, y1, y2 = torch.cat(ys), torch.cat(y1s), torch.cat(y2s)  # [C, m] each
    if not bool(torch.isfinite(y).all()):
        # more colours cannot help: a derivative is infinite (e.g. sqrt(|u|) at u = 0)
        bad = int((~torch.isfinite(y)).any(0).sum())
        raise NonFiniteJacobian(
            f"the Jacobian-vector products are not finite at x ({bad} residuals have an "
            "infinite or NaN derivative there, e.g. sqrt(|u|) at u = 0): start elsewhere "
            "(x0) or change the residual"
        )
    rowmax = y.abs().amax(0, keepdim=True)  # [1, m]
    # an entry at rounding level (a zero computed as a difference) is dropped; products that
    # cancel to exactly zero while their index products do not are kept (and fail below)
    hit = (y.abs() > _NOISE * rowmax) | ((y == 0) & ((y1 != 0) | (y2 != 0)))
    cidx, rows = hit.nonzero(as_tuple=True)
    vals = y[cidx, rows]
    q1 = y1[cidx, rows] / vals
    q2 = y2[cidx, rows] / vals
    cols = torch.round(q1).clamp(-1, n).to(torch.int64) - 1
    # a single column j gives q1 = j + 1 and q2 = (j + 1)^2 to rounding; a mixture of columns
    # gives a weighted mean with q2 != q1^2 (its "variance" is not zero)
    ok = (vals != 0) & torch.isfinite(q1) & torch.isfinite(q2)
    ok &= (q1 - (cols + 1)).abs() <= torch.clamp(_RATIO_RTOL * q1.abs(), max=0.25)
    ok &= (q2 - q1 * q1).abs() <= 2 * _RATIO_RTOL * q1 * q1
    ok &= (cols >= 0) & (cols < n)
    ok[ok.clone()] &= colours[cols[ok]] == cidx[ok]
    negligible = vals.abs() <= _NEGLIGIBLE * rowmax[0, rows]
    if not bool((ok | negligible).all()):
        return None
    rows, cols, vals = rows[ok], cols[ok], vals[ok]
    return rows, cols, vals


def _verified(jv, jac, n: int, dtype, device) -> bool:
    r"""Whether ``jac`` reproduces one more product with a random tangent, row by row:
    :math:`|J v - \hat J v| \le 10^{-7} (|\hat J||v|) + 10^{-12}\max(|\hat J||v|)`. Catches
    every mis-assembly the ratio checks cannot see (columns of one colour whose products all
    cancel, mixtures that mimic one column far along the index)."""
    gen = torch.Generator().manual_seed(20_261_130)
    # |v_j| in [0.5, 1.5]: every entry counts in its row's scale
    sign = torch.randint(0, 2, (n,), generator=gen).to(dtype) * 2 - 1
    v = sign * (0.5 + torch.rand(n, generator=gen, dtype=dtype))
    exact = jv(v.to(device)).to("cpu").numpy()
    vv = v.numpy()
    got = jac @ vv
    scale = abs(jac) @ np.abs(vv)
    top = float(scale.max()) if scale.size else 0.0
    return bool(np.all(np.abs(exact - got) <= _CHECK_RTOL * scale + 1e-12 * top))


#: more colours than this means the residual is not a local stencil: refused (use CG)
MAX_COLOURS = 4096


class ColouredJacobian:
    r"""Sparse Jacobians ``[m, n]`` (SciPy CSR) of a stencil residual from a few products.

    ``problem`` a plain-grid, float64 :class:`DiscreteProblem`; ``radius`` its stencil radius.
    Call with ``jv(v) = J v`` (one tangent ``[n]`` or, where it can, a batch ``[k, n]`` giving
    ``[k, m]``) and ``m``. Every assembled Jacobian is checked against one more product with a
    random tangent; when a row is found to mix unknowns of one colour (a stencil wider than
    ``radius``), the colouring is refined (``level`` + 1, kept for later calls) and the products
    repeated, up to :data:`MAX_COLOURS` colours (beyond: ``ValueError`` naming
    ``stencil_radius``).
    """

    def __init__(self, problem: DiscreteProblem, radius: int = 1):
        if not isinstance(problem, DiscreteProblem):
            raise TypeError(
                f"problem: expected a DiscreteProblem, received {type(problem).__name__}"
            )
        if problem.dtype != torch.float64:
            raise ValueError(
                f"problem: a sparse (coloured) Jacobian reads column indices from float64 "
                f"products; the problem is {problem.dtype} (build it with dtype=torch.float64, "
                "or use the matrix-free CG path)"
            )
        self.problem = problem
        self.radius = check_int("stencil_radius", radius, minimum=0)
        self.level = 0
        self.colours = column_colours(problem, self.radius)
        # beyond this level every axis has a colour per cell (a dense, always separable, probe)
        longest = max((max(s) for s in problem.field_shapes.values()), default=1)
        self.max_level = max(0, math.ceil(math.log2(max(longest / (2 * self.radius + 1), 1))))

    @property
    def num_colours(self) -> int:
        """The number of colours :math:`C` (0 for no unknowns); one Jacobian costs
        :math:`3C + 1` Jacobian-vector products (three per colour and one check), more when
        the colouring is refined."""
        return int(self.colours.max()) + 1 if self.colours.numel() else 0

    def __call__(self, jv: Callable[[Tensor], Tensor], m: int):
        import scipy.sparse as sp

        p = self.problem
        while True:
            out = _decompress(jv, self.colours, p.dtype, p.device)
            if out is not None:
                rows, cols, vals = out
                jac = sp.csr_matrix(
                    (vals.numpy(), (rows.numpy(), cols.numpy())), shape=(m, p.n), dtype=np.float64
                )
                if _verified(jv, jac, p.n, p.dtype, p.device):
                    return jac
            if self.level >= self.max_level or self.num_colours >= p.n:
                raise ValueError(
                    "linear_solver: the sparse Jacobian could not be assembled even with one "
                    "colour per cell (non-finite or inconsistent Jacobian-vector products); use "
                    "linear_solver='cg'"
                )
            colours = column_colours(p, self.radius, self.level + 1)
            if int(colours.max()) + 1 > MAX_COLOURS:
                raise ValueError(
                    f"stencil_radius: the residuals couple cells farther apart than the "
                    f"colouring can separate within {MAX_COLOURS} colours (stencil_radius="
                    f"{self.radius}); raise stencil_radius to the stencil's reach, or use "
                    "linear_solver='cg'"
                )
            self.level += 1
            self.colours = colours


def _active_columns(jac) -> np.ndarray:
    """Indices of the columns of a sparse ``jac`` holding a nonzero entry."""
    counts = np.diff(jac.tocsc().indptr)
    return np.flatnonzero(counts > 0)


def _spd_lu(a):
    """SuperLU factors of a sparse symmetric positive (semi)definite ``a`` (CSC): a symmetric
    fill-reducing order and no pivoting (partial pivoting breaks the order: one B0 step filled
    30M entries instead of 1M). A factorisation that meets an exactly zero pivot raises
    ``ValueError``; a numerically singular ``a`` (two equal columns of ``J``) is not detected
    and gives an arbitrary finite solution."""
    from scipy.sparse.linalg import splu

    try:
        return splu(
            a,
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )
    except RuntimeError as err:  # "Factor is exactly singular"
        raise ValueError(
            f"linear_solver: the Gauss-Newton matrix J^T J is singular ({err}); some unknown is "
            "not determined by the residuals (add a regulariser, or use method='lm')"
        ) from err


def _check_sparse(jac: Any) -> Any:
    """``jac`` (a float32 one in float64), or a ``TypeError`` naming ``jac`` unless it is a
    SciPy sparse matrix / array (a dense array failed with "'numpy.ndarray' object has no
    attribute 'tocsr'"). A float32 ``jac`` was used as it was: its normal
    matrix and Schur complement were formed and factorised in float32, a covariance labelled
    float64 carried float32's error (1e-7 relative), and the normal solve failed in SciPy
    ("Cannot cast array data from dtype('float64') to dtype('float32')")."""
    import scipy.sparse as sp

    if not sp.issparse(jac) or jac.ndim != 2:
        raise TypeError(
            f"jac: expected a 2-D SciPy sparse matrix (e.g. scipy.sparse.csr_matrix(J)), "
            f"received {type(jac).__name__}"
        )
    if jac.dtype == np.float32:
        return jac.astype(np.float64)
    return jac


def sparse_schur_covariance(
    jac: scipy.sparse.spmatrix | scipy.sparse.sparray, t_idx: Tensor
) -> Tensor:
    r"""Laplace marginal covariance ``[p, p]`` of the unknowns ``t_idx`` (``[p]``) from a sparse
    Jacobian: :math:`(H_{\theta\theta} - H_{u\theta}^\top H_{uu}^{-1} H_{u\theta})^{-1}` with
    :math:`H = J^\top J`, the field block factorised (sparse LU, never densified) and solved for
    the :math:`p` columns of :math:`H_{u\theta}`. Computed and returned in float64, on the CPU
    (a float32 ``jac`` is cast to float64 first). ``t_idx`` distinct
    integer indices in ``[0, n)`` (``ValueError`` / ``TypeError`` otherwise: a fractional index
    was truncated, a negative one counted from the end, a repeated one gave a singular
    complement); ``jac`` a SciPy sparse matrix. A singular complement (unknowns the residuals
    do not determine) is a ``ValueError`` naming ``t_idx``."""
    jac = _check_sparse(jac)
    n = jac.shape[1]
    if (
        not isinstance(t_idx, Tensor)
        or t_idx.is_floating_point()
        or t_idx.is_complex()
        or t_idx.dtype == torch.bool  # a mask would be read as the indices 0 and 1
    ):
        got = t_idx.dtype if isinstance(t_idx, Tensor) else type(t_idx).__name__
        raise TypeError(f"t_idx: expected an integer tensor of column indices, received {got}")
    t = np.asarray(t_idx.cpu(), dtype=np.int64)
    if t.ndim != 1 or np.any((t < 0) | (t >= n)) or len(np.unique(t)) != len(t):
        raise ValueError(
            f"t_idx: expected distinct indices in [0, {n}) of shape [p], received "
            f"{t.tolist() if t.size <= 10 else f'{t.size} entries'}"
        )
    h = (jac.T @ jac).tocsc()
    # field unknowns no residual touches (e.g. masked cells) do not couple to theta: left out
    u = np.setdiff1d(_active_columns(jac), t)
    h_uu = h[u][:, u].tocsc()
    h_ut = h[u][:, t].toarray()
    h_tt = h[t][:, t].toarray()
    sol = _spd_lu(h_uu).solve(h_ut) if len(u) else np.zeros((0, len(t)))
    schur = h_tt - h_ut.T @ sol
    schur = 0.5 * (schur + schur.T)
    try:
        cov = np.linalg.inv(schur)
    except np.linalg.LinAlgError:  # numpy's "Singular matrix" named nothing
        # still a LinAlgError (a ValueError): theta_covariance words it in its own params
        raise np.linalg.LinAlgError(
            f"t_idx: the Schur complement of the unknowns {t.tolist() if t.size <= 10 else t.size}"
            " is singular: the residuals do not determine them (no residual depends on one, "
            "or they enter only in a fixed combination); add a prior residual for them"
        ) from None
    return torch.as_tensor(0.5 * (cov + cov.T), dtype=torch.float64)


def sparse_normal_solve(
    jac: scipy.sparse.spmatrix | scipy.sparse.sparray, r: Tensor, lam: float
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Solve :math:`(J^\top J + \lambda I)\,\delta = -J^\top r` by sparse LU (SuperLU).

    ``jac`` a SciPy sparse ``[m, n]``, ``r [m]``, both finite (a NaN or infinite entry is
    refused, ``ValueError`` naming it). Solved in float64 (a float32 ``jac`` is
    cast first); returns ``(delta, g = J^T r, J delta)`` as tensors on ``r``'s device and
    dtype. Unknowns no residual touches (an empty column) are
    left out and get a zero step, as CG started from zero leaves them. An exactly singular
    factorisation raises ``ValueError``; a numerically singular system (unknowns the residuals
    do not determine, e.g. two equal columns, with ``lam = 0``) is not detected and gives an
    arbitrary finite step: use ``lam > 0`` (Levenberg-Marquardt) where that can happen.
    """
    import scipy.sparse as sp

    lam = check_real("lam", lam, minimum=0.0)
    jac = _check_sparse(jac)
    if not isinstance(r, Tensor) or r.shape != (jac.shape[0],):
        got = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
        raise ValueError(
            f"r: expected a tensor of shape ({jac.shape[0]},) (J's rows), received {got}"
        )
    check_finite("r", r)
    bad = int((~np.isfinite(jac.tocsr().data)).sum())
    if bad:
        raise ValueError(f"jac: expected finite entries, received {bad} NaN/Inf entries")
    rr = r.detach().to("cpu", torch.float64).numpy()
    g = jac.T @ rr
    # unknowns no residual touches get no step (as CG from zero leaves them)
    act = _active_columns(jac)
    ja = jac[:, act]
    a = (ja.T @ ja).tocsc()
    if lam > 0:
        a = a + lam * sp.identity(a.shape[0], format="csc")
    lu = _spd_lu(a)
    delta = np.zeros(jac.shape[1])
    delta[act] = -lu.solve(g[act])
    if not np.all(np.isfinite(delta)):
        raise ValueError("linear_solver: the sparse Gauss-Newton solve gave non-finite values")
    jd = jac @ delta

    def back(v: np.ndarray) -> Tensor:
        return torch.as_tensor(v, dtype=r.dtype).to(r.device)

    return back(delta), back(g), back(jd)
