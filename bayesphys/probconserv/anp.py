r"""A small attentive neural process (ANP) for Step 1, written for bayesphys.

Architecture (after Kim et al., ICLR 2019, as used by Hansen et al. 2023, scaled down to train
on a CPU in minutes):

* inputs :math:`x = (t, x)` are affinely normalised to :math:`[0, 1]^2` (``lo``, ``hi``);
* deterministic path: :math:`h_i = \mathrm{MLP}([x_i, y_i])`, ``n_self`` self-attention blocks,
  then cross-attention with queries :math:`\mathrm{proj}(x_*)`, keys :math:`\mathrm{proj}(x_i)`,
  values :math:`h_i` giving :math:`r_* \in \mathbb R^H`;
* latent path: MLP + self-attention + mean pool to :math:`q(z \mid C) = \mathcal N(m_z, s_z^2)`,
  :math:`z \in \mathbb R^H`;
* decoder: :math:`[r_*, z, \mathrm{proj}(x_*)] \to (\mu_*, \sigma_*)`,
  :math:`\sigma = 10^{-3} + \mathrm{softplus}(\cdot)`.

Loss (per function, averaged over targets):
:math:`-\frac1{N_T}\sum_j \log\mathcal N(y_j\mid\mu_j,\sigma_j^2) + \frac1{N_T}
\mathrm{KL}\big(q(z\mid C\cup T)\,\|\,q(z\mid C)\big)`.

Prediction with ``S`` latent draws: per point :math:`\bar\mu = \frac1S\sum_s\mu_s`,
:math:`\bar\sigma^2 = \frac1S\sum_s\sigma_s^2`; the covariance is either the reference's
moment-matched diagonal :math:`\operatorname{diag}(\bar\sigma^2 + \mathrm{Var}_s\mu_s)`
(:math:`\mathrm{Var}_s` with :math:`1/S`, as the low-rank root below; the reference's
``loc.var(0)`` divides by :math:`S - 1`, a factor :math:`S/(S-1)` on that term only) or the
low-rank-plus-diagonal :math:`\operatorname{diag}(\bar\sigma^2) + R R^\top`,
:math:`R = [\mu_s - \bar\mu]_s / \sqrt{S}` (``N x S``), which keeps the correlations the latent
variable induces across the grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int, check_real
from .._detached import no_grad_detached
from .._device import check_module_dtype, check_on_device

__all__ = ["AttentiveNP"]

# points per block of the chunked decoder (:func:`_chunked`; 8192 x 2H floats: 4 MB at H = 64)
_CHUNK_ROWS = 8192


def check_box(lo, hi) -> tuple[tuple[float, float], tuple[float, float]]:
    """The input box ``lo = (t0, x0)``, ``hi = (t1, x1)`` as floats with ``lo < hi`` in each
    coordinate (the inputs are normalised by ``hi - lo``), or an error naming ``lo``/``hi``."""
    out = []
    for name, v in (("lo", lo), ("hi", hi)):
        try:
            a, b = v
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected (t, x), received {v!r}") from None
        out.append((check_real(f"{name}[0]", a), check_real(f"{name}[1]", b)))
    if not (out[0][0] < out[1][0] and out[0][1] < out[1][1]):
        raise ValueError(f"lo, hi: expected lo < hi in t and in x, received {lo}, {hi}")
    return out[0], out[1]


def check_set_shapes(
    xc: object,
    yc: object,
    xt: object = None,
    yt: object = None,
    *,
    ref: Tensor,
    owner: str,
    same_dtype: bool = False,
) -> None:
    """The structural checks of contexts ``xc [B, Nc, 2]``, ``yc [B, Nc]`` and, where given,
    targets ``xt [B, Nt, 2]``, ``yt [B, Nt]`` (``B, Nc, Nt >= 1``): floating tensors of these
    shapes on the device of ``ref`` (a weight of the network ``owner``) and, with
    ``same_dtype``, in its dtype (``TypeError`` / ``ValueError`` naming the argument and the
    shape received). No value is read (no device synchronisation: fit for a training step).
    A one-coordinate ``x [B, N, 1]`` was broadcast against the two-coordinate box and read as
    :math:`(x, x)`; a ``yc`` of one point ``[B, 1]`` or without the batch axis ``[Nc]``, or an
    ``xc`` of one function ``[1, Nc, 2]``, was broadcast over the batch by gpytorch; an integer
    ``y`` was promoted; an empty set gave NaN or a reshape error."""
    pairs = [("xc", xc), ("yc", yc), ("xt", xt), ("yt", yt)]
    pairs = [(n, v) for n, v in pairs if v is not None or n in ("xc", "yc")]
    for name, v in pairs:
        if not isinstance(v, Tensor) or not v.is_floating_point():
            got = f"dtype {v.dtype}" if isinstance(v, Tensor) else type(v).__name__
            raise TypeError(f"{name}: expected a real floating tensor, received {got}")
    if xc.ndim != 3 or xc.shape[-1] != 2 or 0 in xc.shape[:2]:
        raise ValueError(
            f"xc: expected shape [B, Nc, 2] (t, x) with B, Nc >= 1, received {tuple(xc.shape)}"
        )
    b = xc.shape[0]
    if tuple(yc.shape) != tuple(xc.shape[:2]):
        raise ValueError(
            f"yc: expected shape {tuple(xc.shape[:2])} (as xc), received {tuple(yc.shape)}"
        )
    if xt is not None and (
        xt.ndim != 3 or xt.shape[0] != b or xt.shape[-1] != 2 or xt.shape[1] == 0
    ):
        raise ValueError(
            f"xt: expected shape [{b}, Nt, 2] with Nt >= 1, received {tuple(xt.shape)}"
        )
    if yt is not None and (xt is None or tuple(yt.shape) != tuple(xt.shape[:2])):
        want = tuple(xt.shape[:2]) if xt is not None else "[B, Nt]"
        raise ValueError(f"yt: expected shape {want} (as xt), received {tuple(yt.shape)}")
    for name, v in pairs:
        if same_dtype:
            check_module_dtype(name, v, ref.dtype, owner)
        hint = f" (move it with {name}.to('{{device}}'), or the {owner} with .to('{{got}}'))"
        check_on_device(name, v, ref.device, f"the {owner}'s", hint=hint)


def check_sets(xc, yc, xt, *, ref: Tensor, owner: str, same_dtype: bool = False) -> None:
    """:func:`check_set_shapes` of contexts ``xc [B, Nc, 2]``, ``yc [B, Nc]`` and targets
    ``xt [B, Nt, 2]``, and their values finite (``ValueError`` naming the argument): a NaN
    context gave NaN predictions without a word, complex values and mismatched shapes failed
    inside torch or gpytorch."""
    check_set_shapes(xc, yc, xt, ref=ref, owner=owner, same_dtype=same_dtype)
    for name, v in (("xc", xc), ("yc", yc), ("xt", xt)):
        if not bool(torch.isfinite(v).all()):
            raise ValueError(
                f"{name}: expected finite values, received {int((~torch.isfinite(v)).sum())} "
                "NaN/Inf entries"
            )


class _Attention(nn.Module):
    r"""Multi-head dot-product attention written out (twice differentiable, for SoftC):
    :math:`\mathrm{softmax}(Q K^\top / \sqrt d)\,V` per head, ``d = h / heads``. The queries
    ``[B, heads, N, d]`` are scaled, not the scores ``[B, heads, N, M]``: fewer operations, and
    the same numbers bit for bit when :math:`\sqrt d` is a power of two (the default ``d = 16``),
    since scaling by a power of two is exact in floating point."""

    def __init__(self, h: int, heads: int):
        super().__init__()
        if h % heads:
            raise ValueError(f"hidden: expected a multiple of heads={heads}, received {h}")
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        def split(z: Tensor) -> Tensor:
            return z.reshape(*z.shape[:-1], self.heads, -1).transpose(-2, -3)

        qh, kh, vh = split(self.q(q)), split(self.k(k)), split(self.v(v))
        w = torch.softmax((qh / qh.shape[-1] ** 0.5) @ kh.mT, -1)
        out = (w @ vh).transpose(-2, -3)
        return self.o(out.reshape(*out.shape[:-2], -1))


class _Block(nn.Module):
    def __init__(self, h: int, heads: int):
        super().__init__()
        self.att = _Attention(h, heads)
        self.ln1 = nn.LayerNorm(h)
        self.ff = nn.Sequential(nn.Linear(h, 2 * h), nn.ReLU(), nn.Linear(2 * h, h))
        self.ln2 = nn.LayerNorm(h)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        a = self.att(q, k, v)
        q = self.ln1(q + a)
        return self.ln2(q + self.ff(q))


def _mlp(i: int, h: int, o: int, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(i, h), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(h, h), nn.ReLU()]
    layers.append(nn.Linear(h, o))
    return nn.Sequential(*layers)


class AttentiveNP(nn.Module):
    r"""Attentive NP on 2-D inputs ``(t, x)`` and scalar outputs.

    Shapes: ``xc [B, Nc, 2]``, ``yc [B, Nc]``, ``xt [B, Nt, 2]``. There is no ``forward``:
    :meth:`decode` ``(deterministic(xc, yc, xt), z, xt)`` gives ``mu, sigma [B, Nt]`` for one
    latent ``z [B, H]`` (``H = hidden``), and :meth:`predict` gives ``mu, sigma [S, B, Nt]``
    for ``S = n_samples`` latent draws from :math:`q(z \mid x_c, y_c)`.
    """

    def __init__(
        self,
        lo: tuple[float, float],
        hi: tuple[float, float],
        hidden: int = 64,
        heads: int = 4,
        n_self: int = 1,
        n_cross: int = 1,
    ):
        lo, hi = check_box(lo, hi)
        hidden = check_int("hidden", hidden, minimum=1)
        heads = check_int("heads", heads, minimum=1)
        n_self = check_int("n_self", n_self, minimum=0)
        n_cross = check_int("n_cross", n_cross, minimum=0)
        super().__init__()
        self.register_buffer("lo", torch.tensor(lo, dtype=torch.float32))
        self.register_buffer("hi", torch.tensor(hi, dtype=torch.float32))
        h = hidden
        self.det_in = _mlp(3, h, h)
        self.det_self = nn.ModuleList([_Block(h, heads) for _ in range(n_self)])
        self.proj = _mlp(2, h, h)
        self.cross = nn.ModuleList([_Block(h, heads) for _ in range(n_cross)])
        self.lat_in = _mlp(3, h, h)
        self.lat_self = nn.ModuleList([_Block(h, heads) for _ in range(n_self)])
        self.lat_head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2 * h))
        self.dec = _mlp(3 * h, 2 * h, 2, depth=3)
        self.hidden = h

    def _norm(self, x: Tensor) -> Tensor:
        return (x - self.lo) / (self.hi - self.lo)

    def latent(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`q(z\\mid\\{x, y\\})`: mean and sd ``[B, H]``."""
        s = self.lat_in(torch.cat([self._norm(x), y.unsqueeze(-1)], -1))
        for blk in self.lat_self:
            s = blk(s, s, s)
        mz, ls = self.lat_head(s.mean(1)).chunk(2, -1)
        return mz, 0.01 + 0.99 * torch.sigmoid(ls)

    def deterministic(self, xc: Tensor, yc: Tensor, xt: Tensor) -> Tensor:
        """Cross-attended representation ``r [B, Nt, H]``."""
        h = self.det_in(torch.cat([self._norm(xc), yc.unsqueeze(-1)], -1))
        for blk in self.det_self:
            h = blk(h, h, h)
        q, k = self.proj(self._norm(xt)), self.proj(self._norm(xc))
        for blk in self.cross:
            q = blk(q, k, h)
        return q

    def decode(self, r: Tensor, z: Tensor, xt: Tensor) -> tuple[Tensor, Tensor]:
        """``r [*, B, Nt, H]``, ``z [*, B, H]`` -> ``mu, sigma [*, B, Nt]``."""
        lead = torch.broadcast_shapes(r.shape[:-2], z.shape[:-1])
        nt, h = r.shape[-2], r.shape[-1]
        r = r.expand(*lead, nt, h)
        zt = z.unsqueeze(-2).expand(*lead, nt, z.shape[-1])
        px = self.proj(self._norm(xt)).expand(*lead, nt, h)
        out = self.dec(torch.cat([r, zt, px], -1))
        return out[..., 0], 1e-3 + F.softplus(out[..., 1])

    def loss(
        self,
        xc: Tensor,
        yc: Tensor,
        xt: Tensor,
        yt: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        r"""Negative ELBO (per target point, batch mean) and the decoded predictive.

        ``xc [B, Nc, 2]``, ``yc [B, Nc]``, ``xt [B, Nt, 2]``, ``yt [B, Nt]`` -> ``(loss [],
        mu [B, Nt], sigma [B, Nt])``; ``mu``/``sigma`` (for penalties) are decoded at ``xt``
        with one latent draw :math:`z = \mu_z + \sigma_z \varepsilon` from
        :math:`q(z \mid x_c \cup x_t, y_c \cup y_t)`, taking :math:`\varepsilon` from
        ``generator`` (``None``: torch's global generator). The four tensors must be floating,
        in the network's dtype and on its device, of these shapes with ``B, Nc, Nt >= 1``
        (:func:`check_set_shapes`: structural checks only, no value is read)."""
        check_set_shapes(
            xc, yc, xt, yt, ref=self.dec[0].weight, owner="AttentiveNP", same_dtype=True
        )
        mz_c, sz_c = self.latent(xc, yc)
        mz_a, sz_a = self.latent(torch.cat([xc, xt], 1), torch.cat([yc, yt], 1))
        eps = torch.randn(sz_a.shape, dtype=sz_a.dtype, device=sz_a.device, generator=generator)
        z = mz_a + sz_a * eps
        r = self.deterministic(xc, yc, xt)
        mu, sig = self.decode(r, z, xt)
        nll = -torch.distributions.Normal(mu, sig).log_prob(yt).mean()
        kl = torch.distributions.kl_divergence(
            torch.distributions.Normal(mz_a, sz_a), torch.distributions.Normal(mz_c, sz_c)
        ).sum(-1)
        return nll + (kl / yt.shape[1]).mean(), mu, sig

    @no_grad_detached("xc", "yc", "xt")
    def predict(
        self,
        xc: Tensor,
        yc: Tensor,
        xt: Tensor,
        n_samples: int = 32,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Latent draws: means ``[S, B, Nt]`` and sds ``[S, B, Nt]`` (``S = n_samples >= 1``)
        for contexts ``xc [B, Nc, 2]``, ``yc [B, Nc]`` and targets ``xt [B, Nt, 2]`` (finite
        floating tensors in the network's dtype and on its device, refused otherwise).
        Computed without gradient (inputs that require grad are a ``UserWarning``); the
        training objective :meth:`loss` is differentiable. The latent noise ``[S, B, H]`` is
        drawn as one block from ``generator``, so a function's draws depend on the other
        functions of the call and their order (:meth:`ProbConserv.posterior
        <bayesphys.probconserv.ProbConserv.posterior>` draws each function's noise from a
        stream of its own); the decoded means and sds given the latent draws do not."""
        n_samples = check_int("n_samples", n_samples, minimum=1)
        check_sets(xc, yc, xt, ref=self.dec[0].weight, owner="AttentiveNP", same_dtype=True)
        mz, sz = self.latent(xc, yc)
        eps = torch.randn(
            (n_samples, *mz.shape), dtype=mz.dtype, device=mz.device, generator=generator
        )
        return self._predict_noise(xc, yc, xt, eps, (mz, sz))

    def _predict_noise(
        self,
        xc: Tensor,
        yc: Tensor,
        xt: Tensor,
        eps: Tensor,
        latent: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """:meth:`predict` with its standard normal latent noise ``eps [S, B, H]`` given
        (inputs checked by the caller): ``z = mu_z + sigma_z eps``; ``latent``: ``(mu_z,
        sigma_z)`` when already computed."""
        mz, sz = self.latent(xc, yc) if latent is None else latent
        r = self.deterministic(xc, yc, xt)
        return self._decode_draws(r, mz + sz * eps, xt)

    def _decode_draws(self, r: Tensor, z: Tensor, xt: Tensor) -> tuple[Tensor, Tensor]:
        r""":meth:`decode` of ``S`` latent draws ``z [S, B, H]`` at one ``r [B, Nt, H]``.

        The decoder's first layer is affine in its input ``[r, z, proj(x)]``, so
        :math:`W[r, z, p] + b = (W_r r + W_p p + b) + W_z z`: the point part is computed once
        and the draws add their ``[S, B, 2H]`` part, instead of the layer running on the
        ``[S, B, Nt, 3H]`` concatenation (the same values to float round-off; about half the
        decoder's multiply-adds and none of the concatenation's memory)."""
        first, rest = self.dec[0], self.dec[1:]
        h = self.hidden
        w_r, w_z, w_p = first.weight[:, :h], first.weight[:, h : 2 * h], first.weight[:, 2 * h :]
        px = self.proj(self._norm(xt))
        point = F.linear(r, w_r) + F.linear(px, w_p, first.bias)  # [B, Nt, 2H]
        zpart = F.linear(z, w_z).unsqueeze(-2)  # [S, B, 1, 2H]
        if point.device.type == "cpu" and not torch.is_grad_enabled():
            out = _chunked(rest, point, zpart)
        else:
            out = rest(point + zpart)  # [S, B, Nt, 2]
        return out[..., 0], 1e-3 + F.softplus(out[..., 1])


def _split(n: int, size: int) -> list[slice]:
    """``range(n)`` in ``ceil(n / size)`` contiguous slices of (nearly) equal length."""
    k = -(-n // size)
    bounds = [n * i // k for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _chunked(rest: nn.Module, point: Tensor, zpart: Tensor, rows: int = _CHUNK_ROWS) -> Tensor:
    r"""``rest(point + zpart)`` for ``point [B, Nt, C]``, ``zpart [S, B, 1, C]`` in blocks of
    about ``rows`` points (whole draws, or functions of one draw): the same numbers to the
    round-off of the matrix products (every layer acts point by point) without the
    ``[S, B, Nt, C]`` intermediates, which for a calibration's ``32 x 200 x 201`` points are
    hundreds of MB each (memory-bound: several times slower on a CPU). A BLAS may round a
    row of a product by the matrix's row count and thread split: MKL's AVX-512 kernels take
    another path for matrices under 16 rows only, and blocks are split evenly, none far below
    ``rows / 4`` points, so they give the whole tensor's bits; its AVX2 kernels round the
    last (rows mod 6) rows of a product apart, as may a product split over threads by its
    size (``MKL_CBWR=COMPATIBLE`` on 2 threads): those differ from it in the last bits.
    Sets of at most ``2 rows`` points are not split."""
    b, nt = point.shape[-3], point.shape[-2]
    s = zpart.shape[0]
    if s * b * nt <= 2 * rows:
        return rest(point + zpart)
    if b * nt <= rows:  # several draws, every function
        blocks = [(i, slice(None)) for i in _split(s, max(1, rows // (b * nt)))]
    else:  # one draw, several functions
        fb = _split(b, max(1, rows // nt))
        blocks = [(i, j) for i in range(s) for j in fb]
    out: Tensor | None = None
    for si, bi in blocks:
        y = rest(point[bi] + zpart[si, bi])
        if out is None:
            out = y.new_empty((s, b, nt, y.shape[-1]))
        out[si, bi] = y
    return out
