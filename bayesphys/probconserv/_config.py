"""Settings of :class:`~bayesphys.probconserv.ProbConserv` and their checks (Hansen et al.,
ICML 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from .._checks import check_bool, check_int, check_optional_seed, check_real, did_you_mean
from .._device import single_or_double
from ..problems.gpme import GPMEProblem, get_problem
from ._inputs import check_sigma_g_value

__all__ = ["ANP_ONLY", "GP_ONLY", "ProbConservConfig", "checked_config", "config_settings"]

_F64 = torch.float64

# settings of one Step-1 model only (the other ignores them)
ANP_ONLY = {"hidden": 64, "n_samples": 32, "covariance": "lowrank"}
GP_ONLY = {"gp_width": 32}
# the ANP's covariances: moment-matched diagonal, low-rank from the latent draws, or the
# latent mixture updated per draw (the reference code's Step 2, mixture_update.py)
ANP_COVARIANCES = ("diag", "lowrank", "mixture")


@dataclass
class ProbConservConfig:
    """Configuration of :class:`~bayesphys.probconserv.ProbConserv` (saved with the checkpoint)."""

    problem: str = "pme"
    step1: str = "anp"
    hidden: int = 64
    softc_weight: float = 0.0
    covariance: str = "lowrank"
    n_samples: int = 32
    sigma_g: float = 0.0
    relative: bool = False
    lr: float | None = None
    batch_size: int = 16
    gp_width: int = 32
    seed: int | None = 0
    softc_points: int = 32
    noise_std: float = 0.0
    train_margin: float = 0.0


def _is_default(value: Any, default: Any) -> bool:
    """Whether a keyword was left at (or given equal to) its default."""
    if value is default:
        return True
    if default is None or value is None:
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError, RuntimeError):  # e.g. a tensor of several values
        return False


def config_settings(
    config: ProbConservConfig, given: Mapping[str, Any], defaults: Mapping[str, Any]
) -> tuple[str | GPMEProblem, dict[str, Any]]:
    """``ProbConserv(config)``: the problem and the keyword settings read from ``config``.

    ``given`` are the settings keywords of the call, ``defaults`` their defaults; one that
    differs from its default is refused (``ValueError`` naming it), since the config gives
    every setting. The other Step-1 model's settings (stored by the config, read by neither
    network) are left unset, as a call with keywords leaves them; the values are checked by
    :func:`checked_config` afterwards, naming the setting."""
    changed = [k for k, v in given.items() if not _is_default(v, defaults[k])]
    if changed:
        raise ValueError(
            f"{', '.join(changed)}: a ProbConservConfig gives every setting, so the keyword "
            f"settings must be left at their defaults (change the config instead), received "
            + ", ".join(f"{k}={given[k]!r}" for k in changed)
        )
    out = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "problem"}
    for name in GP_ONLY if config.step1 == "anp" else ANP_ONLY:
        out[name] = None
    return config.problem, out


def checked_config(
    problem: str | GPMEProblem,
    *,
    step1: str,
    hidden: int | None,
    softc_weight: float,
    covariance: str | None,
    n_samples: int | None,
    sigma_g: float,
    relative: bool,
    lr: float | None,
    batch_size: int,
    gp_width: int | None,
    softc_points: int,
    noise_std: float,
    train_margin: float,
    dtype: torch.dtype | None,
    seed: int | None,
) -> tuple[GPMEProblem, ProbConservConfig, torch.dtype | None]:
    """Check the settings of :class:`~bayesphys.probconserv.ProbConserv` (its docstring states
    them); returns ``(problem, config, dtype)``: the problem, the checked settings with each
    Step-1 model's defaults filled in, and the resolved ``dtype`` (``None`` if not given)."""
    prob = get_problem(problem)
    if step1 not in ("anp", "gp"):
        raise ValueError(
            f"step1: expected 'anp' or 'gp', received {step1!r}{did_you_mean(step1, ('anp', 'gp'))}"
        )
    given = {"hidden": hidden, "n_samples": n_samples, "covariance": covariance}
    given["gp_width"] = gp_width
    for name in GP_ONLY if step1 == "anp" else ANP_ONLY:
        if given[name] is not None:
            other = "gp" if step1 == "anp" else "anp"
            raise ValueError(
                f"{name}: only used with step1={other!r} (step1={step1!r} ignores it), "
                f"received {name}={given[name]!r}"
            )
    hidden, n_samples, covariance, gp_width = (
        ANP_ONLY["hidden"] if hidden is None else hidden,
        ANP_ONLY["n_samples"] if n_samples is None else n_samples,
        ANP_ONLY["covariance"] if covariance is None else covariance,
        GP_ONLY["gp_width"] if gp_width is None else gp_width,
    )
    if dtype is not None:
        # half-precision training diverged to NaN weights while reporting success
        dtype = single_or_double(dtype, "the neural process trains in single or double precision")
    if step1 == "gp" and dtype not in (None, _F64):
        # its predictive covariance must be PSD to float64 accuracy for the update
        raise ValueError(f"dtype: step1='gp' runs in torch.float64, received {dtype}")
    if covariance not in ANP_COVARIANCES:
        raise ValueError(
            f"covariance: expected 'diag', 'lowrank' or 'mixture', received {covariance!r}"
            f"{did_you_mean(covariance, ANP_COVARIANCES)}"
        )
    # SoftC: the ANP's mean by autograd, the meta-GP's predictive mean by finite differences
    softc_weight = check_real("softc_weight", softc_weight, minimum=0.0)
    n_samples = check_int("n_samples", n_samples, minimum=2)
    hidden = check_int("hidden", hidden, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    gp_width = check_int("gp_width", gp_width, minimum=1)
    softc_points = check_int("softc_points", softc_points, minimum=1)
    sigma_g = check_sigma_g_value("sigma_g", sigma_g)  # inf: no update (the prior)
    relative = check_bool("relative", relative)
    seed = check_optional_seed("seed", seed)
    noise_std = check_real("noise_std", noise_std, minimum=0.0)
    train_margin = check_real("train_margin", train_margin, minimum=0.0)
    prob.check_params(f"train_margin = {train_margin:g}", *prob.widened_range(train_margin))
    if lr is not None:
        lr = check_real("lr", lr, minimum=0.0, strict=True)
    config = ProbConservConfig(
        prob.name,
        step1,
        hidden,
        float(softc_weight),
        covariance,
        int(n_samples),
        float(sigma_g),
        bool(relative),
        lr,
        int(batch_size),
        int(gp_width),
        seed,
        int(softc_points),
        float(noise_std),
        float(train_margin),
    )
    return prob, config, dtype
