r"""Forward model :math:`q_\alpha(\tilde u \mid z, w, X)`: a Gaussian process over the field.

A pointwise network maps :math:`(x, z, w) \mapsto (\mu(x), \sigma^2(x), c(x) \in \mathbb R^k)`.
On any point set :math:`X = (x_1..x_N)`:

.. math:: \tilde u(X) \sim \mathcal N\big(\mu(X),\; \operatorname{diag}\sigma^2(X) + C C^\top\big),
          \qquad C_{i\cdot} = c(x_i)^\top,

so the laws on different point sets are marginals of one another: a GP with mean :math:`\mu`
and kernel :math:`k(x, x') = c(x)^\top c(x') + \sigma^2(x)\,\mathbb 1[x = x']`.
:math:`\sigma^2 = lo + (hi - lo)\,\mathrm{sigmoid}(r)` (``var_lo``, ``var_hi``; the
model's networks use ``hi = 1``).
The physical field is :math:`u = B + D\tilde u` (exact Dirichlet conditions), again a GP.

A reparameterised draw is :math:`\tilde u = \mu + \sigma\odot\varepsilon + C\eta`,
:math:`\varepsilon \sim \mathcal N(0, I_N)`, :math:`\eta \sim \mathcal N(0, I_k)`; its
:math:`x`-derivatives are those of the pointwise expression, as in the reference code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import LowRankMultivariateNormal

from .._checks import check_bool, check_int, check_real, did_you_mean
from .._device import check_module_inputs
from .taylor import STREAM_AXIS, FourierFeatures, TaylorMLP

__all__ = ["ForwardNet"]


def _check_streams(streams, dim_x: int) -> tuple[str, ...]:
    """``streams`` as a tuple of known derivative-stream names (``"x"``, ``"xx"``, ``"t"``);
    an unknown name gave a bare ``KeyError`` deep in the feature map."""
    valid = tuple(STREAM_AXIS)
    if isinstance(streams, (str, bytes)):
        raise TypeError(
            f"streams: expected a tuple of stream names from {valid}, received the string "
            f"{streams!r} (write ({streams!r},) for one stream)"
        )
    streams = tuple(streams)
    for s in streams:
        if not isinstance(s, str) or s not in STREAM_AXIS:
            raise ValueError(
                f"streams: expected names from {valid} ('x'/'xx': first/second derivative along "
                f"coordinate 0, 't': first derivative along coordinate 1), received "
                f"{s!r}{did_you_mean(s, valid)}"
            )
    if "xx" in streams and "x" not in streams:
        raise ValueError(f"streams: the 'xx' stream needs the 'x' stream, received {streams}")
    if "t" in streams and dim_x < 2:
        raise ValueError(
            f"streams: 't' differentiates along coordinate 1, but dim_x = {dim_x}, received "
            f"{streams}"
        )
    return streams


class ForwardNet(nn.Module):
    """Pointwise Fourier-feature MLP giving mean, variance and a rank-``k`` factor per point.

    Parameters
    ----------
    dim_x, dim_z, dim_w
        input sizes.
    hidden, depth
        MLP width and number of hidden layers.
    n_freq, f_min, f_max, train_freq
        Fourier features.
    rank
        ``k``.
    var_lo, var_hi
        variance bounds, ``0 < var_lo < var_hi``.

    Notes
    -----
    Sizes are ints ``>= 1`` (``dim_w >= 0``), frequencies ``0 < f_min <= f_max``,
    ``train_freq`` a bool.
    """

    def __init__(
        self,
        dim_x: int,
        dim_z: int,
        dim_w: int,
        *,
        hidden: int = 300,
        depth: int = 7,
        n_freq: int = 100,
        f_min: float = 1e-3,
        f_max: float = 2.0,
        train_freq: bool = False,
        rank: int = 2,
        var_lo: float = 1e-4,
        var_hi: float = 1.0,
    ):
        super().__init__()
        dim_x = check_int("dim_x", dim_x, minimum=1)
        dim_z = check_int("dim_z", dim_z, minimum=1)
        dim_w = check_int("dim_w", dim_w, minimum=0)
        rank = check_int("rank", rank, minimum=1)
        var_lo = check_real("var_lo", var_lo, minimum=0.0, strict=True)
        var_hi = check_real("var_hi", var_hi)
        if not var_lo < var_hi:
            raise ValueError(
                f"var_lo/var_hi: expected 0 < var_lo < var_hi, received {var_lo}, {var_hi}"
            )
        train_freq = check_bool("train_freq", train_freq)
        self.features = FourierFeatures(dim_x, n_freq, f_min, f_max, train_freq)
        self.rank = rank
        self.dim_x, self.dim_z, self.dim_w = dim_x, dim_z, dim_w
        self.var_lo, self.var_hi = var_lo, var_hi
        self.mlp = TaylorMLP(self.features.out_features, dim_z + dim_w, hidden, depth, 2 + rank)

    def heads(self, x: Tensor, z: Tensor, w: Tensor, streams: tuple[str, ...] = ()) -> dict:
        r"""Mean, std and factor with derivative streams.

        ``x`` ``[B, N, dim_x]``, ``z`` ``[B, dim_z]``, ``w`` ``[B, dim_w]`` ->
        ``{"mu": {s: [B, N]}, "sd": {s: [B, N]}, "C": {s: [B, N, k]}}`` for ``s`` in
        ``("v", *streams)`` (``"v"``: the value). ``streams``: a tuple of names from ``"x"``
        (:math:`\partial_{x_0}`), ``"xx"`` (:math:`\partial^2_{x_0}`, needs ``"x"``) and
        ``"t"`` (:math:`\partial_{x_1}`, needs ``dim_x >= 2``); anything else is a
        ``ValueError``. ``z`` and ``w`` may also hold one row shared by the ``B`` sets; other
        shapes are a ``ValueError`` (a one-coordinate ``x`` of a 2-D network broadcast to
        :math:`(x, x)`, and ``z``/``w`` of the wrong widths were split at the wrong column).
        """
        self._check_inputs(x, z, w)
        streams = _check_streams(streams, self.features.dim)
        o = self.mlp(self.features(x, streams), torch.cat([z, w], -1))
        mu = {k: v[..., 0] for k, v in o.items()}
        C = {k: v[..., 2:] for k, v in o.items()}
        r = o["v"][..., 1]
        sg = torch.sigmoid(r)
        span = self.var_hi - self.var_lo
        var = self.var_lo + span * sg
        sd = var.sqrt()
        sds = {"v": sd}
        d1 = span * sg * (1 - sg)  # d var / d r
        for k in streams:
            if k == "xx":
                continue
            var_k = d1 * o[k][..., 1]
            sds[k] = var_k / (2 * sd)
        if "xx" in streams:
            rx, rxx = o["x"][..., 1], o["xx"][..., 1]
            d2 = d1 * (1 - 2 * sg)
            var_x = d1 * rx
            var_xx = d2 * rx**2 + d1 * rxx
            sds["xx"] = var_xx / (2 * sd) - var_x**2 / (4 * sd**3)
        return {"mu": mu, "sd": sds, "C": C}

    def _check_inputs(self, x: Tensor, z: Tensor, w: Tensor) -> None:
        """``x [B, N, dim_x]`` (``B >= 1``), ``z [B, dim_z]``, ``w [B, dim_w]`` (``z``, ``w``: or
        one row), tensors in the network's dtype and on its device (``TypeError`` / ``ValueError``
        otherwise, naming the argument)."""
        check_module_inputs("ForwardNet", self.mlp.out.weight, x=x, z=z, w=w)
        if x.ndim == 3 and x.shape[0] == 0:  # was a reshape error inside the MLP
            raise ValueError(
                f"x: expected B >= 1 sets of points [B, N, {self.dim_x}], received shape "
                f"{tuple(x.shape)}"
            )
        ok = x.ndim == 3 and x.shape[-1] == self.dim_x and z.ndim == w.ndim == 2
        ok = ok and z.shape[-1] == self.dim_z and w.shape[-1] == self.dim_w
        ok = ok and z.shape[0] == w.shape[0] and z.shape[0] in (1, x.shape[0])
        if not ok:
            raise ValueError(
                f"x/z/w: expected shapes [B, N, {self.dim_x}], [B, {self.dim_z}], "
                f"[B, {self.dim_w}] (z, w: or one row each), received {tuple(x.shape)}, "
                f"{tuple(z.shape)}, {tuple(w.shape)}"
            )

    def distribution(self, x: Tensor, z: Tensor, w: Tensor) -> LowRankMultivariateNormal:
        r""":math:`q(\tilde u(X))` as ``LowRankMultivariateNormal`` (batch ``[B]``, event
        ``[N]``)."""
        h = self.heads(x, z, w)
        return LowRankMultivariateNormal(h["mu"]["v"], h["C"]["v"], h["sd"]["v"] ** 2)

    def sample_with_derivatives(
        self,
        x: Tensor,
        z: Tensor,
        w: Tensor,
        streams: tuple[str, ...],
        generator: torch.Generator | None = None,
    ) -> tuple[dict[str, Tensor], LowRankMultivariateNormal]:
        r"""One reparameterised draw :math:`\tilde u = \mu + \sigma\varepsilon + C\eta` per instance
        with its derivative streams, and the law it was drawn from.

        ``x [B, N, dim_x]``, ``z [B, dim_z]``, ``w [B, dim_w]`` -> ``({s: [B, N]}`` for ``s`` in
        ``("v", *streams)``, the law ``q`` with batch ``[B]``, event ``[N]``). ``streams`` as in
        :meth:`heads`: names from ``"x"``, ``"xx"`` (needs ``"x"``), ``"t"`` (needs
        ``dim_x >= 2``).
        """
        streams = _check_streams(streams, self.features.dim)
        h = self.heads(x, z, w, streams)
        bsz, n = x.shape[:2]
        eps = torch.randn(bsz, n, dtype=x.dtype, device=x.device, generator=generator)
        eta = torch.randn(bsz, self.rank, 1, dtype=x.dtype, device=x.device, generator=generator)
        out = {}
        for k in ("v", *streams):
            out[k] = h["mu"][k] + h["sd"][k] * eps + (h["C"][k] @ eta)[..., 0]
        q = LowRankMultivariateNormal(h["mu"]["v"], h["C"]["v"], h["sd"]["v"] ** 2)
        return out, q
