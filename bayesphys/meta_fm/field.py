r"""Vector field :math:`v_\theta(t, x \mid \varphi, c)` for (meta) flow matching.

The input is the concatenation of

* a sinusoidal time embedding :math:`[\cos(t\omega_j), \sin(t\omega_j)]`,
  :math:`\omega_j = 10000^{-j/\max(h-1,\,1)}`, :math:`j = 0..h-1`, :math:`h =` ``time_dim / 2``
  (transformer style, ``time_dim`` values: the :math:`h` cosines, then the :math:`h` sines);
* random Fourier features :math:`[\cos(2\pi xB), \sin(2\pi xB)]`, :math:`B_{ij} \sim
  \mathcal N(0, \sigma_B^2)` of shape ``[d, fourier]`` — a registered buffer, so it is saved
  and reloaded with the model (the reference code regenerates it on reload);
* the raw point :math:`x`;
* with ``features = f > 0``, per-point features ``[..., f]`` (the type frame's one-hot cell
  type, :class:`~bayesphys.meta_fm.MFMConfig` ``type_frame``);
* a condition vector (population embedding, population one-hot, treatment one-hot).

The body is an MLP (SELU) or a residual MLP. With ``conditioning="film"`` the condition
:math:`c` also modulates every hidden layer feature-wise (FiLM, Perez et al. 2018):

.. math:: h_\ell \leftarrow h_\ell \odot (1 + \gamma_\ell(c)) + \beta_\ell(c),

with :math:`\gamma_\ell, \beta_\ell` linear in :math:`c` and initialised at zero, so that the
untrained FiLM field equals the concatenation field. In the plain MLP the modulated
:math:`h_\ell = W_\ell h_{\ell-1} + b_\ell` is a hidden linear layer's output, before its SELU.
In the residual MLP (``residual=True``) the first layer is modulated so too, and each residual
block on its whole output :math:`h_\ell = h_{\ell-1} + \mathrm{SELU}(W_\ell h_{\ell-1} +
b_\ell)`, after the block's activation and skip (no activation follows the modulation). The
product :math:`h \odot \gamma(c)` lets the condition switch and rescale features, which a
concatenated input can only approximate through the nonlinearities (e.g. a
population-dependent rotation of ``x``).
``conditioning="concat"`` (default) is the reference architecture.

Shapes: ``x [..., d]`` (``...`` may be empty: one point), ``t`` scalar or ``x``'s leading shape
``[...]``, ``cond`` either one condition ``[c]`` for every point or ``[..., c]`` with as many
dimensions as ``x``, each of ``x``'s size or 1 -> ``[..., d]``. Per point: ``x [N, d]``,
``cond [N, c]``. For
``G`` populations of ``n`` points: ``x [G, n, d]`` with ``cond [G, 1, c]``, one row per
population; the FiLM heads then run once per population instead of once per point (on a
64-dimensional embedding they cost as much as the rest of the field, on a population one-hot
more) and their output is broadcast, never copied per point.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_int, check_real, did_you_mean
from .._device import ArrayLike, check_module_dtype

__all__ = ["time_embedding", "FourierFeatures", "VectorField"]


def time_embedding(t: Tensor, dim: int, max_positions: float = 10000.0) -> Tensor:
    r"""Sinusoidal embedding ``[..., dim]`` of times ``t [...]`` (a tensor; ``dim`` even,
    ``>= 2``; ``max_positions > 0``): :math:`[\cos(t\omega_0), .., \cos(t\omega_{h-1}),
    \sin(t\omega_0), .., \sin(t\omega_{h-1})]` with :math:`h` = ``dim / 2`` and
    :math:`\omega_j` = ``max_positions`` :math:`^{-j/\max(h-1,\,1)}` (from 1 down to
    ``1 / max_positions``; one frequency 1 for ``dim = 2``)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"t: expected a torch.Tensor of times, received {type(t).__name__}")
    dim = _check_time_dim("dim", dim)
    max_positions = check_real("max_positions", max_positions, minimum=0.0, strict=True)
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_positions)
        * torch.arange(half, dtype=t.dtype, device=t.device)
        / max(half - 1, 1)
    )
    arg = t[..., None] * freqs
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)


def _check_time_dim(name: str, value: int) -> int:
    out = check_int(name, value, minimum=2)
    if out % 2:
        raise ValueError(
            f"{name}: expected an even int (cos and sin of {name} / 2 frequencies), received {out}"
        )
    return out


class FourierFeatures(nn.Module):
    r"""``x [..., d] -> [..., 2 m]``: :math:`[\cos 2\pi xB, \sin 2\pi xB]`, ``B [d, m]`` a
    buffer."""

    def __init__(self, dim: int, m: int, sigma: float, generator: torch.Generator | None = None):
        super().__init__()
        dim, m = check_int("dim", dim, minimum=1), check_int("m", m, minimum=1)
        sigma = check_real("sigma", sigma, minimum=0.0, strict=True)
        self.register_buffer("B", sigma * torch.randn(dim, m, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        """Features ``[..., 2 m]`` of points ``x [..., d]`` in the dtype of ``B`` (another
        dtype is a ``TypeError`` naming both; another ``d`` a ``ValueError``)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor [..., d], received {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.B.shape[0]:  # was torch's raw matmul error
            raise ValueError(
                f"x: expected points [..., {self.B.shape[0]}], received {tuple(x.shape)}"
            )
        check_module_dtype("x", x, self.B.dtype, "Fourier feature map")
        proj = 2 * math.pi * x @ self.B
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)


class _Res(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.lin = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        return h + torch.selu(self.lin(h))


class VectorField(nn.Module):
    """MLP vector field ``(t, x, cond) -> v`` (see the module docstring for the input).

    ``layers >= 2`` linear layers (``layers - 2`` hidden ones), ``time_dim`` even ``>= 2``,
    ``fourier >= 0`` features (0: none), ``fourier_sigma > 0``; ``width``, ``dim >= 1``;
    ``features >= 0`` per-point features read beside ``x`` (input width
    ``time_dim + 2 fourier + dim + features + cond_dim``).
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int = 0,
        *,
        width: int = 256,
        layers: int = 4,
        time_dim: int = 128,
        fourier: int = 128,
        fourier_sigma: float = 0.01,
        residual: bool = False,
        conditioning: str = "concat",
        features: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if conditioning not in ("concat", "film"):
            raise ValueError(
                f"conditioning: expected 'concat' or 'film', received {conditioning!r}"
                f"{did_you_mean(conditioning, ('concat', 'film'))}"
            )
        if not isinstance(residual, bool):
            raise ValueError(f"residual: expected True or False, received {residual!r}")
        dim = check_int("dim", dim, minimum=1)
        cond_dim = check_int("cond_dim", cond_dim, minimum=0)
        width = check_int("width", width, minimum=1)
        layers = check_int("layers", layers, minimum=2)  # input and output layer at least
        time_dim = _check_time_dim("time_dim", time_dim)
        fourier = check_int("fourier", fourier, minimum=0)
        fourier_sigma = check_real("fourier_sigma", fourier_sigma, minimum=0.0, strict=True)
        self.features = check_int("features", features, minimum=0)
        self.dim, self.cond_dim, self.time_dim = dim, cond_dim, time_dim
        self.conditioning = conditioning
        self.fourier = FourierFeatures(dim, fourier, fourier_sigma, generator) if fourier else None
        in_dim = self.time_dim + (2 * fourier if fourier else 0) + dim + self.features + cond_dim
        mods: list[nn.Module] = [nn.Linear(in_dim, width), nn.SELU()]
        for _ in range(max(layers - 2, 0)):
            mods += [_Res(width)] if residual else [nn.Linear(width, width), nn.SELU()]
        mods.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*mods)
        self.film = None
        if conditioning == "film" and self.cond_dim:
            # one (gamma, beta) head per hidden layer, zero-initialised (starts as "concat")
            n_hidden = 1 + max(layers - 2, 0)
            self.film = nn.ModuleList(nn.Linear(self.cond_dim, 2 * width) for _ in range(n_hidden))
            for head in self.film:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def forward(
        self,
        t: ArrayLike,
        x: Tensor,
        cond: Tensor | None = None,
        features: Tensor | None = None,
    ) -> Tensor:
        """Velocities ``[..., d]`` at times ``t`` (a scalar or ``[...]``: a number, tensor, array
        or list, taken in ``x``'s dtype and device) and floating points
        ``x [..., d]`` (an integer ``x`` is a ``TypeError``) under ``cond``: one ``[c]`` for every
        point, or ``[..., c]`` with ``x``'s number of dimensions, each of ``x``'s size or 1 (module
        docstring). ``features``: the per-point features ``[..., f]`` of a field built with
        ``features = f > 0`` (required then, refused otherwise), one row per point. ``x``, ``cond``
        and ``features`` are in the field's dtype (its weights'; another is a ``TypeError`` naming
        both dtypes)."""
        if not isinstance(x, Tensor):  # an array raised AttributeError ('is_floating_point')
            raise TypeError(
                f"x: expected a torch.Tensor of points [..., {self.dim}], received "
                f"{type(x).__name__}"
            )
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"x: expected points [..., {self.dim}], received {tuple(x.shape)}")
        if not x.is_floating_point():
            # the time is cast to x's dtype: integer points read t = 0.3 as 0, silently
            raise TypeError(f"x: expected floating points, received {x.dtype}")
        dtype = self.net[0].weight.dtype
        check_module_dtype("x", x, dtype, "vector field")
        lead = x.shape[:-1]
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim and t.shape != lead:
            raise ValueError(
                f"t: expected a scalar time or one per point {tuple(lead)}, received "
                f"{tuple(t.shape)}"
            )
        te = time_embedding(t, self.time_dim)
        if t.ndim == 0:  # one time for every point (an ODE step): embedded once
            te = te.expand(*lead, self.time_dim)
        parts = [te]
        if self.fourier is not None:
            parts.append(self.fourier(x))
        parts.append(x)
        if self.features or features is not None:
            self._check_features(features, lead)
            check_module_dtype("features", features, dtype, "vector field")
            parts.append(features)
        if not self.cond_dim and cond is not None:
            got = tuple(cond.shape) if isinstance(cond, Tensor) else type(cond).__name__
            raise ValueError(f"cond: this field reads no condition (cond_dim=0), received {got}")
        if self.cond_dim:
            self._check_cond(cond, lead)
            check_module_dtype("cond", cond, dtype, "vector field")
            parts.append(cond.expand(*lead, self.cond_dim))
        h = torch.cat(parts, dim=-1)
        if self.film is None:
            return self.net(h)
        return self._film_forward(h, cond)

    def _check_features(self, features: Tensor | None, lead: torch.Size) -> None:
        if not self.features:
            got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise ValueError(
                f"features: this field reads no point features (features=0), received {got}"
            )
        if not isinstance(features, Tensor) or features.shape != (*lead, self.features):
            got = tuple(features.shape) if isinstance(features, Tensor) else features
            raise ValueError(
                f"features: expected one row of {self.features} features per point, shape "
                f"{(*lead, self.features)}, received {got}"
            )

    def _check_cond(self, cond: Tensor | None, lead: torch.Size) -> None:
        want = (*lead, self.cond_dim)
        # one condition [c], or x's number of dims with sizes of x or 1 (a fewer-dims cond
        # would broadcast from the right: [P, c] against [P, n, d] pairs P with n)
        ok = (
            isinstance(cond, Tensor)
            and cond.ndim in (1, len(want))
            and cond.shape[-1] == self.cond_dim
        )
        if ok:
            try:
                ok = torch.broadcast_shapes(cond.shape[:-1], lead) == lead
            except RuntimeError:
                ok = False
        if not ok:
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(
                f"cond: expected one condition ({self.cond_dim},) or shape {want} with sizes "
                f"of x or 1 (e.g. a row per population), received {got}"
            )

    def _film_forward(self, h: Tensor, cond: Tensor) -> Tensor:
        r"""The body with each hidden layer's output modulated: a plain layer's before its
        SELU, a residual block's (``_Res``: :math:`h + \mathrm{SELU}(Wh + b)`) after it, on the
        block's whole output (module docstring; the heads run on ``cond`` as given, and their
        output broadcasts over the points)."""
        mods = list(self.net)
        k = 0
        for i, mod in enumerate(mods[:-1]):
            if isinstance(mod, nn.SELU):
                continue
            h = mod(h)
            gamma, beta = self.film[k](cond).chunk(2, dim=-1)
            k += 1
            h = h * (1 + gamma) + beta
            if i + 1 < len(mods) and isinstance(mods[i + 1], nn.SELU):
                h = torch.selu(h)
        return mods[-1](h)
