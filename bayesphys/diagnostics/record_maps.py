r"""Per-summary recalibration maps fitted on held-out simulations.

Each map reads one summary's held-out draws ``[N, L]`` and truths ``[N]`` through the
standardised residuals :math:`z = (t - \bar x)/(c_L\,\mathrm{sd}(x))`
(:func:`standardised_residuals`) and maps a problem's draws ``[L]`` draw by draw:
:class:`AffineMap` (bias and width) and :class:`ShapeMap` (bias, width and tails).
:mod:`~bayesphys.diagnostics.record_recal` fits them per summary of a
:class:`~bayesphys.diagnostics.SimulationRecord` and applies them to a calibration run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .._checks import check_real, did_you_mean
from .._device import check_finite
from .recalibrate import _c_l
from .sbc import truth_on_draws_device

__all__ = ["standardised_residuals", "AffineMap", "ShapeMap", "GENNORM_MAX_SHAPE", "T_MAX_DF"]


def _check_draws_truth(
    draws: torch.Tensor, truth: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``draws [N, L]`` with ``N >= 1``, ``L >= 2`` and ``truth [N]``, floating-point tensors
    and finite
    (a NaN truth gave the map ``AffineMap(nan, nan)`` and NaN residuals without an error).
    Returns ``(draws, truth)`` with ``truth`` on the draws' device, as
    :func:`~bayesphys.diagnostics.sbc.check_truth_draws` returns its pair (a truth kept on the
    CPU beside draws on a GPU failed in the first difference with torch's device error)."""
    for name, t in (("draws", draws), ("truth", truth)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            got = f"dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"{name}: expected a floating-point torch.Tensor, received {got}")
    if draws.ndim != 2 or truth.shape != draws.shape[:1]:
        raise ValueError(
            f"draws/truth: expected [N, L] and [N], received {tuple(draws.shape)} and "
            f"{tuple(truth.shape)}"
        )
    if draws.shape[0] == 0:
        # an empty set fitted the identity map (as draws that never vary), without a word
        raise ValueError(
            f"draws/truth: expected N >= 1 held-out problems, received draws "
            f"{tuple(draws.shape)} and truth {tuple(truth.shape)}"
        )
    if draws.shape[1] < 2:
        raise ValueError(
            f"draws: expected L >= 2 draws per problem (their sd is the unit of every "
            f"recalibration map), received L = {draws.shape[1]}; draw more posterior samples"
        )
    check_finite("draws", draws)
    check_finite("truth", truth)
    return draws, truth_on_draws_device(truth, draws)


def standardised_residuals(draws: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    r"""Held-out :math:`z_i = (t_i - \bar x_i)/(c_L\,\mathrm{sd}(x_i))` of one summary:
    ``draws [N, L]`` (``N >= 1``, ``L >= 2``), ``truth [N]`` (floating point, finite) -> ``[N']``
    (problems whose draws have zero spread are left out), with
    :math:`c_L = \sqrt{(L+1)(L-1)/(L(L-3))}` for ``L > 3`` and :math:`c_L = 1` otherwise.

    :math:`\bar x` and :math:`\mathrm{sd}(x)` are estimated from the ``L`` draws, so even an
    exactly calibrated Gaussian posterior gives
    :math:`E[(t - \bar x)^2/\mathrm{sd}(x)^2] = c_L^2 = (L+1)(L-1)/(L(L-3))`, not 1 (1.114 at
    ``L = 29``, 1.184 at ``L = 19``). Dividing by :math:`c_L` makes :math:`E[z^2] = s^2`, the
    squared scale about the draws' mean that makes the truth exchangeable with ``L`` mapped
    draws, for any posterior width; an exact posterior then gets the identity map. A ``truth``
    on another device than the draws is used on theirs.
    """
    return _residuals(*_check_draws_truth(draws, truth))


def _residuals(draws: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """:func:`standardised_residuals` of a checked pair (``draws [N, L]``, ``truth [N]`` on the
    same device)."""
    n_draws = draws.shape[1]
    sd = draws.std(1)
    keep = sd > 0
    z = ((truth - draws.mean(1)) / sd.where(keep, torch.ones_like(sd)))[keep]
    if n_draws > 3:
        z = z / _c_l(n_draws)
    return z


def _bias_in_sd(draws: torch.Tensor, truth: torch.Tensor) -> float:
    r"""The held-out bias in units of the draws' sd,
    :math:`b = \sum_i (t_i - \bar x_i) / \sum_i \mathrm{sd}(x_i)` over the problems whose draws
    vary (``draws [N, L]``, ``truth [N]``): the shift :math:`b\,\mathrm{sd}(x)` then removes
    the mean bias, :math:`E[b\,\mathrm{sd}(x)] = E[t - \bar x]` when the bias scales with the
    posterior sd, whatever ``L`` and the law of the draws.

    The mean of :math:`z` (:func:`standardised_residuals`) is not that unit:
    :math:`E[\overline z]\,E[\mathrm{sd}] = E[t - \bar x]\,E[\mathrm{sd}]\,E[1/\mathrm{sd}]/c_L`,
    so a shift :math:`\overline z\,\mathrm{sd}(x)` removed only 0.88 (``L = 9``) to 0.99
    (``L = 99``) of a bias of Gaussian draws.
    """
    sd = draws.std(1)
    keep = sd > 0
    return float((truth - draws.mean(1))[keep].sum() / sd[keep].sum())


@dataclass
class AffineMap:
    r"""Location-scale recalibration of one summary: :math:`x' = \bar x + b\,\mathrm{sd}(x) +
    s\,(x - \bar x)` with :math:`s = \mathrm{sd}(z)` of the held-out
    :math:`z = (s_k(\theta) - \bar x)/(c_L\,\mathrm{sd}(x))` (:func:`standardised_residuals`)
    and :math:`b = \sum_i (s_k(\theta_i) - \bar x_i)/\sum_i \mathrm{sd}(x_i)`, the held-out
    bias in units of the draws' sd, unbiased for the mean bias at any ``L`` (the mean of
    :math:`z` removed only 0.88 of a bias at ``L = 9``): bias and width both corrected.

    Built directly, ``shift`` must be finite and ``scale`` finite and ``> 0`` (a NaN shift
    gave NaN draws, a negative scale flipped them about their mean, a zero scale collapsed
    them to one value). ``method`` labels the map: ``"affine"`` (fitted), or ``"identity"``
    (shift 0, scale 1: the identity a stage that is not an affine one keeps for a summary
    whose draws never vary)."""

    shift: float
    scale: float
    method: str = "affine"

    def __post_init__(self) -> None:
        self.shift, self.scale = _check_shift_scale(self.shift, self.scale)
        _check_method(self.method, _AFFINE_METHODS)
        if self.method == "identity" and (self.shift, self.scale) != (0.0, 1.0):
            raise ValueError(
                f"method: 'identity' labels the map of shift 0 and scale 1, received shift "
                f"{self.shift!r} and scale {self.scale!r}; label it 'affine'"
            )

    @classmethod
    def fit(cls, draws: torch.Tensor, truth: torch.Tensor) -> AffineMap:
        """``draws [N, L]`` (``L >= 2``), ``truth [N]`` of one summary.

        Draws that never vary (zero sd in every problem) give the identity map (shift 0,
        scale 1); a single problem whose draws vary is refused (no scale can be estimated),
        and so are residuals all equal up to rounding (the scale would be 0 or ``1e-16``).
        A ``truth`` on another device than the draws is used on theirs.
        """
        draws, truth = _check_draws_truth(draws, truth)
        z = _residuals(draws, truth)
        if z.numel() == 0:
            return cls(0.0, 1.0)
        _check_enough_spread(z, draws, truth)
        return cls(_bias_in_sd(draws, truth), float(z.std()))

    def map(self, x: torch.Tensor) -> torch.Tensor:
        """Draws ``[L]`` of one problem (floating point, finite, ``L >= 2``) -> mapped draws
        ``[L]``."""
        _check_map_draws(x)
        return self._map_rows(x[None])[0]

    def _map_rows(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`map` of every row of ``x [N, L]`` at once (rows checked by the caller)."""
        m, sd = x.mean(-1, keepdim=True), x.std(-1, keepdim=True)
        return m + self.shift * sd + self.scale * (x - m)


def _check_enough_spread(z: torch.Tensor, draws: torch.Tensor, truth: torch.Tensor) -> None:
    r"""``z [N']``, the standardised residuals of the ``N'`` problems of ``draws [N, L]``,
    ``truth [N]`` whose draws vary: at least 2, and not all equal up to rounding (no scale can
    be fitted otherwise).

    "Equal up to rounding": their range is at most
    :math:`8\,\epsilon\,\max_i (|t_i| + \max_l |x_{il}|)/\mathrm{sd}(x_i)`, with
    :math:`\epsilon` the machine epsilon of the draws' dtype, the size of the rounding error
    of :math:`(t_i - \bar x_i)/\mathrm{sd}(x_i)` (the difference loses the digits the two share)
    times a margin (a few ulps each for the mean, the difference and the sd).
    Residuals equal but for rounding fitted a scale of ``1e-16`` (float64), a map that
    collapsed every problem's draws to one value as an exact ``0`` did."""
    n_sims = draws.shape[0]
    if z.numel() < 2:
        raise ValueError(
            f"draws: expected at least 2 problems whose draws vary to fit a scale, received "
            f"{z.numel()} of {n_sims}; fit on more held-out simulations"
        )
    sd = draws.std(1)
    keep = sd > 0
    size = (truth.abs() + draws.abs().amax(1))[keep] / sd[keep]
    rounding = 8 * torch.finfo(draws.dtype).eps * float(size.max())
    spread = float(z.max() - z.min())
    if spread <= rounding:
        # the fitted scale was 0 (or rounding's 1e-16): a map that collapsed every
        # problem's draws to one value
        raise ValueError(
            f"draws/truth: the {z.numel()} standardised residuals (t - mean(x))/sd(x) are all "
            f"equal ({float(z[0]):.6g}; range {spread:.3g}, within the {draws.dtype} rounding "
            f"{rounding:.3g}), so no scale can be fitted (it would be 0 and map every "
            "problem's draws to one value); fit on held-out simulations whose truth is not a "
            "fixed function of their draws"
        )


def _check_map_draws(x: Any) -> None:
    """``x`` of a map's ``map``: the draws ``[L]`` of one problem, a floating-point tensor,
    ``L >= 2`` (their sd is the map's unit), finite. One draw gave NaN draws (its sd is NaN)
    with only torch's degrees-of-freedom warning, a NaN draw made every draw NaN, an ``[N, L]``
    array was mapped about its overall mean and sd as if one problem's, a list or an integer
    tensor failed with an AttributeError or torch's dtype error."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"x: expected a floating-point torch.Tensor, received {got}")
    if x.ndim != 1 or x.shape[0] < 2:
        raise ValueError(
            f"x: expected the draws [L] of one problem, L >= 2 (their sd is the map's unit), "
            f"received shape {tuple(x.shape)}"
        )
    check_finite("x", x)


#: the labels of :class:`AffineMap` and :class:`ShapeMap` (their ``method``)
_AFFINE_METHODS: tuple[str, ...] = ("affine", "identity")
_SHAPE_METHODS: tuple[str, ...] = ("shape",)


def _check_method(method: Any, known: tuple[str, ...]) -> None:
    """A map's ``method`` label: one of ``known`` (any string, or a non-string, was stored,
    and shown as the map's method by its repr)."""
    if not isinstance(method, str):
        raise TypeError(f"method: expected a str, one of {known}, received {type(method).__name__}")
    if method not in known:
        raise ValueError(
            f"method: expected one of {known}, received {method!r}{did_you_mean(method, known)}"
        )


def _check_shift_scale(shift: Any, scale: Any) -> tuple[float, float]:
    """A map's ``shift`` (finite) and ``scale`` (finite, ``> 0``) as floats."""
    return check_real("shift", shift), check_real("scale", scale, minimum=0.0, strict=True)


_LR_MARGIN = 0.5 * 6.635  # chi-square(1) 99 % quantile / 2

#: the largest generalised-normal shape :class:`ShapeMap` keeps: a fit beyond it is at the
#: family's non-regular uniform limit, and the family is refused (see :class:`ShapeMap`)
GENNORM_MAX_SHAPE = 8.0

#: the largest Student-t degrees of freedom :class:`ShapeMap` stores (and maps with): a fit
#: beyond it is Gaussian for every practical purpose, and is reported as at the bound
T_MAX_DF = 1e3

# the families of ShapeMap: the Gaussian null, the Student-t, the generalised normal
_SHAPE_FAMILIES: tuple[str, ...] = ("norm", "t", "gennorm")


@dataclass
class ShapeMap:
    r"""Location-scale-shape recalibration of one summary. The held-out standardised residuals
    :math:`z = (s_k(\theta) - \bar x)/(c_L\,\mathrm{sd}(x))` (:func:`standardised_residuals`,
    ``[N']`` from ``draws [N, L]``) are fitted by maximum likelihood with :math:`b + s\,T` for
    :math:`T` a Student-t (heavier tails than Gaussian) and with a generalised normal,
    :math:`p(t) \propto e^{-|t|^\beta}` (lighter tails for :math:`\beta > 2`, e.g. a posterior
    of a parameter with a bounded prior); the family with the higher likelihood is kept, and only
    if it beats the null family by a likelihood-ratio test at the 1 % level (one extra
    parameter: :math:`\Delta\log L > 3.32`), so a Gaussian-shaped error is not overfitted.

    The null is what a Gaussian posterior that is off in width only gives with ``L`` draws:
    with :math:`u - m \sim N(0, \tau^2)` and draws :math:`x_l \sim N(m, \sigma^2)`,
    :math:`(u - \bar x)/\mathrm{sd}(x) = \sqrt{\tau^2/\sigma^2 + 1/L}\;t_{L-1}` exactly
    (:math:`\bar x` and :math:`\mathrm{sd}(x)` are independent; for an exact posterior,
    :math:`\tau = \sigma`, the factor is :math:`\sqrt{(L+1)/L}`). So the null is the
    location-scale Student-t with :math:`L - 1` degrees of freedom, which the Student-t
    alternative nests (one extra parameter, its degrees of freedom; Wilks' chi-square(1)
    margin); the generalised normal does not nest it and must clear the same margin. A Gaussian
    null reads the :math:`t_{L-1}` tails of an exact posterior's :math:`z` as a shape error: with
    ``L = 9`` draws and ``N' = 200`` held-out problems it kept a non-Gaussian family for 40 % of
    exact posteriors (98 % at ``N' = 1000``), the :math:`t_{L-1}` null for 1.3-2.2 % of exact
    posteriors, of posteriors of twice or half the width and of posteriors biased by one sd
    (the Gaussian null 36-45 % and 97-99 % of those; 400 simulated fits each,
    ``benchmarks/results/calibration_shape_null.json``, from
    ``python benchmarks/calibration_shape_bound.py --case null``). For large ``L`` the null
    tends to the Gaussian, the previous rule.

    The generalised normal is kept only for :math:`\beta \le 8` (``GENNORM_MAX_SHAPE``); a fit
    with a larger :math:`\beta` is refused, and the choice is between the Student-t and the
    null. As :math:`\beta \to \infty` the family tends to the uniform on
    :math:`[b - s, b + s]`, a law whose support depends on its parameters: the Fisher
    information of the location grows like :math:`\beta` (in units of the sd,
    :math:`\beta^2\,\Gamma(2 - 1/\beta)\,\Gamma(3/\beta)/\Gamma(1/\beta)^2`: 1 at
    :math:`\beta = 2`, 2.5 at 8), the maximum-likelihood edges are the sample's extremes, and
    the likelihood gains more from them than Wilks' chi-square(1) allows for, so the 1 % margin
    does not hold there. A Gaussian sample of a few dozen ``z`` is often flat enough for the
    unbounded fit to run to that limit (scipy's :math:`\beta` above :math:`10^6`; it was
    clipped at 1000): for exact posteriors (1000 simulated fits per size, at the components'
    ``N'`` and ``L``) the unbounded family kept a non-Gaussian law for 17 % of fits at
    ``N' = 20``, ``L = 11``, 11 % at ``N' = 30``, 3 % at ``N' = 50`` (``L = 49``; 1.4 % at
    ``N' = 100``, ``L = 99``), at 20 and 30 almost all of them at the limit (two thirds at
    50); with the bound, 0.3-1.8 % at every size from ``N' = 20`` to ``200`` (0.2-1.8 % for
    any bound in ``[4, 16]``; the 1.8 % at ``N' = 75``, ``L = 29``, where the unbounded rule
    gave 2.0 %). And the map of such a fit is a uniform whose hard edges are the held-out
    sample's extremes: every test problem whose ``z`` falls beyond them ranks its truth below
    or above all its draws (on ``bayesphys calibrate gp_pde --quick``: two of four summaries,
    SBC p 1.5e-12 against 0.027 for the affine map). Keeping the fit at the bound instead
    (:math:`\beta = 8`, an almost flat law with the same edges) keeps both faults: it still
    beat the null for 3.5 % / 3.0 % / 2.3 % of the exact posteriors at ``N' = 20 / 30 / 50``
    and for both gp_pde summaries. Why 8: beyond it the family is within sampling error of
    its limit at these sizes (excess kurtosis -1.08 against the uniform's -1.2; the sample
    excess kurtosis of 50 or 100 draws has sd 0.21 or 0.14), so a larger :math:`\beta` says
    only that the sample is as flat as a uniform's; below it the power against a light tail
    is kept (a generalised-normal :math:`z` with :math:`\beta = 4` at ``N' = 100``: found in
    49 % of fits, 57 % unbounded; a bound of 4 or 5 found it in 3 % / 23 %). The cost: a
    ``z`` that is truly uniform mostly gets the Gaussian (or a Student-t) map (a uniform
    ``z`` of 100 problems got a generalised normal in every fit unbounded, in 0.6 % with the
    bound, at :math:`\beta \le 8`). These rates are
    ``benchmarks/results/calibration_shape_bound.json``, from
    ``python benchmarks/calibration_shape_bound.py``; the gp_pde figures are
    ``benchmarks/results/calibration_gp_pde_quick_2026-12-04.json`` and
    ``calibration_gp_pde_quick_before_b1d6a73.json``.

    The Student-t's degrees of freedom are stored, and mapped with, clipped at
    :data:`T_MAX_DF` (1000; the likelihood compared is the unclipped fit's). A fit there
    (scipy's :math:`\nu` runs to :math:`10^{11}` and beyond on a ``z`` lighter-tailed than the
    :math:`t_{L-1}` null, e.g. a flat ``z`` with few draws, whose generalised-normal fit is
    refused beyond :math:`\beta = 8`) is a Gaussian map for every practical purpose (the
    quantiles of :math:`t_{1000}` differ from the normal's by :math:`O(1/\nu)`), though
    its ``family`` stays ``"t"``, the law it maps through: :meth:`label` and
    :meth:`RecordRecalibration.describe` report it as ``"t (df at bound)"``.

    The generalised normal has no lower bound on :math:`\beta`. Below :math:`\beta = 1/2`
    the family is non-regular at its centre: the density's cusp makes the Fisher information
    of the location infinite (the expression above diverges as :math:`\beta \to 1/2`), the
    maximum-likelihood location sits at one of the held-out ``z`` (as for any
    :math:`\beta < 1`), and Wilks' chi-square
    reference for the 1 % margin does not hold. Such a fit is kept only when it also beats
    the Student-t (smooth at its centre), i.e. for a ``z`` both sharply peaked and heavy-tailed
    (a Cauchy-like ``z`` may fit :math:`\beta < 1/2` but is usually won by the t); its map
    then has that law's very heavy-tailed quantiles, as fitted. No bound is set there.

    When the null is kept the map is the Gaussian one (``family="norm"``), :math:`b + s\,w` with
    :math:`b, s` the Gaussian maximum-likelihood mean and sd of :math:`z` (the sd with
    divisor :math:`N'`, where the ``"affine"`` map's :math:`s_k` is the sample sd with divisor
    :math:`N' - 1`: the two scales differ by the factor :math:`\sqrt{(N'-1)/N'}`).

    Whatever the family, the fitted location is then replaced by the ``"affine"`` shift,
    :math:`b = \sum_i (s_k(\theta_i) - \bar x_i)/\sum_i \mathrm{sd}(x_i)` (the held-out bias in
    units of the draws' sd; :class:`AffineMap`): the location of :math:`z` is in units of
    :math:`c_L\,\mathrm{sd}(x)` and, the bias being divided by a random sd, it removed only
    0.88 of a bias at ``L = 9``. ``shape`` and ``scale`` are the maximum-likelihood ones. Draws
    that never vary give the identity map (``family="norm"``, shift 0, scale 1).

    A draw :math:`x` becomes
    :math:`\bar x + \mathrm{sd}(x)\, F^{-1}(\Phi((x - \bar x)/\mathrm{sd}(x)))`, with
    :math:`F` the kept law of :math:`z`.

    Built directly, ``family`` must be one of ``"norm"``, ``"t"``, ``"gennorm"``, ``shape``
    finite (and ``> 0`` for ``"t"`` and ``"gennorm"``, their degrees of freedom and
    :math:`\beta`; unused for ``"norm"``), ``shift`` finite and ``scale`` finite and ``> 0``
    (a NaN shift gave NaN draws, a negative scale flipped them); ``method`` is its label,
    ``"shape"``."""

    family: str
    shape: float
    shift: float
    scale: float
    method: str = "shape"

    def __post_init__(self) -> None:
        _check_method(self.method, _SHAPE_METHODS)
        if self.family not in _SHAPE_FAMILIES:
            raise ValueError(
                f"family: expected one of {_SHAPE_FAMILIES}, received {self.family!r}"
                f"{did_you_mean(self.family, _SHAPE_FAMILIES)}"
            )
        if self.family == "norm":
            self.shape = check_real("shape", self.shape)
        else:
            self.shape = check_real("shape", self.shape, minimum=0.0, strict=True)
        self.shift, self.scale = _check_shift_scale(self.shift, self.scale)

    @classmethod
    def fit(cls, draws: torch.Tensor, truth: torch.Tensor) -> ShapeMap:
        """``draws [N, L]``, ``truth [N]`` of one summary (``L >= 2``; a ``truth`` on another
        device than the draws is used on theirs)."""
        from scipy import stats

        draws, truth = _check_draws_truth(draws, truth)
        z_t = _residuals(draws, truth)
        if z_t.numel() == 0:
            return cls("norm", 0.0, 0.0, 1.0)
        _check_enough_spread(z_t, draws, truth)
        z = z_t.double().cpu().numpy()
        n_draws = draws.shape[1]
        loc0, scale0 = stats.norm.fit(z)
        # the null: z of a Gaussian posterior off in width only, a location-scale t_{L-1}
        nu, loc_n, scale_n = stats.t.fit(z, fix_df=n_draws - 1)
        ll_null = float(stats.t.logpdf(z, nu, loc_n, scale_n).sum())
        best = (ll_null + _LR_MARGIN, "norm", 0.0, float(loc0), float(scale0))
        for name in ("t", "gennorm"):
            dist = getattr(stats, name)
            shape, loc, scale = dist.fit(z)
            if name == "gennorm" and shape > GENNORM_MAX_SHAPE:
                continue  # at its uniform limit: no chi-square reference, edges at extremes
            ll = float(dist.logpdf(z, shape, loc, scale).sum())
            if ll > best[0]:
                best = (ll, name, float(min(shape, T_MAX_DF)), float(loc), float(scale))
        _, family, shape, _, scale = best
        return cls(family, shape, _bias_in_sd(draws, truth), scale)

    @property
    def label(self) -> str:
        """The family as reported: ``family``, or ``"t (df at bound)"`` for a Student-t
        whose degrees of freedom reached :data:`T_MAX_DF` (a Gaussian map for every practical
        purpose, mapped through the t at that bound)."""
        if self.family == "t" and self.shape >= T_MAX_DF:
            return "t (df at bound)"
        return self.family

    def map(self, x: torch.Tensor) -> torch.Tensor:
        """Draws ``[L]`` of one problem (floating point, finite, ``L >= 2``) -> mapped draws
        ``[L]``."""
        _check_map_draws(x)
        return self._map_rows(x[None])[0]

    def _map_rows(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`map` of every row of ``x [N, L]`` at once (rows checked by the caller): one
        scipy quantile call for all of them (a call per problem, 20000 for a record of 20000
        problems, was most of a recalibration's time)."""
        from scipy import stats

        m = x.mean(-1, keepdim=True)
        sd = x.std(-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        u = torch.special.ndtr((x - m) / sd).double().cpu().numpy().clip(1e-12, 1 - 1e-12)
        if self.family == "norm":
            z = stats.norm.ppf(u, self.shift, self.scale)
        else:
            z = getattr(stats, self.family).ppf(u, self.shape, self.shift, self.scale)
        return m + sd * torch.as_tensor(z, dtype=x.dtype, device=x.device)
