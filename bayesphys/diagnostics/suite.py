r"""``bayesphys calibrate COMPONENT [--quick]``: the per-component calibration run.

For ``core`` the suite runs the conjugate linear-Gaussian family of
:mod:`bayesphys.problems.linear_gaussian` (exact posterior, so SBC ranks are exactly uniform), a
deliberately overconfident version of it (standard deviations halved) and that version after
variance recalibration fitted on held-out simulations. For a component it imports
``bayesphys/<component>/_calibration.py`` and calls its hook::

    def calibrate_rows(quick: bool, seed: int) -> list[dict]

each row ``{"problem": str, "method": str, "metrics": {...}, "setting"?: dict, "note"?: str,
"anchor"?: dict | None, "result"?: CalibrationResult}`` (most simply the output of
:func:`~bayesphys.diagnostics.calibrate.calibration_rows`). Metric keys: ``coverage50``,
``coverage90``, ``coverage95``, ``sbc_pvalue``, ``tarp_atc``, ``crps``, ``seconds`` (plus any
other lower-case keys). A component without the hook gets one row whose note says so; nothing
is invented for it. A hook that fails (import or call) raises :class:`CalibrationFailed` after
the file is written: the component's previous rows and figure are kept when the file has some,
else a row records the failure. A failure after the hook's work (a returned row that is not
valid, the figure or the netCDF ranks that cannot be drawn or written) loses none of it: the
valid rows are written, each invalid row replaced by a failure row naming it, and
:class:`CalibrationFailed` names what failed and the file. The command recorded for each
component names ``--seed`` when it is not 0 (rows carry it in ``setting["seed"]``).

Outputs: ``<out>/calibration.json`` through :func:`bayesphys._bench.write_results` (rows of
other components already in that file are kept; this component's rows are replaced),
``<figdir>/calibration_<component>.png`` and ``<figdir>/calibration_<component>.nc`` (SBC ranks
as InferenceData groups ``prior_sbc``, ``prior_sbc_1`` ...). ``out=None``: full runs write
``benchmarks/results/`` (and refresh ``docs/benchmarks.md``) with the figure in ``docs/img/``
(the one docs/calibration.md shows) and the ranks in ``./bayesphys-out/calibration/``, or,
outside a source checkout (an installed package), everything to ``./bayesphys-out/calibration/``;
quick runs write everything to a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from .._bench import bench_row, repo_root, write_results
from .._bench.paths import checkout_write_problem
from .._checks import check_bool, check_seed, did_you_mean, offset_seed
from .._files import out_folder_arg
from .._hooks import component_hook
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning
from .calibrate import calibration_rows
from .core_problem import CoreFamily
from .fit_recal import fit_recalibration
from .result import CalibrationResult

__all__ = ["run_calibration", "core_rows", "COMPONENTS", "load_hook", "CalibrationFailed"]

COMPONENTS = ("gp_pde", "probconserv", "neural_process", "odil", "meta_fm")
REQUIRED_METRICS = ("coverage50", "coverage90", "coverage95", "sbc_pvalue", "tarp_atc", "crps")


def core_rows(quick: bool, seed: int) -> list[dict]:
    """The ``core`` rows: exact, overconfident, and overconfident + variance recalibration.

    Quick: ``N = 100`` simulations, ``L = 49`` draws; full: ``N = 500``, ``L = 99``. The
    recalibration is fitted on 100 (quick 50) and evaluated on 100 (quick 50) further
    simulations with seeds disjoint from the SBC run.
    """
    n_sims, n_draws, n_fit = (100, 49, 50) if quick else (500, 99, 100)
    exact, over = CoreFamily(), CoreFamily(inflate=0.5)
    kw = dict(n_sims=n_sims, n_draws=n_draws, seed=seed, problem="linear-gaussian")
    rows = calibration_rows(exact.simulate, exact.infer, exact.summaries(), method="exact", **kw)
    rows += calibration_rows(
        over.simulate,
        over.infer,
        over.summaries(),
        method="overconfident sd x0.5",
        note="deliberately overconfident posterior (standard deviations halved): must be rejected",
        **kw,
    )
    rec = fit_recalibration(
        over.simulate,
        over.infer,
        n_fit=n_fit,
        n_eval=n_fit,
        method="zscore",
        seed=offset_seed(seed, 1000),
    )
    ho = rec.heldout
    j = ho["levels"].index(0.9)
    rows += calibration_rows(
        over.simulate,
        lambda y: rec.wrap(over.infer(y)),
        over.summaries(),
        method="overconfident + recalibration",
        setting={"recal": "zscore", "scale": round(rec.scale, 4)},
        note=(
            f"variance scaling s={rec.scale:.3f} fitted on {n_fit} held-out simulations; "
            f"held-out field coverage90 {ho['coverage_before'][j]:.3f} -> "
            f"{ho['coverage_after'][j]:.3f} on {ho['n_problems']} further simulations"
        ),
        **kw,
    )
    return rows


def load_hook(component: str) -> ModuleType | None:
    """``bayesphys.<component>._calibration`` or ``None`` when the component or hook is absent
    (or the component's package cannot be imported): :func:`bayesphys._hooks.component_hook`."""
    return component_hook(component, "_calibration")


def _missing_row(component: str, why: str) -> dict:
    return bench_row(component, "-", {}, setting={"component": component}, note=why)


class CalibrationFailed(RuntimeError):
    """A component's calibration hook could not be imported or raised, or a step after it
    failed (an invalid row, the figure, the netCDF ranks); raised by :func:`run_calibration`
    after the results file is written (rows kept as described there)."""


_FAILED = "failed: "


def _failed_row(component: str, why: str) -> dict:
    return _missing_row(component, _FAILED + why)


def _is_failed(row: dict) -> bool:
    return row.get("method") == "-" and str(row.get("note", "")).startswith(_FAILED)


def _component_rows(component: str, quick: bool, seed: int) -> list[dict]:
    if component == "core":
        return core_rows(quick, seed)
    if component not in COMPONENTS:
        raise ValueError(
            f"component: expected one of {', '.join(COMPONENTS + ('core',))}, received "
            f"{component!r}{did_you_mean(component, COMPONENTS + ('core',))}"
        )
    try:
        mod = load_hook(component)
    except Exception as err:  # noqa: BLE001 - report any import failure plainly
        traceback.print_exc()
        return [
            _failed_row(component, f"importing bayesphys.{component}._calibration failed: {err!r}")
        ]
    if mod is None or not hasattr(mod, "calibrate_rows"):
        return [
            _missing_row(
                component,
                f"not calibrated: bayesphys/{component}/_calibration.py with "
                "calibrate_rows(quick, seed) is not present",
            )
        ]
    try:
        rows = list(mod.calibrate_rows(quick=quick, seed=seed))
    except Exception as err:  # noqa: BLE001 - a failing hook is recorded, not hidden
        traceback.print_exc()
        return [_failed_row(component, f"calibrate_rows failed: {err!r}")]
    if not rows:
        return [_missing_row(component, "calibrate_rows returned no rows")]
    return rows


def _clean(
    row: dict, component: str, quick: bool, seed: int = 0
) -> tuple[dict, CalibrationResult | None]:
    """Validate one hook row, tag it with the component (and the run's seed unless 0), and
    split off its result object."""
    row = dict(row)
    res = row.pop("result", None)
    for key in ("problem", "method", "metrics"):
        if key not in row:
            raise ValueError(f"calibrate_rows: row missing {key!r}, received keys {sorted(row)}")
    setting = {**dict(row.get("setting") or {}), "component": component}
    if quick:
        setting["quick"] = True
    if seed:
        setting["seed"] = seed
    out = bench_row(
        str(row["problem"]),
        str(row["method"]),
        row["metrics"],
        setting=setting,
        anchor=row.get("anchor"),
        note=row.get("note"),
    )
    absent = [k for k in REQUIRED_METRICS if k not in out["metrics"]]
    if absent and out["metrics"]:
        note = (out.get("note") + "; " if out.get("note") else "") + f"metrics absent: {absent}"
        out["note"] = note
    return out, res if isinstance(res, CalibrationResult) else None


def _merge(
    path: Path, component: str, rows: list[dict], *, keep_own: bool = False
) -> tuple[list[dict], dict]:
    """Rows of ``path`` from other components, then ``rows``; and the old figure paths.

    ``keep_own`` (this run failed): the file's rows and figure of ``component`` stay, when it
    has any, instead of the failure row (a failed rerun used to wipe good results)."""
    if not path.exists():
        return rows, {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        _check_results_layout(old)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
        # kept aside under a name of its own, not overwritten: it holds the other components'
        # rows (an OSError while reading is raised as it is: the file may be whole)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = path.with_name(f"{path.name}.unreadable-{stamp}-{os.getpid()}")
        os.replace(path, aside)
        # a warning, not a print: a caller of run_calibration can catch or filter it
        warnings.warn(
            f"calibration: could not read {path} ({type(err).__name__}: {err}); moved it to "
            f"{aside} and started a new file (its other components' rows are there)",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
        return rows, {}
    old_rows = old.get("rows", [])
    mine = [r for r in old_rows if (r.get("setting") or {}).get("component") == component]
    if keep_own and any(not _is_failed(r) for r in mine):
        return old_rows, dict(old.get("figures") or {})
    kept = [r for r in old_rows if (r.get("setting") or {}).get("component") != component]
    figs = {k: v for k, v in (old.get("figures") or {}).items() if k != component}
    return kept + rows, figs


def _check_results_layout(old: Any) -> None:
    """Refuse (``ValueError``) a results file that is JSON but not ``{"rows": [dict, ...],
    "figures": {component: path}}`` (read as one, it failed after the run's work with an
    AttributeError and the run's rows were never written)."""
    if not isinstance(old, dict):
        raise ValueError(f"expected an object with rows and figures, found {type(old).__name__}")
    rows, figs = old.get("rows", []), old.get("figures") or {}
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("expected 'rows' to be a list of objects")
    if any(not isinstance(r.get("setting") or {}, dict) for r in rows):
        raise ValueError("expected each row's 'setting' to be an object")
    if not isinstance(figs, dict):
        raise ValueError(f"expected 'figures' to be an object, found {type(figs).__name__}")


def _checkout() -> Path | None:
    """The source checkout holding ``benchmarks/``, or ``None`` (an installed package)."""
    try:
        return repo_root()
    except FileNotFoundError:
        return None


#: where a full run without ``out`` writes outside a source checkout
_OUTSIDE_CHECKOUT = Path("bayesphys-out") / "calibration"


def default_out_problem() -> str:
    """Why a full run without ``out`` cannot write here (``""`` when it can): it writes
    ``./bayesphys-out/calibration`` (everything outside a source checkout, the SBC ranks in
    one), which is created now, and in a checkout its committed files (the results, the docs
    table and figure); checked before the work, not after it."""
    root = _checkout()
    problem = "" if root is None else checkout_write_problem(root, figures=True)
    if problem:
        return problem
    folder = _OUTSIDE_CHECKOUT
    try:
        out_folder_arg(str(folder))  # --out's own check: a file in the way, read-only folders
        folder.mkdir(parents=True, exist_ok=True)
    except (argparse.ArgumentTypeError, OSError) as err:
        return (
            f"out: the default folder {folder} cannot be written ({err}); pass --out DIR "
            f"(out=) to choose another"
        )
    return ""


def run_calibration(
    component: str,
    *,
    quick: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    verbose: bool = False,
) -> Path:
    """Run the calibration suite on ``component`` (or ``"core"``); returns the JSON path.

    See the module docstring for what is written where. ``verbose=True`` prints the rows'
    table (what ``bayesphys calibrate`` shows) to stdout; by default nothing is printed (the
    rows are in the returned file). A quick run without ``out`` writes to a new temporary
    folder (``bayesphys-calibration-*``, the returned path's parent) that is left for the
    caller to read and delete: in a loop, pass ``out=`` or remove it
    (``shutil.rmtree(path.parent)``).
    """
    # every argument before a folder is made or a hook imported: quick="no" (a truthy string)
    # ran the quick suite, an unknown component left a new out folder behind, and a bad seed
    # reached a component's hook, which may train for minutes before using it
    if not isinstance(component, str) or component not in (*COMPONENTS, "core"):
        raise ValueError(
            f"component: expected one of {', '.join(COMPONENTS + ('core',))}, received "
            f"{component!r}{did_you_mean(component, COMPONENTS + ('core',))}"
        )
    quick = check_bool("quick", quick)
    seed = check_seed("seed", seed)
    verbose = check_bool("verbose", verbose)
    t0 = time.perf_counter()
    if out is not None:
        out_dir = fig_dir = nc_dir = Path(out).expanduser()
        # a file in the way is refused before the work (it failed after it, with a bare
        # FileExistsError)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"out: expected a folder, received the file {out}")
        out_dir.mkdir(parents=True, exist_ok=True)
    elif quick:
        out_dir = fig_dir = nc_dir = Path(tempfile.mkdtemp(prefix="bayesphys-calibration-"))
    elif _checkout() is None:
        # an installed package without a source checkout (a full run failed with a traceback
        # from repo_root): everything goes to the folder of the netCDF ranks
        out = out_dir = fig_dir = nc_dir = _OUTSIDE_CHECKOUT
    else:
        # a full run refreshes what the docs show: the table (write_results) and the figure
        out_dir = repo_root() / "benchmarks" / "results"
        fig_dir = repo_root() / "docs" / "img"
        nc_dir = _OUTSIDE_CHECKOUT
    if nc_dir == _OUTSIDE_CHECKOUT:
        # the ranks' folder, before the work (a failed write after it left the committed
        # figure refreshed and the table not)
        problem = default_out_problem()
        if problem:
            raise ValueError(problem)
    raw = _component_rows(component, quick, seed)
    rows, results = [], []
    for i, r in enumerate(raw):
        try:
            clean, res = _clean(r, component, quick, seed)
        except Exception as err:  # noqa: BLE001 - one bad row must not lose the others
            # it raised after the hook's work and nothing was written
            rows.append(_failed_row(component, f"calibrate_rows row {i}: {err}"))
            continue
        rows.append(clean)
        if res is not None:
            results.append(res)
    late = []  # what failed after the hook's work: the rows are written all the same
    from .plots import plot_component

    fig = None
    if results or any(r["metrics"] for r in rows):  # nothing to draw for a missing hook
        target = fig_dir / f"calibration_{component}.png"
        try:
            fig = plot_component(component, rows, results, target)
        except Exception as err:  # noqa: BLE001 - the rows are written, the error named
            traceback.print_exc()
            late.append(f"figure {target} not drawn: {type(err).__name__}: {err}")
    if results:
        target = nc_dir / f"calibration_{component}.nc"
        try:
            idata = None
            for j, res in enumerate(results):
                group = "prior_sbc" if j == 0 else f"prior_sbc_{j}"
                idata = res.to_inference_data(group=group, idata=idata)
            from ..inference_data import save_netcdf

            save_netcdf(idata, target, attrs={"seed": seed})
        except Exception as err:  # noqa: BLE001 - the rows are written, the error named
            traceback.print_exc()
            late.append(f"SBC ranks {target} not written: {type(err).__name__}: {err}")
    failed = [r["note"][len(_FAILED) :] for r in rows if _is_failed(r)]
    # the previous rows are kept only when this run has none of its own (its figure, drawn
    # from the new rows, would not match them)
    none_new = all(_is_failed(r) for r in rows)
    merged, figures = _merge(
        out_dir / "calibration.json", component, rows, keep_own=bool(failed) and none_new
    )
    if fig is not None:
        figures[component] = _shown_path(fig)
    command = "; ".join(sorted({_command(r) for r in merged}))
    path = write_results(
        "calibration",
        merged,
        quick=any((r.get("setting") or {}).get("quick") for r in merged),
        command=command,
        # a quick run without --out writes to its temporary folder, never the committed file
        out=out if out is not None else (out_dir if quick else None),
        extra={"figures": figures},
    )
    if verbose:
        _print_table(component, rows, time.perf_counter() - t0, fig, path)
    if failed or late:
        what = "; ".join(failed + late)
        if not none_new:
            good = sum(not _is_failed(r) for r in rows)
            where = f"{good} row(s) of {component} written" + (
                ", the failed rows recorded" if failed else ""
            )
        elif any(
            (r.get("setting") or {}).get("component") == component and not _is_failed(r)
            for r in merged
        ):
            where = f"the previous rows of {component} are kept"
        else:
            where = "the failure is recorded"
        raise CalibrationFailed(f"{component}: {what}; {path}: {where}")
    return path


def _shown_path(path: Path) -> str:
    """``path`` relative to the checkout when it lies in it (the committed results file names
    ``docs/img/...``, not one machine's absolute path), else as written."""
    try:
        return str(path.resolve().relative_to(repo_root()))
    except (ValueError, FileNotFoundError):
        return str(path)


def _command(row: dict) -> str:
    """The command that made ``row`` (its component, ``--quick``, ``--seed`` unless 0)."""
    st = row.get("setting") or {}
    seed = st.get("seed", 0)
    return (
        f"bayesphys calibrate {st.get('component', '?')}"
        f"{' --quick' if st.get('quick') else ''}{f' --seed {seed}' if seed else ''}"
    )


def _print_table(
    component: str, rows: list[dict], seconds: float, fig: Path | None, path: Path
) -> None:
    keys = ("coverage50", "coverage90", "coverage95", "sbc_pvalue", "tarp_atc", "crps")
    print(f"bayesphys calibrate {component}  ({seconds:.1f} s)")
    print(f"  {'problem':18s} {'method':32s} " + " ".join(f"{k:>10s}" for k in keys))
    for r in rows:
        m: dict[str, Any] = r["metrics"]
        vals = " ".join(
            f"{m[k]:10.4g}" if isinstance(m.get(k), float) else f"{'-':>10s}" for k in keys
        )
        print(f"  {r['problem']:18s} {r['method'][:32]:32s} {vals}")
        if r.get("note"):
            print(f"      note: {r['note']}")
    print(f"  figure: {fig if fig is not None else 'none (no metrics)'}")
