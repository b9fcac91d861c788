r"""GICNet: a grid-invariant convolutional inverse network :math:`p_\beta(z \mid \tilde u, X, w)`.

Input: a set :math:`\{(x_i, v_i)\}_{i=1}^N` of any size and layout, plus known parameters ``w``.

1. **Lift** :math:`v_i \in \mathbb R^{d_u} \mapsto \ell_i \in \mathbb R^P` (pointwise MLP, swish).
2. **Kernel interpolation** onto a fixed latent grid :math:`G`, one lengthscale per channel:

   .. math:: h_j(g) = \frac{\sum_i k_j(g, x_i)\,\ell_{ij}}{\sum_i k_j(g, x_i) + 10^{-6}},
             \qquad k_j(g, x) = \exp\!\big(-\lVert g - x\rVert^2 / (2\lambda_j^2)\big),

   with trainable :math:`\lambda_j` initialised log-spaced from 1 to :math:`10^{-3}`
   (Nadaraya-Watson, a multi-lengthscale SetConv; ``ell_min`` raises the shortest initial one —
   lengthscales far below the point spacing make a channel depend on which points fall
   next to a latent node, i.e. break grid invariance). The output depends on the set only
   through kernel averages, hence (approximately) not on :math:`N` or the layout.
3. Grid coordinates are appended and a CNN (Conv1d / Conv2d, valid padding) follows,
   then Flatten -> Dense -> Dense (linear).
4. A trunk MLP on ``w``; a head MLP on both gives
   :math:`p_\beta(z) = \mathcal N(m, \operatorname{diag} s^2 + F F^\top)` (``rank`` columns).

Shapes: ``x`` ``[B, N, dim_x]``, ``v`` ``[B, N, d_u]``, ``w`` ``[B, dim_w]`` ->
``LowRankMultivariateNormal`` with batch ``[B]`` and event ``[dim_z]``.

The lengthscales are absolute (units of :math:`x`), not fractions of the domain box: their
defaults suit boxes of order 1 (the registered problems: :math:`[-1, 1]` and
:math:`[0, 1]^2`). Measured at initialisation (30 uniform points, 20 latent nodes, 20
channels, default lengthscales, features :math:`\sin(2\pi x/L)` on :math:`[0, L]`): the best
channel's rms error at the latent nodes is 0.11 for :math:`L` from 0.05 to 40 (the points'
sampling error; from 2 to 40 with ``ell_min = 0.05``, 0.23 at 0.5); at
:math:`L = 10^3` 80 % of the nodes have no point within reach of any channel and the error
is 0.58, at :math:`L = 10^{-3}` every channel is at least as wide as the box and the error is 0.67
(0.70 with ``ell_min = 0.05``). GICNet therefore warns when an axis is longer than
:data:`LONG_AXIS_ELLS` times ``ell_max`` or shorter than :data:`SHORT_AXIS_ELLS` times
``ell_min``; rescale :math:`x` to order 1, or give ``ell_max``/``ell_min`` in the box's units
(the grid coordinates the CNN reads are in those units too).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import LowRankMultivariateNormal

from .._checks import check_bool, check_dense_memory, check_int, check_real
from .._device import check_finite, check_module_inputs
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from .grids import check_box

__all__ = ["GICNet", "KernelInterpolation"]

#: an axis longer than this many ``ell_max`` leaves latent nodes with no observation point
#: within reach of any channel (module docstring: 12 % of them at 100 ``ell_max``, 80 % at 1000)
LONG_AXIS_ELLS = 50.0
#: an axis shorter than this many ``ell_min`` has no channel that resolves it: every channel
#: averages over (nearly) the whole box (the best channel's error doubled at 10 ``ell_min``)
SHORT_AXIS_ELLS = 10.0


def check_tensors(names: Sequence[str], values: Sequence[object]) -> None:
    """Refuse the ``values`` (each named by its entry of ``names``) that are not tensors (of
    any shape): a ``TypeError`` naming them and their types (``"x/feat: expected
    torch.Tensors, received list, list"``)."""
    bad = [(n, type(v).__name__) for n, v in zip(names, values) if not isinstance(v, Tensor)]
    if len(bad) == 1:
        raise TypeError(f"{bad[0][0]}: expected a torch.Tensor, received {bad[0][1]}")
    if bad:
        got = ", ".join(t for _, t in bad)
        raise TypeError(f"{'/'.join(n for n, _ in bad)}: expected torch.Tensors, received {got}")


def warn_box_scale(
    lower: Sequence[float], upper: Sequence[float], ell_max: float, ell_min: float
) -> None:
    """Warn (``UserWarning``) for each axis of the box ``[lower, upper]`` too long or too short
    for the initial lengthscales ``ell_max``..``ell_min`` (the module docstring's measurements:
    longer than :data:`LONG_AXIS_ELLS` ``ell_max``, shorter than :data:`SHORT_AXIS_ELLS`
    ``ell_min``)."""
    for j, (lo, hi) in enumerate(zip(lower, upper)):
        length = hi - lo
        if length > LONG_AXIS_ELLS * ell_max:
            why = (
                f"longer than {LONG_AXIS_ELLS:g} x ell_max={ell_max:g}: observation points "
                "fall out of reach of every channel at most latent nodes (on a 1000-long box "
                "80 % of the nodes saw no point)"
            )
        elif length < SHORT_AXIS_ELLS * ell_min:
            why = (
                f"shorter than {SHORT_AXIS_ELLS:g} x ell_min={ell_min:g}: every channel "
                "averages over nearly the whole box and none resolves the field along it"
            )
        else:
            continue
        warnings.warn(
            f"GICNet: axis {j} of the domain box spans {length:.3g} units, {why}. The "
            "kernel-interpolation lengthscales are absolute, initialised for a box of order 1; "
            "rescale x so that the box spans order 1, or pass ell_max and ell_min in the box's "
            f"units (e.g. ell_max={length / 2:.3g}, ell_min={length / 40:.3g}: the RGNP "
            "Poisson preset's ratios)",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.SiLU()]
    return nn.Sequential(*layers)


#: what to do when the kernel weights of an interpolation cannot fit in memory
_KERNEL_ALTERNATIVE = "pass fewer sets (B) or fewer points per set (N) at a time (a subsample)"


def check_kernel_memory(
    name: str,
    net: GICNet | KernelInterpolation,
    b: int,
    n: int,
    *,
    dtype: torch.dtype,
    device: torch.device | str | None,
    copies: int = 1,
    alternative: str = _KERNEL_ALTERNATIVE,
) -> None:
    """Refuse (``MemoryError`` naming ``name``, the argument that sets the sizes; a warning
    above half the memory) the kernel interpolation of ``net`` (its ``P`` channels onto ``M``
    latent nodes) of ``b`` sets of ``n`` points in ``dtype`` on ``device`` when it cannot
    fit: ``copies`` dense kernel weights ``[B, P, M, N]`` (1 without gradients; 2 with the
    backward's buffer; 4 through autograd's graph) and the squared distances ``[B, M, N]``
    with two copies."""
    kip = net.kip if isinstance(net, GICNet) else net
    p, m = kip.log_ell.numel(), kip.grid.shape[0]
    size = torch.empty((), dtype=dtype).element_size()
    check_dense_memory(
        name,
        size * (copies * b * p * m * n + 3 * b * m * n),
        what=f"the kernel interpolation of {b} set(s) of {n} points onto {m} latent nodes in "
        f"{p} channels (dense [{b}, {p}, {m}, {n}] kernel weights, {dtype})",
        alternative=alternative,
        device=device,
    )


def _kernel_average(nd2: Tensor, inv: Tensor, feat: Tensor) -> tuple[Tensor, Tensor]:
    """Nadaraya-Watson averages ``[B, P, M]`` of ``feat [B, N, P]`` with weights
    ``k = exp(nd2 * inv)`` (``nd2 = -d^2 [B, 1, M, N]``, ``inv = 1 / (2 l^2) [P]``), and the
    weights' sums ``[B, P, M]``."""
    k = torch.exp(nd2 * inv[None, :, None, None])  # [B, P, M, N]
    num = torch.einsum("bpmn,bnp->bpm", k, feat)
    ks = k.sum(-1)
    return num / (ks + 1e-6), ks


class _KernelAverage(torch.autograd.Function):
    """:func:`_kernel_average` (no gradient in ``nd2``) with a hand-written backward that gives
    autograd's gradients bit for bit: the weights' gradient ``[B, P, M, N]`` is built in one
    buffer (autograd: an outer product by a batched matmul of inner size 1, then three more
    full-size tensors). A second-order backward runs autograd's graph."""

    @staticmethod
    def forward(ctx, nd2: Tensor, inv: Tensor, feat: Tensor) -> tuple[Tensor, Tensor]:
        k = (nd2 * inv[None, :, None, None]).exp_()  # [B, P, M, N]
        num = torch.einsum("bpmn,bnp->bpm", k, feat)
        ks = k.sum(-1)
        den = ks + 1e-6
        ctx.save_for_backward(nd2, inv, feat, k, num, den)
        ctx.set_materialize_grads(False)
        return num / den, ks

    @staticmethod
    def backward(ctx, gh: Tensor | None, gks: Tensor | None):
        nd2, inv, feat, k, num, den = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiate autograd's graph
            # only the inputs that need a gradient and the outputs that depend on them
            # (frozen lengthscales make the weights' sums constant): autograd.grad refuses a
            # tensor outside the graph; the sums alone do not depend on the features (None)
            wanted = [t for t, need in zip((inv, feat), ctx.needs_input_grad[1:]) if need]
            with torch.enable_grad():
                outs = [
                    (o, g)
                    for o, g in zip(_kernel_average(nd2, inv, feat), (gh, gks))
                    if g is not None and o.requires_grad
                ]
                grads = iter(
                    torch.autograd.grad(
                        [o for o, _ in outs],
                        wanted,
                        [g for _, g in outs],
                        create_graph=True,
                        allow_unused=True,
                    )
                )
            gi, gf = (next(grads) if need else None for need in ctx.needs_input_grad[1:])
            return None, gi, gf
        b, p, m, n = k.shape
        if gh is None:
            gh = torch.zeros_like(num)
        gnum = gh / den  # the quotient's gradients, as autograd's
        gden = -gh * ((num / den) / den)
        if gks is not None:
            gden = gden + gks
        # d/dk: gnum[b, p, m] feat[b, n, p] (one product each) + gden, times k (exp)
        t = gnum.unsqueeze(-1) * feat.permute(0, 2, 1).unsqueeze(2)
        t.add_(gden.unsqueeze(-1)).mul_(k)
        gf = None
        if ctx.needs_input_grad[2]:  # the einsum's batched matmul, transposed
            gf = torch.bmm(k.view(b * p, m, n).mT, gnum.reshape(b * p, m, 1))
            gf = gf.view(b, p, n).permute(0, 2, 1)
        gi = t.mul_(nd2).sum((0, 2, 3), keepdim=True).view(p) if ctx.needs_input_grad[1] else None
        return None, gi, gf


class KernelInterpolation(nn.Module):
    """Nadaraya-Watson interpolation of ``P`` channels onto a fixed grid ``[M, dim_x]``.

    ``grid``: a finite floating tensor ``[M >= 1, dim_x]`` (a 1-D ``[M]`` is refused: its
    ``dim_x`` is ambiguous), copied into the module's ``grid`` buffer; ``channels``: ``P >= 1``;
    ``0 < ell_min <= ell_max``."""

    def __init__(self, grid: Tensor, channels: int, ell_max: float = 1.0, ell_min: float = 1e-3):
        super().__init__()
        # a NaN grid interpolated NaN without a word; an empty one gave [B, P, 0] features;
        # a 1-D one failed in cdist at the first call
        if not isinstance(grid, Tensor) or not grid.is_floating_point():
            got = grid.dtype if isinstance(grid, Tensor) else type(grid).__name__
            raise TypeError(f"grid: expected a floating tensor [M, dim_x], received {got}")
        if grid.ndim != 2 or 0 in grid.shape:
            raise ValueError(
                f"grid: expected latent points [M >= 1, dim_x >= 1], received shape "
                f"{tuple(grid.shape)}"
            )
        check_finite("grid", grid)
        channels = check_int("channels", channels, minimum=1)
        ell_max = check_real("ell_max", ell_max, minimum=0.0, strict=True)
        ell_min = check_real("ell_min", ell_min, minimum=0.0, strict=True)
        if ell_min > ell_max:
            raise ValueError(
                f"ell_min/ell_max: expected ell_min <= ell_max, received {ell_min}, {ell_max}"
            )
        # a copy: the buffer was the caller's tensor, so a load_state_dict (which copies into
        # buffers in place) wrote into the caller's grid and into every other module built on it
        self.register_buffer("grid", grid.detach().clone())
        ell = torch.logspace(math.log10(ell_max), math.log10(ell_min), channels)
        self.log_ell = nn.Parameter(ell.log())

    def forward(
        self, x: Tensor, feat: Tensor, density: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        r"""``x`` ``[B, N, d]``, ``feat`` ``[B, N, P]`` -> ``[B, P, M]``.

        ``density=True`` also returns the per-channel point density
        :math:`\rho_j(g) = \frac1N\sum_i k_j(g, x_i)` ``[B, P, M]`` (a mean, not a sum, so it
        does not grow with ``N``): where it is small the interpolated value is an extrapolation.
        ``N >= 1``: an empty set has no kernel average (``ValueError``). The interpolation runs
        in ``x``'s dtype: ``feat`` in another is a ``TypeError``. Its dense kernel weights
        ``[B, P, M, N]`` that cannot fit on ``x``'s device are refused with a ``MemoryError``
        naming ``x`` before the distances are computed (:func:`check_kernel_memory`).
        """
        check_tensors(("x", "feat"), (x, feat))
        if feat.dtype != x.dtype:
            raise TypeError(f"feat: expected x's dtype {x.dtype}, received {feat.dtype}")
        dim, p = self.grid.shape[-1], self.log_ell.numel()
        if x.ndim != 3 or x.shape[1] == 0 or x.shape[2] != dim:
            raise ValueError(f"x: expected shape [B, N >= 1, {dim}], received {tuple(x.shape)}")
        if tuple(feat.shape) != (*x.shape[:2], p):  # was einsum's or cdist's RuntimeError
            raise ValueError(
                f"feat: expected shape [B, N, P] = {[*x.shape[:2], p]} (x's B and N, P = "
                f"{p} channels), received {tuple(feat.shape)}"
            )
        # the weights [B, P, M, N]: once without gradients, with the backward's buffer (the
        # lean path) or autograd's intermediates (gradients in x) when they are recorded
        copies = 1 if not torch.is_grad_enabled() else 4 if x.requires_grad else 2
        check_kernel_memory(
            "x", self, x.shape[0], x.shape[1], dtype=x.dtype, device=x.device, copies=copies
        )
        d2 = torch.cdist(self.grid.to(x.dtype).expand(x.shape[0], -1, -1), x).pow(2)  # [B, M, N]
        inv = 0.5 / self.log_ell.exp().pow(2).to(x.dtype)  # [P]
        if x.requires_grad:  # gradients in x: autograd's graph
            h, ks = _kernel_average(-d2.unsqueeze(1), inv, feat)
        else:  # the same numbers, with a leaner backward
            h, ks = _KernelAverage.apply(-d2.unsqueeze(1), inv, feat)
        if density:
            return h, ks / x.shape[1]
        return h


class GICNet(nn.Module):
    """Grid-invariant inverse network (see the module docstring).

    Parameters
    ----------
    dim_x, dim_z, dim_w, dim_u
        sizes.
    lower, upper
        domain box (latent grid spans it).
    latent
        points per dimension of the latent grid (default 20 whatever ``dim_x``; the presets
        set 20 for the 1-D Poisson problem and 10 per axis for the 2-D Burgers problem).
    channels
        ``P``.
    lift_layers
        depth of the lifting MLP (the reference code uses one layer).
    conv_layers, conv_channels
        CNN.
    dense
        the two linear layers after Flatten.
    trunk, trunk_layers
        MLP on ``w``.
    head, head_layers
        final MLP.
    rank
        low-rank columns.
    var_lo, var_hi
        bounds of the diagonal variance (``0 < var_lo < var_hi``).
    ell_max, ell_min
        initial lengthscale range (``0 < ell_min <= ell_max``), absolute (units
        of ``x``): a ``UserWarning`` when an axis of the box is longer than
        :data:`LONG_AXIS_ELLS` ``ell_max`` or shorter than :data:`SHORT_AXIS_ELLS` ``ell_min``
        (module docstring).
    density
        append the ``P`` normalised point-density channels rho_j(g) to the CNN's
        input, ConvCNP-style: they tell the CNN where the interpolated values extrapolate.
    """

    def __init__(
        self,
        dim_x: int,
        dim_z: int,
        dim_w: int,
        lower: Sequence[float],
        upper: Sequence[float],
        *,
        dim_u: int = 1,
        latent: int = 20,
        channels: int = 20,
        lift_layers: int = 1,
        conv_layers: int = 6,
        conv_channels: int = 20,
        dense: tuple[int, int] = (500, 100),
        trunk: int = 100,
        trunk_layers: int = 3,
        head: int = 300,
        head_layers: int = 4,
        rank: int = 1,
        var_lo: float = 1e-6,
        var_hi: float = 1.0,
        ell_max: float = 1.0,
        ell_min: float = 1e-3,
        density: bool = False,
    ):
        super().__init__()
        if isinstance(dim_x, bool) or dim_x not in (1, 2):
            raise ValueError(f"dim_x: GICNet supports 1 or 2 input dimensions, received {dim_x}")
        dim_x = int(dim_x)
        dim_z = check_int("dim_z", dim_z, minimum=1)
        dim_w = check_int("dim_w", dim_w, minimum=0)
        dim_u = check_int("dim_u", dim_u, minimum=1)
        latent = check_int("latent", latent, minimum=2)
        channels = check_int("channels", channels, minimum=1)
        lift_layers = check_int("lift_layers", lift_layers, minimum=1)
        conv_layers = check_int("conv_layers", conv_layers, minimum=1)
        conv_channels = check_int("conv_channels", conv_channels, minimum=1)
        trunk = check_int("trunk", trunk, minimum=1)
        trunk_layers = check_int("trunk_layers", trunk_layers, minimum=1)
        head = check_int("head", head, minimum=1)
        head_layers = check_int("head_layers", head_layers, minimum=1)
        rank = check_int("rank", rank, minimum=1)
        if not isinstance(dense, (tuple, list)) or len(dense) != 2:
            raise ValueError(f"dense: expected two layer widths, received {dense!r}")
        dense = tuple(check_int("dense", v, minimum=1) for v in dense)
        var_lo = check_real("var_lo", var_lo, minimum=0.0, strict=True)
        var_hi = check_real("var_hi", var_hi)
        if not var_lo < var_hi:
            raise ValueError(
                f"var_lo/var_hi: expected 0 < var_lo < var_hi, received {var_lo}, {var_hi}"
            )
        lower, upper = check_box(lower, upper, dim_x)
        axes = [torch.linspace(lo, hi, latent) for lo, hi in zip(lower, upper)]
        mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim_x)
        self.dim_x, self.dim_z, self.rank, self.latent = dim_x, dim_z, int(rank), latent
        self.var_lo, self.var_hi = float(var_lo), float(var_hi)
        self.lift = _mlp([dim_u] + [channels] * lift_layers)
        self.kip = KernelInterpolation(mesh, channels, ell_max, ell_min)
        # ell_max / ell_min checked by KernelInterpolation above
        warn_box_scale(lower, upper, float(ell_max), float(ell_min))
        conv = nn.Conv1d if dim_x == 1 else nn.Conv2d
        k = 3 if dim_x == 1 else 2
        cnn: list[nn.Module] = []
        self.density = check_bool("density", density)
        cin = channels * (2 if self.density else 1) + dim_x
        for _ in range(conv_layers):
            cnn += [conv(cin, conv_channels, k), nn.SiLU()]
            cin = conv_channels
        self.cnn = nn.Sequential(*cnn)
        side = latent - conv_layers * (k - 1)
        if side < 1:
            raise ValueError(
                f"conv_layers: {conv_layers} valid convolutions do not fit {latent} points"
            )
        flat = conv_channels * side**dim_x
        self.dense = nn.Sequential(nn.Linear(flat, dense[0]), nn.Linear(dense[0], dense[1]))
        self.trunk = _mlp([dim_w] + [trunk] * trunk_layers)
        self.head = _mlp([dense[1] + trunk] + [head] * head_layers)
        self.out = nn.Linear(head, dim_z * (2 + self.rank))

    def forward(self, x: Tensor, v: Tensor, w: Tensor) -> LowRankMultivariateNormal:
        """``x`` ``[B, N, dim_x]``, ``v`` ``[B, N]`` or ``[B, N, dim_u]``, ``w`` ``[B, dim_w]``,
        with ``B >= 1`` sets of ``N >= 1`` points (an empty set has no kernel average: every
        channel would read 0 / (0 + 1e-6), and the density channels 0 / 0), each a tensor in
        the network's dtype and on its device (another is a ``TypeError`` / ``ValueError``
        naming the argument and both). Kernel weights ``[B, channels, M, N]`` (``M`` latent
        nodes) that cannot fit in memory are a ``MemoryError`` naming ``x``."""
        check_module_inputs("GICNet", self.out.weight, x=x, v=v, w=w)
        if v.ndim == 2:
            v = v.unsqueeze(-1)
        if x.ndim == 3 and 0 in x.shape[:2]:
            raise ValueError(
                f"x: expected B >= 1 sets of N >= 1 points, received shape {tuple(x.shape)} "
                "(an empty context set has nothing to interpolate)"
            )
        bsz = x.shape[0] if x.ndim else 0
        dim_u, dim_w = self.lift[0].in_features, self.trunk[0].in_features
        if (
            x.ndim != 3
            or x.shape[-1] != self.dim_x
            or tuple(v.shape) != (bsz, x.shape[1], dim_u)
            or tuple(w.shape) != (bsz, dim_w)
        ):
            raise ValueError(
                f"x/v/w: expected [B, N, {self.dim_x}], [B, N] (or [B, N, {dim_u}]) and "
                f"[B, {dim_w}], received {tuple(x.shape)}, {tuple(v.shape)}, {tuple(w.shape)}"
            )
        g = self.kip.grid.to(x.dtype).mT.expand(bsz, -1, -1)  # [B, dim_x, M]
        if self.density:
            h, rho = self.kip(x, self.lift(v), density=True)  # [B, P, M] each
            h = torch.cat([h, rho, g], 1)
        else:
            h = torch.cat([self.kip(x, self.lift(v)), g], 1)
        if self.dim_x == 2:
            h = h.reshape(bsz, h.shape[1], self.latent, self.latent)
        b = self.dense(self.cnn(h).flatten(1))
        o = self.out(self.head(torch.cat([b, self.trunk(w)], -1)))
        dz = self.dim_z
        mean = o[:, :dz]
        var = self.var_lo + (self.var_hi - self.var_lo) * torch.sigmoid(o[:, dz : 2 * dz])
        fac = o[:, 2 * dz :].reshape(bsz, dz, self.rank) * 0.1
        return LowRankMultivariateNormal(mean, fac, var)
