"""One row of the GP-HM benchmark (``benchmarks/gp_pde.py``; Fang et al., ICLR 2024, arXiv
2311.04465): the fit of one (problem, method) within its CPU-time budget (coarse-to-fine where
set), its posterior coverage, and the row's peak resident memory."""

from __future__ import annotations

import pathlib
import sys

import torch

from bayesphys._bench import bench_row
from bayesphys._model import FitResult
from bayesphys.gp_pde import GPPDESolver

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _gp_pde_settings import REF_SRC  # noqa: E402

try:
    import resource  # POSIX: peak memory (not on Windows)
except ImportError:  # pragma: no cover - Windows
    resource = None


def _reset_peak() -> bool:
    """Reset the process's peak resident size (Linux: ``/proc/self/clear_refs``), so that the
    next :func:`_peak_mb` is this row's peak; ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    """Peak resident size since the last :func:`_reset_peak` (``VmHWM``; elsewhere the
    process's lifetime maximum, ``ru_maxrss``)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return _maxrss_bytes() / 2**20


def _maxrss_bytes() -> float:
    """The process's lifetime peak resident size in bytes (``ru_maxrss`` is KiB on Linux and
    bytes on macOS)."""
    if resource is None:  # pragma: no cover - Windows
        raise RuntimeError("the memory figures need a POSIX system (the resource module)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak if sys.platform == "darwin" else peak * 1024)


def _coverage(model: GPPDESolver, n_test: int) -> tuple[float | None, float | None]:
    """95% interval coverage of the exact solution, and median posterior sd / median |error|
    (>> 1: conservative, e.g. the jitter floor; << 1: over-confident)."""
    try:
        ta = model._test_axes(None)
        if model.dim == 2 and n_test < ta[0].numel():
            ta = [
                torch.linspace(float(a[0]), float(a[-1]), n_test, dtype=a.dtype, device=a.device)
                for a in ta
            ]
        post = model.posterior(ta)
    except (NotImplementedError, ValueError) as err:
        print(f"  coverage unavailable: {err}", file=sys.stderr, flush=True)
        return None, None
    lo, hi = post.interval(0.95)
    ex = model.problem.solution(ta)
    cov = float(((lo <= ex) & (ex <= hi)).double().mean())
    err = (post.mean.reshape(ex.shape) - ex).abs()
    ratio = float(post.stddev.reshape(ex.shape).median() / err.median().clamp_min(1e-300))
    return cov, ratio


def run_one(
    problem: str,
    method: str,
    model_kw: dict,
    fit_kw: dict,
    budget: float,
    device,
    label: str | None = None,
) -> dict:
    torch.manual_seed(0)
    _reset_peak()  # peak_mem_mb is this row's (it was the running peak of the whole process)
    m = GPPDESolver(
        problem, method="gp-hm" if method == "GP-HM" else "ref", device=device, seed=0, **model_kw
    )
    fit_kw = dict(fit_kw)
    coarse = fit_kw.pop("coarse", None)
    steps = fit_kw.get("steps", 1000)
    every = max(steps // 10, 1) if steps < 10**5 else 200
    extra_s, extra_cpu, extra_steps = 0.0, 0.0, 0
    if coarse is not None:  # coarse-to-fine: fit hyperparameters on a coarse grid first
        mc = GPPDESolver(
            problem,
            method="gp-hm",
            device=device,
            seed=0,
            n_col=coarse["n_col"],
            **coarse.get("model", {}),
        )
        rc = mc.fit(
            steps=coarse["steps"],
            progress=False,
            max_seconds=budget,
            clock="cpu",
            keep_best=fit_kw.get("keep_best"),
        )
        m.warm_start_from(mc)
        extra_s, extra_cpu, extra_steps = rc.seconds, rc.extra["cpu_seconds"], rc.steps
        budget = max(budget - extra_cpu, 1.0)
        print(
            f"  coarse {coarse}: rel_l2 {rc.extra.get('rel_l2'):.3g}", file=sys.stderr, flush=True
        )
    final_newton = fit_kw.pop("final_newton", False)
    if steps > 0:
        res = m.fit(progress=False, eval_every=every, max_seconds=budget, clock="cpu", **fit_kw)
    else:
        res = FitResult([], 0.0, True, 0, "no fine-grid steps", {"cpu_seconds": 0.0})
    if final_newton or steps == 0:  # (re-)solve U on this grid at the final hyperparameters
        import time

        t0, c0 = time.perf_counter(), time.process_time()
        stats = m.solve_field(newton=final_newton)
        res.seconds += time.perf_counter() - t0
        res.extra["cpu_seconds"] += time.process_time() - c0
        res.extra["rel_l2"] = m.rel_l2()
        res.extra["rel_l2_best"] = min(res.extra.get("rel_l2_best", 1e300), res.extra["rel_l2"])
        res.message += f"; final solve {stats}"
        print(
            f"  final solve: rel_l2 {res.extra['rel_l2']:.3g} {stats}", file=sys.stderr, flush=True
        )
    cov, ratio = _coverage(m, 300 if m.dim == 1 else 40)
    metrics = {
        "rel_l2": res.extra.get("rel_l2"),
        "rel_l2_best": res.extra.get("rel_l2_best"),
        "coverage95": cov,
        "sd_over_err": ratio,
        "seconds": res.seconds + extra_s,
        "cpu_seconds": res.extra.get("cpu_seconds") + extra_cpu,
        "steps": res.steps + extra_steps,
        "peak_mem_mb": _peak_mb(),
    }
    print(
        f"{problem:26s} {method:20s} "
        + " ".join(f"{k}={v:.3g}" for k, v in metrics.items() if v is not None),
        file=sys.stderr,
        flush=True,
    )
    setting = {
        "n_col": m.shape[0],
        "Q": m.config["num_mixtures"],
        "kind": m.config["kind"],
        "weighting": m.config["weighting"],
        "jitter": m.config["jitter"],
        "zero_component": m.config["zero_component"],
    }
    if coarse is not None:
        setting["coarse"] = f"{coarse['n_col']}^d x {coarse['steps']} steps"
    if m.op.cubic and m.dim == 2 and m.config.get("nonlinear_solver", "picard") != "picard":
        setting["solver"] = m.config["nonlinear_solver"]
        setting.update({f"gn_{k}": v for k, v in m.config.get("solver_options", {}).items()})
    if m.config.get("nugget") is not None:
        setting["nugget"] = m.config["nugget"]
    # which iterate the fit returns (GPPDESolver.fit's keep_best; "ref" keeps its last one)
    keep = fit_kw.get("keep_best")
    keep = m.config["method"] != "ref" if keep is None else keep
    setting["iterate"] = "lowest-objective" if keep else "last"
    note = res.message
    if "best_objective" in res.extra:  # keep_best: the objective of the kept and the last iterate
        best, last = res.extra["best_objective"], res.extra["final_objective"]
        note += (
            f"; objective {best:.6g} kept, last iterate {last:.6g}"
            if "kept the lowest-objective iterate" in res.message
            else f"; last iterate kept (lowest objective {last:.6g})"
        )
    if not m.can_eliminate and method == "GP-HM":
        note += (
            "; no exact eliminator for this operator: U optimised jointly (paper style) "
            "with our init"
        )
    return bench_row(
        problem,
        label or method,
        metrics,
        setting=setting,
        anchor={"source": REF_SRC, "metrics": {}},
        note=note,
    )
