r"""The ``shape`` map's bound on the generalised normal (``beta <= 8``): how often each rule keeps a
non-Gaussian law, on exact posteriors and on known light tails.

The ``shape`` recalibration map (``bayesphys.diagnostics.ShapeMap``) fits the held-out
standardised residuals ``z`` of a summary with a Student-t and with a generalised normal
``p(t) ~ exp(-|t|^beta)`` and keeps the better one only if it beats the null (the ``z`` of a
Gaussian posterior with ``L`` draws, a location-scale ``t_{L-1}``) by a likelihood-ratio margin
of 3.32 (1 %). A generalised-normal fit with ``beta > GENNORM_MAX_SHAPE = 8`` is refused. This
script measures the rates behind that bound (docs/calibration.md, "Recalibration", and the
docstring of ``ShapeMap``).

Every fit is the package's own: ``ShapeMap.fit(draws, truth)`` runs as the package runs it,
and the script records the three scipy fits it makes (the ``t_{L-1}`` null, the Student-t and
the generalised normal; scipy's ``t.fit`` and ``gennorm.fit`` are wrapped for the duration of
the call). The choice is then replayed on those fits under each rule:

* ``unbounded``: every generalised-normal fit competes (the rule before the bound);
* ``bound B`` (``B`` in 4, 5, 6, 8, 10, 12, 16): a generalised-normal fit with ``beta > B`` is
  refused; ``bound 8`` is the package's rule, and its replay is checked against
  ``ShapeMap.fit``'s own answer on every fit (a mismatch stops the run);
* ``kept at bound 8``: a fit beyond 8 is replaced by the fit with ``beta`` fixed at 8
  (``gennorm.fit(z, f0=8)``) instead of being refused.

Cases (``fits`` seeded record per fit; seed ``--seed`` plus the case's index):

* ``exact``: exactly calibrated Gaussian posteriors (``m ~ N(0, 9)``, truth ``m + N(0, 1)``,
  ``L`` draws ``N(m, 1)``) at each component's ``(n_fit, L)``: meta_fm quick (20, 11), odil
  quick (30, 49), gp_pde / probconserv / neural_process quick (50, 49), meta_fm full (75, 29),
  odil full (100, 99), probconserv / neural_process full (150, 99), gp_pde full (200, 99);
* ``light beta=4`` and ``uniform``: ``z`` itself a generalised normal of ``beta = 4`` or a
  uniform (each problem's ``L = 99`` draws standardised to mean 0 and sd 1 exactly, the truth
  drawn from the law), at ``n_fit = 100``: the power to find a light tail, and what a truly
  uniform ``z`` gets;
* ``gp_pde quick``: the held-out record of ``bayesphys calibrate gp_pde --quick`` (the
  jitter-only posterior, 50 simulations of 49 draws, seed 1000), one row per summary.

A row per case, size and rule: the fraction of fits that kept a non-Gaussian law
(``non_gaussian``, its binomial standard error ``non_gaussian_se``), a generalised normal
(``gennorm``), a Student-t (``student_t``), and a generalised normal of ``beta > 8`` or
``beta >= 1000`` (``gennorm_beyond_8``, ``gennorm_at_1000``: at the family's uniform limit).
The gp_pde rows give each summary's kept ``family`` and ``beta`` (unbounded: scipy's own fit,
not clipped). ``analytic`` holds the generalised normal's excess kurtosis at ``beta = 8``
against the uniform's, the standard deviation of the sample excess kurtosis of ``n`` draws of
it (simulated, 4000 samples each), and the Fisher information of its location in units of
its sd at ``beta = 2`` and ``8``.

    python benchmarks/calibration_shape_bound.py   # 1000 fits per size: 14 min

(one thread, on a 2-core machine shared with other work). Writes
``benchmarks/results/calibration_shape_bound.json`` (``--name``, ``--out`` to change it);
``--smoke`` runs 4 fits per size into a temporary folder; ``--table RESULTS_JSON`` prints a
results file's table.

Two smaller cases, each into its own file (``calibration_shape_<case>.json``):

* ``--case null`` (400 fits per row): the shape test's null at ``L = 9`` draws and
  ``n_fit = 200`` and ``1000`` held-out problems, on Gaussian posteriors that are exact, twice
  or half as wide as the truth's law, or biased by one sd (``m ~ N(0, 9)``, truth
  ``m + N(0, 1)``), under the package's rule (``bound 8``), the ``t_{L-1}`` null without the
  bound (``unbounded``) and the rule before the ``t_{L-1}`` null (``gaussian null``: the
  Gaussian maximum-likelihood fit of ``z`` as the null, no bound) (the ``ShapeMap``
  docstring)::

      python benchmarks/calibration_shape_bound.py --case null

* ``--case recal`` (50 fits per size): every rule on the ``shape`` maps of
  ``calibration_power.py --reps 0 --recal-reps 50``'s table (docs/calibration.md,
  "Recalibrating a calibrated posterior"): the same seeded fit records, each row listing the
  kept generalised normals' ``beta`` beyond 8 (``gennorm_betas_beyond_8``)::

      python benchmarks/calibration_shape_bound.py --case recal
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from scipy import special, stats

from bayesphys._bench import (
    ablation_parser,
    positive_int,
    print_rows_table,
    results_name_arg,
    write_rows,
)
from bayesphys._checks import offset_seed
from bayesphys.diagnostics import ShapeMap, simulate_and_infer, standardised_residuals
from bayesphys.diagnostics.record_maps import _LR_MARGIN, GENNORM_MAX_SHAPE

#: (n_fit, L) of the components' recalibration fits, quick and full (see the docstring)
SIZES = ((20, 11), (30, 49), (50, 49), (75, 29), (100, 99), (150, 99), (200, 99))
BOUNDS = (4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)
#: the light-tail and uniform cases: held-out problems, draws per problem, beta of the light tail
POWER_SIZE, LIGHT_BETA = (100, 99), 4.0
RULES = ("unbounded", *(f"bound {b:g}" for b in BOUNDS), f"kept at bound {GENNORM_MAX_SHAPE:g}")
#: ``--case null``: the shape test's null at few draws, ``L``, held-out problems, fits per size
GAUSSIAN_NULL = "gaussian null"
NULL_RULES = (GAUSSIAN_NULL, "unbounded", f"bound {GENNORM_MAX_SHAPE:g}")
NULL_DRAWS, NULL_SIZES, NULL_REPS = 9, (200, 1000), 400
#: name: (sd of the draws, their bias) against a truth of sd 1 about the same centre
NULL_POSTERIORS = {"exact": (1.0, 0.0), "wide x2": (2.0, 0.0), "narrow x0.5": (0.5, 0.0)}
NULL_POSTERIORS["bias 1 sd"] = (1.0, 1.0)
#: ``--case recal``: the fits of the table "Recalibrating a calibrated posterior"
RECAL_REPS = 50
CASES = ("bound", "null", "recal")


@contextmanager
def recorded_fits():
    """Within the block, scipy's ``t.fit`` and ``gennorm.fit`` also append ``(name, fixed df,
    (shape, loc, scale))`` to the list yielded (the fits ``ShapeMap.fit`` makes)."""
    calls: list[tuple[str, bool, tuple[float, float, float]]] = []
    dists = {name: getattr(stats, name) for name in ("t", "gennorm")}
    for name, dist in dists.items():
        original = dist.fit

        def fit(data, *args, _fit=original, _name=name, **kwargs):
            out = _fit(data, *args, **kwargs)
            calls.append((_name, "fix_df" in kwargs, tuple(float(v) for v in out)))
            return out

        dist.fit = fit  # an instance attribute over the class's method
    try:
        yield calls
    finally:
        for dist in dists.values():
            del dist.fit


def package_fit(draws: torch.Tensor, truth: torch.Tensor) -> tuple[ShapeMap, np.ndarray, dict]:
    """``ShapeMap.fit(draws [N, L], truth [N])``, the ``z [N']`` it fitted and its three scipy
    fits ``{"null", "t", "gennorm"}``, each ``(shape, loc, scale)``."""
    with recorded_fits() as calls:
        m = ShapeMap.fit(draws, truth)
    fits = {("null" if fixed else name): out for name, fixed, out in calls}
    if sorted(fits) != ["gennorm", "null", "t"] or len(calls) != 3:
        raise RuntimeError(f"ShapeMap.fit made the fits {calls}, not the three expected")
    z = standardised_residuals(draws, truth).double().cpu().numpy()
    return m, z, fits


def replay(z: np.ndarray, fits: dict, rule: str) -> tuple[str, float]:
    """The family ``ShapeMap.fit`` keeps for ``z`` under ``rule`` (one of :data:`RULES`) and
    the kept law's shape (0 for the null; scipy's own, unclipped)."""
    if rule == GAUSSIAN_NULL:  # the rule before the t_{L-1} null: a Gaussian null, no bound
        ll_null = float(stats.norm.logpdf(z, *stats.norm.fit(z)).sum())
    else:
        ll_null = float(stats.t.logpdf(z, *fits["null"]).sum())
    best = (ll_null + _LR_MARGIN, "norm", 0.0)
    unbounded = rule in ("unbounded", GAUSSIAN_NULL)
    bound = math.inf if unbounded else float(rule.rsplit(" ", 1)[1])
    for name in ("t", "gennorm"):
        shape, loc, scale = fits[name]
        if name == "gennorm" and shape > bound:
            if not rule.startswith("kept"):
                continue
            shape, loc, scale = (float(v) for v in stats.gennorm.fit(z, f0=bound))
        ll = float(getattr(stats, name).logpdf(z, shape, loc, scale).sum())
        if ll > best[0]:
            best = (ll, name, shape)
    return best[1], best[2]


def check_replay(m: ShapeMap, z: np.ndarray, fits: dict) -> None:
    """The replay of the package's rule gives ``ShapeMap.fit``'s own family and shape."""
    family, shape = replay(z, fits, f"bound {GENNORM_MAX_SHAPE:g}")
    if family != m.family or min(shape, 1e3) != m.shape:
        raise RuntimeError(
            f"the replay of the package's rule kept {family} (shape {shape}), ShapeMap.fit "
            f"{m.family} (shape {m.shape}): the script no longer mirrors ShapeMap.fit"
        )


def exact_record(n: int, n_draws: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """An exactly calibrated Gaussian posterior: draws ``[n, L]`` of ``N(m, 1)``, truth ``[n]``
    ``m + N(0, 1)``, ``m ~ N(0, 9)``."""
    m = 3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    truth = m[:, 0] + torch.randn(n, generator=g, dtype=torch.float64)
    return m + torch.randn(n, n_draws, generator=g, dtype=torch.float64), truth


def law_record(
    n: int, n_draws: int, law: str, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws ``[n, L]`` standardised to mean 0 and sd 1 in every problem and a truth ``[n]``
    from ``law`` (``"light"``: a generalised normal of ``beta = LIGHT_BETA``, ``|T|^beta ~
    Gamma(1/beta)`` with a random sign; ``"uniform"``: uniform on [-2, 2]), so that ``z`` is
    that law up to the factor ``c_L``."""
    d = torch.randn(n, n_draws, generator=g, dtype=torch.float64)
    d = d - d.mean(1, keepdim=True)
    d = d / d.std(1, keepdim=True)
    if law == "uniform":
        return d, torch.rand(n, generator=g, dtype=torch.float64) * 4 - 2
    u = torch.rand(n, generator=g, dtype=torch.float64).clamp_min(1e-300).numpy()
    mag = torch.as_tensor(stats.gamma.ppf(u, 1 / LIGHT_BETA)) ** (1 / LIGHT_BETA)
    sign = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    return d, 2 * sign * mag


def null_record(
    n: int, n_draws: int, posterior: str, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A Gaussian posterior off in width or bias only (``NULL_POSTERIORS``): truth ``[n]``
    ``m + N(0, 1)``, ``m ~ N(0, 9)``, draws ``[n, L]`` ``N(m + bias, sd^2)``."""
    sd, bias = NULL_POSTERIORS[posterior]
    m = 3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    truth = m[:, 0] + torch.randn(n, generator=g, dtype=torch.float64)
    return m + bias + sd * torch.randn(n, n_draws, generator=g, dtype=torch.float64), truth


def recal_table_fits():
    """``(n_fit, L, make)`` per size of ``calibration_power.py``'s table "Recalibrating a
    calibrated posterior": ``make(g)`` draws that table's test record and then its fit record
    from ``g`` (as its ``recal_rates`` does, seed ``seed``) and returns the fit record's one
    summary, ``(draws [n_fit, L], truth [n_fit])``, on which its ``shape`` map is fitted."""
    from bayesphys._bench import repo_root, script_module

    power = script_module(str(repo_root() / "benchmarks" / "calibration_power.py"))
    for n, n_draws, n_fit in power.RECAL_SIZES:

        def make(g, n=n, n_draws=n_draws, n_fit=n_fit):
            power.record("exact", n, n_draws, g)  # the test record, not fitted on
            fit = power.record("exact", n_fit, n_draws, g)
            return fit.draws[:, :, 0], fit.truth[:, 0]

        yield n_fit, n_draws, make


def rate_rows(
    case: str,
    n: int,
    n_draws: int,
    reps: int,
    seed: int,
    make,
    rules: tuple[str, ...] = RULES,
    betas: bool = False,
) -> list[dict]:
    """One row per rule over ``reps`` seeded records of ``make(g) -> (draws, truth)``; with
    ``betas``, each row also lists the kept generalised normals' ``beta`` beyond 8 (scipy's,
    unclipped), in fit order (``gennorm_betas_beyond_8``)."""
    g = torch.Generator().manual_seed(seed)
    kept = {rule: [] for rule in rules}
    for _ in range(reps):
        draws, truth = make(g)
        m, z, fits = package_fit(draws, truth)
        check_replay(m, z, fits)
        for rule in rules:
            kept[rule].append(replay(z, fits, rule))
    rows = []
    for rule in rules:
        fam = [f for f, _ in kept[rule]]
        beta = np.array([s if f == "gennorm" else 0.0 for f, s in kept[rule]])
        p = sum(f != "norm" for f in fam) / reps
        rows.append(
            {
                "case": case,
                "n_fit": n,
                "n_draws": n_draws,
                "fits": reps,
                "rule": rule,
                "non_gaussian": p,
                "non_gaussian_se": math.sqrt(p * (1 - p) / reps),
                "gennorm": fam.count("gennorm") / reps,
                "student_t": fam.count("t") / reps,
                "gennorm_beyond_8": float((beta > 8).mean()),
                "gennorm_at_1000": float((beta >= 1000).mean()),
            }
        )
        if betas:
            rows[-1]["gennorm_betas_beyond_8"] = [float(b) for b in beta if b > 8]
    return rows


def gp_pde_rows(seed: int) -> list[dict]:
    """The rules on each summary of ``bayesphys calibrate gp_pde --quick``'s held-out record
    (the jitter-only posterior's 50 simulations of 49 draws, seed ``seed + 1000``)."""
    from bayesphys.gp_pde._calibration import PoissonFamily

    fam = PoissonFamily(infer_tau_rel=1e-6)
    rec = simulate_and_infer(
        fam.simulate,
        fam.infer,
        fam.summaries(),
        n_sims=50,
        n_draws=49,
        seed=offset_seed(seed, 1000),
        field_levels=None,
        progress=False,
    )
    rows = []
    for k, name in enumerate(rec.names):
        m, z, fits = package_fit(rec.draws[:, :, k], rec.truth[:, k])
        check_replay(m, z, fits)
        for rule in RULES:
            family, shape = replay(z, fits, rule)
            rows.append(
                {
                    "case": "gp_pde quick",
                    "summary": name,
                    "n_fit": rec.n_sims,
                    "n_draws": rec.n_draws,
                    "rule": rule,
                    "family": family,
                    "beta": shape if family == "gennorm" else None,
                    "gennorm_fit_beta": fits["gennorm"][0],
                }
            )
    return rows


def analytic(seed: int, reps: int = 4000) -> dict:
    """Excess kurtosis and location Fisher information of the generalised normal (see the
    module docstring)."""

    def fisher(beta: float) -> float:  # in units of the sd: I_loc * variance
        lg = special.gammaln
        return float(beta**2 * np.exp(lg(2 - 1 / beta) + lg(3 / beta) - 2 * lg(1 / beta)))

    rng = np.random.default_rng(seed)
    kurt_sd = {}
    for n in (20, 50, 100):
        x = stats.gennorm.rvs(GENNORM_MAX_SHAPE, size=(reps, n), random_state=rng)
        kurt_sd[str(n)] = float(stats.kurtosis(x, axis=1).std())
    return {
        "gennorm_excess_kurtosis_beta_8": float(stats.gennorm.stats(8.0, moments="k")),
        "uniform_excess_kurtosis": float(stats.uniform.stats(moments="k")),
        "sample_excess_kurtosis_sd_beta_8": kurt_sd,
        "fisher_location_in_sd_units": {"2": fisher(2.0), "8": fisher(8.0)},
    }


def main(argv: list[str] | None = None) -> Path:
    ap = ablation_parser(__doc__, jobs=False)
    ap.add_argument(
        "--case",
        choices=CASES,
        default="bound",
        help="bound (default): the bound's rates; null: the shape test's null at L = 9; "
        "recal: the shape maps of calibration_power.py's recalibration table",
    )
    ap.add_argument(
        "--reps",
        type=positive_int,
        default=None,
        help=f"fits per case and size (default 1000; --case null {NULL_REPS}, "
        f"--case recal {RECAL_REPS})",
    )
    ap.add_argument("--seed", type=int, default=0, help="base seed (>= 0, default 0)")
    ap.add_argument(
        "--name",
        type=results_name_arg,
        default=None,
        help="results file name (default calibration_shape_bound, calibration_shape_null or "
        "calibration_shape_recal)",
    )
    ap.add_argument("--smoke", action="store_true", help="4 fits per size, into a temporary folder")
    args = ap.parse_args(argv)
    if args.table:
        return print_rows_table(args.table)
    if args.seed < 0:
        ap.error(f"--seed: expected an int >= 0, received {args.seed}")
    if args.name is None:
        args.name = f"calibration_shape_{args.case}"
    if args.reps is None:
        args.reps = {"bound": 1000, "null": NULL_REPS, "recal": RECAL_REPS}[args.case]
    if args.smoke:
        args.reps = 4
        args.out = args.out or tempfile.mkdtemp(prefix="bench_smoke_")
    torch.set_num_threads(1)
    started = time.perf_counter()
    rows: list[dict] = []
    extra: dict = {"case": args.case} if args.case != "bound" else {}
    if args.case == "bound":
        rows += bound_rows(args.reps, args.seed)
        extra["analytic"] = analytic(args.seed)
    elif args.case == "null":
        for i, n in enumerate(NULL_SIZES):
            for j, post in enumerate(NULL_POSTERIORS):
                rows += rate_rows(
                    post,
                    n,
                    NULL_DRAWS,
                    args.reps,
                    offset_seed(args.seed, 200 + 10 * i + j),
                    lambda g, n=n, post=post: null_record(n, NULL_DRAWS, post, g),
                    NULL_RULES,
                )
                got = {r["rule"]: r["non_gaussian"] for r in rows[-len(NULL_RULES) :]}
                print(
                    f"{post} n_fit={n} L={NULL_DRAWS}: non-Gaussian "
                    + ", ".join(f"{k} {v:.3f}" for k, v in got.items()),
                    flush=True,
                )
    else:
        for n_fit, n_draws, make in recal_table_fits():
            rows += rate_rows(
                "recal table", n_fit, n_draws, args.reps, args.seed, make, RULES, betas=True
            )
            unb = rows[-len(RULES)]
            print(
                f"recal table n_fit={n_fit} L={n_draws}: unbounded kept generalised normals "
                f"beyond 8 with beta {unb['gennorm_betas_beyond_8']}",
                flush=True,
            )
    extra = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "threads": torch.get_num_threads(),
        "smoke": args.smoke,
        "seed": args.seed,
        "reps": args.reps,
        "gennorm_max_shape": GENNORM_MAX_SHAPE,
        "lr_margin": _LR_MARGIN,
        **extra,
        "versions": {
            "torch": torch.__version__.split("+")[0],
            "numpy": np.__version__,
            "scipy": __import__("scipy").__version__,
        },
    }
    return write_rows(
        args.name, rows, script=__file__, argv=argv, out=args.out, extra=extra, started=started
    )


def bound_rows(reps: int, seed: int) -> list[dict]:
    """The rows of ``--case bound`` (the default): every rule on exact posteriors at each
    size, on the light-tail and uniform ``z`` and on gp_pde's quick held-out record."""
    rows: list[dict] = []
    for i, (n, n_draws) in enumerate(SIZES):
        t0 = time.perf_counter()
        rows += rate_rows(
            "exact",
            n,
            n_draws,
            reps,
            offset_seed(seed, i),
            lambda g, n=n, n_draws=n_draws: exact_record(n, n_draws, g),
        )
        got = {r["rule"]: r["non_gaussian"] for r in rows[-len(RULES) :]}
        print(
            f"exact n_fit={n} L={n_draws}: non-Gaussian unbounded {got['unbounded']:.3f}, "
            f"bound 8 {got['bound 8']:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    n, n_draws = POWER_SIZE
    for j, (case, law) in enumerate(
        ((f"light beta={LIGHT_BETA:g}", "light"), ("uniform", "uniform"))
    ):
        rows += rate_rows(
            case,
            n,
            n_draws,
            reps,
            offset_seed(seed, 100 + j),
            lambda g, law=law: law_record(n, n_draws, law, g),
        )
        got = {r["rule"]: r["gennorm"] for r in rows[-len(RULES) :]}
        print(f"{case}: generalised normal kept, bound 8 {got['bound 8']:.3f}", flush=True)
    return rows + gp_pde_rows(seed)


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
