r"""Pointwise networks with exact input derivatives by forward (Taylor) mode.

The residual needs :math:`\tilde u`, :math:`\partial_x\tilde u`, :math:`\partial_{xx}\tilde u`
(and :math:`\partial_t\tilde u`) at every collocation point. Instead of nested reverse-mode
autograd (the reference code's nested tapes), each layer propagates the value ``h`` with its
derivative streams through :math:`a = Wh + b`, :math:`h' = s(a)`:

.. math:: h'_{k} = s'(a)\,a_k, \qquad h'_{kk} = s''(a)\,a_k^2 + s'(a)\,a_{kk},

with :math:`s(a) = a\,\sigma(a)` (swish). Streams are stacked on a leading axis so one matmul
serves all of them; the result is differentiated once more by ordinary autograd for training.

Streams are named: ``"v"`` (value), ``"x"``/``"t"`` (first derivative along input coordinate
0/1), ``"xx"`` (second derivative along coordinate 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_bool, check_int, check_real

__all__ = [
    "STREAM_AXIS",
    "FourierFeatures",
    "TaylorMLP",
    "swish_taylor",
    "swish_taylor_stacked",
]

STREAM_AXIS = {"x": 0, "xx": 0, "t": 1}


def swish_taylor(a: dict[str, Tensor]) -> dict[str, Tensor]:
    """Apply swish to a value and its derivative streams (dict of equal-shaped tensors: ``"v"``
    the value, ``"xx"`` only beside ``"x"``)."""
    if "v" not in a or ("xx" in a and "x" not in a):  # a bare KeyError before
        raise ValueError(
            f"a: expected the value stream 'v' (and 'x' beside 'xx'), received {sorted(a)}"
        )
    v = a["v"]
    sg = torch.sigmoid(v)
    d1 = sg * (1 + v * (1 - sg))
    out = {}
    for k, ak in a.items():
        if k == "v":
            out[k] = v * sg
        elif k == "xx":
            d2 = sg * (1 - sg) * (2 + v * (1 - 2 * sg))
            out[k] = d2 * a["x"] ** 2 + d1 * ak
        else:
            out[k] = d1 * ak
    return out


class _SwishTaylorStacked(torch.autograd.Function):
    r"""Swish on stacked streams ``a`` ``[S, ...]`` (slot 0 the value, plus ``bias`` when
    given) with a hand-written backward: it saves only ``a`` (and ``bias``) and makes one pass
    over the streams, instead of autograd's graph of ~20 elementwise nodes per layer. The
    backward is itself built from differentiable operations on ``a``, so higher derivatives
    (``create_graph=True``) stay exact.

    With :math:`q = \sigma(1 - \sigma)`: :math:`s' = \sigma + v q`,
    :math:`s'' = q\,(2 + v(1 - 2\sigma))`,
    :math:`s''' = q\,(3(1 - 2\sigma) + v(1 - 6\sigma + 6\sigma^2))`.
    """

    @staticmethod
    def forward(
        ctx,
        a: Tensor,
        bias: Tensor | None,
        first: tuple[int, ...],
        ix: int,
        ixx: int,
        grad: bool = True,
    ) -> Tensor:
        # the value stream's bias is added here, not into a copy of ``a`` (``cat``), whose
        # backward cost two zero-filled copies of the stack per layer
        v = a[0] if bias is None else a[0] + bias
        sg = torch.sigmoid(v)
        if not first and ixx < 0 and not grad:
            # the value stream alone and no backward (a posterior, under no_grad): none of the
            # derivative factors (three full-size passes and tensors), and the product in
            # v's own buffer when v is the fresh sum with the bias (of a's dtype); the same
            # numbers
            ctx.factors = None
            if bias is None or v.dtype != a.dtype:
                out = torch.empty_like(a)
                torch.mul(v, sg, out=out[0])
                return out
            return v.mul_(sg).unsqueeze(0)
        q = sg * (1 - sg)
        f1 = torch.addcmul(sg, v, q)
        out = torch.empty_like(a)
        torch.mul(v, sg, out=out[0])
        for i in first:
            torch.mul(a[i], f1, out=out[i])
        one2 = f2 = None
        if first:  # the first-order streams' factor (also the backward's)
            one2 = 1 - 2 * sg
            f2 = q * (2 + v * one2)
        if ixx >= 0:
            torch.addcmul(f1 * a[ixx], f2, a[ix] * a[ix], out=out[ixx])
        ctx.save_for_backward(a, *(() if bias is None else (bias,)))
        # the factors, for a first-order backward (a second-order one recomputes them)
        ctx.factors = (v, sg, q, one2, f1, f2)
        ctx.first, ctx.ix, ctx.ixx = first, ix, ixx
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        a, *b = ctx.saved_tensors
        first, ix, ixx = ctx.first, ctx.ix, ctx.ixx
        factors, ctx.factors = ctx.factors, None
        if torch.is_grad_enabled() or factors is None:  # create_graph (or retain_graph)
            return _SwishTaylorStacked._graph_backward(a, b, g, first, ix, ixx)
        # first order: the forward's factors, the gradients written in place
        v, sg, q, one2, f1, f2 = factors
        out = torch.empty_like(a)
        gv = torch.mul(g[0], f1, out=out[0])
        for i in first:
            torch.mul(g[i], f1, out=out[i])
            gv.addcmul_(g[i] * a[i], f2)
        if ixx >= 0:
            ax, gxx = a[ix], g[ixx]
            f3 = q * (3 * one2 + v * (1 - 6 * sg + 6 * sg * sg))
            torch.mul(gxx, f1, out=out[ixx])
            out[ix].addcmul_(gxx * ax, f2, value=2.0)
            gv.addcmul_(gxx, f3 * ax * ax + f2 * a[ixx])
        gb = gv.sum_to_size(b[0].shape) if b and ctx.needs_input_grad[1] else None
        return out, gb, None, None, None, None

    @staticmethod
    def _graph_backward(
        a: Tensor, b: list[Tensor], g: Tensor, first: tuple[int, ...], ix: int, ixx: int
    ) -> tuple[Tensor, Tensor | None, None, None, None, None]:
        """The backward as differentiable operations on ``a`` (and ``bias``, ``b``)."""
        v = a[0] + b[0] if b else a[0]
        sg = torch.sigmoid(v)
        q = sg * (1 - sg)
        one2 = 1 - 2 * sg
        f1 = torch.addcmul(sg, v, q)
        f2 = q * (2 + v * one2)
        grads: list[Tensor] = [g[0]] * a.shape[0]
        gv = g[0] * f1
        for i in first:
            grads[i] = g[i] * f1
            gv = torch.addcmul(gv, g[i] * a[i], f2)
        if ixx >= 0:
            ax, gxx = a[ix], g[ixx]
            f3 = q * (3 * one2 + v * (1 - 6 * sg + 6 * sg * sg))
            grads[ixx] = gxx * f1
            grads[ix] = torch.addcmul(grads[ix], gxx * ax, f2, value=2.0)
            gv = torch.addcmul(gv, gxx, f3 * ax * ax + f2 * a[ixx])
        grads[0] = gv
        gb = gv.sum_to_size(b[0].shape) if b else None
        return torch.stack(grads), gb, None, None, None, None


def swish_taylor_stacked(a: Tensor, keys: tuple[str, ...], bias: Tensor | None = None) -> Tensor:
    """:func:`swish_taylor` on streams stacked along axis 0 (``keys[0] == "v"``), ``a``
    ``[S, ...]`` -> ``[S, ...]``, with a fused backward (second derivatives through
    ``create_graph=True`` too). ``bias`` (broadcastable to ``a[0]`` without enlarging it):
    added to the value stream first, as if ``a[0]`` were ``a[0] + bias``."""
    if not keys or keys[0] != "v":
        raise ValueError(f"keys: expected the value stream 'v' first, received {keys}")
    if a.ndim < 1 or a.shape[0] != len(keys):
        raise ValueError(
            f"a: expected {len(keys)} stacked streams on axis 0 (keys {keys}), "
            f"received shape {tuple(a.shape)}"
        )
    if bias is not None:
        try:
            fits = torch.broadcast_shapes(bias.shape, a.shape[1:]) == a.shape[1:]
        except (RuntimeError, AttributeError):
            fits = False
        if not fits:
            got = tuple(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
            raise ValueError(
                f"bias: expected a tensor broadcastable to the value stream's shape "
                f"{tuple(a.shape[1:])}, received {got}"
            )
    first = tuple(i for i, k in enumerate(keys) if k not in ("v", "xx"))
    ix = keys.index("x") if "x" in keys else -1
    ixx = keys.index("xx") if "xx" in keys else -1
    if ixx >= 0 and ix < 0:
        raise ValueError("keys: the 'xx' stream needs the 'x' stream")
    # ``grad``: a backward can follow (a parameter's requires_grad alone does not say so:
    # under no_grad it is set, and the Function's ``needs_input_grad`` with it)
    grad = torch.is_grad_enabled() and (
        a.requires_grad or (bias is not None and bias.requires_grad)
    )
    return _SwishTaylorStacked.apply(a, bias, first, ix, ixx, grad)


class FourierFeatures(nn.Module):
    r"""Features :math:`[\sin(2\pi x_d f_j), \cos(2\pi x_d f_j)]` per input dimension ``d``.

    ``n_freq`` log-spaced frequencies in ``[f_min, f_max]`` per dimension (independent per
    dimension: the reference code's shared vector makes every feature a function of
    :math:`x + t`; fixed here, see the anchor's pitfall 3). ``x`` ``[B, N, dim]`` ->
    streams ``[B, N, 2 * dim * n_freq]``.
    """

    def __init__(self, dim: int, n_freq: int, f_min: float, f_max: float, trainable: bool):
        super().__init__()
        dim = check_int("dim", dim, minimum=1)
        n_freq = check_int("n_freq", n_freq, minimum=1)
        f_min = check_real("f_min", f_min, minimum=0.0, strict=True)
        f_max = check_real("f_max", f_max, minimum=0.0, strict=True)
        if f_min > f_max:
            raise ValueError(f"f_min/f_max: expected f_min <= f_max, received {f_min}, {f_max}")
        trainable = check_bool("trainable", trainable)
        f = torch.logspace(math.log10(f_min), math.log10(f_max), n_freq)
        freq = f.repeat(dim, 1)  # [dim, n_freq]
        if trainable:
            self.freq = nn.Parameter(freq)
        else:
            self.register_buffer("freq", freq)
        self.dim = dim

    @property
    def out_features(self) -> int:
        return 2 * self.freq.numel()

    def forward(self, x: Tensor, streams: tuple[str, ...] = ()) -> dict[str, Tensor]:
        om = 2 * math.pi * self.freq.to(x.dtype)  # [dim, F]
        p = x.unsqueeze(-1) * om  # [B, N, dim, F]
        s, c = torch.sin(p), torch.cos(p)
        out = {"v": torch.cat([s, c], -1).flatten(-2)}
        for k in streams:
            d = STREAM_AXIS[k]
            mask = torch.zeros(self.dim, 1, dtype=x.dtype, device=x.device)
            mask[d] = 1.0
            w = om * mask  # derivative of the phase along coordinate d
            if k == "xx":
                out[k] = torch.cat([-s * w**2, -c * w**2], -1).flatten(-2)
            else:
                out[k] = torch.cat([c * w, -s * w], -1).flatten(-2)
        return out


class TaylorMLP(nn.Module):
    r"""Swish MLP on ``[features(x), cond]`` propagating derivative streams w.r.t. ``x``.

    ``forward(feats, cond)``: ``feats`` dict of ``[B, N, F]`` streams, ``cond`` ``[B, C]``
    (constant in ``x``) -> dict of ``[B, N, out]`` streams.
    """

    def __init__(self, in_features: int, cond_features: int, hidden: int, depth: int, out: int):
        super().__init__()
        in_features = check_int("in_features", in_features, minimum=1)
        cond_features = check_int("cond_features", cond_features, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        out = check_int("out", out, minimum=1)
        self.inp = nn.Linear(in_features, hidden, bias=False)
        self.cond = nn.Linear(cond_features, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
        self.out = nn.Linear(hidden, out)

    def forward(self, feats: dict[str, Tensor], cond: Tensor) -> dict[str, Tensor]:
        keys = tuple(feats)
        # [S, B, N, F]; the value alone (a posterior) as a view: stack copied it
        stack = feats[keys[0]].unsqueeze(0) if len(keys) == 1 else torch.stack(list(feats.values()))
        # each layer's bias (the first layer's: the condition's term) enters the value stream
        # only, added inside the activation (a ``cat`` of the streams cost two zero-filled
        # copies of the stack per layer in the backward)
        h = swish_taylor_stacked(self.inp(stack), keys, self.cond(cond).unsqueeze(-2))
        for layer in self.hidden:
            h = swish_taylor_stacked(torch.matmul(h, layer.weight.mT), keys, layer.bias)
        v, *rest = torch.matmul(h, self.out.weight.mT).unbind(0)
        return dict(zip(keys, (v + self.out.bias, *rest)))
