r"""Finite-difference / finite-volume stencils on regular grids.

All operators act on the trailing ``ndim`` axes of a tensor ``u [..., n_1, ..., n_d]`` (leading
axes, e.g. time levels, are batch) and return tensors of the same shape.

* :func:`shift` -- :math:`u_{i+k}` along one axis with a boundary rule (``periodic``,
  ``neumann`` = the edge value repeated, ``zero``);
* :func:`d1` -- first derivative: ``central`` :math:`(u_{i+1}-u_{i-1})/2h` (2nd order),
  ``backward`` :math:`(u_i-u_{i-1})/h`, ``forward`` (1st order);
* :func:`d2` -- :math:`(u_{i+1}-2u_i+u_{i-1})/h^2` (2nd order); :func:`laplacian` sums it;
* :func:`face_average` / :func:`div_flux` -- the conservative finite-volume operator
  :math:`\sum_k [D_{i+1/2}(u_{i+1}-u_i) - D_{i-1/2}(u_i-u_{i-1})]/h_k^2` with face coefficients;
  a face with :math:`D=0` carries no flux (how the glioma model imposes no flux into CSF).

Shared by the problem generators (the Fisher-Kolmogorov simulator) and the ODIL engine
(:mod:`bayesphys.odil`).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_real, did_you_mean
from .._device import check_on_device

__all__ = ["shift", "d1", "d2", "laplacian", "face_average", "div_flux"]

_BCS = ("periodic", "neumann", "zero")


def _check_step(name: str, h: float | Tensor) -> None:
    """A grid step given as a number must be finite and ``> 0`` (0 gave inf/NaN silently);
    tensors and arrays (e.g. a differentiable spacing) are left to the caller."""
    if not isinstance(h, (Tensor, np.ndarray)):
        check_real(name, h, minimum=0.0, strict=True)


def _check_spacing(spacing: Sequence[float]) -> list:
    """``spacing`` as a list of steps, one per axis; a bare number is refused (it failed with
    ``object of type 'float' has no len()``)."""
    if isinstance(spacing, (str, bytes, numbers.Number)) or (
        isinstance(spacing, (Tensor, np.ndarray)) and spacing.ndim == 0
    ):
        raise TypeError(
            "spacing: expected a sequence of grid steps, one per axis (e.g. [h] in 1-D), "
            f"received {type(spacing).__name__}"
        )
    try:
        steps = list(spacing)
    except TypeError:
        raise TypeError(
            "spacing: expected a sequence of grid steps, one per axis (e.g. [h] in 1-D), "
            f"received {type(spacing).__name__}"
        ) from None
    if not steps:  # the sum over no axes was the integer 0, with ``bc`` never checked
        raise ValueError("spacing: expected at least one grid step (one per axis), received none")
    for k, h in enumerate(steps):
        _check_step(f"spacing[{k}]", h)
    return steps


def _check_tensor(u: Tensor, u_name: str) -> None:
    """Refuse a ``u`` that is not a tensor, by name (a list failed with ``AttributeError:
    'list' object has no attribute 'ndim'``)."""
    if not isinstance(u, Tensor):
        raise TypeError(f"{u_name}: expected a torch.Tensor, received {type(u).__name__}")


def _check_axis(u: Tensor, axis: int, u_name: str = "u") -> int:
    """``axis`` checked as an int axis of the tensor ``u``, returned in ``[0, u.ndim)``; a
    non-tensor ``u``, a ``bool``/float ``axis`` or one out of range is refused by name (torch
    answered ``roll(): argument 'dims' must be tuple of ints`` or ``tuple index out of
    range``)."""
    _check_tensor(u, u_name)
    axis = check_int("axis", axis)
    if not -u.ndim <= axis < u.ndim:
        raise ValueError(
            f"axis: expected an axis of a {u.ndim}-D tensor {u_name} (an int in "
            f"[{-u.ndim}, {u.ndim})), received {axis}"
        )
    return axis % u.ndim


def shift(u: Tensor, axis: int, k: int, bc: str = "periodic") -> Tensor:
    r"""Return :math:`v_i = u_{i+k}` along ``axis`` (``k`` = +-1, +-2 ...) with boundary ``bc``.

    Indices :math:`i + k` outside :math:`[0, n)` read: ``periodic`` :math:`u_{(i+k) \bmod n}`;
    ``neumann`` the edge value, :math:`u_{\min(\max(i+k, 0), n-1)}` (the index clamped, as
    ``numpy.pad(mode="edge")``; for :math:`|k| = 1` this is the zero-gradient ghost cell, the
    mirror about the outer face, but for :math:`|k| \ge 2` it is not a mirror: ``k = 2``
    gives :math:`v_{n-1} = u_{n-1}`, not :math:`u_{n-2}`); ``zero`` 0.

    ``u [..., n, ...]`` (any axis, other axes batch) -> ``v`` of ``u``'s shape; ``axis`` an
    int in ``[-u.ndim, u.ndim)``. Always a new tensor (``k = 0`` and an empty axis give a
    copy of ``u``)."""
    if bc not in _BCS:
        raise ValueError(f"bc: expected one of {_BCS}, received {bc!r}{did_you_mean(bc, _BCS)}")
    axis = _check_axis(u, axis)
    k = check_int("k", k)
    if k == 0 or u.shape[axis] == 0:
        # a copy, as torch.roll's: u itself was returned, and an in-place edit of the result
        # (a stencil weighted in place) changed the caller's field
        return u.clone()
    if bc == "periodic":
        return torch.roll(u, shifts=-k, dims=axis)
    n = u.shape[axis]
    m = min(abs(k), n)
    if k > 0:
        body = u.narrow(axis, m, n - m)
        edge = u.narrow(axis, n - 1, 1).expand_as(u.narrow(axis, 0, m))
        if bc == "zero":
            edge = torch.zeros_like(edge)
        return torch.cat([body, edge], dim=axis)
    body = u.narrow(axis, 0, n - m)
    edge = u.narrow(axis, 0, 1).expand_as(u.narrow(axis, 0, m))
    if bc == "zero":
        edge = torch.zeros_like(edge)
    return torch.cat([edge, body], dim=axis)


def d1(u: Tensor, axis: int, h: float, scheme: str = "central", bc: str = "periodic") -> Tensor:
    """First derivative along ``axis``; ``scheme`` in ``central`` | ``backward`` | ``forward``;
    ``h > 0``. ``u [..., n, ...]`` (any axis, other axes batch) -> ``u``'s shape."""
    _check_step("h", h)
    if scheme == "central":
        return (shift(u, axis, 1, bc) - shift(u, axis, -1, bc)) / (2 * h)
    if scheme == "backward":
        return (u - shift(u, axis, -1, bc)) / h
    if scheme == "forward":
        return (shift(u, axis, 1, bc) - u) / h
    raise ValueError(
        f"scheme: expected 'central', 'backward' or 'forward', received {scheme!r}"
        f"{did_you_mean(scheme, ('central', 'backward', 'forward'))}"
    )


def d2(u: Tensor, axis: int, h: float, bc: str = "periodic") -> Tensor:
    r"""Second derivative :math:`(u_{i+1} - 2u_i + u_{i-1})/h^2` along ``axis`` (``h > 0``).

    ``u [..., n, ...]`` (any axis, other axes batch) -> ``u``'s shape. A step whose square
    overflows float64 (e.g. 1e200) gives 0 for finite differences; one whose square underflows
    (e.g. 1e-200) is divided by twice, as in :func:`div_flux` (a zero difference stays 0, not
    0/0 = NaN)."""
    _check_step("h", h)
    diff = shift(u, axis, 1, bc) - 2 * u + shift(u, axis, -1, bc)
    h2 = h * h
    if _underflows(h2):  # h * h rounded to 0 or a subnormal
        return diff / h / h
    return diff / h2


def laplacian(u: Tensor, spacing: Sequence[float], bc: str = "periodic") -> Tensor:
    """Sum of :func:`d2` over the last ``d = len(spacing)`` axes (``spacing``: one step per
    axis): ``u [..., n_1, ..., n_d]`` (leading axes batch) -> ``u``'s shape."""
    _check_tensor(u, "u")
    spacing = _check_spacing(spacing)
    nd = len(spacing)
    if nd > u.ndim:
        raise ValueError(f"spacing: expected at most u.ndim = {u.ndim} steps, received {nd}")
    return sum(d2(u, u.ndim - nd + k, spacing[k], bc) for k in range(nd))


def face_average(a: Tensor, axis: int) -> Tensor:
    r"""Coefficient on the faces :math:`i+1/2` along ``axis``: :math:`(a_i + a_{i+1})/2`.

    ``a [..., n, ...]`` (``n`` along ``axis``) -> ``[..., n, ...]``, ``a``'s shape, whose
    entry ``i`` is the face between ``i`` and ``i+1``;
    the last face (outside the grid) is 0, so no flux leaves the domain.
    """
    axis = _check_axis(a, axis, "a")
    n = a.shape[axis]
    nxt = shift(a, axis, 1, "neumann")
    f = 0.5 * (a + nxt)
    shape = [1] * a.ndim
    shape[axis] = n
    last = torch.ones(n, dtype=a.dtype, device=a.device)
    if n:  # an empty axis has no faces (last[-1] raised IndexError)
        last[-1] = 0
    return f * last.reshape(shape)


def div_flux(u: Tensor, faces: Sequence[Tensor], spacing: Sequence[float]) -> Tensor:
    r"""Conservative :math:`\nabla\cdot(D\nabla u)` with face coefficients ``faces[k]``.

    ``faces[k]`` (shape of the spatial grid) holds :math:`D_{i+1/2}` along spatial axis ``k``
    (see :func:`face_average`); ``u`` is ``[..., *grid]``. The sum over cells of the result is
    exactly zero (telescoping fluxes), i.e. mass is conserved by the discrete operator.
    One face tensor per step in ``spacing``, each of the grid's shape ``u.shape[-nd:]`` and on
    ``u``'s device. A step whose square overflows float64 (e.g. 1e200) gives 0 for finite
    fluxes; one whose square underflows (e.g. 1e-200) keeps a zero flux 0 (not 0/0 = NaN).
    """
    return _div_flux(u, faces, _check_div_flux(u, faces, spacing))


def _check_div_flux(
    u: Tensor, faces: Sequence[Tensor], spacing: Sequence[float], u_name: str = "u"
) -> list:
    """:func:`div_flux`'s argument checks; returns ``spacing`` as a list (one step per axis).
    ``u_name``: the caller's name of ``u``, named in the device refusal."""
    _check_tensor(u, u_name)
    spacing = _check_spacing(spacing)
    nd = len(spacing)
    grid = tuple(u.shape[u.ndim - nd :]) if nd <= u.ndim else None
    if grid is None:
        raise ValueError(f"spacing: expected at most u.ndim = {u.ndim} steps, received {nd}")
    if len(faces) != nd or any(tuple(f.shape) != grid for f in faces):
        got = [tuple(f.shape) for f in faces]
        raise ValueError(
            f"faces: expected {nd} face tensors of the grid's shape {grid}, received {got}"
        )
    _check_on_device("faces", faces, u.device, u_name)
    return spacing


def _check_on_device(name: str, tensors: Sequence[Tensor], device: torch.device, of: str) -> None:
    """``ValueError`` naming ``name[k]``, the first of ``tensors`` not on ``device`` (that of
    the argument ``of``): torch's own error came from inside a flux product without a name."""
    for k, f in enumerate(tensors):
        check_on_device(f"{name}[{k}]", f, device, f"{of}'s")


def _square(h: float | Tensor) -> float | Tensor:
    """``h ** 2`` for a grid step ``h`` (a number or a tensor); a float whose square is past
    the float maximum (e.g. 1e200) gives ``inf``, where ``h ** 2`` raised an ``OverflowError``
    naming no argument (a product or a quotient of floats gives ``inf`` there)."""
    try:
        return h**2
    except OverflowError:
        return math.inf


def _underflows(h2: float | Tensor) -> bool:
    """Whether a float square ``h2`` is below the smallest normal float (a step under about
    1.5e-154): 0 or a subnormal that has lost its precision. Tensors are not read (no device
    sync): ``False``."""
    return isinstance(h2, float) and h2 < sys.float_info.min


def _div_flux(u: Tensor, faces: Sequence[Tensor], spacing: list) -> Tensor:
    """:func:`div_flux` without its checks, for callers that checked ``faces`` and ``spacing``
    once (a time loop): the same operations, so the same values and the same graph. A step
    whose square overflows divides by ``inf`` (0 for finite fluxes); one whose square
    underflows divides twice by the step (a zero flux stays 0, where 0 / 0 gave NaN)."""
    nd = len(spacing)
    out = torch.zeros_like(u)
    for k in range(nd):
        ax = u.ndim - nd + k
        n = u.shape[ax]
        # the flux through each inner face i+1/2, F_i = D_{i+1/2} (u_{i+1} - u_i), i < n - 1;
        # cell i gains F_i and loses F_{i-1}, none through the outer faces (the same products
        # and differences as the one-sided form, a third of the operations)
        flux = faces[k].narrow(k, 0, max(n - 1, 0)) * torch.diff(u, dim=ax)
        pad = [0, 0] * (u.ndim - 1 - ax)
        # F.pad's constant mode without its Python wrapper (the same operation)
        gain = torch.constant_pad_nd(flux, [*pad, 0, 1])  # F_i in cell i, 0 in the last
        loss = torch.constant_pad_nd(flux, [*pad, 1, 0])  # F_{i-1} in cell i, 0 in the first
        h2 = _square(spacing[k])
        if _underflows(h2):
            out = out + (gain - loss) / spacing[k] / spacing[k]
        else:
            out = out + (gain - loss) / h2
    return out
