r"""The simulation loop shared by SBC, coverage and TARP.

For :math:`i = 1..N` simulated problems with true object :math:`\theta_i` (a parameter vector or a
field, ``[*event]``) and data :math:`y_i`, the inference function returns a posterior
:math:`p(\theta \mid y_i)`; we keep, for ``K`` scalar summaries :math:`s_k` (parameters, probe
values, total mass, front position ...),

* the true summaries :math:`t_{ik} = s_k(\theta_i)` — ``truth [N, K]``;
* :math:`L` posterior draws of each summary :math:`s_k(\theta_{ij})` — ``draws [N, L, K]``;
* optionally the pointwise coverage of the field's central intervals at nominal ``levels`` —
  ``field_coverage [N, len(levels)]`` (the field calibration curve, averaged over the grid).

A summary is a callable mapping a batch of fields ``[*S, *event]`` to ``[*S]``. The callables are
applied to the truth (``S = ()``) and to the draws (``S = (L,)``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_seed, offset_seed
from .._device import array_as_tensor, check_finite, values_as_tensor
from .._posterior_args import _check_levels
from .._posterior_base import central_intervals, is_posterior, missing_members
from .._progress import progress_bar
from .._repr import fields_repr
from ..posterior import Posterior
from ._record_checks import check_record_fields
from .sbc import randomised_pit
from .summaries import Summary, default_summaries, front_position, probe, total_mass

__all__ = [
    "SimulationRecord",
    "simulate_and_infer",
    "posterior_draws",
    "default_summaries",
    "probe",
    "total_mass",
    "front_position",
    "DEFAULT_LEVELS",
]

DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""Central-interval levels at which coverage is measured by default."""


@dataclass
class SimulationRecord:
    """Truth and posterior draws of ``K`` summaries over ``N`` simulated problems.

    Attributes
    ----------
    names
        the ``K`` summary names.
    truth
        ``[N, K]`` true summaries :math:`s_k(\\theta_i)`.
    draws
        ``[N, L, K]`` posterior draws of the summaries.
    levels
        nominal levels of ``field_coverage``.
    field_coverage
        ``[N, len(levels)]`` pointwise coverage of the field's central intervals
        (``None`` when not requested).
    seconds
        wall time of simulation + inference + drawing.
    meta
        free-form notes (a dict).

    Notes
    -----
    Checked when built (``TypeError`` / ``ValueError`` naming the field, e.g.
    ``record.truth``): ``truth`` and ``draws`` real, finite tensors of those shapes with
    ``N, L, K >= 1``; ``names`` a sequence of ``K`` names; ``levels`` probabilities in
    ``(0, 1)`` (may be empty when ``field_coverage`` is ``None``); ``field_coverage`` finite;
    ``seconds`` a finite number ``>= 0``; ``meta`` a mapping.
    """

    names: list[str]
    truth: Tensor
    draws: Tensor
    levels: tuple[float, ...] = DEFAULT_LEVELS
    field_coverage: Tensor | None = None
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # each field was checked only where it was read: a bad record failed late, with an
        # AttributeError or another function's message (or went through a recalibration)
        check_record_fields(self)

    @property
    def n_sims(self) -> int:
        """``N``, the number of simulated problems (``truth [N, K]``)."""
        return self.truth.shape[0]

    def __repr__(self) -> str:
        return fields_repr(
            self, ("names", "truth", "draws", "levels", "field_coverage", "seconds", "meta")
        )

    @property
    def n_draws(self) -> int:
        """``L``, the number of posterior draws per problem (``draws [N, L, K]``)."""
        return self.draws.shape[1]


def check_summary_names(names: list[Any]) -> None:
    """Refuse, before any simulation, summary names that the run's result could not label
    its ranks with (:meth:`CalibrationResult.to_inference_data`, the netCDF file of
    ``bayesphys calibrate``): a name that is no non-empty string, one holding ``/`` (netCDF
    and ArviZ 1.x read it as a group path) or ``sbc_n_draws`` (the stored ``L``). They
    failed only at the export, after the ``N`` inferences."""
    bad = [k for k in names if not isinstance(k, str) or not k]
    if bad:
        raise TypeError(f"summaries: expected non-empty strings as names, received {bad!r}")
    slash = [k for k in names if "/" in k]
    if slash:
        raise ValueError(
            f"summaries: expected names without '/' (the ranks' netCDF export reads it as a "
            f"group path), received {slash!r}"
        )
    if "sbc_n_draws" in names:
        raise ValueError(
            "summaries: 'sbc_n_draws' is the name the ranks' export gives the number of draws "
            "L; rename the summary"
        )


def simulated(simulate: Callable[..., tuple[Any, Any]], n: int, seed: int) -> tuple[Tensor, Any]:
    """``simulate(n, seed=seed)`` checked: a pair ``(theta, data)`` with ``theta [n, *event]``
    (an array, or a list of ``n`` arrays ``[*event]``; returned as one tensor); ``TypeError`` /
    ``ValueError`` naming ``simulate`` otherwise (the
    shared check of :func:`simulate_and_infer` and
    :func:`~bayesphys.diagnostics.fit_recalibration`)."""
    try:
        sig = inspect.signature(simulate)
    except (TypeError, ValueError):  # no introspectable signature (some builtins): call it
        sig = None
    if sig is not None:
        try:
            sig.bind(n, seed=seed)
        except TypeError as err:  # simulate(n) without seed= failed with Python's own error
            raise TypeError(
                f"simulate: expected a callable simulate(n, *, seed) (the run passes the seed "
                f"that makes it reproducible), received one with signature {sig} ({err})"
            ) from None
    out = simulate(n, seed=seed)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        got = f"a {type(out).__name__}"
        if isinstance(out, (tuple, list)):
            got += f" of {len(out)} items"
        raise TypeError(
            f"simulate: expected simulate(n, seed=) to return (theta, data), received {got}"
        )
    theta, data = out
    if isinstance(theta, (list, tuple)) and any(isinstance(t, (Tensor, np.ndarray)) for t in theta):
        # one array per problem: stacked (torch.as_tensor failed on a list of tensors with
        # "only one element tensors can be converted to Python scalars"); numbers and lists
        # among them through numpy (float64), not rounded to float32 by torch.as_tensor
        try:
            theta = torch.stack(
                [t if isinstance(t, Tensor) else values_as_tensor(t) for t in theta]
            )
        except (RuntimeError, TypeError, ValueError) as err:
            raise ValueError(
                f"simulate: expected theta [n, *event], or n arrays of one shape, received a "
                f"{type(theta).__name__} of arrays that do not stack ({err})"
            ) from None
    # a list of Python floats through numpy (float64): torch.as_tensor rounded it to float32,
    # and float64 draws were ranked against the rounded truths
    theta = theta if isinstance(theta, Tensor) else values_as_tensor(theta)
    if theta.ndim == 0 or theta.shape[0] != n:
        raise ValueError(
            f"simulate: expected theta with leading dim {n}, received {tuple(theta.shape)}"
        )
    return theta, data


def as_draws_or_posterior(value: Any, where: str) -> Posterior | Tensor:
    """What ``infer`` returned: a ``Posterior`` as it is, draws ``[L, *event]`` (a tensor or a
    numpy array) as a tensor; anything else a ``TypeError`` naming the protocol members it
    lacks (``where`` names the call, e.g. ``"problem 3"``)."""
    if isinstance(value, np.ndarray):
        value = array_as_tensor(value)
    if isinstance(value, Tensor) or is_posterior(value):
        return value
    raise TypeError(
        f"infer ({where}): expected a Posterior or an array of draws, received "
        f"{type(value).__name__}{missing_members(value)}"
    )


@contextmanager
def noted(note: str) -> Iterator[None]:
    """Re-raise any exception of the block with ``note`` added to it (``add_note``; on Python
    3.10 the ``__notes__`` list it fills), so that the user's own error from one of ``N``
    inferences says which problem it came from; its type and message are left as they are."""
    try:
        yield
    except BaseException as err:
        if hasattr(err, "add_note"):  # Python >= 3.11
            err.add_note(note)
        else:  # 3.10: the attribute add_note fills (tracebacks then do not print it)
            err.__notes__ = [*getattr(err, "__notes__", []), note]
        raise


def posterior_draws(
    post: Posterior | Tensor | np.ndarray, n_draws: int, generator: torch.Generator | None = None
) -> Tensor:
    """``L = n_draws`` draws ``[L, *batch, *event]`` from a ``Posterior`` (``*batch`` its
    ``batch_shape``, empty when unbatched) or an array of draws ``[L', ...]`` (its trailing
    dims kept as they are; a ``SamplePosterior``'s chains and draws count as ``L'``).

    Stored draws (a tensor, or a ``SamplePosterior``) are thinned evenly to ``L`` rather than
    resampled, so that no draw is repeated (repeated draws create rank ties). Pass
    (approximately) independent draws: autocorrelated MCMC draws bias SBC towards rejection.
    """
    from ..posterior import SamplePosterior

    n_draws = check_int("n_draws", n_draws, minimum=1)
    if isinstance(post, np.ndarray):
        post = array_as_tensor(post)
    if isinstance(post, SamplePosterior):
        post = post.draws.reshape(-1, *post.draws.shape[2:])
    if isinstance(post, Tensor):
        if post.shape[0] < n_draws:
            raise ValueError(
                f"n_draws: expected at most {post.shape[0]} (the draws given), received {n_draws}"
            )
        # float32 (the default) above 2**24 stored draws rounds indices past the end (an
        # IndexError) or onto each other (repeated draws); float64 there only, so that the
        # indices of every smaller set, and the figures made from them, stay as they were
        wide = torch.float64 if post.shape[0] > 2**24 else None
        idx = torch.linspace(0, post.shape[0] - 1, n_draws, dtype=wide, device=post.device)
        return post[idx.round().long()]
    if not is_posterior(post):
        raise TypeError(
            f"post: expected a Posterior or an array of draws, received "
            f"{type(post).__name__}{missing_members(post)}"
        )
    return post.sample((n_draws,), generator=generator)


def _field_coverage(
    post, draws: Tensor, truth: Tensor, levels: Sequence[float], generator=None
) -> Tensor:
    """Pointwise coverage of central intervals over the grid, one value per level: the
    posterior's own ``interval`` or, for draws ``[S, *event]`` (a tensor or a
    ``SamplePosterior``), the randomised PIT of the truth
    among the draws at every grid point, :math:`|u - 1/2| \\le \\alpha/2` with
    :math:`u = (\\#\\{x < t\\} + V(\\#\\{x = t\\} + 1))/(S+1)` (exactly nominal in expectation
    for calibrated draws at any ``S``; order statistics ``k`` and ``S + 1 - k`` cover
    ``(S + 1 - 2k)/(S + 1)``, which rounding ``k`` puts 0.1 off at ``S = 9``)."""
    from ..posterior import SamplePosterior

    # stored draws (a SamplePosterior) take the PIT branch, as a tensor of draws does: their
    # interpolated empirical quantiles under-cover by about 2 level / (S + 1)
    if (
        is_posterior(post)
        and not isinstance(post, Tensor)
        and not isinstance(post, SamplePosterior)
    ):
        out = []
        for lo, hi in central_intervals(post, levels):
            out.append(((truth >= lo) & (truth <= hi)).double().mean())
        return torch.stack(out)
    return _pit_coverage(draws, truth, levels, generator)


def _pit_coverage(draws: Tensor, truth: Tensor, levels: Sequence[float], generator=None) -> Tensor:
    r"""Pointwise coverage ``[len(levels)]`` of central intervals of draws ``[S, *event]``
    about ``truth [*event]``, averaged over the grid: the randomised PIT
    :math:`u = (\#\{x < t\} + V(\#\{x = t\} + 1))/(S+1)`, :math:`V \sim U(0, 1)` from
    ``generator`` (CPU), counts as inside at level :math:`\alpha` when
    :math:`|u - 1/2| \le \alpha/2`. Exactly nominal in expectation for draws exchangeable with
    the truth at any ``S`` (interpolated empirical quantiles under-cover by about
    :math:`2\alpha/(S+1)`). Shared by :func:`simulate_and_infer`,
    :func:`~bayesphys.diagnostics.field_calibration_curve` and
    :meth:`~bayesphys.diagnostics.Recalibrator.evaluate`."""
    less = (draws < truth).sum(0)
    ties = (draws == truth).sum(0)
    v = torch.rand(less.shape, generator=generator, dtype=torch.float64)
    u = randomised_pit(less, ties, v, draws.shape[0] + 1)
    return torch.stack([((u - 0.5).abs() <= lv / 2).double().mean() for lv in levels])


def simulate_and_infer(
    simulate: Callable[..., tuple[Any, Any]],
    infer: Callable[[Any], Posterior | Tensor],
    summaries: Mapping[str, Summary] | None = None,
    *,
    n_sims: int,
    n_draws: int,
    seed: int = 0,
    field_levels: Sequence[float] | None = DEFAULT_LEVELS,
    progress: bool = True,
) -> SimulationRecord:
    """Simulate ``N`` problems, infer each, and record summaries of truth and ``L`` draws.

    Parameters
    ----------
    simulate
        ``simulate(n, seed=seed) -> (theta, data)``: ``theta [n, *event]`` drawn from the prior
        and ``data`` indexable by problem (``data[i]``: a tensor with leading ``n`` or a list).
        ``theta[i]`` and the posterior's draws must be the same object (same ``event`` shape);
        stack parameters and field into one tensor where both are inferred.
    infer
        ``infer(data[i]) -> Posterior | Tensor`` (draws ``[L', *event]``) for one problem.
        Draws returned as a tensor must be independent across problems: do not re-seed a
        generator with the same seed for each problem (every problem would get the same
        standard-normal draws, and SBC rejects even an exact posterior); seed one generator
        per run, or return the ``Posterior`` and let this function draw.
    summaries
        ``{name: f}`` with ``f: [*S, *event] -> [*S]``; default: every element of a small
        parameter vector (:func:`default_summaries`). Names are non-empty strings without
        ``/`` and other than ``sbc_n_draws`` (the ranks' export labels them), checked before
        the first simulation.
    n_sims, n_draws
        ``N`` problems, ``L`` posterior draws each (ranks take ``L + 1`` values).
    field_levels
        nominal levels for the field calibration curve; ``None`` skips it. The curve reads
        every element of the drawn fields, so with ``field_levels`` the draws must be finite
        everywhere, not only where the summaries read them (``ValueError`` naming the problem).
    progress
        a progress bar over the ``N`` inferences on stderr (``False``: none).

    Returns
    -------
    SimulationRecord
        with ``truth [N, K]`` and ``draws [N, L, K]``.
    """
    n_sims = check_int("n_sims", n_sims, minimum=2)
    n_draws = check_int("n_draws", n_draws, minimum=1)
    seed = check_seed("seed", seed)
    progress = check_bool("progress", progress)
    if field_levels is not None:
        field_levels = _check_levels(field_levels, "field_levels")
    for name, fn in (("simulate", simulate), ("infer", infer)):
        if not callable(fn):
            raise TypeError(f"{name}: expected a callable, received {type(fn).__name__}")
    if summaries is not None:
        if not isinstance(summaries, Mapping):
            raise TypeError(
                "summaries: expected a dict {name: callable}, received "
                f"{type(summaries).__name__}"
            )
        if not summaries:
            raise ValueError("summaries: expected at least one summary, received an empty dict")
        bad = [k for k, f in summaries.items() if not callable(f)]
        if bad:
            raise TypeError(f"summaries: expected callables, received non-callable {bad}")
        check_summary_names(list(summaries))
    t0 = time.perf_counter()
    theta, data = simulated(simulate, n_sims, seed)
    summaries = dict(summaries or default_summaries(theta.shape[1:]))
    names = list(summaries)

    def summarise(k: str, u: Tensor, n: int, what: str) -> Tensor:
        s = summaries[k](u)
        if not isinstance(s, Tensor) or s.numel() != n:
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(
                f"summaries[{k!r}]: expected one value per field ({n} for {what} of shape "
                f"{tuple(u.shape)}), received {got}"
            )
        return s

    gens: dict[torch.device, torch.Generator] = {}  # one seeded generator per device

    def gen_for(dev: torch.device) -> torch.Generator:
        if dev not in gens:
            gens[dev] = torch.Generator(device=dev).manual_seed(offset_seed(seed, 7919))
        return gens[dev]

    field_gen = torch.Generator().manual_seed(offset_seed(seed, 104723))  # PIT of drawn fields
    truths, draws_all, fcov = [], [], []

    def infer_one(i: int) -> None:
        """Infer problem ``i``, record its summaries and field coverage."""
        post = as_draws_or_posterior(infer(data[i]), f"problem {i}")
        # the object's shape before any draw is taken: draws [*event, L'] (the draws axis
        # last) were refused as too few draws ("n_draws: expected at most ..."), or thinned
        # and then refused as draws of another shape
        want = tuple(theta.shape[1:])
        if isinstance(post, Tensor):
            # a 0-d tensor holds no draws axis (it failed with an IndexError)
            got = tuple(post.shape[1:]) if post.ndim else None
            what = f"draws {tuple(post.shape)} ([L', *event])"
        else:
            got = (*post.batch_shape, *post.event_shape)
            what = f"a posterior of batch + event shape {got}"
        if got != want:
            raise ValueError(
                f"infer: expected posterior draws of the simulated object's shape {want}, "
                f"received {what} (problem {i})"
            )
        g = None if isinstance(post, Tensor) else gen_for(post.device)
        # without the autograd graph of draws a user's network returned outside no_grad: the
        # summaries recorded below kept it, and with it every replicate's weights and
        # intermediates, alive until the last of the N inferences
        d = posterior_draws(post, n_draws, generator=g).detach()
        # the truth in the draws' floating dtype; among integer or bool draws in the
        # promoted dtype, as field_calibration_curve does (a cast to the draws' dtype
        # truncated a float truth: 3.88 among integer draws was recorded as 3)
        t_i = theta[i].to(
            device=d.device,
            dtype=d.dtype if d.is_floating_point() else torch.promote_types(theta.dtype, d.dtype),
        )
        if tuple(d.shape[1:]) != tuple(t_i.shape):
            raise ValueError(
                f"infer: expected posterior draws of the simulated object's shape "
                f"{tuple(t_i.shape)}, received draws {tuple(d.shape)} (problem {i})"
            )
        truths.append(
            torch.stack([summarise(k, t_i, 1, "the truth").reshape(()) for k in names]).reshape(
                len(names)
            )
        )
        draws_all.append(
            torch.stack([summarise(k, d, n_draws, "the draws").reshape(n_draws) for k in names], -1)
        )
        check_finite(f"simulate: summaries of theta (problem {i})", truths[-1])
        check_finite(f"infer: summaries of the posterior draws (problem {i})", draws_all[-1])
        if field_levels is not None:
            # the field calibration curve reads every element of the drawn fields, also
            # those no summary reads: a NaN there compared as a draw above the truth and
            # lowered field_coverage without a word
            check_finite(
                f"infer: posterior draws (problem {i}; field_levels reads every element, "
                f"pass field_levels=None to skip the field calibration curve)",
                d,
            )
            fcov.append(_field_coverage(post, d, t_i, field_levels, field_gen))

    # each step is one of the user's inferences (a fit each): minutes in all, not silent
    bar = progress_bar(range(n_sims), desc="SBC infer", progress=progress, leave=False)
    try:
        for i in bar:
            # an error of the user's simulate data, infer or summaries (a diverged solver in
            # one of N problems) came without the problem it was raised in
            with noted(f"simulate_and_infer: raised in problem {i} of {n_sims} (seed={seed})"):
                infer_one(i)
    finally:
        bar.close()
    truth = torch.stack(truths).detach().double().cpu()
    draws = torch.stack(draws_all).detach().double().cpu()
    return SimulationRecord(
        names=names,
        truth=truth,
        draws=draws,
        levels=tuple(field_levels or ()),
        field_coverage=torch.stack(fcov).cpu() if fcov else None,
        seconds=time.perf_counter() - t0,
    )
