r"""One calibration run = simulations + SBC + coverage + TARP + scores, and its table row.

:func:`run_sbc` simulates ``N`` problems, draws ``L`` posterior samples of ``K`` summaries for
each, and computes every diagnostic of :mod:`~bayesphys.diagnostics.sbc` and
:mod:`~bayesphys.diagnostics.coverage` into a :class:`CalibrationResult`.
:func:`calibration_rows` wraps it into the ``benchmarks/results/calibration.json`` row that
components return from their ``_calibration.calibrate_rows`` hook::

    {"problem", "method", "setting", "anchor": None,
     "metrics": {"coverage50", "coverage90", "coverage95", "hdi90", "field_coverage90",
                 "sbc_pvalue", "sbc_pvalue_ks", "sbc_pvalue_joint", "sbc_pvalue_joint_ks",
                 "sbc_pvalue_crossfit", "sbc_pvalue_crossfit_ks",
                 "tarp_atc", "tarp_pvalue", "crps", "nll", "seconds"},
     "result": CalibrationResult}   # stripped before JSON, used for the figure
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._bench import bench_row
from .._checks import check_int, check_real
from .record_recal import _check_recal_methods, recalibrated_rows
from .result import CalibrationResult, analyse
from .simulate import DEFAULT_LEVELS, Summary, simulate_and_infer

__all__ = ["CalibrationResult", "analyse", "run_sbc", "calibration_rows", "is_calibrated"]


def run_sbc(
    simulate: Callable[..., tuple[Any, Any]],
    infer: Callable[[Any], Any],
    summaries: Mapping[str, Summary] | None = None,
    *,
    n_sims: int = 200,
    n_draws: int = 99,
    seed: int = 0,
    problem: str = "problem",
    method: str = "method",
    levels: Sequence[float] = DEFAULT_LEVELS,
    field_levels: Sequence[float] | None = DEFAULT_LEVELS,
    progress: bool = True,
) -> CalibrationResult:
    """Simulate, infer and diagnose (see :func:`simulate_and_infer` for the callables).

    ``simulate(n, seed=) -> (theta [n, *event], data)``, ``infer(data[i]) -> Posterior |
    draws [L', *event]``, ``summaries {name: [*S, *event] -> [*S]}``. Returns a
    :class:`CalibrationResult`; ``result.metrics()`` gives the row metrics. ``progress``: a
    progress bar over the ``n_sims`` inferences on stderr (``False``: none). ``n_draws >= 2``
    (the scores' moment-matched NLL needs a draws' variance), checked before any simulation.
    """
    # refused here, before the N inferences (analyse's scores refused L = 1 only after them)
    check_int("n_draws", n_draws, minimum=2)
    rec = simulate_and_infer(
        simulate,
        infer,
        summaries,
        n_sims=n_sims,
        n_draws=n_draws,
        seed=seed,
        field_levels=field_levels,
        progress=progress,
    )
    return analyse(rec, problem=problem, method=method, levels=levels, seed=seed)


def calibration_rows(
    simulate: Callable[..., tuple[Any, Any]],
    infer: Callable[[Any], Any],
    summaries: Mapping[str, Summary] | None = None,
    *,
    n_sims: int = 200,
    n_draws: int = 99,
    problem: str,
    method: str,
    seed: int = 0,
    setting: Mapping[str, Any] | None = None,
    note: str | None = None,
    recalibrate: int | None = None,
    recal_methods: tuple[str, ...] = ("affine", "shape"),
) -> list[dict]:
    """The calibration-table row(s) of one (problem, method): ``[row]`` with ``row["result"]``
    the :class:`CalibrationResult` (the suite strips it before writing JSON and draws it).

    ``recalibrate=n_fit``: when the posterior is not calibrated (:func:`is_calibrated`), one
    more row per ``recal_methods`` entry follows, fitted on ``n_fit`` held-out simulations and
    evaluated on the same ``N`` (:func:`~bayesphys.diagnostics.recalibrated_rows`).
    Components call this from ``bayesphys/<component>/_calibration.py::calibrate_rows``.
    ``recal_methods`` is checked first, before any simulation (a typo used to surface only
    after the run, and only for a posterior that failed the check); one other than the
    default without ``recalibrate`` is refused (it would be ignored).
    """
    # the row's labels before the N inferences: a setting that is not a mapping failed after
    # them with "cannot convert dictionary update sequence element #0 to a sequence"
    for name, value in (("problem", problem), ("method", method)):
        if not isinstance(value, str):
            raise TypeError(f"{name}: expected a str, received {type(value).__name__} {value!r}")
    if setting is not None and not isinstance(setting, Mapping):
        raise TypeError(
            f"setting: expected a dict of the run's settings or None, received "
            f"{type(setting).__name__}"
        )
    if note is not None and not isinstance(note, str):
        raise TypeError(f"note: expected a str or None, received {type(note).__name__}")
    recal_methods = _check_recal_methods(recal_methods, "recal_methods")
    if recalibrate is not None:
        recalibrate = check_int("recalibrate", recalibrate, minimum=0)
        if recalibrate == 1:
            raise ValueError(
                "recalibrate: expected 0/None (off) or n_fit >= 2 held-out simulations, received 1"
            )
    if not recalibrate and recal_methods != ("affine", "shape"):  # it had no effect
        raise ValueError(
            f"recal_methods: only with recalibrate=n_fit (the recalibration is off), received "
            f"{recal_methods!r} and recalibrate={recalibrate!r}"
        )
    res = run_sbc(
        simulate,
        infer,
        summaries,
        n_sims=n_sims,
        n_draws=n_draws,
        seed=seed,
        problem=problem,
        method=method,
    )
    st = {"n_sims": n_sims, "n_draws": n_draws, **dict(setting or {})}
    row = bench_row(problem, method, res.metrics(), setting=st, note=note)
    row["result"] = res
    rows = [row]
    if recalibrate and not is_calibrated(row["metrics"]):
        rows += recalibrated_rows(
            res,
            simulate,
            infer,
            summaries,
            n_fit=recalibrate,
            seed=seed,
            methods=recal_methods,
            setting=setting,
        )
    return rows


def is_calibrated(metrics: Mapping[str, Any], *, alpha: float = 0.01) -> bool:
    """The issue-9 target: ``sbc_pvalue >= alpha`` and ``coverage90`` in ``[0.85, 0.95]``.

    ``metrics`` is a mapping such as
    :meth:`~bayesphys.diagnostics.CalibrationResult.metrics` returns (a row's
    ``"metrics"``); one without either key, or with a NaN, is not calibrated (``False``). A
    row itself (a mapping holding ``"metrics"`` and no ``"sbc_pvalue"``) is a ``TypeError``
    saying to pass ``row["metrics"]``."""
    if not isinstance(metrics, Mapping):
        # a CalibrationResult failed with "'CalibrationResult' object has no attribute 'get'"
        hint = "; pass its .metrics()" if isinstance(metrics, CalibrationResult) else ""
        raise TypeError(
            f"metrics: expected a mapping with 'sbc_pvalue' and 'coverage90' (e.g. "
            f"CalibrationResult.metrics()), received {type(metrics).__name__}{hint}"
        )
    if "sbc_pvalue" not in metrics and isinstance(metrics.get("metrics"), Mapping):
        # a calibration row (calibration_rows' output) read as metrics without those keys:
        # every row, a calibrated one too, was "not calibrated"
        raise TypeError(
            "metrics: expected the metrics mapping, received a calibration row (it holds "
            "'metrics'); pass row['metrics']"
        )
    alpha = check_real("alpha", alpha, minimum=0.0, maximum=1.0)
    p, c = metrics.get("sbc_pvalue"), metrics.get("coverage90")
    if p is None or c is None:
        return False
    return p >= alpha and 0.85 <= c <= 0.95
