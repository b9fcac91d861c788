r"""A cohort of small inverse problems fitted in parallel with
:func:`bayesphys.distributed.fit_many`.

Each synthetic "patient" :math:`k` has a field
:math:`u_k(x) = a_k \sin(2\pi x + \varphi_k) + b_k \sin(6\pi x)` on ``n`` grid points and
``m`` noisy sensors :math:`y_k = u_k(x_{idx}) + \varepsilon`, :math:`\varepsilon \sim
\mathcal N(0, \sigma^2 I)`. The model (:class:`LinearGaussianModel`) fits the GP lengthscale by
type-II maximum likelihood (``fit``) and returns the exact Gaussian posterior over the grid
(``posterior``, :func:`bayesphys.problems.linear_gaussian.posterior_for`). ``fit_many`` stacks the
cohort into one InferenceData with a ``patient`` dimension; the summary reports accuracy and 95 %
coverage per patient and across the cohort.

The model is looked up in :data:`MODELS` (``--model``): ``linear-gaussian`` (the core problem,
default) or ``glioma`` (the ODIL Fisher-Kolmogorov model, :class:`bayesphys.odil.GliomaModel`,
on synthetic patients; summarised across patients with ArviZ). Another component model plugs in
by adding a :class:`CohortModel` entry.

Run: ``bayesphys run cohort --smoke`` or ``python examples/cohort.py --executor ray``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._checks import check_int, check_optional_seed, check_seed
from .._files import atomic_write, atomic_write_text
from .._model import FitResult, autograd_on, optimize
from ..problems.linear_gaussian import log_marginal_likelihood, posterior_for
from ._args import add_out, device, positive_int, seed

if TYPE_CHECKING:
    from .._arviz_version import import_arviz

    az = import_arviz()
    import xarray as xr

    from ..odil import GliomaModel
    from ..posterior import GaussianPosterior

DESCRIPTION = "Cohort of small inverse problems on a local/Ray/Dask executor (fit_many)"

__all__ = [
    "DESCRIPTION",
    "LinearGaussianModel",
    "CohortModel",
    "make_cohort",
    "export_cohort",
    "make_glioma_cohort",
    "build_glioma",
    "export_glioma",
    "MODELS",
    "main",
]


def _patient_seed(seed: int, k: int) -> int:
    """Patient ``k``'s seed in a cohort of ``seed``: ``seed * 100_003 + k`` wrapped modulo
    ``2**64``, as torch maps a negative seed (so the streams are those of the unwrapped value
    wherever torch took it; a seed beyond about ``+-9.2e13`` overflowed inside torch)."""
    return (int(seed) * 100_003 + int(k)) % 2**64


def make_cohort(
    n_patients: int, *, seed: int = 0, n: int = 101, m: int = 30, noise: float = 0.1
) -> dict[str, dict[str, Any]]:
    """``{"p000": problem, ...}``; a problem holds ``x [n]``, ``u [n]``, ``idx [m]``, ``y [m]``.

    ``seed``: any seed torch takes (``[-2**63, 2**64)``, numpy integers too); patient ``k``
    is drawn with seed ``seed * 100_003 + k`` (wrapped modulo ``2**64``, as torch reads a
    negative seed)."""
    n_patients = check_int("n_patients", n_patients, minimum=1)
    seed = check_seed("seed", seed)
    if not 1 <= m <= n:
        raise ValueError(f"m: expected 1 <= m <= n = {n}, received {m}")
    out = {}
    for k in range(n_patients):
        gen = torch.Generator().manual_seed(_patient_seed(seed, k))
        a, b, phi = torch.rand(3, generator=gen, dtype=torch.float64)
        x = torch.linspace(0, 1, n, dtype=torch.float64)
        u = (0.5 + a) * torch.sin(2 * math.pi * x + 2 * math.pi * phi) + b * torch.sin(
            6 * math.pi * x
        )
        idx = torch.sort(torch.randperm(n, generator=gen)[:m]).values
        y = u[idx] + noise * torch.randn(m, generator=gen, dtype=torch.float64)
        out[f"p{k:03d}"] = {"x": x, "u": u, "idx": idx, "y": y, "noise": noise}
    return out


class LinearGaussianModel:
    r"""GP prior :math:`u \sim \mathcal N(0, K_\ell)` with point sensors; exact posterior.

    ``fit`` maximises :math:`\log \mathcal N(y \mid 0, K_\ell[idx, idx] + \sigma^2 I)` over
    :math:`\log \ell` with Adam from a random start (drawn from ``seed`` or the global RNG).
    ``posterior`` returns :class:`~bayesphys.GaussianPosterior` with event shape ``[n]``.
    """

    @autograd_on()  # built inside inference_mode / no_grad, it still trains
    def __init__(self, problem: dict[str, Any], *, seed: int | None = None) -> None:
        for key in ("x", "idx", "y"):
            if key not in problem:
                raise ValueError(f"problem: expected key {key!r}, received keys {list(problem)}")
        self.problem = problem
        self.noise = float(problem.get("noise", 0.1))
        # numpy integers as ints; a bool or float is refused naming ``seed`` (torch's
        # manual_seed failed on numpy integers with "an integer is required")
        seed = check_optional_seed("seed", seed)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        # float64 whatever the caller's default dtype (a worker process has float32's)
        start = math.log(0.1) + 0.5 * float(torch.randn((), generator=gen, dtype=torch.float64))
        self.log_lengthscale = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))

    @property
    def lengthscale(self) -> float:
        return float(self.log_lengthscale.detach().exp())

    def _nlml(self) -> torch.Tensor:
        x, idx, y = self.problem["x"], self.problem["idx"], self.problem["y"]
        ell = self.log_lengthscale.exp()
        xo = x[idx]
        koo = torch.exp(-0.5 * (xo[:, None] - xo[None, :]) ** 2 / ell**2)
        koo = koo + self.noise**2 * torch.eye(len(idx), dtype=x.dtype)
        mvn = torch.distributions.MultivariateNormal(torch.zeros_like(y), covariance_matrix=koo)
        return -mvn.log_prob(y)

    @autograd_on()
    def fit(
        self, *, steps: int = 150, lr: float = 0.05, tol: float | None = 1e-7, progress: bool = True
    ) -> FitResult:
        """Adam on :math:`-\\log p(y \\mid \\ell)` (stops early when the relative change < ``tol``;
        ``tol=None`` runs all ``steps``); returns the loss history."""
        opt = torch.optim.Adam([self.log_lengthscale], lr=lr)

        def step():
            opt.zero_grad()
            loss = self._nlml()
            loss.backward()
            opt.step()
            return loss

        res = optimize(step, steps=steps, params=[self.log_lengthscale], progress=progress, tol=tol)
        res.extra["lengthscale"] = self.lengthscale
        return res

    def posterior(self) -> GaussianPosterior:
        """Exact posterior over the grid, event shape ``[n]``."""
        p = self.problem
        return posterior_for(p["x"], p["idx"], p["y"], self.noise, lengthscale=self.lengthscale)

    def log_marginal_likelihood(self) -> float:
        p = self.problem
        # a Python float, as annotated (the helper returns a 0-d tensor)
        return float(
            log_marginal_likelihood(p["x"], p["idx"], p["y"], self.noise, self.lengthscale)
        )


def export_cohort(
    model: LinearGaussianModel, post: GaussianPosterior, seed: int, num_samples: int = 200
) -> az.InferenceData | xr.DataTree:
    """InferenceData (a DataTree on ArviZ 1.x): posterior ``u [1, S, x]``; ``observed_data``:
    ``y [sensor]``, ``u_true [x]``.

    Sensor positions differ between patients, so ``sensor`` is a plain index (no coordinate)
    and the positions go to ``constant_data.x_sensor``.
    """
    from ..inference_data import build_inference_data

    p = model.problem
    gen = torch.Generator().manual_seed(int(seed))
    draws = post.sample((1, num_samples), generator=gen)
    return build_inference_data(
        posterior={"u": draws},
        observed_data={"y": p["y"], "u_true": p["u"]},
        constant_data={"x_sensor": p["x"][p["idx"]]},
        coords={"x": p["x"]},
        dims={"u": ["x"], "u_true": ["x"], "y": ["sensor"], "x_sensor": ["sensor"]},
    )


def summarise(idata, patient_dim: str = "patient") -> dict[str, Any]:
    """Per-patient relative L2 of the posterior mean and 95 % coverage of the truth."""
    from ..inference_data import group_dataset

    u = group_dataset(idata, "posterior")["u"]
    truth = group_dataset(idata, "observed_data")["u_true"]
    mean = u.mean(("chain", "draw"))
    lo = u.quantile(0.025, ("chain", "draw"))
    hi = u.quantile(0.975, ("chain", "draw"))
    err = ((mean - truth) ** 2).sum("x") ** 0.5 / (truth**2).sum("x") ** 0.5
    cover = ((truth >= lo) & (truth <= hi)).mean("x")
    return {
        "rel_l2": {str(k): float(v) for k, v in zip(err[patient_dim].values, err.values)},
        "coverage95": {str(k): float(v) for k, v in zip(cover[patient_dim].values, cover.values)},
        "rel_l2_median": float(err.median()),
        "coverage95_mean": float(cover.mean()),
    }


def summarise_glioma(idata, problems: dict, patient_dim: str = "patient") -> dict[str, Any]:
    """Per-patient relative error of the posterior medians of the infiltration length
    :math:`\\ell = \\sqrt{D_w/\\rho}` and front speed :math:`v = 2\\sqrt{D_w \\rho}`, and whether
    the truth lies in the central 90 % interval, plus the ArviZ summary across patients."""
    from .._arviz_version import import_arviz

    az = import_arviz()

    from ..inference_data import group_dataset

    post = group_dataset(idata, "posterior")
    out: dict[str, Any] = {"rel_err_ell": {}, "rel_err_v": {}, "in_90": {}}
    for pid in post[patient_dim].values:
        truth = problems[str(pid)]["truth"]
        inside = []
        for name in ("ell", "v"):
            d = post[name].sel({patient_dim: pid})
            med = float(d.median())
            out[f"rel_err_{name}"][str(pid)] = abs(med - truth[name]) / truth[name]
            lo, hi = (float(d.quantile(q)) for q in (0.05, 0.95))
            inside.append(lo <= truth[name] <= hi)
        out["in_90"][str(pid)] = inside
    out["rel_err_ell_median"] = float(np.median(list(out["rel_err_ell"].values())))
    out["rel_err_v_median"] = float(np.median(list(out["rel_err_v"].values())))
    out["coverage90"] = float(np.mean([x for v in out["in_90"].values() for x in v]))
    summ = az.summary(post[["D_w", "rho", "ell", "v"]], kind="stats")
    out["arviz_summary"] = summ.to_dict(orient="index")
    print(summ.to_string())
    return out


def make_glioma_cohort(n_patients: int, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Synthetic glioma patients on the 32 x 32 (4 mm) phantom (``problems.glioma``); patient
    ``k`` is ``synthetic_patient(seed * 100_003 + k)`` (wrapped modulo ``2**64``; ``seed``
    any seed torch takes)."""
    from ..problems.glioma import brain_phantom, synthetic_patient

    seed = check_seed("seed", seed)
    ph = brain_phantom(32, 4.0)
    return {
        f"p{k:03d}": synthetic_patient(_patient_seed(seed, k), phantom=ph)
        for k in range(n_patients)
    }


def build_glioma(problem: dict[str, Any], *, seed: int | None = None) -> GliomaModel:
    """:class:`bayesphys.odil.GliomaModel` from a synthetic patient (imported lazily)."""
    from ..odil import GliomaModel

    return GliomaModel.from_patient(
        problem, device="cpu", seed=None if seed is None else seed % 2**31
    )


def export_glioma(
    model: GliomaModel, post: Any, seed: int, num_samples: int = 200
) -> az.InferenceData | xr.DataTree:
    """Named Laplace draws ``D_w, rho, x0, y0, ell, v`` ``[chain, draw]`` (no field map)."""
    return model.to_inference_data(num_samples=num_samples, seed=seed % 2**31, field=False)


@dataclass(frozen=True)
class CohortModel:
    """How the example runs one model: problems, build, export, fit settings, summary."""

    make: Callable[..., dict[str, Any]]
    build: Callable[..., Any]
    export: Callable[..., Any]
    summarise: Callable[..., dict[str, Any]]
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    smoke_fit_kwargs: dict[str, Any] = field(default_factory=dict)
    posterior_kwargs: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, CohortModel] = {
    "linear-gaussian": CohortModel(
        make_cohort,
        LinearGaussianModel,
        export_cohort,
        lambda idata, problems: summarise(idata),
        fit_kwargs={"steps": 150},
        smoke_fit_kwargs={"steps": 40},
    ),
    "glioma": CohortModel(
        make_glioma_cohort,
        build_glioma,
        export_glioma,
        summarise_glioma,
        fit_kwargs={"steps": 30},
        smoke_fit_kwargs={"steps": 10, "grid": 2},
        posterior_kwargs={"num_samples": 2},
    ),
}
"""Models the example can run; a component model plugs in by adding an entry."""


def main(argv: list[str] | None = None) -> dict:
    """Fit a cohort with ``fit_many`` and summarise it across patients."""
    from functools import partial

    from ..distributed import fit_many

    ap = argparse.ArgumentParser(prog="bayesphys run cohort", description=DESCRIPTION)
    ap.add_argument("--smoke", action="store_true", help="4 patients, few steps (< 30 s)")
    ap.add_argument("--device", type=device, default="cpu", help="only cpu for this model")
    add_out(ap, "cohort")
    ap.add_argument("--seed", type=seed, default=0)
    ap.add_argument("--executor", default="local", choices=["local", "ray", "dask", "sequential"])
    ap.add_argument("--patients", type=positive_int, default=None, help="default 16 (--smoke: 4)")
    ap.add_argument("--workers", type=positive_int, default=None)
    ap.add_argument("--model", default="linear-gaussian", choices=sorted(MODELS))
    args = ap.parse_args(argv)
    # any name of the CPU ("cpu:0" was refused); "auto" runs here on the CPU as well
    if args.device != "auto" and torch.device(args.device).type != "cpu":
        ap.error(f"argument --device: this example runs on cpu, received {args.device!r}")
    n_patients = args.patients or (4 if args.smoke else 16)
    num_samples = 100 if args.smoke else 400
    spec = MODELS[args.model]
    problems = spec.make(n_patients, seed=args.seed)
    out = Path(args.out)
    res = fit_many(
        problems,
        spec.build,
        executor=args.executor,
        out=out / "fits",
        progress=not args.smoke,
        problem_dim="patient",
        seed=args.seed,
        max_workers=args.workers or (2 if args.smoke else None),
        fit_kwargs=spec.smoke_fit_kwargs if args.smoke else spec.fit_kwargs,
        posterior_kwargs=spec.posterior_kwargs,
        export=partial(spec.export, num_samples=num_samples),
    )
    from ..inference_data import save_netcdf

    summary: dict[str, Any] = {
        "seed": args.seed,  # with the command's other options, what redoes the run
        "executor": res.executor,
        "workers": res.workers,
        "patients": n_patients,
        "failed": [str(i) for i in res.failed],
        "wall_seconds": res.seconds,
        "fit_seconds_sum": float(res.table["seconds"].fillna(0).sum()),
    }
    if res.idata is not None:
        save_netcdf(res.idata, out / "cohort.nc", attrs={"seed": args.seed})
        summary.update(spec.summarise(res.idata, problems))
    else:  # no patient finished: an earlier run's cohort.nc must not sit beside this summary
        (out / "cohort.nc").unlink(missing_ok=True)
    table = res.table.drop(columns=["traceback"])
    atomic_write(out / "cohort_table.csv", lambda tmp: table.to_csv(tmp))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    figures = {k: round(v, 4) for k, v in summary.items() if isinstance(v, float)}
    print(
        f"cohort ({args.model}): {n_patients} patients on {res.executor} ({res.workers} workers) "
        f"in {res.seconds:.1f} s; {figures}"
    )
    return summary


if __name__ == "__main__":  # pragma: no cover
    from .._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
