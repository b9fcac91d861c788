r"""B6 and where the coarse grid falls: the 1 vs 4 mm drift over the grid offsets of one patient.

B6 (``benchmarks/odil.py``) simulates one phantom patient at 1 mm, block-averages it onto 2 and
4 mm grids and asks the posterior means to move by less than one posterior sd between
resolutions. Where the 4 mm cells fall relative to the patient is an arbitrary choice of B6's:
this script shifts the 1 mm patient by an offset :math:`(s_x, s_y)` mm (whole voxels, every map
and the true focus; the brain lies well inside the grid, so nothing leaves it) before it is
block-averaged, and refits it at each resolution exactly as B6 does
(``coarsened_model(p, f).fit()``, no model-error term). Per patient, offset and resolution a
row records the posterior means and sds of (log Dw, log rho, x0, y0) (``mode_*``, ``sd_*``;
the focus in the shifted frame), the error ``err_* = mode - truth`` and, per parameter,
B6's drift ``drift_* = max over pairs of resolutions |mode_a - mode_b| / max(sd_a, sd_b)``
(the same on every row of the offset; ``drift_max`` the largest over the parameters). Summary
rows per patient and resolution (``offset`` ``"mean"``) average over the offsets: the error
(``err_*``), the posterior sd (``sd_*``), the spread of the error over the offsets
(``err_sd_*``, ddof 0), the median drift (``drift_*``, ``drift_max``) and the fraction of
offsets whose largest drift is below 1 sd, B6's test (``drift_below_1sd``). Offset (0, 0) of
seed 7 at 1, 2 and 4 mm is B6's own first row.

``--observe-coarse`` replaces each fit coarser than 1 mm by one solved on the 1 mm grid but
observed at that resolution: the 1 mm field is block-averaged onto the coarse grid and scored
against the coarse labels with the coarse model's likelihood and focus prior (rows with
``observe_coarse`` true). What drift is left there comes from the information lost in the
coarse labels, not from the coarse solver.

``--seeds`` fits other patients (``synthetic_patient(seed, phantom=brain_phantom(128, 1.0),
refine=2)``, as B6 builds its own, seed 7); ``--offsets`` takes ``sx,sy;...`` (each in
``0..f-1`` for the coarsest resolution ``f``; default all 16 at 4 mm).

    python benchmarks/odil_b6_offsets.py                  # 16 offsets, 1 and 4 mm: 2.2 min
    python benchmarks/odil_b6_offsets.py --resolutions 1,2,4 --name odil_b6_offsets_124  # 5 min
    python benchmarks/odil_b6_offsets.py --observe-coarse --name odil_b6_offsets_observe  # 4.4 min
    python benchmarks/odil_b6_offsets.py --seeds 101,102,103,104,105,106 \
        --offsets "0,0;1,2;2,1;3,3" --name odil_b6_offsets_seeds  # 6.4 min

(times on one thread; the 1 mm fit, most of each offset's time, comes out the same at every
offset: a whole-voxel shift moves the 1 mm problem, not its solution). Writes
``benchmarks/results/odil_b6_offsets.json`` (``--name`` to change it); ``--smoke`` fits two offsets
at 2 and 4 mm into a temporary folder; ``--table RESULTS_JSON`` prints a results file's table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bayesphys._bench import (
    ablation_parser,
    print_rows_table,
    results_name_arg,
    script_module,
    write_rows,
)
from bayesphys.odil import GliomaModel
from bayesphys.odil._glioma_likelihood import data_residuals
from bayesphys.problems.glioma import brain_phantom, synthetic_patient, truth_theta

B6_SEED = 7  # B6's patient (benchmarks/_odil_b6.py)
PARAMS = ("log_Dw", "log_rho", "x0", "y0")
ODIL = script_module(str(Path(__file__).with_name("odil.py")))  # B6's coarsened_model


def _ints(text: str, what: str, minimum: int) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or any(v < minimum for v in vals):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated {what} (ints >= {minimum}), received {text!r}"
        )
    return sorted(set(vals))


def _offsets(text: str) -> list[tuple[int, int]] | None:
    """``"all"`` (None: every offset of the coarsest grid) or ``"sx,sy;sx,sy;..."``."""
    if text.strip() == "all":
        return None
    out = []
    for item in text.split(";"):
        try:
            sx, sy = (int(v) for v in item.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected 'all' or offsets 'sx,sy;sx,sy;...' (mm, ints), received {text!r}"
            ) from None
        if sx < 0 or sy < 0:
            raise argparse.ArgumentTypeError(f"expected offsets >= 0, received {item!r}")
        if (sx, sy) not in out:
            out.append((sx, sy))
    return out


def shifted_patient(p: dict, sx: int, sy: int) -> dict:
    """The 1 mm patient ``p`` moved by ``(-sx, -sy)`` voxels: every grid map rolled, the true
    focus and the foci moved with it, so the coarse cells start ``(sx, sy)`` mm further into
    the patient. Refused when a voxel that wraps around is not empty (the roll would move
    tissue or tumour to the other side of the grid)."""
    if not (sx or sy):
        return p
    shape = tuple(p["wm"].shape)
    out = dict(p)
    for k, v in p.items():
        if torch.is_tensor(v) and tuple(v.shape) == shape:
            if bool(v[:sx].ne(0).any()) or bool(v[:, :sy].ne(0).any()):
                raise ValueError(
                    f"offset ({sx}, {sy}): the patient's {k!r} map is not empty in the first "
                    f"{sx} rows / {sy} columns, which the shift would wrap around"
                )
            out[k] = torch.roll(v, (-sx, -sy), (0, 1))
    out["truth"] = dict(p["truth"], x0=p["truth"]["x0"] - sx, y0=p["truth"]["y0"] - sy)
    out["foci"] = [[f[0] - sx, f[1] - sy, *f[2:]] for f in p.get("foci", [])]
    return out


class CoarselyObservedModel(GliomaModel):
    """A 1 mm model whose field is observed at ``f`` mm: the field (on the 1 mm crop) is put
    on the whole 1 mm grid, block-averaged over ``f x f`` voxels and scored on the crop of the
    ``f`` mm model ``coarse`` with that model's likelihood (labels, noise, voxel count)."""

    def observe_with(self, coarse: GliomaModel, f: int) -> CoarselyObservedModel:
        """Observe through ``coarse`` (an ``f`` mm model of the same patient); its lesion
        centroid becomes this model's focus prior mean and starting focus."""
        if any(n != m * f for n, m in zip(self.full_shape, coarse.full_shape)):
            raise ValueError(
                f"coarse: expected a grid {tuple(n // f for n in self.full_shape)} "
                f"(this model's {self.full_shape} / {f}), received {coarse.full_shape}"
            )
        self._coarse, self._f = coarse, f
        pads = []  # F.pad order: last axis first, (before, after) each
        for sl, n in reversed(list(zip(self.crop, self.full_shape))):
            pads += [sl.start, n - sl.stop]
        self._pads = pads
        self.centroid = coarse.centroid.clone()
        self.focus_init = coarse.centroid.clone()
        return self

    def _data_residuals(self, c: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self._f
        cf = F.pad(c, self._pads)
        h, w = cf.shape[-2:]
        cc = cf.reshape(*cf.shape[:-2], h // f, f, w // f, f).mean((-3, -1))
        return data_residuals(self._coarse, cc[(..., *self._coarse.crop)])


def fit_offset(p: dict, resolutions: list[int], observe_coarse: bool = False) -> dict[int, tuple]:
    """``{f: (mode [4], sd [4], seconds)}`` of one (shifted) patient fitted at each resolution
    as B6 fits it; with ``observe_coarse`` the fits above 1 mm are solved at 1 mm and observed
    at ``f`` mm (:class:`CoarselyObservedModel`)."""
    out = {}
    for f in resolutions:
        t0 = time.perf_counter()
        if observe_coarse and f > 1:
            m = CoarselyObservedModel(
                p["wm"], p["gm"], p["labels"], spacing=1.0, th_up=p["th_up"], th_down=p["th_down"]
            ).observe_with(ODIL.coarsened_model(p, f, None), f)
        else:
            m = ODIL.coarsened_model(p, f, None)
        m.fit(progress=False)
        mode, sd = m.theta.cpu().double(), m.theta_cov.diagonal().sqrt().cpu().double()
        out[f] = (mode, sd, time.perf_counter() - t0)
    return out


def drift(fits: dict[int, tuple]) -> torch.Tensor:
    """B6's drift per parameter ``[4]``: the largest over pairs of resolutions of
    ``|mode_a - mode_b| / max(sd_a, sd_b)`` (zeros for one resolution)."""
    fs = sorted(fits)
    pairs = [
        (fits[a][0] - fits[b][0]).abs() / torch.maximum(fits[a][1], fits[b][1])
        for a in fs
        for b in fs
        if a < b
    ]
    return torch.stack(pairs).amax(0) if pairs else torch.zeros(len(PARAMS), dtype=torch.float64)


def offset_rows(seed: int, offset: tuple[int, int], truth, fits, observe_coarse: bool):
    """One row per resolution of one patient at one offset."""
    d = drift(fits)
    rows = []
    for f in sorted(fits):
        mode, sd, sec = fits[f]
        rows.append(
            {
                "seed": seed,
                "offset": f"{offset[0]},{offset[1]}",
                "mm": f,
                "observe_coarse": bool(observe_coarse and f > 1),
                **{f"mode_{n}": float(v) for n, v in zip(PARAMS, mode)},
                **{f"sd_{n}": float(v) for n, v in zip(PARAMS, sd)},
                **{f"err_{n}": float(v) for n, v in zip(PARAMS, mode - truth)},
                **{f"drift_{n}": float(v) for n, v in zip(PARAMS, d)},
                "drift_max": float(d.max()),
                "seconds": sec,
            }
        )
    return rows


def summary_rows(rows: list[dict]) -> list[dict]:
    """Per patient and resolution, over the offsets: mean error and sd, spread of the error,
    median drift and the fraction of offsets with a largest drift below 1 sd."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["seed"], r["mm"], r["observe_coarse"]), []).append(r)
    out = []
    for (seed, mm, obs), sel in groups.items():
        col = {
            k: np.array([r[k] for r in sel], dtype=float)
            for k in sel[0]
            if k.startswith(("err_", "sd_", "drift_"))
        }
        out.append(
            {
                "seed": seed,
                "offset": "mean",
                "mm": mm,
                "observe_coarse": obs,
                "offsets": len(sel),
                **{f"err_{n}": float(col[f"err_{n}"].mean()) for n in PARAMS},
                **{f"err_sd_{n}": float(col[f"err_{n}"].std()) for n in PARAMS},
                **{f"sd_{n}": float(col[f"sd_{n}"].mean()) for n in PARAMS},
                **{f"drift_{n}": float(np.median(col[f"drift_{n}"])) for n in PARAMS},
                "drift_max": float(np.median(col["drift_max"])),
                "drift_below_1sd": float((col["drift_max"] < 1).mean()),
            }
        )
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = ablation_parser(__doc__, jobs=False)
    ap.add_argument(
        "--seeds",
        type=lambda t: _ints(t, "patient seeds", 0),
        default=[B6_SEED],
        help=f"patient seeds (default {B6_SEED}, B6's)",
    )
    ap.add_argument(
        "--resolutions",
        type=lambda t: _ints(t, "resolutions in mm", 1),
        default=None,
        help="mm (default 1,4; --smoke 2,4; B6: 1,2,4)",
    )
    ap.add_argument(
        "--offsets", type=_offsets, default=None, help="'all' (default) or 'sx,sy;sx,sy;...' (mm)"
    )
    ap.add_argument(
        "--observe-coarse",
        action="store_true",
        help="solve the coarse fits at 1 mm, observe them at their resolution",
    )
    ap.add_argument(
        "--name", type=results_name_arg, default="odil_b6_offsets", help="results file name"
    )
    ap.add_argument(
        "--smoke", action="store_true", help="two offsets at 2 and 4 mm, into a temporary folder"
    )
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    if args.resolutions is None:
        args.resolutions = [2, 4] if args.smoke else [1, 4]
    if args.smoke:
        args.offsets = args.offsets or [(0, 0), (1, 2)]
        args.out = args.out or tempfile.mkdtemp(prefix="bench_smoke_")
    coarsest = max(args.resolutions)
    if any(coarsest % f for f in args.resolutions):
        ap.error(f"--resolutions: expected divisors of the coarsest, received {args.resolutions}")
    if args.offsets is None:
        args.offsets = [(sx, sy) for sx in range(coarsest) for sy in range(coarsest)]
    if any(max(o) >= coarsest for o in args.offsets):
        ap.error(
            f"--offsets: expected each in 0..{coarsest - 1} (the coarsest grid, {coarsest} mm), "
            f"received {args.offsets}"
        )
    torch.set_num_threads(1)
    started = time.perf_counter()
    phantom = brain_phantom(128, 1.0)
    rows = []
    for seed in args.seeds:
        p0 = synthetic_patient(seed, phantom=phantom, refine=2)
        for off in args.offsets:
            p = shifted_patient(p0, *off)
            fits = fit_offset(p, args.resolutions, args.observe_coarse)
            new = offset_rows(seed, off, truth_theta(p), fits, args.observe_coarse)
            print(
                f"seed {seed} offset {off}: drift "
                + ", ".join(f"{n} {new[0][f'drift_{n}']:.2f}" for n in PARAMS),
                flush=True,
            )
            rows += new
    rows += summary_rows(rows)
    extra = {
        "smoke": args.smoke,
        "seeds": args.seeds,
        "resolutions_mm": args.resolutions,
        "offsets": [f"{sx},{sy}" for sx, sy in args.offsets],
        "observe_coarse": args.observe_coarse,
    }
    return write_rows(
        args.name, rows, script=__file__, argv=argv, out=args.out, extra=extra, started=started
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
