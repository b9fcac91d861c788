"""Step 2 on the ANP's latent mixture: one update after moment matching vs the reference's update
per draw.

ProbConserv's reference code (Hansen et al., ICML 2023) conditions **each latent draw's**
diagonal Gaussian :math:`N(\\mu_s, \\operatorname{diag}\\sigma_s^2)` on the mass and then
moment-matches the updated mixture (``covariance="mixture"``,
``bayesphys.probconserv.conserve_latent_mixture``); the benchmark's ``ProbConserv-ANP-diag``
rows update the moment-matched Gaussian :math:`\\operatorname{diag}(\\bar\\sigma^2 +
\\operatorname{Var}_s\\mu_s)` once (``covariance="diag"``). This script scores both on the
**same** trained ANP of each problem (a benchmark run's ``--save-models``), with the same
scalar variance scale as the benchmark's ``-diag`` rows (``calibrate(objective="ll")``, seed
777, 200 validation functions), on the benchmark's test functions (50 per test parameter,
context seed 10 000, the 201-point slice at the table time): MSE, LL, 90 % coverage (also
``_raw``, with no variance scale: the reference's own setting), CRPS, the largest |CE|, and
for Stefan the shock position (``benchmarks/_probconserv_scoring.py::shock_metrics``, the
reference definition; 500 draws; columns ``shock_*``). ``mixture-ref-sampling`` (Stefan shock only):
the shock positions drawn as the reference draws them, from :math:`N(\\tilde\\mu, \\frac1S\\sum_s
\\tilde\\Sigma_s)` with no variance scale and without the spread of the updated means.

    python benchmarks/probconserv.py --save-models DIR --out DIR      # trains (~35 min)
    python benchmarks/probconserv_step2.py --models DIR               # ~5 min, 1 thread

Writes ``benchmarks/results/probconserv_step2.json``; ``--summary RESULTS_JSON`` prints the
docs' tables. The models must come from one run: the ANP of the committed main table was not
saved, so these rows come from a retrained one (their ``-diag`` figures differ from the main
table's by that retraining).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _probconserv_saved import param_sets, pivot, rescore  # noqa: E402
from _probconserv_scoring import shock_metrics  # noqa: E402

from bayesphys.probconserv import ProbConserv, conserve_latent_mixture  # noqa: E402
from bayesphys.probconserv._predict import latent_draws  # noqa: E402
from bayesphys.probconserv.evaluate import slice_scores  # noqa: E402

TEST_SEED = 10_000  # the benchmark's test functions
CAL_SEED = 777  # the benchmark's scalar calibration of its -diag / -model rows
SHOCK_DRAWS = 500
VARIANTS = ("diag", "mixture")


def _scores(post, raw, truth, x, mass) -> dict[str, float]:
    sc, sr = slice_scores(post, truth, x, mass), slice_scores(raw, truth, x, mass)
    out = {k: float(sc[k].mean()) for k in ("mse", "ll", "coverage90", "crps")}
    out["ce_absmax"] = float(sc["ce"].abs().max())
    out["ll_raw"] = float(sr["ll"].mean())
    out["coverage90_raw"] = float(sr["coverage90"].mean())
    return out


def rows_for(args, cfg, prob):
    base = ProbConserv.load(Path(args.models) / f"{prob.name}_ANP.pt")
    models = {}
    for cov in VARIANTS:
        m = copy.deepcopy(base)
        m.config.covariance = cov
        m.calibrate(seed=CAL_SEED, n_functions=cfg["n_val"], objective="ll")
        models[cov] = m
    x = prob.grid(201)
    shock_draws = 20 if args.smoke else SHOCK_DRAWS
    for param, test in param_sets(prob, cfg["n_test"], seed=TEST_SEED):
        truth = prob.solution(prob.table_time, x, test.params[:, None])[:, None]
        mass = prob.mass(prob.table_time, test.params)[:, None]
        for cov, m in models.items():
            raw = copy.copy(m)
            raw.var_scale = 1.0
            post = m.posterior(test)
            row = {"problem": prob.name, "param": param, "variant": cov, "var_scale": m.var_scale}
            row |= _scores(post, raw.posterior(test), truth, x, mass)
            if prob.name == "stefan":
                shock = shock_metrics(post, x, truth, param, shock_draws, 0, prob.table_time)
                row |= {f"shock_{k}": v for k, v in shock.items()}
            yield row
        if prob.name == "stefan":  # the reference's shock sampling law, uncalibrated
            mu, var = latent_draws(models["mixture"], test, *models["mixture"]._grid(None, None), 0)
            ref = conserve_latent_mixture(mu, var, x, mass, spread_scale=0.0)
            yield {
                "problem": prob.name,
                "param": param,
                "variant": "mixture-ref-sampling",
                **{
                    f"shock_{k}": v
                    for k, v in shock_metrics(
                        ref, x, truth, param, shock_draws, 0, prob.table_time
                    ).items()
                },
            }


def summary(rows: list[dict]) -> str:
    fields = [(v, lambda r, v=v: r["variant"] == v) for v in VARIANTS]
    fit = pivot(
        [r for r in rows if "mse" in r],
        ("problem", "param"),
        fields,
        lambda r: (
            f"MSE {r['mse']:.3g}, LL {r['ll']:.3g}, cov {r['coverage90']:.3f} (raw LL "
            f"{r['ll_raw']:.3g}, cov {r['coverage90_raw']:.3f}), CRPS {r['crps']:.3g}, "
            f"max abs CE {r['ce_absmax']:.1e}"
        ),
        "after the update (test functions, context seed 10 000)",
        key_names=("problem", "parameter"),
    )
    shock = [r for r in rows if "shock_bias" in r]
    if not shock:
        return fit
    table = pivot(
        shock,
        ("param",),
        [*fields, ("mixture-ref-sampling", lambda r: r["variant"] == "mixture-ref-sampling")],
        lambda r: (
            f"{r['shock_bias']:+.4f} / {r['shock_sd']:.4f} (fid 1 {r['shock_bias_fid1']:+.4f} / "
            f"{r['shock_sd_fid1']:.4f}); 90 % interval covers {r['shock_coverage90']:.2f}"
        ),
        "Stefan shock position, reference definition: bias / sd over the test functions",
        key_names=("u*",),
    )
    return fit + "\n\n" + table


def main(argv: list[str] | None = None) -> Path:
    return rescore(
        __doc__,
        argv,
        name="probconserv_step2",
        script=__file__,
        problems="diffusion,pme,stefan",
        summary=summary,
        rows_for=rows_for,
    )


if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
