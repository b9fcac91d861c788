r"""One-dimensional spectral-mixture kernels with closed-form derivatives.

Two stationary kernels of the lag :math:`z = x - x'` (Fang et al., ICLR 2024, eqs. 3-4):

* Gaussian mixture spectrum (``kind="gm"``, GP-HM-GM):
  :math:`k(z) = \sum_q w_q\, e^{-a_q z^2} \cos(2\pi\mu_q z)`;
* Student-t mixture spectrum (``kind="stm"``, GP-HM-StM), a Matern-5/2 envelope times a cosine:
  :math:`k(z) = \sum_q w_q (1 + \alpha_q r + \alpha_q^2 r^2/3) e^{-\alpha_q r} \cos(2\pi\mu_q z)`,
  :math:`r = |z|`, :math:`\alpha_q = \sqrt5\, a_q`.

Parameters (each ``[Q]``): ``log_w`` (:math:`\log w_q`; a flat prior on it is the Jeffreys prior
:math:`p(w)\propto 1/w`, which prunes superfluous components), ``mu`` (frequencies, cycles per
unit length) and ``log_a`` (:math:`\log a_q`: for ``"stm"`` an inverse length scale, the
Matern-5/2 length scale being :math:`1/a_q`; for ``"gm"`` an inverse *squared* length scale,
:math:`a_q = 1/(2\ell_q^2)` for the envelope :math:`e^{-z^2/2\ell_q^2}`).

Derivatives: :math:`\partial_x^i \partial_{x'}^j k(x - x') = (-1)^j k^{(i+j)}(z)`; :meth:`deriv`
returns :math:`k^{(n)}(z)` for ``n = 0..4`` by the Leibniz rule on envelope x cosine.
(The Matern-5/2 envelope has a finite fourth derivative at 0, :math:`\alpha^4`; its fifth jumps.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_int, check_real, did_you_mean
from .._device import as_tensor, check_on_device, resolve_dtype

__all__ = ["SpectralMixture1d", "KINDS"]

KINDS = ("gm", "stm")
"""``kind`` of :class:`SpectralMixture1d`: ``"gm"`` (Gaussian-mixture spectrum) and ``"stm"``
(Student-t mixture spectrum)."""
_BINOM = [[1], [1, 1], [1, 2, 1], [1, 3, 3, 1], [1, 4, 6, 4, 1]]
#: largest ``[*z, q]`` temporary (elements) of the mixture sum in :meth:`SpectralMixture1d.deriv`:
#: above it the components are summed a block of ``q < Q`` at a time (memory-bound otherwise)
_MIX_ELEMENTS = 4_000_000


def _gauss_env(z: Tensor, a: Tensor, n: int) -> list[Tensor]:
    """``[g, g', ..., g^(n)]`` of :math:`g(z) = e^{-a z^2}`; ``z`` ``[..., 1]``, ``a`` ``[Q]``."""
    g = torch.exp(-a * z * z)
    out = [g]
    if n >= 1:
        out.append(-2 * a * z * g)
    if n >= 2:
        out.append((4 * a * a * z * z - 2 * a) * g)
    if n >= 3:
        out.append((-8 * a**3 * z**3 + 12 * a * a * z) * g)
    if n >= 4:
        out.append((16 * a**4 * z**4 - 48 * a**3 * z * z + 12 * a * a) * g)
    return out


def _matern52_env(z: Tensor, a: Tensor, n: int) -> list[Tensor]:
    """``[g, ..., g^(n)]`` of the Matern-5/2 envelope with :math:`\\alpha = \\sqrt5 a`."""
    al = math.sqrt(5.0) * a
    r = z.abs()
    ar = al * r
    e = torch.exp(-ar)
    out = [(1 + ar + ar * ar / 3) * e]
    if n >= 1:
        out.append(-(al * al / 3) * z * (1 + ar) * e)
    if n >= 2:
        out.append(-(al * al / 3) * (1 + ar - ar * ar) * e)
    if n >= 3:
        out.append((al**4 / 3) * z * (3 - ar) * e)
    if n >= 4:
        out.append((al**4 / 3) * (3 - 5 * ar + ar * ar) * e)
    return out


def _values_inplace(kind: str, zz: Tensor, a: Tensor, m: Tensor, w: Tensor) -> Tensor:
    """``(env * cos(m z)) @ w`` for ``n = 0`` without autograd, the same operations in the same
    order as the differentiable path (bit for bit) but on a few reused ``[..., Q]`` buffers."""
    if kind == "gm":
        env = _gauss_env(zz, a, 0)[0]
        c = torch.mul(m, zz)
    else:  # (1 + ar + ar^2/3) e^{-ar}, as _matern52_env
        env = (math.sqrt(5.0) * a) * zz.abs()  # ar
        c = env * env
        c.div_(3)  # ar^2 / 3
        e = torch.neg(env).exp_()
        env.add_(1).add_(c).mul_(e)
        del e
        torch.mul(m, zz, out=c)
    return env.mul_(c.cos_()) @ w


def _mixture_sum(part, z: Tensor, a_all: Tensor, m_all: Tensor, w_all: Tensor):
    """``sum`` of ``part(a, m, w)`` over blocks of the mixture components (``[Q]`` each), sized
    so that a block's ``[*z, q]`` temporaries stay ~ ``_MIX_ELEMENTS``."""
    step = max(1, min(a_all.shape[0], _MIX_ELEMENTS // max(z.numel(), 1)))
    total = 0
    for q0 in range(0, a_all.shape[0], step):
        sl = slice(q0, q0 + step)
        total = total + part(a_all[sl], m_all[sl], w_all[sl])
    return total


def mixture_values(kind: str, z: Tensor, a: Tensor, m: Tensor, w: Tensor) -> Tensor:
    r""":math:`k(z)` ``[*]`` of lags ``z`` ``[*]`` without autograd, from a kernel's envelope
    rates :math:`a_q`, angular frequencies :math:`2\pi\mu_q` and weights :math:`w_q` (``[Q]``
    each, as :meth:`SpectralMixture1d.mixture` gives them): :meth:`SpectralMixture1d.deriv`
    ``(z, 0)`` under ``torch.no_grad`` bit for bit, with no module (a posterior keeps these
    three tensors to evaluate its kernel later, on whatever device it was moved to)."""
    zz = z.unsqueeze(-1)
    return _mixture_sum(lambda a_, m_, w_: _values_inplace(kind, zz, a_, m_, w_), z, a, m, w)


def uniform_step(x: Tensor) -> Tensor | None:
    """The spacing of ``x`` ``[N]`` when its points are evenly spaced (to ``1e-12`` of its
    span) and ``N > 2``, else ``None``: where :meth:`SpectralMixture1d.gram` evaluates only
    the ``2N - 1`` distinct lags of a Toeplitz matrix."""
    nx = x.shape[0]
    if nx <= 2:  # (no points: x[-1] raised an IndexError)
        return None
    h = (x[-1] - x[0]) / (nx - 1)
    even = torch.allclose(
        x,
        x[0] + h * torch.arange(nx, dtype=x.dtype, device=x.device),
        rtol=0,
        atol=1e-12 * float(abs(h.detach()) * nx),  # a value: no graph, no warning
    )
    return h if even else None


class SpectralMixture1d(nn.Module):
    r"""A 1-D spectral-mixture kernel :math:`k(z) = \sum_q w_q\, \gamma_q(z) \cos(2\pi\mu_q z)`.

    Parameters
    ----------
    num_mixtures
        :math:`Q`.
    kind
        ``"gm"`` (Gaussian envelope) or ``"stm"`` (Matern-5/2 envelope).
    mu
        initial frequencies ``[Q]`` (default ``linspace(0, 1, Q) * freq_scale``, the paper's init;
        ``freq_scale >= 0``).
    log_w, log_a
        initial log weights / log envelope rates :math:`\log a_q` (defaults ``log(1/Q)``
        and 0; :math:`a_q` is an inverse length scale for ``"stm"``, an inverse squared one for
        ``"gm"``).
    dtype
        of the parameters, a floating ``torch.dtype`` or its name (``None``: float64).
    """

    def __init__(
        self,
        num_mixtures: int = 30,
        *,
        kind: str = "stm",
        mu: Tensor | None = None,
        log_w: Tensor | float | None = None,
        log_a: Tensor | float | None = None,
        freq_scale: float = 20.0,
        dtype: torch.dtype | str | None = torch.float64,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(
                f"kind: expected one of {KINDS}, received {kind!r}{did_you_mean(kind, KINDS)}"
            )
        q = check_int("num_mixtures", num_mixtures, minimum=1)
        freq_scale = check_real("freq_scale", freq_scale, minimum=0.0)
        # an integer dtype failed in nn.Parameter, a dtype name ("float32") inside linspace
        dtype = resolve_dtype(dtype)
        self.kind = kind
        mu_t = (
            torch.linspace(0, 1, q, dtype=dtype) * freq_scale
            if mu is None
            else as_tensor("mu", mu, dtype=dtype).clone()
        )
        if mu_t.shape != (q,):
            raise ValueError(f"mu: expected shape ({q},), received {tuple(mu_t.shape)}")

        def _vec(name: str, v, default: float) -> Tensor:
            if v is None:
                return torch.full((q,), default, dtype=dtype)
            # a longer vector was cut to Q silently, a shorter one failed inside torch
            t = as_tensor(name, v, dtype=dtype)
            if t.shape not in ((), (q,)):
                raise ValueError(
                    f"{name}: expected a number or shape ({q},) (one per mixture component), "
                    f"received {tuple(t.shape)}"
                )
            return t.expand(q).clone()

        self.mu = nn.Parameter(mu_t)
        self.log_w = nn.Parameter(_vec("log_w", log_w, -math.log(q)))
        self.log_a = nn.Parameter(_vec("log_a", log_a, 0.0))

    @property
    def num_mixtures(self) -> int:
        """The number of mixture components :math:`Q`."""
        return self.mu.shape[0]

    @property
    def weights(self) -> Tensor:
        """:math:`w_q = e^{\\log w_q}`, ``[Q]``."""
        return self.log_w.exp()

    def deriv(self, z: Tensor, n: int = 0) -> Tensor:
        r""":math:`k^{(n)}(z)` for lags ``z`` ``[*]`` -> ``[*]``, ``n`` an int in 0..4.

        ``z``: a real tensor on the parameters' device (integer lags are computed in the
        kernel's dtype); anything else is refused naming ``z``, as :meth:`gram` refuses its
        points (an array or a list failed with an ``AttributeError``, complex lags inside the
        mixture sum)."""
        if not isinstance(z, Tensor):
            raise TypeError(
                f"z: expected a tensor of lags (torch.as_tensor it first), received "
                f"{type(z).__name__}"
            )
        if z.is_complex():
            raise TypeError(f"z: expected real lags, received {z.dtype}")
        hint = " (move them with z.to('{device}'), or the kernel with .to('{got}'))"
        check_on_device("z", z, self.mu.device, "the kernel's", what="lags", hint=hint)
        n = check_int("n", n)
        if n not in range(5):
            raise ValueError(f"n: expected a derivative order in 0..4, received {n}")
        a_all, m_all, w_all = self.mixture()
        # chunk the mixture so that temporaries stay ~ _MIX_ELEMENTS (memory-bound otherwise)
        return _mixture_sum(lambda a, m, w: self._deriv_part(z, n, a, m, w), z, a_all, m_all, w_all)

    def mixture(self) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(a, 2 pi mu, w)``, each ``[Q]``: the envelope rates :math:`a_q = e^{\log a_q}`,
        the angular frequencies and the weights :math:`w_q` that :meth:`deriv` evaluates."""
        return self.log_a.exp(), 2 * math.pi * self.mu, self.weights

    def _deriv_part(self, z: Tensor, n: int, a: Tensor, m: Tensor, w: Tensor) -> Tensor:
        zz = z.unsqueeze(-1)
        if n == 0 and not torch.is_grad_enabled():
            return _values_inplace(self.kind, zz, a, m, w)
        env = (_gauss_env if self.kind == "gm" else _matern52_env)(zz, a, n)
        ph = m * zz
        c = torch.cos(ph)
        if n == 0:
            return (env[0] * c) @ w
        s = torch.sin(ph)
        # d^j/dz^j cos(m z) = m^j cos(m z + j pi/2): cycle cos, -sin, -cos, sin
        cyc = [c, -s, -c, s]
        tot = 0
        for k, b in enumerate(_BINOM[n]):
            j = n - k
            tot = tot + b * env[k] * (m**j) * cyc[j % 4]
        return tot @ w

    def forward(self, z: Tensor) -> Tensor:
        r"""Kernel values :math:`k(z)` for lags ``z [*]`` -> ``[*]`` (:meth:`deriv` with
        ``n = 0``)."""
        return self.deriv(z, 0)

    def gram(self, x1: Tensor, x2: Tensor | None = None, n: int = 0) -> Tensor:
        r"""Matrix :math:`[k^{(n)}(x_{1,i} - x_{2,j})]_{ij}`, ``[N1, N2]``.

        On a uniform grid with ``x2 = None`` the matrix is Toeplitz: only the ``2N - 1`` distinct
        lags are evaluated (cost :math:`O(NQ)` kernel terms instead of :math:`O(N^2 Q)`).
        ``x1`` ``[N1]``, ``x2`` ``[N2]``: 1-D tensors (a column ``[N, 1]`` is refused: its
        broadcast gave a ``[N1, N2, 1]`` result); integer points are taken in the kernel's
        dtype (the uniform-grid test failed on them with a bare dtype error). Points on
        another device than the kernel's parameters are refused by name (torch's error came
        from inside the mixture sum), and so are complex points (``TypeError``); no points
        (``N1 = 0``) give an empty matrix.
        """
        for name, x in (("x1", x1), ("x2", x2)):
            if x is not None and (not isinstance(x, Tensor) or x.ndim != 1):
                got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(
                    f"{name}: expected a 1-D tensor of points [N] (this kernel is 1-D; the "
                    f"solver's product kernel takes one per axis), received {got}"
                )
            hint = f" (move them with {name}.to('{{device}}'), or the kernel with .to('{{got}}'))"
            check_on_device(name, x, self.mu.device, "the kernel's", what="points", hint=hint)
            if x is not None and x.is_complex():  # the cast dropped the imaginary part
                raise TypeError(f"{name}: expected real points, received {x.dtype}")
        if not x1.is_floating_point():
            x1 = x1.to(self.mu.dtype)
        if x2 is not None and not x2.is_floating_point():
            x2 = x2.to(self.mu.dtype)
        if x2 is None:
            nx = x1.shape[0]
            h = uniform_step(x1)
            if h is not None:
                lags = h * torch.arange(-(nx - 1), nx, dtype=x1.dtype, device=x1.device)
                vals = self.deriv(lags, n)
                idx = torch.arange(nx, device=x1.device)
                return vals[(idx[:, None] - idx[None, :]) + nx - 1]
            x2 = x1
        return self.deriv(x1[:, None] - x2[None, :], n)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, num_mixtures={self.num_mixtures}"
