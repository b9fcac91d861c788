r"""Simulation-based calibration (Talts et al. 2018) with PIT-ECDF bands (Säilynoja et al. 2022).

If :math:`\theta_i \sim p(\theta)`, :math:`y_i \sim p(y\mid\theta_i)` and the draws
:math:`\theta_{i1..iL}` come from the exact posterior :math:`p(\theta\mid y_i)`, then for every
scalar summary :math:`s` the rank

.. math:: r_i = \#\{j : s(\theta_{ij}) < s(\theta_i)\} \in \{0, \dots, L\}

is discrete-uniform on :math:`\{0..L\}`. Ties (discrete summaries, repeated draws) are broken
uniformly at random. Tests of that uniformity:

* **chi-square** on ``B = min(20, N/5, L+1)`` bins of the ranks (rank ``v`` in bin
  :math:`\lfloor vB/(L+1)\rfloor`): :math:`X^2 = \sum_b (O_b - E_b)^2 / E_b` on ``B - 1``
  degrees of freedom, :math:`E_b` = ``N`` times the share of rank values in bin ``b``;
* **KS** on the randomised PIT :math:`u_i = (r_i + V_i)/(L+1)`, :math:`V_i \sim U(0, 1)`,
  which is exactly :math:`U(0,1)` under calibration.

Several summaries are combined with a Bonferroni correction:
:math:`p = \min(1, K \min_k p_k)`.

Joint tests of the summary vector are in :mod:`~bayesphys.diagnostics.sbc_joint`, the PIT-ECDF
plot of the ranks in :mod:`~bayesphys.diagnostics.pit_ecdf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from .._checks import check_int, check_seed, stream_seed
from .._device import check_finite

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import xarray as xr

__all__ = [
    "sbc_ranks",
    "sbc_pit",
    "sbc_uniformity",
    "ranks_inference_data",
]


def diagnostics_seed(seed: int, k: int) -> int:
    """The seed of the diagnostics' own ``k``-th random stream (the rank tie-breaks, the PIT's
    ``V``, the joint ranks' and the cross-fit's draws) for the run ``seed``:
    :func:`~bayesphys.stream_seed` ``(seed, "diagnostics", k)``, a hashed seed that is none of
    the seeds a simulator derives from ``seed`` by an offset. A user's simulator is called with
    the run's ``seed`` and commonly seeds its generators with ``seed``, ``seed + 1``, ...: the
    streams seeded there before (the tie-breaks at ``seed``, the PIT's ``V`` at ``seed + 1``)
    drew the very uniforms of the simulated parameters or noise, so the randomisation depended
    on the data and an exact posterior was rejected (a Bernoulli prior drawn with
    ``torch.rand(..., dtype=torch.float64)`` from ``Generator().manual_seed(seed)``: SBC
    p = 1e-132; a conjugate Gaussian whose noise came from ``manual_seed(seed + 1)``:
    coverage90 0.867 and KS p = 1e-4 at N = 3000)."""
    return stream_seed(seed, "diagnostics", k)


def truth_on_draws_device(truth: Tensor, draws: Tensor) -> Tensor:
    """``truth`` on the device of ``draws`` (``truth`` itself when it is there already), as
    :func:`~bayesphys.diagnostics.field_calibration_curve` moves each truth to its draws:
    the diagnostics of ``truth [N, K]`` and ``draws [N, L, K]`` accept the two on different
    devices (a truth kept on the CPU beside draws made on a GPU) and compute on the draws'."""
    return truth.to(draws.device)


def check_truth_draws(truth: Tensor, draws: Tensor, *, prefix: str = "") -> tuple[Tensor, Tensor]:
    """Shared input check of the rank and coverage diagnostics: ``truth [N, K]`` and
    ``draws [N, L, K]`` of the same ``N`` and ``K`` (``N, L, K >= 1``), real and all finite (a
    NaN compares neither below nor equal to anything: it would silently count as a draw above
    the truth, or give a NaN truth rank 0). Errors name ``prefix + "truth"`` /
    ``prefix + "draws"`` (``"record."`` for a :class:`SimulationRecord`'s fields). Returns
    ``(truth, draws)`` with ``truth`` moved to the draws' device
    (:func:`truth_on_draws_device`; on another device torch refused the comparison with
    "Expected all tensors to be on the same device")."""
    tn, dn = f"{prefix}truth", f"{prefix}draws"
    for name, t, shape in ((tn, truth, "[N, K]"), (dn, draws, "[N, L, K]")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor {shape}, received {type(t).__name__}")
        if t.is_complex():  # complex values have no order: a raw torch error followed
            raise TypeError(f"{name}: expected real values, received dtype {t.dtype}")
    truth = truth_on_draws_device(truth, draws)
    if truth.ndim != 2 or draws.ndim != 3 or draws.shape[0] != truth.shape[0]:
        raise ValueError(
            f"{tn}/{dn}: expected [N, K] and [N, L, K], received {tuple(truth.shape)} and "
            f"{tuple(draws.shape)}"
        )
    if draws.shape[2] != truth.shape[1]:
        raise ValueError(
            f"{dn}: expected K = {truth.shape[1]} summaries in the last dim, received "
            f"{tuple(draws.shape)}"
        )
    if truth.shape[0] == 0 or truth.shape[1] == 0 or draws.shape[1] == 0:
        raise ValueError(
            f"{tn}/{dn}: expected N >= 1 problems, L >= 1 draws and K >= 1 summaries, "
            f"received truth {tuple(truth.shape)} and draws {tuple(draws.shape)}"
        )
    check_finite(tn, truth)
    check_finite(dn, draws)
    return truth, draws


def check_ranks(ranks: Tensor, n_draws: int) -> Tensor:
    """Shared input check of the rank diagnostics: ``ranks [N, K]`` (or ``[N]``), integers
    (integral floats accepted) in ``0..n_draws``, ``N, K >= 1``. Returns them ``[N, K]``."""
    if not isinstance(ranks, Tensor):
        raise TypeError(f"ranks: expected a torch.Tensor, received {type(ranks).__name__}")
    if ranks.ndim == 1:
        ranks = ranks[:, None]
    if ranks.ndim != 2 or ranks.numel() == 0:
        raise ValueError(
            f"ranks: expected [N, K] with N, K >= 1, received shape {tuple(ranks.shape)}"
        )
    if ranks.is_floating_point():
        if not bool((ranks == ranks.round()).all()):
            raise ValueError("ranks: expected integer values in 0..L, received non-integers")
    elif ranks.is_complex() or ranks.dtype == torch.bool:
        raise TypeError(f"ranks: expected integer values in 0..L, received dtype {ranks.dtype}")
    if float(ranks.min()) < 0 or float(ranks.max()) > n_draws:
        raise ValueError(f"ranks: expected values in 0..{n_draws}, received out-of-range ranks")
    return ranks


def sbc_ranks(truth: Tensor, draws: Tensor, *, seed: int = 0) -> Tensor:
    """Ranks ``[N, K]`` (ints in ``0..L``) of ``truth [N, K]`` among ``draws [N, L, K]``.

    Ties are broken uniformly at random (seeded), so discrete summaries stay uniform; the
    uniforms are drawn per entry ``(i, k)`` by position, so a problem's tie-broken rank
    depends on its place among the problems (permuting the problems permutes the ranks exactly
    only where there are no ties). ``truth`` on another device than ``draws`` is moved to the
    draws' device, where the ranks are returned.
    """
    truth, draws = check_truth_draws(truth, draws)
    seed = check_seed("seed", seed)
    t = truth[:, None, :]
    less = (draws < t).sum(1)
    ties = (draws == t).sum(1)
    gen = torch.Generator().manual_seed(diagnostics_seed(seed, 0))
    u = torch.rand(ties.shape, generator=gen, dtype=torch.float64).to(ties.device)
    return tie_broken_rank(less, ties, u)


def tie_broken_rank(less: Tensor, ties: Tensor, u: Tensor) -> Tensor:
    """Integer ranks ``less + floor(u (ties + 1))`` (long, the shape of ``less``): with
    ``u ~ U(0, 1)`` a uniformly random place among the ``ties`` draws equal to the truth, after
    the ``less`` draws below it (every SBC rank here breaks ties this way)."""
    return less + torch.floor(u * (ties + 1).double()).long()


def randomised_pit(less: Tensor, ties: Tensor, u: Tensor, n: int) -> Tensor:
    """The randomised PIT ``(less + u (ties + 1)) / n`` (float64, on the CPU): with
    ``u ~ U(0, 1)`` and ``n = L + 1`` it is exactly U(0, 1) for a truth exchangeable with its
    ``L`` draws, ties included (:func:`tie_broken_rank` is its integer part)."""
    return (less.double().cpu() + u.double().cpu() * (ties.double().cpu() + 1)) / n


def sbc_pit(ranks: Tensor, n_draws: int, *, seed: int = 0) -> Tensor:
    """Randomised PIT values :math:`u = (r + V)/(L+1)`, :math:`V \\sim U(0, 1)` seeded by
    ``seed``, of the same shape as ``ranks``: ``[N, K] -> [N, K]``, ``[N] -> [N]`` (ranks of
    one summary). Exactly U(0,1) if calibrated. Computed on the CPU and returned on
    ``ranks.device``: the same seed gives the same values, to the bit, on every device (CUDA's
    division by a scalar multiplies by its reciprocal, one rounding off the CPU's). ``V`` is
    drawn per entry by position: the same problems in another order get other ``V``, so the
    PIT values (and the KS p-values of :func:`sbc_uniformity`) are permutation-equivariant in
    distribution, not value by value (the ranks and the chi-square are)."""
    n_draws = check_int("n_draws", n_draws, minimum=1)
    seed = check_seed("seed", seed)
    check_ranks(ranks, n_draws)
    gen = torch.Generator().manual_seed(diagnostics_seed(seed, 1))
    v = torch.rand(ranks.shape, generator=gen, dtype=torch.float64)
    return ((ranks.cpu().double() + v) / (n_draws + 1)).to(ranks.device)


def _n_bins(n_sims: int, n_draws: int, n_bins: int | None) -> int:
    """``B = min(20, N // 5, L + 1)`` (at least 2): about five or more expected per bin."""
    b = n_bins or min(20, n_sims // 5)
    return max(2, min(int(b), n_draws + 1))


def sbc_uniformity(
    ranks: Tensor,
    n_draws: int,
    *,
    n_bins: int | None = None,
    seed: int = 0,
) -> dict:
    """Uniformity tests of SBC ranks ``[N, K]`` (or ``[N]``, one summary) with values in
    ``0..L`` (``L = n_draws``).

    ``n_bins``: the chi-square bins ``B``; default ``min(20, N // 5)``. Either way ``B`` is
    clamped to ``2..L + 1`` (more bins than rank values would leave bins that no rank can
    reach), so an explicit ``n_bins > L + 1`` is reduced to ``L + 1`` silently; the ``B`` used
    is returned as ``"n_bins"``.

    Returns ``{"chi2", "chi2_pvalue", "ks_pvalue": Python lists of K floats (one per summary),
    "n_bins": B, "pvalue": float, "pvalue_ks": float}`` where ``pvalue`` is the
    Bonferroni-combined minimum of the per-summary chi-square p-values (the value reported as
    ``sbc_pvalue``) and ``pvalue_ks`` the same for KS. Reject calibration at level :math:`a`
    when ``pvalue < a``.

    ``N >= 2`` problems are required, as :func:`~bayesphys.diagnostics.simulate_and_infer`
    and :func:`~bayesphys.diagnostics.run_sbc` require ``n_sims >= 2``: the rank of one
    problem is not a sample of the rank distribution, and its chi-square (one count in two
    bins) cannot reject at any usual level (``p = 0.317`` whatever the rank when the two bins
    hold equally many rank values). Power grows with ``N`` (with the default bins, two for
    ``N < 10``, holding equally many rank values (``L + 1`` even) the chi-square cannot reject
    at 5 % below ``N = 4``; with unequal bins a few ranks in the smaller bin can: at ``L = 2``
    (bins of 2 and 1 rank values) two ranks of value 2 give :math:`X^2 = 4`, ``p = 0.046``;
    the calibration guide gives the power at ``N = 50`` to ``500``).
    """
    n_draws = check_int("n_draws", n_draws, minimum=1)
    seed = check_seed("seed", seed)
    if n_bins is not None:
        n_bins = check_int("n_bins", n_bins, minimum=2)
    ranks = check_ranks(ranks, n_draws)
    if ranks.shape[0] < 2:
        # one problem: a p-value was returned without a word (the chi-square's cannot reject)
        raise ValueError(
            f"ranks: expected N >= 2 problems (ranks [N, K]) to test their uniformity, "
            f"received N = {ranks.shape[0]}; simulate more problems (run_sbc and "
            "simulate_and_infer take n_sims >= 2)"
        )
    if ranks.is_floating_point():
        ranks = ranks.long()
    n, k = ranks.shape
    b = _n_bins(n, n_draws, n_bins)
    # rank value v in 0..L goes to bin floor(v B / (L+1)); expected counts follow the number
    # of rank values per bin (all equal when B divides L + 1)
    values_per_bin = np.bincount(np.arange(n_draws + 1) * b // (n_draws + 1), minlength=b)
    expected = n * values_per_bin / (n_draws + 1)
    r = ranks.cpu().numpy().astype(np.int64)  # r * b overflowed narrow integer ranks
    chi2, pchi = [], []
    for j in range(k):
        counts = np.bincount(r[:, j] * b // (n_draws + 1), minlength=b)
        res = stats.chisquare(counts, expected)
        chi2.append(float(res.statistic))
        pchi.append(float(res.pvalue))
    pit = sbc_pit(ranks, n_draws, seed=seed).cpu().numpy()
    pks = [float(stats.kstest(pit[:, j], "uniform").pvalue) for j in range(k)]
    return {
        "chi2": chi2,
        "chi2_pvalue": pchi,
        "ks_pvalue": pks,
        "n_bins": b,
        "pvalue": min(1.0, k * min(pchi)),
        "pvalue_ks": min(1.0, k * min(pks)),
    }


def _check_names(names, k: int) -> list[str]:
    """``k`` distinct non-empty summary names (a single string is refused: pass a list)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(f"names: expected a list of {k} summary names, received {names!r}")
    names = list(names)
    if len(names) != k:
        raise ValueError(f"names: expected {k} names (one per summary), received {len(names)}")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise TypeError(f"names: expected non-empty strings, received {bad!r}")
    if len(set(names)) != k:
        raise ValueError(f"names: expected distinct names, received {names}")
    return names


def ranks_inference_data(
    ranks: Tensor,
    names: Sequence[str],
    n_draws: int,
    *,
    group: str = "prior_sbc",
    idata: arviz.InferenceData | xr.DataTree | None = None,
    attrs: dict | None = None,
) -> arviz.InferenceData | xr.DataTree:
    """InferenceData with SBC ranks in group ``group``: one variable per summary with dim
    ``sbc_simulation`` (``[N]``), plus ``sbc_n_draws`` (``L``, 0-d).

    ``build_inference_data`` gives only ``SAMPLE_GROUPS`` ``(chain, draw)`` dims, so the ranks
    carry the explicit dim ``sbc_simulation``. With ``idata`` given, the group is added to it
    in place and ``idata`` itself is returned (a second call with the same ``group`` is
    refused: pick another name, or start from a copy); ``attrs`` (e.g. problem and method;
    names to strings, ints or floats, the values a netCDF file stores, as for
    :func:`~bayesphys.inference_data.save_netcdf`) are stored on the group.
    """
    from .._netcdf import _file_attrs
    from ..inference_data import (
        ARVIZ_V1,
        SAMPLE_GROUPS,
        build_inference_data,
        group_dataset,
        group_names,
    )

    n_draws = check_int("n_draws", n_draws, minimum=1)
    ranks = check_ranks(ranks, n_draws)
    names = _check_names(names, ranks.shape[1])
    if "sbc_n_draws" in names:
        raise ValueError("names: 'sbc_n_draws' is the name of the stored L; rename the summary")
    if not isinstance(group, str) or not group:
        raise TypeError(f"group: expected a non-empty string, received {group!r}")
    if group in (*SAMPLE_GROUPS, "observed_data", "constant_data"):
        raise ValueError(
            f"group: expected a group of its own (e.g. 'prior_sbc'), received the standard "
            f"group {group!r}"
        )
    if idata is not None and group in group_names(idata):
        raise ValueError(f"group: {group!r} is already a group of idata; pick another name")
    # checked here: a list or None value was stored, and the write of the file failed later
    attrs = {} if attrs is None else _file_attrs(attrs)
    variables = {nm: ranks[:, j].cpu().numpy() for j, nm in enumerate(names)}
    variables["sbc_n_draws"] = np.asarray(int(n_draws))
    dims = {nm: ["sbc_simulation"] for nm in names}
    coords = {"sbc_simulation": np.arange(ranks.shape[0])}
    new = build_inference_data(extra_groups={group: variables}, coords=coords, dims=dims)
    if ARVIZ_V1:  # pragma: no cover
        new[group].attrs.update(attrs)
    else:
        group_dataset(new, group).attrs.update(attrs)
    if idata is None:
        return new
    ds = group_dataset(new, group)
    if ARVIZ_V1:  # pragma: no cover
        idata[group] = type(idata)(ds)
        return idata
    idata.add_groups({group: ds})
    return idata
