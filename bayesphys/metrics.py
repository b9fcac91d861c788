r"""Accuracy and calibration metrics shared by every component.

All functions take torch tensors (any device; :func:`crps_gaussian`, :func:`wasserstein`,
:func:`mmd`, ``var`` of :func:`gaussian_nll` and ``target`` of :func:`conservation_error` also
numpy arrays, lists or numbers, as their hints say) and return tensors on that device, reducing over
all dimensions unless ``dim`` is given; a second tensor on another device than the first
(``truth`` beside ``pred``, ``y`` beside ``mean`` or the draws) is moved to the first's. A reducing
metric refuses (``ValueError``) inputs with no element, whose mean would be NaN, and a ``dim``
outside its input.

=========================  ==================================================================
``relative_l2``            :math:`\lVert \hat u - u\rVert_2 / \lVert u\rVert_2`
``gaussian_nll``           :math:`\tfrac12\log(2\pi\sigma^2) + (y-\mu)^2/(2\sigma^2)` (mean)
``crps_gaussian``          closed form :math:`\sigma[z(2\Phi(z)-1) + 2\varphi(z) - 1/\sqrt\pi]`
``crps_samples``           :math:`E|X-y| - \tfrac12 E|X-X'|` from draws (sorted, O(S log S))
``crps``                   either, for a posterior or draws (closed form for a Gaussian one)
``interval_coverage``      fraction of :math:`y` inside ``[lower, upper]``
``calibration_curve``      observed vs nominal coverage of central intervals
``conservation_error``     :math:`|\sum_i w_i u_i - b|` per constraint
``wasserstein``            exact :math:`W_1` / :math:`W_2` between point clouds (POT)
``mmd``                    multi-bandwidth RBF MMD (biased V-statistic, squared)
=========================  ==================================================================

Gradients: every metric but the coverage counts is differentiable in its tensor inputs, for use
as a training loss: ``relative_l2``, ``mse``, ``gaussian_nll``, ``crps_gaussian``,
``crps_samples`` (through the sort), ``crps`` (of a Gaussian posterior or of draws),
``conservation_error``, ``mmd``, and ``wasserstein`` in the clouds (envelope theorem; not in
the weights). ``interval_coverage`` and ``calibration_curve`` count points inside intervals:
piecewise constant, they are returned without gradient. :func:`torch.func.grad` works on them;
:func:`torch.func.vmap` does not on those that check their values (finite inputs, positive
variances: all but ``mse``), where torch raises its "data-dependent control flow" error: pass
the batch as a leading dimension and reduce with ``dim`` instead. :func:`torch.compile` runs
them, with graph breaks at those checks.

Example
-------
>>> import torch
>>> from bayesphys.metrics import crps_gaussian
>>> round(float(crps_gaussian(torch.tensor(0.), torch.tensor(1.), torch.tensor(0.))), 4)
0.2337
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ._checks import check_bool, check_broadcasts, check_int
from ._cloud_distances import mmd, wasserstein
from ._device import ArrayLike, check_finite, torch_readable, values_as_tensor
from ._posterior_args import _central_quantiles
from ._precision import own_precision
from ._quantile import draw_quantiles

if TYPE_CHECKING:  # pragma: no cover
    from ._posterior_base import Posterior

__all__ = [
    "relative_l2",
    "mse",
    "gaussian_nll",
    "crps_gaussian",
    "crps_samples",
    "crps",
    "interval_coverage",
    "calibration_curve",
    "conservation_error",
    "wasserstein",
    "mmd",
]


def _tensor(name: str, x, *, floating: bool = False) -> Tensor:
    """``x`` if it is a tensor (floating or complex when ``floating``), else a ``TypeError``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, received {type(x).__name__}")
    if floating and not (x.is_floating_point() or x.is_complex()):
        raise TypeError(
            f"{name}: expected a floating-point tensor, received dtype {x.dtype} "
            "(convert with .double() or .float())"
        )
    return x


def _not_meta(name: str, x, ref: Tensor | None = None) -> None:
    """Refuse a ``meta`` tensor by name where its values are needed: read (``ref`` ``None``),
    or moved to ``ref``'s device off ``meta`` (a metric of one failed inside torch,
    "Tensor.item() cannot be called on meta tensors" or "Cannot copy out of meta tensor").
    Beside a ``meta`` ``ref`` it passes: shapes-only metrics (:func:`mse`) run there."""
    if isinstance(x, Tensor) and x.device.type == "meta":
        if ref is None or ref.device.type != "meta":
            raise ValueError(f"{name}: expected values, received a tensor on the 'meta' device")


def _on_like(x, ref: Tensor, name: str = "") -> Tensor:
    """``x`` (the argument ``name``) as a tensor on ``ref``'s device (a ``meta`` one refused
    unless ``ref`` is there too: it has no values to move); a non-tensor (a Python number, a
    list) also in ``ref``'s floating dtype (``torch.as_tensor(0.1)`` is float32: a float64
    metric would be computed with a rounded value), or, beside a ``ref`` of integers, in its
    own dtype through numpy (Python floats as float64: ``torch.as_tensor`` rounded a list of
    them to float32)."""
    _not_meta(name, x, ref)
    if isinstance(x, Tensor):
        return x.to(ref.device)
    if not ref.is_floating_point():
        return values_as_tensor(x).to(ref.device)
    if isinstance(x, np.ndarray):
        # a flipped array (negative strides) failed inside torch; a read-only one (a memmap
        # opened with mode "r") warned that writing to the tensor "will result in undefined
        # behavior"
        x = torch_readable(x)
    return torch.as_tensor(x, dtype=ref.dtype, device=ref.device)


def _real(*named: tuple[str, Tensor]) -> None:
    """Refuse complex tensors (``TypeError`` naming the argument): a Gaussian's score or an
    interval's bounds of complex values have no meaning (a complex NLL came back as a complex
    number; ordering failed inside torch)."""
    for name, t in named:
        if t.is_complex():
            raise TypeError(f"{name}: expected real values, received dtype {t.dtype}")


def _no_bool(*named: tuple[str, object]) -> None:
    """Refuse boolean values (a ``TypeError`` naming the argument): a mask passed as a
    variance, a standard deviation or an observation was read as 0 / 1 and scored."""
    for name, x in named:
        dtype = getattr(x, "dtype", None)
        if isinstance(x, (bool, np.bool_)) or dtype in (torch.bool, np.dtype(bool)):
            raise TypeError(
                f"{name}: expected numbers, received booleans (a mask?); convert with "
                ".double() or .float() if 0 / 1 is meant"
            )


def _no_nan(name: str, x: Tensor) -> None:
    if (x.is_floating_point() or x.is_complex()) and bool(torch.isnan(x).any()):
        raise ValueError(f"{name}: expected no NaN entries, received {int(torch.isnan(x).sum())}")


def _same_shape(a: Tensor, b: Tensor, an: str, bn: str) -> None:
    _tensor(an, a)
    _tensor(bn, b)
    if a.shape != b.shape:
        raise ValueError(
            f"{an}/{bn}: expected equal shapes, received {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_reduce(x: Tensor, dim: int | tuple[int, ...] | None, name: str = "pred/truth") -> None:
    """A reduction over ``dim`` of ``x`` (the values of ``name``) needs elements and dims
    inside ``x`` (torch raised an IndexError, and the mean of nothing is NaN)."""
    if x.numel() == 0:
        raise ValueError(f"{name}: expected at least one element, received shape {tuple(x.shape)}")
    if dim is None:
        return
    lo, hi = -max(x.ndim, 1), max(x.ndim - 1, 0)  # torch's range; a 0-d tensor takes -1, 0
    try:
        dims = [operator.index(dim)] if not isinstance(dim, (tuple, list)) else dim
        ok = all(not isinstance(d, bool) and lo <= operator.index(d) <= hi for d in dims)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            f"dim: expected an int or a tuple of ints in [{lo}, {hi}] for shape "
            f"{tuple(x.shape)}, received {dim!r}"
        )
    named = [operator.index(d) % max(x.ndim, 1) for d in dims]
    if len(set(named)) != len(named):  # (0, 0) or (0, -2): torch's RuntimeError
        raise ValueError(
            f"dim: expected distinct dimensions for shape {tuple(x.shape)}, received {dim!r}"
        )


def _scaled_norm(x: Tensor, dim: int | tuple[int, ...] | None) -> tuple[Tensor, Tensor]:
    """``(norm(x / m), m)`` with ``m = max |x|`` over ``dim`` (all), 1 where ``m`` is 0: the
    2-norm of ``x`` is their product, which may itself underflow or overflow."""
    if x.ndim == 0:
        m = torch.where(x == 0, torch.ones_like(x.abs()), x.abs())
        return torch.linalg.vector_norm(x / m), m
    dims = tuple(range(x.ndim)) if dim is None else tuple(dim) if isinstance(dim, list) else dim
    m = x.abs().amax(dim=dims, keepdim=True)
    m = torch.where(m == 0, torch.ones_like(m), m)
    return torch.linalg.vector_norm(x / m, dim=dim), m.squeeze(dims)


def relative_l2(pred: Tensor, truth: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    r"""Relative L2 error :math:`\lVert \hat u - u\rVert / \lVert u\rVert` over ``dim`` (all).

    A zero ``truth`` gives ``inf`` where ``pred`` differs from it and 0 where it does not (it
    gave 1e38, a number); NaN in either propagates. Scale-invariant over the dtype's whole
    range: where a norm's squares underflow or overflow (float32 fields of size 1e-25 gave 0
    for a 100 % error, of size 1e20 NaN), both norms are taken of the values divided by their
    largest magnitude."""
    _same_shape(pred, truth, "pred", "truth")
    _tensor("pred", pred, floating=True)
    _tensor("truth", truth, floating=True)
    _check_reduce(truth, dim)
    _not_meta("pred", pred)  # its values are read (the scaled norms)
    truth = _on_like(truth, pred, "truth")  # on pred's device, as every metric's second tensor
    err = pred - truth
    num = torch.linalg.vector_norm(err, dim=dim)
    den = torch.linalg.vector_norm(truth, dim=dim)
    lost = (num == 0) | (den == 0) | torch.isinf(num) | torch.isinf(den)
    if bool(lost.any()) and bool(torch.isfinite(err).all()) and bool(torch.isfinite(truth).all()):
        # the ratio from the norms of err / max|err| and truth / max|truth| (each in [0, 1]
        # entrywise: no overflow, no underflow of the largest term), times the ratio of maxima
        (num, m_err), (den, m_truth) = _scaled_norm(err, dim), _scaled_norm(truth, dim)
        num = num * (m_err / m_truth)
    zero = den == 0
    out = num / torch.where(zero, torch.ones_like(den), den)
    return torch.where(zero & (num > 0), torch.full_like(out, math.inf), out)


def mse(pred: Tensor, truth: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    r"""Mean squared error :math:`\overline{\lvert \hat u - u\rvert^2}` over ``dim`` (all); for
    complex tensors the squared modulus, a real result (the square of a complex error is not
    its size: errors ``[1j, 0]`` gave ``-0.5``)."""
    _same_shape(pred, truth, "pred", "truth")
    _tensor("pred", pred, floating=True)
    _tensor("truth", truth, floating=True)
    _check_reduce(truth, dim)
    err = pred - _on_like(truth, pred, "truth")
    sq = err.abs().square() if err.is_complex() else err.square()
    return sq.mean(dim=dim) if dim is not None else sq.mean()


def gaussian_nll(
    mean: Tensor, var: ArrayLike, y: Tensor, dim: int | tuple[int, ...] | None = None
) -> Tensor:
    """Mean Gaussian negative log likelihood of ``y`` under ``N(mean, var)`` (per point).

    ``var`` has the mean's shape or one that broadcasts to it (e.g. a scalar: a tensor, an array
    or a Python number, taken in the mean's dtype); ``mean`` and
    ``y`` finite (a NaN gave a NaN score, as :func:`crps_gaussian` refuses); all three real
    (a complex tensor is a ``TypeError``, as in :func:`crps_gaussian` and
    :func:`interval_coverage`).
    """
    _same_shape(mean, y, "mean", "y")
    _no_bool(("mean", mean), ("var", var), ("y", y))
    check_finite("mean", mean)
    check_finite("y", y)
    var, y = _on_like(var, mean, "var"), _on_like(y, mean, "y")
    _real(("mean", mean), ("var", var), ("y", y))  # a complex mean gave a complex NLL
    try:
        fits = torch.broadcast_shapes(var.shape, mean.shape) == mean.shape
    except RuntimeError:
        fits = False
    if not fits:  # e.g. var [n, 1] against mean [n]: broadcasting gave an [n, n] average
        raise ValueError(
            f"var: expected the mean's shape {tuple(mean.shape)} (or one broadcasting to it), "
            f"received {tuple(var.shape)}"
        )
    if bool((~(var > 0)).any()):  # NaN too
        raise ValueError("var: expected strictly positive variances (no NaN)")
    _check_reduce(mean, dim, "mean/y")
    nll = 0.5 * (torch.log(2 * math.pi * var) + (y - mean) ** 2 / var)
    return nll.mean() if dim is None else nll.mean(dim)


def crps_gaussian(
    mean: ArrayLike, std: ArrayLike, y: ArrayLike, dim: int | tuple[int, ...] | None = None
) -> Tensor:
    r"""Continuous ranked probability score of ``N(mean, std^2)`` at ``y`` (closed form, mean).

    ``mean``, ``std`` and ``y`` real numbers (tensors, numpy arrays, lists or Python numbers;
    booleans are a ``TypeError``) broadcasting to one shape; the score is averaged over all
    points, or over ``dim``. Numbers and lists beside a tensor are taken in its dtype; with
    no tensor among the three, Python floats are float64 (numpy's reading), not float32."""
    _no_bool(("mean", mean), ("std", std), ("y", y))
    if not isinstance(mean, Tensor):  # a Python number in the tensors' dtype, not float32
        ref = next((t for t in (y, std) if isinstance(t, Tensor)), None)
        # with no tensor at all, through numpy: Python floats as float64 (torch.as_tensor
        # scored a float64 user's numbers and lists in float32)
        mean = values_as_tensor(mean) if ref is None else _on_like(mean, ref, "mean")
    std, y = _on_like(std, mean, "std"), _on_like(y, mean, "y")
    _real(("mean", mean), ("std", std), ("y", y))
    try:
        shape = torch.broadcast_shapes(mean.shape, y.shape)
    except RuntimeError:
        shape = None
    if shape not in (mean.shape, y.shape):
        # e.g. mean [n, 1] against y [n]: broadcasting gave an [n, n] average
        raise ValueError(
            f"mean/y: expected equal shapes (or one broadcasting to the other), received "
            f"{tuple(mean.shape)} and {tuple(y.shape)}"
        )
    check_broadcasts("std", std.shape, shape, f"a shape broadcasting to {tuple(shape)}")
    for name, t in (("mean", mean), ("std", std), ("y", y)):
        check_finite(name, t)
    mean, std, y = torch.broadcast_tensors(mean, std, y)
    _check_reduce(mean, dim, "mean/y")
    if bool((std <= 0).any()):
        raise ValueError("std: expected strictly positive standard deviations")
    crps = _gaussian_crps_points(mean, std, y)
    return crps.mean() if dim is None else crps.mean(dim)


def _gaussian_crps_points(mean: Tensor, std: Tensor, y: Tensor) -> Tensor:
    """The closed-form CRPS of ``N(mean, std^2)`` at ``y`` per point (checked, broadcast
    tensors of one shape, ``std > 0``), without reducing."""
    z = (y - mean) / std
    # z overflows for a std tiny against the error (float32 std 1e-39, error 1): the form
    # below gave inf; there the score is |y - mean| - std / sqrt(pi) to the dtype's precision
    far = ~torch.isfinite(z)
    any_far = bool(far.any())
    if any_far:  # the closed form at a finite stand-in there (replaced below): its inf * 0
        # gave NaN gradients in mean and std, though the score was finite
        z = (y - mean) / torch.where(far, torch.ones_like(std), std)
    n = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    crps = std * (z * (2 * n.cdf(z) - 1) + 2 * n.log_prob(z).exp() - 1 / math.sqrt(math.pi))
    if any_far:
        crps = torch.where(far, (y - mean).abs() - std / math.sqrt(math.pi), crps)
    return crps


#: points x draws of one block of :func:`crps_samples` (a float64 copy of 8 MB, and its sort)
_CRPS_BLOCK = 2**20


def crps_samples(
    samples: Tensor,
    y: Tensor,
    dim: int | tuple[int, ...] | None = None,
    *,
    fair: bool = False,
) -> Tensor:
    r"""Sample CRPS: draws ``[S, *shape]``, truth ``[*shape]``; mean over points (or ``dim``).

    Uses :math:`E|X-y| - \frac{1}{2S^2}\sum_{ij}|x_i-x_j|`, the latter from sorted draws:
    :math:`\sum_{ij}|x_i - x_j| = 2\sum_k (2k - S - 1) x_{(k)}`: the CRPS of the draws'
    empirical law, which exceeds the CRPS of the law they are drawn from by
    :math:`E|X - X'| / (2S)` on average (+10 % for a standard normal at ``S = 10``).

    ``fair=True``: the "fair" (unbiased) estimator, :math:`\frac{1}{2S(S-1)}` in place of
    :math:`\frac{1}{2S^2}` (Ferro 2014; needs ``S >= 2``), whose mean over draws is the CRPS of
    the law drawn from: use it to compare ensembles of different sizes. The default keeps
    the empirical law's CRPS (the benchmarks' figures).
    """
    fair = check_bool("fair", fair)
    _tensor("samples", samples, floating=True)
    _tensor("y", y)
    _no_bool(("y", y))
    for name, t in (("samples", samples), ("y", y)):
        if t.is_complex():  # the float64 cast dropped the imaginary part
            raise TypeError(f"{name}: expected real values, received dtype {t.dtype}")
    if samples.ndim == 0 or tuple(samples.shape[1:]) != tuple(y.shape):
        raise ValueError(
            f"samples: expected shape [{', '.join(['S', *map(str, y.shape)])}], received "
            f"{tuple(samples.shape)}"
        )
    if samples.shape[0] == 0:
        raise ValueError(
            f"samples: expected at least one draw, received shape {tuple(samples.shape)}"
        )
    if fair and samples.shape[0] < 2:
        raise ValueError(
            f"samples: the fair CRPS needs at least 2 draws, received shape {tuple(samples.shape)}"
        )
    check_finite("samples", samples)
    check_finite("y", y)
    _check_reduce(y, dim, "y")
    y = _on_like(y, samples, "y")
    s = samples.shape[0]
    # the weights 2k - S - 1 and the sums in float64: half precision holds k exactly only to
    # 2048 (bfloat16: 256) and its sum overflowed to -inf past a few thousand draws; in float32
    # the terms (2k - S - 1) x_(k) of draws far from 0 cancel badly (offset 1e4, sd 0.1:
    # 2.6e-3 relative error). MPS has no float64: there float32, about the truth (CRPS is
    # shift-invariant), which removes the offset
    out_dtype = (
        torch.promote_types(samples.dtype, y.dtype) if y.is_floating_point() else samples.dtype
    )
    mps = samples.device.type == "mps"
    work = torch.float32 if mps else torch.float64
    flat, yf = samples.reshape(s, -1), y.reshape(-1)
    weights = 2 * torch.arange(1, s + 1, dtype=work, device=samples.device) - s - 1
    # by blocks of points, each block's draws sorted as rows [points, S]: the whole [S, P] in
    # float64, its sort and sort indices (int64) held four [S, P] arrays at once (3.2 GB for
    # 1000 draws of 1e5 points), and a sort along dim 0 is about twice as slow
    block = max(1, _CRPS_BLOCK // s)
    parts = []
    for j in range(0, flat.shape[1], block):
        # [c, S] rows, contiguous (a sort of the transposed view is as slow as along dim 0)
        cols = flat[:, j : j + block]
        x = torch.empty(cols.mT.shape, dtype=work, device=cols.device).copy_(cols.mT)
        yb = yf[j : j + block].to(work)
        if mps:
            x = x - yb[:, None]
            yb = torch.zeros_like(yb)
        term1 = (x - yb[:, None]).abs_().mean(-1)
        term2 = torch.mv(x.sort(-1).values, weights) * 2 / (2 * s * (s - 1 if fair else s))
        parts.append(term1 - term2)
    crps = torch.cat(parts).reshape(y.shape).to(out_dtype)
    return crps.mean() if dim is None else crps.mean(dim)


def crps(
    posterior_or_samples: Posterior | Tensor,
    y: Tensor,
    dim: int | tuple[int, ...] | None = None,
    *,
    num_samples: int = 1000,
    seed: int = 0,
) -> Tensor:
    r"""CRPS of a posterior, or of draws, at the truth ``y [*batch, *event]`` (mean over all
    points, or over ``dim``): the score the design names ``crps``, one call for any posterior.

    * a :class:`~bayesphys.GaussianPosterior`: the closed form of :func:`crps_gaussian` with
      its marginal means and standard deviations :math:`\sigma_i = \sqrt{\operatorname{Var}
      [u_i]}`; a point of zero variance (a fixed boundary value) scores the CRPS of a point
      mass, :math:`|y_i - \mu_i|` (the closed form's limit; no gradient in its variance);
    * any other :class:`~bayesphys.Posterior`: :func:`crps_samples` of ``num_samples`` draws
      ``sample(num_samples, seed=seed)`` (the empirical law's CRPS: above the posterior's own
      by :math:`E|X - X'| / (2S)` on average);
    * a tensor of draws ``[S, *shape]``: :func:`crps_samples` of them.

    ``y`` must have the posterior's ``[*batch, *event]`` shape (the draws' ``[*shape]``).
    Differentiable as :func:`crps_gaussian` for a Gaussian posterior (in its mean and
    variance) and as :func:`crps_samples` for a tensor of draws; a posterior's own draws are
    taken without gradient (``sample``)."""
    from ._gaussian_posterior import GaussianPosterior
    from ._posterior_base import is_posterior

    _tensor("y", y)
    if isinstance(posterior_or_samples, Tensor):
        return crps_samples(posterior_or_samples, y, dim)
    if not is_posterior(posterior_or_samples):
        raise TypeError(
            "posterior_or_samples: expected a Posterior or a tensor of draws [S, *shape], "
            f"received {type(posterior_or_samples).__name__}"
        )
    post = posterior_or_samples
    want = (*post.batch_shape, *post.event_shape)
    if tuple(y.shape) != tuple(want):
        raise ValueError(f"y: expected shape {tuple(want)}, received {tuple(y.shape)}")
    if isinstance(post, GaussianPosterior):
        mean, var = post.mean, post.variance
        y = _on_like(y, mean, "y")
        _real(("y", y))
        check_finite("y", y)
        point = var <= 0
        if not bool(point.any()):
            return crps_gaussian(mean, var.sqrt(), y, dim)
        # a point mass where the variance is 0: the closed form's limit |y - mu| (the square
        # root taken of 1 there: sqrt's gradient at 0 is infinite, times 0 NaN in the variance)
        safe = torch.where(point, torch.ones_like(var), var).sqrt()
        mean, safe, y = torch.broadcast_tensors(mean, safe, y)
        score = torch.where(point, (y - mean).abs(), _gaussian_crps_points(mean, safe, y))
        _check_reduce(score, dim, "posterior/y")
        return score.mean() if dim is None else score.mean(dim)
    draws = post.sample(check_int("num_samples", num_samples, minimum=1), seed=seed)
    return crps_samples(draws, _on_like(y, draws, "y"), dim)


def interval_coverage(
    lower: Tensor, upper: Tensor, y: Tensor, dim: int | tuple[int, ...] | None = None
) -> Tensor:
    """Fraction of ``y`` with ``lower <= y <= upper`` (mean over ``dim`` or all)."""
    _same_shape(lower, y, "lower", "y")
    _same_shape(upper, y, "upper", "y")
    for name, t in (("lower", lower), ("upper", upper), ("y", y)):
        _not_meta(name, t)  # its values are compared
    upper, y = _on_like(upper, lower, "upper"), _on_like(y, lower, "y")
    _real(("lower", lower), ("upper", upper), ("y", y))
    for name, t in (("lower", lower), ("upper", upper), ("y", y)):
        _no_nan(name, t)  # a NaN compares false: it would count as outside, silently
    if bool((upper < lower).any()):
        raise ValueError("lower/upper: expected lower <= upper everywhere")
    _check_reduce(y, dim, "lower/upper/y")
    inside = ((y >= lower) & (y <= upper)).to(torch.float64)
    return inside.mean() if dim is None else inside.mean(dim)


def calibration_curve(
    posterior_or_samples: Posterior | Tensor,
    y: Tensor,
    levels: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
) -> tuple[Tensor, Tensor]:
    r"""Observed coverage of central intervals at nominal ``levels``.

    ``posterior_or_samples`` is a :class:`~bayesphys.Posterior` (its ``interval``) or finite
    draws ``[S, *shape]`` (empirical quantiles, in float32 at least). Returns
    ``(nominal, observed)``, each ``[L]``. With draws, the interpolated empirical quantiles of ``S``
    draws under-cover a calibrated posterior by about :math:`2\,\mathrm{level}/(S + 1)` (e.g. 0.82
    instead of 0.9 at ``S = 19``); use many draws, or
    :func:`bayesphys.diagnostics.coverage.central_coverage`, which accounts for ``S``.
    """
    from ._posterior_args import _check_levels
    from ._posterior_base import is_posterior

    nominal = torch.as_tensor(_check_levels(levels), dtype=torch.float64)
    _tensor("y", y)
    _not_meta("y", y)
    if isinstance(posterior_or_samples, Tensor):
        _tensor("posterior_or_samples", posterior_or_samples, floating=True)
        _real(("posterior_or_samples", posterior_or_samples), ("y", y))
        if posterior_or_samples.ndim == 0 or posterior_or_samples.shape[0] < 2:
            raise ValueError(
                "posterior_or_samples: expected draws [S, *shape] with S >= 2, received shape "
                f"{tuple(posterior_or_samples.shape)}"
            )
        want = tuple(posterior_or_samples.shape[1:])
    elif is_posterior(posterior_or_samples):
        want = (*posterior_or_samples.batch_shape, *posterior_or_samples.event_shape)
    else:
        raise TypeError(
            "posterior_or_samples: expected a Posterior or a tensor of draws [S, *shape], "
            f"received {type(posterior_or_samples).__name__}"
        )
    if tuple(y.shape) != want:
        raise ValueError(f"y: expected shape {want}, received {tuple(y.shape)}")
    obs = []
    if isinstance(posterior_or_samples, Tensor):
        # every level's two quantiles from one sort (one sort per level took 32 s for 1000
        # draws of 10k points); in float32 at least (torch.quantile has no half kernels), and
        # non-finite draws named as such (a NaN draw was reported as a NaN "lower" bound)
        draws = posterior_or_samples
        check_finite("posterior_or_samples", draws)
        draws = draws.to(torch.promote_types(draws.dtype, torch.float32))

        def quantile(q: list[float]) -> Tensor:  # [2 L, *shape]
            return draw_quantiles(draws, torch.tensor(q, dtype=draws.dtype, device=draws.device))

        bounds = _central_quantiles(quantile, nominal.tolist())
    else:
        from ._posterior_base import central_intervals

        bounds = central_intervals(posterior_or_samples, nominal.tolist())
    for lo, hi in bounds:
        obs.append(float(interval_coverage(lo, hi, y.to(lo.device))))
    return nominal, torch.tensor(obs, dtype=torch.float64)


@own_precision()  # G u in the field's dtype inside a caller's autocast too (bfloat16 there)
def conservation_error(field: Tensor, weights: Tensor, target: ArrayLike) -> Tensor:
    r"""Conservation error :math:`|G u - b|` per constraint.

    ``field`` ``[*batch, n]``, ``weights`` (quadrature row(s) :math:`G`) ``[n]`` or ``[m, n]``,
    ``target`` :math:`b` (a tensor, an array, a list or a number) broadcastable to ``[*batch]``
    or ``[*batch, m]``.
    """
    _tensor("field", field)
    _tensor("weights", weights)
    if field.ndim == 0:
        raise ValueError("field: expected shape [*batch, n], received a 0-d tensor")
    if weights.ndim not in (1, 2) or weights.shape[-1] != field.shape[-1]:
        raise ValueError(
            f"weights: expected [n] or [m, n] with n = {field.shape[-1]} (the field's last dim), "
            f"received {tuple(weights.shape)}"
        )
    if weights.dtype != field.dtype:
        raise TypeError(
            f"weights: expected the field's dtype {field.dtype}, received {weights.dtype}"
        )
    weights = _on_like(weights, field, "weights")
    gu = field @ weights.mT if weights.ndim == 2 else field @ weights
    if not isinstance(target, Tensor):  # a number or a list: in gu's dtype when floating (a
        # float64 error is not computed with a float32-rounded 0.1), else as given (integer
        # counts with a target 2.5 gave |3 - 2|: the cast truncated it)
        floating = gu.is_floating_point() or gu.is_complex()
        try:
            target = torch.as_tensor(target, dtype=gu.dtype if floating else None, device=gu.device)
        except (TypeError, ValueError, RuntimeError) as err:  # "new(): invalid data type 'str'"
            raise TypeError(
                f"target: expected numbers (a tensor, an array or a number), received "
                f"{type(target).__name__} {target!r:.60}"
            ) from err
    _not_meta("target", target, gu)
    target = target.to(gu.device)
    tshape = target.shape
    # e.g. target [batch] against [batch, m]: the constraints would mix
    check_broadcasts(
        "target",
        tshape,
        gu.shape,
        f"a shape broadcasting to {tuple(gu.shape)} ([*batch] or [*batch, m]: one value per "
        "field and constraint)",
    )
    return (gu - target).abs()
