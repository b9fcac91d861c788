r"""Test-set metrics for random-grid neural processes (the reference code's, plus NLL and CRPS).

Per test case, with posterior mean :math:`\bar u` and reference :math:`u^*`:
:math:`\mathrm{NSE}_u = (\lVert\bar u - u^*\rVert_2 / \lVert u^*\rVert_2)^2` (a *squared* relative
error), :math:`\mathrm{NSE}_z` likewise for the parameters; ``coverage2sd`` is the fraction of
true values inside :math:`\bar u \pm 2\sigma` (bounds included); ``coverage2sd``, ``nll`` and
``crps`` of the field are means over interior nodes (on Poisson the reference's ``Pin2Sig_u``
divides by all ``N`` nodes and counts the two zero-width boundary nodes as misses: it equals
our ``coverage2sd_u`` times ``(N - 2) / N``);
``nll`` and ``crps`` are the mean Gaussian negative log likelihood and CRPS of the marginals;
``*_sd`` are sample sds (``n - 1``; NaN for a single case). Forward: the model's
GP at the true :math:`(z, w)`; inverse: GICNet on the reference field, boundary nodes dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._checks import (
    as_real_array,
    check_increasing,
    check_int,
    check_int_sequence,
    check_keys,
    check_real,
    check_seed,
    seed_or_draw,
    stream_seed,
)
from .._device import check_finite
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning
from ..metrics import crps_gaussian, gaussian_nll

if TYPE_CHECKING:  # pragma: no cover
    from .model import RandomGridNP

__all__ = [
    "evaluate_poisson",
    "evaluate_burgers",
    "invariance_study",
    "field_metrics",
    "parameter_metrics",
    "information_oracle",
    "match_oracle_sigma",
]


def _t(a, m) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=m.dtype, device=m.device)


#: array shapes of a test set per problem (``n`` cases; ``N``/``nx``/``nt`` nodes)
_TEST_SHAPES = {
    "poisson": {"x": ("N",), "z": ("n", "dim_z"), "w": ("n", "dim_w"), "u": ("n", "N")},
    "burgers": {
        "x": ("nx",),
        "t": ("nt",),
        "z": ("n", "dim_z"),
        "w": ("n", "dim_w"),
        "u": ("n", "nt", "nx"),
    },
}
_TEST_MAKERS = {"poisson": "poisson_test_set", "burgers": "burgers_test_set"}
_NODE_MIN = {"N": 3, "nx": 3, "nt": 2}


def _check_test(test: Any, problem: str, keys: tuple[str, ...] | None = None) -> dict:
    """The arrays ``keys`` of a test set of ``problem`` (``"poisson"``/``"burgers"``) as finite
    float64 arrays with consistent shapes and strictly increasing ``x`` and ``t`` nodes
    (``TypeError``/``ValueError`` naming the entry)."""
    shapes = _TEST_SHAPES[problem]
    keys = tuple(shapes) if keys is None else keys
    maker = _TEST_MAKERS[problem]
    check_keys("test", test, keys, None, hint=f"from {maker}")
    out = {}
    for k in keys:
        out[k] = as_real_array(f"test['{k}']", test[k])
    sizes = {"dim_z": 2 if problem == "burgers" else None, "dim_w": 1}
    ok = True
    for k, a in out.items():
        want = shapes[k]
        ok = ok and a.ndim == len(want)
        for label, n in zip(want, a.shape) if ok else ():
            if sizes.get(label) is None:
                sizes[label] = n
            ok = ok and n == sizes[label] and n >= _NODE_MIN.get(label, 1)
    if not ok:
        exp = ", ".join(f"{k} [{', '.join(shapes[k])}]" for k in out)
        got = ", ".join(f"{k} {a.shape}" for k, a in out.items())
        labels = {lab for k in out for lab in shapes[k]}
        rules = ["n >= 1"] + [f"{lab} >= {v}" for lab, v in _NODE_MIN.items() if lab in labels]
        rules += ["dim_w = 1"] + (["dim_z = 2"] if problem == "burgers" else [])
        raise ValueError(f"test: expected shapes {exp} ({', '.join(rules)}), received {got}")
    for k, a in out.items():
        check_finite(f"test['{k}']", a)
    for k in ("x", "t"):
        # the mesh in increasing order: its first and last nodes are read as the boundary
        # (dropped from the interior metrics and the inverse inputs), t[0] as t = 0, and
        # invariance_study interpolates along it (np.interp on a decreasing x gave other values
        # without a word)
        if out.get(k) is not None:
            check_increasing(
                f"test['{k}']",
                out[k],
                what=f"nodes (the mesh of {_TEST_MAKERS[problem]})",
                label=k,
                hint="; sort the nodes and the values together",
            )
    return out


def _check_model(model: Any, problem: str, fn: str) -> None:
    got = getattr(getattr(model, "problem", None), "name", None)
    if got != problem:
        what = f"a {got!r} model" if got else type(model).__name__
        raise ValueError(f"model: {fn} evaluates a {problem!r} RandomGridNP, received {what}")


def _str_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"{name}: expected a sequence of names, e.g. ('uniform',), received {value!r}"
        )
    out = tuple(value)
    if not out:
        raise ValueError(f"{name}: expected at least one entry, received {value!r}")
    return out


def _metric_inputs(
    mean: torch.Tensor, var: torch.Tensor, truth: torch.Tensor, what: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mean``, ``var``, ``truth`` as float64 tensors of one shape ``[n >= 1, K >= 1]``
    (``what``: the name of ``K``), ``var >= 0``: a negative (or NaN) variance was clamped to
    ``1e-12`` and scored as a near-certain prediction."""
    for name, t in (("mean", mean), ("var", var), ("truth", truth)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, received {type(t).__name__}")
    shapes = [tuple(t.shape) for t in (mean, var, truth)]
    if mean.ndim != 2 or len(set(shapes)) > 1 or 0 in shapes[0]:
        raise ValueError(
            f"mean/var/truth: expected one shape [n, {what}] (n, {what} >= 1), received "
            f"{', '.join(map(str, shapes))}"
        )
    mean, var, truth = mean.double(), var.double(), truth.double()
    if bool((~(var >= 0)).any()):
        raise ValueError("var: expected non-negative variances (no NaN)")
    return mean, var, truth


def _sample_sd(v: torch.Tensor) -> float:
    """Sample sd (``n - 1``) of ``v [n]``; NaN for ``n = 1`` without torch's degrees-of-freedom
    warning (a one-case test set is valid, its spread undefined)."""
    return float(v.std()) if v.numel() > 1 else math.nan


def _check_interior(interior: Any, n: int) -> torch.Tensor:
    """``interior`` as a tensor selecting at least one of ``n`` points: a bool mask ``[n]`` or
    integer indices in ``[-n, n)`` (a mask of another length was an ``IndexError`` from
    torch, an empty selection an error naming ``mean/y``)."""
    if not isinstance(interior, torch.Tensor):
        interior = torch.as_tensor(np.asarray(interior))
    if interior.dtype == torch.bool:
        ok = tuple(interior.shape) == (n,) and bool(interior.any())
    else:
        ok = (
            not interior.is_floating_point()
            and not interior.is_complex()
            and interior.ndim == 1
            and interior.numel() > 0
            and bool(((interior >= -n) & (interior < n)).all())
        )
    if not ok:
        raise ValueError(
            f"interior: expected a bool mask of shape [{n}] or integer indices in "
            f"[-{n}, {n}) selecting at least one point, received {interior.dtype} of shape "
            f"{tuple(interior.shape)}"
        )
    return interior


def field_metrics(
    mean: torch.Tensor, var: torch.Tensor, truth: torch.Tensor, interior: torch.Tensor
) -> dict[str, float]:
    """NSE (over all points), coverage, NLL, CRPS (interior points, ``interior`` an index or
    mask of the ``N`` points, selecting at least one): ``mean``, ``var >= 0`` and ``truth``
    ``[n, N]``."""
    mean, var, truth = _metric_inputs(mean, var, truth, "N")
    interior = _check_interior(interior, mean.shape[1])
    nse = ((mean - truth) ** 2).sum(-1) / (truth**2).sum(-1).clamp_min(1e-300)
    m, v, y = mean[:, interior], var[:, interior].clamp_min(1e-12), truth[:, interior]
    sd = v.sqrt()
    return {
        "nse_u": float(nse.mean()),
        "nse_u_sd": _sample_sd(nse),
        "coverage2sd_u": float(((y - m).abs() <= 2 * sd).double().mean()),
        "nll": float(gaussian_nll(m, v, y)),
        "crps": float(crps_gaussian(m, sd, y)),
    }


def parameter_metrics(mean: torch.Tensor, var: torch.Tensor, truth: torch.Tensor) -> dict:
    """NSE_z, coverage, NLL and CRPS of marginal parameter posteriors: ``mean``, ``var >= 0``
    and ``truth`` ``[n, dim_z]``."""
    mean, var, truth = _metric_inputs(mean, var, truth, "dim_z")
    nse = ((mean - truth) ** 2).sum(-1) / (truth**2).sum(-1).clamp_min(1e-300)
    sd = var.clamp_min(1e-12).sqrt()
    return {
        "nse_z": float(nse.mean()),
        "nse_z_sd": _sample_sd(nse),
        "coverage2sd_z": float(((truth - mean).abs() <= 2 * sd).double().mean()),
        "nll_z": float(gaussian_nll(mean, sd**2, truth)),
        "crps_z": float(crps_gaussian(mean, sd, truth)),
    }


def _batched(fn, n: int, size: int):
    size = check_int("batch", size, minimum=1)
    outs = [fn(slice(i, min(i + size, n))) for i in range(0, n, size)]
    return [torch.cat(parts) for parts in zip(*outs)]


@torch.no_grad()
def evaluate_poisson(
    model: RandomGridNP, test: dict[str, Any], *, batch: int = 250
) -> dict[str, float]:
    """Forward and inverse metrics on a :func:`~bayesphys.problems.rgnp.poisson_test_set`
    (its entries are checked: keys, consistent shapes, finite values; a Poisson model)."""
    _check_model(model, "poisson", "evaluate_poisson")
    test = _check_test(test, "poisson")
    x = _t(test["x"], model)
    u, z, w = _t(test["u"], model), _t(test["z"], model), _t(test["w"], model)
    n = u.shape[0]

    def fwd(s):
        post = model.posterior(x, z=z[s], w=w[s])
        return post.mean, post.variance

    mean, var = _batched(fwd, n, batch)
    out = field_metrics(mean, var, u, torch.arange(1, x.shape[0] - 1, device=x.device))
    out.update(_inverse_poisson(model, test["x"][1:-1], test["u"][:, 1:-1], z, w, batch))
    return out


def _inverse_poisson(model, xi: np.ndarray, ui: np.ndarray, z, w, batch: int) -> dict:
    xt, ut = _t(xi, model), _t(ui, model)

    def inv(s):
        post = model.parameter_posterior(xt, ut[s], w[s])
        return post.mean, post.variance

    mz, vz = _batched(inv, ut.shape[0], batch)
    return parameter_metrics(mz, vz, z)


@torch.no_grad()
def invariance_study(
    model: RandomGridNP,
    test: dict[str, Any],
    n_points: Iterable[int] = (10, 30, 100, 199),
    layouts: Iterable[str] = ("uniform", "random", "clustered"),
    *,
    seed: int = 0,
    batch: int = 250,
) -> list[dict[str, Any]]:
    """P3: GICNet parameter metrics with the reference field at ``N`` points of each layout.

    The reference solution (201 nodes) is linearly interpolated to the points of
    :func:`~bayesphys.problems.rgnp.invariance_points`.
    """
    from ..problems.rgnp import invariance_points

    _check_model(model, "poisson", "invariance_study")
    test = _check_test(test, "poisson")
    n_points, layouts = (
        check_int_sequence("n_points", n_points, minimum=1),
        _str_list("layouts", layouts),
    )
    z, w = _t(test["z"], model), _t(test["w"], model)
    rows = []
    for lay in layouts:
        for n in n_points:
            xp = invariance_points(int(n), lay, seed=seed)
            up = np.stack([np.interp(xp, test["x"], uu) for uu in test["u"]])
            m = _inverse_poisson(model, xp, up, z, w, batch)
            rows.append({"n_points": int(n), "layout": lay, **m})
    return rows


def burgers_inverse_inputs(
    test: dict[str, Any], n_inverse: int = 225, *, seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-problem inputs of :func:`evaluate_burgers`: ``n_inverse`` random interior
    reference nodes per case (``t > 0``, off the walls) -> points ``[n, n_inverse, 2]`` (x, t)
    and the reference values there ``[n, n_inverse]``. ``n_inverse >= 1`` (int), ``seed`` an
    int ``>= 0`` (``None``: drawn from torch's global stream).

    The nodes are drawn **with replacement**, as the benchmark defines them: per case and
    point, an x index uniform on the ``nx - 2`` interior nodes and, independently, a t index
    uniform on the ``nt - 1`` times after ``t = 0``. A case's ``n_inverse`` points can
    therefore repeat a node (giving its value more than once), and ``n_inverse`` may exceed
    the ``(nx - 2)(nt - 1)`` interior nodes."""
    test = _check_test(test, "burgers", ("x", "t", "u"))
    n_inverse = check_int("n_inverse", n_inverse, minimum=1)
    if seed is not None:
        seed = check_seed("seed", seed, minimum=0)
    seed = seed_or_draw("seed", seed)  # None: drawn from torch's global stream
    # its own stream: default_rng(seed) is also the test set's parameter stream
    rng = np.random.default_rng(stream_seed(seed, "burgers-inverse"))
    n, nx, nt = test["u"].shape[0], len(test["x"]), len(test["t"])
    ix = rng.integers(1, nx - 1, size=(n, n_inverse))
    it = rng.integers(1, nt, size=(n, n_inverse))
    xin = np.stack([test["x"][ix], test["t"][it]], -1)
    return xin, test["u"][np.arange(n)[:, None], it, ix]


def burgers_eval_points(test: dict[str, Any], x_every: int = 10, t_every: int = 5):
    """Indices of the interior evaluation sub-grid (t > 0) of a Burgers test set
    (``x_every, t_every >= 1``, ints; the sub-grid must not be empty)."""
    x_every = check_int("x_every", x_every, minimum=1)
    t_every = check_int("t_every", t_every, minimum=1)
    nx, nt = len(test["x"]), len(test["t"])
    xi = np.arange(x_every, nx - 1, x_every)
    ti = np.arange(t_every, nt, t_every)
    if not xi.size:
        raise ValueError(f"x_every: {x_every} leaves no interior node of the {nx} x nodes")
    if not ti.size:
        raise ValueError(f"t_every: {t_every} leaves no time after t = 0 of the {nt} t nodes")
    return xi, ti


@torch.no_grad()
def evaluate_burgers(
    model: RandomGridNP,
    test: dict[str, Any],
    *,
    x_every: int = 10,
    t_every: int = 5,
    n_inverse: int = 225,
    batch: int = 50,
    seed: int = 0,
) -> dict[str, float]:
    """Forward metrics on an interior (x, t) sub-grid; inverse from ``n_inverse`` random
    interior reference values per case (t > 0). The test set's entries are checked (keys,
    consistent shapes, finite values), as are ``x_every, t_every, n_inverse >= 1`` (ints)."""
    _check_model(model, "burgers", "evaluate_burgers")
    test = _check_test(test, "burgers")
    n_inverse = check_int("n_inverse", n_inverse, minimum=1)
    xi, ti = burgers_eval_points(test, x_every, t_every)
    xs, ts = test["x"][xi], test["t"][ti]
    pts = np.stack(np.meshgrid(xs, ts, indexing="ij"), -1).reshape(-1, 2)
    uref = test["u"][:, ti][:, :, xi].transpose(0, 2, 1).reshape(test["u"].shape[0], -1)
    z, w, u = _t(test["z"], model), _t(test["w"], model), _t(uref, model)
    xt = _t(pts, model)

    def fwd(s):
        post = model.posterior(xt, z=z[s], w=w[s])
        return post.mean, post.variance

    mean, var = _batched(fwd, u.shape[0], batch)
    out = field_metrics(mean, var, u, torch.arange(u.shape[1], device=u.device))
    xin, uin = burgers_inverse_inputs(test, n_inverse, seed=seed)
    xin_t, uin_t = _t(xin, model), _t(uin, model)

    def inv(s):
        post = model.parameter_posterior(xin_t[s], uin_t[s], w[s])
        return post.mean, post.variance

    mz, vz = _batched(inv, u.shape[0], batch)
    out.update(parameter_metrics(mz, vz, z))
    return out


def information_oracle(
    test: dict[str, Any],
    sigma: float,
    n_points: Iterable[int] = (10, 30, 100, 199),
    layouts: Iterable[str] = ("uniform", "random", "clustered"),
    *,
    n_cases: int = 200,
    seed: int = 0,
    fd_step: float = 1e-4,
    jac: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    r"""P3 information check: the linearised Bayes (Laplace) error of *any* estimator of ``z``.

    For each test case the sensitivities :math:`J = \partial u / \partial z` ``[201, 5]`` come from
    the reference solver (central differences). Observing :math:`u` at the :math:`N` points of a
    layout with a **fixed information budget** (per-point noise variance :math:`N\sigma^2`, so the
    total does not grow with :math:`N` and only *where* the points lie matters) and a Gaussian
    prior of the uniform box's variance (1/3) gives the posterior covariance
    :math:`\Sigma = (\tfrac{1}{N\sigma^2} J_X^\top J_X + 3I)^{-1}` and the expected
    :math:`\mathrm{NSE}_z \approx \operatorname{tr}\Sigma / \lVert z\rVert^2` of the Bayes
    estimator. Returns rows ``{"n_points", "layout", "nse_z"}`` (mean over ``n_cases``).
    ``jac``: precomputed :func:`sensitivities` (else computed here).

    Checked: ``test`` a Poisson test set on its reference mesh ``linspace(-1, 1, N)`` (the
    sensitivities are recomputed on it), ``sigma > 0``, ``n_cases >= 1`` (int), ``fd_step >
    0``, ``jac`` finite real values of shape ``[min(n_cases, n), N, dim_z]``.
    """
    from ..problems.rgnp import invariance_points

    sigma = check_real("sigma", sigma, minimum=0.0, strict=True)
    n_cases = check_int("n_cases", n_cases, minimum=1)
    fd_step = check_real("fd_step", fd_step, minimum=0.0, strict=True)
    n_points, layouts = (
        check_int_sequence("n_points", n_points, minimum=1),
        _str_list("layouts", layouts),
    )
    test = _check_mesh(_check_test(test, "poisson", ("x", "z", "w")))
    z, x = test["z"][:n_cases], test["x"]
    if jac is None:
        jac = sensitivities(test, n_cases=n_cases, fd_step=fd_step)
    else:
        # a NaN entry gave NaN errors without a word (or went unnoticed where no point of a
        # layout reached it); a complex one lost its imaginary part, a string gave numpy's
        # unnamed conversion error
        jac = as_real_array("jac", jac)
        check_finite("jac", jac)
        if jac.shape != (len(z), len(x), z.shape[1]):
            raise ValueError(
                f"jac: expected shape {(len(z), len(x), z.shape[1])} (cases, nodes, dim_z), "
                f"received {jac.shape}"
            )
    zz = (z**2).sum(-1)
    rows = []
    for lay in layouts:
        for n in n_points:
            xp = invariance_points(int(n), lay, seed=seed)
            jp = np.stack(
                [
                    np.stack([np.interp(xp, x, jc[:, k]) for k in range(z.shape[1])], -1)
                    for jc in jac
                ]
            )
            fisher = np.einsum("cnk,cnl->ckl", jp, jp) / (sigma**2 * int(n))
            cov = np.linalg.inv(fisher + 3.0 * np.eye(z.shape[1]))
            nse = np.trace(cov, axis1=1, axis2=2) / zz
            rows.append({"n_points": int(n), "layout": lay, "nse_z": float(nse.mean())})
    return rows


def sensitivities(test: dict[str, Any], *, n_cases: int = 200, fd_step: float = 1e-4):
    """``dU/dz`` ``[n_cases, n_nodes, dim_z]`` of the reference Poisson solver (central
    differences of :func:`~bayesphys.problems.rgnp.solve_poisson` on the test set's mesh
    ``linspace(-1, 1, n_nodes)``; ``n_cases >= 1``, ``fd_step > 0``)."""
    from ..problems.rgnp import solve_poisson

    n_cases = check_int("n_cases", n_cases, minimum=1)
    fd_step = check_real("fd_step", fd_step, minimum=0.0, strict=True)
    test = _check_mesh(_check_test(test, "poisson", ("x", "z", "w")))
    z, w, nn = test["z"][:n_cases], test["w"][:n_cases, 0], len(test["x"])
    jac = np.zeros((len(z), nn, z.shape[1]))
    for k in range(z.shape[1]):
        e = np.zeros(z.shape[1])
        e[k] = fd_step
        up, down = solve_poisson(z + e, w, n_nodes=nn)[1], solve_poisson(z - e, w, n_nodes=nn)[1]
        jac[:, :, k] = (up - down) / (2 * fd_step)
    return jac


def _check_mesh(test: dict) -> dict:
    x = test["x"]
    if not np.allclose(x, np.linspace(-1.0, 1.0, len(x)), rtol=0.0, atol=1e-9):
        raise ValueError(
            f"test['x']: expected the reference mesh linspace(-1, 1, {len(x)}) of "
            "poisson_test_set (the solver's sensitivities are computed on it)"
        )
    return test


def match_oracle_sigma(test: dict[str, Any], target: float, **kw: Any) -> float:
    """The budget noise ``sigma`` at which :func:`information_oracle`'s uniform ``N = 199`` error
    equals ``target`` (e.g. the network's own uniform error), by bisection in log ``sigma`` over
    ``[1e-5, 1]``. ``target > 0``; ``kw``: the other settings of :func:`information_oracle`.

    The error grows with ``sigma``; a ``target`` outside the errors at the bracket's ends (above
    the prior-dominated error at ``sigma = 1``, or below the one at ``1e-5``) has no solution
    there: the nearer end is returned with a ``RuntimeWarning`` naming the reachable range."""
    target = check_real("target", target, minimum=0.0, strict=True)
    fixed = sorted({"sigma", "n_points", "layouts"} & set(kw))
    if fixed:
        raise TypeError(
            f"match_oracle_sigma: {fixed} set by the search itself (sigma; the uniform "
            f"N = 199 layout), received them in kw"
        )
    if "jac" not in kw:  # the sensitivities once, with the settings information_oracle uses
        sens = {k: kw[k] for k in ("n_cases", "fd_step") if k in kw}
        kw["jac"] = sensitivities(test, **sens)
    lo, hi = math.log(1e-5), math.log(1.0)

    def error(log_sigma: float) -> float:
        return information_oracle(test, math.exp(log_sigma), (199,), ("uniform",), **kw)[0]["nse_z"]

    ends = error(lo), error(hi)
    if not ends[0] <= target <= ends[1]:
        warnings.warn(
            f"match_oracle_sigma: target {target:.4g} lies outside the errors reachable with "
            f"sigma in [1e-05, 1] ({ends[0]:.4g} .. {ends[1]:.4g}); returning the nearer end",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if error(mid) < target else (lo, mid)
    return math.exp(0.5 * (lo + hi))
