"""ODIL / glioma benchmark (anchor: GliODIL + odil, ``shared/anchors/gliodil.md`` section 8).

``bayesphys bench odil [--quick] [--out DIR] [--device cpu] [--only B0,B1,...]``

* B0 -- odil's ``infer_constant`` problem (u_t + vel u_x = diff u_xx + src, exact initial and
  final states, 64x64 / 128x128 space-time grid) solved with our ODIL engine by Gauss-Newton +
  CG, first-order upwind (odil's scheme) and second-order central advection; the ``odil``
  package itself is run side by side in a subprocess when a Python with ``odil`` + JAX is given
  in ``BAYESPHYS_ODIL_PYTHON`` (default ``/tmp/odilvenv/bin/python`` if present).
* B1 -- phantom (64x64, 2 mm) single focus, known thresholds: parameter / focus recovery, Dice@10%.
* B2 -- MNI152 2009a axial slice (nilearn package data, 1 mm, z = 8 mm), GliODIL's 1.5x
  lesion-bbox crop; labels, and labels + PET proxy: recovery, Dice@10%, RMSE on the 10-25 % band,
  CPU seconds per fit.
* B3 -- calibration of the Laplace posterior over simulated patients (32x32, 4 mm) + NUTS check.
* B4 -- radiotherapy proxy (PREDICT-GBM protocol): iso-volumetric model plans vs the 15 mm
  margin, on the phantom (with B1), the atlas slice (with B2) and the 3-D atlas (with B5).
* B5 -- 3-D MNI volume at 2 mm, 50 single- and 10 three-focal truths, 1.5x lesion-bbox crop
  at 2 mm (not resampled to 48^3; reduced-space fit, no Nt = 96 space-time grid).
* B6 -- discretisation robustness: one 1 mm patient fitted at 1, 2, 4 mm.
B2, B5 and the atlas B4 need ``nilearn`` (the MNI templates ship in its wheel; nothing is
downloaded; ``pip install "bayesphys[atlas]"``): without it a run that names them in ``--only``,
or a full run, is refused before any work; the quick run of every benchmark skips them with a
note. A full run with ``--only`` merges its rows into the existing results file.
A run that stops (a benchmark failing, Ctrl-C) writes the rows of the benchmarks that finished
to ``odil.partial.json`` (``"partial": true``; in ``--out``, else the temporary folder), names
it on stderr and leaves the results file as it was; a later completed run into the same
folder removes it. To finish such a (full, not ``--quick``) run, copy it as ``odil.json`` into
a folder DIR of its own (the copy replaces a results file there) and rerun the benchmarks not
finished with ``--only ... --out DIR``, which merges them into it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from bayesphys._bench import (
    comma_ids,
    read_previous_results,
    remove_partial,
    thread_env_prefix,
    write_partial,
    write_results,
)
from bayesphys._cli_args import device_arg
from bayesphys._device import resolve_device
from bayesphys._files import out_folder_arg
from bayesphys.problems.glioma import atlas_unavailable_reason

# the helper modules beside this script (one per benchmark problem); names that other scripts
# reach on this one stay bound here (coarsened_model, _fit_case)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _odil_atlas import bench_b2_b4, bench_b5  # noqa: E402
from _odil_b0 import bench_b0  # noqa: E402
from _odil_b1 import bench_b1_b4  # noqa: E402
from _odil_b3 import bench_b3  # noqa: E402
from _odil_b4 import b4_tie_fraction  # noqa: E402
from _odil_b6 import bench_b6, coarsened_model  # noqa: E402, F401  (odil_resolution.py)
from _odil_common import _fit_case  # noqa: E402, F401  (odil_nuts_means.py)


def _merged_command(previous: str, new: str) -> str:
    """One flat, ordered list of the runs behind a merged results file (oldest first)."""
    runs = [r for r in previous.removeprefix("runs: ").split("; ") if r and r != new]
    return "runs: " + "; ".join([*runs, new])


def _group(row: dict) -> str:
    """Which bench function produced a row (for merging partial runs into the results file)."""
    if row["problem"] == "B4":
        atlas = (row.get("setting") or {}).get("atlas")
        if atlas is None:
            return "B1"
        return "B5" if "3-D" in atlas else "B2"
    return row["problem"]


#: the benchmarks a run without --only runs
_ALL = "B0,B1,B2,B3,B5,B6"


def _command(args, dev, *, always_only: bool = False) -> str:
    """The command that reruns this run: the thread-count variables the shell set,
    ``--quick``, ``--device`` (the device the run used, ``auto`` resolved, when it is not the
    default ``cpu``: a rerun elsewhere uses the same one) and ``--only`` (when not all ran, or
    ``always_only``); ``--out`` is left out (it does not change the rows)."""
    cmd = thread_env_prefix() + "bayesphys bench odil" + (" --quick" if args.quick else "")
    if str(dev) != "cpu":
        cmd += f" --device {shlex.quote(str(dev))}"
    if always_only or args.only != _ALL.split(","):
        cmd += f" --only {shlex.quote(','.join(args.only))}"
    return cmd


def _keep_partial(rows, finished, err, args, out, dev) -> None:
    """The rows of the benchmarks in ``finished`` written to ``odil.partial.json``
    (``"partial": true``; in ``out``, else the temporary folder; the results file is left as
    it was), and where, on stderr."""
    cmd = _command(args, dev, always_only=True)
    where = write_partial(
        "odil",
        rows,
        quick=args.quick,
        command=cmd,
        out=out,
        device=str(dev),
        extra={"finished": finished},
    )
    print(
        f"odil: stopped by {type(err).__name__}; the rows of {', '.join(finished)} {where}",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> Path | None:
    ap = argparse.ArgumentParser(prog="bayesphys bench odil", allow_abbrev=False)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=out_folder_arg, default=None)
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or auto")
    ap.add_argument(
        "--only",
        type=comma_ids(_ALL.split(","), hint=" (B4 runs with B1 and B2)"),
        default=_ALL,
        help="comma-separated subset of B0,B1,B2,B3,B5,B6 (B4 runs with B1 on the phantom and "
        "with B2 on the atlas); a partial full run is merged into the existing results file "
        "(odil.json in --out, else the committed one); a stopped run's odil.partial.json is "
        "not read: copy it as odil.json into a folder of its own and give that as --out "
        "(benchmarks/odil.py's docstring)",
    )
    ap.add_argument(
        "--b4-ties",
        type=int,
        default=0,
        metavar="N",
        help="only print the B4 tie fraction on N atlas-slice cases (ours vs GliODIL's prior)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.b4_ties:
        print(json.dumps(b4_tie_fraction(args.b4_ties)))
        return None  # printed only: no results file
    out = (
        args.out
        if args.out is not None
        else (tempfile.mkdtemp(prefix="odil-bench-") if args.quick else None)
    )
    dev = resolve_device(args.device)  # 'auto' is no torch device name
    todo = args.only
    atlas = [k for k in ("B2", "B5") if k in todo]
    missing = atlas_unavailable_reason() if atlas else None
    if missing and (not args.quick or todo != _ALL.split(",")):
        # named in --only, or a full run: their rows were "not run" notes and the run "done"
        # (status 0), and a full run replaced the committed B2 / B5 rows with those notes
        others = ",".join(k for k in todo if k not in atlas) or "B0,B1,B3,B6"
        ap.error(f"{', '.join(atlas)}: {missing}; or leave them out (--only {others})")
    if missing:  # the quick run of every benchmark: the others run, these are noted as not run
        print(f"skip {', '.join(atlas)}: {missing}", file=sys.stderr, flush=True)
    # a partial full run completes the results file it replaces (--out's, or the committed
    # one): read before the work, so that an unreadable one is refused before the benchmarks
    # (read after them, its error lost their rows)
    old = (Path(out) if out else Path(__file__).resolve().parent / "results") / "odil.json"
    partial = set(todo) != {"B0", "B1", "B2", "B3", "B5", "B6"}
    try:
        prev = read_previous_results(old) if not args.quick and partial else None
    except ValueError as err:
        ap.error(str(err))
    rows: list[dict] = []
    finished: list[str] = []
    try:
        for key, fn in (
            ("B0", bench_b0),
            ("B1", bench_b1_b4),
            ("B2", bench_b2_b4),
            ("B3", bench_b3),
            ("B5", bench_b5),
            ("B6", bench_b6),
        ):
            if key in todo:
                t0 = time.perf_counter()
                rows += fn(args.quick, dev)
                finished.append(key)
                print(
                    f"{key} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True
                )
    except BaseException as err:  # a late benchmark failing, Ctrl-C: keep the finished ones
        if rows:
            _keep_partial(rows, finished, err, args, out, dev)
        raise
    cmd = _command(args, dev)
    if prev is not None:
        kept = [r for r in prev["rows"] if _group(r) not in todo]
        rows = kept + rows
        rows.sort(key=lambda r: r["problem"])
        cmd = _merged_command(prev["command"], cmd)
    path = write_results("odil", rows, quick=args.quick, command=cmd, out=out, device=str(dev))
    remove_partial("odil", out)  # an earlier stopped run's file is not left beside this one
    return path


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        res = main()
        if res is not None:  # a results file (internal modes print their own output)
            print(f"results: {res}")
