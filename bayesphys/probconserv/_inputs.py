"""Argument checks of :class:`~bayesphys.probconserv.ProbConserv`: data, prediction grids,
constraint noise, masses, the problem a checkpoint was saved with, and the settings of
``calibrate``."""

from __future__ import annotations

import numbers
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._checks import check_bool, check_int, check_optional_seed, check_real, did_you_mean
from .._device import as_tensor
from ..problems.gpme import PROBLEM_CLASSES, GPMEData, GPMEProblem, get_problem
from .candidate_selection import check_selection

_F64 = torch.float64


def saved_problem(name: str, state: dict[str, Any]) -> GPMEProblem:
    """The problem a checkpoint was saved with: its family's class (by the saved class name)
    with the saved fields; older checkpoints: the registered problem ``name``, with the saved
    fields where there are any."""
    fields_ = state.get("problem")
    family = state.get("problem_class")
    if family is None:
        problem = get_problem(name)
        return replace(problem, **fields_) if fields_ else problem
    classes = {c.__name__: c for c in PROBLEM_CLASSES}
    if family not in classes:
        raise ValueError(
            f"state['problem_class']: the checkpoint's problem is a {family}, which this version "
            f"cannot rebuild (expected one of {sorted(classes)})"
        )
    return classes[family](**fields_)


def check_sigma_g_value(name: str, sigma_g) -> float:
    """A constraint noise sd ``>= 0`` or ``inf`` (no update); NaN and booleans refused."""
    if isinstance(sigma_g, bool) or not isinstance(sigma_g, numbers.Real):
        raise TypeError(
            f"{name}: expected a number >= 0 (or inf), received {type(sigma_g).__name__} "
            f"{sigma_g!r}"
        )
    if not float(sigma_g) >= 0:
        raise ValueError(f"{name}: expected a number >= 0 (or inf), received {sigma_g!r}")
    return float(sigma_g)


def _input_eps(value) -> float:
    """Machine epsilon of a floating tensor or array ``value`` below float64 (0 otherwise)."""
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return float(torch.finfo(dtype).eps) if dtype != _F64 else 0.0
    if isinstance(dtype, np.dtype) and dtype.kind == "f" and dtype.itemsize < 8:
        return float(np.finfo(dtype).eps)
    return 0.0


def check_grid(
    problem: GPMEProblem, t: float | Tensor | None, x: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The prediction grid ``(t [nt], x [nx])`` in float64: ``t`` a number or a 1-D tensor
    (default the problem's table time), ``x`` a 1-D tensor (default 201 points spanning the
    domain); at least one time and two points, all inside the problem's domain (up to the
    rounding of the input's own precision: a float32 ``torch.linspace`` over the domain ends
    a float32 rounding past it, and such values are moved onto the domain's ends)."""
    t = problem.table_time if t is None else t
    # the rounding of each input's own precision: a float32 torch.linspace(0, 2 * pi, n)
    # ends at 6.2831855 > 2 pi and was refused as outside the diffusion domain
    eps = {n: _input_eps(v) for n, v in (("t", t), ("x", x))}
    tt = as_tensor("t", t, dtype=_F64)
    if tt.ndim > 1:  # a [2, 2] tensor of times was read as four times
        raise ValueError(
            f"t: expected a number or a 1-D tensor of times, received shape {tuple(tt.shape)}"
        )
    tt = tt.reshape(-1)
    xx = problem.grid(201) if x is None else as_tensor("x", x, dtype=_F64, ndim=1)
    if tt.numel() == 0 or xx.numel() < 2:
        raise ValueError(
            f"t, x: expected at least one time and two points, received {tt.numel()} "
            f"time(s) and {xx.numel()} point(s)"
        )
    out = {}
    for name, v, (lo, hi) in (
        ("t", tt, problem.t_range),
        ("x", xx, problem.x_range),
    ):
        tol = max(1e-12, 4 * eps[name]) * max(1.0, abs(lo), abs(hi))
        if v.numel() and bool(((v < lo - tol) | (v > hi + tol)).any()):
            raise ValueError(
                f"{name}: expected values in the {problem.name} domain [{lo}, {hi}] "
                f"(where the model was trained), received [{float(v.min())}, "
                f"{float(v.max())}]"
            )
        # a reduced-precision end (float32 0.1 = 0.10000000149) is the domain's end: onto it,
        # so the later checks and the mass see the domain (float64 input is kept as given)
        out[name] = v.clamp(lo, hi) if eps[name] else v
    return out["t"], out["x"]


def check_data(name: str, data, problem: GPMEProblem, *, targets: bool) -> None:
    """``data`` as a non-empty :class:`GPMEData` of ``problem`` whose fields are tensors of
    real values with consistent shapes (``params [B]``, inputs ``[B, N, 2]``, values
    ``[B, N]``) and finite contexts (and targets, when ``targets``) inside the problem's
    domain, or an error naming the field."""
    if not isinstance(data, GPMEData):
        raise TypeError(f"{name}: expected GPMEData, received {type(data).__name__}")
    pairs = [("x_context", "y_context")] + ([("x_target", "y_target")] if targets else [])
    for f in ("params", *(f for pair in pairs for f in pair)):
        # a list of params failed inside indexing; complex values lost their imaginary part
        # in the model's real dtype (a complex y_target trained without a word)
        value = getattr(data, f)
        if not isinstance(value, Tensor):
            raise TypeError(f"{name}.{f}: expected a torch.Tensor, received {type(value).__name__}")
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name}.{f}: expected real values, received dtype {value.dtype}")
    params = as_tensor(f"{name}.params", data.params, finite=False)
    if params.ndim != 1:
        raise ValueError(
            f"{name}.params: expected shape [B] (one parameter per function), received "
            f"{tuple(params.shape)}"
        )
    if len(params) == 0:
        raise ValueError(f"{name}: expected at least one function, received none")
    if not isinstance(data.problem, GPMEProblem) or data.problem.name != problem.name:
        got = getattr(data.problem, "name", type(data.problem).__name__)
        raise ValueError(
            f"{name}: functions of the {got!r} problem, but this model "
            f"{'is for' if targets else 'was trained on'} {problem.name!r}"
        )
    b = params.shape[0]
    for xname, yname in pairs:
        xv = as_tensor(f"{name}.{xname}", getattr(data, xname))
        yv = as_tensor(f"{name}.{yname}", getattr(data, yname))
        if xv.ndim != 3 or xv.shape[0] != b or xv.shape[2] != 2 or xv.shape[1] == 0:
            raise ValueError(
                f"{name}.{xname}: expected shape [B, N, 2] = ({b}, N >= 1, 2) (columns t, x; one "
                f"row per function of params), received {tuple(xv.shape)}"
            )
        if yv.shape != xv.shape[:2]:
            raise ValueError(
                f"{name}.{yname}: expected shape {tuple(xv.shape[:2])} (one value per input of "
                f"{xname}), received {tuple(yv.shape)}"
            )
        _check_inside_domain(f"{name}.{xname}", xv, problem, _input_eps(getattr(data, xname)))


def _check_inside_domain(name: str, xv: Tensor, problem: GPMEProblem, eps: float) -> None:
    """Refuse inputs ``xv [B, N, 2]`` (columns ``t, x``) outside the problem's domain, up to
    the rounding of the input's own precision ``eps`` (as :func:`check_grid`): a sensor past
    ``t_range`` or ``x_range`` was conditioned on (or trained on) without a word, though the
    prediction grid is refused there."""
    for col, what, (lo, hi) in ((0, "t", problem.t_range), (1, "x", problem.x_range)):
        v = xv[..., col]
        tol = max(1e-12, 4 * eps) * max(1.0, abs(lo), abs(hi))
        if bool(((v < lo - tol) | (v > hi + tol)).any()):
            raise ValueError(
                f"{name}: expected {what} (column {col}) in the {problem.name} domain "
                f"[{lo}, {hi}] (where the model was trained), received [{float(v.min())}, "
                f"{float(v.max())}]"
            )


def check_known_params(params: Tensor, problem: GPMEProblem) -> None:
    """Refuse (``ValueError`` naming ``data.params``) validation functions ``params [B]`` whose
    parameter is not finite or lies outside the problem's ``param_domain``: ``calibrate``
    scores Step 1 against the problem's exact solution at each function's parameter, so a
    function of unknown parameter (NaN, as :meth:`~ProbConserv.posterior` takes with a
    ``mass``) has no truth to score against. Such data failed only after the Step-1 pass, in
    the exact solution, under the family's parameter name (``m``), not the argument given."""
    p = params.detach().to(_F64)
    bad = int((~torch.isfinite(p)).sum())
    if bad:
        raise ValueError(
            f"data.params: expected the known parameter ({problem.param_name}) of every "
            f"validation function, received {bad} NaN/Inf of {p.numel()}; calibrate scores "
            f"Step 1 against the exact {problem.name} solution at these parameters (data's "
            "targets are not read), so pass only functions whose parameter is known"
        )
    problem.check_params("data.params", float(p.min()), float(p.max()))


def check_mass(mass, n_functions: int, n_times: int, device: torch.device) -> Tensor:
    """A user's ``mass`` as ``[B, nt]`` float64 on the model's ``device``, or a clear error
    naming the expected shape."""
    b = as_tensor("mass", mass, dtype=_F64, device=device)
    if b.shape != (n_functions, n_times):
        raise ValueError(
            f"mass: expected shape [B, nt] = ({n_functions}, {n_times}) (one total mass per "
            f"function and time slice), received {tuple(b.shape)}"
        )
    return b


class CalibrateSettings(NamedTuple):
    """The checked settings of ``ProbConserv.calibrate`` that its fit reads."""

    n_functions: int
    seed: int | None
    local_seed: int | None
    mass_check: bool
    mass_length: float
    mass_gate: float | None
    mass_floor: float
    neighbours: tuple[int, ...]
    local_functions: int
    range_margin: float


def check_calibrate_settings(
    problem: GPMEProblem,
    default: dict[str, Any],
    *,
    data: GPMEData | None,
    n_functions: int,
    seed: int | None,
    objective: str,
    neighbours: Any,
    local_functions: int,
    local_seed: int | None,
    range_margin: float,
    selection: str,
    mass_check: bool | None,
    mass_length: float,
    mass_gate: float | None,
    mass_floor: float,
) -> CalibrateSettings:
    """The settings of :meth:`ProbConserv.calibrate <bayesphys.probconserv.ProbConserv.calibrate>`
    checked (a setting of a mode that is off, changed from its entry in ``default``, is
    refused) and normalised: ``(n_functions, seed, local_seed, mass_check, mass_length,
    mass_gate, mass_floor, neighbours, local_functions, range_margin)`` as a
    :class:`CalibrateSettings`."""
    if objective not in ("ll", "coverage90", "hybrid"):
        raise ValueError(
            f"objective: expected 'll', 'coverage90' or 'hybrid', received {objective!r}"
            f"{did_you_mean(objective, ('ll', 'coverage90', 'hybrid'))}"
        )
    if data is not None:
        check_data("data", data, problem, targets=False)
        check_known_params(data.params, problem)
    else:
        n_functions = check_int("n_functions", n_functions, minimum=1)
    seed = check_optional_seed("seed", seed)
    local_seed = check_optional_seed("local_seed", local_seed)
    if mass_check is not None:
        mass_check = check_bool("mass_check", mass_check)
    mass_length = check_real("mass_length", mass_length, minimum=0.0, strict=True)
    if mass_gate is not None:
        mass_gate = check_real("mass_gate", mass_gate, minimum=0.0)
    mass_floor = check_real("mass_floor", mass_floor, minimum=0.0)
    try:
        neighbours = tuple(neighbours)
    except TypeError:
        raise TypeError(
            "neighbours: expected a sequence of analog sizes (e.g. (0, 20); 0: all errors), "
            f"received {type(neighbours).__name__} {neighbours!r}"
        ) from None
    if objective == "hybrid":
        # the hybrid fit's 2-fold held-out selection needs 4 validation functions: fewer failed
        # in fit_hybrid, naming a "validation set", after the Step 1 had run on them
        n_val = n_functions if data is None else len(data)
        if n_val < 4:
            arg = "n_functions" if data is None else "data"
            raise ValueError(
                f"{arg}: expected at least 4 validation functions with objective='hybrid' (its "
                f"2-fold held-out selection), received {n_val}"
            )
    local_functions = check_int("local_functions", local_functions, minimum=0)
    if 0 < local_functions < 4:
        raise ValueError(f"local_functions: expected 0 or >= 4, received {local_functions}")
    if local_functions and objective != "hybrid":
        raise ValueError("local_functions: only with objective='hybrid'")
    if mass_check is None:
        mass_check = objective == "hybrid" and local_functions > 0
    if mass_check and not (objective == "hybrid" and local_functions > 0):
        raise ValueError(
            "mass_check: needs objective='hybrid' and local_functions > 0 (its calibration "
            "functions)"
        )
    neighbours = tuple(check_int("neighbours", k, minimum=0) for k in neighbours)
    range_margin = check_real("range_margin", range_margin, minimum=0.0)
    check_selection(selection)
    if not neighbours:
        raise ValueError("neighbours: expected at least one analog size (0: all errors)")
    if local_seed is not None and not local_functions:
        raise ValueError(
            f"local_seed: only with local_functions > 0 (it seeds those functions), received "
            f"local_seed={local_seed}"
        )
    if data is not None and n_functions != default["n_functions"] and n_functions != len(data):
        raise ValueError(
            f"n_functions: only without data (the {len(data)} functions of data are the "
            f"validation functions), received n_functions={n_functions!r}"
        )
    if data is not None and not local_functions and seed != default["seed"]:
        raise ValueError(
            "seed: only used to draw validation functions (data=None) or the "
            f"local_functions; with data and no local functions it has no effect, received "
            f"seed={seed!r}"
        )

    if (
        data is not None
        and objective == "hybrid"
        and not local_functions
        and range_margin != default["range_margin"]
    ):
        raise ValueError(
            "range_margin: only widens the functions calibrate draws (the validation functions "
            "when data is None, and the local_functions); with data and no local functions it "
            f"has no effect, received range_margin={range_margin!r}"
        )

    # settings of one mode only, changed from their defaults where that mode is off
    def changed(*pairs: tuple[str, Any]) -> list[tuple[str, Any]]:
        return [(n, v) for n, v in pairs if v != default[n]]

    unused = []
    if objective != "hybrid":
        unused = changed(
            ("neighbours", neighbours), ("selection", selection), ("range_margin", range_margin)
        )
        where = "only with objective='hybrid'"
    elif not mass_check:
        unused = changed(
            ("mass_length", mass_length), ("mass_gate", mass_gate), ("mass_floor", mass_floor)
        )
        where = "only with the mass check (mass_check, objective='hybrid', local_functions > 0)"
    elif mass_gate is None and mass_floor != default["mass_floor"]:
        unused.append(("mass_floor", mass_floor))
        where = "only with a gate (mass_gate not None): the floor applies to gated functions"
    if unused:
        got = ", ".join(f"{n}={v!r}" for n, v in unused)
        raise ValueError(
            f"{', '.join(n for n, _ in unused)}: {where} (objective={objective!r}), received {got}"
        )
    if local_functions:
        # the parameter map behind the conditional scale (3 principal components) needs
        # 2 * 3 + 4 validation functions: say so before any fitting
        n_val = n_functions if data is None else len(data.params)
        if n_val < 10:
            raise ValueError(
                "n_functions: the parameter-conditional scale (local_functions > 0) needs "
                f">= 10 validation functions, received {n_val}"
            )
    return CalibrateSettings(
        n_functions,
        seed,
        local_seed,
        mass_check,
        mass_length,
        mass_gate,
        mass_floor,
        neighbours,
        local_functions,
        range_margin,
    )


def context_points(context: Any) -> dict[str, Any]:
    """The observed points of a :class:`~bayesphys.problems.gpme.GPMEData` ``context`` that the
    Step-1 model reads (``x_context [B, Nc, 2]``, ``y_context [B, Nc]``), named as the caller
    passes them, for :func:`~bayesphys._detached.warn_detached` (``{}`` for anything else: the
    method's own check refuses it)."""
    if not isinstance(context, GPMEData):
        return {}
    return {"context.x_context": context.x_context, "context.y_context": context.y_context}


def detached_context(context: Any) -> Any:
    """``context`` with its observed points detached (the Step-1 posterior is computed without
    gradient; the model's inner predictors warned about them under their own names, e.g.
    ``MetaGP.predict: yc requires grad``). ``params`` is kept: the analytic mass reads it."""
    if not isinstance(context, GPMEData):
        return context
    xc, yc = context.x_context, context.y_context
    if not any(isinstance(v, Tensor) and v.requires_grad for v in (xc, yc)):
        return context
    return replace(
        context,
        **{
            k: v.detach() if isinstance(v, Tensor) else v
            for k, v in (("x_context", xc), ("y_context", yc))
        },
    )
